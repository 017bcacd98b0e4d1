# Stand-in image recipe for meta-rustimage's tests; the name is the one the
# README's examples use.
SUMMARY = "Stand-in image for the meta-rustimage tests"
LICENSE = "MIT"

inherit image

SUMMARY = "Container images from OpenEmbedded root filesystems, one layer per package"
DESCRIPTION = "rustimage turns an image's rootfs, manifest and package feeds into \
a container image (Docker archive and OCI layout in one tar) whose layers follow \
the image's packages, and pushes images to registries. Used by the docker-tar \
image type of meta-rustimage."
HOMEPAGE = "https://github.com/rustimage/rustimage"
BUGTRACKER = "https://github.com/rustimage/rustimage/issues"
SECTION = "devel"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://LICENSE;md5=c3dbb945207a9826072fb11717e959e6"

# The sources are this repository. To build from a local checkout instead
# (for example while working on rustimage), either
#   - in local.conf, point the fetcher at it (committed changes only):
#       RUSTIMAGE_GIT_URI:pn-rustimage-native = "git:///path/to/rustimage;protocol=file;branch=main"
#       SRCREV:pn-rustimage-native = "${AUTOREV}"
#   - or build the working tree as it is, with externalsrc:
#       INHERIT += "externalsrc"
#       EXTERNALSRC:pn-rustimage-native = "/path/to/rustimage"
# Either way rustimage-crates.inc must match that tree's Cargo.lock
# (scripts/update-crates-inc there; cargo builds with --frozen).
RUSTIMAGE_GIT_URI ?= "git://github.com/rustimage/rustimage.git;protocol=https;branch=main"
SRC_URI = "${RUSTIMAGE_GIT_URI}"
SRCREV = "aad1ccae3c400362b8ecf5c656a6fa8a7d052db2"

# S is the default ${UNPACKDIR}/${BP}, where the git fetcher unpacks
# (whinlatter and later); Cargo.toml is at its top (CARGO_SRC_DIR "").

inherit cargo cargo-update-recipe-crates

require ${BPN}-crates.inc

BBCLASSEXTEND = "native nativesdk"

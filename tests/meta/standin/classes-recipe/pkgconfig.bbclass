# Stand-in for OE-core's pkgconfig class (tests only): pkg-config for the
# build, as a dependency.
DEPENDS:prepend = "pkgconfig-native "

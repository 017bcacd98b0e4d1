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
# destsuffix: the default S (${UNPACKDIR}/${BP}; ${WORKDIR}/${BP} on
# scarthgap, whose git fetcher would otherwise unpack into "git").
SRC_URI = "${RUSTIMAGE_GIT_URI};destsuffix=${BP}"
SRCREV = "ada8dc05a680e4d1f9bd48b3a5cea3fe96c62ee4"

# Cargo.toml is at the top of S (CARGO_SRC_DIR "").

inherit cargo cargo-update-recipe-crates pkgconfig

require ${BPN}-crates.inc

# The -sys crates of Cargo.lock that can link a system library, and the
# library they link (as OE-core's own Rust recipes, e.g. python3-maturin
# and python3-uv-build, depend on zstd):
# - zstd-sys: libzstd through pkg-config when ZSTD_SYS_USE_PKG_CONFIG=1,
#   which OE-core master's cargo class exports for every recipe (and which
#   is set here, so that every release links the same way); without a
#   libzstd.pc its build script panics.
# - liblzma-sys: the system liblzma when pkg-config finds xz 5.8 or later,
#   else the copy of xz it carries, built with the cc crate.
# The others build what they carry with the cc crate and OE's compiler
# (libdeflate-sys, ring) or are pure Rust (libbz2-rs-sys, zlib-rs).
DEPENDS += "zstd xz"
export ZSTD_SYS_USE_PKG_CONFIG = "1"

# Cargo.toml's rust-version. scarthgap's own Rust (1.75) is older; the Rust
# mixin layer for it (meta-lts-mixins, branch scarthgap/rust) sets a newer
# RUSTVERSION. Skipping the recipe makes bitbake say why, at parse time,
# when an image asks for rustimage-native, instead of failing in do_compile.
RUSTIMAGE_MIN_RUST = "1.90"

python () {
    def version(v):
        parts = []
        for p in v.rstrip('%').split('.'):
            digits = ''.join(c for c in p if c.isdigit()) if p[:1].isdigit() else ''
            if not digits:
                break
            parts.append(int(digits))
        return tuple(parts)

    rust = d.getVar('RUSTVERSION') or ''
    need = d.getVar('RUSTIMAGE_MIN_RUST')
    if rust and version(rust) < version(need):
        if 'scarthgap-rust-mixin' in (d.getVar('BBFILE_COLLECTIONS') or '').split():
            hint = ("The Rust mixin layer in BBLAYERS (scarthgap-rust-mixin) is too old: update "
                    "meta-lts-mixins, branch scarthgap/rust, to a revision with Rust %s or later" % need)
        else:
            hint = ("On scarthgap add the Rust mixin layer: meta-lts-mixins, branch scarthgap/rust "
                    "(layer collection scarthgap-rust-mixin), https://git.yoctoproject.org/meta-lts-mixins, "
                    "to BBLAYERS")
        raise bb.parse.SkipRecipe("rustimage needs Rust %s or later, and RUSTVERSION is %s. %s" % (need, rust, hint))
}

BBCLASSEXTEND = "native nativesdk"

SUMMARY = "A small image meant only to run as a container: busybox, base files, no kernel"
DESCRIPTION = "An example container image for meta-rustimage: docker-tar is its \
only image type, with one layer per package. It has no kernel, no boot files, no \
init system and no package management; the container runtime provides /dev, \
/proc and the rest. Build it with 'bitbake container-image-minimal' and load \
tmp/deploy/images/<machine>/container-image-minimal-<machine>.rootfs.docker-tar \
with docker, podman, skopeo or containerd."
LICENSE = "MIT"

# The only type: nothing to boot, so no ext4, wic, tar or qemuboot files.
IMAGE_FSTYPES = "docker-tar"

# No package management (no package database in the image), no locales,
# no recommended extras, and no run-postinsts (there is no first boot: the
# postinsts of these packages all run while the rootfs is made).
IMAGE_FEATURES = ""
IMAGE_LINGUAS = ""
NO_RECOMMENDATIONS = "1"
ROOTFS_BOOTSTRAP_INSTALL = ""
IMAGE_INSTALL = "base-files base-passwd netbase busybox"

# No kernel: a container runs on its host's. These are image.bbclass's
# dependencies on the kernel's package data (for depmod) and on its deploy
# task (for the boot files), which an image without kernel modules or boot
# files does not need. (A distro or local.conf that builds nothing but
# containers may instead set PREFERRED_PROVIDER_virtual/kernel = "linux-dummy".)
KERNELDEPMODDEPEND = ""
KERNEL_DEPLOY_DEPEND = ""

# The container's configuration: RUSTIMAGE_CMD, RUSTIMAGE_ENV, ... (see the
# layer's README); the defaults run ${base_bindir}/sh.

inherit image

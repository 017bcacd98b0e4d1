# Stand-in for OE-core's image_types class in meta-rustimage's tests
# (written for the tests): the tar type with the options OE-core's tar
# type uses (no --xattrs), and gzip and zstd conversions.

IMAGE_TYPES = "tar tar.zst"
IMAGE_CMD:tar = "tar --sort=name --format=posix --pax-option=delete=atime,delete=ctime --numeric-owner -cf ${IMGDEPLOYDIR}/${IMAGE_NAME}.tar -C ${IMAGE_ROOTFS} ."
CONVERSIONTYPES = "gz zst"
CONVERSION_CMD:gz = "gzip -f -9 -n -c ${IMAGE_NAME}.${type} > ${IMAGE_NAME}.${type}.gz"
CONVERSION_CMD:zst = "zstd -q -f -3 -o ${IMAGE_NAME}.${type}.zst ${IMAGE_NAME}.${type}"

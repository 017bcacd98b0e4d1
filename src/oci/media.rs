//! Media types rustimage writes, and the Docker ones it reads or converts to.

pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// The empty descriptor's `{}`: an artifact's config.
pub const EMPTY: &str = "application/vnd.oci.empty.v1+json";

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// True for an image manifest, OCI or Docker.
pub fn is_manifest(media_type: &str) -> bool {
    media_type == MANIFEST || media_type == DOCKER_MANIFEST
}

/// True for an index (or Docker manifest list).
pub fn is_index(media_type: &str) -> bool {
    media_type == INDEX || media_type == DOCKER_LIST
}

//! rustimage: container images from OpenEmbedded root filesystems.
//!
//! The pipeline, one module per stage, each depending only on those
//! before it and on the shared vocabulary in [`oci`]:
//!
//! source (rootfs entries) -> plan (entries to layers) -> layers (tar,
//! compress, hash) -> image (config, manifest, index) -> sinks (archive,
//! OCI dir) and registry (push). [`packages`] and [`ownership`] say which
//! package ships which path; [`sbom`] describes the image's packages and
//! recognises SBOMs attached to it; [`cmd`] is the command layer above it all,
//! and `main.rs` only parses the command line and sets the exit code.

// Input must never reach a panic: no unwrap/expect outside tests.
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod atomic;
pub mod b64;
pub mod cmd;
pub mod deploy;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod image;
pub mod layers;
pub mod oci;
pub mod ownership;
pub mod packages;
pub mod plan;
pub mod progress;
pub mod registry;
pub mod sbom;
pub mod sinks;
pub mod source;

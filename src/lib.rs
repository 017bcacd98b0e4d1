//! rustimage: container images from OpenEmbedded root filesystems.
//!
//! The pipeline, one module per stage:
//! source (rootfs entries) -> plan (entries to layers) -> layers (tar,
//! compress, hash) -> image (config, manifest) -> sinks (archive, OCI dir,
//! registry). The binary is a thin front (`main.rs`); the modules are a
//! library so the fuzz targets reach every parser.

// Input must never reach a panic: no unwrap/expect outside tests.
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod atomic;
pub mod b64;
pub mod build;
pub mod cli;
pub mod deploy;
pub mod error;
pub mod fuzzing;
pub mod image;
pub mod index;
pub mod inspect;
pub mod layers;
pub mod layout;
pub mod ownership;
pub mod packages;
pub mod plan;
pub mod progress;
pub mod push;
pub mod reference;
pub mod registry;
pub mod sinks;
pub mod source;

/// Runs a parsed command line; the error carries its exit code.
pub fn run(cli: &cli::Cli) -> Result<(), error::Error> {
    match &cli.command {
        cli::Command::Build(args) => build::run(args),
        cli::Command::Inspect(args) => inspect::run(args),
        cli::Command::Push(args) => push::run(args),
        cli::Command::Index(args) => index::run(args),
    }
}

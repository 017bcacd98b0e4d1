//! rustimage: container images from OpenEmbedded root filesystems.
//!
//! The pipeline, one module per stage:
//! source (rootfs entries) -> plan (entries to layers) -> layers (tar,
//! compress, hash) -> image (config, manifest) -> sinks (archive, OCI dir).

// Input must never reach a panic: no unwrap/expect outside tests.
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod atomic;
mod build;
mod cli;
mod deploy;
mod error;
mod image;
mod index;
mod inspect;
mod layers;
mod layout;
mod ownership;
mod packages;
mod plan;
mod progress;
mod push;
mod registry;
mod sinks;
mod source;

use clap::Parser;

fn main() {
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let result = match &cli.command {
        cli::Command::Build(args) => build::run(args),
        cli::Command::Inspect(args) => inspect::run(args),
        cli::Command::Push(args) => push::run(args),
        cli::Command::Index(args) => index::run(args),
    };
    if let Err(e) = result {
        eprintln!("rustimage: error: {e}");
        std::process::exit(e.exit_code());
    }
}

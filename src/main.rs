//! rustimage: container images from OpenEmbedded root filesystems.
//!
//! The pipeline, one module per stage:
//! source (rootfs entries) -> plan (entries to layers) -> layers (tar,
//! compress, hash) -> image (config, manifest) -> sinks (archive, OCI dir).

// Input must never reach a panic: no unwrap/expect outside tests.
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod atomic;
mod b64;
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
mod reference;
mod registry;
mod sinks;
mod source;

use clap::Parser;

fn main() {
    limit_malloc_arenas();
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

/// Blocks are allocated on one thread and freed on another; with glibc's
/// default of an arena per thread that strands freed memory in arenas no
/// one allocates from again. Two arenas and a fixed mmap threshold (large
/// buffers go straight back to the kernel) keep peak RSS near the heap's.
fn limit_malloc_arenas() {
    // SAFETY: mallopt only tunes the allocator; called before any thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 512 << 10);
    }
}

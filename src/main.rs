//! The `rustimage` command: parses arguments, runs, maps errors to exit
//! codes (1, or 2 for usage).

use clap::Parser;
use rustimage::cmd::{self, cli::Cli};

fn main() {
    limit_malloc_arenas();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    if let Err(e) = cmd::run(&cli) {
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

//! Replays the fuzz seed corpus and every input a fuzzer ever crashed on
//! (fuzz/regressions/<target>/) through the same entry points the fuzz
//! targets use: each must return, not panic, and every seed (a valid input
//! by construction, see fuzz/make-seeds) must be accepted, so a parser
//! that refuses everything fails here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;

fn replay(target: &str, run: fn(&[u8]) -> bool) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut seeds = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            let data = fs::read(&path).unwrap();
            eprintln!("{target}: {}", path.display());
            let accepted = run(&data);
            if dir == "corpus" {
                assert!(accepted, "seed {} was refused", path.display());
                seeds += 1;
            }
        }
    }
    assert!(seeds > 0, "no seeds for {target}");
}

#[test]
fn rootfs_tar() {
    replay("rootfs_tar", rustimage::fuzzing::rootfs_tar);
}

#[test]
fn package() {
    replay("package", rustimage::fuzzing::package);
}

#[test]
fn text_inputs() {
    replay("text_inputs", rustimage::fuzzing::text_inputs);
}

#[test]
fn image_layout() {
    replay("image_layout", rustimage::fuzzing::image_layout);
}

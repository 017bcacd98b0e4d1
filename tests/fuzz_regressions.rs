//! Replays the fuzz seed corpus and every input a fuzzer ever crashed on
//! (fuzz/regressions/<target>/) through the same entry points the fuzz
//! targets use: each must return, not panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            let data = fs::read(&path).unwrap();
            eprintln!("{target}: {}", path.display());
            run(&data);
            n += 1;
        }
    }
    n
}

#[test]
fn rootfs_tar() {
    assert!(replay("rootfs_tar", rustimage::fuzzing::rootfs_tar) > 0);
}

#[test]
fn package() {
    assert!(replay("package", rustimage::fuzzing::package) > 0);
}

#[test]
fn text_inputs() {
    assert!(replay("text_inputs", rustimage::fuzzing::text_inputs) > 0);
}

#[test]
fn image_layout() {
    assert!(replay("image_layout", rustimage::fuzzing::image_layout) > 0);
}

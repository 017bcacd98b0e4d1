//! Outputs appear whole or not at all: a full disk or a SIGKILL in the
//! middle of a build leaves nothing at the output path, no debris that
//! outlives the next run, and a cache the next build can use.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// A rootfs of incompressible content, `mib` MiB in 64 files.
fn random_rootfs(dir: &Path, mib: usize) -> PathBuf {
    let root = dir.join("rootfs");
    make_root_dir(&root);
    fs::create_dir_all(root.join("data")).unwrap();
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for i in 0..64 {
        let bytes: Vec<u8> = (0..(mib << 20) / 64)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        fs::write(root.join(format!("data/f{i:02}")), bytes).unwrap();
    }
    root
}

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(at).unwrap();
        run_ok(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(at),
        );
        Tmpfs(at.to_path_buf())
    }

    fn resize(&self, size: &str) {
        run_ok(
            Command::new("mount")
                .args(["-o", &format!("remount,size={size}")])
                .arg(&self.0),
        );
    }

    fn entries(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).output();
    }
}

fn build(rootfs: &Path, extra: &[&str]) -> std::process::Output {
    rustimage()
        .args([
            "build",
            "--squash",
            "-q",
            "--created",
            "@0",
            "--compression",
            "none",
            "--rootfs",
        ])
        .arg(rootfs)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn a_full_disk_leaves_nothing_and_the_cache_usable() {
    if !require_all(&["mount", "umount"]) {
        return;
    }
    let tmp = tempdir("atomic");
    let root = random_rootfs(tmp.path(), 8);
    let small = Tmpfs::mount(&tmp.path().join("small"), "2m");

    for (what, args) in [
        (
            "archive",
            vec![
                "-o".to_string(),
                small.0.join("image.tar").display().to_string(),
            ],
        ),
        (
            "layout",
            vec![
                "--oci-dir".to_string(),
                small.0.join("layout").display().to_string(),
            ],
        ),
        (
            "spool",
            vec![
                "--tmpdir".to_string(),
                small.0.display().to_string(),
                "-o".to_string(),
                tmp.path().join("x.tar").display().to_string(),
            ],
        ),
    ] {
        let tarball = tmp.path().join("rootfs.tar");
        make_tarball(&root, &tarball, "none");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = build(&tarball, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(err.contains("No space left on device"), "{what}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{what}: {err}");
        assert!(
            small.entries().is_empty(),
            "{what} left {:?}",
            small.entries()
        );
        assert!(!tmp.path().join("x.tar").exists());
    }

    // The cache on a full disk: the build fails; with room again the same
    // cache serves a build whose bytes equal a build without it.
    let cache = small.0.join("cache");
    let out = build(
        &root,
        &[
            "--cache",
            cache.to_str().unwrap(),
            "-o",
            tmp.path().join("c.tar").to_str().unwrap(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    small.resize("64m");
    let with = tmp.path().join("with-cache.tar");
    let without = tmp.path().join("without.tar");
    assert!(
        build(
            &root,
            &[
                "--cache",
                cache.to_str().unwrap(),
                "-o",
                with.to_str().unwrap()
            ]
        )
        .status
        .success()
    );
    assert!(
        build(&root, &["-o", without.to_str().unwrap()])
            .status
            .success()
    );
    assert_eq!(sha256_file(&with), sha256_file(&without));
}

#[test]
fn sigkill_midway_leaves_nothing_and_the_next_run_cleans_up() {
    if !require_root() {
        return;
    }
    let tmp = tempdir("atomic");
    let root = random_rootfs(tmp.path(), 96);
    let out_dir = tmp.path().join("out");
    fs::create_dir_all(&out_dir).unwrap();
    let cache = tmp.path().join("cache");
    let archive = out_dir.join("image.tar");
    let layout = out_dir.join("layout");
    let args = [
        "--cache",
        cache.to_str().unwrap(),
        "-o",
        archive.to_str().unwrap(),
        "--oci-dir",
        layout.to_str().unwrap(),
        "--compression",
        "gzip",
        // Slow on purpose, so every kill lands mid-build on any machine.
        "--compression-level",
        "12",
        "--jobs",
        "1",
    ];
    let mut killed = 0;
    for delay_ms in [50, 300, 800, 1500] {
        let mut child = rustimage()
            .args(["build", "--squash", "-q", "--created", "@0", "--rootfs"])
            .arg(&root)
            .args(args)
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.success() {
            // Finished before the kill: nothing left to prove at this delay.
            fs::remove_file(&archive).unwrap();
            fs::remove_dir_all(&layout).unwrap();
            continue;
        }
        killed += 1;
        assert!(!archive.exists(), "archive after kill at {delay_ms} ms");
        assert!(!layout.exists(), "layout after kill at {delay_ms} ms");
    }
    assert!(killed >= 2, "the build finished before most kills");
    // A complete run afterwards: the outputs are right (the same bytes as
    // a build with a fresh cache) and no temporary siblings remain.
    let ok = rustimage()
        .args(["build", "--squash", "-q", "--created", "@0", "--rootfs"])
        .arg(&root)
        .args(args)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let names: Vec<String> = fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let fresh = tmp.path().join("fresh.tar");
    let clean = rustimage()
        .args([
            "build",
            "--squash",
            "-q",
            "--created",
            "@0",
            "--compression",
            "gzip",
            "--compression-level",
            "12",
            "--rootfs",
        ])
        .arg(&root)
        .arg("-o")
        .arg(&fresh)
        .output()
        .unwrap();
    assert!(clean.status.success());
    assert_eq!(sha256_file(&archive), sha256_file(&fresh));
}

/// `mknod PATH c MAJOR MINOR`.
fn char_device(path: &Path, major: u32, minor: u32) {
    run_ok(
        Command::new("mknod")
            .arg(path)
            .args(["c", &major.to_string(), &minor.to_string()]),
    );
}

fn is_char_device(path: &Path, rdev: u64) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let m = fs::symlink_metadata(path).unwrap();
    m.file_type().is_char_device() && m.rdev() == rdev
}

#[test]
fn devices_pipes_and_links_are_written_through_not_replaced() {
    if !require_root() || !require_all(&["mknod", "mkfifo"]) {
        return;
    }
    let tmp = tempdir("atomic");
    let root = random_rootfs(tmp.path(), 1);
    let want = tmp.path().join("want.tar");
    let out = build(&root, &["-o", want.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = fs::read(&want).unwrap();

    // Device nodes of our own (never the host's /dev: before the fix a
    // build renamed a file over them).
    let null = tmp.path().join("null");
    char_device(&null, 1, 3);
    let out = build(&root, &["-o", null.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        is_char_device(&null, libc::makedev(1, 3)),
        "null is still a device"
    );
    let full = tmp.path().join("full");
    char_device(&full, 1, 7);
    let out = build(&root, &["-o", full.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("No space left on device") && err.lines().count() == 1,
        "{err}"
    );
    assert!(
        is_char_device(&full, libc::makedev(1, 7)),
        "full is still a device"
    );

    // A FIFO gets the archive's bytes and stays a FIFO.
    let fifo = tmp.path().join("fifo");
    run_ok(Command::new("mkfifo").arg(&fifo));
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::read(fifo).unwrap())
    };
    let out = build(&root, &["-o", fifo.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(reader.join().unwrap() == want, "the FIFO got the archive");
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());

    // A symlink to /proc/self/fd/1 (what /dev/stdout is) writes to stdout.
    let stdout = tmp.path().join("stdout");
    std::os::unix::fs::symlink("/proc/self/fd/1", &stdout).unwrap();
    let out = build(&root, &["-o", stdout.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == want, "stdout got the archive");
    assert!(out.stderr.is_empty(), "-q: nothing on stderr");
    assert!(
        fs::symlink_metadata(&stdout)
            .unwrap()
            .file_type()
            .is_symlink()
    );

    // A symlink to a regular file: the file is replaced, the link stays.
    let real = tmp.path().join("real.tar");
    fs::write(&real, b"old").unwrap();
    let link = tmp.path().join("link.tar");
    std::os::unix::fs::symlink("real.tar", &link).unwrap();
    let out = build(&root, &["-o", link.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        fs::read(&real).unwrap() == want,
        "the link's target was replaced"
    );
}

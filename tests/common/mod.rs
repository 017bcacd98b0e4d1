//! Support code for rustimage's integration tests that drive real container
//! clients (docker, podman, skopeo, umoci, oci-image-tool) and pseudo.
//!
//! Use it from a test file with `mod common;`. Everything here panics with a
//! readable message instead of returning errors: a failing helper is a
//! failing test. See `tests/HARNESS.md` for the commands and quirks found on
//! this machine (Debian 12, running as root).

// Each test binary uses a different subset of these helpers. Test support
// code panics on purpose (a failing helper is a failing test), so the
// crate's no-unwrap lints do not apply here.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod registry;
use std::borrow::BorrowMut;
use std::collections::{BTreeMap, HashMap};
use std::ffi::{CString, OsStr};
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------
// Tool discovery and skipping
// ---------------------------------------------------------------------------

fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Full path of `tool` if it is an executable on PATH (or an executable
/// path, when `tool` contains a slash).
pub fn which(tool: &str) -> Option<PathBuf> {
    let is_exec = |p: &Path| {
        fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if tool.contains('/') {
        return is_exec(Path::new(tool)).then(|| PathBuf::from(tool));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| is_exec(p))
}

/// True if `tool` is on PATH. When it is missing, a test must return early:
/// outside CI this prints a `SKIP:` line; with `CI=true` it panics, because
/// CI must never silently skip the real-client tests.
pub fn require(tool: &str) -> bool {
    if which(tool).is_some() {
        return true;
    }
    if in_ci() {
        panic!("CI=true and {tool} is missing: .ci/run must install it");
    }
    skip(&format!("{tool} is not on PATH"));
    false
}

/// What a `build --json` summary says of an image: its manifest digest
/// and each layer's digest and diff_id. Panics unless all are there and
/// well formed, so comparing two summaries can't pass on two blanks.
pub fn image_digests(summary: &serde_json::Value) -> (String, Vec<(String, String)>) {
    let digest = |v: &serde_json::Value, what: &str| -> String {
        let s = v
            .as_str()
            .unwrap_or_else(|| panic!("no {what} in {summary}"));
        assert!(
            s.len() == 71 && s.starts_with("sha256:"),
            "{what} '{s}' is not a digest"
        );
        s.to_string()
    };
    let layers: Vec<(String, String)> = summary["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("no layers in {summary}"))
        .iter()
        .map(|l| {
            (
                digest(&l["digest"], "layer digest"),
                digest(&l["diff_id"], "diff_id"),
            )
        })
        .collect();
    assert!(!layers.is_empty(), "no layers in {summary}");
    (digest(&summary["manifest"], "manifest digest"), layers)
}

/// Records that the running test did not run its checks (outside CI only):
/// a `SKIP:` line on stderr, which cargo hides for a passing test, and a
/// line in `$RUSTIMAGE_SKIPPED` that scripts/test prints at the end.
pub fn skip(why: &str) {
    let test = thread::current().name().unwrap_or("a test").to_string();
    eprintln!("SKIP: {test}: {why}");
    if let Some(log) = std::env::var_os("RUSTIMAGE_SKIPPED") {
        let line = format!("{} {test}: {why}\n", env!("CARGO_CRATE_NAME"));
        let _ = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .and_then(|mut f| f.write_all(line.as_bytes()));
    }
}

/// True if python3 can import `module` (a validator from PyPI that
/// scripts/install-deps installs). Same skip/panic policy as [`require`].
pub fn require_python(module: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return true;
    }
    if in_ci() {
        panic!("CI=true and the Python module {module} is missing: .ci/run must install it");
    }
    skip(&format!("the Python module {module} is not installed"));
    false
}

/// True if running as root (needed for devices, chown, trusted.* xattrs and
/// for the daemons). Same skip/panic policy as [`require`].
pub fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if in_ci() {
        panic!("CI=true and the tests are not running as root: .ci/run must run them as root");
    }
    skip("this test needs root");
    false
}

/// `require_root()` and `require()` for every tool, in one call.
pub fn require_all(tools: &[&str]) -> bool {
    require_root() && tools.iter().all(|t| require(t))
}

// ---------------------------------------------------------------------------
// Running commands
// ---------------------------------------------------------------------------

/// A temporary directory named after the test file (`rustimage-NAME-`),
/// removed when dropped.
pub fn tempdir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("rustimage-{name}-"))
        .tempdir()
        .unwrap()
}

/// Paths `docker create` + `docker export` add to every image (Docker's
/// init layer and .dockerenv); compare exports without them.
pub const DOCKER_ADDS: [&str; 10] = [
    ".dockerenv",
    "dev/console",
    "dev/pts",
    "dev/shm",
    "etc/hostname",
    "etc/hosts",
    "etc/mtab",
    "etc/resolv.conf",
    "proc",
    "sys",
];

/// The root filesystem of `image` as a container of the private engine
/// sees it: created (not started), exported and extracted under `dir`.
pub fn docker_export_tree(docker: &Docker, image: &str, dir: &Path) -> Tree {
    let id = run_stdout(docker.docker(["create", image, "/nonexistent"]));
    let exported = dir.join("docker-export.tar");
    run_ok(docker.docker(["export", "-o"]).arg(&exported).arg(&id));
    run_ok(docker.docker(["rm", &id]));
    let dest = dir.join("docker-rootfs");
    make_root_dir(&dest);
    extract_tar(&exported, &dest);
    snapshot(&dest)
}

/// An OE-like build output in `dir` from example/make-deploy.py (with
/// `args`); returns its tmp/deploy.
pub fn make_deploy(dir: &Path, args: &[&str]) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("example/make-deploy.py");
    run_ok(Command::new("python3").arg(script).arg(dir).args(args));
    dir.join("tmp/deploy")
}

/// The example image's name and machine (make-deploy.py's defaults).
pub const IMAGE: &str = "core-image-minimal";
pub const MACHINE: &str = "qemux86-64";

/// `rustimage build --json` of the example image from a deploy dir; add
/// outputs and flags.
pub fn build_deploy_cmd(deploy: &Path) -> Command {
    let mut cmd = rustimage();
    cmd.args([
        "build",
        "--json",
        "--image",
        IMAGE,
        "--machine",
        MACHINE,
        "--deploy-dir",
    ])
    .arg(deploy);
    cmd
}

/// The rustimage binary built by cargo for this test run.
pub fn rustimage() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rustimage"))
}

fn output_of(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn dump(cmd: &Command, out: &Output) {
    eprintln!("command: {cmd:?}\nstatus: {}", out.status);
    eprintln!("--- stdout ---\n{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("--- stderr ---\n{}", String::from_utf8_lossy(&out.stderr));
}

/// Runs `cmd` to completion and returns its output; panics (after printing
/// stdout and stderr) unless it exits with status 0. Takes `&mut Command`
/// or an owned `Command`.
pub fn run_ok(mut cmd: impl BorrowMut<Command>) -> Output {
    let cmd = cmd.borrow_mut();
    let out = output_of(cmd);
    if !out.status.success() {
        dump(cmd, &out);
        panic!("command failed ({}): {cmd:?}", out.status);
    }
    out
}

/// Runs `cmd` to completion and returns its output; panics (after printing
/// stdout and stderr) if it exits with status 0.
pub fn run_fail(mut cmd: impl BorrowMut<Command>) -> Output {
    let cmd = cmd.borrow_mut();
    let out = output_of(cmd);
    if out.status.success() {
        dump(cmd, &out);
        panic!("command unexpectedly succeeded: {cmd:?}");
    }
    out
}

/// [`run_ok`] and return stdout as a trimmed string.
pub fn run_stdout(cmd: impl BorrowMut<Command>) -> String {
    let out = run_ok(cmd);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn cstring(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("path contains a NUL byte")
}

fn check_libc(rc: libc::c_int, what: &str, path: &Path) {
    if rc != 0 {
        panic!("{what} {}: {}", path.display(), io::Error::last_os_error());
    }
}

// ---------------------------------------------------------------------------
// The test root filesystem
// ---------------------------------------------------------------------------

/// mtime given to every entry of [`make_rootfs`] (2023-11-14T22:13:20Z), so
/// the tree, mtimes included, is the same on every call.
pub const ROOTFS_MTIME: i64 = 1_700_000_000;
/// mtime of `etc/future` (2100-01-01T00:00:00Z).
pub const FUTURE_MTIME: i64 = 4_102_444_800;
/// mtime of `etc/ancient` (one second after the epoch).
pub const ANCIENT_MTIME: i64 = 1;

/// `security.capability` value for `cap_net_raw+ep`: a VFS_CAP_REVISION_2
/// blob (magic 0x02000000 | VFS_CAP_FLAGS_EFFECTIVE, permitted bit 13).
pub const CAP_NET_RAW_EP: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, // magic_etc, little endian
    0x00, 0x20, 0x00, 0x00, // permitted[0]: 1 << CAP_NET_RAW (13)
    0x00, 0x00, 0x00, 0x00, // inheritable[0]
    0x00, 0x00, 0x00, 0x00, // permitted[1]
    0x00, 0x00, 0x00, 0x00, // inheritable[1]
];

/// Non-UTF-8 file name used in the rootfs (under `etc/`).
pub const NON_UTF8_NAME: &[u8] = b"\xff\xfename";

/// The three names of the hardlink group in the rootfs.
pub const HARDLINKS: [&str; 3] = ["sbin/hl-tool", "usr/bin/hl-tool", "usr/lib/libhl.so.1"];

fn at(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(rel))
}

/// lchown then chmod: chmod must come second because chown clears the
/// setuid/setgid bits (and security.capability) of a file.
fn own(path: &Path, mode: u32, uid: u32, gid: u32) {
    lchown(path, uid, gid);
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

fn mkdir(root: &Path, rel: &str, mode: u32, uid: u32, gid: u32) {
    let path = at(root, rel.as_bytes());
    fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
    own(&path, mode, uid, gid);
}

fn file(root: &Path, rel: &[u8], content: &[u8], mode: u32, uid: u32, gid: u32) {
    let path = at(root, rel);
    fs::write(&path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    own(&path, mode, uid, gid);
}

fn lchown(path: &Path, uid: u32, gid: u32) {
    // SAFETY: valid NUL-terminated path.
    let rc = unsafe { libc::lchown(cstring(path).as_ptr(), uid, gid) };
    check_libc(rc, "lchown", path);
}

/// A symlink owned by 0:0 (its mode is always 0777 on Linux).
fn link(root: &Path, rel: &str, target: &[u8]) {
    let path = at(root, rel.as_bytes());
    symlink(OsStr::from_bytes(target), &path)
        .unwrap_or_else(|e| panic!("symlink {}: {e}", path.display()));
    lchown(&path, 0, 0);
}

fn hardlink(root: &Path, existing: &str, new: &str) {
    let (a, b) = (at(root, existing.as_bytes()), at(root, new.as_bytes()));
    fs::hard_link(&a, &b).unwrap_or_else(|e| panic!("link {}: {e}", b.display()));
}

/// mknod, then [`own`]: mknod's mode is filtered by the umask.
fn node(root: &Path, rel: &str, kind: libc::mode_t, mode: u32, dev: (u32, u32), owner: (u32, u32)) {
    let path = at(root, rel.as_bytes());
    let rdev = libc::makedev(dev.0, dev.1);
    // SAFETY: valid NUL-terminated path.
    check_libc(
        unsafe { libc::mknod(cstring(&path).as_ptr(), kind | 0o600, rdev) },
        "mknod",
        &path,
    );
    own(&path, mode, owner.0, owner.1);
}

/// Sets an extended attribute without following symlinks.
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let name_c = CString::new(name).unwrap();
    // SAFETY: valid path and name; value pointer/length describe a live slice.
    let rc = unsafe {
        libc::lsetxattr(
            cstring(path).as_ptr(),
            name_c.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    check_libc(rc, &format!("lsetxattr {name}"), path);
}

/// Sets atime and mtime (whole seconds) without following symlinks.
pub fn set_mtime(path: &Path, secs: i64) {
    let ts = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: 0,
    };
    let times = [ts, ts];
    // SAFETY: valid path; `times` has the two entries utimensat reads.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            cstring(path).as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    check_libc(rc, "utimensat", path);
}

/// Deterministic bytes that look like the start of an ELF binary followed by
/// every byte value, NULs and invalid UTF-8 included.
fn binary_content(len: usize) -> Vec<u8> {
    let mut v = b"\x7fELF\x02\x01\x01\x00".to_vec();
    v.extend((0..=255u8).cycle().take(len.saturating_sub(v.len())));
    v
}

/// A path longer than 100 bytes (ustar's name field) under `opt/long/`.
pub fn long_path() -> String {
    format!(
        "opt/long/{}/{}/file-over-100-bytes",
        "d".repeat(60),
        "e".repeat(60)
    )
}

/// A path longer than 255 bytes made of nested directories under `opt/deep/`.
pub fn deep_path() -> String {
    let dirs: Vec<String> = (0..4).map(|i| format!("{i}{}", "x".repeat(69))).collect();
    format!("opt/deep/{}/file-over-255-bytes", dirs.join("/"))
}

/// A single file name of 150 bytes (over ustar's 100-byte name field).
pub fn long_name() -> String {
    format!("opt/long/{}", "n".repeat(150))
}

/// Builds the test root filesystem in `root` (created if needed; must be
/// empty). Needs root. The result is the same on every call, mtimes
/// included, so two calls give equal [`snapshot_with_mtime`]s.
///
/// It contains: directories with modes 0700, 0750 (1000:1000), 1777, 2755;
/// files owned 1000:1000 and 0:5; setuid 4755 and setgid 2755 files; an empty
/// file; binary content; a 3 MiB sparse file; a hardlink group of 3 names in
/// different directories; absolute, relative, dangling and >100-byte-target
/// symlinks; char and block devices; a fifo; xattrs (security.capability,
/// user.*, trusted.*, also on a directory); UTF-8 and non-UTF-8 names; an
/// empty directory; paths over 100 and 255 bytes; future and ancient mtimes.
pub fn make_rootfs(root: &Path) {
    fs::create_dir_all(root).unwrap_or_else(|e| panic!("mkdir {}: {e}", root.display()));
    own(root, 0o755, 0, 0);
    make_dirs(root);
    make_files(root);
    make_special_files(root);
    make_links(root);
    make_long_paths(root);
    make_xattrs(root);
    set_all_mtimes(root, ROOTFS_MTIME);
    set_mtime(&root.join("etc/future"), FUTURE_MTIME);
    set_mtime(&root.join("etc/ancient"), ANCIENT_MTIME);
}

fn make_dirs(root: &Path) {
    for (dir, mode, uid, gid) in [
        ("bin", 0o755, 0, 0),
        ("dev", 0o755, 0, 0),
        ("etc", 0o755, 0, 0),
        ("etc/xattr-dir", 0o755, 0, 0),
        ("home", 0o755, 0, 0),
        ("home/user", 0o750, 1000, 1000),
        ("mnt", 0o755, 0, 0), // stays empty
        ("opt", 0o755, 0, 0),
        ("root", 0o700, 0, 0),
        ("sbin", 0o755, 0, 0),
        ("tmp", 0o1777, 0, 0),
        ("usr", 0o755, 0, 0),
        ("usr/bin", 0o755, 0, 0),
        ("usr/lib", 0o755, 0, 0),
        ("var", 0o755, 0, 0),
        ("var/mail", 0o2755, 0, 8),
    ] {
        mkdir(root, dir, mode, uid, gid);
    }
}

fn make_files(root: &Path) {
    let passwd = b"root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n";
    file(root, b"etc/passwd", passwd, 0o644, 0, 0);
    file(
        root,
        b"etc/group",
        b"root:x:0:\ntty:x:5:\nmail:x:8:\nuser:x:1000:\n",
        0o644,
        0,
        0,
    );
    file(root, b"etc/motd", b"", 0o644, 0, 0); // empty file
    file(root, "etc/ünïcödé".as_bytes(), b"unicode\n", 0o644, 0, 0);
    file(
        root,
        &[b"etc/", NON_UTF8_NAME].concat(),
        b"latin1\n",
        0o644,
        0,
        0,
    );
    file(root, b"etc/future", b"future\n", 0o644, 0, 0);
    file(root, b"etc/ancient", b"ancient\n", 0o644, 0, 0);
    file(root, b"bin/busybox", &binary_content(8192), 0o755, 0, 0);
    file(root, b"bin/su", &binary_content(512), 0o4755, 0, 0);
    file(root, b"usr/bin/wall", &binary_content(300), 0o2755, 0, 5);
    file(root, b"usr/bin/ping", &binary_content(700), 0o755, 0, 0);
    file(
        root,
        b"home/user/.profile",
        b"export PS1='$ '\n",
        0o644,
        1000,
        1000,
    );
    file(root, b"home/user/notes", b"private\n", 0o600, 1000, 1000);
    file(
        root,
        b"usr/lib/libhl.so.1",
        &binary_content(1000),
        0o755,
        0,
        0,
    );
    make_sparse(&root.join("var/sparse.img"));
}

/// 3 MiB file that is mostly holes, with data at 0, 1 MiB and the end.
fn make_sparse(path: &Path) {
    const MIB: u64 = 1 << 20;
    let mut f = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.set_len(3 * MIB).unwrap();
    for (offset, data) in [
        (0, &b"start"[..]),
        (MIB, b"middle"),
        (3 * MIB - 4, b"end\n"),
    ] {
        f.seek(SeekFrom::Start(offset)).unwrap();
        f.write_all(data).unwrap();
    }
    drop(f);
    own(path, 0o644, 0, 0);
}

fn make_special_files(root: &Path) {
    node(root, "dev/null", libc::S_IFCHR, 0o666, (1, 3), (0, 0));
    node(root, "dev/zero", libc::S_IFCHR, 0o666, (1, 5), (0, 0));
    node(root, "dev/tty", libc::S_IFCHR, 0o666, (5, 0), (0, 5));
    node(root, "dev/ttyS0", libc::S_IFCHR, 0o660, (4, 64), (0, 20));
    node(root, "dev/sda", libc::S_IFBLK, 0o660, (8, 0), (0, 6));
    node(root, "dev/initctl", libc::S_IFIFO, 0o600, (0, 0), (0, 0));
}

fn make_links(root: &Path) {
    hardlink(root, HARDLINKS[2], HARDLINKS[1]);
    hardlink(root, HARDLINKS[2], HARDLINKS[0]);
    link(root, "bin/sh", b"busybox"); // relative, same dir
    link(root, "usr/bin/env", b"/bin/busybox"); // absolute
    link(root, "usr/lib/libhl.so", b"../lib/libhl.so.1"); // relative with ..
    link(root, "lib", b"usr/lib"); // symlink to a directory
    link(root, "etc/localtime", b"/usr/share/zoneinfo/UTC"); // dangling
}

fn make_long_paths(root: &Path) {
    for rel in [long_path(), deep_path()] {
        let parent = Path::new(&rel)
            .parent()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        mkdir(root, &parent, 0o755, 0, 0);
        file(root, rel.as_bytes(), b"long path\n", 0o644, 0, 0);
    }
    file(root, long_name().as_bytes(), b"long name\n", 0o644, 0, 0);
    // Absolute target of more than 100 bytes (ustar's linkname field).
    link(
        root,
        "etc/long-target",
        format!("/{}", deep_path()).as_bytes(),
    );
}

fn make_xattrs(root: &Path) {
    // After all chown/chmod: chown would clear security.capability.
    set_xattr(
        &root.join("usr/bin/ping"),
        "security.capability",
        &CAP_NET_RAW_EP,
    );
    let f = root.join("etc/xattrs");
    fs::write(&f, b"xattrs\n").unwrap();
    own(&f, 0o644, 0, 0);
    set_xattr(&f, "user.foo", b"bar");
    set_xattr(&f, "trusted.x", b"y");
    set_xattr(&root.join("etc/xattr-dir"), "user.dir", b"yes");
}

fn set_all_mtimes(dir: &Path, secs: i64) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            set_all_mtimes(&path, secs);
        }
        set_mtime(&path, secs);
    }
    set_mtime(dir, secs);
}

/// A rootfs that can run host binaries when the host's /usr is bind-mounted
/// read-only at /usr (`-v /usr:/usr:ro`): Debian 12 is merged-/usr, so
/// bin, sbin, lib and lib64 are symlinks into usr. Used to check that a
/// runtime can start containers at all.
pub fn make_host_usr_rootfs(root: &Path) {
    fs::create_dir_all(root).unwrap();
    own(root, 0o755, 0, 0);
    for dir in ["usr", "etc", "tmp", "dev", "proc", "sys"] {
        mkdir(root, dir, 0o755, 0, 0);
    }
    for name in ["bin", "sbin", "lib", "lib64"] {
        link(root, name, format!("usr/{name}").as_bytes());
    }
}

// ---------------------------------------------------------------------------
// Snapshots of a tree and comparison
// ---------------------------------------------------------------------------

/// Type of a filesystem entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Char,
    Block,
    Fifo,
    Socket,
}

/// Everything the tests compare about one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Size of regular files; 0 for everything else.
    pub size: u64,
    /// Hex SHA-256 of a regular file's content.
    pub sha256: Option<String>,
    /// Symlink target bytes.
    pub target: Option<Vec<u8>>,
    /// (major, minor) of char and block devices.
    pub rdev: Option<(u32, u32)>,
    /// All extended attributes, name -> value.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// For a non-directory linked under several paths of the tree: the
    /// smallest of those paths, so equal link structure compares equal.
    pub link_group: Option<Vec<u8>>,
    /// Seconds; only filled by [`snapshot_with_mtime`].
    pub mtime: Option<i64>,
}

/// Path relative to the snapshot root (the root itself is `b""`) -> node.
pub type Tree = BTreeMap<Vec<u8>, Node>;

/// Snapshot of `dir` without mtimes.
pub fn snapshot(dir: &Path) -> Tree {
    snapshot_impl(dir, false)
}

/// Snapshot of `dir` with mtimes (seconds).
pub fn snapshot_with_mtime(dir: &Path) -> Tree {
    snapshot_impl(dir, true)
}

fn snapshot_impl(dir: &Path, with_mtime: bool) -> Tree {
    let mut tree = Tree::new();
    let mut inodes: HashMap<(u64, u64), Vec<Vec<u8>>> = HashMap::new();
    visit(dir, Vec::new(), with_mtime, &mut tree, &mut inodes);
    for paths in inodes.values().filter(|p| p.len() > 1) {
        let first = paths.iter().min().unwrap().clone();
        for p in paths {
            tree.get_mut(p).unwrap().link_group = Some(first.clone());
        }
    }
    tree
}

fn visit(
    root: &Path,
    rel: Vec<u8>,
    with_mtime: bool,
    tree: &mut Tree,
    inodes: &mut HashMap<(u64, u64), Vec<Vec<u8>>>,
) {
    let path = at(root, &rel);
    let meta =
        fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
    let node = make_node(&path, &meta, with_mtime);
    if node.kind != Kind::Dir && meta.nlink() > 1 {
        inodes
            .entry((meta.dev(), meta.ino()))
            .or_default()
            .push(rel.clone());
    }
    let is_dir = node.kind == Kind::Dir;
    tree.insert(rel.clone(), node);
    if !is_dir {
        return;
    }
    for entry in fs::read_dir(&path).unwrap_or_else(|e| panic!("readdir {}: {e}", path.display())) {
        let name = entry.unwrap().file_name();
        let child = if rel.is_empty() {
            name.as_bytes().to_vec()
        } else {
            [&rel[..], b"/", name.as_bytes()].concat()
        };
        visit(root, child, with_mtime, tree, inodes);
    }
}

fn make_node(path: &Path, meta: &fs::Metadata, with_mtime: bool) -> Node {
    let ft = meta.file_type();
    let kind = kind_of(&ft);
    let dev = meta.rdev();
    Node {
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        size: if kind == Kind::File { meta.len() } else { 0 },
        sha256: (kind == Kind::File).then(|| sha256_file(path)),
        target: (kind == Kind::Symlink)
            .then(|| fs::read_link(path).unwrap().as_os_str().as_bytes().to_vec()),
        rdev: matches!(kind, Kind::Char | Kind::Block)
            .then(|| (libc::major(dev), libc::minor(dev))),
        xattrs: read_xattrs(path),
        link_group: None,
        mtime: with_mtime.then(|| meta.mtime()),
    }
}

fn kind_of(ft: &fs::FileType) -> Kind {
    if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File
    } else if ft.is_char_device() {
        Kind::Char
    } else if ft.is_block_device() {
        Kind::Block
    } else if ft.is_fifo() {
        Kind::Fifo
    } else {
        Kind::Socket
    }
}

/// Hex SHA-256 of a byte slice.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Hex SHA-256 of a file's content (streamed).
pub fn sha256_file(path: &Path) -> String {
    let mut f = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// All extended attributes of `path` (not following symlinks).
pub fn read_xattrs(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let c = cstring(path);
    let names = xattr_call(|buf, len| unsafe {
        // SAFETY: buf/len describe a writable buffer (or null/0 to size it).
        libc::llistxattr(c.as_ptr(), buf.cast(), len)
    })
    .unwrap_or_else(|e| panic!("llistxattr {}: {e}", path.display()));
    let mut out = BTreeMap::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name_c = CString::new(name).unwrap();
        let value = xattr_call(|buf, len| unsafe {
            // SAFETY: as above.
            libc::lgetxattr(c.as_ptr(), name_c.as_ptr(), buf.cast(), len)
        })
        .unwrap_or_else(|e| panic!("lgetxattr {}: {e}", path.display()));
        out.insert(name.to_vec(), value);
    }
    out
}

/// Calls a size-then-fill xattr function, retrying if the value grew.
fn xattr_call(f: impl Fn(*mut u8, usize) -> isize) -> io::Result<Vec<u8>> {
    loop {
        let size = f(std::ptr::null_mut(), 0);
        if size < 0 {
            let err = io::Error::last_os_error();
            // Filesystems without xattr support have no xattrs.
            return match err.raw_os_error() {
                Some(libc::ENOTSUP) => Ok(Vec::new()),
                _ => Err(err),
            };
        }
        let mut buf = vec![0u8; size as usize];
        let n = f(buf.as_mut_ptr(), buf.len());
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(buf);
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::ERANGE) {
            return Err(io::Error::last_os_error());
        }
    }
}

/// Printable form of a path or value: UTF-8 as is, otherwise escaped.
pub fn show(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.chars().any(char::is_control) => s.to_string(),
        _ => bytes.escape_ascii().to_string(),
    }
}

fn show_opt(v: &Option<Vec<u8>>) -> String {
    v.as_deref().map_or("-".to_string(), show)
}

/// Human-readable differences from `a` to `b`: `- path` only in `a`,
/// `+ path` only in `b`, `~ path: field a -> b` for changed fields.
/// mtimes are compared only when both sides have them.
pub fn diff(a: &Tree, b: &Tree) -> Vec<String> {
    let mut out = Vec::new();
    for (path, na) in a {
        match b.get(path) {
            None => out.push(format!("- {} ({:?})", show_path(path), na.kind)),
            Some(nb) => diff_node(path, na, nb, &mut out),
        }
    }
    for (path, nb) in b.iter().filter(|(p, _)| !a.contains_key(*p)) {
        out.push(format!("+ {} ({:?})", show_path(path), nb.kind));
    }
    out
}

fn show_path(path: &[u8]) -> String {
    if path.is_empty() {
        "<root>".to_string()
    } else {
        show(path)
    }
}

fn diff_node(path: &[u8], a: &Node, b: &Node, out: &mut Vec<String>) {
    let mut field = |name: &str, x: String, y: String| {
        if x != y {
            out.push(format!("~ {}: {name} {x} -> {y}", show_path(path)));
        }
    };
    field("kind", format!("{:?}", a.kind), format!("{:?}", b.kind));
    field("mode", format!("{:04o}", a.mode), format!("{:04o}", b.mode));
    field(
        "owner",
        format!("{}:{}", a.uid, a.gid),
        format!("{}:{}", b.uid, b.gid),
    );
    field("size", a.size.to_string(), b.size.to_string());
    field(
        "sha256",
        format!("{:?}", a.sha256),
        format!("{:?}", b.sha256),
    );
    field("target", show_opt(&a.target), show_opt(&b.target));
    field("rdev", format!("{:?}", a.rdev), format!("{:?}", b.rdev));
    field(
        "hardlink group",
        show_opt(&a.link_group),
        show_opt(&b.link_group),
    );
    if let (Some(x), Some(y)) = (a.mtime, b.mtime) {
        field("mtime", x.to_string(), y.to_string());
    }
    diff_xattrs(path, &a.xattrs, &b.xattrs, out);
}

fn diff_xattrs(
    path: &[u8],
    a: &BTreeMap<Vec<u8>, Vec<u8>>,
    b: &BTreeMap<Vec<u8>, Vec<u8>>,
    out: &mut Vec<String>,
) {
    let names: std::collections::BTreeSet<_> = a.keys().chain(b.keys()).collect();
    for name in names {
        let (x, y) = (a.get(name), b.get(name));
        if x != y {
            let fmt = |v: Option<&Vec<u8>>| v.map_or("<absent>".to_string(), |v| show(v));
            out.push(format!(
                "~ {}: xattr {} {} -> {}",
                show_path(path),
                show(name),
                fmt(x),
                fmt(y)
            ));
        }
    }
}

/// True if `path` is covered by one of the `ignore` prefixes: a prefix
/// ending in `/` covers what is below that directory (not the directory
/// itself); any other prefix covers that exact path and everything below.
pub fn is_ignored(path: &[u8], ignore: &[&str]) -> bool {
    ignore.iter().any(|prefix| {
        let p = prefix.as_bytes();
        if p.ends_with(b"/") {
            path.starts_with(p)
        } else {
            path == p || (path.starts_with(p) && path.get(p.len()) == Some(&b'/'))
        }
    })
}

/// `tree` without the entries covered by `ignore` (see [`is_ignored`]).
/// Hardlink groups are recomputed over the remaining paths.
pub fn filter_tree(tree: &Tree, ignore: &[&str]) -> Tree {
    let mut out: Tree = tree
        .iter()
        .filter(|(p, _)| !is_ignored(p, ignore))
        .map(|(p, n)| (p.clone(), n.clone()))
        .collect();
    regroup_links(&mut out);
    out
}

fn regroup_links(tree: &mut Tree) {
    let mut groups: BTreeMap<Vec<u8>, Vec<Vec<u8>>> = BTreeMap::new();
    for (p, n) in tree.iter() {
        if let Some(g) = &n.link_group {
            groups.entry(g.clone()).or_default().push(p.clone());
        }
    }
    for members in groups.into_values() {
        let first = members.iter().min().cloned();
        let single = members.len() < 2;
        for m in members {
            tree.get_mut(&m).unwrap().link_group = if single { None } else { first.clone() };
        }
    }
}

/// Keeps only the xattrs whose name satisfies `keep`, in every node.
pub fn retain_xattrs(tree: &mut Tree, keep: impl Fn(&[u8]) -> bool) {
    for node in tree.values_mut() {
        node.xattrs.retain(|name, _| keep(name));
    }
}

/// Panics, listing every difference, unless `expected` and `actual` are the
/// same once the paths covered by `ignore` are removed from both.
pub fn assert_same_tree(expected: &Tree, actual: &Tree, ignore: &[&str]) {
    let d = diff(&filter_tree(expected, ignore), &filter_tree(actual, ignore));
    if !d.is_empty() {
        panic!(
            "trees differ ({} differences; - expected only, + actual only):\n{}",
            d.len(),
            d.join("\n")
        );
    }
}

// ---------------------------------------------------------------------------
// Tarballs made and read by GNU tar
// ---------------------------------------------------------------------------

/// The compressions accepted by [`make_tarball`].
pub const COMPRESSIONS: [&str; 5] = ["none", "gzip", "bzip2", "xz", "zstd"];

/// Usual file name suffix for a tarball with `compression`.
pub fn tarball_suffix(compression: &str) -> &'static str {
    match compression {
        "none" => ".tar",
        "gzip" => ".tar.gz",
        "bzip2" => ".tar.bz2",
        "xz" => ".tar.xz",
        "zstd" => ".tar.zst",
        other => panic!("unknown compression {other}"),
    }
}

fn compressor(compression: &str) -> Option<Command> {
    let argv: &[&str] = match compression {
        "none" => return None,
        "gzip" => &["gzip", "-9", "-n", "-c"],
        // pbzip2 compresses each 900 kB block as its own bzip2 stream, so the
        // file is multi-stream like OpenEmbedded's tar.bz2 images.
        "bzip2" => &["pbzip2", "-c"],
        "xz" => &["xz", "-c"],
        "zstd" => &["zstd", "-3", "-c", "-q"],
        other => panic!("unknown compression {other}"),
    };
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]);
    Some(cmd)
}

/// GNU tar invocation used by OpenEmbedded's image_types.bbclass.
fn oe_tar(rootfs: &Path) -> Command {
    let mut tar = Command::new("tar");
    tar.args([
        "--sort=name",
        "--format=posix",
        "--pax-option=delete=atime,delete=ctime",
        "--numeric-owner",
        "--xattrs",
        "--xattrs-include=*",
        "-cf",
        "-",
        "-C",
    ])
    .arg(rootfs)
    .arg(".");
    tar
}

/// Archives `rootfs` into `out` the way OpenEmbedded does (GNU tar, POSIX
/// format, all xattrs, numeric owners) piped through `compression`, one of
/// [`COMPRESSIONS`].
pub fn make_tarball(rootfs: &Path, out: &Path, compression: &str) {
    let out_file = File::create(out).unwrap_or_else(|e| panic!("create {}: {e}", out.display()));
    let mut tar = oe_tar(rootfs);
    let Some(mut comp) = compressor(compression) else {
        tar.stdout(out_file);
        run_ok(&mut tar);
        return;
    };
    tar.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut tar_child = tar.spawn().unwrap_or_else(|e| panic!("spawn {tar:?}: {e}"));
    comp.stdin(tar_child.stdout.take().unwrap())
        .stdout(out_file);
    let comp_out = comp
        .output()
        .unwrap_or_else(|e| panic!("run {comp:?}: {e}"));
    let tar_status = tar_child.wait().unwrap();
    assert!(tar_status.success(), "{tar:?} failed: {tar_status}");
    if !comp_out.status.success() {
        dump(&comp, &comp_out);
        panic!("{comp:?} failed: {}", comp_out.status);
    }
}

/// Extracts `tar` (any compression GNU tar detects) into the existing
/// directory `dest` as root, keeping owners (numeric), modes, xattrs.
///
/// The root directory's metadata comes from the archive's `./` entry if it
/// has one (GNU tar and docker save layers do; `docker export` and
/// `podman export` archives do not, so then `dest` keeps its own).
pub fn extract_tar(tar: &Path, dest: &Path) {
    run_ok(
        Command::new("tar")
            .args([
                "--xattrs",
                "--xattrs-include=*",
                "--numeric-owner",
                "-p",
                "-xf",
            ])
            .arg(tar)
            .arg("-C")
            .arg(dest),
    );
}

/// Creates `dir` (and parents) with mode 0755 owned by 0:0, the metadata of
/// a rootfs `/`; useful as [`extract_tar`] destination for archives without
/// a `./` entry.
pub fn make_root_dir(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    own(dir, 0o755, 0, 0);
}

// ---------------------------------------------------------------------------
// Processes that die with the test process
// ---------------------------------------------------------------------------

type SpawnJob = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` so that it gets SIGTERM when the test process dies, however
/// it dies (PR_SET_PDEATHSIG). The signal is sent when the *thread* that
/// forked the child ends, and libtest runs each test in a thread that ends
/// with the test, so all such children are forked by one dedicated thread
/// that lives as long as the process.
pub fn spawn_tied(mut cmd: Command) -> Child {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        thread::Builder::new()
            .name("tied-spawner".into())
            .spawn(move || {
                // Never returns: the Sender lives in a static.
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("cannot start the spawner thread");
        Mutex::new(tx)
    });
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure only calls async-signal-safe functions.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::raise(libc::SIGTERM);
            }
            Ok(())
        });
    }
    let desc = format!("{cmd:?}");
    let (tx, rx) = mpsc::channel();
    sender.lock().unwrap().send((cmd, tx)).unwrap();
    rx.recv()
        .unwrap()
        .unwrap_or_else(|e| panic!("spawn {desc}: {e}"))
}

/// SIGTERM, wait up to `grace`, then SIGKILL and reap.
pub(crate) fn terminate(child: &mut Child, grace: Duration) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    // SAFETY: plain kill(2) on our own child's pid, not yet reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Lazily unmounts every mount point at or below `dir` (deepest first).
/// Daemons killed hard leave such mounts behind (dockerd bind-mounts its
/// data root onto itself), and `remove_dir_all` cannot cross them.
pub fn unmount_under(dir: &Path) {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let dir = dir.as_os_str().as_bytes();
    let mut points: Vec<Vec<u8>> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|p| p == dir || (p.starts_with(dir) && p.get(dir.len()) == Some(&b'/')))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let c = CString::new(p).unwrap();
        // SAFETY: valid NUL-terminated path; failure is ignored on purpose.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).and_then(|o| {
            std::str::from_utf8(o)
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok())
        });
        match (b[i], octal) {
            (b'\\', Some(v)) => {
                out.push(v);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Unmounts what is left below `dir` and removes it, ignoring errors.
pub fn force_remove(dir: &Path) {
    unmount_under(dir);
    let _ = fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------------------
// A private Docker engine
// ---------------------------------------------------------------------------

const DOCKER_DIR_PREFIX: &str = "rustimage-dockerd-";

/// The Docker client to use: Debian's 20.10 `/usr/bin/docker`, matching the
/// daemon (the 28.x client in /usr/local/bin also works, but pins nothing).
pub fn docker_client() -> PathBuf {
    let debian = Path::new("/usr/bin/docker");
    if debian.exists() {
        debian.to_path_buf()
    } else {
        PathBuf::from("docker")
    }
}

/// A private dockerd with its own data root, exec root, socket, config
/// file and containerd namespace, using the vfs storage driver (no overlay
/// mounts, works anywhere) and no networking setup (no bridge, no
/// iptables, no ip_forward changes).
///
/// dockerd starts and manages its own containerd (socket under the exec
/// root); if a system containerd were running at the default socket,
/// dockerd would attach to it instead, which is why a unique
/// `--containerd-namespace` is always given.
///
/// `Docker::start()` gives an owned engine stopped by `Drop`; [`docker()`]
/// gives one engine shared by all tests of the process, stopped at exit.
pub struct Docker {
    dir: PathBuf,
    socket: PathBuf,
    daemon: Mutex<Option<Child>>,
    /// Time from spawn to the first successful `/_ping`.
    pub startup: Duration,
}

impl Docker {
    /// Starts a new private engine and waits (up to 60 s) until it answers.
    pub fn start() -> Docker {
        sweep_stale_docker_dirs();
        let dir = new_docker_dir();
        let socket = dir.join("docker.sock");
        fs::write(dir.join("daemon.json"), "{}\n").unwrap();
        let began = Instant::now();
        let mut child = spawn_tied(dockerd_command(&dir, &socket));
        if let Err(why) = wait_for_docker(&socket, &mut child, Duration::from_secs(60)) {
            terminate(&mut child, Duration::from_secs(10));
            let log = fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default();
            force_remove(&dir);
            panic!("dockerd did not start: {why}\n--- dockerd log ---\n{log}");
        }
        Docker {
            dir,
            socket,
            daemon: Mutex::new(Some(child)),
            startup: began.elapsed(),
        }
    }

    /// The Docker client talking to this engine, with `args` appended.
    pub fn docker<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(docker_client());
        // Own client config dir: ignore ~/.docker (contexts, cred helpers).
        cmd.env("DOCKER_CONFIG", self.dir.join("client"))
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args);
        cmd
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The engine's state directory (data root, exec root, log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The daemon's log so far (dockerd and its containerd).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    /// Stops the daemon (SIGTERM, 30 s grace, SIGKILL) and removes its
    /// directory. Idempotent.
    pub fn shutdown(&self) {
        if let Some(mut child) = self.daemon.lock().unwrap_or_else(|e| e.into_inner()).take() {
            terminate(&mut child, Duration::from_secs(30));
        }
        force_remove(&self.dir);
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The engine shared by every test of this process, started on first use.
///
/// Statics are never dropped, so it is stopped by an `atexit` handler when
/// the test binary exits normally (libtest calls exit() on success and
/// failure alike). If the process is killed instead, the daemon still gets
/// SIGTERM through PR_SET_PDEATHSIG (see [`spawn_tied`]) and shuts down
/// cleanly, and its directory is removed by the next `Docker::start()`.
/// Tests sharing it must use distinct image names.
pub fn docker() -> &'static Docker {
    static SHARED: OnceLock<Docker> = OnceLock::new();
    extern "C" fn stop_shared() {
        // Unwinding out of an extern "C" fn would abort: contain panics.
        let _ = std::panic::catch_unwind(|| {
            if let Some(d) = SHARED.get() {
                d.shutdown();
            }
        });
    }
    SHARED.get_or_init(|| {
        let d = Docker::start();
        eprintln!(
            "private dockerd ready in {:?} at {}",
            d.startup,
            d.socket.display()
        );
        // SAFETY: registering a plain function pointer.
        unsafe { libc::atexit(stop_shared) };
        d
    })
}

/// A fresh directory `/tmp/rustimage-dockerd-<pid>-<n>`: short, because
/// unix socket paths (docker.sock, containerd's sockets below exec/) must
/// stay under 108 bytes.
fn new_docker_dir() -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = PathBuf::from(format!(
        "/tmp/{DOCKER_DIR_PREFIX}{}-{n}",
        std::process::id()
    ));
    force_remove(&dir);
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// Removes directories left by test processes that no longer exist.
fn sweep_stale_docker_dirs() {
    let Ok(entries) = fs::read_dir("/tmp") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(DOCKER_DIR_PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        if !pid.is_empty() && !Path::new("/proc").join(pid).exists() {
            force_remove(&entry.path());
        }
    }
}

fn dockerd_command(dir: &Path, socket: &Path) -> Command {
    let ns = format!("rustimage-{}", dir.file_name().unwrap().to_string_lossy());
    let log = File::create(dir.join("dockerd.log")).unwrap();
    let mut cmd = Command::new("dockerd");
    cmd.arg("--config-file")
        .arg(dir.join("daemon.json"))
        .arg("--data-root")
        .arg(dir.join("data"))
        .arg("--exec-root")
        .arg(dir.join("exec"))
        .arg("--pidfile")
        .arg(dir.join("pid"))
        .arg("-H")
        .arg(format!("unix://{}", socket.display()))
        .args(["--storage-driver", "vfs"])
        .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
        .args(["--ip-forward=false", "--ip-masq=false"])
        .arg(format!("--containerd-namespace={ns}"))
        .arg(format!("--containerd-plugins-namespace={ns}-plugins"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        // Own process group: a terminal's Ctrl-C reaches only the tests,
        // and the daemon then gets its SIGTERM from PDEATHSIG.
        .process_group(0);
    cmd
}

/// Polls `GET /_ping` on the socket until it answers OK.
fn wait_for_docker(socket: &Path, child: &mut Child, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("dockerd exited: {status}"));
        }
        if ping(socket) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no answer on {} after {timeout:?}",
                socket.display()
            ));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn ping(socket: &Path) -> bool {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200")
}

// ---------------------------------------------------------------------------
// A private containerd (for `ctr images import`)
// ---------------------------------------------------------------------------

/// containerd on its own socket, root and state under
/// `/tmp/rustimage-ctrd-<pid>-<n>` (socket paths stay under 108 bytes),
/// with the CRI plugin off (it would set up networking) and nothing
/// listening on TCP. Stopped and removed on drop, and by PDEATHSIG.
pub struct Containerd {
    dir: PathBuf,
    socket: PathBuf,
    daemon: Mutex<Option<Child>>,
}

impl Containerd {
    /// Starts it and waits (up to 30 s) until `ctr version` answers.
    pub fn start() -> Containerd {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = PathBuf::from(format!("/tmp/rustimage-ctrd-{}-{n}", std::process::id()));
        force_remove(&dir);
        fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("c.sock");
        let d = dir.display();
        fs::write(
            dir.join("config.toml"),
            format!(
                "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{d}/c.sock\"\n[ttrpc]\n  address = \"{d}/c.sock.ttrpc\"\n\
                 [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n\
                 [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/opt\"\n"
            ),
        )
        .unwrap();
        let log = File::create(dir.join("containerd.log")).unwrap();
        let mut cmd = Command::new("containerd");
        cmd.arg("--config")
            .arg(dir.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0);
        let mut child = spawn_tied(cmd);
        let c = Containerd {
            dir,
            socket,
            daemon: Mutex::new(None),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("containerd exited: {status}\n{}", c.log());
            }
            let up = c.socket.exists()
                && c.ctr(["version"])
                    .output()
                    .is_ok_and(|o| o.status.success());
            if up {
                break;
            }
            if Instant::now() > deadline {
                terminate(&mut child, Duration::from_secs(5));
                panic!("containerd did not answer in 30 s\n{}", c.log());
            }
            thread::sleep(Duration::from_millis(100));
        }
        *c.daemon.lock().unwrap() = Some(child);
        c
    }

    /// `ctr` talking to it, in the namespace `rustimage`, with `args`.
    pub fn ctr<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(&self.socket)
            .args(["--namespace", "rustimage"])
            .args(args);
        cmd
    }

    /// `ctr images import --snapshotter native ARCHIVE`; then the names of
    /// every image it has.
    pub fn import(&self, archive: &Path) -> Vec<String> {
        run_ok(
            self.ctr(["images", "import", "--snapshotter", "native"])
                .arg(archive),
        );
        run_stdout(self.ctr(["images", "ls", "-q"]))
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.lock().unwrap_or_else(|e| e.into_inner()).take() {
            terminate(&mut child, Duration::from_secs(10));
        }
        force_remove(&self.dir);
    }
}

// ---------------------------------------------------------------------------
// Podman with isolated storage and configuration
// ---------------------------------------------------------------------------

/// Podman as root, with everything it keeps under `store`: images and
/// containers (`root/`, vfs driver), run state (`run/`), libpod tmp dir and
/// file locks (`tmp/`), events log, network configs. Config files written
/// into `store` replace the system ones, so /etc/containers does not matter:
///
/// - cgroupfs cgroup manager and a file events backend: no systemd here;
/// - runtime runc (Debian's podman prefers crun, which is not installed);
/// - `lock_type = "file"`: the default SHM lock segment (/dev/shm/libpod_lock)
///   is shared by every podman of the machine whatever its --root, and
///   separate stores sharing it corrupt each other's lock numbers;
/// - `default_ulimits` nofile and nproc = 1024: rootful podman otherwise asks
///   runc for RLIMIT_NPROC/NOFILE = 1048576, above this VM's hard limits,
///   and runc lacks CAP_SYS_RESOURCE (not in this sandbox's bounding set),
///   so every `podman run` fails with "error setting rlimit type 6";
/// - `netns = "none"`: a default bridge network would make netavark add
///   iptables chains and enable ip_forward on the host.
pub fn podman(store: &Path) -> Command {
    write_podman_config(store);
    let mut cmd = Command::new("podman");
    cmd.env("CONTAINERS_STORAGE_CONF", store.join("storage.conf"))
        .env("CONTAINERS_CONF", store.join("containers.conf"))
        .env("CONTAINERS_REGISTRIES_CONF", store.join("registries.conf"))
        .env_remove("CONTAINER_HOST")
        .arg("--root")
        .arg(store.join("root"))
        .arg("--runroot")
        .arg(store.join("run"))
        .arg("--tmpdir")
        .arg(store.join("tmp"))
        .args(["--storage-driver", "vfs"])
        .args(["--cgroup-manager", "cgroupfs"])
        .args(["--events-backend", "file"]);
    cmd
}

fn write_podman_config(store: &Path) {
    if store.join("containers.conf").exists() {
        return;
    }
    fs::create_dir_all(store).unwrap();
    let s = store.display();
    let storage =
        format!("[storage]\ndriver = \"vfs\"\ngraphroot = \"{s}/root\"\nrunroot = \"{s}/run\"\n");
    let containers = format!(
        r#"[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
netns = "none"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{s}/events.log"
runtime = "runc"
lock_type = "file"
tmp_dir = "{s}/tmp"
volume_path = "{s}/volumes"

[network]
network_config_dir = "{s}/networks"
"#
    );
    fs::write(store.join("storage.conf"), storage).unwrap();
    fs::write(store.join("registries.conf"), "").unwrap();
    // Written last: its presence marks the config as complete.
    fs::write(store.join("containers.conf"), containers).unwrap();
}

/// A podman store in a temporary directory, cleaned up on drop (containers
/// removed, leftover mounts such as container /dev/shm tmpfs unmounted).
pub struct Podman {
    store: tempfile::TempDir,
}

impl Podman {
    pub fn new() -> Podman {
        let store = tempfile::Builder::new()
            .prefix("rustimage-podman-")
            .tempdir()
            .unwrap();
        Podman { store }
    }

    /// [`podman`] for this store.
    pub fn cmd(&self) -> Command {
        podman(self.store.path())
    }

    pub fn store(&self) -> &Path {
        self.store.path()
    }

    /// `podman load -i archive`; returns the loaded image's name (e.g.
    /// `localhost/name:tag`, or the image ID for an untagged archive).
    pub fn load(&self, archive: &Path) -> String {
        let out = run_stdout(self.cmd().arg("load").arg("-i").arg(archive));
        let last = out.lines().last().unwrap_or_default();
        let name = last.rsplit(": ").next().unwrap_or_default();
        // "Loaded image(s): a,b" lists several names; keep the first.
        name.split(',').next().unwrap().trim().to_string()
    }

    /// `podman image mount`: the image's root filesystem. With vfs this is
    /// the top layer's directory itself, no mount is made. Undo with
    /// [`Podman::image_unmount`].
    pub fn image_mount(&self, image: &str) -> PathBuf {
        PathBuf::from(run_stdout(self.cmd().args(["image", "mount", image])))
    }

    pub fn image_unmount(&self, image: &str) {
        run_ok(self.cmd().args(["image", "unmount", image]));
    }

    /// `podman create` (never started) + `podman export` to `out`, then
    /// `podman rm`. A command is given because images without Cmd cannot
    /// be created otherwise.
    pub fn export(&self, image: &str, out: &Path) {
        let id = run_stdout(self.cmd().args(["create", image, "/nonexistent"]));
        run_ok(self.cmd().args(["export", "-o"]).arg(out).arg(&id));
        run_ok(self.cmd().args(["rm", &id]));
    }
}

impl Default for Podman {
    fn default() -> Self {
        Podman::new()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.cmd().args(["rm", "-a", "-f"]).output();
        unmount_under(self.store.path());
    }
}

// ---------------------------------------------------------------------------
// skopeo, umoci, oci-image-tool
// ---------------------------------------------------------------------------

/// A directory of constant config files, shared by all test processes (so
/// nothing accumulates in /tmp). Written via rename: concurrent writers of
/// the same content never expose a partial file.
fn shared_config_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join("rustimage-tests-config");
        fs::create_dir_all(dir.join("registries.d")).unwrap();
        let policy = r#"{"default":[{"type":"insecureAcceptAnything"}]}"#;
        let tmp = dir.join(format!("policy.json.{}", std::process::id()));
        fs::write(&tmp, policy).unwrap();
        fs::rename(&tmp, dir.join("policy.json")).unwrap();
        dir
    })
}

/// skopeo that needs no /etc/containers: `--insecure-policy` (no signature
/// policy check at all) plus an explicit accept-anything `--policy` and an
/// empty `--registries.d` (no sigstore lookaside configuration).
pub fn skopeo() -> Command {
    let dir = shared_config_dir();
    let mut cmd = Command::new("skopeo");
    cmd.arg("--insecure-policy")
        .arg("--policy")
        .arg(dir.join("policy.json"))
        .arg("--registries.d")
        .arg(dir.join("registries.d"));
    cmd
}

/// `skopeo copy SRC DEST` with transports spelled out, e.g.
/// `docker-archive:/x.tar` -> `oci:/layout:tag`.
pub fn skopeo_copy(src: &str, dest: &str) {
    run_ok(skopeo().args(["copy", "--quiet", src, dest]));
}

/// `umoci unpack --image LAYOUT:TAG BUNDLE` as root (owners kept); returns
/// BUNDLE/rootfs.
pub fn umoci_unpack(layout: &Path, tag: &str, bundle: &Path) -> PathBuf {
    let image = format!("{}:{tag}", layout.display());
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--image", &image])
            .arg(bundle),
    );
    bundle.join("rootfs")
}

/// `oci-image-tool validate --type image LAYOUT`: checks index, manifests,
/// configs and blob digests/sizes of an OCI image layout directory.
/// (This oci-image-tool, 1.0.0-rc1, rejects `--type imageLayout` as
/// "unimplemented"; `image` is the type that validates a layout.)
pub fn oci_validate(layout: &Path) -> Output {
    run_ok(
        Command::new("oci-image-tool")
            .args(["validate", "--type", "image"])
            .arg(layout),
    )
}

// ---------------------------------------------------------------------------
// pseudo (OpenEmbedded's fakeroot)
// ---------------------------------------------------------------------------

/// Directory holding libpseudo.so: Debian puts it in the multiarch libdir
/// (/usr/lib/x86_64-linux-gnu/pseudo), which is also what pseudo derives
/// from PSEUDO_PREFIX=/usr; upstream builds use PREFIX/lib/pseudo/lib64.
pub fn pseudo_libdir() -> PathBuf {
    let arch = std::env::consts::ARCH;
    [
        format!("/usr/lib/{arch}-linux-gnu/pseudo"),
        "/usr/lib/pseudo/lib64".to_string(),
        "/usr/lib/pseudo/lib".to_string(),
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|d| d.join("libpseudo.so").exists())
    .unwrap_or_else(|| panic!("libpseudo.so not found (Debian package libpseudo)"))
}

/// `pseudo PROGRAM` with its database in `state` (created if needed).
/// Everything run by PROGRAM sees the ownership and modes recorded in that
/// database; sessions with the same `state` share it. Append PROGRAM's
/// arguments to the returned command. Stop the server with
/// [`pseudo_shutdown`] when done.
pub fn pseudo(state: &Path, program: impl AsRef<OsStr>) -> Command {
    fs::create_dir_all(state).unwrap();
    let mut cmd = Command::new("pseudo");
    cmd.env("PSEUDO_LOCALSTATEDIR", state)
        .env("PSEUDO_PREFIX", "/usr")
        .env("PSEUDO_LIBDIR", pseudo_libdir())
        .env_remove("PSEUDO_DISABLED")
        .env_remove("PSEUDO_UNLOAD")
        .arg(program);
    cmd
}

/// Shuts down the pseudo server of `state` (`pseudo -S`).
pub fn pseudo_shutdown(state: &Path) {
    let mut cmd = Command::new("pseudo");
    cmd.env("PSEUDO_LOCALSTATEDIR", state)
        .env("PSEUDO_PREFIX", "/usr")
        .env("PSEUDO_LIBDIR", pseudo_libdir())
        .arg("-S");
    let _ = cmd.output();
}

//! Tests of the test harness itself (tests/common), without rustimage: they
//! prove that the rootfs builder, snapshots, tarballs and every real client
//! (docker, podman, skopeo, umoci, oci-image-tool, pseudo) work here, and
//! pin down what each client adds to or drops from a root filesystem.
//! Every test needs root and skips (or, with CI=true, fails) otherwise.

// Tests panic on purpose; the crate's no-unwrap lints target product code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;
use tempfile::TempDir;

fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("rustimage-harness-")
        .tempdir()
        .unwrap()
}

/// Only the xattr that Docker keeps when it copies a layer into a
/// container (vfs driver) and hence in `docker export`.
fn docker_keeps_xattr(name: &[u8]) -> bool {
    name == b"security.capability"
}

/// What `docker create` + `docker export` adds to any image: Docker's "init
/// layer" (mount points and placeholders for files bind-mounted at run
/// time) and `.dockerenv`. Paths, kind, mode, and symlink target.
const DOCKER_ADDED: [(&str, Kind, u32, Option<&str>); 10] = [
    (".dockerenv", Kind::File, 0o755, None),
    ("dev/console", Kind::File, 0o755, None),
    ("dev/pts", Kind::Dir, 0o755, None),
    ("dev/shm", Kind::Dir, 0o755, None),
    ("etc/hostname", Kind::File, 0o755, None),
    ("etc/hosts", Kind::File, 0o755, None),
    ("etc/mtab", Kind::Symlink, 0o777, Some("/proc/mounts")),
    ("etc/resolv.conf", Kind::File, 0o755, None),
    ("proc", Kind::Dir, 0o755, None),
    ("sys", Kind::Dir, 0o755, None),
];

#[test]
fn rootfs_is_deterministic_and_complete() {
    if !require_root() {
        return;
    }
    let tmp = tempdir();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    make_rootfs(&a);
    make_rootfs(&b);
    let snap = snapshot_with_mtime(&a);
    assert_same_tree(&snap, &snapshot_with_mtime(&b), &[]);
    check_rootfs_content(&snap);

    // diff sees a change of mode, owner, xattr and content.
    let p = b.join("etc/passwd");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::lchown(&p, Some(7), None).unwrap();
    fs::write(&p, b"changed").unwrap();
    set_xattr(&b.join("etc/motd"), "user.new", b"1");
    let d = diff(&snapshot(&a), &snapshot(&b));
    let joined = d.join("\n");
    for want in [
        "mode 0644 -> 0600",
        "owner 0:0 -> 7:0",
        "xattr user.new <absent> -> 1",
    ] {
        assert!(joined.contains(want), "diff lacks {want:?}:\n{joined}");
    }
    assert!(joined.contains("sha256"), "{joined}");
}

/// Spot checks that the rootfs and its snapshot hold what they promise.
fn check_rootfs_content(snap: &Tree) {
    let get = |p: &str| snap.get(p.as_bytes()).unwrap_or_else(|| panic!("no {p}"));
    let root = get("");
    assert_eq!(
        (root.kind, root.mode, root.uid, root.gid),
        (Kind::Dir, 0o755, 0, 0)
    );
    assert_eq!(get("tmp").mode, 0o1777);
    assert_eq!(get("root").mode, 0o700);
    assert_eq!(get("var/mail").mode, 0o2755);
    assert_eq!((get("home/user").mode, get("home/user").uid), (0o750, 1000));
    assert_eq!(get("bin/su").mode, 0o4755);
    assert_eq!(
        (get("usr/bin/wall").mode, get("usr/bin/wall").gid),
        (0o2755, 5)
    );
    assert_eq!(get("etc/motd").size, 0);
    assert_eq!(get("var/sparse.img").size, 3 << 20);
    assert_eq!(get("dev/null").rdev, Some((1, 3)));
    assert_eq!(
        (get("dev/sda").kind, get("dev/sda").rdev),
        (Kind::Block, Some((8, 0)))
    );
    assert_eq!(get("dev/initctl").kind, Kind::Fifo);
    assert_eq!(
        get("etc/localtime").target.as_deref(),
        Some(&b"/usr/share/zoneinfo/UTC"[..])
    );
    assert!(get("etc/long-target").target.as_ref().unwrap().len() > 100);
    let ping = &get("usr/bin/ping").xattrs;
    assert_eq!(
        ping.get(&b"security.capability"[..]),
        Some(&CAP_NET_RAW_EP.to_vec())
    );
    assert_eq!(get("etc/xattrs").xattrs.len(), 2);
    assert_eq!(get("etc/xattr-dir").xattrs.len(), 1);
    assert!(snap.contains_key(&[b"etc/", NON_UTF8_NAME].concat()));
    assert!(snap.contains_key("etc/ünïcödé".as_bytes()));
    assert!(long_path().len() > 100 && deep_path().len() > 255);
    assert!(snap.contains_key(deep_path().as_bytes()));
    assert_eq!(get("etc/future").mtime, Some(FUTURE_MTIME));
    assert_eq!(get("etc/ancient").mtime, Some(ANCIENT_MTIME));
    let group = Some(HARDLINKS[0].as_bytes().to_vec());
    for name in HARDLINKS {
        assert_eq!(get(name).link_group, group, "{name}");
    }
}

#[test]
fn gnu_tar_roundtrip_all_compressions() {
    if !require_all(&["tar", "gzip", "pbzip2", "xz", "zstd", "bzip2"]) {
        return;
    }
    let tmp = tempdir();
    let rootfs = tmp.path().join("rootfs");
    make_rootfs(&rootfs);
    let expected = snapshot_with_mtime(&rootfs);
    for compression in COMPRESSIONS {
        let tarball = tmp
            .path()
            .join(format!("rootfs{}", tarball_suffix(compression)));
        make_tarball(&rootfs, &tarball, compression);
        let dest = tmp.path().join(format!("out-{compression}"));
        fs::create_dir(&dest).unwrap();
        extract_tar(&tarball, &dest);
        // Everything survives, root dir metadata and mtimes included.
        assert_same_tree(&expected, &snapshot_with_mtime(&dest), &[]);
    }
    let bz2 = fs::read(tmp.path().join("rootfs.tar.bz2")).unwrap();
    assert!(
        bzip2_streams(&bz2) > 1,
        "pbzip2 output should be multi-stream"
    );
}

/// Counts bzip2 stream headers: "BZh" + level digit + block magic.
fn bzip2_streams(data: &[u8]) -> usize {
    const BLOCK_MAGIC: [u8; 6] = [0x31, 0x41, 0x59, 0x26, 0x53, 0x59];
    data.windows(10)
        .filter(|w| &w[..3] == b"BZh" && (b'1'..=b'9').contains(&w[3]) && w[4..] == BLOCK_MAGIC)
        .count()
}

/// Builds the rootfs in `work`, `docker import`s its gzip tarball as
/// `tag` and `docker save`s it. Returns (rootfs, uncompressed tarball,
/// saved archive).
fn docker_saved_image(d: &Docker, work: &Path, tag: &str) -> (PathBuf, PathBuf, PathBuf) {
    let rootfs = work.join("rootfs");
    make_rootfs(&rootfs);
    let (tar, tgz) = (work.join("rootfs.tar"), work.join("rootfs.tar.gz"));
    make_tarball(&rootfs, &tar, "none");
    make_tarball(&rootfs, &tgz, "gzip");
    // docker import works offline: it needs no base image.
    run_ok(d.docker(["import"]).arg(&tgz).arg(tag));
    let saved = work.join("saved.tar");
    run_ok(d.docker(["save", "-o"]).arg(&saved).arg(tag));
    (rootfs, tar, saved)
}

fn docker_tools() -> bool {
    require_all(&["dockerd", "containerd", "runc", "docker", "tar", "gzip"])
}

#[test]
fn docker_import_save_load_export() {
    if !docker_tools() {
        return;
    }
    let d = docker();
    let tmp = tempdir();
    let tag = "rustimage-harness/docker:1";
    let (rootfs, tar, saved) = docker_saved_image(d, tmp.path(), tag);
    check_saved_layer(&saved, &tar, tmp.path());

    run_ok(d.docker(["rmi", tag]));
    run_ok(d.docker(["load", "-i"]).arg(&saved));
    let diff_ids = run_stdout(d.docker(["image", "inspect", "-f", "{{json .RootFS.Layers}}", tag]));
    assert_eq!(diff_ids, format!("[\"sha256:{}\"]", sha256_file(&tar)));

    // A created (never started) container holds the image plus Docker's
    // init layer; its export has no "./" entry, hence make_root_dir.
    let id = run_stdout(d.docker(["create", tag, "/nonexistent"]));
    let exported = tmp.path().join("export.tar");
    run_ok(d.docker(["export", "-o"]).arg(&exported).arg(&id));
    run_ok(d.docker(["rm", &id]));
    let out = tmp.path().join("export");
    make_root_dir(&out);
    extract_tar(&exported, &out);

    let mut expected = snapshot(&rootfs);
    let actual = snapshot(&out);
    check_docker_additions(&expected, &actual);
    // Docker loses user.* and trusted.* xattrs (on files and directories)
    // when vfs copies the image layer into the container; the image layer
    // itself and `docker save` still have them (see check_saved_layer).
    retain_xattrs(&mut expected, docker_keeps_xattr);
    let added: Vec<&str> = DOCKER_ADDED.iter().map(|a| a.0).collect();
    assert_same_tree(&expected, &actual, &added);
    run_ok(d.docker(["rmi", tag]));
}

#[test]
fn containerd_imports_a_saved_image() {
    if !docker_tools() || !require("ctr") {
        return;
    }
    let d = docker();
    let tmp = tempdir();
    let tag = "rustimage-harness/ctr:1";
    let (_, tar, saved) = docker_saved_image(d, tmp.path(), tag);
    let c = Containerd::start();
    let names = c.import(&saved);
    assert_eq!(names, vec![format!("docker.io/{tag}")], "{}", c.log());
    let check = run_stdout(c.ctr(["images", "check"]));
    assert!(check.contains("complete (2/2)"), "{check}");
    // The saved layer (the imported tarball, byte for byte) is in its
    // content store.
    let layer = format!("sha256:{}", sha256_file(&tar));
    let content = run_stdout(c.ctr(["content", "ls", "-q"]));
    assert!(content.lines().any(|l| l == layer), "{layer} in\n{content}");
    run_ok(d.docker(["rmi", tag]));
}

/// `docker save` of an imported image is a v1.2 docker-archive whose one
/// layer is byte-for-byte the uncompressed tarball given to `docker
/// import` (tar-split keeps the original headers, PAX xattrs included).
fn check_saved_layer(saved: &Path, tar: &Path, work: &Path) {
    let dir = work.join("saved");
    fs::create_dir(&dir).unwrap();
    extract_tar(saved, &dir);
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let layers = manifest[0]["Layers"].as_array().expect("Layers");
    assert_eq!(layers.len(), 1, "{manifest}");
    let layer = dir.join(layers[0].as_str().unwrap());
    assert_eq!(
        sha256_file(&layer),
        sha256_file(tar),
        "layer differs from the imported tar"
    );
}

fn check_docker_additions(expected: &Tree, actual: &Tree) {
    let added: Vec<String> = actual
        .keys()
        .filter(|p| !expected.contains_key(*p))
        .map(|p| show(p))
        .collect();
    let want: Vec<&str> = DOCKER_ADDED.iter().map(|a| a.0).collect();
    assert_eq!(added, want, "entries added by docker create/export");
    for (path, kind, mode, target) in DOCKER_ADDED {
        let n = &actual[path.as_bytes()];
        assert_eq!((n.kind, n.mode, n.uid, n.gid), (kind, mode, 0, 0), "{path}");
        assert_eq!(n.target.as_deref(), target.map(str::as_bytes), "{path}");
        assert_eq!(n.size, 0, "{path}");
    }
}

#[test]
fn podman_load_mount_export() {
    if !(docker_tools() && require("podman") && require("runc")) {
        return;
    }
    let tmp = tempdir();
    let tag = "rustimage-harness/podman:1";
    let (rootfs, _, saved) = docker_saved_image(docker(), tmp.path(), tag);
    let expected = snapshot(&rootfs);

    let p = Podman::new();
    let image = p.load(&saved);
    assert_eq!(image, format!("localhost/{tag}"));
    // Podman's vfs layer keeps everything, root dir and all xattrs included.
    let mounted = p.image_mount(&image);
    assert_same_tree(&expected, &snapshot(&mounted), &[]);
    p.image_unmount(&image);

    // A created container's export adds nothing (no init layer) but loses
    // the trusted.* xattrs: containers/storage skips them when vfs copies
    // the image layer into the container (security.* and user.* survive).
    // Like docker's, the export has no "./" entry.
    let exported = tmp.path().join("export.tar");
    p.export(&image, &exported);
    let out = tmp.path().join("export");
    make_root_dir(&out);
    extract_tar(&exported, &out);
    let mut expected = expected;
    retain_xattrs(&mut expected, |name| !name.starts_with(b"trusted."));
    assert_same_tree(&expected, &snapshot(&out), &[]);
}

#[test]
fn skopeo_oci_layout_validate_umoci_unpack() {
    if !(docker_tools() && require_all(&["skopeo", "oci-image-tool", "umoci"])) {
        return;
    }
    let tmp = tempdir();
    let (rootfs, _, saved) = docker_saved_image(docker(), tmp.path(), "rustimage-harness/oci:1");
    let layout = tmp.path().join("layout");
    skopeo_copy(
        &format!("docker-archive:{}", saved.display()),
        &format!("oci:{}:latest", layout.display()),
    );
    oci_validate(&layout);
    let raw = run_stdout(
        skopeo()
            .args(["inspect", "--raw"])
            .arg(format!("oci:{}:latest", layout.display())),
    );
    let manifest: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );

    let unpacked = umoci_unpack(&layout, "latest", &tmp.path().join("bundle"));
    assert_same_tree(&snapshot(&rootfs), &snapshot(&unpacked), &[]);

    // A corrupted blob is caught.
    let config = manifest["config"]["digest"]
        .as_str()
        .unwrap()
        .replace(':', "/");
    fs::write(layout.join("blobs").join(config), b"{}").unwrap();
    run_fail(
        std::process::Command::new("oci-image-tool")
            .args(["validate", "--type", "image"])
            .arg(&layout),
    );
}

/// A rootfs with the host's /usr bind-mounted in, plus one owned file.
fn runnable_tarball(work: &Path) -> PathBuf {
    let rootfs = work.join("run-rootfs");
    make_host_usr_rootfs(&rootfs);
    let owned = rootfs.join("etc/owned");
    fs::write(&owned, b"x").unwrap();
    std::os::unix::fs::chown(&owned, Some(1234), Some(5678)).unwrap();
    fs::set_permissions(&owned, fs::Permissions::from_mode(0o640)).unwrap();
    let tar = work.join("run-rootfs.tar");
    make_tarball(&rootfs, &tar, "none");
    tar
}

const STAT_OWNED: [&str; 4] = ["/usr/bin/stat", "-c", "%u:%g:%a", "/etc/owned"];

#[test]
fn docker_and_podman_run_containers() {
    if !(docker_tools() && require("podman")) {
        return;
    }
    let tmp = tempdir();
    let tar = runnable_tarball(tmp.path());

    let d = docker();
    let tag = "rustimage-harness/run:1";
    run_ok(d.docker(["import"]).arg(&tar).arg(tag));
    let out = run_stdout(
        d.docker([
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            "/usr:/usr:ro",
            tag,
        ])
        .args(STAT_OWNED),
    );
    assert_eq!(out, "1234:5678:640");
    run_ok(d.docker(["rmi", tag]));

    let p = Podman::new();
    run_ok(p.cmd().arg("import").arg(&tar).arg(tag));
    // Any --ulimit flag replaces containers.conf's default_ulimits as a
    // whole, so nproc must then be given too (see podman() for why).
    let out = run_stdout(
        p.cmd()
            .args(["run", "--rm", "--runtime", "runc", "--network", "none"])
            .args([
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1024:1024",
            ])
            .args(["-v", "/usr:/usr:ro", tag])
            .args(STAT_OWNED),
    );
    assert_eq!(out, "1234:5678:640");
    // Plain `podman run` works with the store's default_ulimits.
    let out = run_stdout(
        p.cmd()
            .args(["run", "--rm", "-v", "/usr:/usr:ro", tag])
            .args(STAT_OWNED),
    );
    assert_eq!(out, "1234:5678:640");
}

#[test]
fn pseudo_fakes_ownership() {
    if !require_all(&["pseudo", "stat", "sh"]) {
        return;
    }
    let tmp = tempdir();
    let state = tmp.path().join("pseudo-state");
    let f = tmp.path().join("f");
    fs::write(&f, b"x").unwrap();
    run_ok(
        pseudo(&state, "sh")
            .arg("-c")
            .arg("chown 1234:5678 \"$0\" && chmod 4755 \"$0\"")
            .arg(&f),
    );
    let faked = run_stdout(pseudo(&state, "stat").args(["-c", "%u:%g:%a"]).arg(&f));
    assert_eq!(faked, "1234:5678:4755");
    // Pseudo only fakes the owner. Run as root it still applies chmod to
    // the real file (pseudo always passes modes through to disk).
    let real = run_stdout(
        std::process::Command::new("stat")
            .args(["-c", "%u:%g:%a"])
            .arg(&f),
    );
    assert_eq!(real, "0:0:4755");

    // Rust's std (statx, as rustimage uses) sees the faked owner too: run
    // this test binary's probe test inside the same pseudo session.
    let exe = std::env::current_exe().unwrap();
    let out = run_stdout(
        pseudo(&state, &exe)
            .args([
                "--exact",
                "pseudo_probe",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("RUSTIMAGE_PSEUDO_PROBE", &f),
    );
    assert!(out.contains("PROBE 1234:5678:104755"), "{out}");
    pseudo_shutdown(&state);
}

/// Not a test by itself: run by `pseudo_fakes_ownership` under pseudo.
#[test]
#[ignore = "helper run inside pseudo by pseudo_fakes_ownership"]
fn pseudo_probe() {
    use std::os::unix::fs::MetadataExt;
    let Some(path) = std::env::var_os("RUSTIMAGE_PSEUDO_PROBE") else {
        return;
    };
    let m = fs::symlink_metadata(path).unwrap();
    println!("PROBE {}:{}:{:o}", m.uid(), m.gid(), m.mode());
}

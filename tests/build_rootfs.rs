//! `rustimage build --rootfs`: the image real clients unpack is exactly the
//! input rootfs, whatever form the rootfs came in, and the bytes never vary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;

/// Clamp time for the builds here: between the rootfs mtimes and the
/// future one, so clamping is visible.
const CREATED: i64 = ROOTFS_MTIME + 1000;

fn build(rootfs: &Path, extra: &[&str]) -> serde_json::Value {
    let out = run_ok(
        rustimage()
            .args(["build", "--squash", "--json", "--created"])
            .arg(format!("@{CREATED}"))
            .arg("--rootfs")
            .arg(rootfs)
            .args(extra),
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The rootfs as unpacked from an image: mtimes clamped to CREATED.
fn expected(rootfs: &Path) -> Tree {
    let mut tree = snapshot_with_mtime(rootfs);
    for node in tree.values_mut() {
        if let Some(m) = node.mtime.as_mut() {
            *m = (*m).min(CREATED);
        }
    }
    tree
}

#[test]
fn every_input_form_gives_the_same_image() {
    if !require_all(&["tar", "gzip", "pbzip2", "xz", "zstd"]) {
        return;
    }
    let tmp = tempdir("build");
    let rootfs = tmp.path().join("rootfs");
    make_rootfs(&rootfs);
    let from_dir = build(
        &rootfs,
        &["-o", tmp.path().join("dir.tar").to_str().unwrap()],
    );
    for c in COMPRESSIONS {
        let tarball = tmp.path().join(format!("rootfs{}", tarball_suffix(c)));
        make_tarball(&rootfs, &tarball, c);
        // OE's deploy names are symlinks: read through them.
        let link = tmp.path().join(format!("link-{c}"));
        std::os::unix::fs::symlink(&tarball, &link).unwrap();
        let out = tmp.path().join(format!("{c}.tar"));
        let from_tar = build(&link, &["-o", out.to_str().unwrap()]);
        assert_eq!(
            image_digests(&from_tar),
            image_digests(&from_dir),
            "{c} tarball vs directory"
        );
    }
}

#[test]
fn padded_gzip_and_pzstd_frames_are_read_as_their_tools_read_them() {
    if !require_all(&["tar", "gzip", "zstd", "pzstd", "dd"]) {
        return;
    }
    let tmp = tempdir("build");
    let rootfs = tmp.path().join("rootfs");
    make_rootfs(&rootfs);
    let plain = tmp.path().join("rootfs.tar");
    make_tarball(&rootfs, &plain, "none");
    let sh = |script: String| {
        run_ok(std::process::Command::new("sh").arg("-c").arg(script));
    };
    // pzstd starts every frame with a skippable frame holding its size; dd
    // pads the last block of a tape-style copy with zeros.
    let pzstd = tmp.path().join("rootfs.tar.zst");
    let padded = tmp.path().join("rootfs.tar.gz");
    sh(format!(
        "pzstd -q -p 2 -c {} > {}",
        plain.display(),
        pzstd.display()
    ));
    sh(format!(
        "gzip -9 -n -c {} | dd bs=64k iflag=fullblock conv=sync of={} 2>/dev/null",
        plain.display(),
        padded.display()
    ));
    assert_eq!(&fs::read(&pzstd).unwrap()[..4], &[0x50, 0x2a, 0x4d, 0x18]);
    assert_eq!(fs::read(&padded).unwrap().last(), Some(&0));
    sh(format!(
        "zstd -q -t {} && gzip -t {}",
        pzstd.display(),
        padded.display()
    ));

    let want = build(
        &plain,
        &["-o", tmp.path().join("plain.tar").to_str().unwrap()],
    );
    for input in [&pzstd, &padded] {
        let out = tmp.path().join("out.tar");
        let got = build(input, &["-o", out.to_str().unwrap()]);
        assert_eq!(
            image_digests(&got),
            image_digests(&want),
            "{}",
            input.display()
        );
    }
}

#[test]
fn real_clients_unpack_the_exact_rootfs() {
    if !require_all(&["skopeo", "umoci", "oci-image-tool", "podman", "dockerd"]) {
        return;
    }
    let tmp = tempdir("build");
    let rootfs = tmp.path().join("rootfs");
    make_rootfs(&rootfs);
    let want = expected(&rootfs);
    let archive = tmp.path().join("image.tar");
    let layout = tmp.path().join("layout");
    let tag = "rustimage-test/exact:1.0";
    let summary = build(
        &rootfs,
        &[
            "-o",
            archive.to_str().unwrap(),
            "--oci-dir",
            layout.to_str().unwrap(),
            "--tag",
            tag,
        ],
    );

    // skopeo reads both views of the archive and the layout.
    for src in [
        format!("docker-archive:{}", archive.display()),
        format!("oci-archive:{}", archive.display()),
        format!("oci:{}:{tag}", layout.display()),
    ] {
        let info = run_stdout(skopeo().args(["inspect", &src]));
        let info: serde_json::Value = serde_json::from_str(&info).unwrap();
        assert_eq!(info["Architecture"], "amd64", "{src}");
        let copy = tmp
            .path()
            .join(format!("copy-{}", src.split(':').next().unwrap()));
        skopeo_copy(&src, &format!("oci:{}:copy", copy.display()));
    }
    let oci_manifest = run_stdout(skopeo().args([
        "inspect",
        "--raw",
        &format!("oci-archive:{}", archive.display()),
    ]));
    assert_eq!(
        format!("sha256:{}", sha256_hex(oci_manifest.as_bytes())),
        summary["manifest"].as_str().unwrap()
    );

    oci_validate(&layout);

    // umoci: the whole tree, xattrs and mtimes included.
    let unpacked = umoci_unpack(&layout, tag, &tmp.path().join("bundle"));
    assert_same_tree(&want, &snapshot_with_mtime(&unpacked), &[]);

    // podman names the image from the OCI view and keeps everything.
    let podman = Podman::new();
    let name = podman.load(&archive);
    assert_eq!(name, format!("localhost/{tag}"));
    let mounted = podman.image_mount(&name);
    // Its vfs storage gives the layer directory itself (the root) the time
    // of extraction; everything else, root mode and owner included, is kept.
    let mut got = snapshot_with_mtime(&mounted);
    got.get_mut(&b""[..]).unwrap().mtime = want[&b""[..]].mtime;
    assert_same_tree(&want, &got, &[]);
    podman.image_unmount(&name);

    // docker loads through RepoTags; a container keeps only
    // security.capability of the xattrs (vfs copy), and adds its init files.
    let docker = docker();
    let out = run_stdout(docker.docker(["load", "-i"]).arg(&archive));
    assert!(out.contains(&format!("Loaded image: {tag}")), "{out}");
    let got = docker_export_tree(docker, tag, tmp.path());
    let mut want_docker = snapshot(&rootfs);
    retain_xattrs(&mut want_docker, |n| n == b"security.capability");
    assert_same_tree(
        &filter_tree(&want_docker, &DOCKER_ADDS),
        &filter_tree(&got, &DOCKER_ADDS),
        &[],
    );
}

#[test]
fn without_a_time_mtimes_are_kept_and_the_newest_dates_the_image() {
    if !require("umoci") {
        return;
    }
    let tmp = tempdir("build");
    let rootfs = tmp.path().join("rootfs");
    make_rootfs(&rootfs);
    // make_rootfs has an ancient file and one from the future: neither
    // may move.
    let layout = tmp.path().join("layout");
    let build = |extra: &[&str], env: Option<&str>| -> serde_json::Value {
        let mut cmd = rustimage();
        cmd.args(["build", "--squash", "--json", "--tag", "t:1", "--rootfs"])
            .arg(&rootfs)
            .args(extra)
            .env_remove("SOURCE_DATE_EPOCH");
        if let Some(sde) = env {
            cmd.env("SOURCE_DATE_EPOCH", sde);
        }
        serde_json::from_slice(&run_ok(cmd).stdout).unwrap()
    };
    let first = build(&["--oci-dir", layout.to_str().unwrap()], None);
    let again = build(&["-o", tmp.path().join("x.tar").to_str().unwrap()], None);
    assert_eq!(
        first["manifest"], again["manifest"],
        "same rootfs, same bytes"
    );

    let want = snapshot_with_mtime(&rootfs);
    let unpacked = umoci_unpack(&layout, "t:1", &tmp.path().join("bundle"));
    assert_same_tree(&want, &snapshot_with_mtime(&unpacked), &[]);
    let config = run_stdout(rustimage().args(["inspect", "--json"]).arg(&layout));
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    // FUTURE_MTIME is 2100-01-01T00:00:00Z, the newest file of make_rootfs.
    assert_eq!(config[0]["config"]["created"], "2100-01-01T00:00:00Z");
    assert_eq!(FUTURE_MTIME, 4_102_444_800);

    // SOURCE_DATE_EPOCH (or --created) dates the image and clamps.
    let clamped = tmp.path().join("clamped");
    build(
        &["--oci-dir", clamped.to_str().unwrap()],
        Some(&CREATED.to_string()),
    );
    let unpacked = umoci_unpack(&clamped, "t:1", &tmp.path().join("bundle2"));
    assert_same_tree(&expected(&rootfs), &snapshot_with_mtime(&unpacked), &[]);
}

/// A rootfs with a real static busybox, to run.
fn runnable_rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("run-rootfs");
    make_root_dir(&root);
    for d in ["bin", "etc", "tmp"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    fs::write(root.join("etc/passwd"), "root:x:0:0::/:/bin/sh\n").unwrap();
    fs::write(root.join("etc/secret"), "s3cret\n").unwrap();
    let c = |p: &str| std::ffi::CString::new(root.join(p).to_str().unwrap()).unwrap();
    unsafe {
        libc::chown(c("etc/secret").as_ptr(), 1234, 5678);
        libc::chmod(c("etc/secret").as_ptr(), 0o4640);
    }
    root
}

#[test]
fn docker_and_podman_run_a_command_in_the_image() {
    if !require_all(&["podman", "dockerd", "/bin/busybox"]) {
        return;
    }
    let tmp = tempdir("build");
    let root = runnable_rootfs(tmp.path());
    let archive = tmp.path().join("run.tar");
    build(
        &root,
        &[
            "-o",
            archive.to_str().unwrap(),
            "--tag",
            "rustimage-test/run:1",
            "--entrypoint",
            r#"["/bin/busybox"]"#,
            "--cmd",
            "stat -c %u:%g:%a:%n /etc/secret",
            "--env",
            "GREETING=hello",
        ],
    );
    let docker = docker();
    run_ok(docker.docker(["load", "-i"]).arg(&archive));
    let out =
        run_stdout(docker.docker(["run", "--rm", "--network", "none", "rustimage-test/run:1"]));
    assert_eq!(out, "1234:5678:4640:/etc/secret");
    let env = run_stdout(docker.docker([
        "run",
        "--rm",
        "--network",
        "none",
        "rustimage-test/run:1",
        "sh",
        "-c",
        "echo $GREETING $PATH",
    ]));
    assert_eq!(
        env,
        "hello /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );

    let podman = Podman::new();
    let name = podman.load(&archive);
    let out = run_stdout(
        podman
            .cmd()
            .args(["run", "--rm", "--runtime", "runc", &name]),
    );
    assert_eq!(out, "1234:5678:4640:/etc/secret");
}

#[test]
fn same_bytes_whatever_tz_umask_cwd_and_threads() {
    if !require_root() {
        return;
    }
    let tmp = tempdir("build");
    let rootfs = tmp.path().join("rootfs");
    make_rootfs(&rootfs);
    let mut digests = Vec::new();
    for (i, (tz, umask, jobs)) in [
        ("UTC", "022", "1"),
        ("Asia/Tokyo", "077", "2"),
        ("America/New_York", "002", "7"),
    ]
    .into_iter()
    .enumerate()
    {
        let cwd = tmp.path().join(format!("cwd{i}"));
        fs::create_dir_all(&cwd).unwrap();
        // Relative paths from a different directory each time.
        let script = format!(
            "umask {umask} && exec {} build --squash --rootfs ../rootfs -o out.tar --oci-dir layout \
             --tag repro:1 --jobs {jobs} --created 2024-01-01T00:00:00Z -q",
            env!("CARGO_BIN_EXE_rustimage")
        );
        run_ok(
            std::process::Command::new("sh")
                .args(["-c", &script])
                .current_dir(&cwd)
                .env("TZ", tz)
                .env("SOURCE_DATE_EPOCH", format!("{}", 1000 + i)),
        );
        let layout: Vec<(String, String)> = walk_files(&cwd.join("layout"));
        digests.push((sha256_file(&cwd.join("out.tar")), layout));
    }
    assert_eq!(digests[0], digests[1]);
    assert_eq!(digests[0], digests[2]);
}

fn walk_files(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push((
                p.file_name().unwrap().to_string_lossy().into(),
                sha256_file(&p),
            ));
        }
    }
    out.sort();
    out
}

#[test]
fn pseudo_ownership_is_what_the_image_gets() {
    if !require_all(&["pseudo", "umoci"]) {
        return;
    }
    let tmp = tempdir("build");
    let root = tmp.path().join("rootfs");
    make_root_dir(&root);
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::write(root.join("usr/bin/passwd"), b"binary").unwrap();
    fs::write(root.join("usr/bin/ping"), b"ping").unwrap();
    fs::create_dir_all(root.join("home/user")).unwrap();
    let state = tmp.path().join("pseudo-state");
    let layout = tmp.path().join("layout");
    // As OE's do_rootfs then do_image_*: ownership made in one pseudo
    // session, read in a later one with the same database.
    run_ok(pseudo(&state, "sh").arg("-c").arg(format!(
        "cd {} && chown 0:0 . && chown 4321:8765 usr/bin/passwd && chmod 4711 usr/bin/passwd \
         && chown -R 1000:1000 home/user && setfattr -n security.capability \
         -v 0x0100000200200000000000000000000000000000 usr/bin/ping",
        root.display()
    )));
    run_ok(pseudo(&state, env!("CARGO_BIN_EXE_rustimage")).args([
        "build",
        "--squash",
        "-q",
        "--tag",
        "pseudo:1",
        "--rootfs",
        root.to_str().unwrap(),
        "--oci-dir",
        layout.to_str().unwrap(),
    ]));
    pseudo_shutdown(&state);
    // On disk (outside pseudo) the owners are still root's.
    let real = snapshot(&root);
    assert_eq!(real[&b"usr/bin/passwd"[..]].uid, 0);

    let unpacked = umoci_unpack(&layout, "pseudo:1", &tmp.path().join("bundle"));
    let got = snapshot(&unpacked);
    let passwd = &got[&b"usr/bin/passwd"[..]];
    assert_eq!((passwd.uid, passwd.gid, passwd.mode), (4321, 8765, 0o4711));
    let home = &got[&b"home/user"[..]];
    assert_eq!((home.uid, home.gid), (1000, 1000));
    let ping = &got[&b"usr/bin/ping"[..]];
    assert_eq!(
        ping.xattrs.get(&b"security.capability"[..]).map(Vec::len),
        Some(20),
        "capability set under pseudo"
    );
}

#[test]
fn files_over_8_gib_keep_their_size_and_content() {
    // zstd: fast on the zeros of a sparse file; GNU tar reads the layer.
    if !require_all(&["zstd", "tar"]) {
        return;
    }
    let tmp = tempdir("build");
    let root = tmp.path().join("rootfs");
    make_root_dir(&root);
    let size: u64 = (8 << 30) + 4096;
    let f = fs::File::create(root.join("huge")).unwrap();
    f.set_len(size).unwrap();
    std::os::unix::fs::FileExt::write_at(&f, b"tail\n", size).unwrap();
    drop(f);
    let layout = tmp.path().join("layout");
    let summary = build(
        &root,
        &[
            "--oci-dir",
            layout.to_str().unwrap(),
            "--compression",
            "zstd",
        ],
    );
    let digest = summary["layers"][0]["digest"].as_str().unwrap();
    let blob = layout.join(format!("blobs/sha256/{}", &digest[7..]));
    let listing = run_stdout(std::process::Command::new("sh").arg("-c").arg(format!(
        "zstd -dc {} | tar -tv --numeric-owner",
        blob.display()
    )));
    assert!(listing.contains(&format!(" {} ", size + 5)), "{listing}");
    let tail = run_stdout(std::process::Command::new("sh").arg("-c").arg(format!(
        "zstd -dc {} | tar -xO huge | tail -c 5",
        blob.display()
    )));
    assert_eq!(tail, "tail");
}

/// The bytes rustimage writes are part of its interface: a layer cache,
/// a registry and every user's pinned digests depend on them. These
/// digests were recorded from a build before the image model was rewritten
/// (oci-spec types); any change to tar, compression or JSON output shows
/// here first. Change them only on purpose, with the cache FORMAT bumped.
#[test]
fn output_bytes_are_pinned() {
    if !require_all(&["python3", "zstd"]) {
        return;
    }
    let tmp = tempdir("build");
    let rootfs = tmp.path().join("rootfs");
    make_rootfs(&rootfs);
    let squash = run_ok(
        rustimage()
            .args(["build", "--squash", "--json", "--rootfs"])
            .arg(&rootfs)
            .args(["--tag", "a:1", "--tag", "reg.example:5000/b/c:2"])
            .args(["--label", "x=y", "--expose", "80", "--expose", "53/udp"])
            .args(["--volume", "/data", "--env", "A=1", "--user", "u"])
            .args([
                "--workdir",
                "/w",
                "--entrypoint",
                "/bin/sh",
                "--cmd",
                "-c ls",
            ])
            .args([
                "--stop-signal",
                "SIGTERM",
                "--author",
                "me",
                "--arch",
                "arm",
            ])
            .args([
                "--variant",
                "v7",
                "--annotation",
                "k=v",
                "--created",
                "@1520598896",
            ])
            .arg("--oci-dir")
            .arg(tmp.path().join("squash")),
    );
    let squash: serde_json::Value = serde_json::from_slice(&squash.stdout).unwrap();
    assert_eq!(
        squash["manifest"].as_str().unwrap(),
        "sha256:592a26d96340ccea3a8fe35a16049fe09b1d90d933038af8862faecd8c60e1dc",
        "{squash}"
    );
    let index = fs::read(tmp.path().join("squash/index.json")).unwrap();
    assert_eq!(
        sha256_hex(&index),
        "56e938c7f8f4b1bc456b7bf060fc03cdcc672f110186a02fe9d1f6f4a8baa8c1"
    );

    let deploy = make_deploy(&tmp.path().join("example"), &[]);
    for (compression, pin) in [
        (
            "gzip",
            "sha256:4006d2796ec77cf658226af1ceb646221fd5c063bee12f8fedd2718da62e9c77",
        ),
        (
            "zstd",
            "sha256:5a97fa668dbb4f743b9938c085b6cd9cfd6c983ade5bd2e978a8432df46b043b",
        ),
    ] {
        let out = run_ok(
            build_deploy_cmd(&deploy)
                .args(["--compression", compression, "-o"])
                .arg(tmp.path().join(format!("{compression}.tar"))),
        );
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(summary["manifest"].as_str().unwrap(), pin, "{compression}");
    }
    let archive = fs::read(tmp.path().join("gzip.tar")).unwrap();
    assert_eq!(
        sha256_hex(&archive),
        "4635042ca7542da68903eb8df3dfee49cb400d6155a45e691fc8acd6dee8cbf5"
    );
}

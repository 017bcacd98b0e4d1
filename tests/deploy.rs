//! `rustimage build --deploy-dir`: one layer per package from what BitBake
//! leaves in tmp/deploy (made here by example/make-deploy.py: real ipk and
//! deb archives, rpms from rpmbuild, pkgdata, an OE-like rootfs tarball).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

/// Builds the example image from `deploy`; the JSON summary and stderr.
fn build_deploy(deploy: &Path, extra: &[&str]) -> (Value, String) {
    let out = run_ok(build_deploy_cmd(deploy).args(extra));
    (
        serde_json::from_slice(&out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn digests(summary: &Value) -> Vec<String> {
    image_digests(summary)
        .1
        .into_iter()
        .map(|(d, _)| d)
        .collect()
}

fn rootfs_tarball(deploy: &Path) -> PathBuf {
    deploy.join(format!("images/{MACHINE}/{IMAGE}-{MACHINE}.rootfs.tar.zst"))
}

/// The rootfs as GNU tar extracts it, for comparison.
fn extracted_rootfs(deploy: &Path, dest: &Path) -> Tree {
    make_root_dir(dest);
    run_ok(
        Command::new("tar")
            .arg("--zstd")
            .arg("-xpf")
            .arg(rootfs_tarball(deploy))
            .arg("-C")
            .arg(dest)
            .arg("--numeric-owner"),
    );
    snapshot(dest)
}

#[test]
fn ipk_deb_rpm_and_pkgdata_give_the_same_layers() {
    if !require_all(&["python3", "zstd", "rpmbuild"]) {
        return;
    }
    let tmp = tempdir("deploy");
    let mut seen = Vec::new();
    for (name, args) in [
        ("ipk", vec!["--backend", "ipk", "--no-pkgdata"]),
        ("deb", vec!["--backend", "deb", "--no-pkgdata"]),
        ("rpm", vec!["--backend", "rpm", "--no-pkgdata"]),
        ("pkgdata", vec!["--no-feed"]),
    ] {
        let deploy = make_deploy(&tmp.path().join(name), &args);
        let out = tmp.path().join(format!("{name}.tar"));
        let (summary, stderr) = build_deploy(&deploy, &["-o", out.to_str().unwrap()]);
        // No warning; one closing line saying what was written.
        let digest = summary["manifest"].as_str().unwrap();
        assert_eq!(
            stderr,
            format!(
                "rustimage: wrote {}: image {digest}, 13 layer(s), {}\n",
                out.display(),
                stderr.rsplit(", ").next().unwrap().trim_end()
            ),
            "{name}"
        );
        // 12 packages plus the image-specific layer.
        assert_eq!(summary["layers"].as_array().unwrap().len(), 13, "{name}");
        seen.push((name, image_digests(&summary).0, digests(&summary)));
    }
    for (name, manifest, layers) in &seen[1..] {
        assert_eq!(layers, &seen[0].2, "{name} vs ipk");
        assert_eq!(manifest, &seen[0].1, "{name} vs ipk");
    }
}

#[test]
fn unpacked_image_equals_the_rootfs() {
    if !require_all(&["python3", "zstd", "umoci", "podman", "tar"]) {
        return;
    }
    let tmp = tempdir("deploy");
    let deploy = make_deploy(&tmp.path().join("build"), &[]);
    let want = extracted_rootfs(&deploy, &tmp.path().join("want"));
    let archive = tmp.path().join("image.tar");
    let layout = tmp.path().join("layout");
    let (summary, _) = build_deploy(
        &deploy,
        &[
            "-o",
            archive.to_str().unwrap(),
            "--oci-dir",
            layout.to_str().unwrap(),
        ],
    );
    assert_eq!(summary["tags"][0], "core-image-minimal:latest");
    let unpacked = umoci_unpack(
        &layout,
        "core-image-minimal:latest",
        &tmp.path().join("bundle"),
    );
    assert_same_tree(&want, &snapshot(&unpacked), &[]);
    let podman = Podman::new();
    let name = podman.load(&archive);
    assert_eq!(name, "localhost/core-image-minimal:latest");
    assert_same_tree(&want, &snapshot(&podman.image_mount(&name)), &[]);

    // The layers are what the packages ship, and the setuid bits and
    // hardlinks survive inside them.
    let history = run_stdout(rustimage().arg("inspect").arg(&archive));
    for needle in [
        "rustimage: package busybox",
        "packages: busybox 1.36.1-r0",
        "packages: libc6 2.39+git0+abc-r0",
        "image-specific files",
    ] {
        assert!(history.contains(needle), "{needle} in\n{history}");
    }
    let ping = &want[&b"bin/ping"[..]];
    assert_eq!(ping.mode, 0o4755);
    let mkfs = &want[&b"sbin/mkfs.ext4"[..]];
    assert_eq!(mkfs.link_group, want[&b"sbin/mke2fs"[..]].link_group);
}

/// The README's first command builds this: the example with Debian's static
/// busybox as /bin/sh, and it must run.
#[test]
fn the_example_image_runs_in_podman_and_docker() {
    if !require_all(&["python3", "zstd", "podman", "dockerd", "/bin/busybox"]) {
        return;
    }
    let tmp = tempdir("deploy");
    let deploy = make_deploy(&tmp.path().join("build"), &["--busybox", "/bin/busybox"]);
    let archive = tmp.path().join("example.docker-tar");
    build_deploy(
        &deploy,
        &["--entrypoint", "/bin/sh", "-o", archive.to_str().unwrap()],
    );
    let script = "head -1 /etc/issue; stat -c %a:%u /bin/ping /srv/app/data.db";
    let want = "Poky (Yocto Project Reference Distro) \\n \\l\n4755:0\n640:1000";
    let podman = Podman::new();
    let name = podman.load(&archive);
    let out =
        run_stdout(
            podman
                .cmd()
                .args(["run", "--rm", "--runtime", "runc", &name, "-c", script]),
        );
    assert_eq!(out, want);
    let docker = docker();
    run_ok(docker.docker(["load", "-i"]).arg(&archive));
    let out = run_stdout(
        docker
            .docker([
                "run",
                "--rm",
                "--network",
                "none",
                "core-image-minimal:latest",
                "-c",
            ])
            .arg(script),
    );
    assert_eq!(out, want);
}

/// The README's `inspect` sample is what inspect prints for the example
/// `scripts/example` builds; `…` in a sample line stands for any text.
#[test]
fn the_readme_inspect_sample_is_a_real_run() {
    if !require_all(&["python3", "zstd", "/bin/busybox"]) {
        return;
    }
    let tmp = tempdir("deploy");
    let deploy = make_deploy(&tmp.path().join("build"), &["--busybox", "/bin/busybox"]);
    let archive = tmp.path().join("example.docker-tar");
    build_deploy(
        &deploy,
        &["--entrypoint", "/bin/sh", "-o", archive.to_str().unwrap()],
    );
    let got = run_stdout(rustimage().arg("inspect").arg(&archive));
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let sample: Vec<&str> = readme
        .lines()
        .skip_while(|l| !l.contains("$ target/release/rustimage inspect"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.strip_prefix("    ").unwrap())
        .filter(|l| l.trim() != "...")
        .collect();
    assert!(sample.len() > 10, "the sample is in the README");
    let matches = |pattern: &str, line: &str| {
        let mut rest = line;
        for (i, part) in pattern.split('…').enumerate() {
            match rest.find(part) {
                Some(at) if i > 0 || at == 0 => rest = &rest[at + part.len()..],
                _ => return false,
            }
        }
        pattern.ends_with('…') || rest.is_empty()
    };
    let mut lines = got.lines();
    for pattern in sample {
        assert!(
            lines.any(|l| matches(pattern, l)),
            "README line {pattern:?} is not in (or out of order in) a real run:\n{got}"
        );
    }
}

#[test]
fn libc_lowest_and_the_image_specific_layer_last() {
    if !require_all(&["python3", "zstd"]) {
        return;
    }
    let tmp = tempdir("deploy");
    let deploy = make_deploy(&tmp.path().join("build"), &[]);
    let layout = tmp.path().join("layout");
    let (summary, _) = build_deploy(&deploy, &["--oci-dir", layout.to_str().unwrap()]);
    let by: Vec<&str> = summary["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["created_by"].as_str().unwrap())
        .collect();
    assert_eq!(by[0], "rustimage: package libc6");
    assert_eq!(by[1], "rustimage: package libz1");
    assert!(by.last().unwrap().contains("image-specific"));
}

#[test]
fn one_package_changed_changes_one_layer() {
    if !require_all(&["python3", "zstd"]) {
        return;
    }
    let tmp = tempdir("deploy");
    let a = make_deploy(&tmp.path().join("a"), &[]);
    let b = make_deploy(&tmp.path().join("b"), &["--bump", "busybox"]);
    let out = tmp.path().join("out");
    fs::create_dir_all(&out).unwrap();
    let (sa, _) = build_deploy(&a, &["--oci-dir", out.join("a").to_str().unwrap()]);
    let (sb, _) = build_deploy(&b, &["--oci-dir", out.join("b").to_str().unwrap()]);
    let (da, db) = (digests(&sa), digests(&sb));
    assert_eq!(da.len(), db.len());
    let changed: Vec<usize> = (0..da.len()).filter(|&i| da[i] != db[i]).collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(
        sb["layers"][changed[0]]["created_by"],
        "rustimage: package busybox"
    );

    // Adding a package adds its layer and leaves the others alone.
    let c = make_deploy(&tmp.path().join("c"), &["--drop", "sudo"]);
    // (The image-specific layer may differ too: sudo's empty
    // /etc/sudoers.d is not in any layer without it.)
    let (sc, _) = build_deploy(&c, &["--oci-dir", out.join("c").to_str().unwrap()]);
    let dc = digests(&sc);
    assert_eq!(dc.len(), da.len() - 1);
    let da_set: BTreeSet<&String> = da.iter().collect();
    let package_layers = &dc[..dc.len() - 1];
    assert!(
        package_layers.iter().all(|d| da_set.contains(d)),
        "{dc:?} vs {da:?}"
    );
}

#[test]
fn budget_and_rules_hold_and_the_image_stays_exact() {
    if !require_all(&["python3", "zstd", "umoci", "tar"]) {
        return;
    }
    let tmp = tempdir("deploy");
    let deploy = make_deploy(
        &tmp.path().join("build"),
        &["--extra", "30", "--extra-mb", "2"],
    );
    let want = extracted_rootfs(&deploy, &tmp.path().join("want"));
    let rules = tmp.path().join("rules.ini");
    fs::write(
        &rules,
        "[base]\npackages = libc6, ldconfig, base-*\n\n[net]\npackages = netbase, iputils-*\n",
    )
    .unwrap();
    for (max, with_rules) in [(100, false), (20, false), (8, true), (3, true)] {
        let layout = tmp.path().join(format!("layout-{max}"));
        let mut args = vec!["--oci-dir", layout.to_str().unwrap(), "--max-layers"];
        let max_s = max.to_string();
        args.push(&max_s);
        if with_rules {
            args.extend(["--layer-rules", rules.to_str().unwrap()]);
        }
        let (summary, _) = build_deploy(&deploy, &args);
        let layers = summary["layers"].as_array().unwrap();
        assert!(layers.len() <= max, "{} layers > {max}", layers.len());
        let unpacked = umoci_unpack(
            &layout,
            "core-image-minimal:latest",
            &tmp.path().join(format!("b{max}")),
        );
        assert_same_tree(&want, &snapshot(&unpacked), &[]);
        let inspect = run_stdout(rustimage().arg("inspect").arg(&layout));
        if with_rules {
            assert!(inspect.contains("rustimage: layer base"), "{inspect}");
            assert!(
                inspect.contains("packages: base-files 3.0.14-r0, base-passwd 3.6.3-r0, ldconfig 2.39+git0+abc-r0, libc6 2.39+git0+abc-r0"),
                "{inspect}"
            );
        }
        if max == 20 {
            // 42 packages over 19 slots: grouped by recipe first.
            assert!(
                inspect.contains("rustimage: recipe extra-recipe000"),
                "{inspect}"
            );
        }
    }
}

#[test]
fn missing_packages_warn_and_bad_inputs_fail_by_name() {
    if !require_all(&["python3", "zstd", "umoci", "tar"]) {
        return;
    }
    let tmp = tempdir("deploy");
    let deploy = make_deploy(&tmp.path().join("build"), &["--no-pkgdata"]);
    let want = extracted_rootfs(&deploy, &tmp.path().join("want"));
    let ipk = deploy.join("ipk/core2_64/sudo_1.9.15p5-r0_core2_64.ipk");
    let saved = fs::read(&ipk).unwrap();

    fs::remove_file(&ipk).unwrap();
    let layout = tmp.path().join("layout");
    let (summary, stderr) = build_deploy(&deploy, &["--oci-dir", layout.to_str().unwrap()]);
    assert!(
        stderr.contains("warning:")
            && stderr.contains("package sudo core2_64 1.9.15p5-r0 is in no feed"),
        "{stderr}"
    );
    assert_eq!(summary["layers"].as_array().unwrap().len(), 12);
    let unpacked = umoci_unpack(
        &layout,
        "core-image-minimal:latest",
        &tmp.path().join("bundle"),
    );
    assert_same_tree(&want, &snapshot(&unpacked), &[]);

    // A corrupt package file: an error naming it.
    fs::write(&ipk, &saved[..saved.len() / 2]).unwrap();
    let out = run_fail(
        rustimage()
            .args([
                "build",
                "--image",
                IMAGE,
                "--machine",
                MACHINE,
                "--deploy-dir",
            ])
            .arg(&deploy)
            .arg("-o")
            .arg(tmp.path().join("x.tar")),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sudo_1.9.15p5-r0_core2_64.ipk"), "{err}");
    assert_eq!(out.status.code(), Some(1));
    assert!(!tmp.path().join("x.tar").exists());
    fs::write(&ipk, &saved).unwrap();

    // A wrong image, machine or directory: say what is there.
    for (dir, image, machine, needle) in [
        (
            deploy.clone(),
            "core-image-sato",
            MACHINE,
            "images here: core-image-minimal",
        ),
        (
            deploy.clone(),
            IMAGE,
            "qemuarm64",
            "machines here: qemux86-64",
        ),
        (
            deploy.parent().unwrap().to_path_buf(),
            IMAGE,
            MACHINE,
            "this is the build's tmp directory: give --deploy-dir",
        ),
    ] {
        let out = run_fail(
            rustimage()
                .args([
                    "build",
                    "--image",
                    image,
                    "--machine",
                    machine,
                    "--deploy-dir",
                ])
                .arg(&dir)
                .arg("-o")
                .arg(tmp.path().join("x.tar")),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle) && err.lines().count() == 1, "{err}");
    }

    // A malformed manifest line: file and line number.
    let manifest = deploy.join(format!(
        "images/{MACHINE}/{IMAGE}-{MACHINE}.rootfs.manifest"
    ));
    let mut text = fs::read_to_string(&manifest).unwrap();
    text.push_str("just-two fields\n");
    fs::write(&manifest, &text).unwrap();
    let out = run_fail(
        rustimage()
            .args([
                "build",
                "--image",
                IMAGE,
                "--machine",
                MACHINE,
                "--deploy-dir",
            ])
            .arg(&deploy)
            .arg("-o")
            .arg(tmp.path().join("x.tar")),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(".rootfs.manifest") && err.contains("line 13"),
        "{err}"
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn cache_reuses_layers_and_survives_concurrent_builds() {
    if !require_all(&["python3", "zstd"]) {
        return;
    }
    let tmp = tempdir("deploy");
    let a = make_deploy(&tmp.path().join("a"), &[]);
    let b = make_deploy(&tmp.path().join("b"), &["--bump", "busybox"]);
    let cache = tmp.path().join("cache");
    let blobs = |c: &Path| fs::read_dir(c.join("blobs/sha256")).unwrap().count();
    let args = |out: &Path| {
        vec![
            "--cache".to_string(),
            cache.to_str().unwrap().to_string(),
            "--oci-dir".to_string(),
            out.to_str().unwrap().to_string(),
        ]
    };
    let build = |deploy: &Path, out: &Path| {
        let a = args(out);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        build_deploy(deploy, &a).0
    };
    let first = build(&a, &tmp.path().join("o1"));
    assert_eq!(blobs(&cache), 13);
    let again = build(&a, &tmp.path().join("o2"));
    assert_eq!(image_digests(&first), image_digests(&again));
    assert_eq!(first, again);
    assert_eq!(blobs(&cache), 13);
    // The same bytes as without the cache.
    let (plain, _) = build_deploy(&a, &["--oci-dir", tmp.path().join("o3").to_str().unwrap()]);
    assert_eq!(image_digests(&first), image_digests(&plain));
    assert_eq!(first, plain);
    let bumped = build(&b, &tmp.path().join("o4"));
    assert_eq!(blobs(&cache), 14, "only busybox's layer is new");
    assert_ne!(image_digests(&bumped).0, image_digests(&first).0);

    // A damaged cache entry is noticed and rebuilt, not served: judged by
    // the blobs the layout got, not by what rustimage says of them.
    let victim = first["layers"][0]["digest"].as_str().unwrap()[7..].to_string();
    fs::write(cache.join("blobs/sha256").join(&victim), b"garbage").unwrap();
    let healed = build(&a, &tmp.path().join("o5"));
    assert_eq!(image_digests(&healed), image_digests(&first));
    assert_layout_blobs_match(&tmp.path().join("o5"));

    // So is a record whose diff_id was edited: the config must get the
    // diff_id of what the layer really decompresses to.
    let mut edited = 0;
    for record in fs::read_dir(cache.join("layers")).unwrap() {
        let path = record.unwrap().path();
        let mut rec: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        rec["diff_id"] = format!("sha256:{}", "0".repeat(64)).into();
        fs::write(&path, serde_json::to_vec(&rec).unwrap()).unwrap();
        edited += 1;
    }
    assert!(edited >= 13, "{edited} records");
    let trusted_nothing = build(&a, &tmp.path().join("o6"));
    assert_eq!(image_digests(&trusted_nothing), image_digests(&first));
    assert_layout_blobs_match(&tmp.path().join("o6"));

    // Two builds at once into one cache.
    let fresh = tmp.path().join("cache2");
    let spawn = |deploy: &Path, out: &Path| {
        rustimage()
            .args([
                "build",
                "-q",
                "--image",
                IMAGE,
                "--machine",
                MACHINE,
                "--deploy-dir",
            ])
            .arg(deploy)
            .arg("--cache")
            .arg(&fresh)
            .arg("--oci-dir")
            .arg(out)
            .spawn()
            .unwrap()
    };
    let mut p1 = spawn(&a, &tmp.path().join("p1"));
    let mut p2 = spawn(&a, &tmp.path().join("p2"));
    assert!(p1.wait().unwrap().success());
    assert!(p2.wait().unwrap().success());
    assert_eq!(
        fs::read(tmp.path().join("p1/index.json")).unwrap(),
        fs::read(tmp.path().join("p2/index.json")).unwrap()
    );
    assert_eq!(blobs(&fresh), 13);
}

/// Every blob of the layout's image hashes to its digest, and every layer
/// decompresses to the config's diff_id for it.
fn assert_layout_blobs_match(layout: &Path) {
    use std::io::Read;
    let blob = |digest: &str| layout.join("blobs/sha256").join(&digest[7..]);
    let json = |digest: &str| -> Value {
        serde_json::from_slice(&fs::read(blob(digest)).unwrap()).unwrap()
    };
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest = json(manifest_digest);
    let config = json(manifest["config"]["digest"].as_str().unwrap());
    let layers = manifest["layers"].as_array().unwrap();
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(layers.len(), diff_ids.len());
    for (layer, diff_id) in layers.iter().zip(diff_ids) {
        let digest = layer["digest"].as_str().unwrap();
        let bytes = fs::read(blob(digest)).unwrap();
        assert_eq!(format!("sha256:{}", sha256_hex(&bytes)), digest);
        let mut tar = Vec::new();
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(
            format!("sha256:{}", sha256_hex(&tar)),
            diff_id.as_str().unwrap(),
            "layer {digest}"
        );
    }
}

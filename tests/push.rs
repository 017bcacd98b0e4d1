//! `rustimage push`, `build --push` and `index --push` against a real
//! distribution registry on 127.0.0.1: plain HTTP, TLS, htpasswd and token
//! auth, faults injected by a proxy; checked with the registry's own log,
//! skopeo and a real `docker pull`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::registry::*;
use common::*;
use serde_json::Value;

fn ready() -> bool {
    require_registry() && require_all(&["python3", "zstd", "skopeo"])
}

/// Builds the example image (optionally with one package changed) into an
/// archive; returns its path and the build summary.
fn archive(dir: &Path, name: &str, deploy_args: &[&str]) -> (PathBuf, Value) {
    let deploy = make_deploy(&dir.join(format!("{name}-build")), deploy_args);
    let out = dir.join(format!("{name}.tar"));
    let summary = run_ok(build_deploy_cmd(&deploy).arg("-o").arg(&out));
    (out, serde_json::from_slice(&summary.stdout).unwrap())
}

fn push(reg: &Registry, source: &Path, reference: &str, extra: &[&str]) -> Output {
    let mut cmd = rustimage();
    cmd.arg("push").arg(source).arg(reference).arg("--json");
    if !reg.is_tls() {
        cmd.arg("--insecure");
    }
    if let Some(ca) = reg.ca_cert() {
        cmd.arg("--ca-cert").arg(ca);
    }
    cmd.args(extra);
    cmd.output().unwrap()
}

fn push_ok(reg: &Registry, source: &Path, reference: &str, extra: &[&str]) -> Value {
    let out = push(reg, source, reference, extra);
    assert!(
        out.status.success(),
        "push failed: {}\n--- registry log ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        reg.log()
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn creds(reg: &Registry) -> String {
    let (u, p) = reg.creds().unwrap();
    format!("{u}:{p}")
}

#[test]
fn first_repeat_and_one_package_pushes_move_only_what_changed() {
    if !ready() || !require("dockerd") {
        return;
    }
    let tmp = tempdir("push");
    let (a, sa) = archive(tmp.path(), "a", &[]);
    let (b, sb) = archive(tmp.path(), "b", &["--bump", "busybox"]);
    let layers = sa["layers"].as_array().unwrap().len();
    let reg = Registry::plain();
    let reference = format!("{}/oe/{IMAGE}:1", reg.host());

    let mark = reg.mark();
    let first = push_ok(&reg, &a, &reference, &[]);
    let c = reg.counts_since(mark);
    assert_eq!(c.blob_uploads, layers + 1, "every layer and the config");
    assert_eq!(c.manifest_puts, 1);
    assert_eq!(first["digest"], sa["manifest"]);
    assert_eq!(first["uploaded"], layers + 1);

    let mark = reg.mark();
    let again = push_ok(&reg, &a, &reference, &[]);
    let c = reg.counts_since(mark);
    assert_eq!(c.blob_uploads, 0, "a repeat push uploads nothing");
    assert_eq!(c.blob_heads_found, layers + 1);
    assert_eq!(again["present"], layers + 1);

    let mark = reg.mark();
    let changed = push_ok(&reg, &b, &reference, &[]);
    let c = reg.counts_since(mark);
    assert_eq!(c.blob_uploads, 2, "busybox's layer and the config: {c:?}");
    assert_eq!(changed["digest"], sb["manifest"]);
    eprintln!(
        "blob uploads: first {} / repeat 0 / one package changed 2 ({layers} layers)",
        layers + 1
    );

    // The registry holds exactly what was built: skopeo reads the same
    // manifest back, and a real docker pull gets the rootfs.
    let raw = run_stdout(skopeo().args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]));
    assert_eq!(
        format!("sha256:{}", sha256_hex(raw.as_bytes())),
        sb["manifest"].as_str().unwrap()
    );
    let docker = docker();
    run_ok(docker.docker(["pull", &reference]));
    let got = docker_export_tree(docker, &reference, tmp.path());
    let want = tmp.path().join("want");
    make_root_dir(&want);
    run_ok(
        Command::new("tar")
            .args(["--zstd", "-xpf"])
            .arg(tmp.path().join(format!(
                "b-build/tmp/deploy/images/{MACHINE}/{IMAGE}-{MACHINE}.rootfs.tar.zst"
            )))
            .arg("-C")
            .arg(&want)
            .arg("--numeric-owner"),
    );
    // /dev/null is one of Docker's own mounts in a container's /dev.
    let mut ignore = DOCKER_ADDS.to_vec();
    ignore.push("dev/null");
    assert_same_tree(
        &filter_tree(&snapshot(&want), &ignore),
        &filter_tree(&got, &ignore),
        &[],
    );
}

#[test]
fn mounts_from_other_repositories_and_chunks_large_blobs() {
    if !ready() {
        return;
    }
    let tmp = tempdir("push");
    let (a, sa) = archive(tmp.path(), "a", &[]);
    let layers = sa["layers"].as_array().unwrap().len();
    let reg = Registry::plain();
    push_ok(&reg, &a, &format!("{}/team/base:1", reg.host()), &[]);

    let mark = reg.mark();
    let r = push_ok(
        &reg,
        &a,
        &format!("{}/team/app:1", reg.host()),
        &["--mount-from", "team/base"],
    );
    let c = reg.counts_since(mark);
    assert_eq!(c.mounts, layers + 1, "{c:?}");
    assert_eq!(c.blob_uploads, 0);
    assert_eq!(r["mounted"], layers + 1);

    // Chunked: every blob over 4 KiB goes up in 4 KiB PATCHes.
    let mark = reg.mark();
    push_ok(
        &reg,
        &a,
        &format!("{}/team/chunked:1", reg.host()),
        &["--chunk-size", "4096"],
    );
    let c = reg.counts_since(mark);
    assert!(c.patches > 20, "{c:?}");
    assert_eq!(c.blob_uploads, layers + 1);
    let raw = run_stdout(skopeo().args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/team/chunked:1", reg.host()),
    ]));
    assert_eq!(
        format!("sha256:{}", sha256_hex(raw.as_bytes())),
        sa["manifest"].as_str().unwrap()
    );
    // skopeo verifies every blob's digest while copying it out.
    skopeo_copy_from(&reg, "team/chunked:1", &tmp.path().join("copy"));
}

fn skopeo_copy_from(reg: &Registry, repo_tag: &str, dest: &Path) {
    let mut args = vec!["copy".to_string(), "--quiet".to_string()];
    args.extend(reg.skopeo_src_args());
    args.push(reg.skopeo_ref(repo_tag));
    args.push(format!("oci:{}:x", dest.display()));
    run_ok(skopeo().args(&args));
}

#[test]
fn tls_with_basic_auth_and_clean_failures() {
    if !ready() {
        return;
    }
    let tmp = tempdir("push");
    let (a, sa) = archive(tmp.path(), "a", &[]);
    let reg = Registry::htpasswd(true);
    let reference = format!("{}/secure/app:1", reg.host());

    // Without our CA: a TLS error that says what to do.
    let out = rustimage()
        .arg("push")
        .arg(&a)
        .arg(&reference)
        .arg("--creds")
        .arg(creds(&reg))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--ca-cert"), "{err}");

    // No credentials, then a wrong password: clear, and no secret printed.
    let out = push(&reg, &a, &reference, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("requires authentication") && err.contains("--creds"),
        "{err}"
    );
    let wrong = format!("{TEST_USER}:{TEST_PASSWORD}-wrong");
    let out = push(&reg, &a, &reference, &["--creds", &wrong]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(all.contains("rejected the credentials"), "{all}");
    assert!(!all.contains(TEST_PASSWORD), "password leaked: {all}");
    assert_eq!(all.trim_end().lines().count(), 1, "{all}");

    // The right credentials, from the flag and from a docker config.json.
    let r = push_ok(&reg, &a, &reference, &["--creds", &creds(&reg)]);
    assert_eq!(r["digest"], sa["manifest"]);
    let config_dir = tmp.path().join("docker-config");
    reg.write_docker_config(&config_dir);
    let out = {
        let mut cmd = rustimage();
        cmd.arg("push")
            .arg(&a)
            .arg(format!("{}/secure/other:1", reg.host()))
            .arg("--json");
        cmd.arg("--ca-cert")
            .arg(reg.ca_cert().unwrap())
            .env("DOCKER_CONFIG", &config_dir);
        cmd.output().unwrap()
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And from containers' auth.json.
    let out = {
        let mut cmd = rustimage();
        cmd.arg("push")
            .arg(&a)
            .arg(format!("{}/secure/third:1", reg.host()));
        cmd.arg("--ca-cert")
            .arg(reg.ca_cert().unwrap())
            .env("REGISTRY_AUTH_FILE", config_dir.join("config.json"))
            .env("DOCKER_CONFIG", tmp.path().join("empty"));
        cmd.output().unwrap()
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!reg.log().contains(TEST_PASSWORD));
}

#[test]
fn bearer_tokens_are_reused_and_refreshed() {
    if !ready() || !require("dockerd") {
        return;
    }
    let tmp = tempdir("push");
    let (a, sa) = archive(tmp.path(), "a", &[]);
    let reg = Registry::token(true);
    let ts = reg.token_server().unwrap();
    let reference = format!("{}/tok/app:1", reg.host());
    let r = push_ok(
        &reg,
        &a,
        &reference,
        &["--creds", &creds(&reg), "--parallel", "1"],
    );
    assert_eq!(r["digest"], sa["manifest"]);
    let issued = ts.tokens_issued();
    let requests = reg.counts().requests;
    assert!(issued <= 2, "{issued} tokens for {requests} requests");
    assert!(
        ts.scopes_requested()
            .iter()
            .any(|s| s == "repository:tok/app:pull,push"),
        "{:?}",
        ts.scopes_requested()
    );

    // Tokens that expire at once: every 401 fetches a fresh one and the
    // push still completes.
    ts.set_valid_for(1);
    std::thread::sleep(Duration::from_millis(1500));
    let (b, sb) = archive(tmp.path(), "b", &["--bump", "busybox"]);
    let r = push_ok(&reg, &b, &reference, &["--creds", &creds(&reg)]);
    assert_eq!(r["digest"], sb["manifest"]);
    assert!(ts.tokens_issued() > issued);
    ts.set_valid_for(300);

    // The identity token `docker login` leaves in config.json.
    let docker = docker();
    reg.docker_login(docker);
    let client_config = docker.dir().join("client");
    let out = {
        let mut cmd = rustimage();
        cmd.arg("push")
            .arg(&a)
            .arg(format!("{}/tok/from-login:1", reg.host()));
        cmd.arg("--ca-cert")
            .arg(reg.ca_cert().unwrap())
            .env("DOCKER_CONFIG", &client_config);
        cmd.output().unwrap()
    };
    reg.docker_logout(docker);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        ts.requests()
            .iter()
            .any(|r| r.grant_type.as_deref() == Some("refresh_token")),
        "the identity token was used"
    );
}

#[test]
fn retries_through_drops_503s_and_slow_commits() {
    if !ready() {
        return;
    }
    let tmp = tempdir("push");
    let (a, sa) = archive(tmp.path(), "a", &[]);
    let layers = sa["layers"].as_array().unwrap().len();
    let reg = Registry::plain();
    let proxy = FaultProxy::start(&reg.host());
    let drop_id = proxy.add(Rule::new("PUT", "/blobs/uploads/", Fault::Drop).times(2));
    let unavailable = proxy.add(Rule::new("HEAD", "/blobs/", Fault::retry_after(503, 1)).times(2));
    let busy = proxy.add(Rule::new("POST", "/blobs/uploads/", Fault::status(429)).times(1));
    // A commit answered after the client gave up: the registry stored it,
    // the client must notice with HEAD rather than fail or resend blindly.
    let slow = proxy.add(
        Rule::new("PUT", "/blobs/uploads/", Fault::delay_ms(4000))
            .skip(3)
            .times(1),
    );
    let reference = format!("{}/faulty/app:1", proxy.host());
    let r = push_ok(&reg, &a, &reference, &["--timeout", "2", "--parallel", "2"]);
    assert_eq!(r["digest"], sa["manifest"]);
    for (name, id) in [
        ("drop", drop_id),
        ("503", unavailable),
        ("429", busy),
        ("slow", slow),
    ] {
        assert!(proxy.fired(id) > 0, "rule {name} never fired");
    }
    // Complete: every blob and the manifest are there.
    let m = reg.manifest("faulty/app", "1").expect("manifest");
    for d in m.referenced_digests() {
        assert!(reg.blob_exists("faulty/app", &d), "{d} missing");
    }
    assert_eq!(m.referenced_digests().len(), layers + 1);

    // Chunked uploads resume after a dropped PATCH from the registry's offset.
    let drop_patch = proxy.add(
        Rule::new("PATCH", "/blobs/uploads/", Fault::Drop)
            .skip(2)
            .times(2),
    );
    let r = push_ok(
        &reg,
        &a,
        &format!("{}/faulty/chunked:1", proxy.host()),
        &["--chunk-size", "8192"],
    );
    assert_eq!(r["digest"], sa["manifest"]);
    assert!(proxy.fired(drop_patch) > 0);
    skopeo_copy_from(&reg, "faulty/chunked:1", &tmp.path().join("copy"));

    // A registry that stays down: a clean failure, no tag.
    proxy.add(Rule::new("HEAD", "/blobs/", Fault::status(503)).times(1000));
    let out = push(&reg, &a, &format!("{}/faulty/down:1", proxy.host()), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(reg.manifest("faulty/down", "1").is_none());
}

#[test]
fn falls_back_to_docker_types_when_oci_is_refused() {
    if !ready() {
        return;
    }
    let tmp = tempdir("push");
    let (a, _) = archive(tmp.path(), "a", &[]);
    let reg = Registry::plain();
    let proxy = FaultProxy::start(&reg.host());
    proxy.add(Rule::new("PUT", "/manifests/", Fault::status(415)).times(1));
    let r = push_ok(&reg, &a, &format!("{}/old/app:1", proxy.host()), &[]);
    assert_eq!(r["docker_media_types"], true);
    let m = reg.manifest("old/app", "1").unwrap();
    assert_eq!(
        m.media_type,
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(r["digest"], m.digest);
    skopeo_copy_from(&reg, "old/app:1", &tmp.path().join("copy"));
}

#[test]
fn build_push_and_index_push() {
    if !ready() || !require("dockerd") {
        return;
    }
    let tmp = tempdir("push");
    let deploy = make_deploy(&tmp.path().join("b"), &[]);
    let reg = Registry::plain();
    let digestfile = tmp.path().join("digest");
    let reference = format!("{}/oe/direct:1", reg.host());
    let out = run_ok(
        build_deploy_cmd(&deploy)
            .args(["--push", &reference, "--insecure", "--digestfile"])
            .arg(&digestfile),
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        fs::read_to_string(&digestfile).unwrap(),
        summary["manifest"].as_str().unwrap()
    );
    assert!(reg.manifest("oe/direct", "1").is_some());
    // Nothing was written but the push (no archive beside the deploy dir).

    // Two machines, one index; docker pulls the amd64 image from it.
    let amd = tmp.path().join("amd.tar");
    let arm = tmp.path().join("arm.tar");
    for (out, arch) in [(&amd, "amd64"), (&arm, "arm64")] {
        run_ok(
            rustimage()
                .args([
                    "build",
                    "-q",
                    "--image",
                    IMAGE,
                    "--machine",
                    MACHINE,
                    "--arch",
                    arch,
                    "--deploy-dir",
                ])
                .arg(&deploy)
                .arg("-o")
                .arg(out),
        );
    }
    let index_ref = format!("{}/oe/multi:1", reg.host());
    let out = run_ok(
        rustimage()
            .args(["index", "--json", "--insecure", "--push", &index_ref])
            .arg(&amd)
            .arg(&arm),
    );
    let index: Value = serde_json::from_slice(&out.stdout).unwrap();
    let m = reg.manifest("oe/multi", "1").unwrap();
    assert_eq!(m.media_type, "application/vnd.oci.image.index.v1+json");
    assert_eq!(index["digest"], m.digest);
    let platforms: Vec<String> = m.json()["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["platform"]["architecture"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(platforms, vec!["amd64", "arm64"]);
    for child in m.referenced_digests() {
        assert!(
            reg.manifest("oe/multi", &child).is_some(),
            "{child} pushed before the index"
        );
    }
    let docker = docker();
    run_ok(docker.docker(["pull", &index_ref]));
    let arch =
        run_stdout(docker.docker(["image", "inspect", "-f", "{{.Architecture}}", &index_ref]));
    assert_eq!(arch, "amd64");
}

/// What Docker 20.10's own `docker save` writes (a manifest.json and
/// `<id>/layer.tar` files, no OCI index) is read back as an image:
/// `inspect` names it and shows the same diff_ids, and `push` sends it;
/// what the registry then holds has the config and layers of the image
/// docker loaded.
#[test]
fn a_docker_save_archive_without_an_oci_index_inspects_and_pushes() {
    if !ready() || !require_all(&["dockerd", "tar"]) {
        return;
    }
    let tmp = tempdir("push");
    let (a, sa) = archive(tmp.path(), "a", &[]);
    let (_, layers) = image_digests(&sa);
    let docker = docker();
    run_ok(docker.docker(["load", "-i"]).arg(&a));
    let saved = tmp.path().join("saved.tar");
    run_ok(
        docker
            .docker(["save", "-o"])
            .arg(&saved)
            .arg("core-image-minimal:latest"),
    );
    let members = run_stdout(Command::new("tar").arg("-tf").arg(&saved));
    assert!(
        members.lines().any(|m| m == "manifest.json") && !members.contains("index.json"),
        "a Docker 20.10 archive: {members}"
    );

    let shown = run_stdout(rustimage().arg("inspect").arg(&saved));
    assert!(
        shown.contains("Names       core-image-minimal:latest"),
        "{shown}"
    );
    for (_, diff_id) in &layers {
        assert!(shown.contains(diff_id.as_str()), "{diff_id} in\n{shown}");
    }

    let reg = Registry::plain();
    let reference = format!("{}/legacy/{IMAGE}:1", reg.host());
    let pushed = push_ok(&reg, &saved, &reference, &[]);
    let manifest = reg.manifest(&format!("legacy/{IMAGE}"), "1").unwrap();
    assert_eq!(pushed["digest"], manifest.digest.as_str());
    let manifest: Value = serde_json::from_slice(&manifest.body).unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let config: Value =
        serde_json::from_slice(&reg.blob(&format!("legacy/{IMAGE}"), config_digest).unwrap())
            .unwrap();
    let want: Vec<&str> = layers.iter().map(|(_, d)| d.as_str()).collect();
    assert_eq!(config["rootfs"]["diff_ids"], serde_json::json!(want));
    // Docker 20.10 saves layers uncompressed: each blob is its own diff_id.
    let blobs: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert_eq!(blobs, want);
    skopeo_copy_from(&reg, &format!("legacy/{IMAGE}:1"), &tmp.path().join("copy"));
}

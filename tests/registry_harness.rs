//! Tests of the registry harness (tests/common/registry.rs) without
//! rustimage: real distribution registries (plain HTTP, TLS, htpasswd and
//! token auth over TLS), the token server, the fault-injecting proxy and
//! the access-log counters, driven by skopeo, docker and raw HTTP.
//! Missing tools make a test skip (or fail with CI=true).

// Tests panic on purpose; the crate's no-unwrap lints target product code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::ErrorKind;
use std::path::Path;
use std::process::Output;
use std::thread;
use std::time::{Duration, Instant};

use common::registry::*;
use common::*;
use serde_json::Value;
use tempfile::TempDir;

fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("rustimage-reg-harness-")
        .tempdir()
        .unwrap()
}

fn have_tools() -> bool {
    require_registry() && require("skopeo")
}

/// Docker pulls need root and the private engine.
fn have_docker() -> bool {
    require_root() && require("dockerd") && require("docker")
}

/// A two-layer image: a base layer and an app layer whose content is
/// `app` (so a new `app` changes one layer and the config).
fn two_layer_image(layout: &Path, tag: &str, app: &str) -> OciImage {
    write_oci_layout(
        layout,
        tag,
        &[
            &[("etc/base.txt", b"base layer\n" as &[u8])],
            &[("app/hello.txt", app.as_bytes())],
        ],
    )
}

fn skopeo_push_cmd(reg: &Registry, layout: &Path, tag: &str, dest: &str) -> std::process::Command {
    let mut cmd = skopeo();
    cmd.args(["copy", "--quiet"])
        .args(reg.skopeo_dest_args())
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(reg.skopeo_ref(dest));
    cmd
}

fn push(reg: &Registry, layout: &Path, tag: &str, dest: &str) -> Output {
    run_ok(skopeo_push_cmd(reg, layout, tag, dest))
}

fn all_output(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The registry holds the image completely: manifest by tag and every blob.
fn assert_complete(reg: &Registry, repo: &str, tag: &str, img: &OciImage) {
    let m = reg
        .manifest(repo, tag)
        .unwrap_or_else(|| panic!("{repo}:{tag} missing"));
    assert_eq!(m.digest, img.manifest_digest, "manifest of {repo}:{tag}");
    assert_eq!(m.media_type, "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(m.referenced_digests(), {
        let mut v = vec![img.config_digest.clone()];
        v.extend(img.layer_digests.iter().cloned());
        v
    });
    for d in img.blobs() {
        assert!(reg.blob_exists(repo, &d), "{repo}: blob {d} missing");
    }
}

/// `docker pull` with the private engine, then its RepoDigests contain
/// the manifest digest; the image is removed again.
fn docker_pull_check(reg: &Registry, repo_tag: &str, manifest_digest: &str) {
    let d = docker();
    let image = format!("{}/{repo_tag}", reg.host());
    let out = d.docker(["pull", &image]).output().unwrap();
    assert!(
        out.status.success(),
        "docker pull {image}: {}\n--- registry log ---\n{}",
        all_output(&out),
        reg.log()
    );
    let inspect: Value =
        serde_json::from_str(&run_stdout(d.docker(["image", "inspect", &image]))).unwrap();
    let repo = repo_tag.rsplit_once(':').unwrap().0;
    let want = format!("{}/{repo}@{manifest_digest}", reg.host());
    let digests = &inspect[0]["RepoDigests"];
    assert!(
        digests
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v.as_str() == Some(want.as_str())),
        "RepoDigests {digests} lacks {want}"
    );
    run_ok(d.docker(["rmi", &image]));
}

// ---------------------------------------------------------------------------
// Pure parsing: no tools needed
// ---------------------------------------------------------------------------

#[test]
fn access_log_lines_parse() {
    let put = r#"127.0.0.1 - - [28/Nov/2026:07:28:58 +0000] "PUT /v2/a/b/blobs/uploads/d2cd?_state=Z7c%3D&digest=sha256%3A166d HTTP/1.1" 201 0 "" "skopeo/1.9.3""#;
    let e = parse_access_line(put).unwrap();
    assert_eq!(e.method, "PUT");
    assert_eq!(e.path, "/v2/a/b/blobs/uploads/d2cd");
    assert_eq!(e.param("_state"), Some("Z7c="));
    assert_eq!(e.uploaded_digest(), Some("sha256:166d"));
    assert_eq!(e.repo(), Some("a/b"));
    assert_eq!((e.status, e.bytes), (201, 0));
    assert_eq!(e.user_agent, "skopeo/1.9.3");

    let mount = r#"127.0.0.1 - - [28/Nov/2026:07:28:58 +0000] "POST /v2/c/blobs/uploads/?from=a%2Fb&mount=sha256%3A166d HTTP/2.0" 201 0 "" "docker/20.10.24 go/go1.19.8 (x)""#;
    let e = parse_access_line(mount).unwrap();
    assert!(e.is_mount() && e.is_mount_attempt());
    assert_eq!(e.uploaded_digest(), None);
    assert_eq!(e.param("from"), Some("a/b"));
    assert_eq!(e.user_agent, "docker/20.10.24 go/go1.19.8 (x)");

    let head = r#"127.0.0.1 - - [28/Nov/2026:07:28:58 +0000] "HEAD /v2/a/b/blobs/sha256:166d HTTP/1.1" 404 157 "" "ua with \"quotes\"""#;
    let e = parse_access_line(head).unwrap();
    assert!(e.is_blob_head());
    assert_eq!(e.user_agent, "ua with \"quotes\"");
    let counts = Counts::from_entries(&[e]);
    assert_eq!((counts.blob_heads, counts.blob_heads_found), (1, 0));

    let logrus = r#"time="2026-11-28T07:28:47Z" level=info msg="response completed" http.request.method=GET http.request.uri=/v2/ http.response.status=200"#;
    assert!(parse_access_line(logrus).is_none());
    assert!(parse_access_line("127.0.0.1 - - [28/Nov/2026:07:2").is_none());
}

#[test]
fn encodings() {
    for s in ["", "f", "fo", "foo", "foob", "fooba", "foobar"] {
        let e = base64_encode(s.as_bytes());
        assert_eq!(base64_decode(&e).unwrap(), s.as_bytes());
    }
    assert_eq!(base64_encode(b"user:pass"), "dXNlcjpwYXNz");
    assert_eq!(base64url_encode(&[0xfb, 0xff]), "-_8");
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    assert_eq!(rfc3339(4_102_444_800), "2100-01-01T00:00:00Z");
    assert_eq!(percent_decode("sha256%3Aab+c"), "sha256:ab c");
    assert_eq!(percent_encode("a/b:c d"), "a%2Fb%3Ac%20d");
}

// ---------------------------------------------------------------------------
// Plain HTTP
// ---------------------------------------------------------------------------

#[test]
fn plain_registry_counts_uploads_skips_and_mounts() {
    if !have_tools() {
        return;
    }
    let tmp = tempdir();
    let layout = tmp.path().join("layout");
    let v1 = two_layer_image(&layout, "v1", "hello 1\n");
    let reg = Registry::plain();
    eprintln!("registry ready in {:?} at {}", reg.startup, reg.url());

    // First push: every blob uploaded once, one manifest.
    let mark = reg.mark();
    push(&reg, &layout, "v1", "demo/app:v1");
    let c = reg.counts_since(mark);
    eprintln!("first push: {c:?}");
    assert_eq!(c.blob_uploads, 3, "{c:?}");
    for d in v1.blobs() {
        assert_eq!(c.uploads_of(&d), 1, "{d}: {c:?}");
    }
    assert_eq!(c.manifest_puts, 1);
    assert!(c.blob_heads >= 3, "{c:?}");
    assert_eq!(c.blob_heads_found, 0);
    assert_eq!(c.mounts, 0);
    assert_eq!(c.patches, 3, "skopeo sends each blob as one PATCH");
    assert_complete(&reg, "demo/app", "v1", &v1);
    assert_eq!(reg.tags("demo/app"), ["v1"]);
    assert_eq!(reg.catalog(), ["demo/app"]);
    assert!(reg.manifest("demo/app", "nope").is_none());
    assert!(reg.tags("nothing/here").is_empty());

    // Same push again: HEADs find everything, nothing uploaded.
    let mark = reg.mark();
    push(&reg, &layout, "v1", "demo/app:v1");
    let c = reg.counts_since(mark);
    eprintln!("repeat push: {c:?}");
    assert_eq!(c.blob_uploads, 0, "{c:?}");
    assert_eq!(c.patches, 0);
    assert_eq!(c.blob_heads_found, 3, "{c:?}");
    assert_eq!(c.manifest_puts, 1);

    // Another repository of the same registry: layers are mounted.
    let mark = reg.mark();
    push(&reg, &layout, "v1", "other/app:v1");
    let c = reg.counts_since(mark);
    eprintln!("push to another repository: {c:?}");
    assert_eq!(c.mounts, 2, "{c:?}");
    for d in &v1.layer_digests {
        assert_eq!(c.uploads_of(d), 0, "{d} uploaded instead of mounted: {c:?}");
    }
    assert_complete(&reg, "other/app", "v1", &v1);
    let mut cat = reg.catalog();
    cat.sort();
    assert_eq!(cat, ["demo/app", "other/app"]);

    // One layer changed: only that layer and the new config are uploaded.
    let v2 = two_layer_image(&layout, "v2", "hello 2\n");
    assert_eq!(v2.layer_digests[0], v1.layer_digests[0]);
    let mark = reg.mark();
    push(&reg, &layout, "v2", "demo/app:v2");
    let c = reg.counts_since(mark);
    eprintln!("one changed layer: {c:?}");
    assert_eq!(c.blob_uploads, 2, "{c:?}");
    assert_eq!(c.uploads_of(&v2.layer_digests[1]), 1);
    assert_eq!(c.uploads_of(&v2.config_digest), 1);
    assert_eq!(c.uploads_of(&v2.layer_digests[0]), 0);
    assert_complete(&reg, "demo/app", "v2", &v2);

    // Whole-log counters agree with the sum of the pushes.
    assert_eq!(reg.blob_uploads(), 3 + 1 + 2);
    assert_eq!(reg.manifest_puts(), 4);
    assert_eq!(reg.blob_uploads_of(&v1.layer_digests[0]), 1);
    assert_eq!(reg.mounts(), 2);

    if have_docker() {
        docker_pull_check(&reg, "demo/app:v2", &v2.manifest_digest);
        // docker pull only reads.
        assert_eq!(reg.manifest_puts(), 4);
    }
}

#[test]
fn registry_restarts_with_its_storage() {
    if !have_tools() {
        return;
    }
    let tmp = tempdir();
    let img = two_layer_image(tmp.path(), "t", "restart\n");
    let mut reg = Registry::plain();
    push(&reg, tmp.path(), "t", "keep/me:t");
    let port = reg.port();
    reg.restart();
    assert_eq!(reg.port(), port);
    assert_complete(&reg, "keep/me", "t", &img);
    assert_eq!(reg.counts().blob_uploads, 0, "the log starts anew");
    let dir = reg.dir().to_path_buf();
    drop(reg);
    assert!(!dir.exists(), "registry directory left behind");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "registry still listening after drop"
    );
}

// ---------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------

#[test]
fn tls_registry_is_verified_with_the_test_ca() {
    if !have_tools() {
        return;
    }
    let tmp = tempdir();
    let img = two_layer_image(tmp.path(), "t", "tls\n");
    let reg = Registry::tls();
    assert!(reg.url().starts_with("https://127.0.0.1:"));
    let ca = reg.ca_cert().unwrap();
    assert!(ca.exists());
    let subject = run_stdout(
        std::process::Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-in"])
            .arg(&ca),
    );
    assert!(subject.contains("rustimage test registry CA"), "{subject}");

    // Without the CA, TLS verification fails.
    let out = run_fail(
        skopeo()
            .args([
                "copy",
                "--quiet",
                "--dest-tls-verify=true",
                "--dest-no-creds",
            ])
            .arg(format!("oci:{}:t", tmp.path().display()))
            .arg(reg.skopeo_ref("sec/app:t")),
    );
    let text = all_output(&out);
    assert!(
        text.contains("x509") || text.contains("certificate"),
        "unexpected error: {text}"
    );
    // Plain HTTP to a TLS port fails too.
    let r = http_request(&reg.host(), "GET", "/v2/", &[], b"").unwrap();
    assert_eq!(
        r.status, 400,
        "Go answers plain HTTP on a TLS port with 400"
    );

    let mark = reg.mark();
    push(&reg, tmp.path(), "t", "sec/app:t");
    let c = reg.counts_since(mark);
    assert_eq!(c.blob_uploads, 3, "{c:?}");
    assert_eq!(c.manifest_puts, 1);
    assert_complete(&reg, "sec/app", "t", &img);
    // skopeo reads it back with verification on.
    let raw = run_stdout(
        skopeo()
            .args(["inspect", "--raw"])
            .args(reg.skopeo_args(""))
            .arg(reg.skopeo_ref("sec/app:t")),
    );
    assert_eq!(
        format!("sha256:{}", sha256_hex(raw.as_bytes())),
        img.manifest_digest
    );

    if have_docker() {
        // Docker treats 127.0.0.0/8 registries as insecure: it speaks TLS
        // without verifying (and would fall back to HTTP), so no CA in
        // /etc/docker/certs.d is needed, or used.
        docker_pull_check(&reg, "sec/app:t", &img.manifest_digest);
    }
}

// ---------------------------------------------------------------------------
// htpasswd
// ---------------------------------------------------------------------------

#[test]
fn htpasswd_registry_over_tls() {
    if !have_tools() {
        return;
    }
    let tmp = tempdir();
    let img = two_layer_image(tmp.path(), "t", "basic\n");
    let reg = Registry::htpasswd(true);
    assert_eq!(reg.creds(), Some((TEST_USER, TEST_PASSWORD)));

    // Anonymous requests get the Basic challenge.
    let r = reg.raw_request("GET", "/v2/", &[], b"");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"rustimage-test\"")
    );

    // A wrong password fails and is never echoed.
    let wrong = "Wrong-Pw-8c1d";
    let mark = reg.mark();
    let mut cmd = skopeo_push_cmd(&reg, tmp.path(), "t", "basic/app:t");
    cmd.arg(format!("--dest-creds={TEST_USER}:{wrong}"));
    let out = run_fail(cmd);
    let text = all_output(&out);
    assert!(!text.contains(wrong), "password in skopeo output: {text}");
    assert!(
        text.contains("401") || text.contains("unauthorized"),
        "{text}"
    );
    let c = reg.counts_since(mark);
    assert!(c.unauthorized >= 1, "{c:?}");
    assert_eq!(c.blob_uploads, 0);
    assert!(!reg.log().contains(wrong), "password in the registry log");

    let mark = reg.mark();
    push(&reg, tmp.path(), "t", "basic/app:t");
    let c = reg.counts_since(mark);
    assert_eq!(c.blob_uploads, 3, "{c:?}");
    assert_complete(&reg, "basic/app", "t", &img);
    assert!(
        !reg.log().contains(TEST_PASSWORD),
        "password in the registry log"
    );

    // A docker config.json with the credentials (as rustimage will read).
    let cfg: Value =
        serde_json::from_slice(&std::fs::read(reg.write_docker_config(tmp.path())).unwrap())
            .unwrap();
    let auth = cfg["auths"][reg.host()]["auth"].as_str().unwrap();
    assert_eq!(
        base64_decode(auth).unwrap(),
        format!("{TEST_USER}:{TEST_PASSWORD}").as_bytes()
    );

    if have_docker() {
        let d = docker();
        reg.docker_login(d);
        docker_pull_check(&reg, "basic/app:t", &img.manifest_digest);
        reg.docker_logout(d);
    }
}

// ---------------------------------------------------------------------------
// Token auth
// ---------------------------------------------------------------------------

#[test]
fn token_registry_over_tls() {
    if !have_tools() {
        return;
    }
    let tmp = tempdir();
    let img = two_layer_image(tmp.path(), "t", "token\n");
    let reg = Registry::token(true);
    let ts = reg.token_server().unwrap();

    // The challenge names the realm, service and scope.
    let r = reg.raw_request("GET", "/v2/tok/app/tags/list", &[], b"");
    assert_eq!(r.status, 401);
    let challenge = r.header("www-authenticate").unwrap().to_string();
    assert_eq!(
        challenge,
        format!(
            "Bearer realm=\"{}\",service=\"{TOKEN_SERVICE}\",scope=\"repository:tok/app:pull\"",
            ts.realm()
        )
    );

    let mark = reg.mark();
    push(&reg, tmp.path(), "t", "tok/app:t");
    let c = reg.counts_since(mark);
    eprintln!("token push: {c:?}; token requests: {:?}", ts.requests());
    assert_eq!(c.blob_uploads, 3, "{c:?}");
    assert_complete(&reg, "tok/app", "t", &img);
    let issued = ts.tokens_issued();
    assert!(issued >= 1);
    // Token reuse: far fewer tokens than authenticated requests.
    assert!(
        issued * 3 < c.requests,
        "{issued} tokens for {} requests",
        c.requests
    );
    assert!(
        ts.scopes_requested()
            .iter()
            .any(|s| s == "repository:tok/app:pull,push"),
        "scopes: {:?}",
        ts.scopes_requested()
    );
    assert!(
        ts.requests()
            .iter()
            .all(|r| r.user.as_deref() == Some(TEST_USER) && r.outcome == TokenOutcome::Issued)
    );

    // Wrong password: the token server says 401, the push fails cleanly.
    let wrong = "Wrong-Pw-0b7e";
    let before = (ts.tokens_issued(), ts.unauthorized());
    let mut cmd = skopeo_push_cmd(&reg, tmp.path(), "t", "tok/app:t2");
    cmd.arg(format!("--dest-creds={TEST_USER}:{wrong}"));
    let text = all_output(&run_fail(cmd));
    assert!(!text.contains(wrong), "password in skopeo output: {text}");
    assert_eq!(ts.tokens_issued(), before.0);
    assert!(ts.unauthorized() > before.1);
    assert!(reg.manifest("tok/app", "t2").is_none());

    // Only pull granted: the push is refused by the registry.
    ts.set_granted_actions(Some(&["pull"]));
    let mut cmd = skopeo_push_cmd(&reg, tmp.path(), "t", "tok/app:t3");
    cmd.arg(format!("--dest-creds={TEST_USER}:{TEST_PASSWORD}"));
    run_fail(cmd);
    assert!(reg.manifest("tok/app", "t3").is_none());
    ts.set_granted_actions(None);

    if have_docker() {
        // docker login asks for an offline token (a refresh token, kept in
        // the client's config.json as `identitytoken`), docker pull trades
        // it for an access token with an OAuth2 POST.
        let d = docker();
        let k = ts.requests().len();
        reg.docker_login(d);
        let cfg: Value =
            serde_json::from_slice(&std::fs::read(d.dir().join("client/config.json")).unwrap())
                .unwrap();
        let entry = &cfg["auths"][reg.host()];
        assert!(entry["identitytoken"].as_str().is_some(), "{cfg}");
        docker_pull_check(&reg, "tok/app:t", &img.manifest_digest);
        reg.docker_logout(d);
        let seen = &ts.requests()[k..];
        eprintln!("docker's token requests: {seen:?}");
        assert!(
            seen.iter()
                .any(|r| r.method == "GET" && r.offline && r.outcome == TokenOutcome::Issued)
        );
        assert!(seen.iter().any(|r| r.method == "POST"
            && r.grant_type.as_deref() == Some("refresh_token")
            && r.scopes == ["repository:tok/app:pull"]
            && r.outcome == TokenOutcome::Issued));
    }
}

#[test]
fn token_server_protocol_and_expiry() {
    if !require_registry() {
        return;
    }
    let reg = Registry::token(false);
    let ts = reg.token_server().unwrap();
    let basic = format!(
        "Basic {}",
        base64_encode(format!("{TEST_USER}:{TEST_PASSWORD}").as_bytes())
    );
    let get = |query: &str, auth: Option<&str>| {
        let mut h = vec![];
        if let Some(a) = auth {
            h.push(("Authorization", a));
        }
        http_request(&ts.host(), "GET", &format!("/token?{query}"), &h, b"").unwrap()
    };
    let scope = "repository:p/q:pull,push";
    let q = format!("service={TOKEN_SERVICE}&scope={}", percent_encode(scope));

    // GET with Basic auth.
    let before = ts.tokens_issued();
    let r = get(&q, Some(&basic));
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    let token = j["token"].as_str().unwrap().to_string();
    assert_eq!(j["access_token"], j["token"]);
    assert_eq!(j["expires_in"], 300);
    assert!(j["issued_at"].as_str().unwrap().ends_with('Z'));
    assert!(j.get("refresh_token").is_none());
    assert_eq!(ts.tokens_issued(), before + 1);
    // The JWT: x5c header, claims for the scope.
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&base64_decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["x5c"].as_array().unwrap().len(), 1);
    let claims: Value = serde_json::from_slice(&base64_decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["aud"], TOKEN_SERVICE);
    assert_eq!(claims["iss"], TOKEN_ISSUER);
    assert_eq!(claims["sub"], TEST_USER);
    assert_eq!(
        claims["access"],
        serde_json::json!([{"type": "repository", "name": "p/q", "actions": ["pull", "push"]}])
    );
    // The registry accepts it.
    let bearer = format!("Bearer {token}");
    let r = reg.raw_request(
        "GET",
        "/v2/p/q/tags/list",
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(
        r.status,
        404,
        "authorized, repository unknown: {}",
        r.text()
    );
    // ... but not for another repository.
    let r = reg.raw_request(
        "GET",
        "/v2/x/y/tags/list",
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("error=\"insufficient_scope\""),
        "{:?}",
        r.headers
    );

    // Wrong or missing credentials, wrong service.
    let bad = format!(
        "Basic {}",
        base64_encode(format!("{TEST_USER}:nope").as_bytes())
    );
    assert_eq!(get(&q, Some(&bad)).status, 401);
    assert_eq!(get(&q, None).status, 401);
    assert_eq!(get("service=other&scope=x", Some(&basic)).status, 400);
    assert_eq!(ts.unauthorized(), 2);

    // offline_token -> refresh token -> POST grant_type=refresh_token.
    let r = get(&format!("{q}&offline_token=true&client_id=t"), Some(&basic));
    let refresh = r.json()["refresh_token"].as_str().unwrap().to_string();
    let form = format!(
        "grant_type=refresh_token&service={TOKEN_SERVICE}&client_id=t&refresh_token={refresh}&scope={}",
        percent_encode("repository:p/q:pull registry:catalog:*")
    );
    let headers = [("Content-Type", "application/x-www-form-urlencoded")];
    let r = http_request(&ts.host(), "POST", "/token", &headers, form.as_bytes()).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["access_token"].as_str().is_some());
    let form = format!(
        "grant_type=password&service={TOKEN_SERVICE}&client_id=t&username={TEST_USER}&password={TEST_PASSWORD}&scope=repository:p/q:pull"
    );
    let r = http_request(&ts.host(), "POST", "/token", &headers, form.as_bytes()).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let form = format!("grant_type=refresh_token&service={TOKEN_SERVICE}&refresh_token=forged");
    let r = http_request(&ts.host(), "POST", "/token", &headers, form.as_bytes()).unwrap();
    assert_eq!(r.status, 401);
    let last = ts.requests();
    let posts: Vec<_> = last.iter().filter(|r| r.method == "POST").collect();
    assert_eq!(posts.len(), 3);
    assert_eq!(
        posts[0].scopes,
        ["repository:p/q:pull", "registry:catalog:*"]
    );
    assert_eq!(posts[0].grant_type.as_deref(), Some("refresh_token"));

    // Keep-alive: two token requests on one connection.
    let mut conn = HttpConn::connect(&ts.host()).unwrap();
    for _ in 0..2 {
        let r = conn
            .send(
                "GET",
                &format!("/token?{q}"),
                &[("Authorization", &basic)],
                b"",
            )
            .unwrap();
        assert_eq!(r.status, 200);
    }

    // Short validity: advertised 300 s, refused by the registry after ~2 s.
    ts.set_valid_for(2);
    let r = get(&q, Some(&basic));
    assert_eq!(r.json()["expires_in"], 300);
    let short = format!("Bearer {}", r.json()["token"].as_str().unwrap());
    let issued_at = Instant::now();
    let r = reg.raw_request(
        "GET",
        "/v2/p/q/tags/list",
        &[("Authorization", &short)],
        b"",
    );
    assert_eq!(r.status, 404, "fresh short token refused: {}", r.text());
    thread::sleep(Duration::from_millis(3100).saturating_sub(issued_at.elapsed()));
    let r = reg.raw_request(
        "GET",
        "/v2/p/q/tags/list",
        &[("Authorization", &short)],
        b"",
    );
    assert_eq!(r.status, 401, "expired token accepted");
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("error=\"invalid_token\""),
        "{:?}",
        r.headers
    );
    // A new token works again; set_expires_in changes what clients are told.
    ts.set_valid_for(300);
    ts.set_expires_in(7);
    let r = get(&q, Some(&basic));
    assert_eq!(r.json()["expires_in"], 7);
    let fresh = format!("Bearer {}", r.json()["token"].as_str().unwrap());
    let r = reg.raw_request(
        "GET",
        "/v2/p/q/tags/list",
        &[("Authorization", &fresh)],
        b"",
    );
    assert_eq!(r.status, 404);
}

// ---------------------------------------------------------------------------
// Fault-injecting proxy
// ---------------------------------------------------------------------------

#[test]
fn fault_proxy_rules_fire() {
    if !require_registry() {
        return;
    }
    let reg = Registry::plain();
    let proxy = FaultProxy::start(&reg.host());
    let p = proxy.host();
    let get = |path: &str| http_request(&p, "GET", path, &[], b"");

    // Forwarding as is.
    assert_eq!(get("/v2/").unwrap().status, 200);

    // 503 with Retry-After on the 2nd and 3rd matching requests only.
    let r503 = proxy.add(
        Rule::new("GET", "/v2/_catalog", Fault::retry_after(503, 2))
            .skip(1)
            .times(2),
    );
    let statuses: Vec<u16> = (0..4)
        .map(|_| get("/v2/_catalog").unwrap().status)
        .collect();
    assert_eq!(statuses, [200, 503, 503, 200]);
    assert_eq!((proxy.seen(r503), proxy.fired(r503)), (4, 2));
    let r = {
        proxy.add(Rule::new("GET", "/v2/_catalog", Fault::retry_after(503, 2)));
        get("/v2/_catalog").unwrap()
    };
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("2"));
    assert_eq!(r.json()["errors"][0]["code"], "UNAVAILABLE");

    // 429 with Retry-After, 408 (closes the connection).
    proxy.add(Rule::new("HEAD", "/blobs/", Fault::retry_after(429, 1)));
    let r = http_request(&p, "HEAD", "/v2/x/blobs/sha256:00", &[], b"").unwrap();
    assert_eq!((r.status, r.header("retry-after")), (429, Some("1")));
    proxy.add(Rule::new("PUT", "/manifests/", Fault::status(408)));
    let r = http_request(&p, "PUT", "/v2/x/manifests/t", &[], b"{}").unwrap();
    assert_eq!(r.status, 408);
    assert_eq!(r.header("connection"), Some("close"));

    // Drop: no answer, and the registry never sees the request.
    proxy.add(Rule::new("", "/v2/dropme", Fault::Drop));
    let mark = reg.mark();
    let err = get("/v2/dropme/tags/list").unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
        ),
        "{err:?}"
    );
    assert!(
        reg.requests_since(mark)
            .iter()
            .all(|e| !e.path.contains("dropme"))
    );
    // The next one goes through.
    assert_eq!(get("/v2/dropme/tags/list").unwrap().status, 404);

    // Keep-alive and a chunked PATCH through the proxy: a whole upload.
    let mark = reg.mark();
    let blob = b"chunked blob through the proxy\n".repeat(100);
    let digest = format!("sha256:{}", sha256_hex(&blob));
    // Not the harness's user agent, so the registry's counters see these.
    let ua = [("User-Agent", "proxy-test/1")];
    let mut conn = HttpConn::connect(&p).unwrap();
    let r = conn
        .send("POST", "/v2/px/blobs/uploads/", &ua, b"")
        .unwrap();
    assert_eq!(r.status, 202);
    let location = r.header("location").unwrap().to_string();
    // The registry builds Location from Host: it points at the proxy.
    assert!(location.starts_with(&format!("http://{p}/")), "{location}");
    let path = location.strip_prefix(&format!("http://{p}")).unwrap();
    let chunks: Vec<&[u8]> = blob.chunks(1000).collect();
    let r = conn
        .send_chunked(
            "PATCH",
            path,
            &[ua[0], ("Content-Type", "application/octet-stream")],
            &chunks,
        )
        .unwrap();
    assert_eq!(r.status, 202, "{}", r.text());
    let next = r.header("location").unwrap().to_string();
    let path = next.strip_prefix(&format!("http://{p}")).unwrap();
    let sep = if path.contains('?') { '&' } else { '?' };
    let r = conn
        .send(
            "PUT",
            &format!("{path}{sep}digest={}", percent_encode(&digest)),
            &ua,
            b"",
        )
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(reg.blob("px", &digest).unwrap(), blob);
    let c = reg.counts_since(mark);
    assert_eq!(
        (c.patches, c.blob_uploads, c.uploads_of(&digest)),
        (1, 1, 1)
    );
    assert_eq!(proxy.count("PATCH", "/v2/px/blobs/uploads/"), 1);

    // Delay: a slow commit. The client gives up, the registry completes it.
    // (distribution 2.8 ignores `POST .../uploads/?digest=`, the
    // single-request upload: it answers 202 and opens a session, so a
    // monolithic upload is POST then `PUT ?digest=` with the body.)
    let blob2 = b"slow commit\n".to_vec();
    let digest2 = format!("sha256:{}", sha256_hex(&blob2));
    let start_upload = |conn: &mut HttpConn| {
        let r = conn
            .send("POST", "/v2/px/blobs/uploads/", &ua, b"")
            .unwrap();
        assert_eq!(r.status, 202);
        let loc = r.header("location").unwrap();
        format!(
            "{}&digest={}",
            loc.strip_prefix(&format!("http://{p}")).unwrap(),
            percent_encode(&digest2)
        )
    };
    let slow = proxy.add(Rule::new("PUT", "digest=", Fault::delay_ms(1500)));
    let mut conn = HttpConn::connect(&p).unwrap();
    let target = start_upload(&mut conn);
    conn.set_timeout(Duration::from_millis(500));
    let began = Instant::now();
    let err = conn.send("PUT", &target, &ua, &blob2).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err:?}"
    );
    assert!(began.elapsed() < Duration::from_millis(1400));
    assert_eq!(proxy.fired(slow), 1);
    assert!(reg.blob_exists("px", &digest2), "commit not completed");
    assert_eq!(reg.counts().uploads_of(&digest2), 1);
    // Without a client timeout the delayed answer arrives.
    proxy.add(Rule::new("PUT", "digest=", Fault::delay_ms(300)));
    let mut conn = HttpConn::connect(&p).unwrap();
    let target = start_upload(&mut conn);
    let began = Instant::now();
    let r = conn.send("PUT", &target, &ua, &blob2).unwrap();
    assert_eq!(r.status, 201);
    assert!(began.elapsed() >= Duration::from_millis(300));

    // What the proxy saw.
    let records = proxy.records();
    assert!(records.iter().any(|r| r.action == ProxyAction::Dropped));
    assert!(
        records
            .iter()
            .any(|r| r.action == ProxyAction::Injected(429))
    );
    assert!(
        records
            .iter()
            .any(|r| matches!(r.action, ProxyAction::Delayed(_)) && r.status == Some(201))
    );
}

/// skopeo 1.9 (`--retry-times`) retries a whole copy after a dropped
/// connection, and containers/image waits out a 429 by itself; a 503 is
/// fatal to it.
#[test]
fn skopeo_push_through_fault_proxy() {
    if !have_tools() {
        return;
    }
    let tmp = tempdir();
    let img = two_layer_image(tmp.path(), "t", "faults\n");
    let reg = Registry::plain();
    let proxy = FaultProxy::start(&reg.host());
    let r429 = proxy.add(Rule::new(
        "POST",
        "/blobs/uploads/",
        Fault::retry_after(429, 1),
    ));
    let drop = proxy.add(Rule::new("PATCH", "/blobs/uploads/", Fault::Drop).skip(1));
    let mark = reg.mark();
    let push_via_proxy = |repo_tag: &str| {
        let mut cmd = skopeo();
        cmd.args(["copy", "--quiet", "--retry-times", "3"])
            .args(["--dest-tls-verify=false", "--dest-no-creds"])
            .arg(format!("oci:{}:t", tmp.path().display()))
            .arg(format!("docker://{}/{repo_tag}", proxy.host()));
        cmd
    };
    let out = run_ok(push_via_proxy("faulty/app:t"));
    eprintln!("skopeo: {}", all_output(&out));
    assert_eq!((proxy.fired(r429), proxy.fired(drop)), (1, 1));
    assert_complete(&reg, "faulty/app", "t", &img);
    // The dropped PATCH never reached the registry; every blob was
    // committed exactly once.
    let c = reg.counts_since(mark);
    eprintln!("registry counts: {c:?}");
    assert_eq!(c.blob_uploads, 3, "{c:?}");
    assert_eq!(c.manifest_puts, 1);
    // Retry-After was honoured: the next POST came a second later.
    let records = proxy.records();
    let i = records
        .iter()
        .position(|r| r.action == ProxyAction::Injected(429))
        .unwrap();
    let next = records[i + 1..]
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.received)
        .min()
        .unwrap();
    let waited = next - records[i].received;
    eprintln!("POST retried {waited:?} after the 429");
    assert!(waited >= Duration::from_millis(900), "{waited:?}");

    proxy.add(Rule::new("PUT", "/manifests/", Fault::status(503)));
    let text = all_output(&run_fail(push_via_proxy("faulty/app:t503")));
    assert!(text.contains("503"), "{text}");
    assert!(reg.manifest("faulty/app", "t503").is_none());
}

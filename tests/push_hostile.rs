//! `rustimage push` against servers that misbehave on purpose: an HTTPS
//! registry that sends the upload (or a redirect) to plain HTTP, a token
//! realm on plain HTTP, a registry that stops reading an upload, one that
//! never answers, and a credential helper that fails. Each must end in one
//! line, soon, with nothing sent in clear.
//!
//! The hostile servers are small threads on 127.0.0.1 in this file; the
//! token realm and credential helper cases use the real registry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::registry::*;
use common::*;

/// What a hostile server does.
#[derive(Clone)]
enum Plan {
    /// Basic auth over HTTPS, then uploads sent to
    /// `Location: http://<its own host:port>/upload/1`.
    DowngradeLocation,
    /// Answers blob HEADs with `307 Location: http://<trap>/blob`.
    DowngradeRedirect(String),
    /// Takes an upload's headers, then neither reads its body nor answers.
    Stall,
    /// Answers a TLS ClientHello with HTTP 400 (as Go servers do) and never
    /// answers an HTTP request.
    Mute,
}

/// One request a hostile server saw.
#[derive(Clone, Debug)]
struct Seen {
    tls: bool,
    method: String,
    target: String,
    authorization: Option<String>,
}

struct Hostile {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Hostile {
    fn start(plan: Plan) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Hostile {
            addr,
            seen: Arc::default(),
            stop: Arc::default(),
            conns: Arc::default(),
        };
        let (seen, stop, conns) = (
            server.seen.clone(),
            server.stop.clone(),
            server.conns.clone(),
        );
        let tls = tls_server_config();
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                if let Ok(c) = conn.try_clone() {
                    conns.lock().unwrap().push(c);
                }
                let (plan, seen, stop, tls) =
                    (plan.clone(), seen.clone(), stop.clone(), tls.clone());
                thread::spawn(move || {
                    let _ = serve(conn, addr, &plan, &seen, &stop, tls);
                });
            }
        });
        server
    }

    fn host(&self) -> String {
        self.addr.to_string()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

fn serve(
    conn: TcpStream,
    addr: SocketAddr,
    plan: &Plan,
    seen: &Mutex<Vec<Seen>>,
    stop: &AtomicBool,
    tls: Arc<rustls::ServerConfig>,
) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut first = [0u8; 1];
    if conn.peek(&mut first)? == 0 {
        return Ok(());
    }
    if first[0] == 0x16 {
        if matches!(plan, Plan::Mute) {
            let mut c = conn;
            c.write_all(
                b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            )?;
            return Ok(());
        }
        let tls = rustls::ServerConnection::new(tls).map_err(io::Error::other)?;
        let mut rw = BufReader::new(rustls::StreamOwned::new(tls, conn));
        exchanges(&mut rw, true, addr, plan, seen, stop)
    } else {
        exchanges(&mut BufReader::new(conn), false, addr, plan, seen, stop)
    }
}

fn exchanges<S: Read + Write>(
    rw: &mut BufReader<S>,
    tls: bool,
    addr: SocketAddr,
    plan: &Plan,
    seen: &Mutex<Vec<Seen>>,
    stop: &AtomicBool,
) -> io::Result<()> {
    while let Some(head) = read_head(rw)? {
        let mut parts = head.start.split(' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        seen.lock().unwrap().push(Seen {
            tls,
            method: method.clone(),
            target: target.clone(),
            authorization: head.header("authorization").map(str::to_string),
        });
        let length: u64 = head
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let hold = match plan {
            Plan::Mute => true,
            Plan::Stall => method == "PUT" || method == "PATCH",
            _ => false,
        };
        if hold {
            // Keep the connection open, read nothing, answer nothing.
            while !stop.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(50));
            }
            return Ok(());
        }
        io::copy(&mut rw.by_ref().take(length), &mut io::sink())?;
        let (code, headers): (u16, Vec<(&str, String)>) = match (method.as_str(), plan) {
            ("GET", Plan::DowngradeLocation)
                if target == "/v2/" && head.header("authorization").is_none() =>
            {
                (
                    401,
                    vec![("WWW-Authenticate", "Basic realm=\"hostile\"".into())],
                )
            }
            ("GET", _) if target == "/v2/" => (200, vec![]),
            ("HEAD", Plan::DowngradeRedirect(trap)) => {
                (307, vec![("Location", format!("http://{trap}/blob"))])
            }
            ("HEAD", _) => (404, vec![]),
            ("POST", Plan::DowngradeLocation) => {
                (202, vec![("Location", format!("http://{addr}/upload/1"))])
            }
            ("POST", _) => (202, vec![("Location", "/v2/x/y/blobs/uploads/1".into())]),
            ("PUT" | "PATCH", _) => (201, vec![]),
            _ => (404, vec![]),
        };
        write_response(rw.get_mut(), code, &headers, b"", false)?;
    }
    Ok(())
}

/// Accepts connections and counts them; never answers.
struct Trap {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Trap {
    fn start() -> Trap {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let n = accepted.clone();
        thread::spawn(move || {
            let mut held = Vec::new();
            for c in listener.incoming().flatten() {
                n.fetch_add(1, Ordering::SeqCst);
                held.push(c);
            }
        });
        Trap { addr, accepted }
    }
}

/// An OCI layout with one uncompressed layer of `size` pseudo-random bytes
/// (incompressible, so a stalled upload fills every buffer on the way).
fn layout(dir: &Path, size: usize) -> PathBuf {
    let path = dir.join(format!("layout-{size}"));
    let blobs = path.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let hex = sha256_hex(bytes);
        fs::write(blobs.join(&hex), bytes).unwrap();
        format!("sha256:{hex}")
    };
    let mut layer = vec![0u8; size];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in layer.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let layer_digest = put(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))
    .unwrap();
    let config_digest = put(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": size}],
    }))
    .unwrap();
    let manifest_digest = put(&manifest);
    fs::write(path.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest_digest, "size": manifest.len()}]});
    fs::write(path.join("index.json"), index.to_string()).unwrap();
    path
}

/// Runs `cmd`, killing it after `limit`; returns its output and how long
/// it ran.
fn run_limited(mut cmd: Command, limit: Duration) -> (Output, Duration) {
    let began = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if began.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (out, began.elapsed())
}

/// The one line of a failed run's stderr.
fn one_line_error(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    err
}

/// The hostile servers' TLS uses the test PKI, made with openssl.
fn ready() -> bool {
    require("openssl")
}

fn push_cmd(source: &Path, reference: &str, args: &[&str]) -> Command {
    let mut cmd = rustimage();
    cmd.arg("push").arg(source).arg(reference).args(args);
    cmd
}

#[test]
fn https_upload_sent_to_plain_http_is_refused() {
    if !ready() {
        return;
    }
    let tmp = tempdir("hostile");
    let src = layout(tmp.path(), 1000);
    let server = Hostile::start(Plan::DowngradeLocation);
    let ca = pki().ca_cert.to_str().unwrap().to_string();
    let creds = format!("{TEST_USER}:{TEST_PASSWORD}");
    let cmd = push_cmd(
        &src,
        &format!("{}/x/y:1", server.host()),
        &["--creds", &creds, "--ca-cert", &ca, "--timeout", "5"],
    );
    let (out, _) = run_limited(cmd, Duration::from_secs(60));
    let seen = server.seen();
    let clear: Vec<&Seen> = seen.iter().filter(|s| !s.tls).collect();
    assert!(
        clear.is_empty(),
        "sent in clear (credentials: {}): {clear:?}",
        clear.iter().any(|s| s.authorization.is_some())
    );
    let err = one_line_error(&out);
    assert!(
        err.contains(&format!("http://{}/upload/1", server.host())) && err.contains("refus"),
        "{err}"
    );
    assert!(!err.contains(TEST_PASSWORD));
    // Over TLS the credentials did go (the challenge asked for them).
    assert!(seen.iter().any(|s| s.tls && s.authorization.is_some()));
}

#[test]
fn https_redirect_to_plain_http_is_refused() {
    if !ready() {
        return;
    }
    let tmp = tempdir("hostile");
    let src = layout(tmp.path(), 1000);
    let trap = Trap::start();
    let server = Hostile::start(Plan::DowngradeRedirect(trap.addr.to_string()));
    let ca = pki().ca_cert.to_str().unwrap().to_string();
    let cmd = push_cmd(
        &src,
        &format!("{}/x/y:1", server.host()),
        &["--ca-cert", &ca, "--timeout", "5"],
    );
    let (out, _) = run_limited(cmd, Duration::from_secs(60));
    assert_eq!(
        trap.accepted.load(Ordering::SeqCst),
        0,
        "followed the redirect to plain HTTP: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = one_line_error(&out);
    assert!(
        err.contains(&format!("http://{}/blob", trap.addr)) && err.contains("refus"),
        "{err}"
    );
}

#[test]
fn token_realm_on_plain_http_gets_no_credentials_from_an_https_registry() {
    if !require_registry() {
        return;
    }
    let tmp = tempdir("hostile");
    let src = layout(tmp.path(), 1000);
    let reg = Registry::start(RegistryOptions {
        tls: true,
        auth: RegistryAuth::Token {
            user: TEST_USER.into(),
            password: TEST_PASSWORD.into(),
        },
        plain_token_realm: true,
        ..RegistryOptions::default()
    });
    let ts = reg.token_server().unwrap();
    let ca = reg.ca_cert().unwrap();
    let creds = format!("{TEST_USER}:{TEST_PASSWORD}");
    let reference = format!("{}/tok/app:1", reg.host());
    let out = push_cmd(
        &src,
        &reference,
        &["--creds", &creds, "--ca-cert", ca.to_str().unwrap()],
    )
    .output()
    .unwrap();
    assert!(ts.requests().is_empty(), "{:?}", ts.requests());
    let err = one_line_error(&out);
    assert!(err.contains(&ts.realm()) && err.contains("refus"), "{err}");
    assert!(reg.manifest("tok/app", "1").is_none());

    // The user's --insecure for this registry allows it.
    let out = push_cmd(&src, &reference, &["--creds", &creds, "--insecure"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ts.tokens_issued() > 0);
}

#[test]
fn a_registry_that_stops_reading_an_upload_ends_the_push() {
    if !ready() {
        return;
    }
    let tmp = tempdir("hostile");
    // Larger than every socket buffer between the two ends.
    let src = layout(tmp.path(), 48 << 20);
    let server = Hostile::start(Plan::Stall);
    let ca = pki().ca_cert.to_str().unwrap().to_string();
    let cmd = push_cmd(
        &src,
        &format!("{}/x/y:1", server.host()),
        &["--ca-cert", &ca, "--timeout", "3"],
    );
    let (out, took) = run_limited(cmd, Duration::from_secs(60));
    let err = one_line_error(&out);
    eprintln!("stalled upload ended after {took:?}: {err}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(err.contains("3 s"), "{err}");
    // It got as far as the upload (a monolithic PUT with the digest).
    assert!(
        server
            .seen()
            .iter()
            .any(|s| s.method == "PUT" && s.target.contains("digest=sha256:"))
    );
}

#[test]
fn a_registry_that_never_answers_with_insecure_given() {
    if !ready() {
        return;
    }
    let tmp = tempdir("hostile");
    let src = layout(tmp.path(), 1000);
    let server = Hostile::start(Plan::Mute);
    let cmd = push_cmd(
        &src,
        &format!("{}/x/y:1", server.host()),
        &["--insecure", "--timeout", "3"],
    );
    let (out, took) = run_limited(cmd, Duration::from_secs(60));
    let err = one_line_error(&out);
    eprintln!("mute registry: {took:?}: {err}");
    assert!(!err.contains("--insecure"), "{err}");
    assert!(err.contains("3 s"), "{err}");
    assert!(took < Duration::from_secs(15), "took {took:?}");

    // Without --insecure, HTTPS is refused (Go's 400): a plain-HTTP
    // registry, and then the advice is right.
    let cmd = push_cmd(
        &src,
        &format!("{}/x/y:1", server.host()),
        &["--timeout", "3"],
    );
    let (out, _) = run_limited(cmd, Duration::from_secs(60));
    let err = one_line_error(&out);
    assert!(err.contains("--insecure"), "{err}");
}

/// A `docker-credential-NAME` script in `bin` that prints `stdout` and
/// exits 1, and a docker config dir using it as `credsStore`.
fn failing_helper(dir: &Path, name: &str, stdout: &str) -> (PathBuf, PathBuf) {
    let bin = dir.join(format!("bin-{name}"));
    fs::create_dir_all(&bin).unwrap();
    let script = bin.join(format!("docker-credential-{name}"));
    fs::write(
        &script,
        format!(
            "#!/bin/sh\ncat >/dev/null\necho '{stdout}'\necho 'secret-ish detail' >&2\nexit 1\n"
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.join(format!("docker-{name}"));
    fs::create_dir_all(&config).unwrap();
    fs::write(
        config.join("config.json"),
        format!(r#"{{"credsStore": "{name}"}}"#),
    )
    .unwrap();
    (bin, config)
}

#[test]
fn a_failing_credential_helper_is_named_as_it_is() {
    if !require_registry() {
        return;
    }
    let tmp = tempdir("hostile");
    let src = layout(tmp.path(), 1000);
    let reg = Registry::plain();
    let path = format!(
        "{}:{}",
        tmp.path().join("bin-broken").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let (_, config) = failing_helper(tmp.path(), "broken", "the store is locked");
    let out = push_cmd(&src, &format!("{}/c/a:1", reg.host()), &["--insecure"])
        .env("DOCKER_CONFIG", &config)
        .env("PATH", &path)
        .output()
        .unwrap();
    let err = one_line_error(&out);
    assert!(err.contains("docker-credential-broken "), "{err}");
    assert!(
        !err.contains("docker-credential-docker-credential"),
        "{err}"
    );
    assert!(!err.contains("secret-ish"), "{err}");

    // "credentials not found" is how helpers say "none for this registry":
    // push anonymously, as docker does.
    let path = format!(
        "{}:{}",
        tmp.path().join("bin-empty").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let (_, config) = failing_helper(
        tmp.path(),
        "empty",
        "credentials not found in native keychain",
    );
    let out = push_cmd(&src, &format!("{}/c/b:1", reg.host()), &["--insecure"])
        .env("DOCKER_CONFIG", &config)
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(reg.manifest("c/b", "1").is_some());
}

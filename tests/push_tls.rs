//! `rustimage push` to registries as companies run them (issue #12), with
//! the real distribution registry on 127.0.0.1: the self-signed
//! certificate of Docker's guide (CA:TRUE), a private CA, certs.d
//! directories, client certificates (`tls.clientcas`), registries.conf
//! `insecure` and `blocked`, and a CONNECT proxy. Each pushed image is
//! read back with skopeo, digests compared.
//!
//! Nothing here reads or writes the host's configuration: every run gets
//! an empty `$HOME` and `$RUSTIMAGE_CONFIG_ROOT` (the prefix of `/etc`
//! paths) of its own, and no proxy or registries.conf variable from the
//! environment.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::io::{self, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;

use common::registry::*;
use common::*;
use serde_json::Value;

fn ready() -> bool {
    require_registry() && require_all(&["openssl", "skopeo"])
}

/// The name only the test proxy knows (it maps it to 127.0.0.1). Through
/// a proxy neither rustimage nor skopeo resolves it; it is in the reserved
/// `.test` domain (RFC 6761), so should that ever break, a lookup fails
/// instead of finding someone's host.
const PROXIED_HOST: &str = "registry.test";

// ---------------------------------------------------------------------------
// Certificates, made with openssl at run time
// ---------------------------------------------------------------------------

fn openssl(dir: &Path, args: &[&str]) {
    run_ok(Command::new("openssl").args(args).current_dir(dir));
}

/// Keys and certificates for this test process (never committed).
struct Certs {
    /// Docker's guide: `openssl req -newkey rsa:4096 -nodes -sha256 -x509
    /// -addext "subjectAltName = ..."`: self-signed, CA:TRUE.
    guide_cert: PathBuf,
    guide_key: PathBuf,
    /// Self-signed too, but for another name only.
    other_cert: PathBuf,
    other_key: PathBuf,
    client_ca: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    /// A client pair from a CA the registry does not know.
    rogue_cert: PathBuf,
    rogue_key: PathBuf,
}

fn certs() -> &'static Certs {
    static CERTS: OnceLock<(tempfile::TempDir, Certs)> = OnceLock::new();
    &CERTS
        .get_or_init(|| {
            let tmp = tempdir("tls-certs");
            let d = tmp.path();
            openssl(
                d,
                &[
                    "req",
                    "-newkey",
                    "rsa:4096",
                    "-nodes",
                    "-sha256",
                    "-keyout",
                    "domain.key",
                    "-addext",
                    &format!("subjectAltName = IP:127.0.0.1,DNS:localhost,DNS:{PROXIED_HOST}"),
                    "-x509",
                    "-days",
                    "365",
                    "-subj",
                    "/CN=localhost",
                    "-out",
                    "domain.crt",
                ],
            );
            let ec = [
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
            ];
            openssl(
                d,
                &[
                    &["req"][..],
                    &ec,
                    &[
                        "-keyout",
                        "other.key",
                        "-addext",
                        "subjectAltName = DNS:other.example",
                        "-x509",
                        "-days",
                        "365",
                        "-subj",
                        "/CN=other.example",
                        "-out",
                        "other.crt",
                    ],
                ]
                .concat(),
            );
            fs::write(
                d.join("client.ext"),
                "basicConstraints = CA:FALSE\nkeyUsage = digitalSignature\n\
                 extendedKeyUsage = clientAuth\n",
            )
            .unwrap();
            for (ca, who) in [("client-ca", "client"), ("rogue-ca", "rogue")] {
                openssl(
                    d,
                    &[
                        &["req"][..],
                        &ec,
                        &[
                            "-keyout",
                            &format!("{ca}.key"),
                            "-x509",
                            "-days",
                            "365",
                            "-subj",
                            &format!("/CN=rustimage test {ca}"),
                            "-out",
                            &format!("{ca}.crt"),
                        ],
                    ]
                    .concat(),
                );
                openssl(
                    d,
                    &[
                        &["req"][..],
                        &ec,
                        &[
                            "-keyout",
                            &format!("{who}.key"),
                            "-subj",
                            "/CN=pusher",
                            "-out",
                            &format!("{who}.csr"),
                        ],
                    ]
                    .concat(),
                );
                openssl(
                    d,
                    &[
                        "x509",
                        "-req",
                        "-in",
                        &format!("{who}.csr"),
                        "-CA",
                        &format!("{ca}.crt"),
                        "-CAkey",
                        &format!("{ca}.key"),
                        "-set_serial",
                        "7",
                        "-days",
                        "365",
                        "-extfile",
                        "client.ext",
                        "-out",
                        &format!("{who}.cert"),
                    ],
                );
            }
            let certs = Certs {
                guide_cert: d.join("domain.crt"),
                guide_key: d.join("domain.key"),
                other_cert: d.join("other.crt"),
                other_key: d.join("other.key"),
                client_ca: d.join("client-ca.crt"),
                client_cert: d.join("client.cert"),
                client_key: d.join("client.key"),
                rogue_cert: d.join("rogue.cert"),
                rogue_key: d.join("rogue.key"),
            };
            (tmp, certs)
        })
        .1
}

fn self_signed(cert: &Path, key: &Path) -> ServerTls {
    ServerTls {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        trust: cert.to_path_buf(),
    }
}

// ---------------------------------------------------------------------------
// Running push in an environment of its own
// ---------------------------------------------------------------------------

/// An empty `$HOME` and `/etc` root for rustimage, and helpers to fill them.
struct Env {
    tmp: tempfile::TempDir,
    vars: Vec<(String, String)>,
}

impl Env {
    fn new() -> Env {
        let tmp = tempdir("tls-env");
        fs::create_dir_all(tmp.path().join("home")).unwrap();
        fs::create_dir_all(tmp.path().join("root/etc")).unwrap();
        Env {
            tmp,
            vars: Vec::new(),
        }
    }

    fn home(&self) -> PathBuf {
        self.tmp.path().join("home")
    }

    fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }

    fn set(&mut self, k: &str, v: impl Into<String>) {
        self.vars.push((k.to_string(), v.into()));
    }

    /// Copies `files` (source, name) into `base/HOST/`; returns that dir.
    fn certs_d(&self, base: &Path, host: &str, files: &[(&Path, &str)]) -> PathBuf {
        let dir = base.join(host);
        fs::create_dir_all(&dir).unwrap();
        for (src, name) in files {
            fs::copy(src, dir.join(name)).unwrap();
        }
        dir
    }

    fn push(&self, source: &Path, reference: &str, args: &[&str]) -> Output {
        let mut cmd = rustimage();
        cmd.arg("push")
            .arg(source)
            .arg(reference)
            .arg("--json")
            .args(args)
            .env("HOME", self.home())
            .env("RUSTIMAGE_CONFIG_ROOT", self.root())
            .env("DOCKER_CONFIG", self.home().join(".docker"))
            .env("REGISTRY_AUTH_FILE", self.home().join("auth.json"));
        for k in [
            "CONTAINERS_REGISTRIES_CONF",
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "NO_PROXY",
            "no_proxy",
            "RUSTIMAGE_CREDS",
        ] {
            cmd.env_remove(k);
        }
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    fn push_ok(&self, source: &Path, reference: &str, args: &[&str]) -> Value {
        let out = self.push(source, reference, args);
        assert!(
            out.status.success(),
            "push {reference} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// A failed push's one line.
    fn push_err(&self, source: &Path, reference: &str, args: &[&str]) -> String {
        let out = self.push(source, reference, args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{reference} {args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
        eprintln!("{reference}: {err}");
        err
    }
}

/// A small image to push.
fn image(dir: &Path) -> (PathBuf, OciImage) {
    let layout = dir.join("layout");
    let img = write_oci_layout(
        &layout,
        "1",
        &[&[("etc/hello", b"hello from a company registry\n")]],
    );
    (layout, img)
}

/// skopeo copies `repo_tag` out of `reg`, verifying every blob; the
/// manifest it got has the digest rustimage pushed.
fn copy_back(reg: &Registry, repo_tag: &str, pushed: &Value, dest: &Path) {
    let mut cmd = skopeo();
    cmd.args(["copy", "--quiet"])
        .args(reg.skopeo_src_args())
        .arg(reg.skopeo_ref(repo_tag))
        .arg(format!("oci:{}:x", dest.display()));
    run_ok(&mut cmd);
    assert_eq!(
        oci_digest(dest),
        pushed["digest"],
        "skopeo read back another manifest"
    );
}

/// The manifest digest of the only image in an OCI layout.
fn oci_digest(layout: &Path) -> Value {
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"].clone()
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn docker_guide_self_signed_certificate_is_accepted_once_trusted() {
    if !ready() {
        return;
    }
    let c = certs();
    // What makes this case: OpenSSL marks the certificate CA:TRUE.
    let ext = run_stdout(
        Command::new("openssl")
            .args(["x509", "-noout", "-ext", "basicConstraints", "-in"])
            .arg(&c.guide_cert),
    );
    assert!(ext.contains("CA:TRUE"), "{ext}");
    let tmp = tempdir("tls");
    let (src, img) = image(tmp.path());
    let reg = Registry::start(RegistryOptions {
        server_tls: Some(self_signed(&c.guide_cert, &c.guide_key)),
        ..RegistryOptions::default()
    });
    let host = reg.host();
    let guide = c.guide_cert.to_str().unwrap();
    let env = Env::new();

    // Untrusted: refused, and told where the certificate would go.
    let err = env.push_err(&src, &format!("{host}/guide/app:1"), &[]);
    let hint = env.root().join(format!("etc/docker/certs.d/{host}/ca.crt"));
    assert!(err.contains(hint.to_str().unwrap()), "{err}");
    assert!(err.contains("self-signed"), "{err}");

    // --ca-cert.
    let r = env.push_ok(&src, &format!("{host}/guide/app:1"), &["--ca-cert", guide]);
    assert_eq!(r["digest"], img.manifest_digest);
    copy_back(&reg, "guide/app:1", &r, &tmp.path().join("back1"));

    // Docker's certs.d, under the test's /etc.
    env.certs_d(
        &env.root().join("etc/docker/certs.d"),
        &host,
        &[(&c.guide_cert, "ca.crt")],
    );
    let r = env.push_ok(&src, &format!("{host}/guide/docker:1"), &[]);
    copy_back(&reg, "guide/docker:1", &r, &tmp.path().join("back2"));

    // The user's containers certs.d comes first: a wrong CA there wins
    // (and is refused), as with podman.
    let user = env.certs_d(
        &env.home().join(".config/containers/certs.d"),
        &host,
        &[(&pki().ca_cert, "ca.crt")],
    );
    let err = env.push_err(&src, &format!("{host}/guide/user:1"), &[]);
    assert!(err.contains(user.join("ca.crt").to_str().unwrap()), "{err}");
    fs::copy(&c.guide_cert, user.join("ca.crt")).unwrap();
    let r = env.push_ok(&src, &format!("{host}/guide/user:1"), &[]);
    copy_back(&reg, "guide/user:1", &r, &tmp.path().join("back3"));
}

#[test]
fn a_trusted_certificate_still_needs_the_right_name() {
    if !ready() {
        return;
    }
    let c = certs();
    let tmp = tempdir("tls");
    let (src, _) = image(tmp.path());
    let reg = Registry::start(RegistryOptions {
        server_tls: Some(self_signed(&c.other_cert, &c.other_key)),
        ..RegistryOptions::default()
    });
    let env = Env::new();
    let err = env.push_err(
        &src,
        &format!("{}/x/y:1", reg.host()),
        &["--ca-cert", c.other_cert.to_str().unwrap()],
    );
    assert!(err.contains("not valid for that name"), "{err}");
    // A CA certificate that signed nothing here is no help either.
    let err = env.push_err(
        &src,
        &format!("{}/x/y:1", reg.host()),
        &["--ca-cert", pki().ca_cert.to_str().unwrap()],
    );
    assert!(err.contains("self-signed"), "{err}");
}

#[test]
fn private_ca_from_certs_d_or_cert_dir() {
    if !ready() {
        return;
    }
    let tmp = tempdir("tls");
    let (src, img) = image(tmp.path());
    let reg = Registry::tls();
    let host = reg.host();
    let env = Env::new();

    let err = env.push_err(&src, &format!("{host}/ca/app:1"), &[]);
    assert!(err.contains("unknown authority"), "{err}");
    let hint = env.root().join(format!("etc/docker/certs.d/{host}/ca.crt"));
    assert!(err.contains(hint.to_str().unwrap()), "{err}");

    env.certs_d(
        &env.root().join("etc/containers/certs.d"),
        &host,
        &[(&pki().ca_cert, "ca.crt")],
    );
    let r = env.push_ok(&src, &format!("{host}/ca/app:1"), &[]);
    assert_eq!(r["digest"], img.manifest_digest);
    copy_back(&reg, "ca/app:1", &r, &tmp.path().join("back1"));

    // --cert-dir replaces the certs.d search, as skopeo's does.
    let empty = tmp.path().join("empty-dir");
    fs::create_dir_all(&empty).unwrap();
    let err = env.push_err(
        &src,
        &format!("{host}/ca/dir:1"),
        &["--cert-dir", empty.to_str().unwrap()],
    );
    assert!(err.contains("unknown authority"), "{err}");
    let dir = reg.cert_dir().unwrap();
    let r = env.push_ok(
        &src,
        &format!("{host}/ca/dir:1"),
        &["--cert-dir", dir.to_str().unwrap()],
    );
    copy_back(&reg, "ca/dir:1", &r, &tmp.path().join("back2"));
}

#[test]
fn client_certificates_from_certs_d() {
    if !ready() {
        return;
    }
    let c = certs();
    let tmp = tempdir("tls");
    let (src, img) = image(tmp.path());
    let reg = Registry::start(RegistryOptions {
        tls: true,
        client_cas: vec![c.client_ca.clone()],
        harness_client: Some((c.client_cert.clone(), c.client_key.clone())),
        ..RegistryOptions::default()
    });
    let host = reg.host();
    let env = Env::new();
    let base = env.root().join("etc/containers/certs.d");
    let dir = env.certs_d(&base, &host, &[(&pki().ca_cert, "ca.crt")]);

    // No client certificate: told where to put one.
    let err = env.push_err(&src, &format!("{host}/mtls/app:1"), &[]);
    assert!(
        err.contains("client certificate") && err.contains(dir.to_str().unwrap()),
        "{err}"
    );

    // One the registry does not trust: the file offered is named.
    fs::copy(&c.rogue_cert, dir.join("client.cert")).unwrap();
    fs::copy(&c.rogue_key, dir.join("client.key")).unwrap();
    let err = env.push_err(&src, &format!("{host}/mtls/app:1"), &[]);
    let offered = dir.join("client.cert");
    assert!(
        err.contains("refused the client certificate") && err.contains(offered.to_str().unwrap()),
        "{err}"
    );

    // A key without its certificate is a mistake worth saying.
    fs::remove_file(dir.join("client.cert")).unwrap();
    let err = env.push_err(&src, &format!("{host}/mtls/app:1"), &[]);
    assert!(
        err.contains("client.key") && err.contains("client.cert"),
        "{err}"
    );

    // The right pair.
    fs::copy(&c.client_cert, dir.join("client.cert")).unwrap();
    fs::copy(&c.client_key, dir.join("client.key")).unwrap();
    let r = env.push_ok(&src, &format!("{host}/mtls/app:1"), &[]);
    assert_eq!(r["digest"], img.manifest_digest);
    // skopeo with the same directory layout (ca.crt, client.cert/key).
    copy_back(&reg, "mtls/app:1", &r, &tmp.path().join("back"));
}

/// A forward proxy that speaks only CONNECT, maps [`PROXIED_HOST`] to
/// 127.0.0.1 (and connects nowhere else), requires its own Basic
/// credentials, and logs every request head it gets.
struct ConnectProxy {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

const PROXY_USER: &str = "proxyuser";
const PROXY_PASSWORD: &str = "proxy-pw-9x";

impl ConnectProxy {
    fn start() -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (log2, conns2) = (log.clone(), conns.clone());
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                if let Ok(c) = conn.try_clone() {
                    conns2.lock().unwrap().push(c);
                }
                let (log, conns) = (log2.clone(), conns2.clone());
                thread::spawn(move || {
                    let _ = tunnel(conn, &log, &conns);
                });
            }
        });
        ConnectProxy { addr, log, conns }
    }

    fn url(&self) -> String {
        format!("http://{PROXY_USER}:{PROXY_PASSWORD}@{}", self.addr)
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

fn tunnel(
    client: TcpStream,
    log: &Mutex<Vec<String>>,
    conns: &Mutex<Vec<TcpStream>>,
) -> io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut writer = client;
    let Some(head) = read_head(&mut reader)? else {
        return Ok(());
    };
    {
        let mut log = log.lock().unwrap();
        log.push(head.start.clone());
        for (k, v) in &head.headers {
            log.push(format!("  {k}: {v}"));
        }
    }
    let mut parts = head.start.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let expected = format!(
        "Basic {}",
        base64_encode(format!("{PROXY_USER}:{PROXY_PASSWORD}").as_bytes())
    );
    if head.header("proxy-authorization") != Some(expected.as_str()) {
        return write_response(
            &mut writer,
            407,
            &[("Proxy-Authenticate", "Basic realm=\"proxy\"".into())],
            b"",
            true,
        );
    }
    let port = match (method, target.rsplit_once(':')) {
        ("CONNECT", Some((host, port))) if host == PROXIED_HOST => port,
        _ => return write_response(&mut writer, 403, &[], b"", true),
    };
    let upstream = TcpStream::connect(format!("127.0.0.1:{port}"))?;
    conns.lock().unwrap().push(upstream.try_clone()?);
    writer.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
    let mut up_write = upstream.try_clone()?;
    let pending = reader.buffer().to_vec();
    up_write.write_all(&pending)?;
    let mut client_read = reader.into_inner();
    let forward = thread::spawn(move || {
        let _ = io::copy(&mut client_read, &mut up_write);
        let _ = up_write.shutdown(Shutdown::Write);
    });
    let mut up_read = upstream;
    let _ = io::copy(&mut up_read, &mut writer);
    let _ = writer.shutdown(Shutdown::Write);
    let _ = forward.join();
    Ok(())
}

#[test]
fn push_goes_through_a_connect_proxy_without_registry_credentials() {
    if !ready() {
        return;
    }
    let c = certs();
    let tmp = tempdir("tls");
    let (src, img) = image(tmp.path());
    let reg = Registry::start(RegistryOptions {
        server_tls: Some(self_signed(&c.guide_cert, &c.guide_key)),
        auth: RegistryAuth::Htpasswd {
            user: TEST_USER.into(),
            password: TEST_PASSWORD.into(),
        },
        ..RegistryOptions::default()
    });
    let proxy = ConnectProxy::start();
    let mut env = Env::new();
    env.set("HTTPS_PROXY", proxy.url());
    let creds = format!("{TEST_USER}:{TEST_PASSWORD}");
    let guide = c.guide_cert.to_str().unwrap();
    // A name only the proxy can resolve: the push cannot have gone around it.
    let reference = format!("{PROXIED_HOST}:{}/via/proxy:1", reg.port());
    let mark = reg.mark();
    let r = env.push_ok(&src, &reference, &["--creds", &creds, "--ca-cert", guide]);
    assert_eq!(r["digest"], img.manifest_digest);
    assert_eq!(reg.counts_since(mark).manifest_puts, 1);

    let log = proxy.log();
    let text = log.join("\n");
    fs::write(tmp.path().join("proxy.log"), &text).unwrap();
    eprintln!("proxy log:\n{text}");
    let connects: Vec<&String> = log.iter().filter(|l| l.starts_with("CONNECT ")).collect();
    assert!(!connects.is_empty());
    assert!(
        connects
            .iter()
            .all(|l| l.starts_with(&format!("CONNECT {PROXIED_HOST}:{} ", reg.port()))),
        "{text}"
    );
    assert!(
        log.iter().all(|l| !l.starts_with("  Authorization")),
        "{text}"
    );
    assert!(!text.contains(TEST_PASSWORD), "{text}");
    let basic = base64_encode(creds.as_bytes());
    assert!(!text.contains(&basic), "{text}");

    // Loopback addresses never go through a proxy (as with docker).
    let before = proxy.log().len();
    let r = env.push_ok(
        &src,
        &format!("{}/direct/app:1", reg.host()),
        &["--creds", &creds, "--ca-cert", guide],
    );
    assert_eq!(r["digest"], img.manifest_digest);
    assert_eq!(proxy.log().len(), before);

    // A plain-HTTP registry goes through HTTP_PROXY, in a tunnel too.
    let plain = Registry::plain();
    env.set("HTTP_PROXY", proxy.url());
    let r = env.push_ok(
        &src,
        &format!("{PROXIED_HOST}:{}/plain/app:1", plain.port()),
        &["--insecure"],
    );
    let tunnels = format!("CONNECT {PROXIED_HOST}:{} ", plain.port());
    assert!(proxy.log().iter().any(|l| l.starts_with(&tunnels)));
    assert!(
        proxy
            .log()
            .iter()
            .all(|l| l.starts_with("CONNECT ") || l.starts_with("  "))
    );
    copy_back(&plain, "plain/app:1", &r, &tmp.path().join("back-plain"));

    // skopeo reads the image back through the same proxy.
    let mut cmd = skopeo();
    cmd.args(["copy", "--quiet"])
        .arg(format!(
            "--src-cert-dir={}",
            reg.cert_dir().unwrap().display()
        ))
        .arg(format!("--src-creds={creds}"))
        .arg(format!("docker://{reference}"))
        .arg(format!("oci:{}:x", tmp.path().join("back").display()))
        .env("HTTPS_PROXY", proxy.url())
        .env_remove("NO_PROXY")
        .env_remove("no_proxy");
    run_ok(&mut cmd);
    assert_eq!(oci_digest(&tmp.path().join("back")), img.manifest_digest);
}

#[test]
fn registries_conf_insecure_and_blocked() {
    if !ready() {
        return;
    }
    let c = certs();
    let tmp = tempdir("tls");
    let (src, img) = image(tmp.path());
    let plain = Registry::plain();
    let host = plain.host();
    let mut env = Env::new();

    // Plain HTTP needs a say-so: --insecure, or registries.conf.
    let err = env.push_err(&src, &format!("{host}/conf/app:1"), &[]);
    assert!(
        err.contains("plain HTTP") && err.contains("--insecure"),
        "{err}"
    );
    let conf = tmp.path().join("registries.conf");
    fs::write(
        &conf,
        format!(
            "unqualified-search-registries = [\"docker.io\"]\n\n\
             [[registry]]\nlocation = \"{host}\"\ninsecure = true\n\n\
             [[registry.mirror]]\nlocation = \"mirror.example\"\n\n\
             [aliases]\n\"app\" = \"{host}/conf/app\"\n"
        ),
    )
    .unwrap();
    env.set("CONTAINERS_REGISTRIES_CONF", conf.to_str().unwrap());
    let r = env.push_ok(&src, &format!("{host}/conf/app:1"), &[]);
    assert_eq!(r["digest"], img.manifest_digest);
    copy_back(&plain, "conf/app:1", &r, &tmp.path().join("back1"));

    // A drop-in blocks one namespace (longest prefix wins); --insecure
    // does not lift a block.
    let d = env.root().join("etc/containers/registries.conf.d");
    fs::create_dir_all(&d).unwrap();
    let drop_in = d.join("50-block.conf");
    fs::write(
        &drop_in,
        format!("[[registry]]\nprefix = \"{host}/secret\"\nlocation = \"{host}/secret\"\nblocked = true\ninsecure = true\n"),
    )
    .unwrap();
    let err = env.push_err(&src, &format!("{host}/secret/app:1"), &["--insecure"]);
    assert!(
        err.contains("blocked") && err.contains(drop_in.to_str().unwrap()),
        "{err}"
    );
    assert!(plain.manifest("secret/app", "1").is_none());
    env.push_ok(&src, &format!("{host}/conf/other:1"), &[]);

    // insecure = true also means TLS without verification.
    let tls = Registry::start(RegistryOptions {
        server_tls: Some(self_signed(&c.guide_cert, &c.guide_key)),
        ..RegistryOptions::default()
    });
    let tls_host = tls.host();
    let err = env.push_err(&src, &format!("{tls_host}/conf/app:1"), &[]);
    assert!(err.contains("self-signed"), "{err}");
    fs::write(
        d.join("60-tls.conf"),
        format!("[[registry]]\nlocation = \"{tls_host}\"\ninsecure = true\n"),
    )
    .unwrap();
    let r = env.push_ok(&src, &format!("{tls_host}/conf/app:1"), &[]);
    copy_back(&tls, "conf/app:1", &r, &tmp.path().join("back2"));

    // A broken file is an error naming it, not silently ignored.
    fs::write(d.join("70-broken.conf"), "[[registry]\n").unwrap();
    let err = env.push_err(&src, &format!("{host}/conf/app:2"), &[]);
    assert!(err.contains("70-broken.conf"), "{err}");
}

//! Real OCI registries for the push tests: the CNCF distribution registry
//! (Debian's `docker-registry`, 2.8) on 127.0.0.1, plain HTTP or TLS, with no
//! auth, htpasswd basic auth or token auth against [`TokenServer`]; a
//! fault-injecting HTTP proxy ([`FaultProxy`]); counters parsed from the
//! registry's access log that prove what a client did (uploads, mounts,
//! HEADs, PATCHes, manifest PUTs); and [`write_oci_layout`], a tiny image
//! made by hand for clients to push.
//!
//! Everything listens on 127.0.0.1 only and sends traffic nowhere else.
//! Like the rest of `tests/common`, helpers panic instead of returning
//! errors, except the raw HTTP calls ([`http_request`], [`HttpConn`]),
//! which return `io::Result` so tests can assert dropped connections.
//!
//! # The registry's access log
//!
//! With `log.accesslog.disabled: false` the registry wraps its whole HTTP
//! handler in gorilla/handlers' `CombinedLoggingHandler`, which writes one
//! Apache "combined" line per request to stdout:
//!
//! ```text
//! 127.0.0.1 - - [28/Nov/2026:07:28:58 +0000] "PUT /v2/a/b/blobs/uploads/UUID?_state=...&digest=sha256%3A166d... HTTP/1.1" 201 0 "" "skopeo/1.9.3"
//! ```
//!
//! fields: remote host, `-`, user (always `-`, even with basic auth), time,
//! request line (method, request URI exactly as the client sent it, query
//! percent-encoded, protocol: `HTTP/1.1` for skopeo, docker and curl here,
//! even over TLS; a client negotiating h2 would log `HTTP/2.0`), status,
//! response bytes, referer (`""`), user agent (quotes escaped as `\"`;
//! Docker's contains spaces and parentheses).
//! Every request gets one, 401 challenges included. The registry's own
//! logrus lines (`time="..." level=info msg="response completed" ...`) go
//! to stderr; both land in one file, and [`parse_access_line`] only accepts
//! the combined format. The line is written when the handler returns, which
//! for small responses is before net/http flushes the response to the
//! client; to be sure anyway, the counters first send a sentinel request
//! (`GET /v2/?rustimage-log-sync=N`) and wait for its line.
//!
//! Requests made by this harness itself ([`Registry::request`],
//! [`Registry::manifest`], ...) carry the user agent [`HARNESS_UA`] and are
//! left out of [`Counts`].

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::{Docker, require, run_ok, sha256_hex, spawn_tied};

/// User agent of the harness's own requests; excluded from [`Counts`].
pub const HARNESS_UA: &str = "rustimage-registry-harness/1";
/// User name of registries with auth (and of their token server).
pub const TEST_USER: &str = "pusher";
/// Password of [`TEST_USER`]: distinctive, so tests can check that it
/// appears nowhere in a client's output.
pub const TEST_PASSWORD: &str = "Pw-7fq2-never-print-me";
/// `service` of the token auth (the JWT audience).
pub const TOKEN_SERVICE: &str = "rustimage-test-registry";
/// `issuer` of the token auth.
pub const TOKEN_ISSUER: &str = "rustimage-test-token-issuer";
/// Leeway the registry adds to a token's `exp` and `nbf`
/// (distribution 2.8 `registry/auth/token/token.go`).
pub const REGISTRY_TOKEN_LEEWAY_SECS: u64 = 60;

const DIR_PREFIX: &str = "rustimage-registry-";

/// True when every tool the registries need is there (same skip/panic
/// policy as [`require`]): docker-registry, openssl, htpasswd, curl.
pub fn require_registry() -> bool {
    ["docker-registry", "openssl", "htpasswd", "curl"]
        .iter()
        .all(|t| require(t))
}

// ---------------------------------------------------------------------------
// Small utilities: base64, URL decoding, time, processes, directories
// ---------------------------------------------------------------------------

const B64_STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn b64(data: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk.len();
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= n {
                out.push(alphabet[((v >> (18 - 6 * i)) & 63) as usize] as char);
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 with padding (Basic auth, x5c certificates).
pub fn base64_encode(data: &[u8]) -> String {
    b64(data, B64_STD, true)
}

/// URL-safe base64 without padding (JWT segments).
pub fn base64url_encode(data: &[u8]) -> String {
    b64(data, B64_URL, false)
}

/// Decodes standard or URL-safe base64, padded or not.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Decodes `%XX` escapes and `+` (as Go's url.ParseQuery does).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a=1&b=2` -> decoded pairs, in order (keys may repeat).
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|c| match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (c as char).to_string()
            }
            _ => format!("%{c:02X}"),
        })
        .collect()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A number that differs between calls and processes (not cryptographic).
fn unique_number() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    nanos ^ (u64::from(std::process::id()) << 40) ^ N.fetch_add(1, Ordering::SeqCst)
}

/// `2026-11-28T07:28:58Z` for a Unix time.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A fresh directory `/tmp/rustimage-registry-<pid>-<what>-<n>`, after
/// removing those left by test processes that no longer exist.
fn new_dir(what: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    sweep_stale_dirs();
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}-{what}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    dir
}

fn sweep_stale_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(DIR_PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn openssl(args: &[&str], dir: &Path) {
    run_ok(Command::new("openssl").args(args).current_dir(dir));
}

// ---------------------------------------------------------------------------
// Certificates (one set per test process)
// ---------------------------------------------------------------------------

/// Keys and certificates made with the openssl CLI, once per process (an
/// RSA key takes up to a second here), in `/tmp/rustimage-registry-<pid>-pki-0`
/// (removed at exit):
///
/// - `ca.crt`/`ca.key`: the CA of the registries' TLS certificates (P-256);
/// - `server.crt`/`server.key`: 127.0.0.1 and localhost (subjectAltName
///   IP:127.0.0.1, DNS:localhost, serverAuth), signed by that CA;
/// - `token-ca.crt`: the token auth's `rootcertbundle`, a separate CA;
/// - `token.crt`/`token.key`: the RSA-2048 token signing certificate signed
///   by `token-ca`, sent as the JWT header's `x5c`.
pub struct Pki {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub token_ca_cert: PathBuf,
    pub token_key: PathBuf,
    /// Base64 (standard) DER of `token.crt`, the `x5c` entry.
    pub token_cert_der_b64: String,
}

const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = rustimage test
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[signer]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// The process's [`Pki`], made on first use.
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    extern "C" fn remove_pki() {
        let _ = std::panic::catch_unwind(|| {
            if let Some(p) = PKI.get() {
                let _ = fs::remove_dir_all(&p.dir);
            }
        });
    }
    PKI.get_or_init(|| {
        let pki = make_pki(&new_dir("pki"));
        // SAFETY: registering a plain function pointer.
        unsafe { libc::atexit(remove_pki) };
        pki
    })
}

fn make_pki(dir: &Path) -> Pki {
    fs::write(dir.join("openssl.cnf"), OPENSSL_CNF).unwrap();
    let ec = [
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
    ];
    for key in ["ca.key", "server.key", "token-ca.key"] {
        openssl(&[&ec[..], &["-out", key]].concat(), dir);
    }
    let rsa = [
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
    ];
    openssl(&[&rsa[..], &["-out", "token.key"]].concat(), dir);
    for (ca, cn) in [
        ("ca", "rustimage test registry CA"),
        ("token-ca", "rustimage test token CA"),
    ] {
        let (key, crt, subj) = (
            format!("{ca}.key"),
            format!("{ca}.crt"),
            format!("/CN={cn}"),
        );
        openssl(
            &[
                "req",
                "-config",
                "openssl.cnf",
                "-x509",
                "-new",
                "-key",
                &key,
                "-sha256",
                "-days",
                "3650",
                "-subj",
                &subj,
                "-extensions",
                "ca",
                "-out",
                &crt,
            ],
            dir,
        );
    }
    for (name, ca, cn, ext) in [
        ("server", "ca", "127.0.0.1", "server"),
        ("token", "token-ca", "rustimage test token signer", "signer"),
    ] {
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        let subj = format!("/CN={cn}");
        openssl(
            &[
                "req",
                "-config",
                "openssl.cnf",
                "-new",
                "-key",
                &key,
                "-subj",
                &subj,
                "-out",
                &csr,
            ],
            dir,
        );
        let serial = format!("{}", unique_number() >> 2);
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &format!("{ca}.crt"),
                "-CAkey",
                &format!("{ca}.key"),
                "-set_serial",
                &serial,
                "-days",
                "3650",
                "-sha256",
                "-extfile",
                "openssl.cnf",
                "-extensions",
                ext,
                "-out",
                &crt,
            ],
            dir,
        );
    }
    openssl(
        &[
            "x509",
            "-in",
            "token.crt",
            "-outform",
            "DER",
            "-out",
            "token.der",
        ],
        dir,
    );
    let der = fs::read(dir.join("token.der")).unwrap();
    Pki {
        dir: dir.to_path_buf(),
        ca_cert: dir.join("ca.crt"),
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
        token_ca_cert: dir.join("token-ca.crt"),
        token_key: dir.join("token.key"),
        token_cert_der_b64: base64_encode(&der),
    }
}

// ---------------------------------------------------------------------------
// HTTP/1.1 framing, shared by the token server, the proxy and the client
// ---------------------------------------------------------------------------

/// A request or response head: start line and headers in received order.
#[derive(Clone, Debug, Default)]
pub struct HttpHead {
    pub start: String,
    pub headers: Vec<(String, String)>,
}

impl HttpHead {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// True if a comma-separated header `name` contains `token`
    /// (case-insensitive), e.g. `Connection: close`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    fn without(&self, name: &str) -> HttpHead {
        HttpHead {
            start: self.start.clone(),
            headers: self
                .headers
                .iter()
                .filter(|(k, _)| !k.eq_ignore_ascii_case(name))
                .cloned()
                .collect(),
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut s = format!("{}\r\n", self.start);
        for (k, v) in &self.headers {
            s.push_str(&format!("{k}: {v}\r\n"));
        }
        s.push_str("\r\n");
        s.into_bytes()
    }

    /// Status code of a response head.
    fn status(&self) -> u16 {
        self.start
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

/// Reads a head (start line, headers, empty line). `Ok(None)` on a clean
/// end of stream before the first byte.
pub fn read_head(r: &mut impl BufRead) -> io::Result<Option<HttpHead>> {
    let mut head = HttpHead::default();
    let mut total = 0;
    loop {
        let mut line = Vec::new();
        let n = r.read_until(b'\n', &mut line)?;
        if n == 0 {
            if total == 0 {
                return Ok(None);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        total += n;
        if total > 256 * 1024 {
            return Err(io::Error::other("HTTP head over 256 KiB"));
        }
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        let line = String::from_utf8_lossy(&line).into_owned();
        if line.is_empty() {
            if head.start.is_empty() {
                continue; // tolerate stray CRLFs between messages
            }
            return Ok(Some(head));
        }
        if head.start.is_empty() {
            head.start = line;
        } else if let Some((k, v)) = line.split_once(':') {
            head.headers
                .push((k.trim().to_string(), v.trim().to_string()));
        }
    }
}

/// False (after answering 400 and closing) when the client's first byte
/// cannot start an HTTP request: a TLS ClientHello (0x16) from a client
/// trying HTTPS first, as skopeo does with `--dest-tls-verify=false`. Go
/// servers answer those at once too; waiting for a request line instead
/// would stall the client until its TLS handshake timeout (10 s).
fn looks_like_http(r: &mut BufReader<TcpStream>, w: &mut TcpStream) -> bool {
    match r.fill_buf() {
        Ok(b) if b.first().is_some_and(u8::is_ascii_uppercase) => true,
        Ok([]) => false,
        _ => {
            let _ = w.write_all(
                b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            );
            let _ = w.shutdown(Shutdown::Both);
            false
        }
    }
}

/// How a message body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilEof,
}

fn request_framing(head: &HttpHead) -> Framing {
    if head.has_token("transfer-encoding", "chunked") {
        Framing::Chunked
    } else if let Some(n) = head.header("content-length").and_then(|v| v.parse().ok()) {
        Framing::Length(n)
    } else {
        Framing::Empty
    }
}

fn response_framing(request_method: &str, head: &HttpHead) -> Framing {
    let status = head.status();
    if request_method.eq_ignore_ascii_case("HEAD")
        || (100..200).contains(&status)
        || status == 204
        || status == 304
    {
        Framing::Empty
    } else if head.has_token("transfer-encoding", "chunked") {
        Framing::Chunked
    } else if let Some(n) = head.header("content-length").and_then(|v| v.parse().ok()) {
        Framing::Length(n)
    } else {
        Framing::UntilEof
    }
}

fn copy_exact(r: &mut impl BufRead, w: &mut impl Write, n: u64) -> io::Result<()> {
    let copied = io::copy(&mut r.by_ref().take(n), w)?;
    if copied != n {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// Copies a body from `r` to `w` as is (chunked framing included).
fn relay_body(r: &mut impl BufRead, w: &mut impl Write, framing: Framing) -> io::Result<()> {
    match framing {
        Framing::Empty => Ok(()),
        Framing::Length(n) => copy_exact(r, w, n),
        Framing::UntilEof => io::copy(r, w).map(|_| ()),
        Framing::Chunked => loop {
            let mut line = Vec::new();
            if r.read_until(b'\n', &mut line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            w.write_all(&line)?;
            let text = String::from_utf8_lossy(&line);
            let size_hex = text.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size_hex, 16)
                .map_err(|_| io::Error::other(format!("bad chunk size line {text:?}")))?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    let mut t = Vec::new();
                    if r.read_until(b'\n', &mut t)? == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    w.write_all(&t)?;
                    if t == b"\r\n" || t == b"\n" {
                        return Ok(());
                    }
                }
            }
            copy_exact(r, w, size)?;
            let mut crlf = Vec::new();
            r.read_until(b'\n', &mut crlf)?;
            w.write_all(&crlf)?;
        },
    }
}

/// Reads a body, decoding chunked framing.
fn read_body(r: &mut impl BufRead, framing: Framing) -> io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    relay_body(r, &mut raw, framing)?;
    if framing != Framing::Chunked {
        return Ok(raw);
    }
    let mut out = Vec::new();
    let mut rest = &raw[..];
    loop {
        let nl = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        let line = String::from_utf8_lossy(&rest[..nl]);
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| io::Error::other("bad chunk"))?;
        rest = &rest[(nl + 1).min(rest.len())..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[(size + 2).min(rest.len())..];
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// A whole response, body decoded.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics (showing it) if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {}",
                self.status,
                self.text()
            )
        })
    }
}

/// One HTTP/1.1 connection to `127.0.0.1:PORT`, kept alive between
/// requests, for tests that need keep-alive or chunked request bodies
/// (e.g. through [`FaultProxy`]). Sends [`HARNESS_UA`].
pub struct HttpConn {
    host: String,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl HttpConn {
    /// Connects to `host` ("127.0.0.1:PORT"); 60 s read/write timeouts.
    pub fn connect(host: &str) -> io::Result<HttpConn> {
        assert!(
            host.starts_with("127.0.0.1:") || host.starts_with("localhost:"),
            "harness HTTP only talks to the loopback, not {host}"
        );
        let stream = TcpStream::connect(host)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        stream.set_write_timeout(Some(Duration::from_secs(60)))?;
        stream.set_nodelay(true)?;
        Ok(HttpConn {
            host: host.to_string(),
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    /// Read and write timeout from now on (a timed-out read gives
    /// `WouldBlock` or `TimedOut`).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.writer.set_read_timeout(Some(timeout)).unwrap();
        self.writer.set_write_timeout(Some(timeout)).unwrap();
    }

    /// Sends a request with `Content-Length` framing (for a non-empty body
    /// or a PUT/POST/PATCH) and reads the whole response.
    pub fn send(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<HttpResponse> {
        let mut head = self.head(method, target, headers);
        if !body.is_empty() || matches!(method, "PUT" | "POST" | "PATCH") {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut msg = head.into_bytes();
        msg.extend_from_slice(body);
        self.writer.write_all(&msg)?;
        self.read_response(method)
    }

    /// Sends a request whose body is `chunks` in chunked transfer encoding.
    pub fn send_chunked(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        chunks: &[&[u8]],
    ) -> io::Result<HttpResponse> {
        let mut head = self.head(method, target, headers);
        head.push_str("Transfer-Encoding: chunked\r\n\r\n");
        let mut msg = head.into_bytes();
        for c in chunks.iter().filter(|c| !c.is_empty()) {
            msg.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            msg.extend_from_slice(c);
            msg.extend_from_slice(b"\r\n");
        }
        msg.extend_from_slice(b"0\r\n\r\n");
        self.writer.write_all(&msg)?;
        self.read_response(method)
    }

    fn head(&self, method: &str, target: &str, headers: &[(&str, &str)]) -> String {
        let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {}\r\n", self.host);
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("user-agent"))
        {
            head.push_str(&format!("User-Agent: {HARNESS_UA}\r\n"));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head
    }

    fn read_response(&mut self, method: &str) -> io::Result<HttpResponse> {
        loop {
            let head = read_head(&mut self.reader)?.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed without a response",
                )
            })?;
            let status = head.status();
            if (100..200).contains(&status) {
                continue;
            }
            let body = read_body(&mut self.reader, response_framing(method, &head))?;
            return Ok(HttpResponse {
                status,
                headers: head.headers,
                body,
            });
        }
    }
}

/// One request on a new connection (`Connection: close`) to `host`
/// ("127.0.0.1:PORT"), plain HTTP. `Err` if the connection fails or is
/// closed without a response.
pub fn http_request(
    host: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<HttpResponse> {
    let mut conn = HttpConn::connect(host)?;
    let mut all: Vec<(&str, &str)> = vec![("Connection", "close")];
    all.extend_from_slice(headers);
    conn.send(method, target, &all, body)
}

// ---------------------------------------------------------------------------
// A tiny threaded TCP server (accept loop + thread per connection)
// ---------------------------------------------------------------------------

type ConnHandler = Arc<dyn Fn(TcpStream) + Send + Sync>;

/// Listens on 127.0.0.1:0, runs `handler` in a thread per connection.
/// Dropping it stops accepting and shuts down the open connections.
struct Acceptor {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Open connections by number (each removed when its handler ends).
    conns: Arc<Mutex<BTreeMap<u64, TcpStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    fn start(name: &str, handler: ConnHandler) -> Acceptor {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<BTreeMap<u64, TcpStream>>> = Arc::default();
        let (stop2, conns2) = (stop.clone(), conns.clone());
        let thread = thread::Builder::new()
            .name(format!("{name}-accept"))
            .spawn(move || {
                for (n, conn) in (0u64..).zip(listener.incoming()) {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    if let Ok(c) = conn.try_clone() {
                        lock(&conns2).insert(n, c);
                    }
                    let (h, conns3) = (handler.clone(), conns2.clone());
                    let _ = thread::Builder::new().spawn(move || {
                        h(conn);
                        lock(&conns3).remove(&n);
                    });
                }
            })
            .unwrap();
        Acceptor {
            addr,
            stop,
            conns,
            thread: Some(thread),
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes accept()
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for c in std::mem::take(&mut *lock(&self.conns)).into_values() {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

/// Locks, ignoring poisoning (a panicking test must not hide the state).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes a response with `Content-Length` (and `Connection: close` if
/// `close`).
pub fn write_response(
    w: &mut impl Write,
    code: u16,
    headers: &[(&str, String)],
    body: &[u8],
    close: bool,
) -> io::Result<()> {
    let mut s = format!("HTTP/1.1 {code} {}\r\n", reason(code));
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str(&format!("Content-Length: {}\r\n", body.len()));
    if close {
        s.push_str("Connection: close\r\n");
    }
    s.push_str("\r\n");
    let mut msg = s.into_bytes();
    msg.extend_from_slice(body);
    w.write_all(&msg)?;
    w.flush()
}

// ---------------------------------------------------------------------------
// Token server
// ---------------------------------------------------------------------------

/// What happened to one token request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenOutcome {
    Issued,
    /// Wrong or missing credentials: 401.
    Unauthorized,
    /// Unknown path, wrong service or malformed request: 400/404.
    Rejected(u16),
}

/// One request seen by the [`TokenServer`] (never the password).
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// GET (Basic auth) or POST (OAuth2 form).
    pub method: String,
    /// `grant_type` of a POST (`password`, `refresh_token`).
    pub grant_type: Option<String>,
    /// User name given, if any.
    pub user: Option<String>,
    pub service: Option<String>,
    /// Scopes asked for, as sent (`repository:a/b:pull,push`).
    pub scopes: Vec<String>,
    /// `offline_token=true` (GET) or `access_type=offline` (POST).
    pub offline: bool,
    pub outcome: TokenOutcome,
}

struct TokenState {
    user: String,
    password: String,
    service: String,
    issuer: String,
    expires_in: AtomicU64,
    valid_for: AtomicU64,
    granted_actions: Mutex<Option<Vec<String>>>,
    requests: Mutex<Vec<TokenRequest>>,
    issued: AtomicUsize,
    refresh_tokens: Mutex<BTreeSet<String>>,
}

/// Docker's token protocol (distribution `docs/spec/auth/token.md`) on
/// `http://127.0.0.1:PORT/token`, thread per connection, keep-alive.
///
/// - `GET /token?service=S&scope=repository:NAME:pull,push[&scope=...]`
///   with `Authorization: Basic` (user/password); `offline_token=true`
///   also returns a `refresh_token`.
/// - `POST /token` with an OAuth2 form: `grant_type=password` (username,
///   password) or `grant_type=refresh_token` (a refresh token it issued,
///   which is what Docker stores as `identitytoken`); `scope` is
///   space-separated.
/// - Answers `{"token", "access_token", "expires_in", "issued_at"}`; wrong
///   or missing credentials get 401, another service 400.
///
/// Tokens are RS256 JWTs with `x5c` = the signing certificate (chained to
/// [`TokenServer::root_cert_bundle`]), `iss` [`TOKEN_ISSUER`], `aud` the
/// service, `sub` the user and `access` = every requested scope with the
/// requested actions (or only those of [`TokenServer::set_granted_actions`]).
///
/// Lifetimes: `expires_in` (what the client is told) and `valid_for` (when
/// the registry starts refusing the token), 300 s each by default. The
/// registry accepts a token until `exp` + 60 s of leeway, so the claim is
/// `exp = now + valid_for - 60`: with `set_valid_for(2)` the registry
/// answers 401 to the token from 2-3 s after it was issued, while a client
/// told `expires_in: 300` still thinks it valid, which is how to test a
/// client's refresh on 401.
pub struct TokenServer {
    state: Arc<TokenState>,
    acceptor: Acceptor,
    dir: PathBuf,
    tls: bool,
}

impl TokenServer {
    /// Starts a token server accepting `user`/`password` on plain HTTP.
    pub fn start(user: &str, password: &str) -> TokenServer {
        TokenServer::start_with(user, password, false)
    }

    /// Same, on HTTPS with the registries' certificate (127.0.0.1, signed
    /// by the test CA) when `tls`.
    pub fn start_with(user: &str, password: &str, tls: bool) -> TokenServer {
        let pki = pki(); // before the first request: it may take a second
        let state = Arc::new(TokenState {
            user: user.to_string(),
            password: password.to_string(),
            service: TOKEN_SERVICE.to_string(),
            issuer: TOKEN_ISSUER.to_string(),
            expires_in: AtomicU64::new(300),
            valid_for: AtomicU64::new(300),
            granted_actions: Mutex::new(None),
            requests: Mutex::default(),
            issued: AtomicUsize::new(0),
            refresh_tokens: Mutex::default(),
        });
        let s = state.clone();
        let config = tls.then(tls_server_config);
        let acceptor = Acceptor::start(
            "token-server",
            Arc::new(move |c| token_conn(c, &s, config.clone())),
        );
        TokenServer {
            state,
            acceptor,
            dir: pki.dir.clone(),
            tls,
        }
    }

    /// `http(s)://127.0.0.1:PORT/token`, the registry's `auth.token.realm`.
    pub fn realm(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}/token", self.acceptor.addr)
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    pub fn host(&self) -> String {
        self.acceptor.addr.to_string()
    }

    pub fn service(&self) -> &str {
        &self.state.service
    }

    pub fn issuer(&self) -> &str {
        &self.state.issuer
    }

    /// The CA certificate that the registry's `rootcertbundle` must name.
    pub fn root_cert_bundle(&self) -> PathBuf {
        self.dir.join("token-ca.crt")
    }

    /// `expires_in` told to clients from now on.
    pub fn set_expires_in(&self, secs: u64) {
        self.state.expires_in.store(secs, Ordering::SeqCst);
    }

    /// How long tokens issued from now on are accepted by the registry
    /// (about; whole seconds). See the type's docs.
    pub fn set_valid_for(&self, secs: u64) {
        self.state.valid_for.store(secs, Ordering::SeqCst);
    }

    /// Grant only these actions (e.g. `["pull"]`) whatever is asked;
    /// `None` grants what is asked.
    pub fn set_granted_actions(&self, actions: Option<&[&str]>) {
        *lock(&self.state.granted_actions) =
            actions.map(|a| a.iter().map(|s| s.to_string()).collect());
    }

    /// Tokens issued to clients so far (not counting [`TokenServer::mint`]).
    pub fn tokens_issued(&self) -> usize {
        self.state.issued.load(Ordering::SeqCst)
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<TokenRequest> {
        lock(&self.state.requests).clone()
    }

    /// Every scope asked for so far, in order (repeats included).
    pub fn scopes_requested(&self) -> Vec<String> {
        self.requests().into_iter().flat_map(|r| r.scopes).collect()
    }

    /// Requests answered 401.
    pub fn unauthorized(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.outcome == TokenOutcome::Unauthorized)
            .count()
    }

    /// A token for `scopes` valid for `valid_for` seconds, made directly
    /// (no HTTP, not counted): the harness's own requests use these.
    pub fn mint(&self, subject: &str, scopes: &[&str], valid_for: u64) -> String {
        let access: Vec<Value> = scopes
            .iter()
            .filter_map(|s| scope_access(s, None))
            .collect();
        make_jwt(&self.state, subject, access, valid_for)
    }
}

/// `repository:a/b:pull,push` -> `{"type","name","actions"}`, keeping only
/// `granted` actions when given. The name may contain `:` (a type like
/// `repository(plugin)` does not change the split: first and last fields).
fn scope_access(scope: &str, granted: Option<&[String]>) -> Option<Value> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let kind = kind.split('(').next().unwrap_or(kind);
    let actions: Vec<&str> = actions
        .split(',')
        .filter(|a| !a.is_empty())
        .filter(|a| granted.is_none_or(|g| g.iter().any(|x| x == a)))
        .collect();
    Some(json!({"type": kind, "name": name, "actions": actions}))
}

fn make_jwt(state: &TokenState, subject: &str, access: Vec<Value>, valid_for: u64) -> String {
    let pki = pki();
    let now = now_secs() as i64;
    let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [pki.token_cert_der_b64]});
    let claims = json!({
        "iss": state.issuer,
        "sub": subject,
        "aud": state.service,
        "exp": now + valid_for as i64 - REGISTRY_TOKEN_LEEWAY_SECS as i64,
        "nbf": now - 1,
        "iat": now,
        "jti": format!("{:x}", unique_number()),
        "access": access,
    });
    let input = format!(
        "{}.{}",
        base64url_encode(header.to_string().as_bytes()),
        base64url_encode(claims.to_string().as_bytes())
    );
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(&pki.token_key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn openssl dgst");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl dgst -sign failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("{input}.{}", base64url_encode(&out.stdout))
}

fn token_conn(stream: TcpStream, state: &TokenState, tls: Option<Arc<rustls::ServerConfig>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    match tls {
        Some(config) => {
            let Ok(conn) = rustls::ServerConnection::new(config) else {
                return;
            };
            token_exchanges(
                &mut BufReader::new(rustls::StreamOwned::new(conn, stream)),
                state,
            );
        }
        None => {
            let Ok(write_half) = stream.try_clone() else {
                return;
            };
            let mut reader = BufReader::new(stream);
            let mut writer = write_half;
            if looks_like_http(&mut reader, &mut writer) {
                token_exchanges(&mut reader, state);
            }
        }
    }
}

/// Requests and answers on one connection until it closes.
fn token_exchanges<S: Read + Write>(rw: &mut BufReader<S>, state: &TokenState) {
    while let Ok(Some(head)) = read_head(rw) {
        let Ok(body) = read_body(rw, request_framing(&head)) else {
            return;
        };
        let close = head.has_token("connection", "close");
        let (code, headers, body) = token_response(state, &head, &body);
        if write_response(rw.get_mut(), code, &headers, &body, close).is_err() || close {
            return;
        }
    }
}

/// A rustls server config with the registries' certificate (127.0.0.1 and
/// localhost, signed by [`Pki::ca_cert`]), for servers of the tests.
pub fn tls_server_config() -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let pki = pki();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pki.server_cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&pki.server_key).unwrap();
    Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    )
}

fn token_response(
    state: &TokenState,
    head: &HttpHead,
    body: &[u8],
) -> (u16, Vec<(&'static str, String)>, Vec<u8>) {
    let json_type = ("Content-Type", "application/json".to_string());
    let mut parts = head.start.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params = if method == "POST" {
        parse_query(&String::from_utf8_lossy(body))
    } else {
        parse_query(query)
    };
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let scopes: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect();
    let mut req = TokenRequest {
        method: method.clone(),
        grant_type: param("grant_type"),
        user: None,
        service: param("service"),
        scopes,
        offline: param("offline_token").as_deref() == Some("true")
            || param("access_type").as_deref() == Some("offline"),
        outcome: TokenOutcome::Issued,
    };
    let error = |code: u16, msg: &str| {
        let body = json!({"errors": [{"code": if code == 401 {"UNAUTHORIZED"} else {"DENIED"}, "message": msg}]});
        let mut headers = vec![json_type.clone()];
        if code == 401 {
            headers.push((
                "WWW-Authenticate",
                "Basic realm=\"rustimage-test-token\"".to_string(),
            ));
        }
        (code, headers, body.to_string().into_bytes())
    };
    let reply = if path != "/token" || !matches!(method.as_str(), "GET" | "POST") {
        req.outcome = TokenOutcome::Rejected(404);
        error(404, "not found")
    } else if req.service.as_deref().is_some_and(|s| s != state.service) {
        req.outcome = TokenOutcome::Rejected(400);
        error(400, "unknown service")
    } else {
        let subject = token_subject(state, &method, head, &param, &mut req);
        match subject {
            None => {
                req.outcome = TokenOutcome::Unauthorized;
                error(401, "invalid username or password")
            }
            Some(subject) => {
                let granted = lock(&state.granted_actions).clone();
                let access: Vec<Value> = req
                    .scopes
                    .iter()
                    .filter_map(|s| scope_access(s, granted.as_deref()))
                    .collect();
                let valid_for = state.valid_for.load(Ordering::SeqCst);
                let token = make_jwt(state, &subject, access, valid_for);
                state.issued.fetch_add(1, Ordering::SeqCst);
                let mut answer = json!({
                    "token": token,
                    "access_token": token,
                    "expires_in": state.expires_in.load(Ordering::SeqCst),
                    "issued_at": rfc3339(now_secs()),
                });
                if req.offline {
                    let rt = format!("rt-{:x}", unique_number());
                    lock(&state.refresh_tokens).insert(rt.clone());
                    answer["refresh_token"] = json!(rt);
                }
                (
                    200,
                    vec![json_type.clone()],
                    answer.to_string().into_bytes(),
                )
            }
        }
    };
    lock(&state.requests).push(req);
    reply
}

/// The authenticated subject of a token request, or None (401).
fn token_subject(
    state: &TokenState,
    method: &str,
    head: &HttpHead,
    param: &dyn Fn(&str) -> Option<String>,
    req: &mut TokenRequest,
) -> Option<String> {
    let password_ok = |user: &str, pass: &str| user == state.user && pass == state.password;
    if method == "POST" {
        return match param("grant_type").as_deref() {
            Some("password") => {
                let user = param("username").unwrap_or_default();
                req.user = Some(user.clone());
                password_ok(&user, &param("password").unwrap_or_default()).then_some(user)
            }
            Some("refresh_token") => {
                let rt = param("refresh_token").unwrap_or_default();
                req.user = Some(state.user.clone());
                lock(&state.refresh_tokens)
                    .contains(&rt)
                    .then(|| state.user.clone())
            }
            _ => None,
        };
    }
    let basic = head
        .header("authorization")
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(|b| base64_decode(b.trim()))
        .map(|b| String::from_utf8_lossy(&b).into_owned())?;
    let (user, pass) = basic.split_once(':').unwrap_or((&basic, ""));
    req.user = Some(user.to_string());
    password_ok(user, pass).then(|| user.to_string())
}

// ---------------------------------------------------------------------------
// The registry's access log
// ---------------------------------------------------------------------------

/// One line of the registry's access log (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessEntry {
    pub method: String,
    /// The URI path, as sent (not decoded).
    pub path: String,
    /// Decoded query parameters, in order.
    pub query: Vec<(String, String)>,
    pub status: u16,
    pub bytes: u64,
    pub user_agent: String,
    pub line: String,
}

impl AccessEntry {
    /// First decoded value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The repository named in a `/v2/NAME/{blobs,manifests,tags}/...` path.
    pub fn repo(&self) -> Option<&str> {
        let rest = self.path.strip_prefix("/v2/")?;
        ["/blobs/", "/manifests/", "/tags/"]
            .iter()
            .filter_map(|m| rest.rfind(m))
            .max()
            .map(|i| &rest[..i])
    }

    fn is_upload_path(&self) -> bool {
        self.path.contains("/blobs/uploads/")
    }

    /// Digest of a completed blob upload: `PUT .../blobs/uploads/ID?digest=`
    /// answered 201, or a single-request monolithic `POST
    /// .../blobs/uploads/?digest=` answered 201.
    pub fn uploaded_digest(&self) -> Option<&str> {
        let completes = (self.method == "PUT" || self.method == "POST")
            && self.is_upload_path()
            && self.status == 201
            && self.param("mount").is_none();
        if completes {
            self.param("digest")
        } else {
            None
        }
    }

    /// `POST .../blobs/uploads/?mount=D&from=R`, whatever the answer.
    pub fn is_mount_attempt(&self) -> bool {
        self.method == "POST" && self.is_upload_path() && self.param("mount").is_some()
    }

    /// A mount attempt answered 201 (blob mounted; 202 means "upload it").
    pub fn is_mount(&self) -> bool {
        self.is_mount_attempt() && self.status == 201
    }

    /// `HEAD /v2/NAME/blobs/DIGEST`.
    pub fn is_blob_head(&self) -> bool {
        self.method == "HEAD" && self.path.contains("/blobs/") && !self.is_upload_path()
    }

    /// `PATCH .../blobs/uploads/ID` (a chunk), any answer.
    pub fn is_patch(&self) -> bool {
        self.method == "PATCH" && self.is_upload_path()
    }

    /// `PUT /v2/NAME/manifests/REF` answered 201.
    pub fn is_manifest_put(&self) -> bool {
        self.method == "PUT" && self.path.contains("/manifests/") && self.status == 201
    }

    /// Made by this harness (see [`HARNESS_UA`]).
    pub fn is_harness(&self) -> bool {
        self.user_agent == HARNESS_UA
    }
}

/// Parses one Apache combined log line as written by the registry:
/// `HOST - USER [TIME] "METHOD URI PROTO" STATUS BYTES "REFERER" "UA"`.
/// Anything else (logrus lines, partial lines) gives None.
pub fn parse_access_line(line: &str) -> Option<AccessEntry> {
    let open = line.find("] \"")?;
    if !line[..open].contains(" [") {
        return None;
    }
    let rest = &line[open + 3..];
    let close = rest.find('"')?;
    let mut req = rest[..close].split(' ');
    let method = req.next()?.to_string();
    let uri = req.next()?;
    let proto = req.next()?;
    if !proto.starts_with("HTTP/") || method.is_empty() {
        return None;
    }
    let mut after = rest[close + 1..].trim_start().splitn(3, ' ');
    let status: u16 = after.next()?.parse().ok()?;
    let bytes = after.next()?.parse().unwrap_or(0);
    let tail = after.next().unwrap_or("");
    let user_agent = tail
        .rsplit_once("\" \"")
        .map(|(_, ua)| ua.strip_suffix('"').unwrap_or(ua))
        .unwrap_or("")
        .replace("\\\"", "\"");
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    Some(AccessEntry {
        method,
        path: path.to_string(),
        query: parse_query(query),
        status,
        bytes,
        user_agent,
        line: line.to_string(),
    })
}

/// What a client did, counted from access log entries (the harness's own
/// requests excluded).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// All requests.
    pub requests: usize,
    /// Completed blob uploads (see [`AccessEntry::uploaded_digest`]).
    pub blob_uploads: usize,
    /// Completed uploads per digest (`sha256:...`).
    pub uploads_by_digest: BTreeMap<String, usize>,
    /// Cross-repository mounts answered 201.
    pub mounts: usize,
    /// Mount requests, whatever the answer.
    pub mount_attempts: usize,
    /// `HEAD` of blobs, and those answered 200.
    pub blob_heads: usize,
    pub blob_heads_found: usize,
    /// `PATCH` chunk uploads.
    pub patches: usize,
    /// Manifest `PUT`s answered 201.
    pub manifest_puts: usize,
    /// Answers 401 (auth challenges) and other 4xx/5xx answers.
    pub unauthorized: usize,
    pub other_errors: usize,
}

impl Counts {
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = &'a AccessEntry>) -> Counts {
        let mut c = Counts::default();
        for e in entries.into_iter().filter(|e| !e.is_harness()) {
            c.requests += 1;
            if let Some(d) = e.uploaded_digest() {
                c.blob_uploads += 1;
                *c.uploads_by_digest.entry(d.to_string()).or_default() += 1;
            }
            c.mounts += usize::from(e.is_mount());
            c.mount_attempts += usize::from(e.is_mount_attempt());
            c.blob_heads += usize::from(e.is_blob_head());
            c.blob_heads_found += usize::from(e.is_blob_head() && e.status == 200);
            c.patches += usize::from(e.is_patch());
            c.manifest_puts += usize::from(e.is_manifest_put());
            c.unauthorized += usize::from(e.status == 401);
            // A blob HEAD answering 404 and a mount falling back to an
            // upload (202) are normal; so is the 404 of a missing blob.
            c.other_errors += usize::from(e.status >= 400 && e.status != 401 && !e.is_blob_head());
        }
        c
    }

    /// Completed uploads of `digest`.
    pub fn uploads_of(&self, digest: &str) -> usize {
        self.uploads_by_digest.get(digest).copied().unwrap_or(0)
    }
}

/// A position in the access log (see [`Registry::mark`]).
#[derive(Clone, Copy, Debug)]
pub struct LogMark(usize);

// ---------------------------------------------------------------------------
// The registry
// ---------------------------------------------------------------------------

/// Which auth the registry asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum RegistryAuth {
    #[default]
    None,
    /// htpasswd (bcrypt, `htpasswd -Bbn`) basic auth.
    Htpasswd { user: String, password: String },
    /// Token auth against a [`TokenServer`] started with the registry.
    Token { user: String, password: String },
}

#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// HTTPS with a certificate for 127.0.0.1 and localhost signed by the
    /// test CA ([`Registry::ca_cert`]).
    pub tls: bool,
    pub auth: RegistryAuth,
    /// Token auth only: the token server on plain HTTP even when the
    /// registry is HTTPS (by default it speaks what the registry speaks).
    pub plain_token_realm: bool,
    /// Serve this certificate instead of the test PKI's (implies `tls`).
    pub server_tls: Option<ServerTls>,
    /// `http.tls.clientcas`: clients must present a certificate signed by
    /// one of these CAs (the registry then requires and verifies one).
    pub client_cas: Vec<PathBuf>,
    /// The client certificate and key the harness (curl) and
    /// [`Registry::cert_dir`] (skopeo) present.
    pub harness_client: Option<(PathBuf, PathBuf)>,
}

/// A registry's own certificate and key, and the certificate clients must
/// trust for it (the certificate itself when self-signed, else its CA).
#[derive(Clone, Debug)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub trust: PathBuf,
}

/// A distribution registry (`docker-registry serve CONFIG`) on
/// 127.0.0.1:PORT, filesystem storage, delete enabled, access log on,
/// stopped on drop (and by PR_SET_PDEATHSIG if the test process dies).
/// Its directory `/tmp/rustimage-registry-<pid>-reg-<n>` holds
/// `config.yml`, `data/`, `registry.log`, `htpasswd` and `certs/ca.crt`.
pub struct Registry {
    opts: RegistryOptions,
    dir: PathBuf,
    port: u16,
    child: Mutex<Option<Child>>,
    token: Option<TokenServer>,
    sync_counter: AtomicUsize,
    /// Time from the last spawn to readiness.
    pub startup: Duration,
}

impl Registry {
    /// Plain HTTP, no auth.
    pub fn plain() -> Registry {
        Registry::start(RegistryOptions::default())
    }

    /// TLS, no auth.
    pub fn tls() -> Registry {
        Registry::start(RegistryOptions {
            tls: true,
            ..RegistryOptions::default()
        })
    }

    /// htpasswd basic auth for [`TEST_USER`]/[`TEST_PASSWORD`].
    pub fn htpasswd(tls: bool) -> Registry {
        Registry::start(RegistryOptions {
            tls,
            auth: RegistryAuth::Htpasswd {
                user: TEST_USER.into(),
                password: TEST_PASSWORD.into(),
            },
            ..RegistryOptions::default()
        })
    }

    /// Token auth for [`TEST_USER`]/[`TEST_PASSWORD`].
    pub fn token(tls: bool) -> Registry {
        Registry::start(RegistryOptions {
            tls,
            auth: RegistryAuth::Token {
                user: TEST_USER.into(),
                password: TEST_PASSWORD.into(),
            },
            ..RegistryOptions::default()
        })
    }

    /// Starts a registry on a free port and waits (up to 30 s) until it
    /// answers; panics with its log if it does not.
    pub fn start(mut opts: RegistryOptions) -> Registry {
        opts.tls |= opts.server_tls.is_some();
        let dir = new_dir("reg");
        let token = match &opts.auth {
            RegistryAuth::Token { user, password } => Some(TokenServer::start_with(
                user,
                password,
                opts.tls && !opts.plain_token_realm,
            )),
            _ => None,
        };
        if opts.tls {
            let certs = dir.join("certs");
            fs::create_dir_all(&certs).unwrap();
            let trust = match &opts.server_tls {
                Some(t) => t.trust.clone(),
                None => pki().ca_cert.clone(),
            };
            fs::copy(trust, certs.join("ca.crt")).unwrap();
            if let Some((cert, key)) = &opts.harness_client {
                fs::copy(cert, certs.join("client.cert")).unwrap();
                fs::copy(key, certs.join("client.key")).unwrap();
            }
        }
        if let RegistryAuth::Htpasswd { user, password } = &opts.auth {
            let out = run_ok(Command::new("htpasswd").args(["-Bbn", user, password]));
            fs::write(dir.join("htpasswd"), out.stdout).unwrap();
        }
        let mut reg = Registry {
            opts,
            dir,
            port: 0,
            child: Mutex::new(None),
            token,
            sync_counter: AtomicUsize::new(0),
            startup: Duration::ZERO,
        };
        let mut last = String::new();
        for _ in 0..5 {
            reg.port = free_port();
            match reg.spawn() {
                Ok(()) => return reg,
                Err(why) => last = why,
            }
        }
        panic!("registry did not start after 5 tries (port races?): {last}");
    }

    /// Writes the config for the current port, spawns, waits. Err only
    /// for a lost port race ("address already in use").
    fn spawn(&mut self) -> Result<(), String> {
        fs::write(self.dir.join("config.yml"), self.config_yaml()).unwrap();
        let log = File::create(self.log_path()).unwrap();
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve")
            .arg(self.dir.join("config.yml"))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("REGISTRY_") {
                cmd.env_remove(k); // env overrides the config file
            }
        }
        let began = Instant::now();
        let mut child = spawn_tied(cmd);
        let deadline = began + Duration::from_secs(30);
        loop {
            let log = self.log();
            if let Some(status) = child.try_wait().unwrap() {
                if log.contains("address already in use") {
                    return Err(format!("port {} taken", self.port));
                }
                panic!("docker-registry exited ({status}):\n--- registry log ---\n{log}");
            }
            if log.contains("listening on") && TcpStream::connect(self.host()).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                super::terminate(&mut child, Duration::from_secs(5));
                panic!(
                    "docker-registry not ready on {} after 30 s:\n--- registry log ---\n{}",
                    self.host(),
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(25));
        }
        self.startup = began.elapsed();
        *lock(&self.child) = Some(child);
        Ok(())
    }

    fn config_yaml(&self) -> String {
        let q = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', "''"));
        let mut y = format!(
            "version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: {data}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
health:
  storagedriver:
    enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: rustimage-test-{secret:x}
  headers:
    X-Content-Type-Options: [nosniff]
",
            data = q(&self.dir.join("data")),
            port = self.port,
            secret = unique_number(),
        );
        if self.opts.tls {
            let pki = pki();
            let (cert, key) = match &self.opts.server_tls {
                Some(t) => (&t.cert, &t.key),
                None => (&pki.server_cert, &pki.server_key),
            };
            y.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                q(cert),
                q(key)
            ));
            if !self.opts.client_cas.is_empty() {
                y.push_str("    clientcas:\n");
                for ca in &self.opts.client_cas {
                    y.push_str(&format!("      - {}\n", q(ca)));
                }
            }
        }
        match (&self.opts.auth, &self.token) {
            (RegistryAuth::Htpasswd { .. }, _) => y.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: rustimage-test\n    path: {}\n",
                q(&self.dir.join("htpasswd"))
            )),
            (RegistryAuth::Token { .. }, Some(t)) => y.push_str(&format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                t.realm(),
                t.service(),
                t.issuer(),
                q(&t.root_cert_bundle())
            )),
            _ => {}
        }
        y
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn is_tls(&self) -> bool {
        self.opts.tls
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        let scheme = if self.opts.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.host())
    }

    /// The CA certificate that signed the registry's certificate (TLS only):
    /// give it to clients (`--ca-cert`, curl `--cacert`).
    pub fn ca_cert(&self) -> Option<PathBuf> {
        self.opts.tls.then(|| self.dir.join("certs/ca.crt"))
    }

    /// A directory holding `ca.crt` (TLS only), and `client.cert` with
    /// `client.key` when the harness has a client certificate, for
    /// skopeo's `--dest-cert-dir`/`--src-cert-dir` and Docker's certs.d
    /// layout.
    pub fn cert_dir(&self) -> Option<PathBuf> {
        self.opts.tls.then(|| self.dir.join("certs"))
    }

    /// (user, password) when the registry has auth.
    pub fn creds(&self) -> Option<(&str, &str)> {
        match &self.opts.auth {
            RegistryAuth::None => None,
            RegistryAuth::Htpasswd { user, password } | RegistryAuth::Token { user, password } => {
                Some((user, password))
            }
        }
    }

    /// The token server of a token-auth registry.
    pub fn token_server(&self) -> Option<&TokenServer> {
        self.token.as_ref()
    }

    /// The registry's directory (config, data, log, certs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The storage root (`storage.filesystem.rootdirectory`).
    pub fn storage(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("registry.log")
    }

    /// The registry's output so far: logrus lines and access log lines.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `docker://127.0.0.1:PORT/REPO_AND_TAG` for skopeo.
    pub fn skopeo_ref(&self, repo_and_tag: &str) -> String {
        format!("docker://{}/{repo_and_tag}", self.host())
    }

    /// skopeo copy flags for this registry as destination: TLS verify on
    /// with the cert dir (or off for plain HTTP), and the credentials.
    pub fn skopeo_dest_args(&self) -> Vec<String> {
        self.skopeo_args("dest")
    }

    /// Same for this registry as source (`--src-...`).
    pub fn skopeo_src_args(&self) -> Vec<String> {
        self.skopeo_args("src")
    }

    /// Same for commands without a direction (`inspect`, `list-tags`).
    pub fn skopeo_args(&self, side: &str) -> Vec<String> {
        let p = if side.is_empty() {
            String::new()
        } else {
            format!("{side}-")
        };
        let mut a = vec![format!("--{p}tls-verify={}", self.opts.tls)];
        if let Some(dir) = self.cert_dir() {
            a.push(format!("--{p}cert-dir={}", dir.display()));
        }
        match self.creds() {
            Some((u, pw)) => a.push(format!("--{p}creds={u}:{pw}")),
            None => a.push(format!("--{p}no-creds")),
        }
        a
    }

    /// Writes `DIR/config.json` in Docker's format with this registry's
    /// credentials (`{"auths": {"127.0.0.1:PORT": {"auth": base64}}}`);
    /// also valid as containers' auth.json. Returns the file's path.
    pub fn write_docker_config(&self, dir: &Path) -> PathBuf {
        let (u, p) = self.creds().expect("registry without auth");
        let cfg =
            json!({"auths": {self.host(): {"auth": base64_encode(format!("{u}:{p}").as_bytes())}}});
        fs::create_dir_all(dir).unwrap();
        let path = dir.join("config.json");
        fs::write(&path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
        path
    }

    /// `docker login` of `engine` to this registry (auth registries only;
    /// the engine's client config keeps the credentials until
    /// [`Registry::docker_logout`]).
    pub fn docker_login(&self, engine: &Docker) {
        let (u, p) = self.creds().expect("registry without auth");
        let mut cmd = engine.docker(["login", "--username", u, "--password-stdin", &self.host()]);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn docker login");
        child.stdin.take().unwrap().write_all(p.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "docker login {} failed: {}{}",
            self.host(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn docker_logout(&self, engine: &Docker) {
        let _ = engine.docker(["logout", &self.host()]).output();
    }

    /// Stops the registry (SIGTERM, 10 s grace, SIGKILL). Idempotent; the
    /// directory stays until drop.
    pub fn stop(&self) {
        if let Some(mut child) = lock(&self.child).take() {
            super::terminate(&mut child, Duration::from_secs(10));
        }
    }

    /// Stops and starts the registry again, same port and storage (the
    /// log file starts anew: marks taken before are void).
    pub fn restart(&mut self) {
        self.stop();
        if let Err(why) = self.spawn() {
            panic!("registry restart on port {}: {why}", self.port);
        }
    }

    // -- HTTP as the harness -------------------------------------------------

    /// A request as the harness, with the registry's credentials (Basic, or
    /// a minted token for the scope the path needs). Plain HTTP uses a
    /// TcpStream; TLS uses curl with the CA. Excluded from [`Counts`].
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        let auth = self.harness_auth(path);
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(a) = &auth {
            all.push(("Authorization", a));
        }
        self.raw_request(method, path, &all, body)
    }

    /// A request as the harness with exactly `headers` (no credentials
    /// added).
    pub fn raw_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        if self.opts.tls {
            self.curl(method, path, headers, body)
        } else {
            http_request(&self.host(), method, path, headers, body)
                .unwrap_or_else(|e| panic!("{method} {}{path}: {e}", self.url()))
        }
    }

    fn harness_auth(&self, path: &str) -> Option<String> {
        match &self.opts.auth {
            RegistryAuth::None => None,
            RegistryAuth::Htpasswd { user, password } => Some(format!(
                "Basic {}",
                base64_encode(format!("{user}:{password}").as_bytes())
            )),
            RegistryAuth::Token { user, .. } => {
                let scope = path_scope(path);
                let scopes: Vec<&str> = scope.iter().map(String::as_str).collect();
                let t = self.token.as_ref().unwrap().mint(user, &scopes, 300);
                Some(format!("Bearer {t}"))
            }
        }
    }

    fn curl(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "--http1.1",
            "-i",
            "--noproxy",
            "*",
            "--max-time",
            "60",
        ])
        .arg("--cacert")
        .arg(self.ca_cert().unwrap())
        .args(self.opts.harness_client.iter().flat_map(|(c, k)| {
            [
                OsStr::new("--cert"),
                c.as_os_str(),
                OsStr::new("--key"),
                k.as_os_str(),
            ]
        }))
        .args(["-A", HARNESS_UA, "-H", "Expect:"]);
        if method == "HEAD" {
            cmd.arg("-I");
        } else {
            cmd.args(["-X", method]);
        }
        for (k, v) in headers {
            cmd.arg("-H").arg(format!("{k}: {v}"));
        }
        if !body.is_empty() {
            cmd.args(["--data-binary", "@-"]);
        }
        cmd.arg(format!("{}{path}", self.url()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn curl");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(body).unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "curl {method} {}{path}: {}",
            self.url(),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut r = &out.stdout[..];
        loop {
            let head = read_head(&mut r)
                .unwrap()
                .unwrap_or_else(|| panic!("curl {method} {path}: no response"));
            let status = head.status();
            if (100..200).contains(&status) {
                continue;
            }
            return HttpResponse {
                status,
                headers: head.headers,
                body: r.to_vec(),
            };
        }
    }

    /// `GET /v2/_catalog`: repository names (all pages).
    pub fn catalog(&self) -> Vec<String> {
        let mut names = Vec::new();
        let mut path = "/v2/_catalog?n=1000".to_string();
        loop {
            let r = self.request("GET", &path, &[], b"");
            assert_eq!(r.status, 200, "catalog: {}", r.text());
            names.extend(strings(&r.json()["repositories"]));
            // Link: </v2/_catalog?last=x&n=1000>; rel="next"
            match r.header("link").and_then(|l| l.split_once('<')) {
                Some((_, rest)) => path = rest.split('>').next().unwrap_or("").to_string(),
                None => return names,
            }
        }
    }

    /// `GET /v2/REPO/tags/list`: tags (empty for an unknown repository).
    pub fn tags(&self, repo: &str) -> Vec<String> {
        let r = self.request("GET", &format!("/v2/{repo}/tags/list"), &[], b"");
        match r.status {
            404 => Vec::new(),
            200 => strings(&r.json()["tags"]),
            s => panic!("tags of {repo}: status {s}: {}", r.text()),
        }
    }

    /// `GET /v2/REPO/manifests/REFERENCE` accepting OCI and Docker
    /// manifests and indexes; None on 404. Checks the body's digest
    /// against `Docker-Content-Digest`.
    pub fn manifest(&self, repo: &str, reference: &str) -> Option<Manifest> {
        let accept = [
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
        ]
        .join(", ");
        let r = self.request(
            "GET",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Accept", &accept)],
            b"",
        );
        match r.status {
            404 => return None,
            200 => {}
            s => panic!("manifest {repo}:{reference}: status {s}: {}", r.text()),
        }
        let digest = format!("sha256:{}", sha256_hex(&r.body));
        if let Some(h) = r.header("docker-content-digest") {
            assert_eq!(h, digest, "Docker-Content-Digest of {repo}:{reference}");
        }
        Some(Manifest {
            media_type: r.header("content-type").unwrap_or("").to_string(),
            digest,
            body: r.body,
        })
    }

    /// `HEAD /v2/REPO/blobs/DIGEST` answered 200.
    pub fn blob_exists(&self, repo: &str, digest: &str) -> bool {
        let r = self.request("HEAD", &format!("/v2/{repo}/blobs/{digest}"), &[], b"");
        match r.status {
            200 => true,
            404 => false,
            s => panic!("HEAD blob {repo}@{digest}: status {s}"),
        }
    }

    /// `GET /v2/REPO/blobs/DIGEST`, None on 404; checks the digest.
    pub fn blob(&self, repo: &str, digest: &str) -> Option<Vec<u8>> {
        let r = self.request("GET", &format!("/v2/{repo}/blobs/{digest}"), &[], b"");
        match r.status {
            404 => None,
            200 => {
                assert_eq!(format!("sha256:{}", sha256_hex(&r.body)), digest);
                Some(r.body)
            }
            s => panic!("GET blob {repo}@{digest}: status {s}: {}", r.text()),
        }
    }

    // -- Access log counters -------------------------------------------------

    /// Makes sure every request answered so far is in the log: sends
    /// `GET /v2/?rustimage-log-sync=N` and waits (10 s) for its line.
    pub fn sync_log(&self) {
        let n = self.sync_counter.fetch_add(1, Ordering::SeqCst);
        let marker = format!("rustimage-log-sync={n} ");
        self.raw_request("GET", &format!("/v2/?{}", marker.trim_end()), &[], b"");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log().contains(&marker) {
            assert!(
                Instant::now() < deadline,
                "sync line {marker:?} not in the registry log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every access log entry so far (after [`Registry::sync_log`]),
    /// harness requests included.
    pub fn requests(&self) -> Vec<AccessEntry> {
        self.sync_log();
        self.log()
            .split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .filter_map(|l| parse_access_line(l.trim_end()))
            .collect()
    }

    /// The current end of the access log.
    pub fn mark(&self) -> LogMark {
        LogMark(self.requests().len())
    }

    /// Entries after `mark`.
    pub fn requests_since(&self, mark: LogMark) -> Vec<AccessEntry> {
        self.requests().into_iter().skip(mark.0).collect()
    }

    /// Counts over the whole log.
    pub fn counts(&self) -> Counts {
        Counts::from_entries(&self.requests())
    }

    /// Counts over the entries after `mark`.
    pub fn counts_since(&self, mark: LogMark) -> Counts {
        Counts::from_entries(&self.requests_since(mark))
    }

    /// Completed blob uploads so far.
    pub fn blob_uploads(&self) -> usize {
        self.counts().blob_uploads
    }

    /// Completed uploads of `digest` so far.
    pub fn blob_uploads_of(&self, digest: &str) -> usize {
        self.counts().uploads_of(digest)
    }

    /// Successful cross-repository mounts so far.
    pub fn mounts(&self) -> usize {
        self.counts().mounts
    }

    pub fn blob_heads(&self) -> usize {
        self.counts().blob_heads
    }

    pub fn patches(&self) -> usize {
        self.counts().patches
    }

    pub fn manifest_puts(&self) -> usize {
        self.counts().manifest_puts
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The token scope the harness needs for `path`.
fn path_scope(path: &str) -> Option<String> {
    let p = path.split('?').next().unwrap_or(path);
    if p.starts_with("/v2/_catalog") {
        return Some("registry:catalog:*".into());
    }
    let rest = p.strip_prefix("/v2/")?;
    let end = ["/blobs/", "/manifests/", "/tags/"]
        .iter()
        .filter_map(|m| rest.rfind(m))
        .max()?;
    Some(format!("repository:{}:pull,push,delete", &rest[..end]))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// A free TCP port on 127.0.0.1 (bound then released: another process
/// may take it before the registry binds it; [`Registry::start`] retries).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A manifest as served by the registry.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// `Content-Type` of the answer.
    pub media_type: String,
    /// `sha256:` of the body.
    pub digest: String,
    pub body: Vec<u8>,
}

impl Manifest {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// Digests of config and layers (image manifests) or of the
    /// manifests (indexes).
    pub fn referenced_digests(&self) -> Vec<String> {
        let j = self.json();
        let mut out: Vec<String> = Vec::new();
        if let Some(d) = j["config"]["digest"].as_str() {
            out.push(d.into());
        }
        for key in ["layers", "manifests"] {
            for item in j[key].as_array().into_iter().flatten() {
                if let Some(d) = item["digest"].as_str() {
                    out.push(d.into());
                }
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Fault-injecting proxy
// ---------------------------------------------------------------------------

/// What a [`Rule`] does to a matching request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Read the request (body included) and close the connection without
    /// an answer and without forwarding: the registry never sees it.
    Drop,
    /// Answer `code` (e.g. 503, 429, 408) with an OCI error body, and
    /// `Retry-After: N` when given; not forwarded. 408 closes the
    /// connection, others keep it alive.
    Status { code: u16, retry_after: Option<u64> },
    /// Forward the request and hold its response for this long: the
    /// registry completes it (e.g. a blob commit) while the client may
    /// time out.
    Delay(Duration),
}

impl Fault {
    pub fn status(code: u16) -> Fault {
        Fault::Status {
            code,
            retry_after: None,
        }
    }

    pub fn retry_after(code: u16, secs: u64) -> Fault {
        Fault::Status {
            code,
            retry_after: Some(secs),
        }
    }

    pub fn delay_ms(ms: u64) -> Fault {
        Fault::Delay(Duration::from_millis(ms))
    }
}

/// Which requests a fault hits: method (`None` = any), a substring of the
/// request target (path and query as sent), and which occurrences: the
/// rule counts every matching request and fires on the matches after the
/// first `skip`, at most `times` times.
#[derive(Clone, Debug)]
pub struct Rule {
    pub method: Option<String>,
    pub path_contains: String,
    pub skip: usize,
    pub times: usize,
    pub fault: Fault,
}

impl Rule {
    /// Fires on the first matching request only. `method` "" or "*" means
    /// any method.
    pub fn new(method: &str, path_contains: &str, fault: Fault) -> Rule {
        Rule {
            method: (!method.is_empty() && method != "*").then(|| method.to_ascii_uppercase()),
            path_contains: path_contains.to_string(),
            skip: 0,
            times: 1,
            fault,
        }
    }

    /// Lets the first `n` matches through.
    pub fn skip(mut self, n: usize) -> Rule {
        self.skip = n;
        self
    }

    /// Fires `n` times (`usize::MAX`: always).
    pub fn times(mut self, n: usize) -> Rule {
        self.times = n;
        self
    }

    fn matches(&self, method: &str, target: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m == method) && target.contains(&self.path_contains)
    }
}

/// What the proxy did with one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyAction {
    Forwarded,
    Delayed(Duration),
    Dropped,
    Injected(u16),
    /// Forwarding failed (upstream down, client gone mid-request).
    Failed(String),
}

/// One request seen by the proxy.
#[derive(Clone, Debug)]
pub struct ProxyRecord {
    pub method: String,
    pub target: String,
    pub action: ProxyAction,
    /// Index of the rule that fired.
    pub rule: Option<usize>,
    /// Status the client was sent (None if dropped or failed).
    pub status: Option<u16>,
    /// When the request head arrived (to check backoff and Retry-After).
    pub received: Instant,
}

struct RuleState {
    rule: Rule,
    seen: usize,
    fired: usize,
}

#[derive(Default)]
struct ProxyState {
    rules: Vec<RuleState>,
    records: Vec<ProxyRecord>,
}

impl ProxyState {
    /// Counts the request against every matching rule; returns the first
    /// that fires.
    fn decide(&mut self, method: &str, target: &str) -> Option<(usize, Fault)> {
        let mut chosen = None;
        for (i, r) in self.rules.iter_mut().enumerate() {
            if !r.rule.matches(method, target) {
                continue;
            }
            let nth = r.seen;
            r.seen += 1;
            if chosen.is_none() && nth >= r.rule.skip && r.fired < r.rule.times {
                r.fired += 1;
                chosen = Some((i, r.rule.fault.clone()));
            }
        }
        chosen
    }
}

/// An HTTP/1.1 proxy on 127.0.0.1:PORT in front of a plain-HTTP registry
/// (point the client at [`FaultProxy::host`] instead of the registry).
///
/// Each client connection gets a thread and its own keep-alive upstream
/// connection. Requests are parsed (request line and headers) and
/// forwarded unchanged, `Host` included, so the registry's absolute
/// `Location` URLs point back at the proxy; bodies are streamed by their
/// framing (`Content-Length` or chunked, relayed as is). Responses are
/// relayed by theirs (length, chunked, none for HEAD/204/304, or until
/// close, which then closes the client connection). `Expect:
/// 100-continue` is answered by the proxy itself (the header is not
/// forwarded). Faults come from [`Rule`]s, checked in order.
pub struct FaultProxy {
    state: Arc<Mutex<ProxyState>>,
    acceptor: Acceptor,
    upstream: String,
}

impl FaultProxy {
    /// A proxy forwarding to `upstream` ("127.0.0.1:PORT").
    pub fn start(upstream: &str) -> FaultProxy {
        assert!(
            upstream.starts_with("127.0.0.1:"),
            "proxy upstream must be on 127.0.0.1"
        );
        let state: Arc<Mutex<ProxyState>> = Arc::default();
        let (s, up) = (state.clone(), upstream.to_string());
        let acceptor = Acceptor::start("fault-proxy", Arc::new(move |c| proxy_conn(c, &up, &s)));
        FaultProxy {
            state,
            acceptor,
            upstream: upstream.to_string(),
        }
    }

    /// `127.0.0.1:PORT` of the proxy.
    pub fn host(&self) -> String {
        self.acceptor.addr.to_string()
    }

    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// Adds a rule; returns its index for [`FaultProxy::fired`].
    pub fn add(&self, rule: Rule) -> usize {
        let mut s = lock(&self.state);
        s.rules.push(RuleState {
            rule,
            seen: 0,
            fired: 0,
        });
        s.rules.len() - 1
    }

    /// Removes every rule (indexes restart at 0).
    pub fn clear_rules(&self) {
        lock(&self.state).rules.clear();
    }

    /// How many times rule `id` fired.
    pub fn fired(&self, id: usize) -> usize {
        lock(&self.state).rules[id].fired
    }

    /// How many requests matched rule `id` (fired or not).
    pub fn seen(&self, id: usize) -> usize {
        lock(&self.state).rules[id].seen
    }

    /// Every request handled so far (recorded when done).
    pub fn records(&self) -> Vec<ProxyRecord> {
        lock(&self.state).records.clone()
    }

    /// Requests seen with `method` ("" = any) whose target contains `part`.
    pub fn count(&self, method: &str, part: &str) -> usize {
        self.records()
            .iter()
            .filter(|r| (method.is_empty() || r.method == method) && r.target.contains(part))
            .count()
    }
}

fn fault_body(code: u16) -> Vec<u8> {
    let (c, msg) = match code {
        429 => (
            "TOOMANYREQUESTS",
            "too many requests (injected by the test proxy)",
        ),
        503 => (
            "UNAVAILABLE",
            "service unavailable (injected by the test proxy)",
        ),
        _ => ("UNKNOWN", "error injected by the test proxy"),
    };
    json!({"errors": [{"code": c, "message": msg}]})
        .to_string()
        .into_bytes()
}

type Upstream = (BufReader<TcpStream>, TcpStream);

fn connect_upstream(addr: &str) -> io::Result<Upstream> {
    let s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(300)))?;
    s.set_nodelay(true)?;
    Ok((BufReader::with_capacity(64 * 1024, s.try_clone()?), s))
}

fn proxy_conn(client: TcpStream, upstream_addr: &str, state: &Mutex<ProxyState>) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(300)));
    let _ = client.set_nodelay(true);
    let Ok(read_half) = client.try_clone() else {
        return;
    };
    let mut conn = ProxyConn {
        creader: BufReader::with_capacity(64 * 1024, read_half),
        cw: client,
        upstream: None,
        upstream_addr,
        state,
    };
    if !looks_like_http(&mut conn.creader, &mut conn.cw) {
        return;
    }
    while let Ok(Some(head)) = read_head(&mut conn.creader) {
        if !conn.handle(&head) {
            let _ = conn.cw.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// One client connection of the proxy and its upstream connection.
struct ProxyConn<'a> {
    creader: BufReader<TcpStream>,
    cw: TcpStream,
    upstream: Option<Upstream>,
    upstream_addr: &'a str,
    state: &'a Mutex<ProxyState>,
}

impl ProxyConn<'_> {
    /// Handles one request; false when the client connection must close.
    /// Each request is recorded before its answer is sent (so a client
    /// that has its answer finds it in [`FaultProxy::records`]).
    fn handle(&mut self, head: &HttpHead) -> bool {
        let mut parts = head.start.split(' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let http10 = head.start.ends_with("HTTP/1.0");
        let client_close = head.has_token("connection", "close")
            || (http10 && !head.has_token("connection", "keep-alive"));
        let expect = head.has_token("expect", "100-continue");
        let framing = request_framing(head);
        let received = Instant::now();
        let decision = lock(self.state).decide(&method, &target);
        let state = self.state;
        let record = |action: ProxyAction, status: Option<u16>| -> usize {
            let mut s = lock(state);
            s.records.push(ProxyRecord {
                method: method.clone(),
                target: target.clone(),
                action,
                rule: decision.as_ref().map(|d| d.0),
                status,
                received,
            });
            s.records.len() - 1
        };
        let fail = |idx: usize, why: String| {
            let mut s = lock(state);
            s.records[idx].action = ProxyAction::Failed(why);
            s.records[idx].status = None;
        };
        let delay = match decision.as_ref().map(|d| &d.1) {
            Some(Fault::Drop) => {
                if !expect {
                    let _ = relay_body(&mut self.creader, &mut io::sink(), framing);
                }
                record(ProxyAction::Dropped, None);
                return false;
            }
            Some(Fault::Status { code, retry_after }) => {
                // With Expect the body may or may not follow: close after.
                let close = expect || client_close || *code == 408;
                if !expect && relay_body(&mut self.creader, &mut io::sink(), framing).is_err() {
                    record(ProxyAction::Failed("reading the request body".into()), None);
                    return false;
                }
                let mut headers = vec![("Content-Type", "application/json".to_string())];
                if let Some(s) = retry_after {
                    headers.push(("Retry-After", s.to_string()));
                }
                let idx = record(ProxyAction::Injected(*code), Some(*code));
                let body = fault_body(*code);
                if let Err(e) = write_response(&mut self.cw, *code, &headers, &body, close) {
                    fail(idx, format!("answering the client: {e}"));
                    return false;
                }
                return !close;
            }
            Some(Fault::Delay(d)) => Some(*d),
            None => None,
        };
        let action = delay.map_or(ProxyAction::Forwarded, ProxyAction::Delayed);
        let resp = match self.send_upstream(head, framing, expect, delay) {
            Ok(resp) => resp,
            Err(e) => {
                self.upstream = None;
                record(ProxyAction::Failed(format!("upstream: {e}")), None);
                return false;
            }
        };
        let idx = record(action, Some(resp.status()));
        match self.relay_response(&method, &resp) {
            Ok(close) => !(close || client_close),
            Err(e) => {
                self.upstream = None;
                fail(idx, format!("relaying the response: {e}"));
                false
            }
        }
    }

    /// Forwards the request (head without `Expect`, body by its framing)
    /// and reads the response head, after waiting `delay`.
    fn send_upstream(
        &mut self,
        head: &HttpHead,
        framing: Framing,
        expect: bool,
        delay: Option<Duration>,
    ) -> io::Result<HttpHead> {
        if self.upstream.is_none() {
            match connect_upstream(self.upstream_addr) {
                Ok(u) => self.upstream = Some(u),
                Err(e) => {
                    if !expect {
                        let _ = relay_body(&mut self.creader, &mut io::sink(), framing);
                    }
                    let _ = write_response(&mut self.cw, 502, &[], b"upstream unreachable", true);
                    return Err(e);
                }
            }
        }
        let (ureader, uw) = self.upstream.as_mut().unwrap();
        if expect {
            self.cw.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        uw.write_all(&head.without("expect").to_bytes())?;
        relay_body(&mut self.creader, uw, framing)?;
        uw.flush()?;
        let resp = loop {
            let h = read_head(ureader)?
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "upstream closed"))?;
            if !(100..200).contains(&h.status()) {
                break h;
            }
        };
        if let Some(d) = delay {
            thread::sleep(d);
        }
        Ok(resp)
    }

    /// Relays the response head and body; Ok(true) when the client
    /// connection must close after it (body delimited by close).
    fn relay_response(&mut self, method: &str, resp: &HttpHead) -> io::Result<bool> {
        let (ureader, _) = self.upstream.as_mut().unwrap();
        let rframing = response_framing(method, resp);
        self.cw.write_all(&resp.to_bytes())?;
        relay_body(ureader, &mut self.cw, rframing)?;
        self.cw.flush()?;
        let until_eof = rframing == Framing::UntilEof;
        if until_eof || resp.has_token("connection", "close") {
            self.upstream = None;
        }
        Ok(until_eof)
    }
}

// ---------------------------------------------------------------------------
// A tiny OCI image made by hand
// ---------------------------------------------------------------------------

/// Digests of an image written by [`write_oci_layout`].
#[derive(Clone, Debug)]
pub struct OciImage {
    pub manifest_digest: String,
    pub manifest_size: u64,
    pub config_digest: String,
    /// Compressed layer digests (blobs), bottom first.
    pub layer_digests: Vec<String>,
    /// Uncompressed layer digests (`rootfs.diff_ids`).
    pub diff_ids: Vec<String>,
}

impl OciImage {
    /// Config and layer digests: every blob a push of the image uploads.
    pub fn blobs(&self) -> Vec<String> {
        let mut v = self.layer_digests.clone();
        v.push(self.config_digest.clone());
        v
    }
}

/// Adds an image tagged `tag` to the OCI image layout `dir` (created if
/// needed; an existing image with that tag is replaced in index.json).
/// Each layer is a gzip-compressed tar of regular files `(path, content)`
/// (mode 0644, root-owned, mtime 1700000000, parent directories 0755):
/// the same input gives the same digests. Config: linux/amd64, `Cmd
/// ["/bin/sh"]`. Layers are `application/vnd.oci.image.layer.v1.tar+gzip`.
pub fn write_oci_layout(dir: &Path, tag: &str, layers: &[&[(&str, &[u8])]]) -> OciImage {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| -> String {
        let hex = sha256_hex(data);
        fs::write(blobs.join(&hex), data).unwrap();
        format!("sha256:{hex}")
    };
    let mut layer_digests = Vec::new();
    let mut diff_ids = Vec::new();
    let mut layer_descs = Vec::new();
    for files in layers {
        let tar = layer_tar(files);
        diff_ids.push(format!("sha256:{}", sha256_hex(&tar)));
        let mut gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let d = put(&gz);
        layer_descs.push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": d,
            "size": gz.len(),
        }));
        layer_digests.push(d);
    }
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": layers.iter().map(|_| json!({"created_by": "rustimage test harness"})).collect::<Vec<_>>(),
    });
    let config = serde_json::to_vec(&config).unwrap();
    let config_digest = put(&config);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": layer_descs,
    });
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let manifest_digest = put(&manifest);
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index_path = dir.join("index.json");
    let mut index: Value = fs::read(&index_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| json!({"schemaVersion": 2, "manifests": []}));
    let list = index["manifests"].as_array_mut().unwrap();
    list.retain(|m| m["annotations"]["org.opencontainers.image.ref.name"] != tag);
    list.push(json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest_digest,
        "size": manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }));
    fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    OciImage {
        manifest_digest,
        manifest_size: manifest.len() as u64,
        config_digest,
        layer_digests,
        diff_ids,
    }
}

fn layer_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dirs = BTreeSet::new();
    let mut entry = |path: &str, data: &[u8], dir: bool| {
        let mut h = tar::Header::new_ustar();
        h.set_path(path).unwrap();
        h.set_mode(if dir { 0o755 } else { 0o644 });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        h.set_entry_type(if dir {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    for (path, data) in files {
        let parts: Vec<&str> = path.split('/').collect();
        for i in 1..parts.len() {
            let d = format!("{}/", parts[..i].join("/"));
            if dirs.insert(d.clone()) {
                entry(&d, b"", true);
            }
        }
        entry(path, data, false);
    }
    b.into_inner().unwrap()
}

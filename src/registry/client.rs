//! HTTP to one registry: TLS settings, authentication (Basic, and the
//! Bearer token flow with tokens reused per scope and refreshed on 401),
//! and retries with backoff for what is worth retrying.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use ureq::http;
use ureq::tls::{Certificate, RootCerts, TlsConfig};

use super::Error;
use super::auth::{self, Challenge, Credential, Source};
use super::reference::Target;

/// How many times a request is retried after a transient failure.
pub const RETRIES: u32 = 5;

#[derive(Debug, Clone)]
pub struct Options {
    /// Allow plain HTTP and unverified TLS.
    pub insecure: bool,
    pub ca_cert: Option<std::path::PathBuf>,
    /// `USER:PASSWORD` from the command line.
    pub creds: Option<String>,
    /// Longest wait for a response once a request is sent.
    pub timeout: Duration,
    /// First backoff delay; doubled on each retry.
    pub backoff: Duration,
}

/// A body that can be sent again on a retry.
pub enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// Opens the data afresh for each attempt; `len` bytes.
    Stream {
        open: &'a (dyn Fn() -> io::Result<Box<dyn Read + Send + 'a>> + Sync),
        len: u64,
    },
}

/// What a response carries that the protocol needs.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The registry's error codes (`NAME_UNKNOWN`, ...), if the body has them.
    pub fn error_codes(&self) -> Vec<String> {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| {
                v["errors"].as_array().map(|errs| {
                    errs.iter()
                        .filter_map(|e| e["code"].as_str().map(str::to_string))
                        .collect()
                })
            })
            .unwrap_or_default()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Retry connection errors, 408, 429 and 5xx.
    Transient,
    /// One attempt: the caller knows better (a blob commit is checked with
    /// HEAD before it is tried again).
    Never,
}

enum Scheme {
    Anonymous,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

pub struct Client {
    agent: ureq::Agent,
    pub base: String,
    pub target: Target,
    credential: Option<Credential>,
    source: Source,
    scheme: Mutex<Scheme>,
    /// Bearer tokens by scope string.
    tokens: Mutex<HashMap<String, Arc<String>>>,
    backoff: Duration,
}

fn agent(opts: &Options) -> Result<ureq::Agent, Error> {
    let mut roots: Vec<Certificate<'static>> = Vec::new();
    let native = rustls_native_certs::load_native_certs();
    roots.extend(
        native
            .certs
            .into_iter()
            .map(|c| Certificate::from_der(c.as_ref()).to_owned()),
    );
    if let Some(path) = &opts.ca_cert {
        let pem =
            std::fs::read(path).map_err(|e| Error(format!("--ca-cert {}: {e}", path.display())))?;
        let mut found = 0;
        for item in ureq::tls::parse_pem(&pem) {
            if let Ok(ureq::tls::PemItem::Certificate(c)) = item {
                roots.push(c);
                found += 1;
            }
        }
        if found == 0 {
            return Err(Error(format!(
                "--ca-cert {}: no PEM certificate in it",
                path.display()
            )));
        }
    }
    let tls = TlsConfig::builder()
        .root_certs(RootCerts::Specific(Arc::new(roots)))
        .disable_verification(opts.insecure)
        .build();
    Ok(ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(opts.timeout))
        .timeout_recv_body(Some(opts.timeout))
        .user_agent(concat!("rustimage/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent())
}

impl Client {
    /// Finds how to talk to the registry (HTTPS, or HTTP when allowed) and
    /// how it wants us to authenticate, from `GET /v2/`.
    pub fn connect(target: &Target, opts: &Options) -> Result<Client, Error> {
        let (credential, source) = auth::lookup(target, opts.creds.as_deref()).map_err(Error)?;
        let agent = agent(opts)?;
        let mut client = Client {
            agent,
            base: format!("https://{}", target.endpoint),
            target: target.clone(),
            credential,
            source,
            scheme: Mutex::new(Scheme::Anonymous),
            tokens: Mutex::new(HashMap::new()),
            backoff: opts.backoff,
        };
        let ping = match client.ping() {
            Ok(r) => r,
            Err(e) if opts.insecure => {
                // An insecure registry may speak plain HTTP only.
                client.base = format!("http://{}", target.endpoint);
                client.ping().map_err(|_| e)?
            }
            Err(e) => return Err(e),
        };
        match ping.status {
            200..=299 => {}
            401 => client.learn(&ping)?,
            404 => {
                return Err(Error(format!(
                    "{} does not serve the registry API (GET /v2/ gave 404)",
                    client.base
                )));
            }
            s => {
                return Err(Error(format!(
                    "{}: GET /v2/ answered {s}; is this an OCI registry?",
                    client.base
                )));
            }
        }
        Ok(client)
    }

    fn ping(&self) -> Result<Response, Error> {
        let url = format!("{}/v2/", self.base);
        self.send_once("GET", &url, &[], &Body::Empty, None)
            .map_err(|e| self.transport_error(&e))
    }

    /// Takes the scheme from a 401's `WWW-Authenticate`.
    fn learn(&self, r: &Response) -> Result<(), Error> {
        let challenges = r
            .header("www-authenticate")
            .map(auth::parse_challenges)
            .unwrap_or_default();
        let scheme = pick(&challenges).ok_or_else(|| {
            Error(format!(
                "{} asks for authentication without a usable WWW-Authenticate challenge",
                self.target.registry
            ))
        })?;
        if let Ok(mut s) = self.scheme.lock() {
            *s = scheme;
        }
        Ok(())
    }

    /// Sends a request, authenticating and retrying as needed. `scope` is
    /// the Bearer scope the request needs (`repository:x:pull,push`).
    pub fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &Body<'_>,
        scope: &str,
        retry: Retry,
    ) -> Result<Response, Error> {
        let url = self.absolute(url);
        // Credentials go to the registry itself only, never to another host
        // a Location header may name.
        let ours = host_of(&url) == host_of(&self.base);
        let mut refreshed = false;
        let mut attempt = 0u32;
        loop {
            let authz = if ours {
                self.authorization(scope, false)?
            } else {
                None
            };
            let result = self.send_once(method, &url, headers, body, authz.as_deref());
            let wait = match &result {
                Ok(r) if r.status == 401 && !refreshed && ours => {
                    // Expired or too narrow a token, or a scheme we haven't
                    // seen yet: learn, fetch a fresh token, try once more.
                    refreshed = true;
                    self.learn(r)?;
                    self.authorization(scope, true)?;
                    continue;
                }
                Ok(r) if matches!(r.status, 408 | 429 | 500..=599) => retry_after(r),
                Ok(_) => None,
                Err(e) if transient(e) => Some(None),
                Err(_) => None,
            };
            match wait {
                Some(after) if retry == Retry::Transient && attempt < RETRIES => {
                    let delay = after.unwrap_or(self.backoff * 2u32.pow(attempt));
                    std::thread::sleep(delay.min(Duration::from_secs(60)));
                    attempt += 1;
                }
                _ => return result.map_err(|e| self.transport_error(&e)),
            }
        }
    }

    /// One attempt, no auth handling.
    fn send_once(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &Body<'_>,
        authz: Option<&str>,
    ) -> Result<Response, ureq::Error> {
        let mut req = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(a) = authz {
            req = req.header("Authorization", a);
        }
        let resp = match body {
            Body::Empty => {
                let req = req.header("Content-Length", "0");
                self.agent.run(req.body(())?)?
            }
            Body::Bytes(b) => {
                let req = req.header("Content-Length", b.len().to_string());
                self.agent.run(req.body(*b)?)?
            }
            Body::Stream { open, len } => {
                let mut reader = open().map_err(ureq::Error::Io)?;
                let req = req.header("Content-Length", len.to_string());
                let body = ureq::SendBody::from_reader(&mut reader);
                self.agent.run(req.body(body)?)?
            }
        };
        let status = resp.status().as_u16();
        let (parts, mut body) = resp.into_parts();
        let mut buf = Vec::new();
        if method != "HEAD" {
            // Protocol responses are small; cap what an odd server sends.
            body.as_reader()
                .take(4 << 20)
                .read_to_end(&mut buf)
                .map_err(ureq::Error::Io)?;
        }
        Ok(Response {
            status,
            headers: parts.headers,
            body: buf,
        })
    }

    /// The Authorization header for `scope`, fetching a token if needed
    /// (or if `fresh`).
    fn authorization(&self, scope: &str, fresh: bool) -> Result<Option<String>, Error> {
        let (realm, service) = {
            let s = self
                .scheme
                .lock()
                .map_err(|_| Error("internal error: auth state poisoned".into()))?;
            match &*s {
                Scheme::Anonymous => return Ok(None),
                Scheme::Basic => {
                    return Ok(match &self.credential {
                        Some(Credential::Basic { user, password }) => Some(format!(
                            "Basic {}",
                            base64::engine::general_purpose::STANDARD
                                .encode(format!("{user}:{password}"))
                        )),
                        _ => None,
                    });
                }
                Scheme::Bearer { realm, service } => (realm.clone(), service.clone()),
            }
        };
        if !fresh && let Some(t) = self.tokens.lock().ok().and_then(|t| t.get(scope).cloned()) {
            return Ok(Some(format!("Bearer {t}")));
        }
        let token = Arc::new(self.fetch_token(&realm, service.as_deref(), scope)?);
        if let Ok(mut t) = self.tokens.lock() {
            t.insert(scope.to_string(), Arc::clone(&token));
        }
        Ok(Some(format!("Bearer {token}")))
    }

    /// Docker's token flow: GET the realm with Basic credentials (or
    /// anonymously), or POST an OAuth2 refresh token.
    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String, Error> {
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = service {
            query.push(("service", s));
        }
        for s in scope.split(' ').filter(|s| !s.is_empty()) {
            query.push(("scope", s));
        }
        let r = match &self.credential {
            Some(Credential::IdentityToken(refresh)) => {
                let mut form: Vec<(&str, &str)> = query.clone();
                form.extend([
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh.as_str()),
                    ("client_id", "rustimage"),
                ]);
                let body = encode_query(&form);
                self.send_once(
                    "POST",
                    realm,
                    &[("Content-Type", "application/x-www-form-urlencoded")],
                    &Body::Bytes(body.as_bytes()),
                    None,
                )
            }
            other => {
                let url = join_query(realm, &encode_query(&query));
                let basic = match other {
                    Some(Credential::Basic { user, password }) => Some(format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD
                            .encode(format!("{user}:{password}"))
                    )),
                    _ => None,
                };
                self.send_once("GET", &url, &[], &Body::Empty, basic.as_deref())
            }
        }
        .map_err(|e| self.transport_error(&e))?;
        match r.status {
            200 => {}
            401 | 403 => return Err(self.denied(r.status)),
            s => {
                return Err(Error(format!(
                    "token server {} answered {s} for {}",
                    host_of(realm),
                    self.target.registry
                )));
            }
        }
        let v: serde_json::Value = serde_json::from_slice(&r.body)
            .map_err(|_| Error(format!("token server {} sent no JSON", host_of(realm))))?;
        v["token"]
            .as_str()
            .or_else(|| v["access_token"].as_str())
            .map(str::to_string)
            .ok_or_else(|| Error(format!("token server {} sent no token", host_of(realm))))
    }

    /// The message for a refused login.
    pub fn denied(&self, status: u16) -> Error {
        let what = match (self.credential.is_some(), status) {
            (false, _) => format!(
                "{} requires authentication: give --creds USER:PASSWORD or log in with \
                 `docker login` / `podman login`",
                self.target.registry
            ),
            (true, 403) => format!(
                "{} refused access to {} with the credentials from {}: they lack push permission",
                self.target.registry,
                self.target.repository,
                auth::describe(&self.source)
            ),
            (true, _) => format!(
                "{} rejected the credentials from {}: check the user name and password",
                self.target.registry,
                auth::describe(&self.source)
            ),
        };
        Error(what)
    }

    /// A transport failure, explained.
    pub fn transport_error(&self, e: &ureq::Error) -> Error {
        let host = &self.target.endpoint;
        let text = e.to_string();
        let msg = match e {
            ureq::Error::Timeout(_) => format!("{host}: timed out waiting for the registry"),
            ureq::Error::HostNotFound => format!("{host}: host not found"),
            ureq::Error::ConnectionFailed => format!("{host}: connection failed"),
            ureq::Error::Io(io) if io.kind() == io::ErrorKind::ConnectionRefused => {
                format!("{host}: connection refused (is the registry running on that port?)")
            }
            _ if text.contains("InvalidContentType") || text.contains("corrupt message") => {
                format!(
                    "{host}: answers plain HTTP, not HTTPS; give --insecure to push to a plain-HTTP \
                 registry"
                )
            }
            _ if text.contains("certificate") || text.to_ascii_lowercase().contains("tls") => {
                format!(
                    "{host}: TLS failed ({text}); for a private CA give --ca-cert FILE, \
                 or --insecure to skip verification"
                )
            }
            _ => format!("{host}: {text}"),
        };
        Error(msg)
    }

    /// Makes a Location header (relative or absolute) a full URL.
    pub fn absolute(&self, url: &str) -> String {
        if url.starts_with("http://") || url.starts_with("https://") {
            url.to_string()
        } else {
            format!("{}{}", self.base, url)
        }
    }
}

/// The challenge we can answer: Bearer, else Basic.
fn pick(challenges: &[Challenge]) -> Option<Scheme> {
    if let Some(b) = challenges.iter().find(|c| c.scheme == "bearer") {
        let realm = b.params.get("realm")?.clone();
        return Some(Scheme::Bearer {
            realm,
            service: b.params.get("service").cloned(),
        });
    }
    challenges
        .iter()
        .any(|c| c.scheme == "basic")
        .then_some(Scheme::Basic)
}

fn transient(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Io(_) | ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed
    ) || matches!(e, ureq::Error::Protocol(_))
}

/// `Some(delay)` to retry; the delay from Retry-After (seconds) if given.
fn retry_after(r: &Response) -> Option<Option<Duration>> {
    Some(
        r.header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs),
    )
}

fn encode_query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes all but unreserved characters (RFC 3986).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Appends a query to a URL that may already have one.
pub fn join_query(url: &str, query: &str) -> String {
    if query.is_empty() {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&{query}")
    } else {
        format!("{url}?{query}")
    }
}

fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.split('/').next().unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_encoded_and_joined() {
        assert_eq!(
            encode_query(&[("scope", "repository:a/b:pull,push"), ("service", "x y")]),
            "scope=repository%3Aa%2Fb%3Apull%2Cpush&service=x%20y"
        );
        assert_eq!(join_query("http://h/t?a=1", "b=2"), "http://h/t?a=1&b=2");
        assert_eq!(join_query("http://h/t", "b=2"), "http://h/t?b=2");
        assert_eq!(
            host_of("https://auth.example:5001/token"),
            "auth.example:5001"
        );
    }
}

//! HTTP to one registry: where its settings come from (flags,
//! registries.conf, certs.d, proxy variables), authentication (Basic, and
//! the Bearer token flow with tokens reused per scope and refreshed on
//! 401), redirects followed one checked hop at a time, and retries with
//! backoff for what is worth retrying.
//!
//! Plain HTTP is used only when the user allowed it for this registry
//! (`--insecure`, or `insecure = true` in registries.conf): no Location,
//! redirect or token realm leads from HTTPS to HTTP otherwise. Credentials
//! go only to the registry's own origin (scheme, host and port) and to its
//! token realm.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use ureq::http;

use super::RegistryError;
use super::auth::{self, Challenge, CredSource, Credential};
use super::origin::{self, Origin};
use super::proxy::Proxies;
use super::reference::Target;
use super::registries_conf;
use super::tls::Trust;
use super::transport::{self, Transport};
use crate::oci::reference::percent_encode;

/// How many times a request is retried after a transient failure.
pub const RETRIES: u32 = 5;

/// How many times a request that hit `--timeout` is tried again: a peer
/// that stalled twice is taken as dead, so a push ends in a small multiple
/// of the timeout.
pub const TIMEOUT_RETRIES: u32 = 1;

/// Redirect hops followed for one request.
const MAX_REDIRECTS: usize = 5;

#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Allow plain HTTP and unverified TLS.
    pub insecure: bool,
    pub ca_cert: Option<PathBuf>,
    /// A certs.d-style directory to use instead of the certs.d search.
    pub cert_dir: Option<PathBuf>,
    /// `USER:PASSWORD` from the command line.
    pub creds: Option<String>,
    /// Longest wait for any step: connecting, each write or read, an answer.
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
    transport: Transport,
    trust: Trust,
    pub base: String,
    pub target: Target,
    credential: Option<Credential>,
    source: CredSource,
    scheme: Mutex<Scheme>,
    /// Bearer tokens by scope string.
    tokens: Mutex<HashMap<String, Arc<String>>>,
    backoff: Duration,
    /// Plain HTTP and unverified TLS allowed for this registry.
    insecure: bool,
    /// Set by [`Client::abort`]: no more attempts.
    aborted: AtomicBool,
}

impl Client {
    /// Reads the registry's settings, then finds how to talk to it (HTTPS,
    /// or HTTP when allowed) and how it wants us to authenticate, from
    /// `GET /v2/`.
    pub fn connect(target: &Target, opts: &ClientOptions) -> Result<Client, RegistryError> {
        let name = format!("{}/{}", target.registry, target.repository);
        let policy = registries_conf::lookup(&name)?;
        if let Some(p) = policy.as_ref().filter(|p| p.blocked) {
            return Err(RegistryError::new(format!(
                "{} is blocked in {} ([[registry]] prefix \"{}\"): not pushing there",
                target.registry,
                p.file.display(),
                p.prefix
            )));
        }
        let insecure = opts.insecure || policy.as_ref().is_some_and(|p| p.insecure);
        let trust = Trust::load(
            &target.registry,
            opts.ca_cert.as_deref(),
            opts.cert_dir.as_deref(),
        )?;
        let transport =
            Transport::new(trust.config(insecure)?, Proxies::from_env()?, opts.timeout)?;
        let (credential, source) =
            auth::lookup(target, opts.creds.as_deref()).map_err(RegistryError::new)?;
        let mut client = Client {
            transport,
            trust,
            base: format!("https://{}", target.endpoint),
            target: target.clone(),
            credential,
            source,
            scheme: Mutex::new(Scheme::Anonymous),
            tokens: Mutex::new(HashMap::new()),
            backoff: opts.backoff,
            insecure,
            aborted: AtomicBool::new(false),
        };
        let ping = match client.ping() {
            Ok(r) => r,
            Err((https, failure)) if insecure => {
                // An insecure registry may speak plain HTTP only.
                client.base = format!("http://{}", target.endpoint);
                match client.ping() {
                    Ok(r) => r,
                    // HTTPS told nothing if the server does not speak it,
                    // nor anything new if it failed the same way.
                    Err((plain, _)) if failure.not_tls || plain.message() == https.message() => {
                        return Err(plain);
                    }
                    Err((plain, _)) => {
                        let host = &target.endpoint;
                        return Err(RegistryError::new(format!(
                            "{host}: over HTTPS: {}; over plain HTTP: {}",
                            strip_host(https.message(), host),
                            strip_host(plain.message(), host)
                        )));
                    }
                }
            }
            Err((e, _)) => return Err(e),
        };
        match ping.status {
            200..=299 => {}
            401 => client.learn(&ping)?,
            404 => {
                return Err(RegistryError::new(format!(
                    "{} does not serve the registry API (GET /v2/ gave 404)",
                    client.base
                )));
            }
            s => {
                return Err(RegistryError::new(format!(
                    "{}: GET /v2/ answered {s}; is this an OCI registry?",
                    client.base
                )));
            }
        }
        Ok(client)
    }

    fn ping(&self) -> Result<Response, (RegistryError, transport::Failure)> {
        let url = format!("{}/v2/", self.base);
        self.send_once("GET", &url, &[], &Body::Empty, None)
            .map_err(|e| {
                let failure = transport::describe(&e, &self.trust, self.transport.timeout);
                (self.transport_error(&e, &url), failure)
            })
    }

    /// Ends the requests in flight (they fail at once) and any retries:
    /// another part of the push has failed.
    pub fn abort(&self) {
        self.aborted.store(true, Ordering::SeqCst);
        self.transport.shutdown();
    }

    pub fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::SeqCst)
    }

    /// Takes the scheme from a 401's `WWW-Authenticate`.
    fn learn(&self, r: &Response) -> Result<(), RegistryError> {
        let challenges = r
            .header("www-authenticate")
            .map(auth::parse_challenges)
            .unwrap_or_default();
        let scheme = pick(&challenges).ok_or_else(|| {
            RegistryError::new(format!(
                "{} asks for authentication without a usable WWW-Authenticate challenge",
                self.target.registry
            ))
        })?;
        if let Ok(mut s) = self.scheme.lock() {
            *s = scheme;
        }
        Ok(())
    }

    /// The registry's own origin: the only one credentials go to.
    fn origin(&self) -> Option<Origin> {
        Origin::of(&self.base)
    }

    /// Refuses a URL the registry sent us to that leaves HTTPS, unless
    /// plain HTTP is allowed for this registry.
    fn check_url(&self, url: &str, what: &str) -> Result<(), RegistryError> {
        let registry = &self.target.registry;
        let origin = Origin::of(url)
            .ok_or_else(|| RegistryError::new(format!("{registry} sent an unusable URL: {url}")))?;
        if origin.is_plain() && !self.insecure {
            return Err(RegistryError::new(format!(
                "{registry}: refused to {what} {url}: plain HTTP from an HTTPS registry would \
                 carry the upload and credentials in clear; give --insecure to allow plain \
                 HTTP for {registry}"
            )));
        }
        Ok(())
    }

    /// Sends a request, following redirects, authenticating and retrying
    /// as needed. `scope` is the Bearer scope the request needs
    /// (`repository:x:pull,push`).
    pub fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &Body<'_>,
        scope: &str,
        retry: Retry,
    ) -> Result<Response, RegistryError> {
        let mut url = self.absolute(url);
        self.check_url(&url, "send to")?;
        for _ in 0..MAX_REDIRECTS {
            let r = self.request_at(method, &url, headers, body, scope, retry)?;
            let follow = matches!(r.status, 307 | 308)
                || (matches!(r.status, 301..=303) && matches!(method, "GET" | "HEAD"));
            match r.header("location") {
                Some(loc) if follow => {
                    url = origin::resolve(&url, loc);
                    self.check_url(&url, "follow a redirect to")?;
                }
                _ => return Ok(r),
            }
        }
        Err(RegistryError::new(format!(
            "{}: more than {MAX_REDIRECTS} redirects for {method} {url}",
            self.target.registry
        )))
    }

    /// One URL: auth and retries, no redirects.
    fn request_at(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &Body<'_>,
        scope: &str,
        retry: Retry,
    ) -> Result<Response, RegistryError> {
        // Credentials go to the registry's own origin only, never to
        // another host, port or scheme a Location names.
        let ours = Origin::of(url).is_some() && Origin::of(url) == self.origin();
        let mut refreshed = false;
        let mut attempt = 0u32;
        let mut timeouts = 0u32;
        loop {
            let authz = if ours {
                self.authorization(scope, false)?
            } else {
                None
            };
            let result = self.send_once(method, url, headers, body, authz.as_deref());
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
                Err(ureq::Error::Timeout(_)) => {
                    timeouts += 1;
                    (timeouts <= TIMEOUT_RETRIES).then_some(None)
                }
                Err(e) if transient(e) => Some(None),
                Err(_) => None,
            };
            match wait {
                Some(after)
                    if retry == Retry::Transient && attempt < RETRIES && !self.is_aborted() =>
                {
                    let delay = after.unwrap_or(self.backoff * 2u32.pow(attempt));
                    // A server's Retry-After is bounded by --timeout too.
                    let limit = self.transport.timeout.min(Duration::from_secs(60));
                    std::thread::sleep(delay.min(limit));
                    attempt += 1;
                }
                _ => return result.map_err(|e| self.transport_error(&e, url)),
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
        let agent = self.transport.agent_for(url);
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
                agent.run(req.body(())?)?
            }
            Body::Bytes(b) => {
                let req = req.header("Content-Length", b.len().to_string());
                agent.run(req.body(*b)?)?
            }
            Body::Stream { open, len } => {
                let mut reader = open().map_err(ureq::Error::Io)?;
                let req = req.header("Content-Length", len.to_string());
                let body = ureq::SendBody::from_reader(&mut reader);
                agent.run(req.body(body)?)?
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
    fn authorization(&self, scope: &str, fresh: bool) -> Result<Option<String>, RegistryError> {
        let (realm, service) = {
            let s = self
                .scheme
                .lock()
                .map_err(|_| RegistryError::new("internal error: auth state poisoned"))?;
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
    ) -> Result<String, RegistryError> {
        let registry = &self.target.registry;
        let origin = Origin::of(realm).ok_or_else(|| {
            RegistryError::new(format!(
                "{registry} names an unusable token service: {realm}"
            ))
        })?;
        if origin.is_plain() && !self.insecure {
            return Err(RegistryError::new(format!(
                "{registry}: refused its token service {realm}: plain HTTP from an HTTPS \
                 registry would carry the credentials in clear; give --insecure to allow \
                 plain HTTP for {registry}"
            )));
        }
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
        .map_err(|e| self.transport_error(&e, realm))?;
        let host = origin.to_string();
        match r.status {
            200 => {}
            401 | 403 => return Err(self.denied(r.status)),
            s => {
                return Err(RegistryError::new(format!(
                    "token server {host} answered {s} for {registry}"
                )));
            }
        }
        let v: serde_json::Value = serde_json::from_slice(&r.body)
            .map_err(|_| RegistryError::new(format!("token server {host} sent no JSON")))?;
        v["token"]
            .as_str()
            .or_else(|| v["access_token"].as_str())
            .map(str::to_string)
            .ok_or_else(|| RegistryError::new(format!("token server {host} sent no token")))
    }

    /// The message for a refused login.
    pub fn denied(&self, status: u16) -> RegistryError {
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
        RegistryError::new(what)
    }

    /// A transport failure on a request to `url`, explained in one line.
    pub fn transport_error(&self, e: &ureq::Error, url: &str) -> RegistryError {
        let f = transport::describe(e, &self.trust, self.transport.timeout);
        let host = Origin::of(url)
            .filter(|o| Some(o) != self.origin().as_ref())
            .map(|o| o.to_string())
            .unwrap_or_else(|| self.target.endpoint.clone());
        let via = self
            .transport
            .proxy_for(url)
            .map(|p| format!(" (through proxy {p})"))
            .unwrap_or_default();
        let advice = if f.not_tls && !self.insecure {
            "; give --insecure to push to a plain-HTTP registry (or set insecure = true for it \
             in registries.conf)"
        } else {
            ""
        };
        let msg = format!("{host}{via}: {}{advice}", f.text);
        if f.timeout {
            RegistryError::timeout(msg)
        } else {
            RegistryError::new(msg)
        }
    }

    /// Makes a Location header (relative or absolute) a full URL.
    pub fn absolute(&self, url: &str) -> String {
        origin::resolve(&self.base, url)
    }
}

/// `msg` without a leading `host: ` (to join two messages about one host).
fn strip_host<'m>(msg: &'m str, host: &str) -> &'m str {
    msg.strip_prefix(host)
        .and_then(|m| m.strip_prefix(": "))
        .unwrap_or(msg)
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

/// Worth another try: lost connections, not TLS refusals.
fn transient(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Io(_) | ureq::Error::ConnectionFailed | ureq::Error::Protocol(_)
    ) && transport::rustls_error(e).is_none()
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
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
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
    }
}

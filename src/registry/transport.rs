//! The HTTP agents of one push: our TLS (see `tls`), a forward proxy per
//! URL scheme when the environment names one (see `proxy`), no redirects
//! followed behind our back (the client checks each hop), and `--timeout`
//! on every step: connecting (TCP, proxy CONNECT, TLS), each write and each
//! read, and the wait for an answer. A write that makes no progress for
//! that long ends the request, however large the body.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use ureq::Agent;
use ureq::unversioned::resolver::DefaultResolver;
use ureq::unversioned::transport::{ConnectProxyConnector, Connector};

use super::RegistryError;
use super::origin::Origin;
use super::proxy::Proxies;
use super::tcp::TcpConnector;
use super::tls::{self, Trust};

/// Longest wait for a TCP connection and TLS handshake, even with a longer
/// `--timeout`: a host that does not accept in that time will not.
const CONNECT_MAX: Duration = Duration::from_secs(30);

pub struct Transport {
    direct: Agent,
    /// One agent per proxy URL.
    proxied: Vec<(String, Agent)>,
    proxies: Proxies,
    pub timeout: Duration,
}

impl Transport {
    pub fn new(
        tls: Arc<ClientConfig>,
        proxies: Proxies,
        timeout: Duration,
    ) -> Result<Transport, RegistryError> {
        let direct = agent(&tls, None, timeout)?;
        let mut proxied = Vec::new();
        for url in proxies.urls() {
            proxied.push((url.to_string(), agent(&tls, Some(url), timeout)?));
        }
        Ok(Transport {
            direct,
            proxied,
            proxies,
            timeout,
        })
    }

    /// The agent for `url`: through its scheme's proxy unless exempt.
    pub fn agent_for(&self, url: &str) -> &Agent {
        let proxy =
            Origin::of(url).and_then(|o| self.proxies.for_target(&o.scheme, &o.host, o.port));
        proxy
            .and_then(|p| self.proxied.iter().find(|(u, _)| u == p))
            .map(|(_, a)| a)
            .unwrap_or(&self.direct)
    }

    /// Ends every connection, now and later: the push has failed and
    /// requests still in flight should not wait for their timeouts.
    pub fn shutdown(&self) {
        self.direct.clone().shutdown();
        for (_, a) in &self.proxied {
            a.clone().shutdown();
        }
    }

    /// The proxy a request to `url` goes through, for messages.
    pub fn proxy_for(&self, url: &str) -> Option<String> {
        let o = Origin::of(url)?;
        self.proxies
            .for_target(&o.scheme, &o.host, o.port)
            .map(redact)
    }
}

fn agent(
    tls: &Arc<ClientConfig>,
    proxy: Option<&str>,
    timeout: Duration,
) -> Result<Agent, RegistryError> {
    let proxy = proxy
        .map(|p| {
            ureq::Proxy::new(p).map_err(|e| RegistryError::new(format!("proxy {}: {e}", redact(p))))
        })
        .transpose()?;
    let config = Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(proxy)
        .timeout_connect(Some(timeout.min(CONNECT_MAX)))
        .timeout_send_request(Some(timeout))
        .timeout_per_write(Some(timeout))
        .timeout_per_read(Some(timeout))
        .timeout_recv_response(Some(timeout))
        .timeout_recv_body(Some(timeout))
        .user_agent(concat!("rustimage/", env!("CARGO_PKG_VERSION")))
        .build();
    let connector =
        ().chain(ConnectProxyConnector::default())
            .chain(TcpConnector)
            .chain(tls::Connector {
                config: tls.clone(),
            });
    Ok(Agent::with_parts(
        config,
        connector,
        DefaultResolver::default(),
    ))
}

/// A proxy URL without its password.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// What went wrong in a transport error, worded for the user.
pub struct Failure {
    pub text: String,
    pub timeout: bool,
    /// The server answered TLS with something that is not TLS.
    pub not_tls: bool,
}

/// Describes `e` for a request to the registry: timeouts with the limit,
/// TLS failures with what to do (`trust`), the rest as they are.
pub fn describe(e: &ureq::Error, trust: &Trust, timeout: Duration) -> Failure {
    let secs = timeout.as_secs();
    let plain = |text: String| Failure {
        text,
        timeout: false,
        not_tls: false,
    };
    if let ureq::Error::Timeout(t) = e {
        use ureq::Timeout as T;
        let text = match t {
            T::Connect | T::Resolve => format!(
                "could not connect within {} s (--timeout)",
                timeout.min(CONNECT_MAX).as_secs()
            ),
            T::SendRequest | T::SendBody | T::PerWrite => format!(
                "the registry stopped taking data: nothing could be sent for {secs} s (--timeout)"
            ),
            _ => format!("no answer within {secs} s (--timeout)"),
        };
        return Failure {
            text,
            timeout: true,
            not_tls: false,
        };
    }
    if let Some(tls) = rustls_error(e) {
        if matches!(tls, rustls::Error::InvalidMessage(_)) {
            return Failure {
                text: "answers plain HTTP, not HTTPS".into(),
                timeout: false,
                not_tls: true,
            };
        }
        return plain(match trust.explain(tls) {
            Some(msg) => msg,
            None => format!("TLS failed: {tls}"),
        });
    }
    plain(match e {
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        ureq::Error::ConnectProxyFailed(why) => format!("through the proxy: {why}"),
        ureq::Error::Io(io) if io.kind() == io::ErrorKind::ConnectionRefused => {
            "connection refused (is the registry running on that port?)".into()
        }
        ureq::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    })
}

/// The rustls error inside `e`, if it is a TLS failure.
pub fn rustls_error(e: &ureq::Error) -> Option<&rustls::Error> {
    match e {
        ureq::Error::Rustls(r) => Some(r),
        ureq::Error::Io(io) => io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_passwords_stay_out_of_messages() {
        assert_eq!(redact("http://u:pw@proxy:3128"), "http://***@proxy:3128");
        assert_eq!(redact("http://proxy:3128"), "http://proxy:3128");
    }
}

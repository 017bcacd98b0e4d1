//! Forward proxies from the environment, read as docker reads them (Go's
//! `http.ProxyFromEnvironment`): `HTTPS_PROXY` for https URLs and
//! `HTTP_PROXY` for http ones (upper case first, then lower case;
//! `HTTP_PROXY` is ignored under CGI, where a client can set it), never
//! for `localhost` or loopback addresses, and not for hosts `NO_PROXY`
//! names (`*`, domains matching themselves and their subdomains, `.domain`
//! and `*.domain` only subdomains, IP addresses, CIDR ranges, each
//! optionally with `:PORT`). curl reads the same variables.
//!
//! Through a proxy every connection is a `CONNECT` tunnel, for https and
//! http alike: the proxy sees a host and port, never a request, so the
//! registry's credentials never reach it. A proxy's own credentials come
//! from its URL (`http://user:password@proxy:3128`).

use std::net::IpAddr;

use super::RegistryError;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proxies {
    http: Option<String>,
    https: Option<String>,
    no_proxy: Vec<Exempt>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Exempt {
    All,
    Ip(IpAddr, Option<u16>),
    Cidr(IpAddr, u8),
    /// `.example.com` (with `whole`: `example.com` itself too).
    Domain {
        suffix: String,
        whole: bool,
        port: Option<u16>,
    },
}

impl Proxies {
    /// From the process environment.
    pub fn from_env() -> Result<Proxies, RegistryError> {
        Proxies::from_vars(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Proxies, RegistryError> {
        let either = |a: &str, b: &str| get(a).or_else(|| get(b));
        let cgi = get("REQUEST_METHOD").is_some();
        let http = if cgi {
            get("http_proxy")
        } else {
            either("HTTP_PROXY", "http_proxy")
        };
        let https = either("HTTPS_PROXY", "https_proxy");
        let no_proxy = either("NO_PROXY", "no_proxy").unwrap_or_default();
        Ok(Proxies {
            http: http.map(|p| proxy_url("HTTP_PROXY", &p)).transpose()?,
            https: https.map(|p| proxy_url("HTTPS_PROXY", &p)).transpose()?,
            no_proxy: no_proxy.split(',').filter_map(exempt).collect(),
        })
    }

    /// The proxy URL for a request to `scheme://host:port`, or `None` to
    /// connect directly. `host` is bare (no brackets around IPv6).
    pub fn for_target(&self, scheme: &str, host: &str, port: u16) -> Option<&str> {
        let proxy = match scheme {
            "https" => self.https.as_deref()?,
            "http" => self.http.as_deref()?,
            _ => return None,
        };
        let host = host.to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        if host == "localhost" || ip.is_some_and(|ip| ip.is_loopback()) {
            return None;
        }
        let exempt = self.no_proxy.iter().any(|e| match e {
            Exempt::All => true,
            Exempt::Ip(a, p) => Some(*a) == ip && p.is_none_or(|p| p == port),
            Exempt::Cidr(net, bits) => ip.is_some_and(|ip| in_cidr(ip, *net, *bits)),
            Exempt::Domain {
                suffix,
                whole,
                port: p,
            } => {
                ip.is_none()
                    && p.is_none_or(|p| p == port)
                    && (host.ends_with(suffix.as_str()) || (*whole && host == suffix[1..]))
            }
        });
        (!exempt).then_some(proxy)
    }

    /// Every distinct proxy URL.
    pub fn urls(&self) -> Vec<&str> {
        let mut urls: Vec<&str> = self
            .http
            .iter()
            .chain(&self.https)
            .map(|s| s.as_str())
            .collect();
        urls.dedup();
        urls
    }
}

/// A proxy URL with its scheme (Go adds `http://` when there is none);
/// only HTTP and HTTPS proxies.
fn proxy_url(var: &str, value: &str) -> Result<String, RegistryError> {
    let url = if value.contains("://") {
        value.to_string()
    } else {
        format!("http://{value}")
    };
    let scheme = url.split("://").next().unwrap_or("").to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(RegistryError::new(format!(
            "{var}: {scheme} proxies are not supported (only http:// and https://)"
        )));
    }
    Ok(url)
}

/// One `NO_PROXY` entry.
fn exempt(entry: &str) -> Option<Exempt> {
    let e = entry.trim().to_ascii_lowercase();
    if e.is_empty() {
        return None;
    }
    if e == "*" {
        return Some(Exempt::All);
    }
    if let Some((net, bits)) = e.split_once('/') {
        return Some(Exempt::Cidr(net.parse().ok()?, bits.parse().ok()?));
    }
    if let Ok(ip) = e.trim_start_matches('[').trim_end_matches(']').parse() {
        return Some(Exempt::Ip(ip, None));
    }
    // HOST:PORT ([IPv6]:PORT).
    let (host, port) = match e.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') => (h.to_string(), Some(p.parse().ok()?)),
        _ => (e.clone(), None),
    };
    if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse() {
        return Some(Exempt::Ip(ip, port));
    }
    let (suffix, whole) = if let Some(rest) = host.strip_prefix("*.") {
        (format!(".{rest}"), false)
    } else if host.starts_with('.') {
        (host, false)
    } else {
        (format!(".{host}"), true)
    };
    Some(Exempt::Domain {
        suffix,
        whole,
        port,
    })
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> Proxies {
        Proxies::from_vars(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
        .unwrap()
    }

    #[test]
    fn scheme_picks_the_variable_and_upper_case_wins() {
        let p = with(&[
            ("HTTPS_PROXY", "http://secure:3128"),
            ("https_proxy", "http://lower:3128"),
            ("http_proxy", "plain:8080"),
        ]);
        assert_eq!(
            p.for_target("https", "reg.example", 443),
            Some("http://secure:3128")
        );
        assert_eq!(
            p.for_target("http", "reg.example", 80),
            Some("http://plain:8080")
        );
        let p = with(&[("HTTP_PROXY", "http://p:1")]);
        assert_eq!(p.for_target("https", "reg.example", 443), None);
        // Under CGI, HTTP_PROXY may come from a request header.
        let p = with(&[("HTTP_PROXY", "http://p:1"), ("REQUEST_METHOD", "GET")]);
        assert_eq!(p.for_target("http", "reg.example", 80), None);
        assert!(
            Proxies::from_vars(|k| (k == "HTTPS_PROXY").then(|| "socks5://s:1".into())).is_err()
        );
    }

    #[test]
    fn loopback_and_no_proxy_go_direct() {
        let p = with(&[
            ("HTTPS_PROXY", "http://p:3128"),
            (
                "NO_PROXY",
                "corp.example, .internal,*.lab.example,10.0.0.0/8,192.168.1.5,reg.example:5000,[fd00::1]",
            ),
        ]);
        let via = |h: &str, port: u16| p.for_target("https", h, port).is_some();
        for direct in [
            ("localhost", 443),
            ("127.0.0.1", 5000),
            ("::1", 443),
            ("corp.example", 443),
            ("a.corp.example", 443),
            ("x.internal", 443),
            ("b.lab.example", 443),
            ("10.2.3.4", 443),
            ("192.168.1.5", 443),
            ("reg.example", 5000),
            ("fd00::1", 443),
        ] {
            assert!(
                !via(direct.0, direct.1),
                "{direct:?} went through the proxy"
            );
        }
        for proxied in [
            ("internal", 443),
            ("lab.example", 443),
            ("xcorp.example", 443),
            ("11.0.0.1", 443),
            ("reg.example", 443),
            ("registry.example", 443),
        ] {
            assert!(via(proxied.0, proxied.1), "{proxied:?} went direct");
        }
        let all = with(&[("HTTPS_PROXY", "http://p:1"), ("no_proxy", "*")]);
        assert_eq!(all.for_target("https", "reg.example", 443), None);
    }
}

//! Where a URL points: scheme, host and port. Credentials go only to the
//! registry's own origin (all three equal), and plain-HTTP URLs are only
//! followed when the user allowed plain HTTP for the registry.

use std::fmt;

use ureq::http::Uri;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    /// Lower case; IPv6 without brackets.
    pub host: String,
    /// The default port of the scheme when none is written.
    pub port: u16,
}

impl Origin {
    /// The origin of an absolute http(s) URL; `None` for anything else.
    pub fn of(url: &str) -> Option<Origin> {
        let uri: Uri = url.parse().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let default = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        let host = uri.host()?;
        if host.is_empty() {
            return None;
        }
        Some(Origin {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase(),
            port: uri.port_u16().unwrap_or(default),
            scheme,
        })
    }

    pub fn is_plain(&self) -> bool {
        self.scheme == "http"
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

/// `location` (absolute, scheme-relative `//host/...`, or a path) made
/// absolute against `current`, the URL it came from.
pub fn resolve(current: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let (scheme, rest) = current.split_once("://").unwrap_or(("https", current));
    if let Some(tail) = location.strip_prefix("//") {
        return format!("{scheme}://{tail}");
    }
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    if location.starts_with('/') {
        format!("{scheme}://{authority}{location}")
    } else {
        // Relative to the current path's directory.
        let path = rest[authority.len()..].split('?').next().unwrap_or("");
        let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        format!("{scheme}://{authority}{dir}/{location}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let a = Origin::of("https://Reg.Example/v2/").unwrap();
        assert_eq!(a, Origin::of("https://reg.example:443/x").unwrap());
        assert_ne!(a, Origin::of("http://reg.example:443/x").unwrap());
        assert_ne!(a, Origin::of("https://reg.example:5000/x").unwrap());
        assert!(Origin::of("http://reg.example/").unwrap().is_plain());
        let v6 = Origin::of("https://[::1]:5000/v2/").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 5000));
        assert_eq!(v6.to_string(), "https://[::1]:5000");
        for bad in ["/v2/", "ftp://x/", "https:///x", "", "http://"] {
            assert_eq!(Origin::of(bad), None, "{bad}");
        }
    }

    #[test]
    fn locations_resolve_like_a_browser() {
        let cur = "https://r.example:5000/v2/a/blobs/uploads/?x=1";
        assert_eq!(
            resolve(cur, "/v2/a/blobs/uploads/u?s=2"),
            "https://r.example:5000/v2/a/blobs/uploads/u?s=2"
        );
        assert_eq!(resolve(cur, "http://o/x"), "http://o/x");
        assert_eq!(resolve(cur, "//cdn.example/b"), "https://cdn.example/b");
        assert_eq!(
            resolve(cur, "u2"),
            "https://r.example:5000/v2/a/blobs/uploads/u2"
        );
    }
}

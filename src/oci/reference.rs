//! Image references in Docker's grammar: `[host[:port]/]path[:tag][@digest]`.
//!
//! Written out rather than taken from a regex crate: the grammar is small,
//! and compiling the published pattern cost 7 MB of heap and a few
//! milliseconds on every run.

use std::fmt;

pub const DOCKER_HUB: &str = "docker.io";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The registry host (and port), `docker.io` when none was given.
    pub registry: String,
    /// The repository path, with `library/` for Docker Hub's short names.
    pub repository: String,
    /// The tag; `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    pub digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub &'static str);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl Reference {
    pub fn parse(s: &str) -> Result<Reference, Invalid> {
        if s.is_empty() {
            return Err(Invalid("empty reference"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                check_digest(d)?;
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A colon after the last slash starts the tag; before it, a port.
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(t) = tag {
            check_tag(t)?;
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path)) if is_domain(first) => {
                check_domain(first)?;
                (first.to_string(), path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        for component in path.split('/') {
            check_component(component)?;
        }
        if path.len() > 255 {
            return Err(Invalid("repository name is longer than 255 characters"));
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

/// Docker's rule: the first part names a registry if it has a dot or a
/// colon, is `localhost`, or has upper case (which no repository may).
fn is_domain(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.chars().any(|c| c.is_ascii_uppercase())
}

fn check_domain(d: &str) -> Result<(), Invalid> {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || d.starts_with('[') => (h, Some(p)),
        _ => (d, None),
    };
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(Invalid("registry port is not a number"));
    }
    if let Some(v6) = host.strip_prefix('[') {
        return if v6.ends_with(']') && v6.len() > 1 {
            Ok(())
        } else {
            Err(Invalid("malformed IPv6 registry address"))
        };
    }
    let ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(Invalid("malformed registry host name"))
    }
}

/// `[a-z0-9]+` runs joined by one `.`, one or two `_`, or any `-`s.
fn check_component(c: &str) -> Result<(), Invalid> {
    if c.is_empty() {
        return Err(Invalid("empty path component in repository name"));
    }
    if c.chars().any(|ch| ch.is_ascii_uppercase()) {
        return Err(Invalid("repository names must be lowercase"));
    }
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err(Invalid(
            "repository path components start and end with a letter or digit",
        ));
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return Err(Invalid("invalid separator in repository name"));
        }
    }
    Ok(())
}

fn check_tag(t: &str) -> Result<(), Invalid> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let b = t.as_bytes();
    if b.is_empty()
        || b.len() > 128
        || !word(b[0])
        || !b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
    {
        return Err(Invalid("invalid tag (letters, digits, _ . -; at most 128)"));
    }
    Ok(())
}

fn check_digest(d: &str) -> Result<(), Invalid> {
    let Some((algo, hex)) = d.split_once(':') else {
        return Err(Invalid("digest is not ALGORITHM:HEX"));
    };
    let hex_ok = |n: usize| {
        hex.len() == n
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    match algo {
        "sha256" if hex_ok(64) => Ok(()),
        "sha512" if hex_ok(128) => Ok(()),
        "sha256" | "sha512" => Err(Invalid("digest has the wrong length or non-hex characters")),
        _ => Err(Invalid("unsupported digest algorithm")),
    }
}

/// An image name with its tag, as the user gave it (`foo:1.0`,
/// `registry.local:5000/team/foo:1.0`): what archives and layouts name
/// images by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    short: String,
}

impl Tag {
    pub fn parse(s: &str) -> Result<Tag, String> {
        let reference =
            Reference::parse(s).map_err(|e| format!("invalid image name '{s}': {e}"))?;
        if reference.digest.is_some() {
            return Err(format!(
                "invalid image name '{s}': a tag can't carry a digest"
            ));
        }
        let tag = reference.tag.as_deref().unwrap_or("latest");
        // Keep the user's spelling of the name; only add the default tag.
        let name = match s.rsplit_once(':') {
            Some((n, t)) if t == tag && !t.contains('/') => n,
            _ => s,
        };
        Ok(Tag {
            short: format!("{name}:{tag}"),
        })
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short)
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters, as URL query
/// values and package URLs need.
pub fn percent_encode(s: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    #[test]
    fn docker_defaults() {
        let r = p("busybox");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("docker.io", "library/busybox")
        );
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(p("team/app:1.0").repository, "team/app");
        assert_eq!(p("docker.io/busybox").repository, "library/busybox");
    }

    #[test]
    fn hosts_ports_tags_digests() {
        let r = p("127.0.0.1:5000/oe/core-image-minimal:1.0");
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "oe/core-image-minimal");
        assert_eq!(r.tag.as_deref(), Some("1.0"));
        let r = p("localhost/a");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("localhost", "a")
        );
        let r = p("[::1]:5000/a:b");
        assert_eq!(r.registry, "[::1]:5000");
        let d = format!("sha256:{}", "ab".repeat(32));
        let r = p(&format!("reg.io/x@{d}"));
        assert_eq!((r.tag, r.digest.as_deref()), (None, Some(d.as_str())));
        let r = p(&format!("reg.io/x:t@{d}"));
        assert_eq!(r.tag.as_deref(), Some("t"));
        assert_eq!(
            p("a__b-c---d/f_g.h:Tag_1.0-x").repository,
            "a__b-c---d/f_g.h"
        );
        // An upper-case first part is a host, as for Docker.
        assert_eq!(p("Reg/app").registry, "Reg");
    }

    #[test]
    fn refusals() {
        for bad in [
            "",
            "Foo",
            "reg.io/Team/app",
            "a//b",
            "a/",
            "/a",
            "a:",
            "a:-x",
            "-a",
            "a-",
            "a..b",
            "a___b",
            "reg.io:port/x",
            "reg.io/x@sha256:abc",
            "reg.io/x@md5:00",
            "a b",
            "a:b:c",
            "[::1/x",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Reference::parse(&format!("a:{}", "t".repeat(129))).is_err());
        // Never panics on odd input.
        for s in ["@", ":", "/", "@:", "a@", "::", "[", "]", ":/", "a:/b"] {
            let _ = Reference::parse(s);
        }
    }

    #[test]
    fn tags_keep_spelling_and_default_latest() {
        assert_eq!(Tag::parse("foo").unwrap().to_string(), "foo:latest");
        assert_eq!(Tag::parse("foo:1.0").unwrap().to_string(), "foo:1.0");
        let t = Tag::parse("localhost:5000/a/b").unwrap();
        assert_eq!(t.to_string(), "localhost:5000/a/b:latest");
        assert!(Tag::parse("Foo").is_err());
        assert!(Tag::parse("reg.io/Team/foo").is_err());
        assert!(Tag::parse("foo@sha256:abc").is_err());
    }
}

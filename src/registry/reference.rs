//! Image references in Docker's syntax: `[host[:port]/]path/name[:tag][@digest]`,
//! with Docker Hub's defaults for short names.

use std::fmt;

/// Where to push and under which name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The registry as named (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// Host the API is served on (Docker Hub's differs from its name).
    pub endpoint: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Target {
    pub fn parse(s: &str) -> Result<Target, String> {
        let r = crate::oci::Reference::parse(s)
            .map_err(|e| format!("invalid image reference '{s}': {e}"))?;
        let endpoint = match r.registry.as_str() {
            "docker.io" | "index.docker.io" => "registry-1.docker.io".to_string(),
            other => other.to_string(),
        };
        Ok(Target {
            registry: r.registry,
            endpoint,
            repository: r.repository,
            tag: r.tag,
            digest: r.digest,
        })
    }

    /// What the manifest is put under: the tag, else the digest.
    pub fn reference(&self) -> Option<&str> {
        self.tag.as_deref().or(self.digest.as_deref())
    }

    /// The key credential stores use for this registry.
    pub fn credential_key(&self) -> String {
        match self.registry.as_str() {
            "docker.io" | "index.docker.io" => "https://index.docker.io/v1/".to_string(),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_defaults_and_ports() {
        let t = Target::parse("busybox").unwrap();
        assert_eq!(
            (
                t.registry.as_str(),
                t.endpoint.as_str(),
                t.repository.as_str()
            ),
            ("docker.io", "registry-1.docker.io", "library/busybox")
        );
        assert_eq!(t.tag.as_deref(), Some("latest"));
        assert_eq!(t.credential_key(), "https://index.docker.io/v1/");
        let t = Target::parse("127.0.0.1:5000/oe/core-image-minimal:1.0").unwrap();
        assert_eq!(t.endpoint, "127.0.0.1:5000");
        assert_eq!(t.repository, "oe/core-image-minimal");
        assert_eq!(t.reference(), Some("1.0"));
        let d = format!("sha256:{}", "a".repeat(64));
        let t = Target::parse(&format!("localhost:5000/x@{d}")).unwrap();
        assert_eq!(t.tag, None);
        assert_eq!(t.reference(), Some(d.as_str()));
        assert!(Target::parse("reg.io/UPPER/case").is_err());
        assert!(Target::parse("").is_err());
    }
}

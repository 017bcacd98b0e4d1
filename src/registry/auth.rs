//! Who we are to a registry: credentials from the flag or the usual files
//! and helpers, and the server's `WWW-Authenticate` challenges.
//!
//! Secrets live only in [`Credential`], whose `Debug` hides them; nothing
//! here formats one into a message.

use std::collections::BTreeMap;
use std::fmt;

use docker_credential::{CredentialRetrievalError, DockerCredential};

use super::reference::Target;

#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    Basic {
        user: String,
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken` in config.json).
    IdentityToken(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { user, .. } => write!(f, "Basic({user}, <redacted>)"),
            Credential::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

/// Where a credential came from, for messages.
pub fn describe(source: &CredSource) -> &'static str {
    match source {
        CredSource::Flag => "--creds",
        CredSource::AuthFile => "$REGISTRY_AUTH_FILE / containers auth.json",
        CredSource::DockerConfig => "docker config.json",
        CredSource::None => "no credentials",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredSource {
    Flag,
    AuthFile,
    DockerConfig,
    None,
}

/// Finds the credential for `target`: `--creds USER:PASS`, then
/// `$REGISTRY_AUTH_FILE`, then Docker's config.json (`$DOCKER_CONFIG` or
/// ~/.docker: auths, identity tokens, credHelpers, credsStore), then
/// containers' auth.json. Anonymous when none has one.
pub fn lookup(
    target: &Target,
    flag: Option<&str>,
) -> Result<(Option<Credential>, CredSource), String> {
    if let Some(flag) = flag {
        let (user, password) = flag
            .split_once(':')
            .ok_or("--creds: expected USER:PASSWORD")?;
        return Ok((
            Some(Credential::Basic {
                user: user.to_string(),
                password: password.to_string(),
            }),
            CredSource::Flag,
        ));
    }
    let key = target.credential_key();
    let explicit_auth_file = std::env::var_os("REGISTRY_AUTH_FILE").is_some();
    type Lookup = fn(&str) -> Result<DockerCredential, CredentialRetrievalError>;
    let docker: (CredSource, Lookup) =
        (CredSource::DockerConfig, docker_credential::get_credential);
    let podman: (CredSource, Lookup) = (
        CredSource::AuthFile,
        docker_credential::get_podman_credential,
    );
    let order = if explicit_auth_file {
        [podman, docker]
    } else {
        [docker, podman]
    };
    for (source, get) in order {
        match get(&key) {
            Ok(c) => return Ok((Some(convert(c)), source)),
            Err(
                CredentialRetrievalError::NoCredentialConfigured
                | CredentialRetrievalError::ConfigNotFound
                | CredentialRetrievalError::ConfigReadError,
            ) => continue,
            // Helpers say "none for this registry" by failing with this
            // text (docker-credential-helpers' ErrCredentialsNotFound);
            // docker then goes on anonymously, and so do we.
            Err(CredentialRetrievalError::HelperFailure { stdout, .. })
                if stdout.contains("credentials not found") =>
            {
                continue;
            }
            // Helper output may hold secrets: name the helper, not its output.
            Err(CredentialRetrievalError::HelperFailure { helper, .. }) => {
                return Err(format!(
                    "credential helper {} failed for {} (run `{} get` to see why)",
                    helper_program(&helper),
                    target.registry,
                    helper_program(&helper)
                ));
            }
            Err(CredentialRetrievalError::HelperCommunicationError) => {
                return Err(format!(
                    "the credential helper named in {} for {} could not be run (is its \
                     docker-credential-* program on PATH?)",
                    describe(&source),
                    target.registry
                ));
            }
            Err(e) => {
                return Err(format!(
                    "reading credentials for {} from {}: {e}",
                    target.registry,
                    describe(&source)
                ));
            }
        }
    }
    Ok((None, CredSource::None))
}

/// The helper's program name: docker_credential reports it already
/// prefixed (`docker-credential-pass`), older versions did not.
fn helper_program(helper: &str) -> String {
    if helper.starts_with("docker-credential-") {
        helper.to_string()
    } else {
        format!("docker-credential-{helper}")
    }
}

fn convert(c: DockerCredential) -> Credential {
    match c {
        DockerCredential::UsernamePassword(user, password) => Credential::Basic { user, password },
        DockerCredential::IdentityToken(t) => Credential::IdentityToken(t),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Lowercased: `basic` or `bearer`.
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

/// Parses a `WWW-Authenticate` value: one or more challenges, each a scheme
/// and comma-separated `key=value` or `key="quoted, value"` parameters.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let mut rest = header.trim();
    while !rest.is_empty() {
        rest = rest.trim_start_matches([',', ' ', '\t']);
        let end = rest
            .find(|c: char| c == '=' || c == ',' || c.is_whitespace())
            .unwrap_or(rest.len());
        let token = &rest[..end];
        let after = rest[end..].trim_start_matches([' ', '\t']);
        if token.is_empty() {
            break;
        }
        if let Some(value_part) = after.strip_prefix('=') {
            // A parameter of the current challenge.
            let (value, remaining) = parse_value(value_part.trim_start());
            if let Some(c) = out.last_mut() {
                c.params.insert(token.to_ascii_lowercase(), value);
            }
            rest = remaining;
        } else {
            out.push(Challenge {
                scheme: token.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
            rest = after;
        }
    }
    out
}

/// A token or quoted string, and what follows it.
fn parse_value(s: &str) -> (String, &str) {
    if let Some(quoted) = s.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(n);
                    }
                }
                '"' => return (value, &quoted[i + 1..]),
                _ => value.push(c),
            }
        }
        (value, "")
    } else {
        let end = s.find([',', ' ', '\t']).unwrap_or(s.len());
        (s[..end].to_string(), &s[end..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_with_quoted_commas() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].params["realm"], "https://auth.example/token");
        assert_eq!(c[0].params["scope"], "repository:a/b:pull,push");
    }

    #[test]
    fn several_challenges_and_odd_spacing() {
        let c = parse_challenges(r#"Basic realm="Registry Realm" , Bearer realm=x,service="s\"q""#);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].params["realm"], "Registry Realm");
        assert_eq!(c[1].params["realm"], "x");
        assert_eq!(c[1].params["service"], "s\"q");
        assert!(parse_challenges("").is_empty());
        assert_eq!(parse_challenges("Basic")[0].scheme, "basic");
        // Garbage never panics.
        for s in ["=", "\"", "a=\"", ",,,", "Bearer realm", "x y=z=w"] {
            let _ = parse_challenges(s);
        }
    }

    #[test]
    fn helpers_are_named_once() {
        assert_eq!(
            helper_program("docker-credential-pass"),
            "docker-credential-pass"
        );
        assert_eq!(helper_program("pass"), "docker-credential-pass");
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let c = Credential::Basic {
            user: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}

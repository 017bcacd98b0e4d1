//! `insecure` and `blocked` from the containers tools' registries.conf
//! (containers-registries.conf(5), version 2, and version 1's
//! `[registries.insecure]` / `[registries.block]`), found and merged as
//! podman finds and merges them:
//!
//! - the main file: `$CONTAINERS_REGISTRIES_CONF` if set (then it must
//!   exist), else `$HOME/.config/containers/registries.conf` if it exists,
//!   else `/etc/containers/registries.conf` (missing is fine);
//! - then drop-ins, `*.conf` in name order: `/etc/containers/registries.conf.d`
//!   and `$HOME/.config/containers/registries.conf.d`, or only the user's
//!   when the user's main file was used. A drop-in's `[[registry]]` replaces
//!   the one with the same prefix.
//!
//! The `[[registry]]` whose prefix is the longest match of the image name
//! (`HOST[:PORT]/REPOSITORY`, or `*.domain`) decides. Mirrors and
//! `location` rewriting are for pulls only, as in podman.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{RegistryError, paths};

/// What registries.conf says about one image name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub insecure: bool,
    pub blocked: bool,
    /// The matching `[[registry]]`'s prefix and the file it came from.
    pub prefix: String,
    pub file: PathBuf,
}

#[derive(Deserialize, Default)]
struct File {
    #[serde(default)]
    registry: Vec<RegistryTable>,
    /// Version 1.
    #[serde(default)]
    registries: Option<V1>,
}

#[derive(Deserialize)]
struct RegistryTable {
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    location: String,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    blocked: bool,
}

#[derive(Deserialize, Default)]
struct V1 {
    #[serde(default)]
    insecure: V1Names,
    #[serde(default)]
    block: V1Names,
}

#[derive(Deserialize, Default)]
struct V1Names {
    #[serde(default)]
    registries: Vec<String>,
}

/// The files podman reads, in order, from the environment.
pub fn files() -> Result<Vec<PathBuf>, RegistryError> {
    let user_file = paths::user_config("containers/registries.conf");
    let user_dir = paths::user_config("containers/registries.conf.d");
    let system_dir = paths::etc("containers/registries.conf.d");
    let (main, dirs) =
        match std::env::var_os("CONTAINERS_REGISTRIES_CONF").filter(|v| !v.is_empty()) {
            Some(path) => {
                let path = PathBuf::from(path);
                if !path.is_file() {
                    return Err(RegistryError::new(format!(
                        "$CONTAINERS_REGISTRIES_CONF: {} does not exist",
                        path.display()
                    )));
                }
                (Some(path), vec![Some(system_dir), user_dir])
            }
            None => match user_file.filter(|f| f.exists()) {
                Some(user) => (Some(user), vec![user_dir]),
                None => (
                    Some(paths::etc("containers/registries.conf")),
                    vec![Some(system_dir), user_dir],
                ),
            },
        };
    let mut files: Vec<PathBuf> = main.into_iter().filter(|p| p.exists()).collect();
    for dir in dirs.into_iter().flatten() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let mut conf: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "conf"))
            .collect();
        conf.sort();
        files.extend(conf);
    }
    Ok(files)
}

/// The policy for `name` (`HOST[:PORT]/REPOSITORY`) from the files podman
/// would read; `None` when no `[[registry]]` matches.
pub fn lookup(name: &str) -> Result<Option<Policy>, RegistryError> {
    let files = files()?;
    let first = files.first().cloned();
    let mut merged: BTreeMap<String, Policy> = BTreeMap::new();
    for path in files {
        let text = fs::read_to_string(&path)
            .map_err(|e| RegistryError::new(format!("{}: {e}", path.display())))?;
        let drop_in = Some(&path) != first.as_ref();
        for p in parse(&text, &path, drop_in)? {
            merged.insert(p.prefix.clone(), p);
        }
    }
    Ok(merged
        .into_values()
        .filter(|p| matches(name, &p.prefix))
        .max_by_key(|p| p.prefix.len()))
}

/// The `[[registry]]` tables of one file as policies.
fn parse(text: &str, path: &Path, drop_in: bool) -> Result<Vec<Policy>, RegistryError> {
    let err = |what: String| RegistryError::new(format!("{}: {what}", path.display()));
    let file: File = toml::from_str(text).map_err(|e| {
        // toml's messages span lines (a source excerpt); keep the first.
        err(e
            .message()
            .lines()
            .next()
            .unwrap_or("invalid TOML")
            .to_string())
    })?;
    let v1 = file.registries.unwrap_or_default();
    let has_v1 = !v1.insecure.registries.is_empty() || !v1.block.registries.is_empty();
    if has_v1 && (drop_in || !file.registry.is_empty()) {
        return Err(err(
            "version 1 tables ([registries.*]) mixed with version 2 or in a drop-in".into(),
        ));
    }
    let mut out: Vec<Policy> = Vec::new();
    let policy = |prefix: String, insecure, blocked| Policy {
        insecure,
        blocked,
        prefix,
        file: path.to_path_buf(),
    };
    for loc in &v1.block.registries {
        out.push(policy(location(loc).map_err(&err)?, false, true));
    }
    for loc in &v1.insecure.registries {
        let loc = location(loc).map_err(&err)?;
        match out.iter_mut().find(|p| p.prefix == loc) {
            Some(p) => p.insecure = true,
            None => out.push(policy(loc, true, false)),
        }
    }
    for e in file.registry {
        let loc = location(&e.location).map_err(&err)?;
        let prefix = if e.prefix.is_empty() {
            if loc.is_empty() {
                return Err(err("a [[registry]] with neither prefix nor location".into()));
            }
            loc
        } else {
            location(&e.prefix).map_err(&err)?
        };
        if prefix.starts_with("*.") && prefix.contains(['/', '@', ':']) {
            return Err(err(format!(
                "wildcard prefix {prefix:?} must be just *.domain"
            )));
        }
        // The first table with a prefix counts; later ones are ignored.
        if !out.iter().any(|p| p.prefix == prefix) {
            out.push(policy(prefix, e.insecure, e.blocked));
        }
    }
    Ok(out)
}

/// A location or prefix without trailing slashes; URL schemes are errors.
fn location(s: &str) -> Result<String, String> {
    let t = s.trim_end_matches('/');
    if t.starts_with("http://") || t.starts_with("https://") {
        return Err(format!("{s:?}: URL schemes are not allowed there"));
    }
    Ok(t.to_string())
}

/// Whether `prefix` matches `name` as the containers tools match it: the
/// whole name, or up to a `/`, `:` or `@`; `*.domain` any subdomain's
/// names.
fn matches(name: &str, prefix: &str) -> bool {
    if let Some(domain) = prefix.strip_prefix('*') {
        // ".domain" must end the host part (before any '/', ':' or '@').
        let Some(i) = name.find(domain) else {
            return false;
        };
        if name[..i].contains('/') {
            return false;
        }
        return matches!(
            name[i + domain.len()..].chars().next(),
            None | Some(':' | '/' | '@')
        );
    }
    match name.strip_prefix(prefix) {
        Some(rest) => matches!(rest.chars().next(), None | Some(':' | '/' | '@')),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policies(text: &str) -> Result<Vec<Policy>, RegistryError> {
        parse(text, Path::new("r.conf"), false)
    }

    #[test]
    fn v2_with_everything_podman_ships() {
        let text = r#"
unqualified-search-registries = ["docker.io", "quay.io"]
short-name-mode = "enforcing"

[[registry]]
prefix = "reg.example:5000/team"
location = "reg.example:5000/team"
insecure = true

[[registry.mirror]]
location = "mirror.example/team"

[[registry]]
location = "blocked.example"
blocked = true

[[registry]]
prefix = "*.lab.example"

[aliases]
"fedora" = "registry.fedoraproject.org/fedora"
"#;
        let p = policies(text).unwrap();
        assert_eq!(p.len(), 3);
        assert!(p[0].insecure && !p[0].blocked);
        assert_eq!(p[1].prefix, "blocked.example");
        assert!(p[1].blocked);
        assert_eq!(p[2].prefix, "*.lab.example");
    }

    #[test]
    fn v1_lists_and_bad_files() {
        let p = policies(
            "[registries.search]\nregistries = ['a.example']\n\
             [registries.insecure]\nregistries = ['b.example:5000']\n\
             [registries.block]\nregistries = ['c.example', 'b.example:5000']\n",
        )
        .unwrap();
        assert_eq!(p.len(), 2);
        assert!(
            p.iter()
                .any(|p| p.prefix == "b.example:5000" && p.insecure && p.blocked)
        );
        assert!(policies("[[registry]]\nlocation = 'http://x'\n").is_err());
        assert!(policies("[[registry]]\ninsecure = true\n").is_err());
        assert!(policies("[[registry]]\nprefix = '*.x.example/foo'\n").is_err());
        assert!(policies("[[registry]\n").is_err());
        let mixed = "[registries.insecure]\nregistries = ['a']\n[[registry]]\nlocation = 'b'\n";
        assert!(policies(mixed).is_err());
        assert!(
            parse(
                "[registries.insecure]\nregistries = ['a']\n",
                Path::new("d"),
                true
            )
            .is_err()
        );
    }

    #[test]
    fn prefixes_match_as_in_podman() {
        assert!(matches("reg.example:5000/team/app", "reg.example:5000"));
        assert!(matches(
            "reg.example:5000/team/app",
            "reg.example:5000/team"
        ));
        assert!(matches(
            "reg.example:5000/team/app",
            "reg.example:5000/team/app"
        ));
        assert!(!matches(
            "reg.example:5000/teams/app",
            "reg.example:5000/team"
        ));
        assert!(!matches("reg.example.org/app", "reg.example"));
        // podman's own quirk: "host" also matches "host:port".
        assert!(matches("reg.example:5000/app", "reg.example"));
        assert!(matches("a.lab.example/x", "*.lab.example"));
        assert!(matches("a.b.lab.example:5000/x", "*.lab.example"));
        assert!(!matches("lab.example/x", "*.lab.example"));
        assert!(!matches("evil.example/a.lab.example", "*.lab.example"));
    }
}

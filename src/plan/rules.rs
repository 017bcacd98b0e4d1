//! Layer rules: an INI file whose sections are named layers.
//!
//! ```ini
//! [base]
//! packages = libc6*, base-files, base-passwd, busybox*
//!
//! [python]
//! packages = python3*
//! ```
//!
//! Every package whose name matches a glob of a section goes into that
//! section's layer; the first section (in file order) that matches wins.
//! Packages no section matches follow the default policy.

use std::fmt;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};

#[derive(Debug)]
pub struct RulesError {
    pub path: PathBuf,
    pub reason: String,
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for RulesError {}

pub struct Rule {
    pub name: String,
    globs: GlobSet,
}

#[derive(Default)]
pub struct Rules {
    rules: Vec<Rule>,
}

impl Rules {
    pub fn load(path: &Path) -> Result<Rules, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|e| RulesError {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Rules::parse(&text).map_err(|reason| RulesError {
            path: path.to_path_buf(),
            reason,
        })
    }

    pub fn parse(text: &str) -> Result<Rules, String> {
        let mut ini = configparser::ini::Ini::new_cs();
        let map = ini.read(text.to_string())?;
        let mut rules = Vec::new();
        for (section, keys) in map {
            if section == "default" && keys.is_empty() {
                continue;
            }
            let mut patterns = None;
            for (key, value) in keys {
                match key.as_str() {
                    "packages" => patterns = value,
                    other => {
                        return Err(format!(
                            "[{section}]: unknown key '{other}' (only 'packages' is known)"
                        ));
                    }
                }
            }
            let patterns = patterns
                .filter(|p| !p.trim().is_empty())
                .ok_or_else(|| format!("[{section}]: 'packages = glob, glob...' is missing"))?;
            let mut set = GlobSetBuilder::new();
            for pat in patterns
                .split([',', ' ', '\t', '\n'])
                .filter(|p| !p.is_empty())
            {
                set.add(Glob::new(pat).map_err(|e| format!("[{section}]: bad glob '{pat}': {e}"))?);
            }
            let globs = set.build().map_err(|e| format!("[{section}]: {e}"))?;
            rules.push(Rule {
                name: section,
                globs,
            });
        }
        Ok(Rules { rules })
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn name(&self, i: usize) -> &str {
        &self.rules[i].name
    }

    /// The first rule whose globs match `package`.
    pub fn layer_for(&self, package: &str) -> Option<usize> {
        self.rules.iter().position(|r| r.globs.is_match(package))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_section_wins_in_file_order() {
        let r = Rules::parse("[zlast]\npackages = libc6*, busybox\n\n[alpha]\npackages = lib*\n")
            .unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r.layer_for("libc6-utils"), Some(0));
        assert_eq!(r.name(0), "zlast");
        assert_eq!(r.layer_for("libz1"), Some(1));
        assert_eq!(r.layer_for("busybox"), Some(0));
        assert_eq!(r.layer_for("python3"), None);
    }

    #[test]
    fn mistakes_are_reported() {
        assert!(
            Rules::parse("[a]\npackage = x\n")
                .err()
                .unwrap()
                .contains("unknown key")
        );
        assert!(Rules::parse("[a]\n").err().unwrap().contains("missing"));
        assert!(
            Rules::parse("[a]\npackages = [\n")
                .err()
                .unwrap()
                .contains("bad glob")
        );
    }
}

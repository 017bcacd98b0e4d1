//! OE's LICENSE values as SPDX license expressions.
//!
//! OE spells a package's license in its own syntax on older releases
//! (`GPL-2.0-only & (MIT | BSD-3-Clause)`), in SPDX's on master
//! (`GPL-2.0-only AND MIT`), and old recipes still use pre-2022 names
//! (`GPLv2+`, `LGPLv2.1`). An SPDX document needs an expression whose every
//! identifier is on the SPDX License List or a `LicenseRef-` the document
//! declares. So, as OE's own create-spdx does: `&`/`|` become `AND`/`OR`,
//! the old names become their SPDX ones (the rule behind OE's
//! SPDXLICENSEMAP), listed identifiers take the list's spelling, and any
//! other name becomes `LicenseRef-<name>`, returned so the document can
//! declare it. An expression that does not parse is `NOASSERTION`, never
//! an invalid document.

/// The SPDX License List, as the `spdx` crate carries it (its
/// `identifiers::VERSION`): licenses and exceptions, deprecated ones
/// included, as OE accepts them in LICENSE.
fn license_names() -> impl Iterator<Item = &'static str> {
    spdx::identifiers::LICENSES.iter().map(|l| l.name)
}

fn exception_names() -> impl Iterator<Item = &'static str> {
    spdx::identifiers::EXCEPTIONS.iter().map(|e| e.name)
}

/// An SPDX expression for OE's `license`, and the names it had to make
/// `LicenseRef-`s of (`(id, OE's name)`, in order of appearance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    pub expression: String,
    pub refs: Vec<(String, String)>,
}

/// Converts OE's LICENSE value; `NOASSERTION` when empty or unparsable,
/// `NONE` for OE's `CLOSED` alone (no license, as OE's create-spdx says).
pub fn convert(license: &str) -> Converted {
    let noassertion = || Converted {
        expression: "NOASSERTION".into(),
        refs: Vec::new(),
    };
    let tokens = tokens(license);
    if tokens.is_empty() {
        return noassertion();
    }
    if tokens == ["CLOSED"] {
        return Converted {
            expression: "NONE".into(),
            refs: Vec::new(),
        };
    }
    let mut out: Vec<String> = Vec::new();
    let mut refs: Vec<(String, String)> = Vec::new();
    let mut after_with = false;
    for t in &tokens {
        let word = match t.as_str() {
            "(" | ")" => t.clone(),
            "&" => "AND".into(),
            "|" => "OR".into(),
            w if w.eq_ignore_ascii_case("and") => "AND".into(),
            w if w.eq_ignore_ascii_case("or") => "OR".into(),
            w if w.eq_ignore_ascii_case("with") => "WITH".into(),
            w if after_with => match listed(exception_names(), w) {
                Some(id) => id.to_string(),
                // Not an exception SPDX knows: keep it, as a license
                // that applies too.
                None => {
                    out.pop();
                    out.push("AND".into());
                    reference(w, &mut refs)
                }
            },
            w => license_id(w).unwrap_or_else(|| reference(w, &mut refs)),
        };
        after_with = word == "WITH";
        out.push(word);
    }
    if !Parser::valid(&out) {
        return noassertion();
    }
    Converted {
        expression: join(&out),
        refs,
    }
}

/// `(`, `)`, `&`, `|` and words.
fn tokens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in s.chars() {
        if matches!(c, '(' | ')' | '&' | '|') || c.is_whitespace() {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            if !c.is_whitespace() {
                out.push(c.to_string());
            }
        } else {
            word.push(c);
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// Tokens as SPDX writes them: spaces between, none inside parentheses.
fn join(tokens: &[String]) -> String {
    let mut s = String::new();
    for (i, t) in tokens.iter().enumerate() {
        let after_open = i > 0 && tokens[i - 1] == "(";
        if i > 0 && t != ")" && !after_open {
            s.push(' ');
        }
        s.push_str(t);
    }
    s
}

/// The list's spelling of a license name, after OE's old names are mapped.
fn license_id(name: &str) -> Option<String> {
    let name = legacy(name).unwrap_or_else(|| name.to_string());
    listed(license_names(), &name).map(str::to_string)
}

/// The identifier of `list` equal to `name` but for case.
fn listed(mut list: impl Iterator<Item = &'static str>, name: &str) -> Option<&'static str> {
    list.find(|l| l.eq_ignore_ascii_case(name))
}

/// Pre-2022 OE names: the GNU families (`GPLv2`, `GPL-2`, `GPL-2.0`,
/// `LGPLv2.1+`: version, `+` for or-later) and the few others OE maps.
fn legacy(name: &str) -> Option<String> {
    let fixed = match name {
        "MPL-1" | "MPLv1" => "MPL-1.0",
        "MPLv1.1" => "MPL-1.1",
        "MPLv2" => "MPL-2.0",
        "MIT-X" | "MIT-style" => "MIT",
        "openssl" => "OpenSSL",
        "PSF" | "PSFv2" => "PSF-2.0",
        "Python-2" => "Python-2.0",
        "Apachev2" => "Apache-2.0",
        "BSD-0-Clause" => "0BSD",
        _ => "",
    };
    if !fixed.is_empty() {
        return Some(fixed.to_string());
    }
    let family = ["AGPL", "LGPL", "GPL"]
        .into_iter()
        .find(|f| name.starts_with(f))?;
    let rest = &name[family.len()..];
    let rest = rest
        .strip_prefix('v')
        .or_else(|| rest.strip_prefix('-'))
        .or_else(|| (family == "LGPL").then_some(rest))?;
    let (version, later) = match rest.strip_suffix('+') {
        Some(v) => (v, true),
        None => (rest, false),
    };
    let version = match version.split_once('.') {
        Some((major, "0" | "1")) if version.len() == 3 => {
            format!("{major}.{}", &version[2..])
        }
        None if version.len() == 1 => format!("{version}.0"),
        _ => return None,
    };
    if !version.as_bytes()[0].is_ascii_digit() {
        return None;
    }
    Some(format!(
        "{family}-{version}-{}",
        if later { "or-later" } else { "only" }
    ))
}

/// `LicenseRef-<name>` (characters SPDX does not allow become `-`),
/// remembered once.
fn reference(name: &str, refs: &mut Vec<(String, String)>) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let id = format!("LicenseRef-{clean}");
    if !refs.iter().any(|(i, _)| *i == id) {
        refs.push((id.clone(), name.to_string()));
    }
    id
}

/// SPDX's grammar: `expr = term (OR term)*`, `term = factor (AND
/// factor)*`, `factor = id [WITH id] | ( expr )`.
struct Parser<'a> {
    tokens: &'a [String],
    at: usize,
}

impl Parser<'_> {
    fn valid(tokens: &[String]) -> bool {
        let mut p = Parser { tokens, at: 0 };
        p.expr(0) && p.at == tokens.len()
    }

    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.at).map(String::as_str)
    }

    fn expr(&mut self, depth: usize) -> bool {
        if depth > 64 || !self.term(depth) {
            return false;
        }
        while self.peek() == Some("OR") {
            self.at += 1;
            if !self.term(depth) {
                return false;
            }
        }
        true
    }

    fn term(&mut self, depth: usize) -> bool {
        if !self.factor(depth) {
            return false;
        }
        while self.peek() == Some("AND") {
            self.at += 1;
            if !self.factor(depth) {
                return false;
            }
        }
        true
    }

    fn factor(&mut self, depth: usize) -> bool {
        match self.peek() {
            Some("(") => {
                self.at += 1;
                if !self.expr(depth + 1) || self.peek() != Some(")") {
                    return false;
                }
                self.at += 1;
                true
            }
            Some(t) if !is_operator(t) => {
                self.at += 1;
                if self.peek() == Some("WITH") {
                    self.at += 1;
                    match self.peek() {
                        Some(e) if !is_operator(e) => self.at += 1,
                        _ => return false,
                    }
                }
                true
            }
            _ => false,
        }
    }
}

fn is_operator(t: &str) -> bool {
    matches!(t, "(" | ")" | "AND" | "OR" | "WITH")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expr(s: &str) -> String {
        convert(s).expression
    }

    #[test]
    fn oe_syntax_becomes_spdx() {
        assert_eq!(
            expr("GPL-2.0-only & LGPL-2.1-or-later"),
            "GPL-2.0-only AND LGPL-2.1-or-later"
        );
        assert_eq!(
            expr("GPL-2.0-only&(MIT|bsd-3-clause)"),
            "GPL-2.0-only AND (MIT OR BSD-3-Clause)"
        );
        assert_eq!(
            expr("GPL-2.0-only AND bzip2-1.0.6"),
            "GPL-2.0-only AND bzip2-1.0.6"
        );
        assert_eq!(
            expr("GPL-2.0-only WITH Linux-syscall-note"),
            "GPL-2.0-only WITH Linux-syscall-note"
        );
        assert_eq!(expr("Zlib"), "Zlib");
        assert_eq!(expr(""), "NOASSERTION");
        assert_eq!(expr("CLOSED"), "NONE");
    }

    #[test]
    fn old_names_map_as_oe_maps_them() {
        for (old, new) in [
            ("GPLv2", "GPL-2.0-only"),
            ("GPLv2+", "GPL-2.0-or-later"),
            ("GPL-2.0+", "GPL-2.0-or-later"),
            ("GPL-3", "GPL-3.0-only"),
            ("LGPLv2.1", "LGPL-2.1-only"),
            ("LGPL2.1+", "LGPL-2.1-or-later"),
            ("LGPL-2.0", "LGPL-2.0-only"),
            ("AGPLv3.0+", "AGPL-3.0-or-later"),
            ("MPLv2", "MPL-2.0"),
            ("openssl", "OpenSSL"),
        ] {
            assert_eq!(expr(old), new, "{old}");
        }
    }

    #[test]
    fn unknown_names_become_declared_refs() {
        let c = convert("Proprietary & MIT | Foo+Bar");
        assert_eq!(
            c.expression,
            "LicenseRef-Proprietary AND MIT OR LicenseRef-Foo-Bar"
        );
        assert_eq!(
            c.refs,
            vec![
                ("LicenseRef-Proprietary".into(), "Proprietary".into()),
                ("LicenseRef-Foo-Bar".into(), "Foo+Bar".into())
            ]
        );
        let c = convert("GPL-2.0-only WITH Strange-exception");
        assert_eq!(
            c.expression,
            "GPL-2.0-only AND LicenseRef-Strange-exception"
        );
    }

    #[test]
    fn broken_expressions_are_noassertion() {
        for bad in [
            "MIT &", "(MIT", "MIT)", "& MIT", "MIT MIT", "MIT WITH", "()",
        ] {
            assert_eq!(expr(bad), "NOASSERTION", "{bad}");
        }
        let deep = format!("{}MIT{}", "(".repeat(100), ")".repeat(100));
        assert_eq!(expr(&deep), "NOASSERTION");
    }

    #[test]
    fn the_license_list_is_there() {
        assert!(license_names().count() > 500);
        assert_eq!(
            listed(license_names(), "gpl-2.0-only"),
            Some("GPL-2.0-only")
        );
        assert_eq!(
            listed(exception_names(), "classpath-exception-2.0"),
            Some("Classpath-exception-2.0")
        );
        assert_eq!(listed(license_names(), "Not-A-License"), None);
    }
}

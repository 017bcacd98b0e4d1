//! What kind of SBOM a file holds, told by its content: the artifact type
//! of its referrer depends on it, and scanners pick SBOMs by that type.
//!
//! - SPDX 2 JSON: a `spdxVersion` of `SPDX-2.x` -> `application/spdx+json`
//!   (IANA, and what Trivy looks for).
//! - SPDX 3 JSON-LD: an `@context` of `https://spdx.org/rdf/3.x/...` (what
//!   OE's create-spdx-3.0 writes) -> `application/spdx3+json`, the type
//!   IANA registered for SPDX 3 JSON, which says it is not compatible with
//!   `application/spdx+json`: a scanner that reads SPDX 2 must not be handed
//!   SPDX 3 under its type.
//! - CycloneDX JSON: `bomFormat` `CycloneDX` -> `application/vnd.cyclonedx+json`.
//!
//! The file is streamed through a parser that keeps only those keys, so a
//! large SBOM costs no memory; anything else is refused in one line.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const SPDX: &str = "application/spdx+json";
pub const SPDX3: &str = "application/spdx3+json";
pub const CYCLONEDX: &str = "application/vnd.cyclonedx+json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Spdx2,
    Spdx3,
    CycloneDx,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Spdx2, Kind::Spdx3, Kind::CycloneDx];

    /// The media type, used as the referrer's artifact type.
    pub fn media_type(self) -> &'static str {
        match self {
            Kind::Spdx2 => SPDX,
            Kind::Spdx3 => SPDX3,
            Kind::CycloneDx => CYCLONEDX,
        }
    }

    pub fn from_media_type(t: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.media_type() == t)
    }

    /// A short name users may give (`spdx`, `spdx3`, `cyclonedx`).
    pub fn short(self) -> &'static str {
        match self {
            Kind::Spdx2 => "spdx",
            Kind::Spdx3 => "spdx3",
            Kind::CycloneDx => "cyclonedx",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Spdx2 => "SPDX 2 JSON",
            Kind::Spdx3 => "SPDX 3 JSON-LD",
            Kind::CycloneDx => "CycloneDX JSON",
        })
    }
}

/// An SBOM that can't be used, with the file it concerns.
#[derive(Debug)]
pub struct SbomError {
    pub path: PathBuf,
    pub what: String,
    pub source: Option<io::Error>,
}

impl fmt::Display for SbomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.what)?;
        if let Some(e) = &self.source {
            write!(f, ": {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SbomError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

/// The kind of SBOM in the file at `path`.
pub fn detect(path: &Path) -> Result<Kind, SbomError> {
    let fail = |e: io::Error| SbomError {
        path: path.to_path_buf(),
        what: "can't read it".into(),
        source: Some(e),
    };
    let file = File::open(path).map_err(fail)?;
    if !file.metadata().map_err(fail)?.is_file() {
        return Err(SbomError {
            path: path.to_path_buf(),
            what: "not a regular file".into(),
            source: None,
        });
    }
    detect_in(BufReader::new(file)).map_err(|what| SbomError {
        path: path.to_path_buf(),
        what,
        source: None,
    })
}

/// The top-level keys that say what a document is; the rest is skipped.
#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "spdxVersion", default)]
    spdx_version: Option<serde_json::Value>,
    #[serde(rename = "bomFormat", default)]
    bom_format: Option<serde_json::Value>,
    #[serde(rename = "@context", default)]
    context: Option<serde_json::Value>,
}

/// The kind of SBOM `input` holds, or why it is none.
pub fn detect_in(mut input: impl Read) -> Result<Kind, String> {
    let mut head = Vec::new();
    (&mut input)
        .take(64)
        .read_to_end(&mut head)
        .map_err(|e| e.to_string())?;
    let start = head.iter().position(|b| !b.is_ascii_whitespace());
    let first = start.map(|i| head[i]);
    const REFUSED: &str =
        "not an SBOM rustimage can attach (SPDX 2 JSON, SPDX 3 JSON-LD or CycloneDX JSON)";
    match first {
        Some(b'<') => {
            return Err(format!(
                "{REFUSED}: XML (CycloneDX XML? give its JSON form)"
            ));
        }
        Some(b'{') => {}
        _ if head.starts_with(b"SPDXVersion:")
            || head.windows(12).any(|w| w == b"SPDXVersion:") =>
        {
            return Err(format!("{REFUSED}: SPDX tag-value (give its JSON form)"));
        }
        None => return Err(format!("{REFUSED}: the file is empty")),
        _ => return Err(format!("{REFUSED}: not a JSON object")),
    }
    let reader = io::Cursor::new(head).chain(input);
    let probe: Probe =
        serde_json::from_reader(reader).map_err(|e| format!("{REFUSED}: invalid JSON ({e})"))?;
    let text =
        |v: &Option<serde_json::Value>| v.as_ref().and_then(|v| v.as_str().map(str::to_string));
    if let Some(v) = text(&probe.spdx_version) {
        if v.starts_with("SPDX-2.") {
            return Ok(Kind::Spdx2);
        }
        return Err(format!(
            "{REFUSED}: spdxVersion '{}' is not SPDX 2",
            shorten(&v)
        ));
    }
    if text(&probe.bom_format).as_deref() == Some("CycloneDX") {
        return Ok(Kind::CycloneDx);
    }
    let spdx3 = |s: &str| s.starts_with("https://spdx.org/rdf/3.") && s.ends_with(".jsonld");
    let context = match &probe.context {
        Some(serde_json::Value::String(s)) => spdx3(s),
        Some(serde_json::Value::Array(items)) => {
            items.iter().any(|i| i.as_str().is_some_and(spdx3))
        }
        _ => false,
    };
    if context {
        return Ok(Kind::Spdx3);
    }
    Err(format!(
        "{REFUSED}: a JSON object with neither spdxVersion, bomFormat \"CycloneDX\" nor an SPDX 3 @context"
    ))
}

fn shorten(s: &str) -> String {
    s.chars().take(40).flat_map(char::escape_default).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(s: &str) -> Result<Kind, String> {
        detect_in(s.as_bytes())
    }

    #[test]
    fn each_kind_by_its_content() {
        assert_eq!(
            kind(r#"{"spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-DOCUMENT"}"#),
            Ok(Kind::Spdx2)
        );
        assert_eq!(
            kind(r#"  {"@context":"https://spdx.org/rdf/3.0.1/spdx-context.jsonld","@graph":[]}"#),
            Ok(Kind::Spdx3)
        );
        assert_eq!(
            kind(r#"{"@context":["https://spdx.org/rdf/3.0.1/spdx-context.jsonld",{"x":"y"}]}"#),
            Ok(Kind::Spdx3)
        );
        assert_eq!(
            kind(
                r#"{"$schema":"http://cyclonedx.org/schema/bom-1.6.schema.json","bomFormat":"CycloneDX","specVersion":"1.6"}"#
            ),
            Ok(Kind::CycloneDx)
        );
        assert_eq!(Kind::from_media_type(SPDX3), Some(Kind::Spdx3));
    }

    #[test]
    fn anything_else_is_refused_in_one_line() {
        for (input, why) in [
            ("", "empty"),
            (
                "<bom xmlns=\"http://cyclonedx.org/schema/bom/1.6\"/>",
                "XML",
            ),
            ("SPDXVersion: SPDX-2.3\nDataLicense: CC0-1.0\n", "tag-value"),
            ("[1,2]", "not a JSON object"),
            ("{\"spdxVersion\":\"SPDX-3.0\"}", "not SPDX 2"),
            ("{\"bomFormat\":\"Other\"}", "neither"),
            (
                "{\"@context\":\"https://www.w3.org/ns/activitystreams\"}",
                "neither",
            ),
            ("{\"spdxVersion\":", "invalid JSON"),
            ("{} trailing", "invalid JSON"),
        ] {
            let e = kind(input).unwrap_err();
            assert!(e.contains(why), "{input}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}

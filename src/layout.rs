//! Reads an image back: an archive written by `build -o` (or `docker save`)
//! or an OCI layout directory. Used by `inspect` (and later `push`).

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// JSON documents larger than this are refused (a manifest or config is a
/// few KiB; this guards against reading a layer as JSON).
const MAX_JSON: u64 = 16 << 20;

#[derive(Debug)]
pub struct Error {
    pub path: PathBuf,
    pub reason: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for Error {}

pub enum Layout {
    Dir(PathBuf),
    /// Member name -> (offset, size) in the archive.
    Archive {
        path: PathBuf,
        members: HashMap<String, (u64, u64)>,
    },
}

impl Layout {
    pub fn open(path: &Path) -> Result<Layout, Error> {
        let fail = |reason: String| Error {
            path: path.to_path_buf(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
        if meta.is_dir() {
            return Ok(Layout::Dir(path.to_path_buf()));
        }
        let file = File::open(path).map_err(|e| fail(e.to_string()))?;
        let mut archive = tar::Archive::new(file);
        let mut members = HashMap::new();
        let entries = archive
            .entries_with_seek()
            .map_err(|e| fail(format!("not an image archive: {e}")))?;
        for entry in entries {
            let entry = entry.map_err(|e| fail(format!("not an image archive: {e}")))?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let name = name.trim_start_matches("./").to_string();
            members.insert(name, (entry.raw_file_position(), entry.size()));
        }
        if members.is_empty() {
            return Err(fail("not an image archive: no files in it".into()));
        }
        Ok(Layout::Archive {
            path: path.to_path_buf(),
            members,
        })
    }

    pub fn path(&self) -> &Path {
        match self {
            Layout::Dir(p) | Layout::Archive { path: p, .. } => p,
        }
    }

    pub fn error(&self, reason: String) -> Error {
        Error {
            path: self.path().to_path_buf(),
            reason,
        }
    }

    pub fn has(&self, name: &str) -> bool {
        match self {
            Layout::Dir(d) => d.join(name).is_file(),
            Layout::Archive { members, .. } => members.contains_key(name),
        }
    }

    /// Opens a member (`index.json`, `blobs/sha256/<hex>`) with its size.
    pub fn open_member(&self, name: &str) -> Result<(Box<dyn Read + Send>, u64), Error> {
        match self {
            Layout::Dir(d) => {
                let f = File::open(d.join(name)).map_err(|e| self.error(format!("{name}: {e}")))?;
                let size = f
                    .metadata()
                    .map_err(|e| self.error(format!("{name}: {e}")))?
                    .len();
                Ok((Box::new(f), size))
            }
            Layout::Archive { path, members } => {
                let &(offset, size) = members
                    .get(name)
                    .ok_or_else(|| self.error(format!("{name}: not in the archive")))?;
                let mut f = File::open(path).map_err(|e| self.error(e.to_string()))?;
                f.seek(SeekFrom::Start(offset))
                    .map_err(|e| self.error(e.to_string()))?;
                Ok((Box::new(f.take(size)), size))
            }
        }
    }

    /// Opens a member at `offset` bytes into it.
    pub fn open_at(&self, name: &str, offset: u64) -> Result<Box<dyn Read + Send>, Error> {
        let (path, start, size) = match self {
            Layout::Dir(d) => {
                let p = d.join(name);
                let size = std::fs::metadata(&p)
                    .map_err(|e| self.error(format!("{name}: {e}")))?
                    .len();
                (p, 0, size)
            }
            Layout::Archive { path, members } => {
                let &(start, size) = members
                    .get(name)
                    .ok_or_else(|| self.error(format!("{name}: not in the archive")))?;
                (path.clone(), start, size)
            }
        };
        let mut f = File::open(&path).map_err(|e| self.error(format!("{name}: {e}")))?;
        f.seek(SeekFrom::Start(start + offset.min(size)))
            .map_err(|e| self.error(e.to_string()))?;
        Ok(Box::new(f.take(size - offset.min(size))))
    }

    /// A member's bytes exactly as stored (manifests must not be
    /// re-serialised: their digest is of these bytes).
    pub fn bytes(&self, name: &str) -> Result<Vec<u8>, Error> {
        let (mut r, size) = self.open_member(name)?;
        if size > MAX_JSON {
            return Err(self.error(format!("{name}: {size} bytes is too big for a manifest")));
        }
        let mut buf = Vec::with_capacity(size as usize);
        r.read_to_end(&mut buf)
            .map_err(|e| self.error(format!("{name}: {e}")))?;
        Ok(buf)
    }

    /// Reads a small JSON member.
    pub fn json(&self, name: &str) -> Result<serde_json::Value, Error> {
        let buf = self.bytes(name)?;
        serde_json::from_slice(&buf).map_err(|e| self.error(format!("{name}: invalid JSON: {e}")))
    }

    /// The member path of a blob, checking the digest's form so a hostile
    /// index can't name files outside `blobs/`.
    pub fn blob_name(&self, digest: &str) -> Result<String, Error> {
        match digest.split_once(':') {
            Some(("sha256", hex))
                if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                Ok(format!("blobs/sha256/{hex}"))
            }
            _ => Err(self.error(format!("unsupported or malformed digest '{digest}'"))),
        }
    }
}

/// One image found in a layout: its manifest, config and names.
pub struct Found {
    pub names: Vec<String>,
    pub manifest_digest: Option<String>,
    pub manifest: Option<serde_json::Value>,
    pub config: serde_json::Value,
    /// (digest or path, size, media type) of each layer.
    pub layers: Vec<(String, Option<u64>, Option<String>)>,
}

/// Every image in the layout (OCI index first, Docker manifest.json if the
/// layout has no index).
pub fn images(layout: &Layout) -> Result<Vec<Found>, Error> {
    if layout.has("index.json") {
        let index = layout.json("index.json")?;
        let mut by_digest: Vec<Found> = Vec::new();
        for desc in index["manifests"].as_array().into_iter().flatten() {
            let digest = desc["digest"].as_str().unwrap_or_default().to_string();
            let name = desc["annotations"][crate::image::REF_NAME]
                .as_str()
                .map(str::to_string);
            if let Some(f) = by_digest
                .iter_mut()
                .find(|f| f.manifest_digest.as_deref() == Some(&digest))
            {
                f.names.extend(name);
                continue;
            }
            let manifest = layout.json(&layout.blob_name(&digest)?)?;
            if let Some(children) = manifest["manifests"].as_array() {
                // An index: one entry per platform image in it.
                for child in children {
                    let d = child["digest"].as_str().unwrap_or_default().to_string();
                    let m = layout.json(&layout.blob_name(&d)?)?;
                    by_digest.push(found(layout, name.clone().into_iter().collect(), d, m)?);
                }
                continue;
            }
            by_digest.push(found(layout, name.into_iter().collect(), digest, manifest)?);
        }
        return Ok(by_digest);
    }
    if layout.has("manifest.json") {
        let list = layout.json("manifest.json")?;
        let mut out = Vec::new();
        for m in list.as_array().into_iter().flatten() {
            let config = layout.json(m["Config"].as_str().unwrap_or_default())?;
            out.push(Found {
                names: m["RepoTags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect(),
                manifest_digest: None,
                manifest: None,
                config,
                layers: m["Layers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|l| l.as_str())
                    .map(|l| (l.to_string(), layout_size(layout, l), None))
                    .collect(),
            });
        }
        return Ok(out);
    }
    Err(layout.error("neither index.json nor manifest.json: not an image".into()))
}

fn found(
    layout: &Layout,
    names: Vec<String>,
    digest: String,
    manifest: serde_json::Value,
) -> Result<Found, Error> {
    let config_digest = manifest["config"]["digest"].as_str().unwrap_or_default();
    let config = layout.json(&layout.blob_name(config_digest)?)?;
    let layers = manifest["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            (
                l["digest"].as_str().unwrap_or_default().to_string(),
                l["size"].as_u64(),
                l["mediaType"].as_str().map(str::to_string),
            )
        })
        .collect();
    Ok(Found {
        names,
        manifest_digest: Some(digest),
        manifest: Some(manifest),
        config,
        layers,
    })
}

fn layout_size(layout: &Layout, name: &str) -> Option<u64> {
    layout.open_member(name).ok().map(|(_, s)| s)
}

//! Reads an image back into an [`ImageSet`]: an archive (rustimage's own,
//! `docker save`'s of any Docker version, an oci-archive) or an OCI layout
//! directory. Every name and size read from one is checked here, once:
//! digests parse, every blob exists with the size its descriptor gives,
//! JSON documents are small and hash to their digests, and member names
//! stay inside the layout (no `..`, no symlinks out of a directory).
//!
//! Layer blobs are not read: they stay where they are, opened on demand.
//!
//! Referrers (artifacts such as SBOMs attached to an image) are not listed
//! anywhere in a layout (see [`referrer`](super::referrer)): they are found
//! among the blobs `index.json` does not reach, as small JSON manifests
//! whose `subject` is a document of the set. Only blobs of at most
//! [`MAX_REFERRER`] bytes that start with `{` are read, and at most
//! [`MAX_CANDIDATES`] of them, so the search costs little and stays
//! bounded on any input.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::blob::{Blob, Source};
use super::digest::Digest;
use super::docs::{Descriptor, Index, Manifest, canonical};
use super::media;
use super::set::ImageSet;

/// A manifest or config is a few KiB; this guards against reading a layer
/// as JSON.
const MAX_JSON: u64 = 16 << 20;
/// Indexes nest (an index of per-platform images); deeper is hostile.
const MAX_DEPTH: usize = 4;
/// The largest blob taken for a referrer manifest (one is under 1 KiB).
pub const MAX_REFERRER: u64 = 64 << 10;
/// Most unlisted small JSON blobs looked at for referrers.
pub const MAX_CANDIDATES: usize = 4096;

/// What is wrong with an image archive or layout, and which one.
#[derive(Debug)]
pub struct LayoutError {
    pub path: PathBuf,
    pub what: String,
    pub source: Option<io::Error>,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.what)?;
        if let Some(e) = &self.source {
            write!(f, ": {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LayoutError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

/// Reads the image archive or layout directory at `path`.
pub fn read(path: &Path) -> Result<ImageSet, LayoutError> {
    let store = Store::open(path)?;
    let mut set = ImageSet::new();
    if store.member("index.json")?.is_some() {
        let index: Index = store.json("index.json")?;
        for entry in index.manifests {
            store.load(&mut set, &entry, 0)?;
            set.entries.push(entry);
        }
        store.load_referrers(&mut set)?;
        return Ok(set);
    }
    if store.member("manifest.json")?.is_some() {
        store.load_docker(&mut set)?;
        return Ok(set);
    }
    Err(store.error("neither index.json nor manifest.json: not an image"))
}

/// Where the members are.
enum Store {
    Dir(PathBuf),
    /// An archive: member name -> (offset, size).
    Archive {
        path: PathBuf,
        members: HashMap<String, (u64, u64)>,
    },
}

impl Store {
    fn open(path: &Path) -> Result<Store, LayoutError> {
        let fail = |what: &str, e: io::Error| LayoutError {
            path: path.to_path_buf(),
            what: what.to_string(),
            source: Some(e),
        };
        let meta = std::fs::metadata(path).map_err(|e| fail("can't read it", e))?;
        if meta.is_dir() {
            return Ok(Store::Dir(path.to_path_buf()));
        }
        let file = File::open(path).map_err(|e| fail("can't read it", e))?;
        let mut archive = tar::Archive::new(file);
        let mut members = HashMap::new();
        let entries = archive
            .entries_with_seek()
            .map_err(|e| fail("not an image archive", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| fail("not an image archive", e))?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let Ok(name) = std::str::from_utf8(&entry.path_bytes()).map(str::to_string) else {
                continue;
            };
            let name = name.trim_start_matches("./").to_string();
            members.insert(name, (entry.raw_file_position(), entry.size()));
        }
        if members.is_empty() {
            return Err(LayoutError {
                path: path.to_path_buf(),
                what: "not an image archive: no files in it".into(),
                source: None,
            });
        }
        Ok(Store::Archive {
            path: path.to_path_buf(),
            members,
        })
    }

    fn path(&self) -> &Path {
        match self {
            Store::Dir(p) | Store::Archive { path: p, .. } => p,
        }
    }

    fn error(&self, what: impl Into<String>) -> LayoutError {
        LayoutError {
            path: self.path().to_path_buf(),
            what: what.into(),
            source: None,
        }
    }

    /// A member's bytes and size, `None` when absent. Names that would
    /// leave the layout (absolute, `..`, through a symlink) are errors.
    fn member(&self, name: &str) -> Result<Option<(Source, u64)>, LayoutError> {
        let inside = !name.is_empty()
            && !name.contains('\0')
            && Path::new(name)
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !inside {
            return Err(self.error(format!("'{}' is not a name inside the image", show(name))));
        }
        match self {
            Store::Archive { path, members } => {
                let name = name.trim_start_matches("./");
                Ok(members.get(name).map(|&(offset, size)| {
                    (
                        Source::Range {
                            file: path.clone(),
                            offset,
                        },
                        size,
                    )
                }))
            }
            Store::Dir(dir) => {
                // Every step must be a real directory and the end a regular
                // file: a symlink could lead anywhere on this machine.
                let mut at = dir.clone();
                let parts: Vec<_> = Path::new(name).components().collect();
                for (i, part) in parts.iter().enumerate() {
                    at.push(part);
                    let meta = match std::fs::symlink_metadata(&at) {
                        Ok(m) => m,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                        Err(e) => {
                            return Err(LayoutError {
                                path: dir.clone(),
                                what: format!("{name}: can't read it"),
                                source: Some(e),
                            });
                        }
                    };
                    let last = i + 1 == parts.len();
                    let ok = if last { meta.is_file() } else { meta.is_dir() };
                    if !ok {
                        return Err(self.error(format!(
                            "{name}: {} is not a regular {}",
                            at.display(),
                            if last { "file" } else { "directory" }
                        )));
                    }
                    if last {
                        return Ok(Some((Source::File(at), meta.len())));
                    }
                }
                Ok(None)
            }
        }
    }

    /// A small member, whole.
    fn bytes(&self, name: &str) -> Result<Vec<u8>, LayoutError> {
        let (source, size) = self
            .member(name)?
            .ok_or_else(|| self.error(format!("{name}: not in the image")))?;
        if size > MAX_JSON {
            return Err(self.error(format!(
                "{name}: {size} bytes is too big for a JSON document"
            )));
        }
        let mut buf = Vec::new();
        source
            .open_at(0, size)
            .and_then(|mut r| r.read_to_end(&mut buf))
            .map_err(|e| LayoutError {
                path: self.path().to_path_buf(),
                what: format!("{name}: can't read it"),
                source: Some(e),
            })?;
        Ok(buf)
    }

    fn json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, LayoutError> {
        serde_json::from_slice(&self.bytes(name)?)
            .map_err(|e| self.error(format!("{name}: invalid: {e}")))
    }

    /// The blob a descriptor names, checked to exist with its size.
    fn blob(&self, d: &Descriptor) -> Result<Blob, LayoutError> {
        let name = d.digest.blob_path();
        let (source, size) = self
            .member(&name)?
            .ok_or_else(|| self.error(format!("blob {} is missing", d.digest)))?;
        if size != d.size {
            return Err(self.error(format!(
                "blob {} is {size} bytes, its descriptor says {}",
                d.digest, d.size
            )));
        }
        Ok(Blob {
            digest: d.digest,
            size,
            media_type: d.media_type.clone(),
            source,
        })
    }

    /// A JSON document a descriptor names, read and checked against its
    /// digest.
    fn doc(&self, d: &Descriptor) -> Result<Blob, LayoutError> {
        self.blob(d)?;
        let bytes = self.bytes(&d.digest.blob_path())?;
        if Digest::of(&bytes) != d.digest {
            return Err(self.error(format!("blob {} does not match its digest", d.digest)));
        }
        Ok(Blob::bytes(&d.media_type, bytes))
    }

    /// Adds what `d` (an index, a manifest or another blob) leads to.
    fn load(&self, set: &mut ImageSet, d: &Descriptor, depth: usize) -> Result<(), LayoutError> {
        if depth > MAX_DEPTH {
            return Err(self.error("indexes nested too deep"));
        }
        if set.blob(&d.digest).is_some() {
            return Ok(());
        }
        if media::is_index(&d.media_type) {
            let doc = self.doc(d)?;
            let index: Index = parse(self, &doc)?;
            set.add(doc);
            for child in &index.manifests {
                self.load(set, child, depth + 1)?;
            }
        } else if media::is_manifest(&d.media_type) {
            let doc = self.doc(d)?;
            let manifest: Manifest = parse(self, &doc)?;
            set.add(doc);
            set.add(self.doc(&manifest.config)?);
            for layer in &manifest.layers {
                set.add(self.blob(layer)?);
            }
        } else {
            set.add(self.blob(d)?);
        }
        Ok(())
    }

    /// Every member under `blobs/sha256/` whose name is a digest, with
    /// where its bytes are and its size, in name order.
    fn blob_members(&self) -> Result<Vec<(Digest, Source, u64)>, LayoutError> {
        let mut names: Vec<String> = match self {
            Store::Archive { members, .. } => members
                .keys()
                .filter(|n| n.starts_with("blobs/sha256/"))
                .cloned()
                .collect(),
            Store::Dir(dir) => match std::fs::read_dir(dir.join("blobs/sha256")) {
                Ok(entries) => entries
                    .filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .map(|n| format!("blobs/sha256/{n}"))
                    .collect(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                Err(e) => {
                    return Err(LayoutError {
                        path: dir.clone(),
                        what: "blobs/sha256: can't read it".into(),
                        source: Some(e),
                    });
                }
            },
        };
        names.sort();
        let mut out = Vec::new();
        for name in names {
            let Some(hex) = name.strip_prefix("blobs/sha256/") else {
                continue;
            };
            let Ok(digest) = Digest::parse(&format!("sha256:{hex}")) else {
                continue;
            };
            if let Some((source, size)) = self.member(&name)? {
                out.push((digest, source, size));
            }
        }
        Ok(out)
    }

    /// Adds the referrers of the set's documents (and theirs, in turn):
    /// unlisted blobs that are artifact manifests with a subject in the
    /// set.
    fn load_referrers(&self, set: &mut ImageSet) -> Result<(), LayoutError> {
        let mut candidates: Vec<(Digest, Vec<u8>, Digest)> = Vec::new();
        let mut looked = 0usize;
        for (digest, source, size) in self.blob_members()? {
            if set.blob(&digest).is_some() || !(2..=MAX_REFERRER).contains(&size) {
                continue;
            }
            let mut first = [0u8; 1];
            let blob = Blob {
                digest,
                size,
                media_type: String::new(),
                source,
            };
            let fail = |e: io::Error| LayoutError {
                path: self.path().to_path_buf(),
                what: format!("blob {digest}: can't read it"),
                source: Some(e),
            };
            blob.reader()
                .and_then(|mut r| r.read_exact(&mut first))
                .map_err(fail)?;
            if first[0] != b'{' {
                continue;
            }
            looked += 1;
            if looked > MAX_CANDIDATES {
                return Err(self.error(format!(
                    "more than {MAX_CANDIDATES} small JSON blobs that index.json does not \
                     reach: not an image layout"
                )));
            }
            let mut bytes = Vec::new();
            blob.reader()
                .and_then(|mut r| r.read_to_end(&mut bytes))
                .map_err(fail)?;
            let Ok(manifest) = serde_json::from_slice::<Manifest>(&bytes) else {
                continue;
            };
            let Some(subject) = manifest.subject.filter(|_| {
                manifest
                    .media_type
                    .as_deref()
                    .is_none_or(|t| t == media::MANIFEST)
            }) else {
                continue;
            };
            if Digest::of(&bytes) != digest {
                return Err(self.error(format!("blob {digest} does not match its digest")));
            }
            candidates.push((digest, bytes, subject.digest));
        }
        // A referrer's subject may itself be a referrer (a signature of an
        // SBOM): add until nothing more finds its subject.
        loop {
            let before = candidates.len();
            let mut left = Vec::new();
            for (digest, bytes, subject) in candidates {
                if set.blob(&subject).is_none_or(|b| b.in_memory().is_none()) {
                    left.push((digest, bytes, subject));
                    continue;
                }
                let doc = Blob::bytes(media::MANIFEST, bytes);
                let manifest: Manifest = parse(self, &doc)?;
                let mut parts = vec![self.blob(&manifest.config)?];
                for layer in &manifest.layers {
                    parts.push(self.blob(layer)?);
                }
                set.add_referrer(doc, parts)
                    .map_err(|e| self.error(format!("referrer {digest}: {e}")))?;
            }
            candidates = left;
            if candidates.len() == before || candidates.is_empty() {
                return Ok(());
            }
        }
    }

    /// A `docker save` archive without an OCI index (Docker before 25):
    /// each image of `manifest.json` becomes an OCI manifest over the same
    /// blobs, their digests computed as they are read.
    fn load_docker(&self, set: &mut ImageSet) -> Result<(), LayoutError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct SavedImage {
            config: String,
            #[serde(default)]
            repo_tags: Option<Vec<String>>,
            layers: Vec<String>,
        }
        let entries: Vec<SavedImage> = self.json("manifest.json")?;
        for e in entries {
            let config = Blob::bytes(media::CONFIG, self.bytes(&e.config)?);
            let mut layers = Vec::new();
            for name in &e.layers {
                layers.push(self.hashed(name)?);
            }
            let manifest = Manifest {
                schema_version: 2,
                media_type: Some(media::MANIFEST.to_string()),
                artifact_type: None,
                config: config.descriptor(),
                layers: layers.iter().map(Blob::descriptor).collect(),
                subject: None,
                annotations: Default::default(),
            };
            let manifest = Blob::bytes(media::MANIFEST, canonical(&manifest));
            let descriptor = manifest.descriptor();
            set.add(manifest);
            set.add(config);
            for l in layers {
                set.add(l);
            }
            set.add_entry(descriptor, &e.repo_tags.unwrap_or_default());
        }
        Ok(())
    }

    /// A member as a blob whose digest is computed by reading it; gzip
    /// layers are told apart from plain tar by their magic bytes.
    fn hashed(&self, name: &str) -> Result<Blob, LayoutError> {
        let (source, size) = self
            .member(name)?
            .ok_or_else(|| self.error(format!("{name}: not in the image")))?;
        let fail = |e: io::Error| LayoutError {
            path: self.path().to_path_buf(),
            what: format!("{name}: can't read it"),
            source: Some(e),
        };
        let mut reader = source.open_at(0, size).map_err(fail)?;
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut first = true;
        let mut gzip = false;
        loop {
            let n = reader.read(&mut buf).map_err(fail)?;
            if n == 0 {
                break;
            }
            if first {
                gzip = buf[..n].starts_with(&[0x1f, 0x8b]);
                first = false;
            }
            hash.update(&buf[..n]);
        }
        drop(reader);
        let media_type = if gzip {
            media::LAYER_GZIP
        } else {
            media::LAYER_TAR
        };
        Ok(Blob {
            digest: Digest::from_hasher(hash),
            size,
            media_type: media_type.to_string(),
            source,
        })
    }
}

fn parse<T: serde::de::DeserializeOwned>(store: &Store, doc: &Blob) -> Result<T, LayoutError> {
    serde_json::from_slice(doc.in_memory().unwrap_or_default())
        .map_err(|e| store.error(format!("document {}: invalid: {e}", doc.digest)))
}

fn show(s: &str) -> String {
    s.chars().take(80).flat_map(char::escape_default).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{Descriptor, referrer};

    /// A layout directory of one image (config, no layers); returns the
    /// image manifest's descriptor.
    fn layout(dir: &Path) -> Descriptor {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let put = |b: &Blob| {
            std::fs::write(dir.join(b.digest.blob_path()), b.in_memory().unwrap()).unwrap()
        };
        let config = Blob::bytes(
            media::CONFIG,
            br#"{"rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec(),
        );
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media::MANIFEST.into()),
            artifact_type: None,
            config: config.descriptor(),
            layers: Vec::new(),
            subject: None,
            annotations: Default::default(),
        };
        let manifest = Blob::bytes(media::MANIFEST, canonical(&manifest));
        put(&config);
        put(&manifest);
        let index = Index {
            schema_version: 2,
            media_type: Some(media::INDEX.into()),
            manifests: vec![manifest.descriptor()],
            annotations: Default::default(),
        };
        std::fs::write(dir.join("index.json"), canonical(&index)).unwrap();
        manifest.descriptor()
    }

    fn attach(dir: &Path, subject: &Descriptor, content: &[u8]) -> Blob {
        let content = Blob::bytes("application/spdx+json", content.to_vec());
        let doc = referrer::artifact(subject, &content, None, None);
        for b in [&content, &doc, &referrer::empty()] {
            std::fs::write(dir.join(b.digest.blob_path()), b.in_memory().unwrap()).unwrap();
        }
        doc
    }

    #[test]
    fn referrers_are_found_by_subject_and_others_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let image = layout(tmp.path());
        let sbom = attach(tmp.path(), &image, b"{\"spdxVersion\":\"SPDX-2.3\"}");
        // A referrer of the SBOM's referrer (a signature, say), and one of
        // an image that is not here.
        let signature = attach(tmp.path(), &sbom.descriptor(), b"{\"sig\":1}");
        let stranger = Descriptor::new(media::MANIFEST, Digest::of(b"elsewhere"), 9);
        attach(tmp.path(), &stranger, b"{\"x\":2}");
        let set = read(tmp.path()).unwrap();
        let listed: Vec<Digest> = set
            .referrers(&image.digest)
            .iter()
            .map(|d| d.digest)
            .collect();
        assert_eq!(listed, vec![sbom.digest]);
        assert_eq!(
            set.referrers(&image.digest)[0].artifact_type.as_deref(),
            Some("application/spdx+json")
        );
        let signed: Vec<Digest> = set
            .referrers(&sbom.digest)
            .iter()
            .map(|d| d.digest)
            .collect();
        assert_eq!(signed, vec![signature.digest]);
        assert!(set.referrers(&stranger.digest).is_empty());
        assert_eq!(set.entries.len(), 1);

        // A referrer whose content is missing makes the layout unreadable.
        let content = Blob::bytes(
            "application/spdx+json",
            b"{\"spdxVersion\":\"SPDX-2.3\"}".to_vec(),
        );
        std::fs::remove_file(tmp.path().join(content.digest.blob_path())).unwrap();
        let e = read(tmp.path()).map(|_| ()).unwrap_err();
        assert!(e.to_string().contains("is missing"), "{e}");
    }

    #[test]
    fn the_search_is_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        layout(tmp.path());
        for i in 0..=MAX_CANDIDATES {
            let b = format!("{{\"n\":{i}}}");
            let d = Digest::of(b.as_bytes());
            std::fs::write(tmp.path().join(d.blob_path()), b).unwrap();
        }
        let e = read(tmp.path()).map(|_| ()).unwrap_err();
        assert!(e.to_string().contains("small JSON blobs"), "{e}");
        // Big or non-JSON blobs are not looked at.
        let tmp = tempfile::tempdir().unwrap();
        layout(tmp.path());
        for i in 0..=MAX_CANDIDATES {
            let b = format!("[{i}]");
            let d = Digest::of(b.as_bytes());
            std::fs::write(tmp.path().join(d.blob_path()), b).unwrap();
        }
        assert!(read(tmp.path()).is_ok());
    }
}

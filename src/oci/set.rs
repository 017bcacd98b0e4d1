//! An image set: what one image layout holds. Blobs (each digest once, the
//! JSON documents among them kept as the exact bytes their digests were
//! computed from), the entries of the layout's `index.json` (images or
//! indexes, with the names the layout gives them) and the referrers of
//! those images: artifact manifests (SBOMs) whose `subject` is one of the
//! set's documents, kept by subject (see [`referrer`](super::referrer) for
//! why they are not entries). A built image, an index of several, and an
//! archive or layout directory read back are all image sets; the archive,
//! layout and registry sinks each take one.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::de::DeserializeOwned;

use super::blob::Blob;
use super::digest::Digest;
use super::docs::{CONTAINERD_NAME, Descriptor, ImageConfig, Index, Manifest, REF_NAME, canonical};
use super::media;
use super::referrer;

#[derive(Clone, Default)]
pub struct ImageSet {
    blobs: Vec<Blob>,
    by_digest: HashMap<Digest, usize>,
    /// `index.json`'s `manifests`, in order.
    pub entries: Vec<Descriptor>,
    /// Referrers by subject, each listed as the referrers API lists it
    /// (artifact type, annotations), in digest order: the same whether
    /// just attached or read back.
    referrers: BTreeMap<Digest, Vec<Descriptor>>,
}

/// One image of a set, resolved: its manifest and config, parsed.
pub struct Image {
    /// Names the layout gives it (several entries may name one image).
    pub names: Vec<String>,
    pub descriptor: Descriptor,
    pub manifest: Manifest,
    pub config: ImageConfig,
    /// What is attached to it (see [`ImageSet::referrers`]).
    pub referrers: Vec<Descriptor>,
}

/// A set that does not hold what its entries promise.
#[derive(Debug)]
pub enum SetError {
    Missing(Digest),
    NotInMemory(Digest),
    Json {
        digest: Digest,
        source: serde_json::Error,
    },
    /// A manifest or index of a type rustimage does not know.
    Unknown {
        digest: Digest,
        media_type: String,
    },
    /// A referrer that names no subject in the set.
    NoSubject(Digest),
}

impl fmt::Display for SetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetError::Missing(d) => write!(f, "blob {d} is missing"),
            SetError::NotInMemory(d) => write!(f, "document {d} was not read"),
            SetError::Json { digest, source } => write!(f, "document {digest}: {source}"),
            SetError::Unknown { digest, media_type } => {
                write!(
                    f,
                    "{digest} has media type {media_type}, not an image or index"
                )
            }
            SetError::NoSubject(d) => {
                write!(f, "referrer {d} has no subject in the image")
            }
        }
    }
}

impl std::error::Error for SetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SetError::Json { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl ImageSet {
    pub fn new() -> ImageSet {
        ImageSet::default()
    }

    /// Adds a blob; one already there (same digest) is kept.
    pub fn add(&mut self, blob: Blob) {
        if !self.by_digest.contains_key(&blob.digest) {
            self.by_digest.insert(blob.digest, self.blobs.len());
            self.blobs.push(blob);
        }
    }

    /// Adds every blob of `other` and its referrers (its entries are not
    /// added).
    pub fn add_blobs_of(&mut self, other: &ImageSet) {
        for b in &other.blobs {
            self.add(b.clone());
        }
        for (subject, list) in &other.referrers {
            for d in list {
                self.list_referrer(*subject, d.clone());
            }
        }
    }

    /// Adds the referrer `doc` (an artifact manifest) with the blobs it
    /// names (`parts`: its config and layers). Its subject must be a
    /// document of the set already. Returns how referrers lists name it.
    pub fn add_referrer(&mut self, doc: Blob, parts: Vec<Blob>) -> Result<Descriptor, SetError> {
        let bytes = doc.in_memory().ok_or(SetError::NotInMemory(doc.digest))?;
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|source| SetError::Json {
                digest: doc.digest,
                source,
            })?;
        let subject = manifest
            .subject
            .as_ref()
            .filter(|s| {
                self.blob(&s.digest)
                    .is_some_and(|b| b.in_memory().is_some())
            })
            .ok_or(SetError::NoSubject(doc.digest))?
            .digest;
        for part in parts {
            self.add(part);
        }
        self.parts_of(&manifest)?;
        let listed = referrer::listing(&doc, &manifest);
        self.add(doc);
        self.list_referrer(subject, listed.clone());
        Ok(listed)
    }

    fn list_referrer(&mut self, subject: Digest, listed: Descriptor) {
        let list = self.referrers.entry(subject).or_default();
        if let Err(at) = list.binary_search_by(|d| d.digest.cmp(&listed.digest)) {
            list.insert(at, listed);
        }
    }

    /// What is attached to the document `subject`, as referrers lists name
    /// it, in digest order.
    pub fn referrers(&self, subject: &Digest) -> &[Descriptor] {
        self.referrers.get(subject).map_or(&[], Vec::as_slice)
    }

    /// Every subject with referrers, in digest order.
    pub fn subjects(&self) -> impl Iterator<Item = &Digest> {
        self.referrers.keys()
    }

    pub fn blobs(&self) -> &[Blob] {
        &self.blobs
    }

    pub fn blob(&self, digest: &Digest) -> Option<&Blob> {
        self.by_digest.get(digest).map(|&i| &self.blobs[i])
    }

    /// Lists `descriptor` in `index.json`, once per name (or once unnamed),
    /// named as podman and containerd expect: the name as the user wrote it
    /// in both annotations (podman prefers the containerd one and qualifies
    /// a short name with localhost/, where docker.io/... would stay
    /// docker.io).
    pub fn add_entry(&mut self, descriptor: Descriptor, names: &[String]) {
        if names.is_empty() {
            self.entries.push(descriptor);
            return;
        }
        for name in names {
            let mut d = descriptor.clone();
            d.annotations
                .insert(CONTAINERD_NAME.to_string(), name.clone());
            d.annotations.insert(REF_NAME.to_string(), name.clone());
            self.entries.push(d);
        }
    }

    /// A JSON document of the set, parsed.
    pub fn doc<T: DeserializeOwned>(&self, digest: &Digest) -> Result<T, SetError> {
        let blob = self.blob(digest).ok_or(SetError::Missing(*digest))?;
        let bytes = blob.in_memory().ok_or(SetError::NotInMemory(*digest))?;
        serde_json::from_slice(bytes).map_err(|source| SetError::Json {
            digest: *digest,
            source,
        })
    }

    /// Every image the entries lead to (through indexes), each once, with
    /// the names of the entries that name it.
    pub fn images(&self) -> Result<Vec<Image>, SetError> {
        let mut out: Vec<Image> = Vec::new();
        for entry in &self.entries {
            for desc in self.manifests_of(entry)? {
                let name = entry.ref_name().map(str::to_string);
                if let Some(seen) = out.iter_mut().find(|i| i.descriptor.digest == desc.digest) {
                    seen.names.extend(name);
                    continue;
                }
                let manifest: Manifest = self.doc(&desc.digest)?;
                let config = self.doc(&manifest.config.digest)?;
                out.push(Image {
                    names: name.into_iter().collect(),
                    referrers: self.referrers(&desc.digest).to_vec(),
                    descriptor: desc,
                    manifest,
                    config,
                });
            }
        }
        Ok(out)
    }

    /// The image manifests `entry` stands for: itself, or an index's.
    pub fn manifests_of(&self, entry: &Descriptor) -> Result<Vec<Descriptor>, SetError> {
        if media::is_manifest(&entry.media_type) {
            return Ok(vec![entry.clone()]);
        }
        if media::is_index(&entry.media_type) {
            let index: Index = self.doc(&entry.digest)?;
            let mut out = Vec::new();
            for child in index.manifests {
                if media::is_manifest(&child.media_type) {
                    out.push(child);
                }
            }
            return Ok(out);
        }
        Err(SetError::Unknown {
            digest: entry.digest,
            media_type: entry.media_type.clone(),
        })
    }

    /// The blobs an image manifest needs: config, then layers.
    pub fn parts_of(&self, manifest: &Manifest) -> Result<Vec<&Blob>, SetError> {
        std::iter::once(&manifest.config)
            .chain(&manifest.layers)
            .map(|d| self.blob(&d.digest).ok_or(SetError::Missing(d.digest)))
            .collect()
    }

    /// The `index.json` of a layout holding this set.
    pub fn index_json(&self) -> Vec<u8> {
        canonical(&Index {
            schema_version: 2,
            media_type: Some(media::INDEX.to_string()),
            manifests: self.entries.clone(),
            annotations: Default::default(),
        })
    }
}

/// The `oci-layout` file.
pub fn oci_layout() -> &'static [u8] {
    br#"{"imageLayoutVersion":"1.0.0"}"#
}

//! Image: the OCI config, manifest and index for a set of layers, as
//! canonical JSON (keys sorted, no whitespace) so equal images are equal
//! bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use oci_spec::image::{
    ConfigBuilder, Descriptor, DescriptorBuilder, HistoryBuilder, ImageConfigurationBuilder,
    ImageIndexBuilder, ImageManifestBuilder, MediaType, RootFsBuilder,
};
use serde::Serialize;

use crate::layers::{self, Layer};
use crate::plan::LayerPlan;

/// Annotation holding the name an image layout gives an image.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation containerd (and Docker 25+) reads for the image name.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// An image name with its tag, as the user gave it (`foo:1.0`,
/// `registry.local:5000/team/foo:1.0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    short: String,
}

impl Tag {
    pub fn parse(s: &str) -> Result<Tag, String> {
        let reference = crate::reference::Reference::parse(s)
            .map_err(|e| format!("invalid image name '{s}': {e}"))?;
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

/// Everything about the image that isn't its layers.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    pub tags: Vec<Tag>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub ports: BTreeSet<String>,
    pub volumes: BTreeSet<String>,
    pub stop_signal: Option<String>,
    pub author: Option<String>,
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
    /// Seconds since the epoch; `None` to date the image by its newest file
    /// (see [`Spec::created_at`]).
    pub created: Option<i64>,
}

impl Spec {
    /// The creation time, for a rootfs whose newest mtime is `newest`
    /// (kept within what RFC 3339 can write: 1970 to 9999).
    pub fn created_at(&self, newest: i64) -> i64 {
        self.created.unwrap_or(newest.clamp(0, 253_402_300_799))
    }
}

/// A complete image: its JSON documents and layer blobs.
pub struct Image {
    pub config: Vec<u8>,
    pub config_digest: String,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
    pub layers: Vec<Layer>,
    pub tags: Vec<Tag>,
    pub created: i64,
}

#[derive(Debug)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "building the image description: {}", self.0)
    }
}

impl std::error::Error for Error {}

fn err(e: impl fmt::Display) -> Error {
    Error(e.to_string())
}

/// RFC 3339 in UTC with second precision, as Docker writes it.
pub fn rfc3339(t: i64) -> Result<String, Error> {
    let dt = time::OffsetDateTime::from_unix_timestamp(t).map_err(err)?;
    dt.format(&time::format_description::well_known::Rfc3339)
        .map_err(err)
}

/// Serialises as canonical JSON: a detour through `serde_json::Value`, whose
/// maps are sorted, fixes the key order even where a type holds a HashMap.
pub fn canonical(v: &impl Serialize) -> Result<Vec<u8>, Error> {
    let value = serde_json::to_value(v).map_err(err)?;
    serde_json::to_vec(&value).map_err(err)
}

/// The image of `layers` as `spec` describes it, created at `created`
/// (seconds since the epoch; see [`Spec::created_at`]).
pub fn assemble(
    spec: &Spec,
    created: i64,
    plans: &[LayerPlan],
    layers: Vec<Layer>,
) -> Result<Image, Error> {
    let created_at = created;
    let created = rfc3339(created)?;
    let mut env = spec.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    let mut run = ConfigBuilder::default().env(env);
    if let Some(v) = &spec.entrypoint {
        run = run.entrypoint(v.clone());
    }
    if let Some(v) = &spec.cmd {
        run = run.cmd(v.clone());
    }
    if let Some(v) = &spec.workdir {
        run = run.working_dir(v.clone());
    }
    if let Some(v) = &spec.user {
        run = run.user(v.clone());
    }
    if !spec.labels.is_empty() {
        run = run.labels(
            spec.labels
                .clone()
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        );
    }
    if !spec.ports.is_empty() {
        run = run.exposed_ports(spec.ports.iter().cloned().collect::<Vec<_>>());
    }
    if !spec.volumes.is_empty() {
        run = run.volumes(spec.volumes.iter().cloned().collect::<Vec<_>>());
    }
    if let Some(v) = &spec.stop_signal {
        run = run.stop_signal(v.clone());
    }

    let history = plans
        .iter()
        .map(|p| {
            let mut h = HistoryBuilder::default()
                .created(created.clone())
                .created_by(p.created_by.clone());
            if let Some(c) = &p.comment {
                h = h.comment(c.clone());
            }
            h.build().map_err(err)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>())
        .build()
        .map_err(err)?;
    let mut config = ImageConfigurationBuilder::default()
        .created(created)
        .architecture(spec.arch.as_str())
        .os(spec.os.as_str())
        .config(run.build().map_err(err)?)
        .rootfs(rootfs)
        .history(history);
    if let Some(v) = &spec.variant {
        config = config.variant(v.clone());
    }
    if let Some(v) = &spec.author {
        config = config.author(v.clone());
    }
    let config = canonical(&config.build().map_err(err)?)?;
    let config_digest = layers::sha256(&config);

    let layer_descs = layers
        .iter()
        .map(|l| descriptor(MediaType::from(l.media_type), &l.digest, l.size, None))
        .collect::<Result<Vec<_>, _>>()?;
    let mut manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(descriptor(
            MediaType::ImageConfig,
            &config_digest,
            config.len() as u64,
            None,
        )?)
        .layers(layer_descs);
    if !spec.annotations.is_empty() {
        manifest = manifest.annotations(
            spec.annotations
                .clone()
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        );
    }
    let manifest = canonical(&manifest.build().map_err(err)?)?;
    let manifest_digest = layers::sha256(&manifest);
    Ok(Image {
        config,
        config_digest,
        manifest,
        manifest_digest,
        layers,
        tags: spec.tags.clone(),
        created: created_at,
    })
}

pub fn descriptor(
    media_type: MediaType,
    digest: &str,
    size: u64,
    annotations: Option<BTreeMap<String, String>>,
) -> Result<Descriptor, Error> {
    let digest: oci_spec::image::Digest = digest.parse().map_err(err)?;
    let mut d = DescriptorBuilder::default()
        .media_type(media_type)
        .digest(digest)
        .size(size);
    if let Some(a) = annotations {
        d = d.annotations(a.into_iter().collect::<std::collections::HashMap<_, _>>());
    }
    d.build().map_err(err)
}

/// The `index.json` of an image layout holding `image`: one entry per tag
/// (or one unnamed entry), named as podman and containerd expect.
pub fn layout_index(image: &Image) -> Result<Vec<u8>, Error> {
    layout_index_of(
        MediaType::ImageManifest,
        &image.manifest_digest,
        image.manifest.len() as u64,
        &image.tags,
    )
}

/// The `index.json` of a layout whose one document (a manifest or an
/// index) is `digest`, once per tag.
pub fn layout_index_of(
    media_type: MediaType,
    digest: &str,
    size: u64,
    tags: &[Tag],
) -> Result<Vec<u8>, Error> {
    let manifests = if tags.is_empty() {
        vec![descriptor(media_type, digest, size, None)?]
    } else {
        tags.iter()
            .map(|t| {
                // The name as the user wrote it in both: podman prefers the
                // containerd annotation and qualifies a short name with
                // localhost/ (a docker.io/... name would stay docker.io).
                let names = BTreeMap::from([
                    (CONTAINERD_NAME.to_string(), t.to_string()),
                    (REF_NAME.to_string(), t.to_string()),
                ]);
                descriptor(media_type.clone(), digest, size, Some(names))
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .map_err(err)?;
    canonical(&index)
}

/// An image index over platform-specific manifests: (digest, size,
/// os, architecture, variant) each.
pub fn platform_index(
    entries: &[(String, u64, String, String, Option<String>)],
    annotations: &BTreeMap<String, String>,
) -> Result<Vec<u8>, Error> {
    let manifests = entries
        .iter()
        .map(|(digest, size, os, arch, variant)| {
            let mut p = oci_spec::image::PlatformBuilder::default()
                .os(os.as_str())
                .architecture(arch.as_str());
            if let Some(v) = variant {
                p = p.variant(v.clone());
            }
            let mut d = descriptor(MediaType::ImageManifest, digest, *size, None)?;
            d.set_platform(Some(p.build().map_err(err)?));
            Ok(d)
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let mut index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests);
    if !annotations.is_empty() {
        index = index.annotations(
            annotations
                .clone()
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        );
    }
    canonical(&index.build().map_err(err)?)
}

/// The `oci-layout` file.
pub fn oci_layout() -> Vec<u8> {
    br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()
}

/// Docker's `manifest.json`, pointing into the OCI layout's blobs.
pub fn docker_manifest(image: &Image) -> Result<Vec<u8>, Error> {
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Entry<'a> {
        config: String,
        repo_tags: Vec<String>,
        layers: Vec<String>,
        #[serde(skip)]
        _p: std::marker::PhantomData<&'a ()>,
    }
    let entry = Entry {
        config: blob_path(&image.config_digest),
        repo_tags: image.tags.iter().map(|t| t.to_string()).collect(),
        layers: image.layers.iter().map(|l| blob_path(&l.digest)).collect(),
        _p: std::marker::PhantomData,
    };
    canonical(&[entry])
}

/// `blobs/sha256/<hex>` for a `sha256:<hex>` digest.
pub fn blob_path(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn canonical_json_sorts_keys() {
        let m: std::collections::HashMap<&str, i32> = [("b", 1), ("a", 2), ("c", 3)].into();
        assert_eq!(canonical(&m).unwrap(), br#"{"a":2,"b":1,"c":3}"#);
    }

    #[test]
    fn rfc3339_of_epoch() {
        assert_eq!(rfc3339(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1520598896).unwrap(), "2018-03-09T12:34:56Z");
    }
}

//! Image: puts layers together with their config into an image set, and
//! images for several platforms into one index. The JSON is canonical (see
//! [`oci::canonical`]), so equal images are equal bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::layers::Layer;
use crate::oci::docs::{Empty, History, RootFs, RunConfig};
use crate::oci::{Blob, Descriptor, ImageConfig, ImageSet, Index, Manifest, Tag, media};
use crate::plan::LayerPlan;

pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

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

/// A creation time RFC 3339 can't write (after the year 9999).
#[derive(Debug)]
pub struct ImageError(i64);

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "creation time {} is outside the years RFC 3339 can write (0 to 9999)",
            self.0
        )
    }
}

impl std::error::Error for ImageError {}

/// RFC 3339 in UTC with second precision, as Docker writes it.
pub fn rfc3339(t: i64) -> Result<String, ImageError> {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|dt| {
            dt.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .ok_or(ImageError(t))
}

/// The image of `layers` as `spec` describes it, created at `created`
/// (seconds since the epoch; see [`Spec::created_at`]): one entry, named
/// by each of the spec's tags.
pub fn assemble(
    spec: &Spec,
    created: i64,
    plans: &[LayerPlan],
    layers: Vec<Layer>,
) -> Result<ImageSet, ImageError> {
    let created = rfc3339(created)?;
    let mut env = spec.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    let set = |items: &BTreeSet<String>| {
        (!items.is_empty()).then(|| items.iter().map(|i| (i.clone(), Empty {})).collect())
    };
    let run = RunConfig {
        user: spec.user.clone(),
        exposed_ports: set(&spec.ports),
        env: Some(env),
        entrypoint: spec.entrypoint.clone(),
        cmd: spec.cmd.clone(),
        volumes: set(&spec.volumes),
        working_dir: spec.workdir.clone(),
        labels: (!spec.labels.is_empty()).then(|| spec.labels.clone()),
        stop_signal: spec.stop_signal.clone(),
    };
    let history = plans
        .iter()
        .map(|p| History {
            created: Some(created.clone()),
            created_by: Some(p.created_by.clone()),
            author: None,
            comment: p.comment.clone(),
            empty_layer: None,
        })
        .collect();
    let config = ImageConfig {
        created: Some(created),
        author: spec.author.clone(),
        architecture: spec.arch.clone(),
        os: spec.os.clone(),
        variant: spec.variant.clone(),
        config: Some(run),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: layers.iter().map(|l| l.diff_id).collect(),
        },
        history,
    };
    let config = Blob::bytes(media::CONFIG, crate::oci::canonical(&config));
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media::MANIFEST.to_string()),
        artifact_type: None,
        config: config.descriptor(),
        layers: layers.iter().map(|l| l.blob.descriptor()).collect(),
        subject: None,
        annotations: spec.annotations.clone(),
    };
    let manifest = Blob::bytes(media::MANIFEST, crate::oci::canonical(&manifest));
    let mut out = ImageSet::new();
    let entry = manifest.descriptor();
    out.add(config);
    out.add(manifest);
    for l in layers {
        out.add(l.blob);
    }
    let names: Vec<String> = spec.tags.iter().map(Tag::to_string).collect();
    out.add_entry(entry, &names);
    Ok(out)
}

/// One index over `images` (each an image manifest with the platform its
/// config gives), carrying every blob of `sets` and named by `tags`.
pub fn platform_index(
    images: &[(Descriptor, crate::oci::Platform)],
    sets: &[ImageSet],
    annotations: &BTreeMap<String, String>,
    tags: &[Tag],
) -> ImageSet {
    let manifests = images
        .iter()
        .map(|(d, platform)| {
            let mut d = Descriptor::new(media::MANIFEST, d.digest, d.size);
            d.platform = Some(platform.clone());
            d
        })
        .collect();
    let index = Index {
        schema_version: 2,
        media_type: Some(media::INDEX.to_string()),
        manifests,
        annotations: annotations.clone(),
    };
    let index = Blob::bytes(media::INDEX, crate::oci::canonical(&index));
    let mut out = ImageSet::new();
    let entry = index.descriptor();
    out.add(index);
    for s in sets {
        out.add_blobs_of(s);
    }
    let names: Vec<String> = tags.iter().map(Tag::to_string).collect();
    out.add_entry(entry, &names);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_epoch() {
        assert_eq!(rfc3339(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1520598896).unwrap(), "2018-03-09T12:34:56Z");
        assert!(rfc3339(i64::MAX).is_err());
    }
}

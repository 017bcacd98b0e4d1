//! What to push, from a freshly built image or from an image read back from
//! an archive or layout directory.

use std::collections::BTreeSet;
use std::io::{self, Read};

use serde_json::Value;

use super::upload::Blob;
use super::{Content, Doc, Error, Target};
use crate::image::{self, Image};
use crate::layout::Layout;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A built image: its config, layers and manifest.
pub fn from_image<'a>(image: &'a Image, target: &Target) -> Content<'a> {
    let mut blobs = vec![Blob {
        digest: image.config_digest.clone(),
        size: image.config.len() as u64,
        open_at: Box::new(move |off| {
            let start = (off as usize).min(image.config.len());
            Ok(Box::new(&image.config[start..]) as Box<dyn Read + Send>)
        }),
    }];
    let mut seen = BTreeSet::new();
    for layer in &image.layers {
        if !seen.insert(layer.digest.clone()) {
            continue;
        }
        blobs.push(Blob {
            digest: layer.digest.clone(),
            size: layer.size,
            open_at: Box::new(move |off| layer.blob.reader_at(off)),
        });
    }
    let mount_hints = image
        .tags
        .iter()
        .filter_map(|t| Target::parse(&t.to_string()).ok())
        .filter(|t| t.registry == target.registry)
        .map(|t| t.repository)
        .collect();
    Content {
        blobs,
        children: Vec::new(),
        top: Doc {
            digest: image.manifest_digest.clone(),
            media_type: OCI_MANIFEST.to_string(),
            bytes: image.manifest.clone(),
        },
        mount_hints,
    }
}

/// The image (or index) of an archive or layout directory to push under
/// `target`: the only one there, or the one named like the target.
pub fn from_layout<'a>(layout: &'a Layout, target: &Target) -> Result<Content<'a>, Error> {
    let err = |e: crate::layout::Error| Error(e.to_string());
    if !layout.has("index.json") {
        return Err(Error(format!(
            "{}: no index.json, so not an OCI layout (an archive from `docker save` \
             before Docker 25?); build it with rustimage or convert it with skopeo",
            layout.path().display()
        )));
    }
    let index = layout.json("index.json").map_err(err)?;
    let descs: Vec<&Value> = index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let digests: BTreeSet<&str> = descs.iter().filter_map(|d| d["digest"].as_str()).collect();
    let names: Vec<&str> = descs
        .iter()
        .filter_map(|d| d["annotations"][image::REF_NAME].as_str())
        .collect();
    let chosen = if digests.len() == 1 {
        descs.first().copied()
    } else {
        let wanted = [
            format!(
                "{}:{}",
                target.repository,
                target.tag.as_deref().unwrap_or("latest")
            ),
            target.to_string(),
            target.tag.clone().unwrap_or_default(),
        ];
        descs.iter().copied().find(|d| {
            d["annotations"][image::REF_NAME]
                .as_str()
                .is_some_and(|n| wanted.iter().any(|w| w == n))
        })
    };
    let top_desc = chosen.ok_or_else(|| {
        Error(format!(
            "{} holds {} images ({}); name the one to push in the reference's tag",
            layout.path().display(),
            digests.len(),
            names.join(", ")
        ))
    })?;
    let top = doc(layout, top_desc)?;
    let mut children = Vec::new();
    let mut manifests = Vec::new();
    if top.media_type == OCI_INDEX || top.media_type.ends_with("manifest.list.v2+json") {
        let v: Value = serde_json::from_slice(&top.bytes)
            .map_err(|e| Error(format!("index {}: {e}", top.digest)))?;
        for d in v["manifests"].as_array().into_iter().flatten() {
            let child = doc(layout, d)?;
            manifests.push(child.clone());
            children.push(child);
        }
    } else {
        manifests.push(top.clone());
    }
    let mut blobs = Vec::new();
    let mut seen = BTreeSet::new();
    for m in &manifests {
        let v: Value = serde_json::from_slice(&m.bytes)
            .map_err(|e| Error(format!("manifest {}: {e}", m.digest)))?;
        let descs =
            std::iter::once(&v["config"]).chain(v["layers"].as_array().into_iter().flatten());
        for d in descs {
            let digest = d["digest"].as_str().unwrap_or_default().to_string();
            let size = d["size"].as_u64().unwrap_or(0);
            if !seen.insert(digest.clone()) {
                continue;
            }
            let name = layout.blob_name(&digest).map_err(err)?;
            let (_, actual) = layout.open_member(&name).map_err(err)?;
            if actual != size {
                return Err(Error(format!(
                    "{}: blob {digest} is {actual} bytes, its manifest says {size}",
                    layout.path().display()
                )));
            }
            blobs.push(Blob {
                digest,
                size,
                open_at: Box::new(move |off| {
                    layout
                        .open_at(&name, off)
                        .map_err(|e| io::Error::other(e.to_string()))
                }),
            });
        }
    }
    let mount_hints = names
        .iter()
        .filter_map(|n| Target::parse(n).ok())
        .filter(|t| t.registry == target.registry && t.repository != target.repository)
        .map(|t| t.repository)
        .collect();
    Ok(Content {
        blobs,
        children,
        top,
        mount_hints,
    })
}

/// A manifest document a descriptor points at, checked against its digest.
fn doc(layout: &Layout, desc: &Value) -> Result<Doc, Error> {
    let digest = desc["digest"].as_str().unwrap_or_default();
    let name = layout.blob_name(digest).map_err(|e| Error(e.to_string()))?;
    let bytes = layout.bytes(&name).map_err(|e| Error(e.to_string()))?;
    if crate::layers::sha256(&bytes) != digest {
        return Err(Error(format!(
            "{}: {name} does not match its digest",
            layout.path().display()
        )));
    }
    let media_type = desc["mediaType"]
        .as_str()
        .map(str::to_string)
        .or_else(|| {
            serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v["mediaType"].as_str().map(str::to_string))
        })
        .unwrap_or_else(|| OCI_MANIFEST.to_string());
    Ok(Doc {
        digest: digest.to_string(),
        media_type,
        bytes,
    })
}

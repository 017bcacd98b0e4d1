//! `rustimage index`: one OCI image index over images built for several
//! machines (say qemux86-64 and qemuarm64), the platform of each taken from
//! its config. Written as an archive or layout, or pushed after its
//! manifests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use clap::Args;
use oci_spec::image::MediaType;
use serde_json::Value;

use crate::cli::UsageError;
use crate::error::Error;
use crate::image::{self, Tag};
use crate::layout::{self, Layout};
use crate::progress::Progress;
use crate::registry::{self, Doc};
use crate::sinks::{self, Files, Source};

#[derive(Args, Debug)]
pub struct IndexArgs {
    /// Image archives or OCI layout directories holding one image each.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
    #[command(flatten)]
    pub outputs: crate::cli::Outputs,
    /// Name for the index in the archive or layout (repeatable).
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// Index annotation KEY=VALUE (repeatable).
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    /// No progress output; only errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print the index digest and platforms as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One input image: its manifest and where its blobs are.
struct Member {
    layout: Layout,
    manifest: Doc,
    platform: (String, String, Option<String>),
    /// (digest, size) of config and layers.
    blobs: Vec<(String, u64)>,
}

pub fn run(args: &IndexArgs) -> Result<(), Error> {
    let target = args.outputs.check()?;
    let tags = args
        .tags
        .iter()
        .map(|t| Tag::parse(t).map_err(|e| UsageError(format!("--tag: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let mut annotations = BTreeMap::new();
    for kv in &args.annotations {
        let (k, v) = kv
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| UsageError(format!("--annotation '{kv}': expected KEY=VALUE")))?;
        annotations.insert(k.to_string(), v.to_string());
    }

    let members = args
        .images
        .iter()
        .map(|p| member(Layout::open(p)?))
        .collect::<Result<Vec<_>, Error>>()?;
    let mut platforms = BTreeSet::new();
    for m in &members {
        if !platforms.insert(m.platform.clone()) {
            let (os, arch, variant) = &m.platform;
            return Err(UsageError(format!(
                "two images for {os}/{arch}{}: an index holds one per platform",
                variant
                    .as_deref()
                    .map(|v| format!("/{v}"))
                    .unwrap_or_default()
            ))
            .into());
        }
    }
    let entries: Vec<_> = members
        .iter()
        .map(|m| {
            (
                m.manifest.digest.clone(),
                m.manifest.bytes.len() as u64,
                m.platform.0.clone(),
                m.platform.1.clone(),
                m.platform.2.clone(),
            )
        })
        .collect();
    let index_bytes = image::platform_index(&entries, &annotations)?;
    let index = Doc {
        digest: crate::layers::sha256(&index_bytes),
        media_type: MediaType::ImageIndex.to_string(),
        bytes: index_bytes,
    };

    let progress = Progress::new(args.quiet, args.json);
    if args.outputs.output.is_some() || args.outputs.oci_dir.is_some() {
        let files = files(&members, &index, &tags)?;
        let mut wrote = Vec::new();
        if let Some(out) = &args.outputs.output {
            sinks::archive::write(&files, out)?;
            wrote.push(out.display().to_string());
        }
        if let Some(dir) = &args.outputs.oci_dir {
            sinks::ocidir::write(&files, dir)?;
            wrote.push(dir.display().to_string());
        }
        progress.done(&format!(
            "wrote {}: index {} over {} image(s)",
            wrote.join(" and "),
            index.digest,
            members.len()
        ));
    }
    if let Some(target) = &target {
        let content = content(&members, &index);
        let report = crate::push::send(target, &content, &args.outputs.registry, &progress)?;
        crate::push::finish(target, &report, &args.outputs.registry, &progress, false)?;
    }
    if args.json {
        let platforms: Vec<Value> = members
            .iter()
            .map(|m| {
                serde_json::json!({
                    "digest": m.manifest.digest,
                    "os": m.platform.0,
                    "architecture": m.platform.1,
                    "variant": m.platform.2,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"digest": index.digest, "manifests": platforms})
        );
    }
    Ok(())
}

fn member(layout: Layout) -> Result<Member, Error> {
    let found = layout::images(&layout)?;
    let [one] = found.as_slice() else {
        return Err(layout
            .error(format!(
                "holds {} images; give archives of one image each",
                found.len()
            ))
            .into());
    };
    let digest = one
        .manifest_digest
        .clone()
        .ok_or_else(|| layout.error("has no OCI index.json to take the manifest from".into()))?;
    let bytes = layout.bytes(&layout.blob_name(&digest)?)?;
    let manifest: Value = serde_json::from_slice(&bytes)
        .map_err(|e| layout.error(format!("manifest {digest}: {e}")))?;
    if manifest.get("manifests").is_some() {
        return Err(layout
            .error("already holds an index; give the single-platform images".into())
            .into());
    }
    let c = &one.config;
    let text = |k: &str| c[k].as_str().map(str::to_string);
    let platform = (
        text("os").unwrap_or_else(|| "linux".into()),
        text("architecture").unwrap_or_default(),
        text("variant"),
    );
    let blobs = std::iter::once(&manifest["config"])
        .chain(manifest["layers"].as_array().into_iter().flatten())
        .map(|d| {
            (
                d["digest"].as_str().unwrap_or_default().to_string(),
                d["size"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    Ok(Member {
        layout,
        manifest: Doc {
            digest,
            media_type: MediaType::ImageManifest.to_string(),
            bytes,
        },
        platform,
        blobs,
    })
}

fn files<'a>(members: &'a [Member], index: &'a Doc, tags: &[Tag]) -> Result<Files<'a>, Error> {
    let mut blobs = vec![sinks::Blob {
        digest: index.digest.clone(),
        size: index.bytes.len() as u64,
        source: Source::Bytes(&index.bytes),
    }];
    for m in members {
        blobs.push(sinks::Blob {
            digest: m.manifest.digest.clone(),
            size: m.manifest.bytes.len() as u64,
            source: Source::Bytes(&m.manifest.bytes),
        });
        for (digest, size) in &m.blobs {
            let name = m.layout.blob_name(digest)?;
            let layout = &m.layout;
            blobs.push(sinks::Blob {
                digest: digest.clone(),
                size: *size,
                source: Source::Open(Box::new(move || {
                    layout
                        .open_at(&name, 0)
                        .map_err(|e| std::io::Error::other(e.to_string()))
                })),
            });
        }
    }
    Ok(Files {
        blobs,
        index: image::layout_index_of(
            MediaType::ImageIndex,
            &index.digest,
            index.bytes.len() as u64,
            tags,
        )?,
        docker_manifest: None,
        mtime: 0,
    })
}

fn content<'a>(members: &'a [Member], index: &Doc) -> registry::Content<'a> {
    let mut blobs = Vec::new();
    let mut seen = BTreeSet::new();
    for m in members {
        for (digest, size) in &m.blobs {
            if !seen.insert(digest.clone()) {
                continue;
            }
            let Ok(name) = m.layout.blob_name(digest) else {
                continue;
            };
            let layout = &m.layout;
            blobs.push(registry::upload::Blob {
                digest: digest.clone(),
                size: *size,
                open_at: Box::new(move |off| {
                    layout
                        .open_at(&name, off)
                        .map_err(|e| std::io::Error::other(e.to_string()))
                }),
            });
        }
    }
    registry::Content {
        blobs,
        children: members.iter().map(|m| m.manifest.clone()).collect(),
        top: index.clone(),
        mount_hints: Vec::new(),
    }
}

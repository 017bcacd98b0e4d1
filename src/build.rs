//! `rustimage build`: runs the pipeline source -> plan -> layers -> image ->
//! sinks for the given arguments.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::cli::{BuildArgs, UsageError};
use crate::error::Error;
use crate::image::{self, Image};
use crate::progress::Progress;
use crate::{layers, plan, sinks, source};

pub fn run(args: &BuildArgs) -> Result<(), Error> {
    if args.output.is_none() && args.oci_dir.is_none() {
        return Err(UsageError("no output: give -o FILE and/or --oci-dir DIR".into()).into());
    }
    let sde = std::env::var("SOURCE_DATE_EPOCH").ok();
    let spec = args.spec(sde.as_deref())?;
    let (compression, level) = args.compression()?;
    let progress = Progress::new(args.quiet || args.json);

    for out in outputs(args) {
        check_writable(out)?;
    }
    let workdir = match &args.tmpdir {
        Some(d) => d.clone(),
        None => parent(outputs(args).next().unwrap_or(Path::new("."))),
    };

    let input_size = std::fs::metadata(&args.rootfs)
        .map(|m| m.len())
        .unwrap_or(0);
    let bar = progress.bytes("reading", input_size);
    let scan_opts = source::ScanOptions {
        hash: false,
        tmpdir: workdir.clone(),
    };
    let rootfs = source::scan(&args.rootfs, &scan_opts, &|n| bar.set_position(n))?;
    bar.finish_and_clear();

    let plans = vec![plan::squash(&rootfs)];

    let settings = layers::Settings {
        compression,
        level,
        jobs: args.jobs.unwrap_or_else(default_jobs),
        clamp: spec.created,
        workdir,
    };
    let bar = progress.bytes("layers", rootfs.content_bytes());
    let built = layers::build(&rootfs, &plans, &settings, None, &|n| bar.set_position(n))?;
    bar.finish_and_clear();

    let image = image::assemble(&spec, &plans, built)?;
    if let Some(out) = &args.output {
        sinks::archive::write(&image, out)?;
        progress.note(&format!("wrote {}", out.display()));
    }
    if let Some(dir) = &args.oci_dir {
        sinks::ocidir::write(&image, dir)?;
        progress.note(&format!("wrote {}", dir.display()));
    }
    if args.json {
        println!("{}", summary(&image, &plans));
    } else {
        progress.note(&format!(
            "image {} with {} layer(s)",
            image.manifest_digest,
            image.layers.len()
        ));
    }
    Ok(())
}

fn outputs(args: &BuildArgs) -> impl Iterator<Item = &Path> {
    args.output
        .iter()
        .filter(|p| p.as_os_str() != "-")
        .chain(args.oci_dir.iter())
        .map(PathBuf::as_path)
}

fn parent(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Fails early, before any work, when an output can't be created.
fn check_writable(out: &Path) -> Result<(), Error> {
    let dir = parent(out);
    tempfile::tempfile_in(&dir).map(drop).map_err(|e| {
        sinks::Error::new(out, format!("can't write in {}: {e}", dir.display())).into()
    })
}

pub fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn summary(image: &Image, plans: &[plan::LayerPlan]) -> serde_json::Value {
    json!({
        "tags": image.tags.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
        "manifest": image.manifest_digest,
        "config": image.config_digest,
        "layers": image.layers.iter().zip(plans).map(|(l, p)| json!({
            "digest": l.digest,
            "diff_id": l.diff_id,
            "size": l.size,
            "media_type": l.media_type,
            "created_by": p.created_by,
        })).collect::<Vec<_>>(),
    })
}

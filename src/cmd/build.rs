//! `rustimage build`: source -> plan -> layers -> image -> sinks, for the
//! given arguments.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::cli::{BuildArgs, SbomSource, UsageError};
use super::{Error, attach, write_outputs};
use crate::oci::{Blob, ImageSet};
use crate::progress::Progress;
use crate::{deploy, image, layers, ownership, packages, plan, sbom, source};

pub fn run(args: &BuildArgs) -> Result<(), Error> {
    let push_target = args.outputs.check()?;
    let sde = std::env::var("SOURCE_DATE_EPOCH").ok();
    let spec = args.spec(sde.as_deref())?;
    let (compression, level) = args.compression()?;
    let progress = Progress::new(args.quiet, args.json);
    let jobs = args.jobs.unwrap_or_else(default_jobs).max(1);
    let inputs = Inputs::resolve(args, &progress)?;
    let rules = match &args.layer_rules {
        Some(p) => plan::Rules::load(p)?,
        None => plan::Rules::default(),
    };
    for out in outputs(args) {
        check_writable(out)?;
    }
    let workdir = match (&args.tmpdir, outputs(args).next()) {
        (Some(d), _) => d.clone(),
        (None, Some(out)) => parent(out),
        (None, None) => std::env::temp_dir(),
    };
    let cache = args
        .cache
        .as_deref()
        .map(|d| {
            layers::Cache::open(d)
                .map_err(|e| Error::path(d, "can't use as a layer cache", Some(e)))
        })
        .transpose()?;
    let per_package = !args.squash && args.max_layers > 1 && inputs.manifest.is_some();
    let sources = args.sbom_sources()?;
    let generate = sources.contains(&SbomSource::Generate);
    if generate && inputs.manifest.is_none() {
        return Err(UsageError(
            "--sbom generate needs the image's package list: give --deploy-dir (or --manifest)"
                .into(),
        )
        .into());
    }
    // SBOM files are checked (and copied) before any work.
    let mut sboms = Vec::new();
    for s in &sources {
        if let SbomSource::File(p) = s {
            sboms.push(attach::sbom_blob(p, &workdir)?);
        }
    }
    let timer = Timer::new();

    let scan = source::ScanOptions {
        hash: per_package || cache.is_some(),
        tmpdir: workdir.clone(),
        max_size: args.max_size,
    };
    let with_owners = per_package || generate;
    let (owners, rootfs) = read(&inputs, with_owners, &scan, cache.as_ref(), jobs, &progress)?;
    timer.mark("inputs read");
    let plans = if per_package {
        plan::per_package(&rootfs, &owners, &rules, usize::from(args.max_layers))?
    } else {
        vec![plan::squash(&rootfs)]
    };
    timer.mark("planned");

    // Without a given time, mtimes are kept (clamping them to anything
    // would make Python rewrite every .pyc) and the newest dates the image.
    let created = spec.created_at(newest_mtime(&rootfs));
    let settings = layers::Settings {
        compression,
        level,
        jobs,
        clamp: spec.created.unwrap_or(i64::MAX),
        workdir,
    };
    let bar = progress.bytes("layers", rootfs.content_bytes());
    let built = layers::build(&rootfs, &plans, &settings, cache.as_ref(), &|n| {
        bar.set_position(n)
    })?;
    bar.finish_and_clear();
    timer.mark("layers written");

    let mut set = image::assemble(&spec, created, &plans, built)?;
    if generate || !sboms.is_empty() {
        let (subject, _) = attach::only_entry(&set).map_err(|_| Error::Internal("no image"))?;
        let when = image::rfc3339(created)?;
        let mut contents = Vec::new();
        if generate {
            let manifest = inputs
                .manifest
                .as_deref()
                .ok_or(Error::Internal("no manifest"))?;
            contents.push(generated(&set, &spec, &when, manifest, &owners, &plans)?);
        }
        contents.append(&mut sboms);
        attach::attach_to(&mut set, &subject, &contents, Some(&when))?;
    }
    let mtime = u64::try_from(created).unwrap_or(0);
    write_outputs(&set, &args.outputs, push_target.as_ref(), mtime, &progress)?;
    timer.mark("outputs written");
    if args.json {
        println!("{}", summary(&set)?);
    }
    Ok(())
}

/// Where the inputs are, from explicit flags or found in the deploy dir.
struct Inputs {
    rootfs: PathBuf,
    manifest: Option<PathBuf>,
    feeds: Vec<PathBuf>,
    pkgdata: Option<PathBuf>,
}

impl Inputs {
    fn resolve(args: &BuildArgs, progress: &Progress) -> Result<Inputs, Error> {
        let found = match (&args.deploy_dir, &args.image, &args.machine) {
            (Some(dir), Some(image), Some(machine)) => {
                if !dir.is_dir() {
                    return Err(Error::path(dir, "not a directory", None));
                }
                deploy::find(dir, image, machine)
            }
            _ => deploy::Found::default(),
        };
        let rootfs = match (&args.rootfs, found.rootfs) {
            (Some(r), _) => r.clone(),
            (None, Some(r)) => r,
            (None, None) => {
                let dir = args.deploy_dir.as_deref().unwrap_or(Path::new("."));
                let (image, machine) = (
                    args.image.as_deref().unwrap_or_default(),
                    args.machine.as_deref().unwrap_or_default(),
                );
                return Err(Error::path(dir, deploy::hint(dir, image, machine), None));
            }
        };
        let mut feeds = found.feeds;
        feeds.extend(args.feeds.iter().cloned());
        let inputs = Inputs {
            rootfs,
            manifest: args.manifest.clone().or(found.manifest),
            feeds,
            pkgdata: args.pkgdata.clone().or(found.pkgdata),
        };
        if !args.squash
            && inputs.manifest.is_none()
            && (!args.feeds.is_empty() || args.pkgdata.is_some() || args.deploy_dir.is_some())
        {
            progress.warn("no image manifest (give --manifest): building one layer");
        }
        Ok(inputs)
    }
}

/// The SPDX SBOM of the image just assembled, titled after its name.
fn generated(
    set: &ImageSet,
    spec: &image::Spec,
    created: &str,
    manifest_file: &Path,
    owners: &[plan::Owner],
    plans: &[plan::LayerPlan],
) -> Result<(Blob, Option<String>), Error> {
    let built = built(set)?;
    let (entry, manifest, config) = (&built.descriptor, &built.manifest, &built.config);
    let layers: Vec<_> = manifest
        .layers
        .iter()
        .map(|l| l.digest)
        .zip(config.rootfs.diff_ids.iter().copied())
        .collect();
    let lines = packages::read_manifest(manifest_file)?;
    let name = spec.tags.first().map(|t| t.to_string());
    let facts = sbom::ImageFacts {
        name: name.as_deref(),
        manifest: entry.digest,
        created,
        arch: &spec.arch,
    };
    let doc = sbom::spdx::document(&facts, &sbom::packages(&lines, owners, plans, &layers));
    // `reg:5000/team/name:tag` -> `name`.
    let title = name
        .as_deref()
        .and_then(|n| n.rsplit_once(':'))
        .and_then(|(n, _)| n.rsplit('/').next())
        .filter(|n| !n.is_empty())
        .unwrap_or("sbom");
    Ok((
        Blob::bytes(sbom::kind::SPDX, doc),
        Some(format!("{title}.spdx.json")),
    ))
}

/// Reads the package lists (when `with_owners`) and the rootfs, both at
/// once: they are independent.
fn read(
    inputs: &Inputs,
    with_owners: bool,
    scan: &source::ScanOptions,
    cache: Option<&layers::Cache>,
    jobs: usize,
    progress: &Progress,
) -> Result<(Vec<plan::Owner>, source::Rootfs), Error> {
    let warn = |m: String| progress.warn(&m);
    let (owners, rootfs) = std::thread::scope(|s| {
        let owners = s.spawn(|| -> Result<Vec<plan::Owner>, Error> {
            let Some(manifest) = inputs.manifest.as_deref().filter(|_| with_owners) else {
                return Ok(Vec::new());
            };
            let src = ownership::Sources {
                manifest,
                feeds: &inputs.feeds,
                pkgdata: inputs.pkgdata.as_deref(),
                cache,
            };
            let bar = progress.count("packages", 0);
            let owners = ownership::load(&src, jobs, &warn, &|n| bar.set_position(n))?;
            bar.finish_and_clear();
            Ok(owners)
        });
        let size = std::fs::metadata(&inputs.rootfs).map_or(0, |m| m.len());
        let bar = progress.bytes("reading", size);
        let rootfs = source::scan(&inputs.rootfs, scan, &|n| bar.set_position(n), &warn);
        bar.finish_and_clear();
        let owners = owners
            .join()
            .unwrap_or(Err(Error::Internal("the package reader panicked")));
        Ok::<_, Error>((owners?, rootfs?))
    })?;
    if rootfs.nodes().len() <= 1 {
        progress.warn(&format!(
            "{} is empty: the image has no files",
            inputs.rootfs.display()
        ));
    }
    Ok((owners, rootfs))
}

/// The outputs that are files or directories on disk: not stdout, not a
/// pipe or device (those are written in place).
fn outputs(args: &BuildArgs) -> impl Iterator<Item = &Path> {
    args.outputs
        .output
        .iter()
        .filter(|p| p.as_os_str() != "-" && !is_stream(p))
        .chain(args.outputs.oci_dir.iter())
        .map(PathBuf::as_path)
}

/// True when `p` exists and is neither a regular file nor a directory.
fn is_stream(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| !m.is_file() && !m.is_dir())
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
    tempfile::tempfile_in(&dir)
        .map(drop)
        .map_err(|e| Error::path(out, format!("can't write in {}", dir.display()), Some(e)))
}

/// The latest mtime in the rootfs (0 for an empty one).
fn newest_mtime(rootfs: &source::Rootfs) -> i64 {
    rootfs
        .nodes()
        .iter()
        .map(|n| rootfs.meta(n).mtime)
        .max()
        .unwrap_or(0)
}

pub fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The one image `image::assemble` made.
fn built(set: &ImageSet) -> Result<crate::oci::Image, Error> {
    set.images()?
        .into_iter()
        .next()
        .ok_or(Error::Internal("the built image has no entry"))
}

/// `--json`: tags, digests and each layer's digest, diff_id, size, media
/// type and history.
fn summary(set: &ImageSet) -> Result<serde_json::Value, Error> {
    let built = built(set)?;
    let (entry, manifest, config) = (&built.descriptor, &built.manifest, &built.config);
    let layers = manifest
        .layers
        .iter()
        .zip(&config.rootfs.diff_ids)
        .zip(&config.history)
        .map(|((l, diff_id), h)| {
            json!({
                "digest": l.digest,
                "diff_id": diff_id,
                "size": l.size,
                "media_type": l.media_type,
                "created_by": h.created_by,
            })
        })
        .collect::<Vec<_>>();
    let mut out = json!({
        "tags": set.entries.iter().filter_map(|e| e.ref_name()).collect::<Vec<_>>(),
        "manifest": entry.digest,
        "config": manifest.config.digest,
        "layers": layers,
    });
    let referrers = set.referrers(&entry.digest);
    if !referrers.is_empty() {
        out["referrers"] = json!(referrers);
    }
    Ok(out)
}

/// Phase times on stderr when RUSTIMAGE_TIMINGS is set (for profiling and
/// the benchmark's notes).
struct Timer {
    start: Option<std::time::Instant>,
}

impl Timer {
    fn new() -> Timer {
        Timer {
            start: std::env::var_os("RUSTIMAGE_TIMINGS").map(|_| std::time::Instant::now()),
        }
    }

    fn mark(&self, what: &str) {
        if let Some(t) = self.start {
            eprintln!("rustimage: {:>7.3} s {what}", t.elapsed().as_secs_f64());
        }
    }
}

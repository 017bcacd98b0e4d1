//! `rustimage build`: runs the pipeline source -> plan -> layers -> image ->
//! sinks for the given arguments.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::cli::BuildArgs;
use crate::error::Error;
use crate::image::{self, Image};
use crate::progress::Progress;
use crate::{deploy, layers, ownership, plan, sinks, source};

pub fn run(args: &BuildArgs) -> Result<(), Error> {
    let push_target = args.outputs.check()?;
    let sde = std::env::var("SOURCE_DATE_EPOCH").ok();
    let spec = args.spec(sde.as_deref())?;
    let (compression, level) = args.compression()?;
    let progress = Progress::new(args.quiet || args.json);
    let quiet = args.quiet;
    let warn = move |msg: String| {
        if !quiet {
            eprintln!("rustimage: warning: {msg}");
        }
    };
    let jobs = args.jobs.unwrap_or_else(default_jobs).max(1);
    let inputs = Inputs::resolve(args)?;
    let rules = match &args.layer_rules {
        Some(p) => plan::Rules::load(p)?,
        None => plan::Rules::default(),
    };
    let per_package = !args.squash && args.max_layers > 1 && inputs.manifest.is_some();
    if !args.squash
        && inputs.manifest.is_none()
        && (!args.feeds.is_empty() || args.pkgdata.is_some())
    {
        warn("feeds or pkgdata given but no image manifest: building one layer".into());
    }

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
                .map_err(|e| sinks::Error::new(d, format!("can't use as a layer cache: {e}")))
        })
        .transpose()?;

    // Package lists and the rootfs are independent: read both at once.
    let input_size = std::fs::metadata(&inputs.rootfs)
        .map(|m| m.len())
        .unwrap_or(0);
    let scan_opts = source::ScanOptions {
        hash: per_package || cache.is_some(),
        tmpdir: workdir.clone(),
        max_size: args.max_size,
    };
    let timer = Timer::new();
    let (owners, rootfs) = std::thread::scope(|s| {
        let owners = s.spawn(|| -> Result<Vec<plan::Owner>, Error> {
            let Some(manifest) = inputs.manifest.as_deref().filter(|_| per_package) else {
                return Ok(Vec::new());
            };
            let src = ownership::Sources {
                manifest,
                feeds: &inputs.feeds,
                pkgdata: inputs.pkgdata.as_deref(),
                cache: cache.as_ref(),
            };
            let bar = progress.count("packages", 0);
            let owners = ownership::load(&src, jobs, &warn, &|n| bar.set_position(n))?;
            bar.finish_and_clear();
            timer.mark("packages read");
            Ok(owners)
        });
        let bar = progress.bytes("reading", input_size);
        let rootfs = source::scan(&inputs.rootfs, &scan_opts, &|n| bar.set_position(n), &warn);
        bar.finish_and_clear();
        timer.mark("rootfs read");
        let owners = owners
            .join()
            .unwrap_or_else(|_| Err(Error::Internal("package reader panicked".into())));
        Ok::<_, Error>((owners?, rootfs?))
    })?;

    let plans = if per_package {
        plan::per_package(&rootfs, &owners, &rules, usize::from(args.max_layers))?
    } else {
        vec![plan::squash(&rootfs)]
    };

    let settings = layers::Settings {
        compression,
        level,
        jobs,
        clamp: spec.created,
        workdir,
    };
    let bar = progress.bytes("layers", rootfs.content_bytes());
    timer.mark("planned");
    let built = layers::build(&rootfs, &plans, &settings, cache.as_ref(), &|n| {
        bar.set_position(n)
    })?;
    bar.finish_and_clear();

    timer.mark("layers written");
    let image = image::assemble(&spec, &plans, built)?;
    let files = sinks::Files::of_image(&image)?;
    if let Some(out) = &args.outputs.output {
        sinks::archive::write(&files, out)?;
        progress.note(&format!("wrote {}", out.display()));
    }
    if let Some(dir) = &args.outputs.oci_dir {
        sinks::ocidir::write(&files, dir)?;
        progress.note(&format!("wrote {}", dir.display()));
    }
    if let Some(target) = &push_target {
        let content = crate::registry::from_image(&image, target);
        let report = crate::push::send(target, &content, &args.outputs.registry, &progress)?;
        crate::push::finish(target, &report, &args.outputs.registry, &progress, false)?;
    }
    timer.mark("outputs written");
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

/// Where the inputs are, from explicit flags or found in the deploy dir.
struct Inputs {
    rootfs: PathBuf,
    manifest: Option<PathBuf>,
    feeds: Vec<PathBuf>,
    pkgdata: Option<PathBuf>,
}

impl Inputs {
    fn resolve(args: &BuildArgs) -> Result<Inputs, Error> {
        let found = match (&args.deploy_dir, &args.image, &args.machine) {
            (Some(dir), Some(image), Some(machine)) => {
                if !dir.is_dir() {
                    return Err(sinks::Error::new(dir, "not a directory").into());
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
                return Err(sinks::Error::new(
                    &dir.join("images").join(machine),
                    format!(
                        "no rootfs tarball {image}-{machine}.rootfs.tar[.zst|.xz|.bz2|.gz]; \
                         give --rootfs"
                    ),
                )
                .into());
            }
        };
        let mut feeds = found.feeds;
        feeds.extend(args.feeds.iter().cloned());
        Ok(Inputs {
            rootfs,
            manifest: args.manifest.clone().or(found.manifest),
            feeds,
            pkgdata: args.pkgdata.clone().or(found.pkgdata),
        })
    }
}

fn outputs(args: &BuildArgs) -> impl Iterator<Item = &Path> {
    args.outputs
        .output
        .iter()
        .filter(|p| p.as_os_str() != "-")
        .chain(args.outputs.oci_dir.iter())
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

//! `rustimage push`, and the push step of `build --push` and `index --push`.

use std::time::Duration;

use serde_json::json;

use super::Error;
use super::cli::{PushArgs, RegistryArgs};
use crate::oci::ImageSet;
use crate::progress::Progress;
use crate::registry::{self, Report, Target, client};

pub fn run(args: &PushArgs) -> Result<(), Error> {
    let target = args.target()?;
    let set = crate::oci::read(&args.source)?;
    let progress = Progress::new(args.quiet, args.json);
    let report = send(&set, &target, &args.registry, &progress)?;
    finish(&target, &report, &args.registry, &progress, args.json)
}

/// Pushes the entry of `set` that `target` names, with a bar per blob on a
/// terminal.
pub fn send(
    set: &ImageSet,
    target: &Target,
    args: &RegistryArgs,
    progress: &Progress,
) -> Result<Report, Error> {
    let content = registry::from_set(set, target)?;
    let opts = options(args);
    let bars = progress.blobs();
    let report = registry::push(target, &content, &opts, &|digest, sent, size| {
        bars.update(digest, sent, size)
    })?;
    bars.clear();
    Ok(report)
}

/// How to reach the registry and push, from the flags.
pub fn options(args: &RegistryArgs) -> registry::PushOptions {
    registry::PushOptions {
        client: client::ClientOptions {
            insecure: args.insecure,
            ca_cert: args.ca_cert.clone(),
            cert_dir: args.cert_dir.clone(),
            creds: args.creds.clone(),
            timeout: Duration::from_secs(args.timeout.max(1)),
            backoff: Duration::from_millis(250),
        },
        jobs: args.parallel.max(1),
        chunk: args.chunk_size.max(1),
        mount_from: args.mount_from.clone(),
    }
}

/// Writes the digest file and tells what happened.
pub fn finish(
    target: &Target,
    report: &Report,
    args: &RegistryArgs,
    progress: &Progress,
    as_json: bool,
) -> Result<(), Error> {
    if let Some(path) = &args.digestfile {
        crate::atomic::write_file(path, report.digest.as_bytes())
            .map_err(|e| crate::sinks::OutputError::new(path, e))?;
    }
    if as_json {
        println!(
            "{}",
            json!({
                "reference": target.to_string(),
                "digest": report.digest,
                "uploaded": report.uploaded,
                "present": report.present,
                "mounted": report.mounted,
                "docker_media_types": report.docker_types,
                "referrers": report.referrers,
            })
        );
    }
    let referrers = match report.via {
        Some(via) if report.referrers > 0 => {
            format!(" and {} referrer(s), {via}", report.referrers)
        }
        _ => String::new(),
    };
    progress.done(&format!(
        "pushed {target}@{} ({} uploaded, {} already there, {} mounted){referrers}",
        report.digest, report.uploaded, report.present, report.mounted
    ));
    Ok(())
}

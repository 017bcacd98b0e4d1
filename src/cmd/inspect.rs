//! `rustimage inspect`: what an image holds, for people (or JSON), and
//! the SBOMs attached to it, byte for byte (`--sbom`).

use std::io::{self, Read, Write};
use std::path::Path;

use indicatif::HumanBytes;

use super::Error;
use super::cli::InspectArgs;
use crate::oci::{self, Blob, Descriptor, Digest, Image, ImageSet, Manifest, referrer};
use crate::sbom::Kind;
use crate::sinks::OutputError;

pub fn run(args: &InspectArgs) -> Result<(), Error> {
    let set = oci::read(&args.image)?;
    if args.sbom.is_some() || args.sbom_out.is_some() {
        let wanted = args.sbom.as_deref().unwrap_or_default();
        let blob = pick_sbom(&set, wanted).map_err(|what| Error::path(&args.image, what, None))?;
        return extract(blob, &args.image, args.sbom_out.as_deref());
    }
    let images = set.images()?;
    if args.json {
        // The documents as they are, fields rustimage does not know included.
        let mut docs = Vec::new();
        for i in &images {
            let manifest: serde_json::Value = set.doc(&i.descriptor.digest)?;
            let config: serde_json::Value = set.doc(&i.manifest.config.digest)?;
            docs.push(serde_json::json!({
                "names": i.names,
                "digest": i.descriptor.digest,
                "manifest": manifest,
                "config": config,
                "referrers": i.referrers,
            }));
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&docs).unwrap_or_default()
        );
        return Ok(());
    }
    for (i, image) in images.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print!("{}", describe(image));
        print!("{}", referrers(&set, &image.referrers));
    }
    Ok(())
}

/// The SBOMs attached to the set's documents: (referrer, its content).
fn sboms(set: &ImageSet) -> Vec<(Descriptor, &Blob)> {
    let mut out = Vec::new();
    for subject in set.subjects() {
        for r in set.referrers(subject) {
            let Some(kind) = r.artifact_type.as_deref().and_then(Kind::from_media_type) else {
                continue;
            };
            let content = set
                .doc::<Manifest>(&r.digest)
                .ok()
                .and_then(|m| referrer::content(&m).map(|d| d.digest))
                .and_then(|d| set.blob(&d));
            if let Some(blob) = content.filter(|b| b.media_type == kind.media_type()) {
                out.push((r.clone(), blob));
            }
        }
    }
    out
}

/// The SBOM `wanted` names: the only one (empty), a digest (of the
/// referrer or the SBOM), or a type (short name or media type).
fn pick_sbom<'s>(set: &'s ImageSet, wanted: &str) -> Result<&'s Blob, String> {
    let all = sboms(set);
    if all.is_empty() {
        return Err("no SBOM is attached to this image".into());
    }
    let by_digest = Digest::parse(wanted).ok();
    let kind = Kind::ALL
        .into_iter()
        .find(|k| k.short().eq_ignore_ascii_case(wanted) || k.media_type() == wanted);
    if !wanted.is_empty() && by_digest.is_none() && kind.is_none() {
        return Err(format!(
            "--sbom={wanted}: give a digest or a type (spdx, spdx3, cyclonedx)"
        ));
    }
    let matching: Vec<&(Descriptor, &Blob)> = all
        .iter()
        .filter(|(r, b)| match (by_digest, kind) {
            (Some(d), _) => r.digest == d || b.digest == d,
            (None, Some(k)) => b.media_type == k.media_type(),
            (None, None) => true,
        })
        .collect();
    match matching.as_slice() {
        [(_, blob)] => Ok(blob),
        [] => Err(format!("no attached SBOM is {wanted}")),
        several => Err(format!(
            "{} SBOMs match; name one with --sbom=DIGEST: {}",
            several.len(),
            several
                .iter()
                .map(|(r, b)| format!("{} ({})", r.digest, b.media_type))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Copies the SBOM's bytes (from `image`) to `out`, atomically, or to
/// stdout.
fn extract(blob: &Blob, image: &Path, out: Option<&Path>) -> Result<(), Error> {
    let mut data = Vec::new();
    let short = || io::Error::new(io::ErrorKind::UnexpectedEof, "shorter than recorded");
    blob.reader()
        .and_then(|mut r| r.read_to_end(&mut data))
        .and_then(|n| {
            if n as u64 == blob.size {
                Ok(())
            } else {
                Err(short())
            }
        })
        .map_err(|e| {
            Error::path(
                image,
                format!("SBOM {}: can't read it", blob.digest),
                Some(e),
            )
        })?;
    let path = out.unwrap_or(Path::new("-"));
    let fail = |e: io::Error| Error::Output(OutputError::new(path, e));
    match out {
        Some(path) => crate::atomic::write_file(path, &data).map_err(fail),
        None => {
            let mut stdout = io::stdout().lock();
            stdout
                .write_all(&data)
                .and_then(|_| stdout.flush())
                .map_err(fail)
        }
    }
}

/// The referrers block of the text output: type, size and digest of each
/// attached artifact (the size and digest of what it carries, then the
/// referrer manifest's digest).
fn referrers(set: &ImageSet, list: &[Descriptor]) -> String {
    if list.is_empty() {
        return String::new();
    }
    let mut out = format!("{:<12}{}\n", "Referrers", list.len());
    for (i, r) in list.iter().enumerate() {
        let manifest = set.doc::<Manifest>(&r.digest).ok();
        let content = manifest.as_ref().and_then(|m| referrer::content(m));
        let size = content.map_or(r.size, |c| c.size);
        let title = content
            .and_then(|c| c.annotations.get(referrer::TITLE))
            .map(|t| format!("  {t}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {:>3}  {}  {:>10}  {}{title}\n",
            i + 1,
            r.artifact_type.as_deref().unwrap_or("?"),
            HumanBytes(size).to_string(),
            content.map_or(r.digest, |c| c.digest),
        ));
        out.push_str(&format!("       referrer {}\n", r.digest));
    }
    out
}

fn describe(image: &Image) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<12}{v}\n"));
    let c = &image.config;
    line("Manifest", image.descriptor.digest.to_string());
    if !image.names.is_empty() {
        line("Names", image.names.join(", "));
    }
    line("Platform", c.platform().to_string());
    if let Some(t) = &c.created {
        line("Created", t.clone());
    }
    if let Some(a) = &c.author {
        line("Author", a.clone());
    }
    let run = c.config.clone().unwrap_or_default();
    let json = |v: &Option<Vec<String>>| v.as_ref().map(|v| serde_json::json!(v).to_string());
    for (label, value) in [
        ("Entrypoint", json(&run.entrypoint)),
        ("Cmd", json(&run.cmd)),
        ("WorkingDir", run.working_dir.clone()),
        ("User", run.user.clone()),
        ("StopSignal", run.stop_signal.clone()),
    ] {
        if let Some(v) = value {
            line(label, v);
        }
    }
    for e in run.env.iter().flatten() {
        line("Env", e.clone());
    }
    for (key, map) in [
        ("ExposedPorts", &run.exposed_ports),
        ("Volumes", &run.volumes),
    ] {
        if let Some(m) = map {
            line(key, m.keys().cloned().collect::<Vec<_>>().join(", "));
        }
    }
    for (k, v) in run.labels.iter().flatten() {
        line("Label", format!("{k}={v}"));
    }
    let layers = &image.manifest.layers;
    let total: u64 = layers.iter().map(|l| l.size).sum();
    line(
        "Layers",
        format!("{} ({} compressed)", layers.len(), HumanBytes(total)),
    );
    // History entries that made no layer don't line up with layers.
    let history: Vec<_> = c
        .history
        .iter()
        .filter(|h| h.empty_layer != Some(true))
        .collect();
    for (i, layer) in layers.iter().enumerate() {
        let by = history
            .get(i)
            .and_then(|h| h.created_by.as_deref())
            .unwrap_or_default();
        out.push_str(&format!(
            "  {:>3}  {}  {:>10}  {by}\n",
            i + 1,
            layer.digest,
            HumanBytes(layer.size).to_string()
        ));
        if let Some(d) = c.rootfs.diff_ids.get(i) {
            out.push_str(&format!("       diff_id {d}\n"));
        }
        if let Some(comment) = history.get(i).and_then(|h| h.comment.as_deref()) {
            out.push_str(&format!("       {comment}\n"));
        }
    }
    out
}

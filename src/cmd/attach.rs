//! `rustimage attach`, and the SBOMs of `build --sbom`: each SBOM file
//! becomes an artifact attached to the image (see [`oci::referrer`]). An
//! archive is written again whole (the same bytes `build --sbom` would
//! have written); a layout directory gets the new blobs only; a registry
//! image gets them pushed with their referrers list.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::cli::AttachArgs;
use super::{Error, push};
use crate::oci::{self, Blob, Descriptor, Digest, ImageSet, Source, referrer};
use crate::progress::Progress;
use crate::registry::{self, Target};
use crate::sbom;
use crate::sinks;

pub fn run(args: &AttachArgs) -> Result<(), Error> {
    let progress = Progress::new(args.quiet, args.json);
    let path = Path::new(&args.image);
    let tmp = std::env::temp_dir();
    let mut contents = Vec::new();
    for file in &args.sboms {
        contents.push(sbom_blob(file, &tmp)?);
    }
    let attached = if path.exists() {
        local(path, &contents, &progress)?
    } else {
        remote(args, &contents, &progress)?
    };
    if let Some(path) = &args.registry.digestfile {
        let lines: String = attached.iter().map(|d| format!("{}\n", d.digest)).collect();
        crate::atomic::write_file(path, lines.as_bytes())
            .map_err(|e| crate::sinks::OutputError::new(path, e))?;
    }
    if args.json {
        let list: Vec<serde_json::Value> = attached
            .iter()
            .map(|d| {
                json!({
                    "digest": d.digest,
                    "size": d.size,
                    "artifactType": d.artifact_type,
                })
            })
            .collect();
        println!("{}", json!({ "referrers": list }));
    }
    Ok(())
}

/// An SBOM file as a blob: copied to a private temporary file in `tmp`
/// (so later changes to the file can't change what was hashed), hashed on
/// the way, and recognised by its content; titled by its file name.
pub(super) fn sbom_blob(path: &Path, tmp: &Path) -> Result<(Blob, Option<String>), Error> {
    let fail = |e: io::Error| Error::path(path, "can't read the SBOM", Some(e));
    let mut input = File::open(path).map_err(fail)?;
    if !input.metadata().map_err(fail)?.is_file() {
        return Err(Error::path(path, "the SBOM is not a regular file", None));
    }
    let mut copy = tempfile::tempfile_in(tmp)
        .map_err(|e| Error::path(tmp, "can't make a temporary file", Some(e)))?;
    let mut hash = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = input.read(&mut buf).map_err(fail)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        copy.write_all(&buf[..n])
            .map_err(|e| Error::path(tmp, "can't write a temporary file", Some(e)))?;
        size += n as u64;
    }
    copy.rewind().map_err(fail)?;
    let kind = sbom::kind::detect_in(io::BufReader::new(&copy)).map_err(|what| {
        Error::Sbom(sbom::SbomError {
            path: path.to_path_buf(),
            what,
            source: None,
        })
    })?;
    let title = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty());
    Ok((
        Blob {
            digest: Digest::from_hasher(hash),
            size,
            media_type: kind.media_type().to_string(),
            source: Source::Temp(Arc::new(copy)),
        },
        title,
    ))
}

/// Attaches each `(content, title)` to `subject` in `set`.
pub(super) fn attach_to(
    set: &mut ImageSet,
    subject: &Descriptor,
    contents: &[(Blob, Option<String>)],
    created: Option<&str>,
) -> Result<Vec<Descriptor>, Error> {
    let mut out = Vec::new();
    for (content, title) in contents {
        let doc = referrer::artifact(subject, content, title.as_deref(), created);
        out.push(set.add_referrer(doc, vec![referrer::empty(), content.clone()])?);
    }
    Ok(out)
}

/// The one image (or index) a set holds: what SBOMs are attached to,
/// with its creation time (an index has none).
pub(super) fn only_entry(set: &ImageSet) -> Result<(Descriptor, Option<String>), String> {
    let mut digests: Vec<Digest> = set.entries.iter().map(|e| e.digest).collect();
    digests.dedup();
    let [digest] = digests.as_slice() else {
        return Err(format!(
            "holds {} images; attach SBOMs to an archive or layout of one image (or index)",
            digests.len()
        ));
    };
    let entry = set
        .entries
        .iter()
        .find(|e| e.digest == *digest)
        .ok_or("no entry")?;
    let subject = Descriptor::new(&entry.media_type, entry.digest, entry.size);
    if !oci::media::is_manifest(&entry.media_type) {
        return Ok((subject, None));
    }
    let manifest: oci::Manifest = set.doc(&entry.digest).map_err(|e| e.to_string())?;
    let config: oci::ImageConfig = set
        .doc(&manifest.config.digest)
        .map_err(|e| e.to_string())?;
    Ok((subject, config.created))
}

/// Seconds since the epoch of an RFC 3339 time (archive member times).
pub(super) fn epoch(rfc3339: Option<&str>) -> u64 {
    rfc3339
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .and_then(|t| u64::try_from(t.unix_timestamp()).ok())
        .unwrap_or(0)
}

fn local(
    path: &Path,
    contents: &[(Blob, Option<String>)],
    progress: &Progress,
) -> Result<Vec<Descriptor>, Error> {
    let mut set = oci::read(path)?;
    let (subject, created) = only_entry(&set).map_err(|what| Error::path(path, what, None))?;
    let attached = attach_to(&mut set, &subject, contents, created.as_deref())?;
    if path.is_dir() {
        let empty = referrer::empty();
        let mut new: Vec<&Blob> = vec![&empty];
        new.extend(contents.iter().map(|(b, _)| b));
        new.extend(attached.iter().filter_map(|d| set.blob(&d.digest)));
        sinks::ocidir::add_blobs(path, &new)?;
    } else {
        // The archive as build --sbom writes it: members dated by the
        // image's creation time.
        sinks::archive::write(&set, path, epoch(created.as_deref()))?;
    }
    progress.done(&format!(
        "attached {} to {} ({}): {}",
        plural(attached.len(), "SBOM"),
        path.display(),
        subject.digest,
        describe(&attached)
    ));
    Ok(attached)
}

fn remote(
    args: &AttachArgs,
    contents: &[(Blob, Option<String>)],
    progress: &Progress,
) -> Result<Vec<Descriptor>, Error> {
    let looks_like_a_file = [".tar", ".docker-tar", ".json"]
        .iter()
        .any(|s| args.image.ends_with(s))
        || args.image.starts_with(['.', '/']);
    let target = match Target::parse(&args.image) {
        Ok(t) if !looks_like_a_file => t,
        _ => {
            return Err(Error::path(
                Path::new(&args.image),
                "no such image archive or layout (and not a registry reference)",
                None,
            ));
        }
    };
    let opts = push::options(&args.registry);
    let bars = progress.blobs();
    let report = registry::attach(&target, contents, &opts, &|digest, sent, size| {
        bars.update(digest, sent, size)
    })?;
    bars.clear();
    progress.done(&format!(
        "attached {} to {}@{} ({}): {}",
        plural(report.referrers.len(), "SBOM"),
        target,
        report.subject.digest,
        report.via,
        describe(&report.referrers)
    ));
    Ok(report.referrers)
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// `application/spdx+json sha256:...` per referrer.
fn describe(list: &[Descriptor]) -> String {
    list.iter()
        .map(|d| format!("{} {}", d.artifact_type.as_deref().unwrap_or("?"), d.digest))
        .collect::<Vec<_>>()
        .join(", ")
}

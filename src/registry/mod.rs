//! Registry sink: pushes an image (or an index of images) to an OCI
//! registry by the distribution spec. Blobs first, several at a time and
//! streamed from disk, each skipped when present or mounted when another
//! repository has it; manifests last, so a tag never points at missing
//! blobs; then the image's referrers (SBOMs), whose subject must exist
//! first ([`referrers`]). Docker v2 schema 2 types are used only when a
//! registry refuses OCI ones. [`attach`] adds referrers to an image
//! already in a registry.

pub mod auth;
mod certs_d;
pub mod client;
mod content;
mod convert;
mod origin;
mod paths;
mod proxy;
pub mod reference;
pub mod referrers;
mod registries_conf;
mod tcp;
mod tls;
mod transport;
pub mod upload;
mod x509;

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::oci::{self, Blob, Descriptor, Digest, media, referrer};
pub use content::from_set;
pub use reference::Target;
pub use referrers::{Attached, Via};
use upload::{Outcome, Uploader};

/// One line: what failed and what to do about it.
#[derive(Debug)]
pub struct RegistryError {
    message: String,
    timeout: bool,
}

impl RegistryError {
    pub fn new(message: impl Into<String>) -> RegistryError {
        RegistryError {
            message: message.into(),
            timeout: false,
        }
    }

    /// The registry stopped answering or taking data for `--timeout`:
    /// worth one more try at most.
    pub fn timeout(message: impl Into<String>) -> RegistryError {
        RegistryError {
            message: message.into(),
            timeout: true,
        }
    }

    pub fn is_timeout(&self) -> bool {
        self.timeout
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RegistryError {}

impl From<ureq::http::Error> for RegistryError {
    fn from(e: ureq::http::Error) -> Self {
        RegistryError::new(format!("building a request: {e}"))
    }
}

/// What a push sends: blobs from an image set, then the manifests.
pub struct Payload<'a> {
    /// Every blob (layers and configs), each once.
    pub blobs: Vec<&'a Blob>,
    /// The image manifests of an index, pushed by digest before it.
    pub children: Vec<Blob>,
    /// The document the tag points at (a manifest or index, in memory).
    pub top: Blob,
    /// Repositories of the same registry named in the source, to mount from.
    pub mount_hints: Vec<String>,
    /// What is attached to the top document or its children (their blobs
    /// are in `blobs`), subjects before their referrers.
    pub referrers: Vec<Attached>,
}

pub struct PushOptions {
    pub client: client::ClientOptions,
    /// Blobs in flight at once.
    pub jobs: usize,
    /// Blobs above this size go up in chunks of it.
    pub chunk: u64,
    /// Repositories to try mounting blobs from.
    pub mount_from: Vec<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub digest: String,
    pub uploaded: usize,
    pub present: usize,
    pub mounted: usize,
    /// True when the registry took only Docker v2 schema 2 types.
    pub docker_types: bool,
    /// Referrers pushed, and how they came to be listed.
    pub referrers: usize,
    pub via: Option<Via>,
}

/// Called per blob with (digest, bytes sent, size); `None` bytes when done.
pub type BlobProgress<'p> = &'p (dyn Fn(&str, Option<u64>, u64) + Sync);

/// The blob and manifest steps for `target`'s repository.
fn uploader<'c>(client: &'c client::Client, target: &Target, opts: &PushOptions) -> Uploader<'c> {
    Uploader {
        client,
        repo: target.repository.clone(),
        chunk: opts.chunk.max(1),
        backoff: opts.client.backoff,
    }
}

pub fn push(
    target: &Target,
    content: &Payload<'_>,
    opts: &PushOptions,
    progress: BlobProgress<'_>,
) -> Result<Report, RegistryError> {
    let client = client::Client::connect(target, &opts.client)?;
    let up = uploader(&client, target, opts);
    let mut mount_from = opts.mount_from.clone();
    mount_from.extend(content.mount_hints.iter().cloned());
    mount_from.retain(|r| *r != target.repository);
    mount_from.dedup();
    let outcomes = push_blobs(&up, &content.blobs, &mount_from, opts.jobs, progress)?;
    let count = |o: Outcome| outcomes.iter().filter(|&&x| x == o).count();
    let mut report = Report {
        uploaded: count(Outcome::Uploaded),
        present: count(Outcome::Present),
        mounted: count(Outcome::Mounted),
        ..Report::default()
    };

    let reference = target.reference().unwrap_or("latest").to_string();
    match put_all(&up, content, &reference, false) {
        Ok(digest) => report.digest = digest,
        Err(Put::Refused(first)) => {
            // An older registry: the same content with Docker's types.
            report.digest = match put_all(&up, content, &reference, true) {
                Ok(d) => d,
                Err(Put::Refused(e) | Put::Failed(e)) => {
                    return Err(RegistryError::new(format!(
                        "{} refused the manifest both as OCI ({}) and as Docker v2 ({})",
                        target.registry, first.message, e.message
                    )));
                }
            };
            report.docker_types = true;
        }
        Err(Put::Failed(e)) => return Err(e),
    }
    if let Some(d) = &target.digest
        && *d != report.digest
    {
        return Err(RegistryError::new(format!(
            "pushed manifest {} but the reference asked for {d}",
            report.digest
        )));
    }
    if !content.referrers.is_empty() {
        if report.docker_types {
            return Err(RegistryError::new(format!(
                "{} took the image only as Docker v2 (pushed as {}), which changes its digest: \
                 its {} referrer(s) (SBOMs) name the OCI one and were not pushed",
                target.registry,
                report.digest,
                content.referrers.len()
            )));
        }
        report.via = Some(referrers::put(&up, &content.referrers)?);
        report.referrers = content.referrers.len();
    }
    Ok(report)
}

/// Pushes `blobs`, `jobs` at a time; the first failure stops the rest.
fn push_blobs(
    up: &Uploader<'_>,
    blobs: &[&Blob],
    mount_from: &[String],
    jobs: usize,
    progress: BlobProgress<'_>,
) -> Result<Vec<Outcome>, RegistryError> {
    let client = up.client;
    let content_blobs = blobs;
    let next = AtomicUsize::new(0);
    let outcomes: Mutex<Vec<Outcome>> = Mutex::new(Vec::new());
    let failure: Mutex<Option<RegistryError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, content_blobs.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(blob) = content_blobs.get(i) else {
                        break;
                    };
                    let digest = blob.digest.to_string();
                    let report = |n: u64| progress(&digest, Some(n), blob.size);
                    match up.push(blob, mount_from, &report) {
                        Ok(o) => {
                            progress(&digest, None, blob.size);
                            if let Ok(mut v) = outcomes.lock() {
                                v.push(o);
                            }
                        }
                        Err(e) => {
                            if let Ok(mut f) = failure.lock() {
                                f.get_or_insert(e);
                            }
                            // The push has failed: hand out no more blobs,
                            // and end the uploads still going.
                            next.store(content_blobs.len(), Ordering::Relaxed);
                            client.abort();
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    Ok(outcomes.into_inner().unwrap_or_else(|e| e.into_inner()))
}

/// What [`attach`] did.
pub struct AttachReport {
    /// The image (or index) the reference named.
    pub subject: Descriptor,
    pub referrers: Vec<Descriptor>,
    pub via: Via,
}

/// Attaches each `(content, title)` to the image `target` names in its
/// registry: the image is resolved to its manifest (and its creation time
/// read from its config, so the artifact is the one a local attach
/// makes), the contents and the empty config go up, then the artifact
/// manifests, listed as [`referrers`] says.
pub fn attach(
    target: &Target,
    contents: &[(Blob, Option<String>)],
    opts: &PushOptions,
    progress: BlobProgress<'_>,
) -> Result<AttachReport, RegistryError> {
    let client = client::Client::connect(target, &opts.client)?;
    let up = uploader(&client, target, opts);
    let (subject, created) = resolve(&up, target)?;
    let empty = referrer::empty();
    let mut blobs: Vec<&Blob> = vec![&empty];
    blobs.extend(contents.iter().map(|(b, _)| b));
    push_blobs(&up, &blobs, &opts.mount_from, opts.jobs, progress)?;
    let mut attached = Vec::new();
    for (content, title) in contents {
        let doc = referrer::artifact(&subject, content, title.as_deref(), created.as_deref());
        let bytes = doc.in_memory().ok_or_else(|| {
            RegistryError::new(format!(
                "internal error: referrer {} not in memory",
                doc.digest
            ))
        })?;
        let manifest: oci::Manifest = serde_json::from_slice(bytes)
            .map_err(|e| RegistryError::new(format!("internal error: {e}")))?;
        attached.push(Attached {
            subject: subject.digest,
            listing: referrer::listing(&doc, &manifest),
            manifest: doc,
        });
    }
    let via = referrers::put(&up, &attached)?;
    Ok(AttachReport {
        subject,
        referrers: attached.into_iter().map(|a| a.listing).collect(),
        via,
    })
}

/// The manifest or index `target` names (its descriptor as a subject),
/// and, for an image, the creation time its config gives.
fn resolve(
    up: &Uploader<'_>,
    target: &Target,
) -> Result<(Descriptor, Option<String>), RegistryError> {
    let reference = target.reference().unwrap_or("latest");
    let accept = [
        media::MANIFEST,
        media::INDEX,
        media::DOCKER_MANIFEST,
        media::DOCKER_LIST,
    ]
    .join(", ");
    let r = up.get_manifest(reference, &accept)?;
    match r.status {
        200 => {}
        404 => {
            return Err(RegistryError::new(format!(
                "{target}: no such image in the registry"
            )));
        }
        s => return Err(up.explain(&r, &format!("getting manifest {reference} gave {s}"))),
    }
    let digest = Digest::of(&r.body);
    let said = r
        .header("docker-content-digest")
        .or(target.digest.as_deref());
    if let Some(d) = said
        && d != digest.to_string()
    {
        return Err(RegistryError::new(format!(
            "{target}: the registry sent a manifest whose digest is {digest}, not {d}"
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&r.body)
        .map_err(|e| RegistryError::new(format!("{target}: the manifest is not JSON: {e}")))?;
    let media_type = r
        .header("content-type")
        .map(|t| t.split(';').next().unwrap_or(t).trim().to_string())
        .filter(|t| media::is_manifest(t) || media::is_index(t))
        .or_else(|| v["mediaType"].as_str().map(str::to_string))
        .ok_or_else(|| {
            RegistryError::new(format!(
                "{target}: the registry did not say what the manifest is"
            ))
        })?;
    let subject = Descriptor::new(&media_type, digest, r.body.len() as u64);
    if !media::is_manifest(&media_type) {
        return Ok((subject, None));
    }
    let config = v["config"]["digest"]
        .as_str()
        .and_then(|d| Digest::parse(d).ok())
        .ok_or_else(|| RegistryError::new(format!("{target}: the manifest names no config")))?;
    let url = format!("/v2/{}/blobs/{config}", up.repo);
    let c = up.client.request(
        "GET",
        &url,
        &[],
        &client::Body::Empty,
        &up.scope(),
        client::Retry::Transient,
    )?;
    if c.status != 200 || Digest::of(&c.body) != config {
        return Err(up.explain(&c, &format!("getting config {config} gave {}", c.status)));
    }
    let config: oci::ImageConfig = serde_json::from_slice(&c.body)
        .map_err(|e| RegistryError::new(format!("{target}: config {config}: {e}")))?;
    Ok((subject, config.created))
}

enum Put {
    /// The registry doesn't take these media types.
    Refused(RegistryError),
    Failed(RegistryError),
}

/// Puts the children by digest, then the top document by `reference`;
/// returns the top digest.
fn put_all(
    up: &Uploader<'_>,
    content: &Payload<'_>,
    reference: &str,
    docker: bool,
) -> Result<String, Put> {
    let mut children = Vec::with_capacity(content.children.len());
    for child in &content.children {
        let doc = if docker {
            convert::to_docker(child, &[]).map_err(Put::Failed)?
        } else {
            child.clone()
        };
        put_one(up, &doc, &doc.digest.to_string())?;
        children.push((child.digest, doc));
    }
    let top = if docker {
        convert::to_docker(&content.top, &children).map_err(Put::Failed)?
    } else {
        content.top.clone()
    };
    // A digest reference names the OCI document; after conversion the
    // converted document's own digest is the only valid one.
    let top_digest = top.digest.to_string();
    let reference = if reference.starts_with("sha256:") {
        top_digest.as_str()
    } else {
        reference
    };
    put_one(up, &top, reference)?;
    Ok(top_digest)
}

fn put_one(up: &Uploader<'_>, doc: &Blob, reference: &str) -> Result<(), Put> {
    let Some(bytes) = doc.in_memory() else {
        return Err(Put::Failed(RegistryError::new(format!(
            "manifest {} was not read into memory",
            doc.digest
        ))));
    };
    let r = up
        .manifest(reference, &doc.media_type, bytes)
        .map_err(Put::Failed)?;
    match r.status {
        200..=299 => {
            if let Some(d) = r.header("docker-content-digest")
                && d != doc.digest.to_string()
            {
                return Err(Put::Failed(RegistryError::new(format!(
                    "the registry stored the manifest as {d}, not {}",
                    doc.digest
                ))));
            }
            Ok(())
        }
        415 => Err(Put::Refused(up.explain(&r, "unsupported media type"))),
        400 if r
            .error_codes()
            .iter()
            .any(|c| c == "MANIFEST_INVALID" || c == "UNSUPPORTED") =>
        {
            Err(Put::Refused(up.explain(&r, "manifest refused")))
        }
        s => Err(Put::Failed(up.explain(
            &r,
            &format!("putting manifest {} gave {s}", doc.digest),
        ))),
    }
}

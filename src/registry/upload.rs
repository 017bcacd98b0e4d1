//! The distribution protocol's blob and manifest steps: HEAD to skip what
//! the registry has, cross-repository mount, monolithic PUT or chunked
//! PATCH uploads resumed from the offset the registry reports, and a HEAD
//! after a failed commit before anything is sent again.

use std::io::{self, Read};
use std::time::Duration;

use super::RegistryError;
use super::client::{Body, Client, RETRIES, Response, Retry, TIMEOUT_RETRIES, join_query};
use crate::oci::Blob;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The registry had it already.
    Present,
    /// Mounted from another repository of the same registry.
    Mounted,
    Uploaded,
}

pub struct Uploader<'c> {
    pub client: &'c Client,
    pub repo: String,
    /// Blobs larger than this go up in PATCH chunks of this size.
    pub chunk: u64,
    pub backoff: Duration,
}

impl Uploader<'_> {
    pub fn scope(&self) -> String {
        format!("repository:{}:pull,push", self.repo)
    }

    fn blob_url(&self, digest: &str) -> String {
        format!("/v2/{}/blobs/{digest}", self.repo)
    }

    /// Pushes one blob; `progress` is told bytes sent.
    pub fn push(
        &self,
        blob: &Blob,
        mount_from: &[String],
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Outcome, RegistryError> {
        if self.exists(&blob.digest.to_string())? {
            return Ok(Outcome::Present);
        }
        let mut location = None;
        for from in mount_from.iter().filter(|f| **f != self.repo) {
            let scope = format!("{} repository:{from}:pull", self.scope());
            let url = format!(
                "/v2/{}/blobs/uploads/?mount={}&from={from}",
                self.repo, blob.digest
            );
            let r =
                self.client
                    .request("POST", &url, &[], &Body::Empty, &scope, Retry::Transient)?;
            match r.status {
                201 => return Ok(Outcome::Mounted),
                // Not mountable, but an upload session was opened: use it.
                202 => {
                    location = r.header("location").map(str::to_string);
                    break;
                }
                _ => continue,
            }
        }
        let mut attempt = 0;
        let mut timeouts = 0;
        loop {
            let loc = match location.take() {
                Some(l) => l,
                None => self.start()?,
            };
            let result = if blob.size > self.chunk {
                self.chunked(blob, loc, progress)
            } else {
                self.monolithic(blob, &loc, progress)
            };
            match result {
                Ok(()) => return Ok(Outcome::Uploaded),
                // The commit may have landed even though we saw no answer.
                Err(e) => {
                    if self.client.is_aborted() {
                        return Err(e.error);
                    }
                    if self.exists(&blob.digest.to_string())? {
                        return Ok(Outcome::Uploaded);
                    }
                    if e.error.is_timeout() {
                        timeouts += 1;
                    }
                    if attempt >= RETRIES
                        || !e.retryable
                        || timeouts > TIMEOUT_RETRIES
                        || self.client.is_aborted()
                    {
                        return Err(e.error);
                    }
                    std::thread::sleep(self.backoff * 2u32.pow(attempt));
                    attempt += 1;
                }
            }
        }
    }

    fn exists(&self, digest: &str) -> Result<bool, RegistryError> {
        let r = self.client.request(
            "HEAD",
            &self.blob_url(digest),
            &[],
            &Body::Empty,
            &self.scope(),
            Retry::Transient,
        )?;
        match r.status {
            200 => Ok(true),
            404 => Ok(false),
            s => Err(self.explain(&r, &format!("HEAD blob {digest} gave {s}"))),
        }
    }

    /// Opens an upload session; returns its Location.
    fn start(&self) -> Result<String, RegistryError> {
        let url = format!("/v2/{}/blobs/uploads/", self.repo);
        let r = self.client.request(
            "POST",
            &url,
            &[],
            &Body::Empty,
            &self.scope(),
            Retry::Transient,
        )?;
        if r.status != 202 {
            return Err(self.explain(&r, &format!("starting an upload gave {}", r.status)));
        }
        r.header("location")
            .map(str::to_string)
            .ok_or_else(|| RegistryError::new("the registry opened an upload without a Location"))
    }

    fn monolithic(
        &self,
        blob: &Blob,
        location: &str,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(), Attempt> {
        let url = join_query(location, &format!("digest={}", blob.digest));
        let open = || -> io::Result<Box<dyn Read + Send + '_>> {
            Ok(Box::new(Counted {
                inner: blob.open_at(0)?,
                progress,
                done: 0,
            }))
        };
        let r = self
            .client
            .request(
                "PUT",
                &url,
                &[("Content-Type", "application/octet-stream")],
                &Body::Stream {
                    open: &open,
                    len: blob.size,
                },
                &self.scope(),
                Retry::Never,
            )
            .map_err(Attempt::transient)?;
        self.committed(&r, &blob.digest.to_string())
    }

    fn chunked(
        &self,
        blob: &Blob,
        mut location: String,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(), Attempt> {
        let mut offset = 0u64;
        let mut stalls = 0;
        while offset < blob.size {
            let len = self.chunk.min(blob.size - offset);
            let start = offset;
            let open = || -> io::Result<Box<dyn Read + Send + '_>> {
                Ok(Box::new(Counted {
                    inner: Box::new(blob.open_at(start)?.take(len)),
                    progress,
                    done: start,
                }))
            };
            let range = format!("{}-{}", start, start + len - 1);
            let sent = self.client.request(
                "PATCH",
                &location,
                &[
                    ("Content-Type", "application/octet-stream"),
                    ("Content-Range", &range),
                ],
                &Body::Stream { open: &open, len },
                &self.scope(),
                Retry::Never,
            );
            match sent {
                Ok(r) if r.status == 202 => {
                    location = r.header("location").map(str::to_string).unwrap_or(location);
                    offset = received(&r).unwrap_or(start + len);
                    stalls = 0;
                }
                Ok(r)
                    if r.status == 416 || r.status >= 500 || r.status == 408 || r.status == 429 =>
                {
                    (location, offset) = self.status(&location).map_err(Attempt::transient)?;
                    stalls += 1;
                }
                Ok(r) => {
                    return Err(Attempt::fatal(
                        self.explain(&r, &format!("uploading a chunk gave {}", r.status)),
                    ));
                }
                // A stalled registry: the caller tries the blob once more.
                Err(e) if e.is_timeout() => return Err(Attempt::transient(e)),
                Err(e) => {
                    // Ask the registry how far it got and go on from there.
                    (location, offset) =
                        self.status(&location).map_err(|_| Attempt::transient(e))?;
                    stalls += 1;
                }
            }
            if stalls > RETRIES {
                return Err(Attempt::transient(RegistryError::new(format!(
                    "uploading {} made no progress after {RETRIES} retries",
                    blob.digest
                ))));
            }
            if stalls > 0 {
                std::thread::sleep(self.backoff * 2u32.pow(stalls.min(6)));
            }
        }
        let url = join_query(&location, &format!("digest={}", blob.digest));
        let r = self
            .client
            .request("PUT", &url, &[], &Body::Empty, &self.scope(), Retry::Never)
            .map_err(Attempt::transient)?;
        self.committed(&r, &blob.digest.to_string())
    }

    /// Where an interrupted upload stands: its Location and next offset.
    fn status(&self, location: &str) -> Result<(String, u64), RegistryError> {
        let r = self.client.request(
            "GET",
            location,
            &[],
            &Body::Empty,
            &self.scope(),
            Retry::Transient,
        )?;
        if r.status != 204 {
            return Err(RegistryError::new(format!(
                "upload session lost ({})",
                r.status
            )));
        }
        // The end of a Range is inclusive, so "0-0" means none or one byte:
        // only a fresh upload is safe from there.
        if r.header("range").is_some_and(|v| v.trim() == "0-0") {
            return Err(RegistryError::new(
                "the upload session holds an ambiguous 0-0 range",
            ));
        }
        let loc = r
            .header("location")
            .map(str::to_string)
            .unwrap_or_else(|| location.to_string());
        Ok((loc, received(&r).unwrap_or(0)))
    }

    fn committed(&self, r: &Response, digest: &str) -> Result<(), Attempt> {
        match r.status {
            201 => Ok(()),
            408 | 429 | 500..=599 => Err(Attempt::transient(
                self.explain(r, &format!("committing {digest} gave {}", r.status)),
            )),
            s => Err(Attempt::fatal(
                self.explain(r, &format!("committing {digest} gave {s}")),
            )),
        }
    }

    /// Puts a manifest (or index) under `reference` (a tag or its digest).
    pub fn manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Response, RegistryError> {
        self.manifest_if(reference, media_type, bytes, None)
    }

    /// [`Uploader::manifest`], only if the one there still has the ETag
    /// `if_match` (registries that don't know conditions ignore it).
    pub fn manifest_if(
        &self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
        if_match: Option<&str>,
    ) -> Result<Response, RegistryError> {
        let url = format!("/v2/{}/manifests/{reference}", self.repo);
        let mut headers = vec![("Content-Type", media_type)];
        if let Some(etag) = if_match {
            headers.push(("If-Match", etag));
        }
        self.client.request(
            "PUT",
            &url,
            &headers,
            &Body::Bytes(bytes),
            &self.scope(),
            Retry::Transient,
        )
    }

    /// Gets the manifest (or index) `reference` names, as one of the
    /// `accept`ed media types.
    pub fn get_manifest(&self, reference: &str, accept: &str) -> Result<Response, RegistryError> {
        let url = format!("/v2/{}/manifests/{reference}", self.repo);
        self.client.request(
            "GET",
            &url,
            &[("Accept", accept)],
            &Body::Empty,
            &self.scope(),
            Retry::Transient,
        )
    }

    /// One line saying what went wrong and what to do.
    pub fn explain(&self, r: &Response, what: &str) -> RegistryError {
        let codes = r.error_codes();
        let has = |c: &str| codes.iter().any(|x| x == c);
        let registry = &self.client.target.registry;
        if r.status == 401 || r.status == 403 {
            return self.client.denied(r.status);
        }
        if has("NAME_UNKNOWN") || (r.status == 404 && what.starts_with("starting")) {
            return RegistryError::new(format!(
                "repository {} is unknown to {registry}: create it there or check the name",
                self.repo
            ));
        }
        if has("NAME_INVALID") {
            return RegistryError::new(format!(
                "{registry} refuses the repository name {}",
                self.repo
            ));
        }
        if has("DENIED") {
            return RegistryError::new(format!(
                "{registry} denied the push to {}: check permissions",
                self.repo
            ));
        }
        if has("BLOB_UPLOAD_INVALID") || has("DIGEST_INVALID") {
            return RegistryError::new(format!(
                "{registry} rejected the upload ({what}): the blob changed while being read?"
            ));
        }
        let detail = if codes.is_empty() {
            String::new()
        } else {
            format!(" ({})", codes.join(", "))
        };
        RegistryError::new(format!("{registry}: {what}{detail}"))
    }
}

/// The next offset from a `Range: 0-N` header.
fn received(r: &Response) -> Option<u64> {
    let range = r.header("range")?;
    let end = range.trim().rsplit('-').next()?.parse::<u64>().ok()?;
    Some(end + 1)
}

/// A failed upload attempt and whether trying again makes sense.
pub struct Attempt {
    error: RegistryError,
    retryable: bool,
}

impl Attempt {
    fn transient(error: RegistryError) -> Attempt {
        Attempt {
            error,
            retryable: true,
        }
    }

    fn fatal(error: RegistryError) -> Attempt {
        Attempt {
            error,
            retryable: false,
        }
    }
}

/// Counts bytes read for progress, starting from `done`.
struct Counted<'p, R> {
    inner: R,
    progress: &'p (dyn Fn(u64) + Sync),
    done: u64,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        (self.progress)(self.done);
        Ok(n)
    }
}

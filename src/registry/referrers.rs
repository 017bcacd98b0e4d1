//! Referrers on push (distribution-spec 1.1, "Pushing Manifests with
//! Subject"): an artifact manifest with a `subject` goes up after its
//! subject, by digest. A registry with the referrers API lists it by
//! itself and says so with an `OCI-Subject` header (or answers
//! `GET /v2/<name>/referrers/<digest>`); one without it (distribution 2.8,
//! Debian's docker-registry) gets the list kept for it, as the spec has
//! clients do: the image index tagged `sha256-<hex>` (the referrers tag
//! schema) is fetched, the new descriptors (artifact type and the
//! manifest's annotations) are added to the ones already there, and it is
//! put back, conditionally on its ETag where the registry gives one. So
//! attaching twice keeps both.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use super::RegistryError;
use super::client::{Body, Retry};
use super::upload::Uploader;
use crate::oci::{self, Blob, Descriptor, Digest, canonical, media};

/// One referrer to push (its blobs go up with the others first): its
/// subject, its manifest, how lists name it.
pub struct Attached {
    pub subject: Digest,
    pub manifest: Blob,
    pub listing: Descriptor,
}

/// How the registry came to list the referrers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// It has the referrers API.
    Api,
    /// It has not: the `sha256-<hex>` tag's index was updated.
    TagSchema,
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Via::Api => "listed by the registry's referrers API",
            Via::TagSchema => "listed in the referrers tag",
        })
    }
}

/// Tries of the read-modify-write of a tag index that a concurrent
/// writer changed under us (412 on the conditional put).
const TAG_TRIES: usize = 3;

/// Puts each referrer's manifest (in order: subjects first), then has
/// every one listed.
pub fn put(up: &Uploader<'_>, referrers: &[Attached]) -> Result<Via, RegistryError> {
    let mut unlisted: BTreeMap<Digest, Vec<Descriptor>> = BTreeMap::new();
    let mut via = Via::Api;
    for r in referrers {
        let digest = r.manifest.digest.to_string();
        let Some(bytes) = r.manifest.in_memory() else {
            return Err(RegistryError::new(format!(
                "referrer {digest} was not read into memory"
            )));
        };
        let resp = up.manifest(&digest, media::MANIFEST, bytes)?;
        if !(200..300).contains(&resp.status) {
            return Err(up.explain(
                &resp,
                &format!("putting referrer {digest} gave {}", resp.status),
            ));
        }
        if resp.header("oci-subject").is_none() {
            unlisted
                .entry(r.subject)
                .or_default()
                .push(r.listing.clone());
        }
    }
    let mut api = None;
    for (subject, list) in &unlisted {
        if *api.get_or_insert(has_api(up, subject)?) {
            continue;
        }
        via = Via::TagSchema;
        update_tag(up, subject, list)?;
    }
    Ok(via)
}

/// Whether `GET /v2/<name>/referrers/<digest>` answers with an index: a
/// registry may list referrers without sending `OCI-Subject`.
fn has_api(up: &Uploader<'_>, subject: &Digest) -> Result<bool, RegistryError> {
    let url = format!("/v2/{}/referrers/{subject}", up.repo);
    let r = up.client.request(
        "GET",
        &url,
        &[("Accept", media::INDEX)],
        &Body::Empty,
        &up.scope(),
        Retry::Transient,
    )?;
    match r.status {
        200 => Ok(serde_json::from_slice::<oci::Index>(&r.body).is_ok()),
        401 | 403 => Err(up.client.denied(r.status)),
        _ => Ok(false),
    }
}

/// The referrers tag of `subject`: `sha256-<hex>`.
pub fn tag(subject: &Digest) -> String {
    format!("sha256-{}", subject.hex())
}

/// Adds `new` to the index tagged for `subject` (made if there is none),
/// keeping what is there.
fn update_tag(
    up: &Uploader<'_>,
    subject: &Digest,
    new: &[Descriptor],
) -> Result<(), RegistryError> {
    let tag = tag(subject);
    for _ in 0..TAG_TRIES {
        let r = up.get_manifest(&tag, media::INDEX)?;
        let (mut index, etag) = match r.status {
            200 => {
                let v: Value = serde_json::from_slice(&r.body).ok().filter(is_index).ok_or_else(|| {
                    RegistryError::new(format!(
                        "{}: tag {tag} holds something other than a referrers index; left as it is, \
                         the referrers are pushed but not listed",
                        up.repo
                    ))
                })?;
                (v, r.header("etag").map(str::to_string))
            }
            404 => (
                serde_json::json!({
                    "schemaVersion": 2,
                    "mediaType": media::INDEX,
                    "manifests": [],
                }),
                None,
            ),
            s => return Err(up.explain(&r, &format!("reading tag {tag} gave {s}"))),
        };
        let Some(list) = index.get_mut("manifests").and_then(Value::as_array_mut) else {
            return Err(RegistryError::new(format!(
                "{}: tag {tag} has no manifests list",
                up.repo
            )));
        };
        let mut added = false;
        for d in new {
            let digest = d.digest.to_string();
            if list
                .iter()
                .any(|m| m["digest"].as_str() == Some(digest.as_str()))
            {
                continue;
            }
            list.push(serde_json::to_value(d).map_err(|e| RegistryError::new(e.to_string()))?);
            added = true;
        }
        if !added {
            return Ok(());
        }
        let bytes = canonical(&index);
        let r = up.manifest_if(&tag, media::INDEX, &bytes, etag.as_deref())?;
        match r.status {
            200..=299 => return Ok(()),
            // Changed since we read it: read it again.
            412 => continue,
            s => return Err(up.explain(&r, &format!("putting tag {tag} gave {s}"))),
        }
    }
    Err(RegistryError::new(format!(
        "{}: tag {tag} kept changing while its referrers were added ({TAG_TRIES} tries)",
        up.repo
    )))
}

fn is_index(v: &Value) -> bool {
    v["schemaVersion"] == 2
        && v["manifests"].is_array()
        && v.get("mediaType").is_none_or(|t| t == media::INDEX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_schema_names() {
        let d = Digest::of(b"");
        assert_eq!(
            tag(&d),
            "sha256-e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(is_index(
            &serde_json::json!({"schemaVersion":2,"manifests":[]})
        ));
        assert!(!is_index(
            &serde_json::json!({"schemaVersion":2,"mediaType":media::MANIFEST,"manifests":[]})
        ));
        assert!(!is_index(
            &serde_json::json!({"schemaVersion":2,"layers":[]})
        ));
    }
}

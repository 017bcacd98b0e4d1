//! What to push: the blobs and manifests of one entry of an image set (a
//! built image, or the image or index of an archive or layout read back),
//! and the referrers attached to its documents.

use std::collections::BTreeSet;

use super::{Attached, Payload, RegistryError, Target};
use crate::oci::{self, Blob, Descriptor, ImageSet};

/// The entry of `set` to push under `target`: the only one there, or the
/// one named like the target; with its children and blobs.
pub fn from_set<'a>(set: &'a ImageSet, target: &Target) -> Result<Payload<'a>, RegistryError> {
    let digests: BTreeSet<oci::Digest> = set.entries.iter().map(|e| e.digest).collect();
    let names: Vec<&str> = set.entries.iter().filter_map(|e| e.ref_name()).collect();
    let chosen = if digests.len() == 1 {
        set.entries.first()
    } else {
        let wanted = [
            format!(
                "{}:{}",
                target.repository,
                target.tag.as_deref().unwrap_or("latest")
            ),
            target.to_string(),
            target.tag.clone().unwrap_or_default(),
        ];
        set.entries
            .iter()
            .find(|d| d.ref_name().is_some_and(|n| wanted.iter().any(|w| w == n)))
    };
    let top = chosen.ok_or_else(|| {
        RegistryError::new(format!(
            "the image holds {} images ({}); name the one to push in the reference's tag",
            digests.len(),
            names.join(", ")
        ))
    })?;
    let set_err = |e: oci::SetError| RegistryError::new(e.to_string());
    let manifests = set.manifests_of(top).map_err(set_err)?;
    let children = if oci::media::is_index(&top.media_type) {
        manifests
            .iter()
            .map(|d| doc(set, d))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        Vec::new()
    };
    let mut blobs = Vec::new();
    let mut seen = BTreeSet::new();
    for m in &manifests {
        let manifest: oci::Manifest = set.doc(&m.digest).map_err(set_err)?;
        for blob in set.parts_of(&manifest).map_err(set_err)? {
            if !seen.insert(blob.digest) {
                continue;
            }
            blobs.push(blob);
        }
    }
    // Referrers of the top document and its manifests, then of those
    // referrers in turn: each after its subject.
    let mut referrers = Vec::new();
    let mut subjects: Vec<oci::Digest> = std::iter::once(top.digest)
        .chain(manifests.iter().map(|m| m.digest))
        .collect();
    let mut at = 0;
    while let Some(subject) = subjects.get(at).copied() {
        at += 1;
        for listing in set.referrers(&subject) {
            if subjects.contains(&listing.digest) {
                continue;
            }
            let manifest_doc = doc(set, listing)?;
            let manifest: oci::Manifest = set.doc(&listing.digest).map_err(set_err)?;
            let parts = set.parts_of(&manifest).map_err(set_err)?;
            for blob in &parts {
                if seen.insert(blob.digest) {
                    blobs.push(*blob);
                }
            }
            subjects.push(listing.digest);
            referrers.push(Attached {
                subject,
                manifest: manifest_doc,
                listing: listing.clone(),
            });
        }
    }
    // Names of the same registry the source gives the image: blobs may be
    // mounted from there.
    let mount_hints = names
        .iter()
        .filter_map(|n| Target::parse(n).ok())
        .filter(|t| t.registry == target.registry && t.repository != target.repository)
        .map(|t| t.repository)
        .collect();
    Ok(Payload {
        blobs,
        children,
        top: doc(set, top)?,
        mount_hints,
        referrers,
    })
}

/// A manifest or index document of the set, in memory (its exact bytes).
fn doc(set: &ImageSet, d: &Descriptor) -> Result<Blob, RegistryError> {
    set.blob(&d.digest)
        .filter(|b| b.in_memory().is_some())
        .cloned()
        .ok_or_else(|| RegistryError::new(format!("document {} is not in the image", d.digest)))
}

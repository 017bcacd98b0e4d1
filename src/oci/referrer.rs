//! Referrers: artifacts attached to an image (an SBOM, a signature) the
//! way OCI 1.1 attaches them. An artifact is an image manifest whose
//! `artifactType` says what it carries, whose config is the empty
//! descriptor (`{}`, image-spec manifest.md, "Guidance for an Empty
//! Descriptor") and whose one layer is the content; its `subject` names
//! the manifest it is about. Nothing in the image points at its
//! referrers, so attaching one never changes the image's digest.
//!
//! Where they live: a registry lists them (the referrers API, or the
//! `sha256-<hex>` tag of distribution-spec 1.1's tag schema; see
//! `registry`). An image layout has no list of referrers (image-layout.md
//! defines none), and naming them in `index.json` would make it hold
//! several images, which `skopeo copy oci-archive:X` without a name and
//! `ctr import` both take badly; so a layout holds them as blobs only, and
//! [`read`](super::read) finds them by their `subject`.

use std::collections::BTreeMap;

use super::blob::Blob;
use super::docs::{Descriptor, Manifest, canonical};
use super::media;

/// When the artifact was made (here: when its image was).
pub const CREATED: &str = "org.opencontainers.image.created";
/// The content's file name; `oras pull` saves a layer only under one.
pub const TITLE: &str = "org.opencontainers.image.title";

/// The empty descriptor's blob, `{}`.
pub fn empty() -> Blob {
    Blob::bytes(media::EMPTY, b"{}".to_vec())
}

/// The artifact manifest attaching `content` to `subject`: its artifact
/// type is the content's media type (as Trivy and oras expect: they pick
/// the layer of that type), `title` names the layer, `created` dates the
/// manifest. The same arguments always give the same bytes.
pub fn artifact(
    subject: &Descriptor,
    content: &Blob,
    title: Option<&str>,
    created: Option<&str>,
) -> Blob {
    let mut layer = content.descriptor();
    if let Some(t) = title {
        layer.annotations.insert(TITLE.to_string(), t.to_string());
    }
    let mut annotations = BTreeMap::new();
    if let Some(c) = created {
        annotations.insert(CREATED.to_string(), c.to_string());
    }
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media::MANIFEST.to_string()),
        artifact_type: Some(content.media_type.clone()),
        config: empty().descriptor(),
        layers: vec![layer],
        // The subject is the manifest itself, not how an index names it.
        subject: Some(Descriptor::new(
            &subject.media_type,
            subject.digest,
            subject.size,
        )),
        annotations,
    };
    Blob::bytes(media::MANIFEST, canonical(&manifest))
}

/// How a referrers list names the referrer `doc` (whose parsed form is
/// `manifest`): its descriptor with the artifact type (the config's media
/// type when the manifest has none) and every annotation of the manifest,
/// as distribution-spec 1.1 has registries and the tag schema list them.
pub fn listing(doc: &Blob, manifest: &Manifest) -> Descriptor {
    let mut d = doc.descriptor();
    d.artifact_type = Some(
        manifest
            .artifact_type
            .clone()
            .unwrap_or_else(|| manifest.config.media_type.clone()),
    );
    d.annotations = manifest.annotations.clone();
    d
}

/// The content layer of an artifact: its first layer (an artifact made
/// here has exactly one).
pub fn content(manifest: &Manifest) -> Option<&Descriptor> {
    manifest.layers.first()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Digest;

    #[test]
    fn empty_descriptor_is_the_spec_s() {
        let e = empty();
        assert_eq!(
            e.digest.to_string(),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(e.size, 2);
        assert_eq!(e.media_type, "application/vnd.oci.empty.v1+json");
    }

    #[test]
    fn artifacts_name_their_subject_and_type() {
        let mut subject = Descriptor::new(media::MANIFEST, Digest::of(b"image"), 5);
        subject
            .annotations
            .insert("org.opencontainers.image.ref.name".into(), "x:1".into());
        let sbom = Blob::bytes("application/spdx+json", b"{\"spdxVersion\":1}".to_vec());
        let doc = artifact(
            &subject,
            &sbom,
            Some("x.spdx.json"),
            Some("2018-03-09T12:34:56Z"),
        );
        let again = artifact(
            &subject,
            &sbom,
            Some("x.spdx.json"),
            Some("2018-03-09T12:34:56Z"),
        );
        assert_eq!(doc.digest, again.digest, "deterministic");
        let m: Manifest = serde_json::from_slice(doc.in_memory().unwrap()).unwrap();
        assert_eq!(m.artifact_type.as_deref(), Some("application/spdx+json"));
        assert_eq!(m.config, empty().descriptor());
        let s = m.subject.as_ref().unwrap();
        assert_eq!((s.digest, s.size), (subject.digest, 5));
        assert!(s.annotations.is_empty(), "the subject is the bare manifest");
        assert_eq!(m.layers[0].digest, sbom.digest);
        assert_eq!(m.layers[0].annotations[TITLE], "x.spdx.json");
        let l = listing(&doc, &m);
        assert_eq!(l.artifact_type.as_deref(), Some("application/spdx+json"));
        assert_eq!(l.annotations[CREATED], "2018-03-09T12:34:56Z");
        assert_eq!((l.digest, l.size), (doc.digest, doc.size));
    }
}

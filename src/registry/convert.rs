//! OCI documents rewritten with Docker v2 schema 2 media types, for
//! registries that refuse OCI ones. Blobs stay the same bytes; only the
//! manifests (and so their digests) change.

use serde_json::Value;

use super::RegistryError;
use crate::oci::media::{
    DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_LAYER_TAR, DOCKER_LIST, DOCKER_MANIFEST, LAYER_GZIP,
    LAYER_TAR,
};
use crate::oci::{Blob, Digest, canonical};

fn layer_type(oci: &str) -> Result<&'static str, RegistryError> {
    match oci {
        LAYER_GZIP => Ok(DOCKER_LAYER_GZIP),
        LAYER_TAR => Ok(DOCKER_LAYER_TAR),
        other => Err(RegistryError::new(format!(
            "layer type {other} has no Docker v2 equivalent (build with --compression gzip)"
        ))),
    }
}

/// `children` maps an index's original child digests to their converted
/// documents.
pub fn to_docker(doc: &Blob, children: &[(Digest, Blob)]) -> Result<Blob, RegistryError> {
    let mut v: Value = serde_json::from_slice(doc.in_memory().unwrap_or_default())
        .map_err(|e| RegistryError::new(format!("manifest {} is not JSON: {e}", doc.digest)))?;
    let obj = v
        .as_object_mut()
        .ok_or_else(|| RegistryError::new(format!("manifest {} is not an object", doc.digest)))?;
    obj.remove("annotations");
    let media_type = if obj.contains_key("manifests") {
        for m in obj
            .get_mut("manifests")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let old = m["digest"].as_str().unwrap_or_default().to_string();
            if let Some((_, new)) = children.iter().find(|(d, _)| d.to_string() == old) {
                m["digest"] = Value::from(new.digest.to_string());
                m["size"] = Value::from(new.size);
                m["mediaType"] = Value::from(DOCKER_MANIFEST);
            }
            if let Some(o) = m.as_object_mut() {
                o.remove("annotations");
            }
        }
        DOCKER_LIST
    } else {
        if let Some(c) = obj.get_mut("config") {
            c["mediaType"] = Value::from(DOCKER_CONFIG);
        }
        for l in obj
            .get_mut("layers")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let t = layer_type(l["mediaType"].as_str().unwrap_or_default())?;
            l["mediaType"] = Value::from(t);
            if let Some(o) = l.as_object_mut() {
                o.remove("annotations");
            }
        }
        DOCKER_MANIFEST
    };
    obj.insert("mediaType".into(), Value::from(media_type));
    Ok(Blob::bytes(media_type, canonical(&v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_types_become_docker_ones() {
        let oci = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:aa","size":1},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:bb","size":2}],"annotations":{"a":"b"}}"#;
        let doc = Blob::bytes(crate::oci::media::MANIFEST, oci.to_vec());
        let d = to_docker(&doc, &[]).unwrap();
        let bytes = d.in_memory().unwrap();
        let v: Value = serde_json::from_slice(bytes).unwrap();
        assert_eq!(v["mediaType"], DOCKER_MANIFEST);
        assert_eq!(v["config"]["mediaType"], DOCKER_CONFIG);
        assert_eq!(
            v["layers"][0]["mediaType"],
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
        assert!(v.get("annotations").is_none());
        assert_eq!(d.digest, Digest::of(bytes));

        let zstd = String::from_utf8_lossy(oci).replace("tar+gzip", "tar+zstd");
        let doc = Blob::bytes(crate::oci::media::MANIFEST, zstd.into_bytes());
        assert!(to_docker(&doc, &[]).is_err());
    }
}

//! The SBOM `--sbom generate` writes: SPDX 2.3 JSON of the image from what
//! the build read, every package of the image manifest with its version,
//! recipe, license and the layer that holds it.
//!
//! Why SPDX 2.3: it is what scanners read today from a registry (Trivy
//! takes `application/spdx+json` referrers, Grype and Syft read it, GitHub
//! imports it), OpenEmbedded's own SBOMs are SPDX, it is an ISO standard
//! (ISO/IEC 5962), and the NTIA minimum elements can be checked on it
//! (ntia-conformance-checker). SPDX 3 is not yet read by those scanners.
//!
//! The shape:
//! - the document `DESCRIBES` one package for the image (purpose
//!   `CONTAINER`, its manifest digest as checksum and `pkg:oci` purl), which
//!   `CONTAINS` one package per manifest line (purpose `INSTALL`);
//! - the supplier of the image and of each package is OpenEmbedded's
//!   default (`SPDX_SUPPLIER` of OE's create-spdx-2.2, which it sets on
//!   images and packages alike); a package's `sourceInfo` the recipe (`built package from: PN
//!   VERSION`, as Trivy reads a source package), its external references
//!   the CPE OE derives from the recipe (`cpe:2.3:*:*:PN:PV:...`, what
//!   Grype matches vulnerabilities by) and OE's `pkg:yocto/PN@PV` purl;
//! - the layer holding a package is given by the annotations
//!   `LayerDigest: sha256:...` and `LayerDiffID: sha256:...`, the keys
//!   Trivy writes and reads back;
//! - run-time dependencies between packages are `DEPENDS_ON`.
//!
//! Same inputs, same bytes: the creation time is the image's, the
//! document namespace is made from the image's manifest digest (the SBOM
//! is a referrer made after the image, so it may name it), nothing is
//! random, and JSON keys are sorted.

use serde_json::{Value, json};

use super::license;
use crate::oci::Digest;
use crate::oci::reference::percent_encode;

/// What the SBOM says of the image.
pub struct ImageFacts<'a> {
    /// The first tag (`core-image-minimal:latest`), else `None`.
    pub name: Option<&'a str>,
    pub manifest: Digest,
    /// RFC 3339, the image's creation time.
    pub created: &'a str,
    /// Go's architecture name (`amd64`).
    pub arch: &'a str,
}

/// One package of the image manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageFacts {
    pub name: String,
    /// `[epoch:]PKGV-PKGR` as the manifest has it.
    pub version: String,
    /// The recipe (PN), when a feed or pkgdata said.
    pub recipe: Option<String>,
    /// OE's LICENSE value, when known.
    pub license: Option<String>,
    /// Names of packages of the image it depends on.
    pub depends: Vec<String>,
    /// The layer holding its files: (digest, diff_id).
    pub layer: Option<(Digest, Digest)>,
}

const SUPPLIER: &str = "Organization: OpenEmbedded ()";

fn tool() -> String {
    format!("Tool: rustimage-{}", env!("CARGO_PKG_VERSION"))
}

/// The SPDX 2.3 JSON document.
pub fn document(image: &ImageFacts<'_>, packages: &[PackageFacts]) -> Vec<u8> {
    let name = image.name.unwrap_or("image");
    let hex = image.manifest.hex();
    let mut spdx_packages = vec![image_package(image, name)];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Image",
    })];
    let ids = package_ids(packages);
    let mut refs: Vec<(String, String)> = Vec::new();
    for (p, id) in packages.iter().zip(&ids) {
        let converted = p.license.as_deref().map(license::convert);
        for r in converted.iter().flat_map(|c| &c.refs) {
            if !refs.iter().any(|(i, _)| *i == r.0) {
                refs.push(r.clone());
            }
        }
        let declared = converted.map_or("NOASSERTION".to_string(), |c| c.expression);
        spdx_packages.push(package(p, id, &declared, image.created));
        relationships.push(json!({
            "spdxElementId": "SPDXRef-Image",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    for (p, id) in packages.iter().zip(&ids) {
        for dep in &p.depends {
            if let Some(i) = packages.iter().position(|q| q.name == *dep) {
                relationships.push(json!({
                    "spdxElementId": id,
                    "relationshipType": "DEPENDS_ON",
                    "relatedSpdxElement": ids[i],
                }));
            }
        }
    }
    refs.sort();
    let mut doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": format!(
            "http://spdx.org/spdxdocs/rustimage/{}-sha256-{hex}",
            clean(name)
        ),
        "creationInfo": {
            "created": image.created,
            "creators": [tool()],
            "comment": format!("The packages of container image {name} (manifest sha256:{hex}) and the layers that hold them, from OpenEmbedded's image manifest, package feeds and pkgdata."),
        },
        "packages": spdx_packages,
        "relationships": relationships,
    });
    if !refs.is_empty() {
        doc["hasExtractedLicensingInfos"] = Value::Array(
            refs.iter()
                .map(|(id, oe)| {
                    json!({
                        "licenseId": id,
                        "name": oe,
                        "extractedText": format!(
                            "The license OpenEmbedded's LICENSE names {oe}; its text is in the build's deploy/licenses directory, not in this document."
                        ),
                    })
                })
                .collect(),
        );
    }
    let mut out = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    out.push(b'\n');
    out
}

fn image_package(image: &ImageFacts<'_>, name: &str) -> Value {
    let hex = image.manifest.hex();
    // pkg:oci/NAME@DIGEST?arch=..&repository_url=..&tag=..: NAME is the
    // repository's last component, lowercase.
    let (repository, tag) = split_tag(name);
    let last = repository.rsplit('/').next().unwrap_or(repository);
    let mut qualifiers = vec![format!("arch={}", percent_encode(image.arch))];
    if repository.contains('/') {
        qualifiers.push(format!("repository_url={}", percent_encode(repository)));
    }
    if let Some(t) = tag {
        qualifiers.push(format!("tag={}", percent_encode(t)));
    }
    let purl = format!(
        "pkg:oci/{}@sha256%3A{hex}?{}",
        percent_encode(&last.to_lowercase()),
        qualifiers.join("&")
    );
    json!({
        "SPDXID": "SPDXRef-Image",
        "name": name,
        "versionInfo": format!("sha256:{hex}"),
        "supplier": SUPPLIER,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "checksums": [{"algorithm": "SHA256", "checksumValue": hex}],
        "primaryPackagePurpose": "CONTAINER",
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": purl,
        }],
    })
}

fn package(p: &PackageFacts, id: &str, declared: &str, created: &str) -> Value {
    let mut v = json!({
        "SPDXID": id,
        "name": p.name,
        "versionInfo": p.version,
        "supplier": SUPPLIER,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "INSTALL",
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": declared,
        "copyrightText": "NOASSERTION",
    });
    if let Some(recipe) = &p.recipe {
        let pv = upstream_version(&p.version);
        v["sourceInfo"] = json!(format!("built package from: {recipe} {}", p.version));
        v["externalRefs"] = json!([
            {
                "referenceCategory": "SECURITY",
                "referenceType": "cpe23Type",
                "referenceLocator": format!(
                    "cpe:2.3:*:*:{}:{}:*:*:*:*:*:*:*",
                    cpe_escape(recipe),
                    cpe_escape(pv)
                ),
            },
            {
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": format!(
                    "pkg:yocto/{}@{}",
                    percent_encode(&recipe.to_lowercase()),
                    percent_encode(pv)
                ),
            },
        ]);
    }
    if let Some((digest, diff_id)) = &p.layer {
        let note = |comment: String| {
            json!({
                "annotationDate": created,
                "annotationType": "OTHER",
                "annotator": tool(),
                "comment": comment,
            })
        };
        v["annotations"] = json!([
            note(format!("LayerDigest: {digest}")),
            note(format!("LayerDiffID: {diff_id}")),
        ]);
    }
    v
}

/// `SPDXRef-Package-<name>`, characters SPDX ids can't hold as `-`, a
/// number added where two names clean to one id.
fn package_ids(packages: &[PackageFacts]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::with_capacity(packages.len());
    for p in packages {
        let base = format!("SPDXRef-Package-{}", clean(&p.name));
        let mut id = base.clone();
        let mut n = 2;
        while ids.contains(&id) {
            id = format!("{base}-{n}");
            n += 1;
        }
        ids.push(id);
    }
    ids
}

/// Letters, digits, `.` and `-`; anything else `-`.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// `NAME[:TAG]` split at the tag's colon (not a registry port's).
fn split_tag(name: &str) -> (&str, Option<&str>) {
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag)),
        _ => (name, None),
    }
}

/// PKGV: the version without epoch and `-PKGR`.
fn upstream_version(version: &str) -> &str {
    let no_epoch = match version.split_once(':') {
        Some((e, rest)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => version,
    };
    no_epoch.rsplit_once('-').map_or(no_epoch, |(v, _)| v)
}

/// A CPE 2.3 formatted-string value: characters other than letters,
/// digits, `_`, `-` and `.` get a backslash.
fn cpe_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(name: &str, version: &str, recipe: &str, license: &str) -> PackageFacts {
        PackageFacts {
            name: name.into(),
            version: version.into(),
            recipe: Some(recipe.into()),
            license: Some(license.into()),
            depends: Vec::new(),
            layer: Some((Digest::of(name.as_bytes()), Digest::of(recipe.as_bytes()))),
        }
    }

    #[test]
    fn versions_cpes_and_purls() {
        assert_eq!(upstream_version("1:1.36.1-r0"), "1.36.1");
        assert_eq!(upstream_version("2.39+git0+abc-r0"), "2.39+git0+abc");
        assert_eq!(upstream_version("6.4"), "6.4");
        assert_eq!(cpe_escape("2.39+git0"), "2.39\\+git0");
        assert_eq!(percent_encode("a+b/c"), "a%2Bb%2Fc");
        assert_eq!(split_tag("reg:5000/a/b:1"), ("reg:5000/a/b", Some("1")));
        assert_eq!(split_tag("reg:5000/a/b"), ("reg:5000/a/b", None));
    }

    #[test]
    fn same_inputs_same_bytes_and_the_expected_shape() {
        let image = ImageFacts {
            name: Some("core-image-minimal:latest"),
            manifest: Digest::of(b"m"),
            created: "2018-03-09T12:34:56Z",
            arch: "amd64",
        };
        let mut busybox = facts(
            "busybox",
            "1:1.36.1-r0",
            "busybox",
            "GPL-2.0-only & bzip2-1.0.6",
        );
        busybox.depends = vec!["libc6".into(), "not-here".into()];
        let pkgs = vec![
            facts(
                "libc6",
                "2.39-r0",
                "glibc",
                "GPL-2.0-only & LGPL-2.1-or-later",
            ),
            busybox,
            facts("app", "1.0-r0", "app", "Proprietary"),
            facts("libstdc++6", "14-r0", "gcc", "GPL-3.0-with-GCC-exception"),
        ];
        let a = document(&image, &pkgs);
        assert_eq!(a, document(&image, &pkgs));
        let v: Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(v["spdxVersion"], "SPDX-2.3");
        assert_eq!(v["creationInfo"]["created"], "2018-03-09T12:34:56Z");
        assert!(
            v["documentNamespace"]
                .as_str()
                .unwrap()
                .ends_with(&Digest::of(b"m").hex())
        );
        let p = &v["packages"][2];
        assert_eq!(p["name"], "busybox");
        assert_eq!(p["licenseDeclared"], "GPL-2.0-only AND bzip2-1.0.6");
        assert_eq!(p["sourceInfo"], "built package from: busybox 1:1.36.1-r0");
        assert_eq!(
            p["externalRefs"][0]["referenceLocator"],
            "cpe:2.3:*:*:busybox:1.36.1:*:*:*:*:*:*:*"
        );
        assert_eq!(
            p["annotations"][0]["comment"],
            format!("LayerDigest: {}", Digest::of(b"busybox"))
        );
        assert_eq!(v["packages"][4]["SPDXID"], "SPDXRef-Package-libstdc--6");
        let refs = &v["hasExtractedLicensingInfos"];
        assert_eq!(refs.as_array().unwrap().len(), 1);
        assert_eq!(refs[0]["licenseId"], "LicenseRef-Proprietary");
        assert_eq!(refs[0]["name"], "Proprietary");
        assert_eq!(
            v["packages"][4]["licenseDeclared"], "GPL-3.0-with-GCC-exception",
            "a deprecated SPDX id is still an SPDX id"
        );
        let deps: Vec<&Value> = v["relationships"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["relationshipType"] == "DEPENDS_ON")
            .collect();
        assert_eq!(deps.len(), 1, "only dependencies inside the image");
        assert_eq!(
            v["packages"][0]["externalRefs"][0]["referenceLocator"],
            format!(
                "pkg:oci/core-image-minimal@sha256%3A{}?arch=amd64&tag=latest",
                Digest::of(b"m").hex()
            )
        );
    }
}

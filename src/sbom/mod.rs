//! The image's bill of materials: SBOMs that travel with the image as OCI
//! referrers (see [`crate::oci::referrer`]).
//!
//! - [`kind`]: which SBOM a file holds (SPDX 2 JSON, SPDX 3 JSON-LD,
//!   CycloneDX JSON), told by content, and so its artifact type.
//! - [`spdx`]: the SPDX 2.3 document `--sbom generate` writes from what the
//!   build read: the manifest's packages, their owners' versions, recipes
//!   and licenses, and the layers the plan put them in.
//! - [`license`]: OE's LICENSE values as SPDX expressions.

pub mod kind;
pub mod license;
pub mod spdx;

pub use kind::{Kind, SbomError, detect};
pub use spdx::{ImageFacts, PackageFacts};

use crate::oci::Digest;
use crate::packages::ManifestLine;
use crate::plan::{LayerPlan, Owner};

/// Every package of the image manifest (`lines`), with what its owner
/// (if a feed or pkgdata had it) says and the layer holding it:
/// `layers[i]` (digest, diff_id) is the layer planned by `plans[i]`.
/// A package no input described has its files in the last layer, with
/// everything no package ships; one with no files in the rootfs has no
/// layer.
pub fn packages(
    lines: &[ManifestLine],
    owners: &[Owner],
    plans: &[LayerPlan],
    layers: &[(Digest, Digest)],
) -> Vec<PackageFacts> {
    let layer_of = |name: &str, owned: bool| -> Option<(Digest, Digest)> {
        if layers.len() == 1 {
            return layers.first().copied();
        }
        if !owned {
            return layers.last().copied();
        }
        plans
            .iter()
            .position(|p| p.packages.iter().any(|n| n == name))
            .and_then(|i| layers.get(i).copied())
    };
    lines
        .iter()
        .map(|line| {
            let owner = owners.iter().find(|o| o.name == line.name);
            PackageFacts {
                name: line.name.clone(),
                version: line.version.clone(),
                recipe: owner.map(|o| o.recipe.clone()),
                license: owner.and_then(|o| o.license.clone()),
                depends: owner.map(|o| o.depends.clone()).unwrap_or_default(),
                layer: layer_of(&line.name, owner.is_some()),
            }
        })
        .collect()
}

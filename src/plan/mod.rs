//! Plan: decides which rootfs entries go into which layer. A pure function of
//! the scanned rootfs (and, for per-package images, of package ownership):
//! nothing here touches the disk.

mod packing;
mod per_package;
mod rules;

pub use per_package::{Claim, ClaimKind, Owner, PlanError, plan as per_package};
pub use rules::{Rules, RulesError};

use crate::source::{NodeId, Rootfs, path};

/// One layer to write: its entries in path order, parents included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerPlan {
    pub nodes: Vec<NodeId>,
    /// What the layer holds, for the image history (`created_by`).
    pub created_by: String,
    /// Longer description for the history `comment` (e.g. package versions).
    pub comment: Option<String>,
    /// The packages whose files it holds (for the SBOM); empty for the
    /// final layer and a squashed image's one layer.
    pub packages: Vec<String>,
}

/// The whole rootfs as one layer.
pub fn squash(rootfs: &Rootfs) -> LayerPlan {
    LayerPlan {
        nodes: (0..rootfs.nodes().len()).collect(),
        created_by: "rustimage build --squash".to_string(),
        comment: None,
        packages: Vec::new(),
    }
}

/// Adds every ancestor directory (the root included) of `nodes`, so a layer
/// never leaves a runtime to invent a parent with made-up metadata, and
/// returns them in path order without duplicates.
pub fn with_parents(rootfs: &Rootfs, nodes: &[NodeId]) -> Vec<NodeId> {
    let mut out: Vec<NodeId> = nodes.to_vec();
    for &id in nodes {
        let mut cur = path::parent(&rootfs.nodes()[id].path);
        while let Some(dir) = cur {
            match rootfs.find(dir) {
                Some(p) => out.push(p),
                None => break,
            }
            cur = path::parent(dir);
        }
    }
    // Node ids follow path order, so sorting ids sorts paths.
    out.sort_unstable();
    out.dedup();
    out
}

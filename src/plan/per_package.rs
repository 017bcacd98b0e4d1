//! Per-package plan: which rootfs entry belongs to which package's layer.
//!
//! An entry goes to a package's layer only when the package ships that path
//! with the same type and, for files, the same content (SHA-256, or the size
//! where only sizes are known, as with pkgdata). Everything else (files no
//! package ships, files a postinst or useradd changed, generated files,
//! update-alternatives links, paths two packages claim, hardlink groups
//! split between owners) goes to a final, image-specific layer, so the
//! unpacked image is always exactly the rootfs. Directories enter layers
//! only as parents of their entries, with the rootfs's metadata: that way
//! every kind of package information (file lists with or without
//! directories) gives the same layers. A symlink that leads to a directory
//! in the rootfs counts as a directory, for the same reason: pkgdata's
//! FILES_INFO leaves such links out (OE's package split walks them as
//! directories) while ipk, deb and rpm list them, so only treating them
//! alike in every mode keeps the layers independent of the input.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::packing::{self, Group, Item, Label};
use super::rules::Rules;
use super::{LayerPlan, with_parents};
use crate::source::{Entry, NodeId, Rootfs};

/// A package as the plan sees it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Owner {
    pub name: String,
    pub version: String,
    /// The recipe (PN) that built it; packages of one recipe change together.
    pub recipe: String,
    /// Its license as OE wrote it, when the package says (for the SBOM;
    /// the plan does not look at it).
    #[serde(default)]
    pub license: Option<String>,
    /// Names of packages it depends on (versions stripped).
    pub depends: Vec<String>,
    pub claims: Vec<Claim>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Claim {
    #[serde(with = "crate::b64")]
    pub path: Vec<u8>,
    pub kind: ClaimKind,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ClaimKind {
    File {
        size: u64,
        #[serde(with = "crate::b64::array")]
        sha256: [u8; 32],
    },
    /// A file or symlink known only by its size (pkgdata's FILES_INFO).
    Sized(u64),
    Symlink(#[serde(with = "crate::b64")] Vec<u8>),
}

#[derive(Debug)]
pub struct PlanError(pub String);

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PlanError {}

const FINAL: &str = "rustimage: image-specific files (not from any package)";

/// Plans the layers: package (or group) layers in order, most widely
/// depended-on first, then the final layer. `max_layers` counts them all.
pub fn plan(
    rootfs: &Rootfs,
    owners: &[Owner],
    rules: &Rules,
    max_layers: usize,
) -> Result<Vec<LayerPlan>, PlanError> {
    if rules.len() + 1 > max_layers {
        return Err(PlanError(format!(
            "{} rule layers plus the final layer exceed --max-layers {max_layers}",
            rules.len()
        )));
    }
    let mut owned = assign(rootfs, owners);
    let mut by_owner: Vec<Vec<NodeId>> = vec![Vec::new(); owners.len()];
    let mut sizes = vec![0u64; owners.len()];
    for (node, owner) in owned.iter().enumerate() {
        if let Some(o) = *owner {
            by_owner[o].push(node);
            if let Entry::File(ino) = rootfs.nodes()[node].entry {
                sizes[o] += rootfs.inode(ino).size;
            }
        }
    }

    // Rule layers first, then the default policy for the rest.
    let mut ruled: Vec<Vec<usize>> = vec![Vec::new(); rules.len()];
    let mut free: Vec<usize> = Vec::new();
    for (i, o) in owners.iter().enumerate() {
        if by_owner[i].is_empty() {
            continue;
        }
        match rules.layer_for(&o.name) {
            Some(r) => ruled[r].push(i),
            None => free.push(i),
        }
    }
    let slots = max_layers - 1 - ruled.iter().filter(|r| !r.is_empty()).count();
    if slots == 0 {
        // Rules took every layer: the rest is image-specific.
        for &i in &free {
            for &n in &by_owner[i] {
                owned[n] = None;
            }
        }
        free.clear();
    }
    let items: Vec<Item> = free
        .iter()
        .map(|&i| Item {
            name: owners[i].name.clone(),
            recipe: owners[i].recipe.clone(),
            size: sizes[i],
        })
        .collect();
    let mut groups: Vec<(String, Vec<usize>)> = packing::pack(&items, slots)
        .into_iter()
        .map(|Group { label, members }| {
            let label = match label {
                Label::Package(n) => format!("package {n}"),
                Label::Recipe(r) => format!("recipe {r}"),
                Label::Bucket(b) => format!("packages of small recipes (group {b})"),
            };
            (label, members.into_iter().map(|m| free[m]).collect())
        })
        .collect();
    for (r, members) in ruled.into_iter().enumerate() {
        if !members.is_empty() {
            groups.push((format!("layer {}", rules.name(r)), members));
        }
    }

    let shared = dependents(owners);
    groups.sort_by(|a, b| {
        let score = |g: &(String, Vec<usize>)| g.1.iter().map(|&m| shared[m]).max().unwrap_or(0);
        score(b).cmp(&score(a)).then_with(|| a.0.cmp(&b.0))
    });

    let mut layers = Vec::with_capacity(groups.len() + 1);
    let mut covered: HashSet<NodeId> = HashSet::new();
    for (label, mut members) in groups {
        members.sort_by(|&a, &b| owners[a].name.cmp(&owners[b].name));
        let nodes: Vec<NodeId> = members.iter().flat_map(|&m| by_owner[m].clone()).collect();
        let nodes = with_parents(rootfs, &nodes);
        covered.extend(nodes.iter().copied());
        let list: Vec<String> = members
            .iter()
            .map(|&m| format!("{} {}", owners[m].name, owners[m].version))
            .collect();
        layers.push(LayerPlan {
            nodes,
            created_by: format!("rustimage: {label}"),
            comment: Some(format!("packages: {}", list.join(", "))),
            packages: members.iter().map(|&m| owners[m].name.clone()).collect(),
        });
    }
    // The final layer: what no package layer holds.
    let rest: Vec<NodeId> = (0..rootfs.nodes().len())
        .filter(|&n| owned[n].is_none() && !covered.contains(&n))
        .collect();
    layers.push(LayerPlan {
        nodes: with_parents(rootfs, &rest),
        created_by: FINAL.to_string(),
        comment: None,
        packages: Vec::new(),
    });
    Ok(layers)
}

/// The owner of each rootfs node, where exactly one package ships it as it
/// is; hardlink groups stay whole or go unowned.
fn assign(rootfs: &Rootfs, owners: &[Owner]) -> Vec<Option<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Claimed {
        No,
        By(usize),
        Contested,
    }
    let nodes = rootfs.nodes();
    let mut claimed = vec![Claimed::No; nodes.len()];
    for (o, owner) in owners.iter().enumerate() {
        for c in &owner.claims {
            let Some(id) = rootfs.find(&c.path) else {
                continue;
            };
            if !matches(rootfs, id, &c.kind) || leads_to_dir(rootfs, id) {
                continue;
            }
            claimed[id] = match claimed[id] {
                Claimed::No => Claimed::By(o),
                Claimed::By(p) if p == o => Claimed::By(o),
                _ => Claimed::Contested,
            };
        }
    }
    let mut owned: Vec<Option<usize>> = claimed
        .iter()
        .map(|c| match c {
            Claimed::By(o) => Some(*o),
            _ => None,
        })
        .collect();
    // A hardlink group spanning layers would break: keep it whole.
    let mut groups: HashMap<usize, Vec<NodeId>> = HashMap::new();
    for (id, n) in nodes.iter().enumerate() {
        if let Entry::File(ino) = n.entry {
            groups.entry(ino).or_default().push(id);
        }
    }
    for members in groups.values().filter(|m| m.len() > 1) {
        let first = owned[members[0]];
        if members.iter().any(|&m| owned[m] != first) {
            for &m in members {
                owned[m] = None;
            }
        }
    }
    owned
}

fn matches(rootfs: &Rootfs, id: NodeId, kind: &ClaimKind) -> bool {
    let entry = &rootfs.nodes()[id].entry;
    match (kind, entry) {
        (ClaimKind::File { size, sha256 }, Entry::File(ino)) => {
            let inode = rootfs.inode(*ino);
            inode.size == *size && inode.digest.as_ref() == Some(sha256)
        }
        (ClaimKind::Sized(size), Entry::File(ino)) => rootfs.inode(*ino).size == *size,
        (ClaimKind::Sized(size), Entry::Symlink { target, .. }) => target.len() as u64 == *size,
        (ClaimKind::Symlink(want), Entry::Symlink { target, .. }) => want == target,
        _ => false,
    }
}

/// True for a symlink that resolves to a directory of the rootfs, resolved
/// as the kernel would with the rootfs as `/`.
fn leads_to_dir(rootfs: &Rootfs, id: NodeId) -> bool {
    let node = &rootfs.nodes()[id];
    let Entry::Symlink { target, .. } = &node.entry else {
        return false;
    };
    let mut dir: Vec<&[u8]> = node.path.split(|&b| b == b'/').collect();
    dir.pop();
    let mut hops = MAX_SYMLINK_HOPS;
    follow(rootfs, dir, target, &mut hops)
        .and_then(|p| rootfs.find(&p.join(&b'/')))
        .is_some_and(|n| matches!(rootfs.nodes()[n].entry, Entry::Dir(_)))
}

/// Linux's limit on symlinks followed in one lookup (MAXSYMLINKS).
const MAX_SYMLINK_HOPS: u32 = 40;

/// The components `target` leads to from directory `dir`, following
/// symlinks on the way; `None` when a component is missing or the links
/// loop.
fn follow<'a>(
    rootfs: &'a Rootfs,
    mut dir: Vec<&'a [u8]>,
    target: &'a [u8],
    hops: &mut u32,
) -> Option<Vec<&'a [u8]>> {
    if target.starts_with(b"/") {
        dir.clear();
    }
    for part in target.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                dir.pop();
            }
            name => {
                dir.push(name);
                let id = rootfs.find(&dir.join(&b'/'))?;
                if let Entry::Symlink { target, .. } = &rootfs.nodes()[id].entry {
                    *hops = hops.checked_sub(1)?;
                    dir.pop();
                    dir = follow(rootfs, dir, target, hops)?;
                }
            }
        }
    }
    Some(dir)
}

/// For each owner, how many owners of the image depend on it, directly or
/// not: the measure of "widely shared" that orders layers (libc lowest).
fn dependents(owners: &[Owner]) -> Vec<usize> {
    let index: BTreeMap<&str, usize> = owners
        .iter()
        .enumerate()
        .map(|(i, o)| (o.name.as_str(), i))
        .collect();
    let deps: Vec<Vec<usize>> = owners
        .iter()
        .map(|o| {
            let mut d: Vec<usize> = o
                .depends
                .iter()
                .filter_map(|n| index.get(n.as_str()).copied())
                .collect();
            d.sort_unstable();
            d.dedup();
            d
        })
        .collect();
    let mut count = vec![0usize; owners.len()];
    for start in 0..owners.len() {
        // Everything `start` reaches gains one dependent.
        let mut seen = vec![false; owners.len()];
        seen[start] = true;
        let mut stack = deps[start].clone();
        while let Some(n) = stack.pop() {
            if std::mem::replace(&mut seen[n], true) {
                continue;
            }
            count[n] += 1;
            stack.extend(deps[n].iter().copied());
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(name: &str, depends: &[&str]) -> Owner {
        Owner {
            name: name.into(),
            version: "1.0-r0".into(),
            recipe: name.into(),
            license: None,
            depends: depends.iter().map(|s| s.to_string()).collect(),
            claims: vec![],
        }
    }

    #[test]
    fn dependents_count_transitively() {
        let owners = vec![
            owner("app", &["libfoo", "libc6"]),
            owner("libfoo", &["libc6"]),
            owner("libc6", &[]),
            owner("cycle-a", &["cycle-b"]),
            owner("cycle-b", &["cycle-a"]),
        ];
        assert_eq!(dependents(&owners), vec![0, 1, 2, 1, 1]);
    }

    #[test]
    fn symlinks_to_directories_are_found_as_the_kernel_resolves_them() {
        use std::os::unix::fs::symlink;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        for d in ["etc/ssl/certs", "usr/lib/ssl", "usr/share/zoneinfo/Europe"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("usr/share/zoneinfo/Europe/Paris"), b"tz").unwrap();
        let links: &[(&str, &str, bool)] = &[
            ("usr/lib/ssl/certs", "/etc/ssl/certs", true),
            ("usr/lib/ssl/up", "../../../etc/ssl", true),
            ("usr/lib/ssl/escape", "../../../../../../etc", true),
            ("usr/share/zoneinfo/posix", ".", true),
            ("usr/share/zoneinfo/Paris", "Europe/Paris", false),
            ("usr/share/zoneinfo/via", "posix/Europe", true),
            ("usr/share/zoneinfo/viafile", "posix/Europe/Paris", false),
            ("usr/share/zoneinfo/dangling", "nowhere", false),
            ("usr/share/zoneinfo/loop", "loop", false),
            ("usr/share/zoneinfo/chain", "via/../posix", true),
        ];
        for (path, target, _) in links {
            symlink(target, root.join(path)).unwrap();
        }
        let opts = crate::source::ScanOptions {
            hash: false,
            tmpdir: tmp.path().to_path_buf(),
            max_size: u64::MAX,
        };
        let rootfs = crate::source::scan(&root, &opts, &|_| {}, &|_| {}).unwrap();
        for (path, _, want) in links {
            let id = rootfs.find(path.as_bytes()).unwrap();
            assert_eq!(leads_to_dir(&rootfs, id), *want, "{path}");
        }
        let dir = rootfs.find(b"etc/ssl").unwrap();
        assert!(!leads_to_dir(&rootfs, dir), "a directory is not a link");
    }
}

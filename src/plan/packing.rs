//! Packing packages into a limited number of layers.
//!
//! A layer is reused (not pulled, not stored again) when none of its
//! packages changed. Splitting finely maximises reuse, but an image can hold
//! only so many layers. Within the budget, each package gets its own layer.
//! Over it, packages are first grouped by recipe: packages of one recipe
//! are rebuilt together, so merging them loses no reuse. If recipes still
//! don't fit, the largest recipes keep their own layers and the rest are
//! spread over a fixed number of buckets by a hash of the recipe name.
//!
//! Why this shape: merging two groups costs, on a change of either, a
//! re-pull of the other; the expected loss grows with the size of what is
//! merged, so small recipes are the cheap ones to merge. Hashing into a
//! number of buckets that depends only on the budget keeps the packing
//! stable: adding or removing a package changes its own bucket (and at
//! most moves one recipe across the large/small boundary), never the
//! grouping of everything else, which a greedy pairwise merge would.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// What packing needs to know of a package.
#[derive(Debug, Clone)]
pub struct Item {
    pub name: String,
    pub recipe: String,
    /// Bytes it contributes to the image.
    pub size: u64,
}

/// A group of items (indices) that share a layer, with a label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub label: Label,
    pub members: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Label {
    Package(String),
    Recipe(String),
    Bucket(usize),
}

/// Packs `items` into at most `slots` groups (none if `slots` is 0).
pub fn pack(items: &[Item], slots: usize) -> Vec<Group> {
    if items.len() <= slots {
        return items
            .iter()
            .enumerate()
            .map(|(i, it)| Group {
                label: Label::Package(it.name.clone()),
                members: vec![i],
            })
            .collect();
    }
    let mut recipes: BTreeMap<&str, (u64, Vec<usize>)> = BTreeMap::new();
    for (i, it) in items.iter().enumerate() {
        let r = recipes.entry(it.recipe.as_str()).or_default();
        r.0 += it.size;
        r.1.push(i);
    }
    if slots == 0 {
        return Vec::new();
    }
    if recipes.len() <= slots {
        return recipes
            .into_iter()
            .map(|(name, (_, members))| Group {
                label: Label::Recipe(name.to_string()),
                members,
            })
            .collect();
    }
    // A quarter of the budget holds the small recipes; the rest keeps the
    // largest recipes whole.
    let buckets = (slots / 4).max(1);
    let keep = slots - buckets;
    let mut by_size: Vec<(&str, u64, Vec<usize>)> =
        recipes.into_iter().map(|(n, (s, m))| (n, s, m)).collect();
    by_size.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut groups: Vec<Group> = Vec::new();
    let mut pooled: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (rank, (name, _, members)) in by_size.into_iter().enumerate() {
        if rank < keep {
            groups.push(Group {
                label: Label::Recipe(name.to_string()),
                members,
            });
        } else {
            pooled
                .entry(bucket(name, buckets))
                .or_default()
                .extend(members);
        }
    }
    for (b, mut members) in pooled {
        members.sort_unstable();
        groups.push(Group {
            label: Label::Bucket(b),
            members,
        });
    }
    groups
}

/// A bucket chosen by the name alone, the same on every machine and run.
fn bucket(recipe: &str, buckets: usize) -> usize {
    let h = Sha256::digest(recipe.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&h[..8]);
    (u64::from_be_bytes(first) % buckets as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize, per_recipe: usize) -> Vec<Item> {
        (0..n)
            .map(|i| Item {
                name: format!("pkg{i:03}"),
                recipe: format!("recipe{:03}", i / per_recipe),
                size: 1000 + (i as u64 * 7919) % 5000,
            })
            .collect()
    }

    fn names(items: &[Item], groups: &[Group]) -> Vec<Vec<String>> {
        let mut v: Vec<Vec<String>> = groups
            .iter()
            .map(|g| g.members.iter().map(|&i| items[i].name.clone()).collect())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn one_package_per_layer_within_budget() {
        let it = items(10, 2);
        let g = pack(&it, 10);
        assert_eq!(g.len(), 10);
        assert!(g.iter().all(|g| g.members.len() == 1));
    }

    #[test]
    fn recipes_first_when_over_budget() {
        let it = items(10, 2);
        let g = pack(&it, 6);
        assert_eq!(g.len(), 5);
        assert!(g.iter().all(|g| matches!(g.label, Label::Recipe(_))));
    }

    #[test]
    fn never_exceeds_budget_and_keeps_every_item() {
        for slots in [1, 2, 3, 7, 20, 99] {
            let it = items(400, 3);
            let g = pack(&it, slots);
            assert!(g.len() <= slots, "{} > {slots}", g.len());
            let mut all: Vec<usize> = g.iter().flat_map(|g| g.members.clone()).collect();
            all.sort_unstable();
            assert_eq!(all, (0..400).collect::<Vec<_>>());
        }
    }

    #[test]
    fn adding_a_package_changes_few_groups() {
        let base = items(400, 3);
        let mut more = base.clone();
        more.push(Item {
            name: "newpkg".into(),
            recipe: "newrecipe".into(),
            size: 1234,
        });
        let before = names(&base, &pack(&base, 60));
        let after = names(&more, &pack(&more, 60));
        let changed = after.iter().filter(|g| !before.contains(g)).count();
        assert!(changed <= 2, "{changed} groups changed");

        // Removing one package from a pooled recipe: likewise.
        let mut fewer = base.clone();
        fewer.remove(399);
        let after = names(&fewer, &pack(&fewer, 60));
        let changed = after.iter().filter(|g| !before.contains(g)).count();
        assert!(changed <= 3, "{changed} groups changed");
    }
}

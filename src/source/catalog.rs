//! Collects entries in input order and turns them into a sorted [`Rootfs`].

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use super::{Entry, Inode, InodeId, Meta, Node, Rootfs, SourceError, path};

/// Most entries a rootfs may have; real ones have tens of thousands.
const MAX_ENTRIES: usize = 10_000_000;

/// Metadata given to parent directories the input never lists (a tarball may
/// omit them); tar would create them 0755 root:root too.
fn implied_dir() -> Meta {
    Meta {
        mode: 0o755,
        ..Meta::default()
    }
}

pub struct Catalog {
    input: PathBuf,
    entries: HashMap<Vec<u8>, Entry>,
    inodes: Vec<Inode>,
}

impl Catalog {
    pub fn new(input: &Path) -> Self {
        Catalog {
            input: input.to_path_buf(),
            entries: HashMap::new(),
            inodes: Vec::new(),
        }
    }

    pub fn add_inode(&mut self, inode: Inode) -> InodeId {
        self.inodes.push(inode);
        self.inodes.len() - 1
    }

    /// Records an inode's content digest once it is known.
    pub fn set_digest(&mut self, id: InodeId, digest: [u8; 32]) {
        if let Some(i) = self.inodes.get_mut(id) {
            i.digest = Some(digest);
        }
    }

    /// Adds or replaces (last one wins) the entry at a canonical path.
    pub fn insert(&mut self, path: Vec<u8>, entry: Entry) -> Result<(), SourceError> {
        if path.is_empty() && !matches!(entry, Entry::Dir(_)) {
            return Err(SourceError::at(
                &self.input,
                &path,
                "the root of the filesystem is not a directory",
            ));
        }
        if self.entries.len() >= MAX_ENTRIES && !self.entries.contains_key(&path) {
            return Err(SourceError::new(
                &self.input,
                "more than 10 million entries: not a root filesystem",
            ));
        }
        self.entries.insert(path, entry);
        Ok(())
    }

    /// A hardlink: `path` names whatever `target` names at this point of the
    /// input, as extraction would link it.
    pub fn link(&mut self, path: Vec<u8>, target: &[u8]) -> Result<(), SourceError> {
        let entry = match self.entries.get(target) {
            None => {
                return Err(SourceError::at(
                    &self.input,
                    &path,
                    format!(
                        "hardlink to {}, which does not precede it in the archive",
                        path::display(target)
                    ),
                ));
            }
            Some(Entry::Dir(_)) => {
                return Err(SourceError::at(
                    &self.input,
                    &path,
                    format!("hardlink to directory {}", path::display(target)),
                ));
            }
            // Linking a symlink, device or fifo gives an entry equal to it; a
            // layer can't express the shared inode, and nothing depends on it.
            Some(e) => e.clone(),
        };
        self.insert(path, entry)
    }

    /// Sorts, adds implied parent directories, checks every parent is a
    /// directory, and drops inodes no path refers to any more.
    pub fn finish(self, spool: Option<File>) -> Result<Rootfs, SourceError> {
        let Catalog {
            input,
            mut entries,
            inodes,
        } = self;
        entries
            .entry(Vec::new())
            .or_insert_with(|| Entry::Dir(implied_dir()));

        let mut missing = HashSet::new();
        for p in entries.keys() {
            let mut cur = path::parent(p);
            while let Some(dir) = cur {
                match entries.get(dir) {
                    Some(Entry::Dir(_)) => break,
                    Some(_) => {
                        return Err(SourceError::at(
                            &input,
                            p,
                            format!("its parent {} is not a directory", path::display(dir)),
                        ));
                    }
                    None => {
                        if !missing.insert(dir.to_vec()) {
                            break;
                        }
                    }
                }
                cur = path::parent(dir);
            }
        }
        for dir in missing {
            entries.insert(dir, Entry::Dir(implied_dir()));
        }

        let mut nodes: Vec<Node> = entries
            .into_iter()
            .map(|(path, entry)| Node { path, entry })
            .collect();
        nodes.sort_unstable_by(|a, b| path::cmp(&a.path, &b.path));

        // Renumber inodes in first-use order so ids follow the sorted paths.
        let mut remap: Vec<Option<InodeId>> = vec![None; inodes.len()];
        let mut kept = Vec::new();
        let mut slots: Vec<Option<Inode>> = inodes.into_iter().map(Some).collect();
        for node in &mut nodes {
            if let Entry::File(ino) = &mut node.entry {
                let new = match remap[*ino] {
                    Some(n) => n,
                    None => {
                        let inode = slots[*ino].take().ok_or_else(|| {
                            SourceError::new(&input, "internal error: inode used twice")
                        })?;
                        kept.push(inode);
                        remap[*ino] = Some(kept.len() - 1);
                        kept.len() - 1
                    }
                };
                *ino = new;
            }
        }
        Ok(Rootfs {
            nodes,
            inodes: kept,
            spool,
            origin: input,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Stored;

    fn file(c: &mut Catalog, size: u64) -> Entry {
        Entry::File(c.add_inode(Inode {
            meta: Meta::default(),
            size,
            content: Stored::Spool(0),
            digest: None,
        }))
    }

    #[test]
    fn last_wins_and_parents_implied() {
        let mut c = Catalog::new(Path::new("x.tar"));
        let a = file(&mut c, 1);
        let b = file(&mut c, 2);
        c.insert(b"usr/bin/a".to_vec(), a).unwrap();
        c.insert(b"usr/bin/a".to_vec(), b).unwrap();
        let r = c.finish(None).unwrap();
        let paths: Vec<&[u8]> = r.nodes().iter().map(|n| n.path.as_slice()).collect();
        assert_eq!(paths, vec![&b""[..], b"usr", b"usr/bin", b"usr/bin/a"]);
        assert_eq!(r.inodes().len(), 1);
        assert_eq!(r.inode(0).size, 2);
        assert_eq!(r.meta(&r.nodes()[1]).mode, 0o755);
    }

    #[test]
    fn hardlinks_share_inode_and_need_a_target() {
        let mut c = Catalog::new(Path::new("x.tar"));
        let a = file(&mut c, 1);
        c.insert(b"a".to_vec(), a).unwrap();
        c.link(b"b".to_vec(), b"a").unwrap();
        assert!(c.link(b"c".to_vec(), b"nope").is_err());
        let r = c.finish(None).unwrap();
        assert_eq!(r.nodes()[1].entry, r.nodes()[2].entry);
    }

    #[test]
    fn file_as_parent_is_an_error() {
        let mut c = Catalog::new(Path::new("x.tar"));
        let a = file(&mut c, 1);
        let b = file(&mut c, 1);
        c.insert(b"a".to_vec(), a).unwrap();
        c.insert(b"a/b".to_vec(), b).unwrap();
        let err = c.finish(None).err().unwrap().to_string();
        assert!(
            err.contains("/a/b: its parent /a is not a directory"),
            "{err}"
        );
    }
}

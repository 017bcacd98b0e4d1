//! Finding the package file for a manifest line in BitBake's feeds.
//!
//! BitBake writes (`DEPLOY_DIR_{IPK,DEB,RPM}/<dir>/<file>`):
//! - ipk: dir PACKAGE_ARCH, file `<pkg>_<PKGV>-<PKGR>_<PACKAGE_ARCH>.ipk`
//!   (opkg-build drops a one-digit epoch from the name; `-O` writes
//!   `.opk`); with
//!   `IPK_HIERARCHICAL_FEED = "1"` two more levels,
//!   `<arch>/<first letter or libX>/<pkg stem>/`.
//! - deb: dir PACKAGE_ARCH, file `<pkg>_<version without epoch>_<dpkg
//!   arch>.deb` as `dpkg-deb -b` names it: the dpkg arch (`amd64`, `all`),
//!   which the manifest does not hold; the manifest has PACKAGE_ARCH with
//!   `-` for `_`.
//! - rpm: dir PACKAGE_ARCH with `-` as `_` (`noarch` for `all`), file
//!   `<name>-<VERSION>-<RELEASE>.<arch>.rpm`; the manifest has VERSION only.
//!
//! So names are tried first, then the candidate's own control data or
//! header confirms it (cheap: never the data archive). When no conventional
//! name fits, files named after the package and files with unconventional
//! names are read until one matches. What is read is remembered.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::{ManifestLine, Package, PackageError, Sniffed, read_any, sniff, strip_epoch};

/// Deepest feed layout: `<root>/<arch>/<prefix>/<stem>/<file>`.
const MAX_DEPTH: usize = 4;

/// An index of the package files under one or more feed directories.
pub struct Feeds {
    entries: Vec<FeedFile>,
    /// File name -> entries with that name, in scan order.
    by_name: BTreeMap<String, Vec<usize>>,
}

struct FeedFile {
    path: PathBuf,
    /// Named `.ipk` (or opkg-build -O's `.opk`), `.deb` or `.rpm`; else
    /// found by content.
    conventional: bool,
    /// Name, version, arch and recipe, once read (`None`: unreadable).
    meta: OnceLock<Option<Package>>,
}

impl Feeds {
    /// Indexes every package under `dirs`: feed roots as BitBake writes
    /// them (`DIR/<arch>/*.ipk`) or flat directories. Files are recognised
    /// by extension, else by content (ar, rpm lead, gzipped ipk). Earlier
    /// directories win when a package is in several.
    pub fn scan(dirs: &[PathBuf]) -> Result<Feeds, PackageError> {
        let mut entries = Vec::new();
        for dir in dirs {
            walk(dir, 0, &mut entries)?;
        }
        let mut by_name: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, e) in entries.iter().enumerate() {
            if let Some(name) = e.path.file_name().and_then(|n| n.to_str()) {
                by_name.entry(name.to_string()).or_default().push(i);
            }
        }
        Ok(Feeds { entries, by_name })
    }

    /// The package file for a manifest line, whichever package manager wrote
    /// the manifest (see the module docs); `None` if no file matches. A
    /// file named as the line asks but unreadable is still returned when
    /// nothing better is found, so that reading it reports the damage.
    pub fn find(&self, line: &ManifestLine) -> Option<PathBuf> {
        let named = self.named(line);
        let mut unreadable = None;
        for &i in &named {
            match self.meta(i) {
                Some(p) if p.matches(line) => return Some(self.entries[i].path.clone()),
                None if unreadable.is_none() => unreadable = Some(i),
                _ => {}
            }
        }
        // Tolerance: the file's name may not follow the conventions.
        let prefix = |e: &FeedFile| {
            let name = e.path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.strip_prefix(line.name.as_str())
                .is_some_and(|rest| rest.starts_with(['_', '-', '.']))
        };
        let found = (0..self.entries.len())
            .filter(|i| !named.contains(i))
            .filter(|&i| !self.entries[i].conventional || prefix(&self.entries[i]))
            .find(|&i| self.meta(i).is_some_and(|p| p.matches(line)));
        found.or(unreadable).map(|i| self.entries[i].path.clone())
    }

    /// Entries whose names follow a convention for this line. The name
    /// alone does not decide (a deb's holds the dpkg arch, not the
    /// manifest's): [`Feeds::find`] reads each candidate's control data.
    fn named(&self, line: &ManifestLine) -> Vec<usize> {
        let version = strip_epoch(&line.version);
        let mut out: Vec<usize> = Vec::new();
        // ipk and deb: `<name>_<version>_<arch>.<ext>`. opkg-build drops
        // only a one-character epoch (`sed 's/^.://'`): `10:` stays.
        for v in [version, line.version.as_str()] {
            let prefix = format!("{}_{v}_", line.name);
            for (name, ids) in self.with_prefix(&prefix) {
                let rest = &name[prefix.len()..];
                let ok = match rest.rsplit_once('.') {
                    Some((arch, "ipk" | "opk")) => same_arch(arch, &line.arch),
                    Some((arch, "deb")) => !arch.contains('_'),
                    _ => false,
                };
                if ok {
                    out.extend_from_slice(ids);
                }
            }
        }
        // rpm: `<name>-<version>-<release>.<arch>.rpm`, or `<name>-<v-r>.<arch>.rpm`.
        let prefix = format!("{}-{version}", line.name);
        for (name, ids) in self.with_prefix(&prefix) {
            let rest = &name[prefix.len()..];
            let Some(stem) = rest.strip_suffix(".rpm") else {
                continue;
            };
            let Some((release, arch)) = stem.rsplit_once('.') else {
                continue;
            };
            let release_ok = release.is_empty()
                || release
                    .strip_prefix('-')
                    .is_some_and(|r| !r.is_empty() && !r.contains('-'));
            if release_ok && same_arch(arch, &line.arch) {
                out.extend_from_slice(ids);
            }
        }
        // Scan order: earlier feed directories win.
        out.sort_unstable();
        out.dedup();
        out
    }

    /// File names starting with `prefix`, with their entries.
    fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a [usize])> {
        self.by_name
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(name, _)| name.starts_with(prefix))
            .map(|(name, ids)| (name.as_str(), ids.as_slice()))
    }

    fn meta(&self, i: usize) -> Option<&Package> {
        let entry = &self.entries[i];
        entry
            .meta
            .get_or_init(|| read_any(&entry.path, false).ok())
            .as_ref()
    }
}

/// Architectures compare with `-` and `_` alike (deb and rpm respell them).
fn same_arch(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .all(|(x, y)| x == y || (matches!(x, b'-' | b'_') && matches!(y, b'-' | b'_')))
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<FeedFile>) -> Result<(), PackageError> {
    let at =
        |e: std::io::Error| PackageError::new(dir, format!("cannot read the feed directory: {e}"));
    let mut children: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(at)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(at)?;
    children.sort();
    for path in children {
        // Follows symlinks; the depth limit stops loops.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if depth < MAX_DEPTH {
                walk(&path, depth + 1, out)?;
            }
            continue;
        }
        if !meta.is_file() {
            continue;
        }
        let ext = path.extension().and_then(|e| e.to_str());
        let conventional = matches!(ext, Some("ipk" | "opk" | "deb" | "rpm"));
        if !conventional && !is_package(&path) {
            continue;
        }
        out.push(FeedFile {
            path,
            conventional,
            meta: OnceLock::new(),
        });
    }
    Ok(())
}

/// Whether an unconventionally named file holds a package.
fn is_package(path: &Path) -> bool {
    matches!(
        sniff(path),
        Ok(Some(Sniffed::Ar | Sniffed::Rpm | Sniffed::GzipTar))
    )
}

#[cfg(test)]
mod tests;

//! Reads what the image's packages ship (feeds, else pkgdata) and hands it
//! to the planner as [`Owner`]s. Packages are read in parallel: each one's
//! data archive is decompressed and hashed.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::layers::{Cache, file_digest};
use crate::packages::{self, Feeds, FileKind, ManifestLine, Package};
use crate::plan::{Claim, ClaimKind, Owner};

pub struct Sources<'a> {
    pub manifest: &'a Path,
    pub feeds: &'a [PathBuf],
    pub pkgdata: Option<&'a Path>,
    /// Keeps what each package file ships, so a package is read once.
    pub cache: Option<&'a Cache>,
}

/// Bumped when what is kept of a package changes (v2: the license).
const CACHE_FORMAT: &str = "owner-v2";

/// The owners of the manifest's packages, in manifest order. Packages found
/// nowhere are reported to `warn` and left out (their files end up in the
/// final layer).
pub fn load(
    src: &Sources<'_>,
    jobs: usize,
    warn: &(dyn Fn(String) + Sync),
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<Owner>, packages::PackageError> {
    let lines = packages::read_manifest(src.manifest)?;
    let feeds = Feeds::scan(src.feeds)?;
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    // One slot per manifest line; None until read (or skipped after an error).
    type Slot = Option<Result<Option<Owner>, packages::PackageError>>;
    let results: Mutex<Vec<Slot>> = Mutex::new((0..lines.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, lines.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(line) = lines.get(i) else { break };
                    let r = read_one(line, &feeds, src.pkgdata, src.cache);
                    let failed = r.is_err();
                    if let Ok(mut all) = results.lock() {
                        all[i] = Some(r);
                    }
                    progress(done.fetch_add(1, Ordering::Relaxed) as u64 + 1);
                    if failed {
                        // Stop early: the first error ends the build anyway.
                        next.store(lines.len(), Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut owners = Vec::with_capacity(lines.len());
    for (line, r) in lines.iter().zip(results) {
        match r {
            Some(Ok(Some(o))) => owners.push(o),
            Some(Ok(None)) => warn(format!(
                "{}:{}: package {} {} {} is in no feed or pkgdata; its files go to the final layer",
                src.manifest.display(),
                line.line,
                line.name,
                line.arch,
                line.version
            )),
            Some(Err(e)) => return Err(e),
            // Not read because another package failed first.
            None => {}
        }
    }
    Ok(owners)
}

fn read_one(
    line: &ManifestLine,
    feeds: &Feeds,
    pkgdata: Option<&Path>,
    cache: Option<&Cache>,
) -> Result<Option<Owner>, packages::PackageError> {
    if let Some(file) = feeds.find(line) {
        let mut o = read_cached(&file, cache)?;
        // OE's debs carry no License field; pkgdata has it.
        if o.license.is_none()
            && let Some(runtime) = pkgdata.and_then(|d| packages::find_pkgdata(d, &line.name))
        {
            o.license = packages::pkgdata_license(&runtime);
        }
        return Ok(Some(o));
    }
    if let Some(runtime) = pkgdata.and_then(|d| packages::find_pkgdata(d, &line.name)) {
        let p = packages::read_pkgdata_runtime(&runtime)?;
        return Ok(p.matches(line).then(|| owner(p)));
    }
    Ok(None)
}

/// Reads a package file, or takes what it ships from the cache, keyed by
/// the file's own digest (cheaper than decompressing it).
fn read_cached(file: &Path, cache: Option<&Cache>) -> Result<Owner, packages::PackageError> {
    let Some(cache) = cache else {
        return packages::read_package(file).map(owner);
    };
    let io = |e: std::io::Error| packages::PackageError {
        path: file.to_path_buf(),
        reason: e.to_string(),
    };
    let key = format!("{CACHE_FORMAT}-{}", file_digest(file).map_err(io)?.hex());
    if let Some(o) = cache
        .package(&key)
        .and_then(|b| serde_json::from_slice::<Owner>(&b).ok())
    {
        return Ok(o);
    }
    let o = owner(packages::read_package(file)?);
    if let Ok(bytes) = serde_json::to_vec(&o) {
        // A cache that can't be written only costs time next build.
        let _ = cache.put_package(&key, &bytes);
    }
    Ok(o)
}

/// What the planner needs of a package. Directories are not claimed (they
/// enter layers as parents); devices and fifos neither, as pkgdata can't
/// list them and every kind of input must give the same layers.
fn owner(p: Package) -> Owner {
    let file_of = |target: &[u8]| {
        p.files
            .iter()
            .find_map(|f| match (&f.kind, f.path == target) {
                (FileKind::File { size, sha256 }, true) => Some((*size, *sha256)),
                _ => None,
            })
    };
    let claim = |size: u64, sha256: Option<[u8; 32]>| match sha256 {
        Some(sha256) => ClaimKind::File { size, sha256 },
        None => ClaimKind::Sized(size),
    };
    let claims = p
        .files
        .iter()
        .filter_map(|f| {
            let kind = match &f.kind {
                FileKind::File { size, sha256 } => claim(*size, *sha256),
                FileKind::Hardlink { target } => {
                    let (size, sha256) = file_of(target)?;
                    claim(size, sha256)
                }
                FileKind::Symlink { target } => ClaimKind::Symlink(target.clone()),
                FileKind::Dir | FileKind::Device | FileKind::Fifo => return None,
            };
            Some(Claim {
                path: f.path.clone(),
                kind,
            })
        })
        .collect();
    Owner {
        recipe: p.recipe.clone().unwrap_or_else(|| p.name.clone()),
        license: p.license,
        name: p.name,
        version: p.version,
        depends: p.depends,
        claims,
    }
}

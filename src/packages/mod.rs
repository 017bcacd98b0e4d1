//! Who ships which path: packages read from OpenEmbedded's deploy directory.
//!
//! An image's manifest (`<image>.manifest`, one `<package> <arch> <version>`
//! line per installed package) names the packages; the package feeds that
//! BitBake wrote (`tmp/deploy/{ipk,deb,rpm}/<arch>/`) or its pkgdata
//! (`tmp/pkgdata/<machine>/runtime/`) say what each one ships. This module
//! reads those inputs into [`Package`]s: a name, a version, the recipe it
//! came from and its file list. It knows nothing of layers or tar writing.
//!
//! The formats, briefly:
//! - **ipk** and **deb** ([`ipk`]): a GNU `ar` archive of `debian-binary`,
//!   `control.tar.*` (the `control` file: `Package`, `Version`,
//!   `Architecture`, OE's own `OE: <PN>`, and for deb `PackageArch`) and
//!   `data.tar.*` (the files). Very old ipks are a gzipped tar holding the
//!   same three members.
//! - **rpm** ([`rpm`]): a lead, a signature header, a header (tags for the
//!   name, version and the file list) and a compressed cpio payload.
//! - **pkgdata** ([`pkgdata`]): text lines `VAR:<pkg>: value`; the file list
//!   is JSON with sizes only.
//!
//! [`read_manifest`] reads the manifest ([`manifest`] says what each package
//! manager writes in it), [`Feeds`] finds a line's package file by BitBake's
//! naming conventions ([`feeds`]), [`find_pkgdata`] its runtime file, and
//! [`read_package`] reads any package file. [`Package::matches`] tells
//! whether what was read is what the manifest named.
//!
//! File contents are hashed while the archive streams past; nothing holds a
//! whole data archive in memory. Every path is brought to the canonical form
//! of [`crate::source::path::normalize`], so it compares with rootfs paths.

mod ar;
mod cpio;
mod decode;
mod feeds;
mod ipk;
mod manifest;
mod pkgdata;
mod rpm;
#[cfg(test)]
mod testutil;

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use feeds::Feeds;
pub use manifest::{ManifestLine, read_manifest};
pub use pkgdata::{find_pkgdata, pkgdata_license, read_pkgdata_runtime};

/// What one package ships.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// Runtime package name as the image manifest spells it (`libc6`).
    pub name: String,
    /// ipk/deb/pkgdata: `[epoch:]PKGV-PKGR` as their manifests spell it.
    /// rpm: `[EPOCH:]VERSION-RELEASE` (an rpm image's manifest holds only
    /// VERSION; [`Package::matches`] knows).
    pub version: String,
    /// The package architecture (OE's PACKAGE_ARCH as the package spells
    /// it); empty for pkgdata, which does not record it.
    pub arch: String,
    /// The OE recipe (PN) that built the package, when the input says.
    pub recipe: Option<String>,
    /// The package's license as OE wrote it (its LICENSE variable: `&`, `|`
    /// and parentheses, or SPDX `AND`/`OR` on newer releases): control
    /// `License`, rpm `License`, pkgdata `LICENSE`. `None` where the input
    /// does not say (OE's debs carry no License field).
    pub license: Option<String>,
    /// Names of the packages it depends on at run time, versions dropped
    /// (control `Depends`, rpm requires that name packages, pkgdata
    /// `RDEPENDS` mapped to final package names).
    pub depends: Vec<String>,
    pub files: Vec<PackageFile>,
    /// The package file (or pkgdata runtime file) that was read.
    pub source: PathBuf,
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Ipk,
    Deb,
    Rpm,
    Pkgdata,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageFile {
    /// Canonical relative path (see [`crate::source::path::normalize`]).
    pub path: Vec<u8>,
    pub kind: FileKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKind {
    /// `sha256` is `None` only for pkgdata, which records sizes alone.
    File {
        size: u64,
        sha256: Option<[u8; 32]>,
    },
    Dir,
    /// The target exactly as stored (relative or absolute).
    Symlink {
        target: Vec<u8>,
    },
    /// A further name of a file listed earlier; `target` is its canonical
    /// path.
    Hardlink {
        target: Vec<u8>,
    },
    Device,
    Fifo,
}

/// A package input that could not be read, with the file it concerns.
#[derive(Debug)]
pub struct PackageError {
    pub path: PathBuf,
    pub reason: String,
}

impl PackageError {
    fn new(path: &Path, reason: impl fmt::Display) -> PackageError {
        PackageError {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}

impl fmt::Display for PackageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line, whatever the reason holds.
        let reason = self.reason.replace('\n', " ");
        write!(f, "{}: {}", self.path.display(), reason)
    }
}

impl std::error::Error for PackageError {}

impl Package {
    /// Whether this package is the one a manifest line names. Architectures
    /// compare with `-` and `_` taken as equal (OE's deb manifests write
    /// `qemux86-64` for PACKAGE_ARCH `qemux86_64`; rpm writes `_` for `-`).
    /// An rpm matches by VERSION alone, as rpm manifests list it, or by its
    /// full `[EPOCH:]VERSION-RELEASE`. pkgdata has no architecture, and its
    /// version also matches the rpm spelling (PKGV with `-` as `+`).
    pub fn matches(&self, line: &ManifestLine) -> bool {
        if self.name != line.name {
            return false;
        }
        let arch = |a: &str| a.replace('_', "-");
        if self.format != Format::Pkgdata && arch(&self.arch) != arch(&line.arch) {
            return false;
        }
        if self.version == line.version {
            return true;
        }
        let no_epoch = strip_epoch(&self.version);
        let upstream = no_epoch.rsplit_once('-').map(|(v, _)| v);
        match self.format {
            Format::Rpm => no_epoch == line.version || upstream == Some(line.version.as_str()),
            Format::Pkgdata => upstream.is_some_and(|v| v.replace('-', "+") == line.version),
            Format::Ipk | Format::Deb => false,
        }
    }
}

/// Package names in a dependency list, either Debian's
/// (`libc6 (>= 2.39), busybox | toybox`) or BitBake's
/// (`libc6 (>= 2.39) busybox`): version constraints dropped.
pub fn dependency_names(list: &str) -> Vec<String> {
    let mut bare = String::with_capacity(list.len());
    let mut depth = 0usize;
    for c in list.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => bare.push(c),
            _ => {}
        }
    }
    let mut names: Vec<String> = bare
        .split(|c: char| c == ',' || c == '|' || c.is_whitespace())
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Reads any package file, telling ipk, deb and rpm apart by content (and
/// ipk from deb by name, then by OE's deb-only `PackageArch` field).
pub fn read_package(path: &Path) -> Result<Package, PackageError> {
    read_any(path, true)
}

/// [`read_package`], or with `files == false` only the name, version, arch,
/// recipe and license (the control data or rpm header, not the payload).
fn read_any(path: &Path, files: bool) -> Result<Package, PackageError> {
    match sniff(path).map_err(|e| PackageError::new(path, e))? {
        Some(Sniffed::Rpm) => rpm::read(path, files),
        Some(Sniffed::Ar | Sniffed::GzipTar) => ipk::read(path, None, files),
        None => Err(PackageError::new(
            path,
            "not an ipk, deb or rpm package (unknown content)",
        )),
    }
}

/// What a file's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sniffed {
    Ar,
    /// A gzipped tar whose first member is `debian-binary`: the old ipk.
    GzipTar,
    Rpm,
}

fn sniff(path: &Path) -> io::Result<Option<Sniffed>> {
    let mut head = [0u8; 8];
    let n = read_up_to(&mut File::open(path)?, &mut head)?;
    let head = &head[..n];
    Ok(if head.starts_with(ar::MAGIC) {
        Some(Sniffed::Ar)
    } else if head.starts_with(&rpm::LEAD_MAGIC) {
        Some(Sniffed::Rpm)
    } else if head.starts_with(&[0x1f, 0x8b]) && ipk::is_old_ipk(path)? {
        Some(Sniffed::GzipTar)
    } else {
        None
    })
}

/// Fills as much of `buf` as the input has; returns how much that was.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads `r` to its end, hashing; returns the byte count and SHA-256.
fn hash_content(r: &mut impl Read) -> io::Result<(u64, [u8; 32])> {
    let mut hasher = Sha256::new();
    let mut buf = [0u8; 32 * 1024];
    let mut size = 0u64;
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                size += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((size, hasher.finalize().into()))
}

/// Reads `r` to its end (so a decoder verifies its checksum).
fn drain(mut r: impl Read) -> io::Result<()> {
    io::copy(&mut r, &mut io::sink()).map(|_| ())
}

/// The canonical form of a path from a package, or an error naming it.
fn canonical(raw: &[u8]) -> io::Result<Vec<u8>> {
    crate::source::path::normalize(raw).map_err(|e| {
        invalid(format!(
            "path {:?} in the package: {e}",
            String::from_utf8_lossy(raw)
        ))
    })
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Prefixes an error's message with what was being read.
fn context(what: &str) -> impl Fn(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn strip_epoch(version: &str) -> &str {
    match version.split_once(':') {
        Some((epoch, rest)) if !epoch.is_empty() && epoch.bytes().all(|b| b.is_ascii_digit()) => {
            rest
        }
        _ => version,
    }
}

/// Collects files by path; a path seen again replaces the earlier entry, as
/// unpacking the archive would.
#[derive(Default)]
struct FileList {
    files: Vec<PackageFile>,
    index: std::collections::HashMap<Vec<u8>, usize>,
}

impl FileList {
    fn push(&mut self, path: Vec<u8>, kind: FileKind) -> usize {
        // The archive's root ("./") is no file of the package.
        if path.is_empty() {
            return usize::MAX;
        }
        if let Some(&i) = self.index.get(&path) {
            self.files[i].kind = kind;
            return i;
        }
        self.index.insert(path.clone(), self.files.len());
        self.files.push(PackageFile { path, kind });
        self.files.len() - 1
    }

    fn contains(&self, path: &[u8]) -> bool {
        self.index.contains_key(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(format: Format, name: &str, version: &str, arch: &str) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            arch: arch.into(),
            recipe: None,
            license: None,
            depends: Vec::new(),
            files: vec![],
            source: PathBuf::new(),
            format,
        }
    }

    fn line(name: &str, arch: &str, version: &str) -> ManifestLine {
        ManifestLine {
            name: name.into(),
            arch: arch.into(),
            version: version.into(),
            line: 1,
        }
    }

    #[test]
    fn matches_manifest_lines_as_each_package_manager_writes_them() {
        let ipk = pkg(Format::Ipk, "busybox", "1:1.36.1-r0", "core2-64");
        assert!(ipk.matches(&line("busybox", "core2-64", "1:1.36.1-r0")));
        assert!(!ipk.matches(&line("busybox", "core2-64", "1.36.1-r0")));
        assert!(!ipk.matches(&line("busybox", "armv7a", "1:1.36.1-r0")));
        let deb = pkg(Format::Deb, "base-files", "3.0.14-r0", "qemux86-64");
        assert!(deb.matches(&line("base-files", "qemux86-64", "3.0.14-r0")));
        let rpm = pkg(Format::Rpm, "base-files", "3.0.14-r0", "qemux86_64");
        assert!(rpm.matches(&line("base-files", "qemux86_64", "3.0.14")));
        assert!(rpm.matches(&line("base-files", "qemux86_64", "3.0.14-r0")));
        assert!(!rpm.matches(&line("base-files", "qemux86_64", "3.0.15")));
        let pd = pkg(Format::Pkgdata, "libfoo", "2.0-rc1-r0", "");
        assert!(pd.matches(&line("libfoo", "core2-64", "2.0-rc1-r0")));
        assert!(pd.matches(&line("libfoo", "core2_64", "2.0+rc1")));
        assert!(!pd.matches(&line("libbar", "core2_64", "2.0+rc1")));
    }

    #[test]
    fn error_is_one_line() {
        let e = PackageError::new(Path::new("/x/y.ipk"), "bad\nthing");
        assert_eq!(e.to_string(), "/x/y.ipk: bad thing");
    }

    #[test]
    fn strips_only_numeric_epochs() {
        assert_eq!(strip_epoch("1:2.0-r0"), "2.0-r0");
        assert_eq!(strip_epoch("2.0-r0"), "2.0-r0");
        assert_eq!(strip_epoch("a:2.0"), "a:2.0");
    }
}

//! rpm packages: the header's metadata and file list, checked against the
//! payload.
//!
//! Layout (rpm v4, as OE's rpm 4.x writes): a 96-byte lead (`ed ab ee db`),
//! then the signature header padded to 8 bytes, then the header, then the
//! payload. A header is `8e ad e8 01`, 4 reserved bytes, the index entry
//! count and the data size (big-endian u32), the index entries (tag, type,
//! offset into the data, count: four u32) and the data.
//!
//! The header lists every file (BASENAMES + DIRNAMES by DIRINDEXES, or
//! OLDFILENAMES in old rpms) with FILEMODES, FILESIZES, FILEDIGESTS (hex, of
//! the algorithm FILEDIGESTALGO names: 8 is SHA-256, absent means MD5),
//! FILELINKTOS and FILEFLAGS. `%ghost` files are listed but not shipped. The
//! payload is a cpio archive compressed as PAYLOADCOMPRESSOR says.
//!
//! The payload is the truth: it has the content to hash and shows hard links
//! (shared inode numbers). It is read whole and checked against the header,
//! entry for entry: a package whose two halves disagree is corrupt.
//!
//! The recipe: OE's package_rpm writes one spec per recipe whose `Name` is PN
//! and whose subpackages are the recipe's packages, so SOURCERPM is
//! `<PN>-<version>-<release>.src.rpm` for all of them.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{
    FileKind, FileList, Format, Package, PackageError, canonical, context, cpio, decode, drain,
    hash_content, invalid, read_up_to,
};

pub const LEAD_MAGIC: [u8; 4] = [0xed, 0xab, 0xee, 0xdb];
const LEAD_LEN: usize = 96;
const HEADER_MAGIC: [u8; 4] = [0x8e, 0xad, 0xe8, 0x01];
const MAX_INDEX: u32 = 1_000_000;
const MAX_DATA: u32 = 256 << 20;
const MAX_LINK: u64 = 4096;

const NAME: u32 = 1000;
const VERSION: u32 = 1001;
const RELEASE: u32 = 1002;
const EPOCH: u32 = 1003;
const LICENSE: u32 = 1014;
const ARCH: u32 = 1022;
const OLDFILENAMES: u32 = 1027;
const FILESIZES: u32 = 1028;
const FILEMODES: u32 = 1030;
const FILEDIGESTS: u32 = 1035;
const FILELINKTOS: u32 = 1036;
const FILEFLAGS: u32 = 1037;
const SOURCERPM: u32 = 1044;
const REQUIRENAME: u32 = 1049;
const DIRINDEXES: u32 = 1116;
const BASENAMES: u32 = 1117;
const DIRNAMES: u32 = 1118;
const PAYLOADFORMAT: u32 = 1124;
const PAYLOADCOMPRESSOR: u32 = 1125;
const LONGFILESIZES: u32 = 5008;
const FILEDIGESTALGO: u32 = 5011;

const RPMFILE_GHOST: u64 = 1 << 6;
const DIGEST_SHA256: u64 = 8;

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;
const S_IFIFO: u32 = 0o010000;

/// Reads an rpm: metadata from the header, files from the payload.
#[cfg(test)]
pub fn read_rpm(path: &Path) -> Result<Package, PackageError> {
    read(path, true)
}

/// With `files == false` the payload is not read.
pub(super) fn read(path: &Path, files: bool) -> Result<Package, PackageError> {
    let at = |e: io::Error| PackageError::new(path, e);
    let mut input = BufReader::new(File::open(path).map_err(at)?);
    let mut lead = [0u8; LEAD_LEN];
    let n = read_up_to(&mut input, &mut lead).map_err(at)?;
    if n < 4 || lead[..4] != LEAD_MAGIC {
        return Err(PackageError::new(
            path,
            "not an rpm package (bad lead magic)",
        ));
    }
    if n < LEAD_LEN {
        return Err(PackageError::new(path, "rpm lead is truncated"));
    }
    RpmHeader::read(&mut input, true)
        .map_err(context("signature header"))
        .map_err(at)?;
    let header = RpmHeader::read(&mut input, false)
        .map_err(context("header"))
        .map_err(at)?;
    let mut package = metadata(&header, path).map_err(at)?;
    if files {
        let list = header_files(&header).map_err(at)?;
        let compressor = header.string(PAYLOADCOMPRESSOR).map_err(at)?;
        let compressor = compressor.as_deref().unwrap_or("gzip");
        match header.string(PAYLOADFORMAT).map_err(at)?.as_deref() {
            None | Some("cpio") => {}
            Some(other) => {
                return Err(PackageError::new(
                    path,
                    format!("unsupported payload format {other}"),
                ));
            }
        }
        let payload = decode::decoder(input, compressor).map_err(at)?;
        package.files = read_payload(payload, &list)
            .map_err(context("payload"))
            .map_err(at)?;
    }
    Ok(package)
}

fn metadata(h: &RpmHeader, path: &Path) -> io::Result<Package> {
    let need = |tag: u32, what: &str| {
        h.string(tag)?
            .ok_or_else(|| invalid(format!("header has no {what}")))
    };
    let epoch = h.ints(EPOCH)?.and_then(|e| e.first().copied());
    let version = format!(
        "{}-{}",
        need(VERSION, "VERSION")?,
        need(RELEASE, "RELEASE")?
    );
    let version = match epoch {
        Some(e) if e > 0 => format!("{e}:{version}"),
        _ => version,
    };
    Ok(Package {
        name: need(NAME, "NAME")?,
        version,
        arch: need(ARCH, "ARCH")?,
        recipe: h.string(SOURCERPM)?.as_deref().and_then(source_name),
        license: h.string(LICENSE)?,
        depends: package_requires(h.strings(REQUIRENAME)?.unwrap_or_default()),
        files: Vec::new(),
        source: path.to_path_buf(),
        format: Format::Rpm,
    })
}

/// The requires that name packages: rpm also lists sonames
/// (`libc.so.6()(64bit)`), files (`/bin/sh`) and its own features
/// (`rpmlib(...)`), which say nothing about package order.
fn package_requires(reqs: Vec<Vec<u8>>) -> Vec<String> {
    let mut names: Vec<String> = reqs
        .into_iter()
        .map(|r| String::from_utf8_lossy(&r).into_owned())
        .filter(|r| !r.is_empty() && !r.starts_with('/') && !r.contains('('))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// `glibc-2.39+git-r0.src.rpm` -> `glibc` (rpm versions and releases hold
/// no `-`, so the name is what precedes the last two).
fn source_name(srpm: &str) -> Option<String> {
    let nvr = srpm
        .strip_suffix(".src.rpm")
        .or_else(|| srpm.strip_suffix(".nosrc.rpm"))?;
    let (nv, _release) = nvr.rsplit_once('-')?;
    let (name, _version) = nv.rsplit_once('-')?;
    (!name.is_empty()).then(|| name.to_string())
}

/// One file as the header lists it.
struct Listed {
    path: Vec<u8>,
    mode: u32,
    size: u64,
    digest: Option<String>,
    link: Vec<u8>,
    ghost: bool,
}

struct RpmFiles {
    files: Vec<Listed>,
    sha256: bool,
}

fn header_files(h: &RpmHeader) -> io::Result<RpmFiles> {
    let names: Vec<Vec<u8>> = match h.strings(BASENAMES)? {
        Some(base) => {
            let dirs = h.strings(DIRNAMES)?.unwrap_or_default();
            let index = h.ints(DIRINDEXES)?.unwrap_or_default();
            if index.len() != base.len() {
                return Err(invalid("DIRINDEXES and BASENAMES differ in length"));
            }
            let mut names = Vec::with_capacity(base.len());
            for (b, i) in base.iter().zip(index) {
                let dir = usize::try_from(i)
                    .ok()
                    .and_then(|i| dirs.get(i))
                    .ok_or_else(|| invalid("DIRINDEXES points past DIRNAMES"))?;
                names.push([dir.as_slice(), b].concat());
            }
            names
        }
        None => h.strings(OLDFILENAMES)?.unwrap_or_default(),
    };
    let n = names.len();
    let array = |tag: u32, what: &str| -> io::Result<Option<Vec<u64>>> {
        match h.ints(tag)? {
            Some(v) if v.len() != n => Err(invalid(format!(
                "{what} has {} entries for {n} files",
                v.len()
            ))),
            v => Ok(v),
        }
    };
    let strings = |tag: u32, what: &str| -> io::Result<Option<Vec<Vec<u8>>>> {
        match h.strings(tag)? {
            Some(v) if v.len() != n => Err(invalid(format!(
                "{what} has {} entries for {n} files",
                v.len()
            ))),
            v => Ok(v),
        }
    };
    if n == 0 {
        return Ok(RpmFiles {
            files: Vec::new(),
            sha256: false,
        });
    }
    let modes = array(FILEMODES, "FILEMODES")?.ok_or_else(|| invalid("header has no FILEMODES"))?;
    let sizes = match array(LONGFILESIZES, "LONGFILESIZES")? {
        Some(s) => s,
        None => array(FILESIZES, "FILESIZES")?.ok_or_else(|| invalid("header has no FILESIZES"))?,
    };
    let flags = array(FILEFLAGS, "FILEFLAGS")?.unwrap_or_else(|| vec![0; n]);
    let digests = strings(FILEDIGESTS, "FILEDIGESTS")?;
    let links = strings(FILELINKTOS, "FILELINKTOS")?;
    let algo = h.ints(FILEDIGESTALGO)?.and_then(|a| a.first().copied());
    let mut files = Vec::with_capacity(n);
    for (i, name) in names.iter().enumerate() {
        let digest = digests
            .as_ref()
            .map(|d| String::from_utf8_lossy(&d[i]).to_ascii_lowercase());
        files.push(Listed {
            path: canonical(name)?,
            mode: u32::try_from(modes[i]).unwrap_or(u32::MAX),
            size: sizes[i],
            digest: digest.filter(|d| !d.is_empty()),
            link: links.as_ref().map(|l| l[i].clone()).unwrap_or_default(),
            ghost: flags[i] & RPMFILE_GHOST != 0,
        });
    }
    Ok(RpmFiles {
        files,
        sha256: algo == Some(DIGEST_SHA256),
    })
}

/// A set of hard links: the first name carries the content in our list.
struct LinkSet {
    leader: usize,
    leader_path: Vec<u8>,
    members: Vec<usize>,
    content: Option<(u64, [u8; 32])>,
}

/// Walks the cpio payload, hashing contents, and checks each entry against
/// the header.
fn read_payload(payload: impl Read, list: &RpmFiles) -> io::Result<Vec<super::PackageFile>> {
    let listed: HashMap<&[u8], usize> = list
        .files
        .iter()
        .enumerate()
        .filter(|(_, f)| !f.ghost)
        .map(|(i, f)| (f.path.as_slice(), i))
        .collect();
    let mut seen = vec![false; list.files.len()];
    let mut out = FileList::default();
    let mut links: HashMap<u32, LinkSet> = HashMap::new();
    let mut cpio = cpio::CpioReader::new(payload);
    while let Some(h) = cpio.next_entry()? {
        let path = canonical(&h.name)?;
        let show = String::from_utf8_lossy(&h.name).into_owned();
        if path.is_empty() && h.mode & S_IFMT != S_IFDIR {
            return Err(invalid(format!("{show}: the root is not a directory")));
        }
        let &i = listed
            .get(path.as_slice())
            .ok_or_else(|| invalid(format!("{show} is in the payload but not in the header")))?;
        if std::mem::replace(&mut seen[i], true) {
            return Err(invalid(format!("{show} is twice in the payload")));
        }
        let want = &list.files[i];
        if h.mode & 0o177777 != want.mode {
            return Err(invalid(format!(
                "{show}: mode {:o} in the payload, {:o} in the header",
                h.mode, want.mode
            )));
        }
        let kind = match h.mode & S_IFMT {
            S_IFREG if h.nlink > 1 => {
                let content = if h.size > 0 {
                    Some(hash_content(&mut cpio).map_err(context(&show))?)
                } else {
                    None
                };
                let set = links.entry(h.ino).or_insert_with(|| LinkSet {
                    leader: usize::MAX,
                    leader_path: path.clone(),
                    members: Vec::new(),
                    content: None,
                });
                set.members.push(i);
                if content.is_some() {
                    set.content = content;
                }
                if set.leader == usize::MAX {
                    // The content is filled in once the set is complete.
                    set.leader = out.push(
                        path,
                        FileKind::File {
                            size: 0,
                            sha256: None,
                        },
                    );
                    continue;
                }
                FileKind::Hardlink {
                    target: set.leader_path.clone(),
                }
            }
            S_IFREG => {
                let (size, sha) = hash_content(&mut cpio).map_err(context(&show))?;
                check_content(want, list.sha256, size, &sha)?;
                FileKind::File {
                    size,
                    sha256: Some(sha),
                }
            }
            S_IFDIR => FileKind::Dir,
            S_IFLNK => {
                let mut target = Vec::new();
                (&mut cpio).take(MAX_LINK + 1).read_to_end(&mut target)?;
                if target.is_empty() || target.len() as u64 > MAX_LINK {
                    return Err(invalid(format!("{show}: link target is empty or too long")));
                }
                if !want.link.is_empty() && want.link != target {
                    return Err(invalid(format!(
                        "{show}: link target differs from the header's"
                    )));
                }
                FileKind::Symlink { target }
            }
            S_IFCHR | S_IFBLK => FileKind::Device,
            S_IFIFO => FileKind::Fifo,
            other => return Err(invalid(format!("{show}: unsupported file type {other:o}"))),
        };
        out.push(path, kind);
    }
    // Past the trailer: rpm's padding, then the compressor's checksum.
    drain(cpio.into_inner())?;
    for set in links.into_values() {
        let (size, sha) = set
            .content
            .unwrap_or_else(|| (0, Sha256::digest(b"").into()));
        for &m in &set.members {
            check_content(&list.files[m], list.sha256, size, &sha)?;
        }
        out.files[set.leader].kind = FileKind::File {
            size,
            sha256: Some(sha),
        };
    }
    if let Some(f) = list.files.iter().zip(&seen).find(|(f, s)| !f.ghost && !**s) {
        return Err(invalid(format!(
            "{} is in the header but not in the payload",
            String::from_utf8_lossy(&f.0.path)
        )));
    }
    Ok(out.files)
}

fn check_content(want: &Listed, sha256: bool, size: u64, sha: &[u8; 32]) -> io::Result<()> {
    let show = || String::from_utf8_lossy(&want.path).into_owned();
    if size != want.size {
        return Err(invalid(format!(
            "{}: {size} bytes in the payload, {} in the header",
            show(),
            want.size
        )));
    }
    if let (true, Some(digest)) = (sha256, &want.digest) {
        let hex: String = sha.iter().map(|b| format!("{b:02x}")).collect();
        if *digest != hex {
            return Err(invalid(format!(
                "{}: content does not match the header's SHA-256",
                show()
            )));
        }
    }
    Ok(())
}

struct IndexEntry {
    tag: u32,
    ty: u32,
    offset: usize,
    count: usize,
}

/// A parsed header: its index and data store.
struct RpmHeader {
    index: Vec<IndexEntry>,
    data: Vec<u8>,
}

impl RpmHeader {
    /// Reads one header; the signature header is followed by padding to a
    /// multiple of 8 bytes.
    fn read(r: &mut impl Read, signature: bool) -> io::Result<RpmHeader> {
        let mut intro = [0u8; 16];
        if read_up_to(r, &mut intro)? < intro.len() {
            return Err(truncated());
        }
        if intro[..4] != HEADER_MAGIC {
            return Err(invalid("bad header magic"));
        }
        let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let (il, dl) = (be(&intro[8..12]), be(&intro[12..16]));
        if il > MAX_INDEX {
            return Err(invalid(format!("{il} index entries (at most {MAX_INDEX})")));
        }
        if dl > MAX_DATA {
            return Err(invalid(format!("{dl} bytes of data (at most 256 MiB)")));
        }
        let raw = read_exactly(r, u64::from(il) * 16)?;
        let data = read_exactly(r, u64::from(dl))?;
        if signature {
            let pad = (8 - (u64::from(il) * 16 + u64::from(dl)) % 8) % 8;
            read_exactly(r, pad)?;
        }
        let mut index = Vec::with_capacity(il as usize);
        for e in raw.chunks_exact(16) {
            let entry = IndexEntry {
                tag: be(&e[0..4]),
                ty: be(&e[4..8]),
                offset: be(&e[8..12]) as usize,
                count: be(&e[12..16]) as usize,
            };
            // Every value takes at least a byte: a count beyond the data
            // store is a lie, whatever the type.
            if entry.offset > data.len() || entry.count > data.len() - entry.offset {
                return Err(invalid(format!(
                    "tag {} points outside the data",
                    entry.tag
                )));
            }
            index.push(entry);
        }
        Ok(RpmHeader { index, data })
    }

    fn find(&self, tag: u32) -> Option<&IndexEntry> {
        self.index.iter().find(|e| e.tag == tag)
    }

    /// A STRING tag (or the first of an array).
    fn string(&self, tag: u32) -> io::Result<Option<String>> {
        Ok(self
            .strings(tag)?
            .and_then(|v| v.into_iter().next())
            .map(|s| String::from_utf8_lossy(&s).into_owned()))
    }

    /// A STRING, STRING_ARRAY or I18NSTRING tag: NUL-terminated strings.
    fn strings(&self, tag: u32) -> io::Result<Option<Vec<Vec<u8>>>> {
        let Some(e) = self.find(tag) else {
            return Ok(None);
        };
        let count = match e.ty {
            6 => 1,
            8 | 9 => e.count,
            _ => return Err(invalid(format!("tag {tag} is not a string"))),
        };
        let mut rest = &self.data[e.offset..];
        let mut out = Vec::with_capacity(count.min(1024));
        for _ in 0..count {
            let end = rest
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(|| invalid(format!("tag {tag} runs past the data")))?;
            out.push(rest[..end].to_vec());
            rest = &rest[end + 1..];
        }
        Ok(Some(out))
    }

    /// An INT16, INT32 or INT64 array (big-endian).
    fn ints(&self, tag: u32) -> io::Result<Option<Vec<u64>>> {
        let Some(e) = self.find(tag) else {
            return Ok(None);
        };
        let width = match e.ty {
            3 => 2,
            4 => 4,
            5 => 8,
            _ => return Err(invalid(format!("tag {tag} is not an integer"))),
        };
        let bytes = self
            .data
            .get(e.offset..)
            .and_then(|d| d.get(..e.count.checked_mul(width)?))
            .ok_or_else(|| invalid(format!("tag {tag} runs past the data")))?;
        Ok(Some(
            bytes
                .chunks_exact(width)
                .map(|c| c.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b)))
                .collect(),
        ))
    }
}

/// Reads exactly `n` bytes, growing the buffer only as data arrives (a
/// truncated file claiming 256 MiB allocates what it has).
fn read_exactly(r: &mut impl Read, n: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    r.take(n).read_to_end(&mut buf)?;
    if (buf.len() as u64) < n {
        return Err(truncated());
    }
    Ok(buf)
}

fn truncated() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "rpm is truncated")
}

#[cfg(test)]
mod tests;

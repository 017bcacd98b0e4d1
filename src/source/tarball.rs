//! Tarball input: one pass over the (decompressed) archive. File contents are
//! copied to an unnamed spool file so layers can later be written in any
//! order without reading the input again.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use tar::EntryType;

use super::acl::{self, AclError};
use super::catalog::Catalog;
use super::decompress::{self, Codec};
use super::pax::{self, Pax};
use super::sparse::{self, Sparse};
use super::spool::Spool;
use super::{
    Device, Entry, Inode, Meta, OnBytes, Rootfs, ScanOptions, SourceError, Stored, Warn, path,
};

/// Header data (pax records, GNU long names, old GNU sparse maps) one entry
/// may carry. Real ones are a few hundred bytes; a bigger one is hostile or
/// broken.
const MAX_HEADER_BYTES: u64 = 1 << 20;
const TOO_BIG: &str = "the archive decompresses to more than --max-size";

/// Limits on the decompressed stream, checked as it is read.
struct Guard {
    /// Most bytes the archive may decompress to (--max-size), sparse files
    /// counted at their full size.
    max_total: u64,
    total: Cell<u64>,
    /// The holes of sparse files so far: bytes the spool gets that the
    /// stream does not carry.
    holes: Cell<u64>,
    /// Bytes read since the last entry that were not file content.
    header: Cell<u64>,
    in_content: Cell<bool>,
    tripped: Cell<Option<&'static str>>,
}

impl Guard {
    fn check(&self, n: usize) -> io::Result<()> {
        let total = self.total.get() + n as u64;
        self.total.set(total);
        if total.saturating_add(self.holes.get()) > self.max_total {
            return Err(self.trip(TOO_BIG));
        }
        if !self.in_content.get() {
            let header = self.header.get() + n as u64;
            self.header.set(header);
            if header > MAX_HEADER_BYTES {
                return Err(self.trip(
                    "an entry carries over 1 MiB of header data (pax or long-name records)",
                ));
            }
        }
        Ok(())
    }

    /// Counts `n` bytes of holes a sparse file is about to expand to.
    fn expand(&self, n: u64) -> io::Result<()> {
        let holes = self.holes.get().saturating_add(n);
        self.holes.set(holes);
        if self.total.get().saturating_add(holes) > self.max_total {
            return Err(self.trip(TOO_BIG));
        }
        Ok(())
    }

    fn trip(&self, why: &'static str) -> io::Error {
        self.tripped.set(Some(why));
        io::Error::other(why)
    }
}

pub fn scan(
    input: &Path,
    opts: &ScanOptions,
    progress: OnBytes<'_>,
    warn: Warn<'_>,
) -> Result<Rootfs, SourceError> {
    let file = File::open(input).map_err(|e| SourceError::new(input, e.to_string()))?;
    let mut raw = BufReader::with_capacity(1 << 20, Counting::new(file, progress));
    let head = raw
        .fill_buf()
        .map_err(|e| SourceError::new(input, e.to_string()))?;
    if head.is_empty() {
        return Err(SourceError::new(input, "empty file, not a tarball"));
    }
    let format = decompress::detect(head);
    let stream =
        decompress::decoder(format, raw).map_err(|e| SourceError::new(input, e.to_string()))?;
    let guard = Guard {
        max_total: opts.max_size,
        total: Cell::new(0),
        holes: Cell::new(0),
        header: Cell::new(0),
        in_content: Cell::new(false),
        tripped: Cell::new(None),
    };
    let stream = Guarded {
        inner: BufReader::with_capacity(1 << 20, stream),
        guard: &guard,
    };

    let spool = tempfile::tempfile_in(&opts.tmpdir).map_err(|e| {
        SourceError::new(
            &opts.tmpdir,
            format!("cannot create a temporary file here: {e}"),
        )
    })?;
    let mut reader = Reader {
        input,
        format,
        opts,
        guard: &guard,
        catalog: Catalog::new(input),
        spool: Spool::new(spool, opts.hash),
        dropped_acls: 0,
        first_dropped: None,
    };
    let read = reader.read_archive(stream).and_then(|s| reader.drain(s));
    // Always wait for the writer; a read error is reported before its own.
    let written = reader.spool.finish();
    read?;
    let (spool, digests) = written
        .map_err(|e| SourceError::new(&opts.tmpdir, format!("writing the spool file: {e}")))?;
    for (inode, digest) in digests {
        reader.catalog.set_digest(inode, digest);
    }
    if let Some((path, why)) = &reader.first_dropped {
        let more = match reader.dropped_acls - 1 {
            0 => String::new(),
            n => format!(" (and {n} more)"),
        };
        warn(format!(
            "{}: POSIX ACLs left out of the image: {}: {why}{more}",
            input.display(),
            path::display(path),
        ));
    }
    reader.catalog.finish(Some(spool))
}

struct Reader<'a> {
    input: &'a Path,
    format: Codec,
    opts: &'a ScanOptions,
    guard: &'a Guard,
    catalog: Catalog,
    spool: Spool,
    /// ACLs that could not be converted, and the first (path, why):
    /// reported once.
    dropped_acls: u64,
    first_dropped: Option<(Vec<u8>, String)>,
}

impl<'a> Reader<'a> {
    fn corrupt(&self, e: impl std::fmt::Display) -> SourceError {
        if let Some(why) = self.guard.tripped.get() {
            return SourceError::new(self.input, why);
        }
        let what = match self.format {
            Codec::Tar => "tar archive".to_string(),
            f => format!("{}-compressed tar archive", f.name()),
        };
        SourceError::new(self.input, format!("corrupt or truncated {what}: {e}"))
    }

    fn read_archive<R: Read>(
        &mut self,
        stream: Guarded<'a, R>,
    ) -> Result<Guarded<'a, R>, SourceError> {
        let mut archive = tar::Archive::new(stream);
        let mut end_of_last = 0u64;
        let mut count = 0u64;
        {
            let entries = archive.entries().map_err(|e| self.corrupt(e))?;
            for entry in entries {
                let mut entry = entry.map_err(|e| self.corrupt(e))?;
                self.guard.header.set(0);
                count += 1;
                // Headers (old GNU sparse maps included) are read by now.
                let data_start = self.guard.total.get();
                let spooled = self.add(&mut entry)?;
                // A sparse file's size is not what the archive stores: for
                // files, what was read is.
                let stored = if spooled {
                    self.guard.total.get() - data_start
                } else {
                    entry.size()
                };
                end_of_last = data_start.saturating_add(stored.div_ceil(512).saturating_mul(512));
            }
        }
        let stream = archive.into_inner();
        // tar stops quietly at end of input; only the end-of-archive block
        // proves the archive was not cut at an entry boundary.
        if self.guard.total.get() < end_of_last + 512 {
            return Err(self.corrupt("archive ends without its end-of-archive marker"));
        }
        if count == 0 {
            return Err(SourceError::new(self.input, "the archive has no entries"));
        }
        Ok(stream)
    }

    /// Reads the rest of the stream so that the decompressor checks its
    /// trailer (CRC, size) too.
    fn drain<R: Read>(&self, mut stream: R) -> Result<(), SourceError> {
        io::copy(&mut stream, &mut io::sink()).map_err(|e| self.corrupt(e))?;
        Ok(())
    }

    /// Adds one entry; returns whether its content was read (spooled).
    fn add<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<bool, SourceError> {
        let kind = entry.header().entry_type();
        if kind == EntryType::XGlobalHeader {
            return Ok(false);
        }
        let pax = pax::read(entry);
        // Sparse 0.1 and 1.0 members carry a made-up name in the header.
        let sparse_name = pax.as_ref().ok().and_then(|p| p.sparse.name());
        let raw_path = match sparse_name {
            Some(name) => name.to_vec(),
            None => entry.path_bytes().into_owned(),
        };
        let path = path::normalize(&raw_path).map_err(|e| {
            SourceError::new(
                self.input,
                format!("entry '{}': {e}", String::from_utf8_lossy(&raw_path)),
            )
        })?;
        let at = |reason: String| SourceError::at(self.input, &path, reason);
        let pax = pax.map_err(|e| at(format!("bad header: {e}")))?;
        let mut meta = meta(entry.header(), &pax).map_err(|e| at(format!("bad header: {e}")))?;
        self.acls(&pax, kind, &path, &mut meta.xattrs).map_err(at)?;
        meta.xattrs.sort();
        meta.xattrs.dedup_by(|a, b| a.0 == b.0);
        let sparse = pax
            .sparse
            .resolve()
            .map_err(|e| at(format!("bad sparse header: {e}")))?;
        if sparse.is_some() && !matches!(kind, EntryType::Regular | EntryType::Continuous) {
            return Err(at(
                "GNU.sparse records on an entry that is not a regular file".into(),
            ));
        }
        let entry_val = match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let (size, offset) = self.spool_content(entry, sparse).map_err(|e| match e {
                    SpoolError::Read(e) => self.corrupt(format!("{}: {e}", path::display(&path))),
                    SpoolError::Write(e) => {
                        SourceError::new(&self.opts.tmpdir, format!("writing the spool file: {e}"))
                    }
                    SpoolError::Bad(why) => at(why),
                })?;
                let inode = self.catalog.add_inode(Inode {
                    meta,
                    size,
                    content: Stored::Spool(offset),
                    digest: None,
                });
                self.spool.end_file(inode);
                self.catalog.insert(path, Entry::File(inode))?;
                return Ok(true);
            }
            EntryType::Link => {
                let raw = entry.link_name_bytes().unwrap_or_default().into_owned();
                if raw.len() > path::MAX_PATH {
                    return Err(at("hardlink target is longer than 4096 bytes".into()));
                }
                let target = path::normalize(&raw)
                    .map_err(|e| at(format!("hardlink target '{}': {e}", lossy(&raw))))?;
                self.catalog.link(path, &target)?;
                return Ok(false);
            }
            EntryType::Symlink => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                if target.is_empty() {
                    return Err(at("symlink with an empty target".into()));
                }
                if target.len() > path::MAX_PATH {
                    return Err(at("symlink target is longer than 4096 bytes".into()));
                }
                Entry::Symlink { meta, target }
            }
            EntryType::Char | EntryType::Block => {
                let h = entry.header();
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                let kind = if kind == EntryType::Char {
                    Device::Char
                } else {
                    Device::Block
                };
                Entry::Device {
                    meta,
                    kind,
                    major,
                    minor,
                }
            }
            EntryType::Directory => Entry::Dir(meta),
            EntryType::Fifo => Entry::Fifo(meta),
            other => {
                return Err(at(format!(
                    "unsupported tar entry type '{}'",
                    char::from(other.as_byte()).escape_default()
                )));
            }
        };
        self.catalog.insert(path, entry_val)?;
        Ok(false)
    }

    /// Converts bsdtar's textual ACLs to the xattrs Linux keeps them in; one
    /// that names a user or group without an id is left out and reported.
    fn acls(
        &mut self,
        pax: &Pax,
        entry: EntryType,
        path: &[u8],
        xattrs: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), String> {
        if pax.acl_nfs4 {
            self.drop_acl(path, || {
                "an NFSv4 ACL (SCHILY.acl.ace), which Linux files can't carry".into()
            });
        }
        let texts = [
            (&pax.acl_access, acl::Kind::Access, "SCHILY.acl.access"),
            (&pax.acl_default, acl::Kind::Default, "SCHILY.acl.default"),
        ];
        for (text, kind, key) in texts {
            let Some(text) = text else { continue };
            // What Linux can set: no ACL on a symlink, a default one only
            // on a directory.
            if entry == EntryType::Symlink
                || (kind == acl::Kind::Default && entry != EntryType::Directory)
            {
                return Err(format!("{key} on an entry that can't carry it"));
            }
            // GNU tar --xattrs stores the same ACL as this xattr already.
            if xattrs.iter().any(|(name, _)| name == kind.xattr()) {
                continue;
            }
            match acl::to_xattr(text, kind) {
                Ok(Some(value)) => xattrs.push((kind.xattr().to_vec(), value)),
                Ok(None) => {}
                Err(AclError::NameOnly(e)) => self.drop_acl(path, || {
                    format!("{key} entry '{e}' names a user or group without a numeric id")
                }),
                Err(AclError::Bad(why)) => return Err(format!("bad {key}: the ACL {why}")),
            }
        }
        Ok(())
    }

    fn drop_acl(&mut self, path: &[u8], why: impl FnOnce() -> String) {
        self.dropped_acls += 1;
        if self.first_dropped.is_none() {
            self.first_dropped = Some((path.to_vec(), why()));
        }
    }

    /// Hands a file's content to the spool, sparse files expanded; returns
    /// its size and offset.
    fn spool_content<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        sparse: Option<Sparse>,
    ) -> Result<(u64, u64), SpoolError> {
        let offset = self.spool.offset;
        self.guard.in_content.set(true);
        let result = self.copy_content(entry, sparse);
        self.guard.in_content.set(false);
        let (size, expected) = result?;
        if size != expected {
            return Err(SpoolError::Read(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("content ends after {size} of {expected} bytes"),
            )));
        }
        Ok((size, offset))
    }

    /// Returns the bytes spooled and the bytes there should be.
    fn copy_content<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        sparse: Option<Sparse>,
    ) -> Result<(u64, u64), SpoolError> {
        let size = entry.size();
        let Some(sparse) = sparse else {
            if entry.header().entry_type() == EntryType::GNUSparse {
                // Old GNU: the tar crate expands it; `size` is the real one.
                let stored = entry.header().entry_size().unwrap_or(size);
                self.guard
                    .expand(size.saturating_sub(stored))
                    .map_err(SpoolError::Read)?;
            }
            return Ok((self.spool_from(entry, size)?, size));
        };
        let (map, map_bytes) = match sparse.map {
            Some(map) => (map, 0),
            None => sparse::read_map(entry, size).map_err(|e| match e {
                sparse::MapError::Io(e) => SpoolError::Read(e),
                sparse::MapError::Bad(why) => SpoolError::Bad(why),
            })?,
        };
        let data = size.saturating_sub(map_bytes);
        sparse::check(&map, sparse.real_size, data).map_err(SpoolError::Bad)?;
        self.guard
            .expand(sparse.real_size.saturating_sub(data))
            .map_err(SpoolError::Read)?;
        let mut expanded = sparse::Expand::new(entry, map, sparse.real_size);
        let n = self.spool_from(&mut expanded, sparse.real_size)?;
        Ok((n, sparse.real_size))
    }

    fn spool_from(&mut self, r: &mut impl Read, size: u64) -> Result<u64, SpoolError> {
        match self.spool.copy(r, size) {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(read)) => Err(SpoolError::Read(read)),
            Err(write) => Err(SpoolError::Write(write)),
        }
    }
}

/// An entry's metadata: its header, overridden by its pax records.
fn meta(h: &tar::Header, pax: &Pax) -> io::Result<Meta> {
    let uid = match pax.uid {
        Some(id) => id,
        None => header_id("uid", &h.as_old().uid, h.uid())?,
    };
    let gid = match pax.gid {
        Some(id) => id,
        None => header_id("gid", &h.as_old().gid, h.gid())?,
    };
    let mtime = i64::try_from(h.mtime()?).unwrap_or(i64::MAX);
    Ok(Meta {
        mode: h.mode()? & 0o7777,
        uid: uid.into(),
        gid: gid.into(),
        mtime: pax.mtime.unwrap_or(mtime),
        xattrs: pax.xattrs.clone(),
    })
}

/// An owner id from its header field (octal, or GNU base-256 with the top
/// bit set, where 0xff first means a negative number).
fn header_id(what: &str, field: &[u8; 8], value: io::Result<u64>) -> io::Result<u32> {
    if field[0] == 0xff {
        let n = i64::from_be_bytes(*field);
        return Err(pax::out_of_range(what, &n.to_string()));
    }
    pax::check_id(what, value?)
}

enum SpoolError {
    Read(io::Error),
    Write(io::Error),
    /// The archive is readable but describes something wrong.
    Bad(String),
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The decompressed stream, read through the [`Guard`].
struct Guarded<'a, R> {
    inner: R,
    guard: &'a Guard,
}

impl<R: Read> Read for Guarded<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.guard.check(n)?;
        Ok(n)
    }
}

/// Counts bytes read of the input file, for progress.
struct Counting<'a, R> {
    inner: R,
    count: u64,
    progress: OnBytes<'a>,
}

impl<'a, R> Counting<'a, R> {
    fn new(inner: R, progress: OnBytes<'a>) -> Self {
        Counting {
            inner,
            count: 0,
            progress,
        }
    }
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        (self.progress)(self.count);
        Ok(n)
    }
}

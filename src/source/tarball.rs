//! Tarball input: one pass over the (decompressed) archive, read by
//! [`tarread`]. File contents are copied to an unnamed spool file so layers
//! can later be written in any order without reading the input again.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use super::acl::{self, AclError};
use super::catalog::Catalog;
use super::decompress::{self, Codec};
use super::pax::{self, Pax};
use super::sparse::{self, Sparse};
use super::spool::Spool;
use super::tarread::{Archive, Header, Kind, Member, TarError};
use super::{
    Device, Entry, Inode, Meta, OnBytes, Rootfs, ScanOptions, SourceError, Stored, Warn, path,
};

const TOO_BIG: &str = "the archive decompresses to more than --max-size";

/// The --max-size limit on the decompressed stream, checked as it is read.
struct Guard {
    /// Most bytes the archive may decompress to, sparse files counted at
    /// their full size.
    max_total: u64,
    total: Cell<u64>,
    /// The holes of sparse files so far: bytes the spool gets that the
    /// stream does not carry.
    holes: Cell<u64>,
    tripped: Cell<Option<&'static str>>,
}

impl Guard {
    fn check(&self, n: usize) -> io::Result<()> {
        let total = self.total.get() + n as u64;
        self.total.set(total);
        if total.saturating_add(self.holes.get()) > self.max_total {
            return Err(self.trip(TOO_BIG));
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

    /// What the reader found wrong, as the scan reports it.
    fn tar_error(&self, e: TarError) -> SourceError {
        match e {
            TarError::Io(e) => self.corrupt(e),
            TarError::Corrupt(why) => self.corrupt(why),
            TarError::Limit(why) => SourceError::new(self.input, why),
        }
    }

    fn read_archive<R: Read>(
        &mut self,
        stream: Guarded<'a, R>,
    ) -> Result<Guarded<'a, R>, SourceError> {
        let mut archive = Archive::new(stream);
        let mut count = 0u64;
        while let Some(member) = archive.next().map_err(|e| self.tar_error(e))? {
            count += 1;
            self.add(&mut archive, member)?;
        }
        if count == 0 {
            return Err(SourceError::new(self.input, "the archive has no entries"));
        }
        Ok(archive.into_inner())
    }

    /// Reads the rest of the stream so that the decompressor checks its
    /// trailer (CRC, size) too.
    fn drain<R: Read>(&self, mut stream: R) -> Result<(), SourceError> {
        io::copy(&mut stream, &mut io::sink()).map_err(|e| self.corrupt(e))?;
        Ok(())
    }

    /// Adds one member, reading its content if it is a file.
    fn add<R: Read>(
        &mut self,
        archive: &mut Archive<R>,
        member: Member,
    ) -> Result<(), SourceError> {
        let Member {
            header,
            kind,
            path: raw_path,
            link,
            size,
            pax,
            old_sparse,
        } = member;
        let pax = pax::read(pax.iter());
        // Sparse 0.1 and 1.0 members carry a made-up name in the header.
        let raw_path = match pax.as_ref().ok().and_then(|p| p.sparse.name()) {
            Some(name) => name.to_vec(),
            None => raw_path,
        };
        let path = path::normalize(&raw_path).map_err(|e| {
            SourceError::new(self.input, format!("entry '{}': {e}", path::raw(&raw_path)))
        })?;
        let at = |reason: String| SourceError::at(self.input, &path, reason);
        let pax = pax.map_err(|e| at(format!("bad header: {e}")))?;
        let mut meta = meta(&header, &pax).map_err(|e| at(format!("bad header: {e}")))?;
        self.acls(&pax, kind, &path, &mut meta.xattrs).map_err(at)?;
        // A name given twice keeps its last value, as extraction would set
        // it: reversed, a stable sort puts the last one first, and dedup
        // keeps the first of each run.
        meta.xattrs.reverse();
        meta.xattrs.sort_by(|a, b| a.0.cmp(&b.0));
        meta.xattrs.dedup_by(|a, b| a.0 == b.0);
        let sparse = match pax
            .sparse
            .resolve()
            .map_err(|e| at(format!("bad sparse header: {e}")))?
        {
            Some(_) if kind != Kind::File => {
                return Err(at(
                    "GNU.sparse records on an entry that is not a regular file".into(),
                ));
            }
            Some(s) => Some(s),
            None => old_sparse.map(|old| Sparse {
                real_size: old.real_size,
                map: Some(old.map),
            }),
        };
        let entry = match kind {
            Kind::File | Kind::OldSparse => {
                let (size, offset) = self
                    .spool_content(&mut archive.data(), size, sparse)
                    .map_err(|e| match e {
                        SpoolError::Read(e) => {
                            self.corrupt(format!("{}: {e}", path::display(&path)))
                        }
                        SpoolError::Write(e) => SourceError::new(
                            &self.opts.tmpdir,
                            format!("writing the spool file: {e}"),
                        ),
                        SpoolError::Bad(why) => at(why),
                    })?;
                let inode = self.catalog.add_inode(Inode {
                    meta,
                    size,
                    content: Stored::Spool(offset),
                    digest: None,
                });
                self.spool.end_file(inode);
                Entry::File(inode)
            }
            Kind::HardLink => {
                if link.len() > path::MAX_PATH {
                    return Err(at("hardlink target is longer than 4096 bytes".into()));
                }
                let target = path::normalize(&link)
                    .map_err(|e| at(format!("hardlink target '{}': {e}", path::raw(&link))))?;
                return self.catalog.link(path, &target);
            }
            Kind::Symlink => {
                if link.is_empty() {
                    return Err(at("symlink with an empty target".into()));
                }
                if link.len() > path::MAX_PATH {
                    return Err(at("symlink target is longer than 4096 bytes".into()));
                }
                // Only a pax linkpath can hold one; no filesystem can.
                if link.contains(&0) {
                    return Err(at("symlink target contains a NUL byte".into()));
                }
                Entry::Symlink { meta, target: link }
            }
            Kind::Char | Kind::Block => {
                let (major, minor) = header
                    .device()
                    .map_err(|e| at(format!("bad header: {e}")))?;
                let kind = if kind == Kind::Char {
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
            Kind::Dir => Entry::Dir(meta),
            Kind::Fifo => Entry::Fifo(meta),
            Kind::Other(flag) => {
                return Err(at(format!(
                    "unsupported tar entry type '{}'",
                    char::from(flag).escape_default()
                )));
            }
        };
        self.catalog.insert(path, entry)
    }

    /// Converts bsdtar's textual ACLs to the xattrs Linux keeps them in; one
    /// that names a user or group without an id is left out and reported.
    fn acls(
        &mut self,
        pax: &Pax,
        entry: Kind,
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
            if entry == Kind::Symlink || (kind == acl::Kind::Default && entry != Kind::Dir) {
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

    /// Hands a file's content (`stored` bytes in the archive) to the spool,
    /// sparse files expanded; returns its size and offset.
    fn spool_content(
        &mut self,
        data: &mut impl Read,
        stored: u64,
        sparse: Option<Sparse>,
    ) -> Result<(u64, u64), SpoolError> {
        let offset = self.spool.offset;
        let (size, expected) = self.copy_content(data, stored, sparse)?;
        if size != expected {
            return Err(SpoolError::Read(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("content ends after {size} of {expected} bytes"),
            )));
        }
        Ok((size, offset))
    }

    /// Returns the bytes spooled and the bytes there should be.
    fn copy_content(
        &mut self,
        data: &mut impl Read,
        stored: u64,
        sparse: Option<Sparse>,
    ) -> Result<(u64, u64), SpoolError> {
        let Some(sparse) = sparse else {
            return Ok((self.spool_from(data, stored)?, stored));
        };
        let (map, map_bytes) = match sparse.map {
            Some(map) => (map, 0),
            None => sparse::read_map(data, stored).map_err(|e| match e {
                sparse::MapError::Io(e) => SpoolError::Read(e),
                sparse::MapError::Bad(why) => SpoolError::Bad(why),
            })?,
        };
        let in_archive = stored.saturating_sub(map_bytes);
        sparse::check(&map, sparse.real_size, in_archive).map_err(SpoolError::Bad)?;
        self.guard
            .expand(sparse.real_size.saturating_sub(in_archive))
            .map_err(SpoolError::Read)?;
        let mut expanded = sparse::Expand::new(data, map, sparse.real_size);
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
fn meta(h: &Header, pax: &Pax) -> Result<Meta, String> {
    let uid = match pax.uid {
        Some(id) => id,
        None => header_id("uid", h.uid()?)?,
    };
    let gid = match pax.gid {
        Some(id) => id,
        None => header_id("gid", h.gid()?)?,
    };
    let mtime = match pax.mtime {
        Some(t) => t,
        // Beyond i64 only in base-256; saturate, as clamping will anyway.
        None => {
            let t = h.mtime()?;
            i64::try_from(t).unwrap_or(if t < 0 { i64::MIN } else { i64::MAX })
        }
    };
    let mode = h.mode()?;
    let mode = u64::try_from(mode).map_err(|_| format!("mode {mode} is out of range"))?;
    Ok(Meta {
        mode: (mode & 0o7777) as u32,
        uid: uid.into(),
        gid: gid.into(),
        mtime,
        xattrs: pax.xattrs.clone(),
    })
}

/// An owner id from its header field (GNU base-256 may make it negative).
fn header_id(what: &str, n: i128) -> Result<u32, String> {
    let n = u64::try_from(n).map_err(|_| pax::out_of_range(what, &n.to_string()))?;
    pax::check_id(what, n)
}

enum SpoolError {
    Read(io::Error),
    Write(io::Error),
    /// The archive is readable but describes something wrong.
    Bad(String),
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

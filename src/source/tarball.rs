//! Tarball input: one pass over the (decompressed) archive. File contents are
//! copied to an unnamed spool file so layers can later be written in any
//! order without reading the input again.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};
use tar::EntryType;

use super::catalog::Catalog;
use super::decompress::{self, Format};
use super::{Content, Device, Entry, Error, Inode, Meta, Progress, Rootfs, ScanOptions, path};

const XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";

pub fn scan(input: &Path, opts: &ScanOptions, progress: Progress<'_>) -> Result<Rootfs, Error> {
    let file = File::open(input).map_err(|e| Error::new(input, e.to_string()))?;
    let mut raw = BufReader::with_capacity(1 << 20, Counting::new(file, progress));
    let head = raw
        .fill_buf()
        .map_err(|e| Error::new(input, e.to_string()))?;
    if head.is_empty() {
        return Err(Error::new(input, "empty file, not a tarball"));
    }
    let format = decompress::detect(head);
    let stream = decompress::decoder(format, raw).map_err(|e| Error::new(input, e.to_string()))?;
    let stream = Counting::new(BufReader::with_capacity(1 << 20, stream), &ignore);

    let spool = tempfile::tempfile_in(&opts.tmpdir).map_err(|e| {
        Error::new(
            &opts.tmpdir,
            format!("cannot create a temporary file here: {e}"),
        )
    })?;
    let mut reader = Reader {
        input,
        format,
        opts,
        catalog: Catalog::new(input),
        spool: BufWriter::with_capacity(1 << 20, spool),
        spooled: 0,
        buf: vec![0; 1 << 18],
    };
    let stream = reader.read_archive(stream)?;
    reader.drain(stream)?;
    let spool = reader
        .spool
        .into_inner()
        .map_err(|e| Error::new(&opts.tmpdir, format!("writing the spool file: {e}")))?;
    reader.catalog.finish(Some(spool))
}

struct Reader<'a> {
    input: &'a Path,
    format: Format,
    opts: &'a ScanOptions,
    catalog: Catalog,
    spool: BufWriter<File>,
    spooled: u64,
    buf: Vec<u8>,
}

impl<'a> Reader<'a> {
    fn corrupt(&self, e: impl std::fmt::Display) -> Error {
        let what = match self.format {
            Format::Tar => "tar archive".to_string(),
            f => format!("{}-compressed tar archive", f.name()),
        };
        Error::new(self.input, format!("corrupt or truncated {what}: {e}"))
    }

    fn read_archive<R: Read>(&mut self, stream: Counting<'a, R>) -> Result<Counting<'a, R>, Error> {
        let mut archive = tar::Archive::new(stream);
        let mut end_of_last = 0u64;
        let mut count = 0u64;
        {
            let entries = archive.entries().map_err(|e| self.corrupt(e))?;
            for entry in entries {
                let mut entry = entry.map_err(|e| self.corrupt(e))?;
                count += 1;
                end_of_last = entry.raw_file_position() + entry.size().div_ceil(512) * 512;
                self.add(&mut entry)?;
            }
        }
        let stream = archive.into_inner();
        // tar stops quietly at end of input; only the end-of-archive block
        // proves the archive was not cut at an entry boundary.
        if stream.count < end_of_last + 512 {
            return Err(self.corrupt("archive ends without its end-of-archive marker"));
        }
        if count == 0 {
            return Err(Error::new(self.input, "the archive has no entries"));
        }
        Ok(stream)
    }

    /// Reads the rest of the stream so that the decompressor checks its
    /// trailer (CRC, size) too.
    fn drain<R: Read>(&self, mut stream: R) -> Result<(), Error> {
        io::copy(&mut stream, &mut io::sink()).map_err(|e| self.corrupt(e))?;
        Ok(())
    }

    fn add<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), Error> {
        let raw_path = entry.path_bytes().into_owned();
        let path = path::normalize(&raw_path).map_err(|e| {
            Error::new(
                self.input,
                format!("entry '{}': {e}", String::from_utf8_lossy(&raw_path)),
            )
        })?;
        let at = |reason: String| Error::at(self.input, &path, reason);
        let kind = entry.header().entry_type();
        if kind == EntryType::XGlobalHeader {
            return Ok(());
        }
        let meta = self
            .meta(entry)
            .map_err(|e| at(format!("bad header: {e}")))?;
        let entry_val = match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let (size, digest, offset) = self.spool_content(entry).map_err(|e| match e {
                    SpoolError::Read(e) => self.corrupt(format!("{}: {e}", path::display(&path))),
                    SpoolError::Write(e) => {
                        Error::new(&self.opts.tmpdir, format!("writing the spool file: {e}"))
                    }
                })?;
                Entry::File(self.catalog.add_inode(Inode {
                    meta,
                    size,
                    content: Content::Spool(offset),
                    digest,
                }))
            }
            EntryType::Link => {
                let raw = entry.link_name_bytes().unwrap_or_default().into_owned();
                let target = path::normalize(&raw)
                    .map_err(|e| at(format!("hardlink target '{}': {e}", lossy(&raw))))?;
                return self.catalog.link(path, &target);
            }
            EntryType::Symlink => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                if target.is_empty() {
                    return Err(at("symlink with an empty target".into()));
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
        self.catalog.insert(path, entry_val)
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>) -> io::Result<Meta> {
        let h = entry.header();
        let mut meta = Meta {
            mode: h.mode()? & 0o7777,
            uid: h.uid()?,
            gid: h.gid()?,
            mtime: i64::try_from(h.mtime()?).unwrap_or(i64::MAX),
            xattrs: Vec::new(),
        };
        if let Some(pax) = entry.pax_extensions()? {
            for rec in pax {
                let rec = rec?;
                let key = rec.key_bytes();
                if let Some(name) = key.strip_prefix(XATTR_PREFIX) {
                    meta.xattrs
                        .push((name.to_vec(), rec.value_bytes().to_vec()));
                } else if key == b"mtime" {
                    // PAX times may carry a fraction: "1520598896.123".
                    let v = rec.value_bytes();
                    let secs = v.split(|&b| b == b'.').next().unwrap_or(b"");
                    if let Some(t) = std::str::from_utf8(secs).ok().and_then(|s| s.parse().ok()) {
                        meta.mtime = t;
                    }
                }
            }
        }
        meta.xattrs.sort();
        meta.xattrs.dedup_by(|a, b| a.0 == b.0);
        Ok(meta)
    }

    fn spool_content<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<(u64, Option<[u8; 32]>, u64), SpoolError> {
        let offset = self.spooled;
        let mut hasher = self.opts.hash.then(Sha256::new);
        let mut size = 0u64;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(SpoolError::Read(e)),
            };
            let chunk = &self.buf[..n];
            if let Some(h) = hasher.as_mut() {
                h.update(chunk);
            }
            self.spool.write_all(chunk).map_err(SpoolError::Write)?;
            size += n as u64;
        }
        let expected = entry.size();
        if size != expected && entry.header().entry_type() != EntryType::GNUSparse {
            return Err(SpoolError::Read(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("content ends after {size} of {expected} bytes"),
            )));
        }
        self.spooled += size;
        Ok((size, hasher.map(|h| h.finalize().into()), offset))
    }
}

enum SpoolError {
    Read(io::Error),
    Write(io::Error),
}

fn ignore(_: u64) {}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Counts bytes read (for progress and for the end-of-archive check).
struct Counting<'a, R> {
    inner: R,
    count: u64,
    progress: Progress<'a>,
}

impl<'a, R> Counting<'a, R> {
    fn new(inner: R, progress: Progress<'a>) -> Self {
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

//! A blob: content-addressed bytes with the descriptor fields that name
//! them, and where to read them from. Layers just written, cached layers,
//! JSON documents and members of an archive read back are all one type, so
//! every sink takes any of them.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::digest::Digest;
use super::docs::Descriptor;

#[derive(Clone)]
pub struct Blob {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    pub source: Source,
}

/// Where a blob's bytes are.
#[derive(Clone)]
pub enum Source {
    /// In memory (JSON documents).
    Bytes(Arc<[u8]>),
    /// An unnamed temporary file (a layer just written).
    Temp(Arc<File>),
    /// A whole file (a cache entry, a layout directory's blob).
    File(PathBuf),
    /// `size` bytes at `offset` in a file (a member of an archive).
    Range { file: PathBuf, offset: u64 },
}

impl Blob {
    /// A JSON document (or any bytes) held in memory.
    pub fn bytes(media_type: &str, data: Vec<u8>) -> Blob {
        Blob {
            digest: Digest::of(&data),
            size: data.len() as u64,
            media_type: media_type.to_string(),
            source: Source::Bytes(data.into()),
        }
    }

    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(&self.media_type, self.digest, self.size)
    }

    /// The bytes of a blob held in memory; `None` for file-backed ones.
    pub fn in_memory(&self) -> Option<&[u8]> {
        match &self.source {
            Source::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// A reader from `offset` bytes into the blob to its recorded end.
    pub fn open_at(&self, offset: u64) -> io::Result<Box<dyn Read + Send + '_>> {
        self.source.open_at(offset, self.size)
    }

    pub fn reader(&self) -> io::Result<Box<dyn Read + Send + '_>> {
        self.open_at(0)
    }

    /// Puts the blob at `dest` (a new path): a hard link to a file where
    /// one can be made, else a copy. Fails if the result is not `size`
    /// bytes long.
    pub fn place(&self, dest: &Path) -> io::Result<()> {
        match &self.source {
            Source::Temp(f) => crate::atomic::link_or_copy(f, dest)?,
            Source::File(p) => crate::atomic::link_or_copy(&File::open(p)?, dest)?,
            Source::Bytes(_) | Source::Range { .. } => {
                let mut out = File::create_new(dest)?;
                io::copy(&mut self.reader()?, &mut out)?;
            }
        }
        let n = std::fs::metadata(dest)?.len();
        if n != self.size {
            return Err(io::Error::other(format!(
                "blob {} is {n} bytes, expected {}",
                self.digest, self.size
            )));
        }
        Ok(())
    }
}

impl Source {
    /// A reader from `offset` bytes into `size` bytes of content.
    pub fn open_at(&self, offset: u64, size: u64) -> io::Result<Box<dyn Read + Send + '_>> {
        let offset = offset.min(size);
        let left = size - offset;
        Ok(match self {
            Source::Bytes(b) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(b.len());
                Box::new(&b[start..])
            }
            Source::Temp(f) => Box::new(
                AtReader {
                    file: f,
                    pos: offset,
                }
                .take(left),
            ),
            Source::File(p) => {
                let mut f = File::open(p)?;
                f.seek(SeekFrom::Start(offset))?;
                Box::new(f.take(left))
            }
            Source::Range {
                file,
                offset: start,
            } => {
                let mut f = File::open(file)?;
                f.seek(SeekFrom::Start(start + offset))?;
                Box::new(f.take(left))
            }
        })
    }
}

/// Positional reads, so threads reading one file don't share an offset.
struct AtReader<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for AtReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

//! Source: reads a root filesystem (a tarball in any common compression, or a
//! directory) once and returns a [`Rootfs`]: every entry with its metadata,
//! sorted, deduplicated (the last occurrence of a path wins, as extraction
//! does), hardlinks resolved to shared inodes, and a way to reopen each file's
//! content later. It knows nothing about layers.

mod acl;
mod catalog;
pub mod decompress;
mod dir;
pub mod path;
mod pax;
mod sparse;
mod spool;
mod tarball;
mod tarread;

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Index into [`Rootfs::nodes`].
pub type NodeId = usize;
/// Index into [`Rootfs::inodes`].
pub type InodeId = usize;

/// Ownership, permissions and extended attributes of one entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Meta {
    /// Permission bits including setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since the epoch.
    pub mtime: i64,
    /// Sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device {
    Char,
    Block,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir(Meta),
    /// A regular file; all paths sharing an inode are hardlinks of each other.
    File(InodeId),
    Symlink {
        meta: Meta,
        target: Vec<u8>,
    },
    Device {
        meta: Meta,
        kind: Device,
        major: u32,
        minor: u32,
    },
    Fifo(Meta),
}

#[derive(Debug, Clone)]
pub struct Node {
    /// Canonical relative path (see [`path::normalize`]); empty for the root.
    pub path: Vec<u8>,
    pub entry: Entry,
}

/// Where a file's bytes can be read again after the scan.
#[derive(Debug, Clone)]
pub enum Stored {
    /// At an offset in the spool file the scan wrote (tarball input).
    Spool(u64),
    /// At an absolute path on disk (directory input).
    Disk(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Inode {
    pub meta: Meta,
    pub size: u64,
    pub content: Stored,
    /// SHA-256 of the content, when the scan was asked to hash.
    pub digest: Option<[u8; 32]>,
}

/// A scanned root filesystem. `nodes[0]` is the root directory; the rest
/// follow in [`path::cmp`] order.
pub struct Rootfs {
    nodes: Vec<Node>,
    inodes: Vec<Inode>,
    spool: Option<File>,
    origin: PathBuf,
}

/// One error from reading the input: which input, which entry, what is wrong.
#[derive(Debug)]
pub struct SourceError {
    pub input: PathBuf,
    pub entry: Option<String>,
    pub reason: String,
}

impl SourceError {
    pub fn new(input: &Path, reason: impl Into<String>) -> Self {
        SourceError {
            input: input.to_path_buf(),
            entry: None,
            reason: reason.into(),
        }
    }

    pub fn at(input: &Path, entry: &[u8], reason: impl Into<String>) -> Self {
        SourceError {
            input: input.to_path_buf(),
            entry: Some(path::display(entry)),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.input.display())?;
        if let Some(entry) = &self.entry {
            write!(f, ": {entry}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for SourceError {}

/// What the scan should do besides indexing.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Compute the SHA-256 of every file (needed for package matching and the
    /// layer cache; a plain squash build skips it).
    pub hash: bool,
    /// Where the spool of a tarball's file contents goes (same filesystem as
    /// the output is best); the spool is an unnamed file, gone on exit.
    pub tmpdir: PathBuf,
    /// Most bytes a tarball may decompress to: a guard against archives
    /// built to fill the disk.
    pub max_size: u64,
}

/// Called with the number of input bytes consumed so far.
pub type OnBytes<'a> = &'a (dyn Fn(u64) + Sync);
/// Called with a warning about the input (the build decides whether and how
/// to show it).
pub type Warn<'a> = &'a (dyn Fn(String) + Sync);

/// Reads `input` (a directory, or a tarball detected by its magic bytes).
pub fn scan(
    input: &Path,
    opts: &ScanOptions,
    progress: OnBytes<'_>,
    warn: Warn<'_>,
) -> Result<Rootfs, SourceError> {
    let meta = std::fs::metadata(input).map_err(|e| SourceError::new(input, e.to_string()))?;
    if meta.is_dir() {
        dir::scan(input, opts, progress, warn)
    } else {
        tarball::scan(input, opts, progress, warn)
    }
}

impl Rootfs {
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn inode(&self, id: InodeId) -> &Inode {
        &self.inodes[id]
    }

    pub fn inodes(&self) -> &[Inode] {
        &self.inodes
    }

    /// The input this was read from, for messages.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    pub fn meta<'a>(&'a self, node: &'a Node) -> &'a Meta {
        match &node.entry {
            Entry::Dir(m) | Entry::Fifo(m) => m,
            Entry::Symlink { meta, .. } | Entry::Device { meta, .. } => meta,
            Entry::File(ino) => &self.inodes[*ino].meta,
        }
    }

    /// Looks a canonical path up.
    pub fn find(&self, p: &[u8]) -> Option<NodeId> {
        self.nodes.binary_search_by(|n| path::cmp(&n.path, p)).ok()
    }

    /// Total bytes of file content (each inode once).
    pub fn content_bytes(&self) -> u64 {
        self.inodes.iter().map(|i| i.size).sum()
    }

    /// Opens an inode's content for reading. Several threads may read at once.
    pub fn open(&self, id: InodeId) -> io::Result<Box<dyn Read + Send + '_>> {
        let inode = &self.inodes[id];
        match &inode.content {
            Stored::Spool(offset) => {
                let file = self
                    .spool
                    .as_ref()
                    .ok_or_else(|| io::Error::other("spool file missing"))?;
                Ok(Box::new(SpoolReader {
                    file,
                    pos: *offset,
                    left: inode.size,
                }))
            }
            Stored::Disk(p) => {
                let file = File::open(p)?;
                // A file that grew since the scan must not overrun its header;
                // one that shrank is caught by the writer's length check.
                Ok(Box::new(file.take(inode.size)))
            }
        }
    }
}

/// Positional reads from the shared spool file, so readers don't contend for
/// one file offset.
struct SpoolReader<'a> {
    file: &'a File,
    pos: u64,
    left: u64,
}

impl Read for SpoolReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.pos += n as u64;
        self.left -= n as u64;
        Ok(n)
    }
}

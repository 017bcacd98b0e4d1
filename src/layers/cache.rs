//! A content-addressed store of compressed layers, keyed by what the layer
//! holds before compression, so an unchanged package is not compressed
//! again in the next build.
//!
//! Layout: `blobs/sha256/<digest>` and `layers/<key>` (a small JSON record
//! of digest, diff_id, size, media type). Entries are written under
//! temporary names and renamed, so builds sharing the directory never see
//! a partial entry. A record is trusted for nothing it says: before use the
//! blob is read whole and decompressed, and its digest, size and diff_id
//! must all match the record, else the layer is rebuilt.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{Compression, Layer, Settings};
use crate::atomic::AtomicFile;
use crate::oci::{Blob, Digest, Source, hex};
use crate::plan::LayerPlan;
use crate::source::{Device, Entry, Rootfs};

/// Bumped whenever the bytes written for the same entries change (tar
/// layout, block sizes, compressor pinning), so old entries are not reused.
const FORMAT: &str = "rustimage-layer-v2";

pub struct Cache {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Record {
    digest: String,
    diff_id: String,
    size: u64,
    media_type: String,
}

impl Cache {
    pub fn open(dir: &Path) -> io::Result<Cache> {
        fs::create_dir_all(dir.join("blobs/sha256"))?;
        fs::create_dir_all(dir.join("layers"))?;
        fs::create_dir_all(dir.join("packages"))?;
        Ok(Cache {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(digest.hex())
    }

    /// The cached layer for `key`, if present and intact.
    pub fn get(&self, key: &str, compression: Compression) -> Option<Layer> {
        let text = fs::read(self.dir.join("layers").join(key)).ok()?;
        let rec: Record = serde_json::from_slice(&text).ok()?;
        if rec.media_type != compression.media_type() {
            return None;
        }
        let digest = Digest::parse(&rec.digest).ok()?;
        let diff_id = Digest::parse(&rec.diff_id).ok()?;
        let path = self.blob_path(&digest);
        let found = check_blob(&path, compression).ok()?;
        if found != (digest, rec.size, diff_id) {
            // Damaged, edited or half-copied by hand: rebuild and overwrite.
            return None;
        }
        Some(Layer {
            blob: Blob {
                digest,
                size: rec.size,
                media_type: rec.media_type,
                source: Source::File(path),
            },
            diff_id,
        })
    }

    /// Stores a freshly built layer under `key`; returns it now backed by
    /// the cache file.
    pub fn put(&self, key: &str, layer: Layer) -> io::Result<Layer> {
        let path = self.blob_path(&layer.blob.digest);
        // Written even if a file is there: a miss means that file is
        // damaged (or being replaced by an identical one: harmless).
        let mut out = AtomicFile::create(&path)?;
        io::copy(&mut layer.blob.reader()?, out.file())?;
        out.commit()?;
        let rec = Record {
            digest: layer.blob.digest.to_string(),
            diff_id: layer.diff_id.to_string(),
            size: layer.blob.size,
            media_type: layer.blob.media_type.clone(),
        };
        let mut out = AtomicFile::create(&self.dir.join("layers").join(key))?;
        serde_json::to_writer(out.file(), &rec)?;
        out.commit()?;
        Ok(Layer {
            blob: Blob {
                source: Source::File(path),
                ..layer.blob
            },
            diff_id: layer.diff_id,
        })
    }
}

impl Cache {
    /// A package's file list as stored by [`Cache::put_package`], keyed by
    /// the package file's digest.
    pub fn package(&self, key: &str) -> Option<Vec<u8>> {
        fs::read(self.dir.join("packages").join(key)).ok()
    }

    pub fn put_package(&self, key: &str, data: &[u8]) -> io::Result<()> {
        crate::atomic::write_file(&self.dir.join("packages").join(key), data)
    }
}

/// Reads a blob whole: (digest, size) of its bytes and the diff_id of what
/// it decompresses to.
fn check_blob(path: &Path, compression: Compression) -> io::Result<(Digest, u64, Digest)> {
    let mut blob = Hashing {
        inner: io::BufReader::with_capacity(1 << 20, File::open(path)?),
        hash: Sha256::new(),
        size: 0,
    };
    let diff_id = {
        let mut tar: Box<dyn Read + '_> = match compression {
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&mut blob)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(&mut blob)?),
            Compression::None => Box::new(&mut blob),
        };
        let mut h = Hashing {
            inner: &mut tar,
            hash: Sha256::new(),
            size: 0,
        };
        io::copy(&mut h, &mut io::sink())?;
        Digest::from_hasher(h.hash)
    };
    // Bytes after the last member still count for the digest.
    io::copy(&mut blob, &mut io::sink())?;
    Ok((Digest::from_hasher(blob.hash), blob.size, diff_id))
}

/// Hashes what is read through it.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
    size: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

/// The digest of a whole file.
pub fn file_digest(path: &Path) -> io::Result<Digest> {
    let mut h = Hashing {
        inner: io::BufReader::with_capacity(1 << 20, File::open(path)?),
        hash: Sha256::new(),
        size: 0,
    };
    io::copy(&mut h, &mut io::sink())?;
    Ok(Digest::from_hasher(h.hash))
}

/// The identity of a layer before it is written: everything that decides
/// its bytes (entries, metadata as written, content digests, hardlink
/// structure, compression settings). `None` when a file's content digest is
/// unknown (the scan didn't hash).
pub fn key(rootfs: &Rootfs, plan: &LayerPlan, settings: &Settings) -> Option<String> {
    let mut h = Sha256::new();
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    field(FORMAT.as_bytes());
    field(format!("{:?}/{}", settings.compression, settings.level).as_bytes());
    let mut first_of_inode: std::collections::HashMap<usize, &[u8]> =
        std::collections::HashMap::new();
    for &id in &plan.nodes {
        let node = &rootfs.nodes()[id];
        let meta = rootfs.meta(node);
        field(&node.path);
        field(
            format!(
                "{:o} {} {} {}",
                meta.mode,
                meta.uid,
                meta.gid,
                meta.mtime.min(settings.clamp).max(0)
            )
            .as_bytes(),
        );
        for (k, v) in &meta.xattrs {
            field(k);
            field(v);
        }
        match &node.entry {
            Entry::Dir(_) => field(b"d"),
            Entry::Fifo(_) => field(b"p"),
            Entry::Symlink { target, .. } => {
                field(b"l");
                field(target);
            }
            Entry::Device {
                kind, major, minor, ..
            } => {
                let k = if *kind == Device::Char { "c" } else { "b" };
                field(format!("{k} {major} {minor}").as_bytes());
            }
            Entry::File(ino) => {
                if let Some(first) = first_of_inode.get(ino) {
                    field(b"h");
                    field(first);
                } else {
                    let inode = rootfs.inode(*ino);
                    field(b"f");
                    field(&inode.size.to_le_bytes());
                    field(inode.digest.as_ref()?);
                    first_of_inode.insert(*ino, &node.path);
                }
            }
        }
    }
    Some(hex(&h.finalize()))
}

//! Directory input. All metadata comes through glibc (`lstat`/`statx`,
//! `llistxattr`/`lgetxattr`, `readdir`), so that OE's pseudo, an LD_PRELOAD
//! fakeroot, answers with the owners and modes it recorded.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::catalog::Catalog;
use super::{
    Device, Entry, Inode, Meta, OnBytes, Rootfs, ScanOptions, SourceError, Stored, Warn, path,
};

/// Labels of the build host's security module, never part of a rootfs.
const HOST_XATTRS: &[&[u8]] = &[b"security.selinux"];

pub fn scan(
    root: &Path,
    opts: &ScanOptions,
    progress: OnBytes<'_>,
    warn: Warn<'_>,
) -> Result<Rootfs, SourceError> {
    let mut walk = Walk {
        root,
        opts,
        progress,
        warn,
        catalog: Catalog::new(root),
        links: HashMap::new(),
        done: 0,
        buf: vec![0; 1 << 18],
    };
    let meta = fs::metadata(root).map_err(|e| SourceError::new(root, e.to_string()))?;
    let root_meta = walk.meta(root, &meta, b"")?;
    walk.catalog.insert(Vec::new(), Entry::Dir(root_meta))?;
    walk.dir(root, Vec::new())?;
    walk.catalog.finish(None)
}

struct Walk<'a> {
    root: &'a Path,
    opts: &'a ScanOptions,
    progress: OnBytes<'a>,
    warn: Warn<'a>,
    catalog: Catalog,
    /// (device, inode) of multiply-linked files already seen.
    links: HashMap<(u64, u64), Vec<u8>>,
    done: u64,
    buf: Vec<u8>,
}

impl Walk<'_> {
    fn dir(&mut self, disk: &Path, rel: Vec<u8>) -> Result<(), SourceError> {
        let io_err = |e: io::Error| SourceError::at(self.root, &rel, e.to_string());
        let mut names: Vec<_> = fs::read_dir(disk)
            .map_err(io_err)?
            .map(|d| d.map(|d| d.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io_err)?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let child_disk = disk.join(&name);
            let mut child = rel.clone();
            if !child.is_empty() {
                child.push(b'/');
            }
            child.extend_from_slice(name.as_bytes());
            path::normalize(&child)
                .map_err(|e| SourceError::at(self.root, &child, e.to_string()))?;
            self.entry(&child_disk, child)?;
        }
        Ok(())
    }

    fn entry(&mut self, disk: &Path, rel: Vec<u8>) -> Result<(), SourceError> {
        let err = |e: io::Error| SourceError::at(self.root, &rel, e.to_string());
        let st = fs::symlink_metadata(disk).map_err(err)?;
        let ft = st.file_type();
        let meta = self.meta(disk, &st, &rel)?;
        let entry = if ft.is_dir() {
            self.catalog.insert(rel.clone(), Entry::Dir(meta))?;
            return self.dir(disk, rel);
        } else if ft.is_file() {
            if st.nlink() > 1 {
                if let Some(first) = self.links.get(&(st.dev(), st.ino())) {
                    let first = first.clone();
                    return self.catalog.link(rel, &first);
                }
                self.links.insert((st.dev(), st.ino()), rel.clone());
            }
            let digest = if self.opts.hash {
                Some(self.hash(disk, st.len()).map_err(err)?)
            } else {
                self.done += st.len();
                (self.progress)(self.done);
                None
            };
            Entry::File(self.catalog.add_inode(Inode {
                meta,
                size: st.len(),
                content: Stored::Disk(disk.to_path_buf()),
                digest,
            }))
        } else if ft.is_symlink() {
            let target = fs::read_link(disk).map_err(err)?;
            Entry::Symlink {
                meta,
                target: target.as_os_str().as_bytes().to_vec(),
            }
        } else if ft.is_char_device() || ft.is_block_device() {
            let rdev = st.rdev();
            Entry::Device {
                meta,
                kind: if ft.is_char_device() {
                    Device::Char
                } else {
                    Device::Block
                },
                major: libc::major(rdev),
                minor: libc::minor(rdev),
            }
        } else if ft.is_fifo() {
            Entry::Fifo(meta)
        } else {
            // A socket can't be stored in a tar layer; a bound socket in a
            // rootfs is a leftover of something that ran in it.
            (self.warn)(format!(
                "{}: skipping socket {}",
                self.root.display(),
                path::display(&rel)
            ));
            return Ok(());
        };
        self.catalog.insert(rel, entry)
    }

    fn meta(&self, disk: &Path, st: &fs::Metadata, rel: &[u8]) -> Result<Meta, SourceError> {
        let xattrs = read_xattrs(disk).map_err(|e| {
            SourceError::at(self.root, rel, format!("reading extended attributes: {e}"))
        })?;
        Ok(Meta {
            mode: st.mode() & 0o7777,
            uid: u64::from(st.uid()),
            gid: u64::from(st.gid()),
            mtime: st.mtime(),
            xattrs,
        })
    }

    fn hash(&mut self, disk: &Path, size: u64) -> io::Result<[u8; 32]> {
        let mut file = File::open(disk)?;
        let mut h = Sha256::new();
        let mut seen = 0u64;
        loop {
            let n = match file.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            h.update(&self.buf[..n]);
            seen += n as u64;
            self.done += n as u64;
            (self.progress)(self.done);
        }
        if seen != size {
            return Err(io::Error::other("file changed size while being read"));
        }
        Ok(h.finalize().into())
    }
}

/// All extended attributes of a path, not following symlinks, sorted.
fn read_xattrs(p: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let c = CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let names = match read_sized(|buf, len| unsafe {
        // SAFETY: `c` is a valid C string; `buf` has room for `len` bytes.
        libc::llistxattr(c.as_ptr(), buf.cast(), len)
    }) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if HOST_XATTRS.contains(&name) {
            continue;
        }
        let cname = CString::new(name).map_err(io::Error::other)?;
        let value = match read_sized(|buf, len| unsafe {
            // SAFETY: as above.
            libc::lgetxattr(c.as_ptr(), cname.as_ptr(), buf.cast(), len)
        }) {
            Ok(v) => v,
            // Removed between listing and reading.
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => continue,
            Err(e) => return Err(e),
        };
        out.push((name.to_vec(), value));
    }
    out.sort();
    Ok(out)
}

/// Calls a size-query-then-fill libc function, retrying if the value grows
/// in between (ERANGE).
fn read_sized(f: impl Fn(*mut u8, usize) -> isize) -> io::Result<Vec<u8>> {
    loop {
        let len = f(std::ptr::null_mut(), 0);
        if len < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; len as usize];
        if buf.is_empty() {
            return Ok(buf);
        }
        let got = f(buf.as_mut_ptr(), buf.len());
        if got < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ERANGE) {
                continue;
            }
            return Err(e);
        }
        buf.truncate(got as usize);
        return Ok(buf);
    }
}

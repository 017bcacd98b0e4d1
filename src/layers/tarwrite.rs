//! Writes one layer as a deterministic tar stream: entries in path order,
//! POSIX pax format, numeric owners only, mtimes clamped, no host data.

use std::collections::HashMap;
use std::io::{self, Read, Write};

use tar::{EntryType, Header};

use crate::source::{Device, Entry, InodeId, Meta, NodeId, Rootfs};

/// Read buffer for file contents.
const READ_BUF: usize = 256 << 10;
/// Largest value the 8-byte octal uid/gid fields hold.
const MAX_OCTAL_ID: u64 = 0o7777777;
/// Largest size the 12-byte octal size field holds.
const MAX_OCTAL_SIZE: u64 = 0o77777777777;

/// Where writing failed: the entry and the reason.
#[derive(Debug)]
pub struct WriteError {
    pub path: Vec<u8>,
    pub source: io::Error,
}

/// Writes `nodes` of `rootfs` as a complete tar archive to `out`.
/// `on_bytes` is told how many content bytes went out, for progress.
pub fn write_layer<W: Write>(
    rootfs: &Rootfs,
    nodes: &[NodeId],
    clamp: i64,
    out: W,
    on_bytes: &mut dyn FnMut(u64),
) -> Result<W, WriteError> {
    let mut builder = tar::Builder::new(out);
    // First path written for each inode in this layer; later paths of the
    // same inode become hardlinks to it.
    let mut written: HashMap<InodeId, &[u8]> = HashMap::new();
    for &id in nodes {
        let node = &rootfs.nodes()[id];
        let fail = |source: io::Error| WriteError {
            path: node.path.clone(),
            source,
        };
        match &node.entry {
            Entry::File(ino) => {
                let inode = rootfs.inode(*ino);
                if let Some(first) = written.get(ino) {
                    let (h, pax) = header(
                        &node.path,
                        EntryType::Link,
                        &inode.meta,
                        0,
                        clamp,
                        Some(first),
                    )
                    .map_err(fail)?;
                    append(&mut builder, &h, &pax, io::empty()).map_err(fail)?;
                } else {
                    let (h, pax) = header(
                        &node.path,
                        EntryType::Regular,
                        &inode.meta,
                        inode.size,
                        clamp,
                        None,
                    )
                    .map_err(fail)?;
                    let content = rootfs.open(*ino).map_err(fail)?;
                    // Big reads: tar copies through an 8 KiB buffer, which
                    // would be a syscall per 8 KiB of content.
                    let cap = usize::try_from(inode.size)
                        .unwrap_or(READ_BUF)
                        .clamp(1, READ_BUF);
                    let exact = Exact {
                        inner: io::BufReader::with_capacity(cap, content),
                        left: inode.size,
                    };
                    append(&mut builder, &h, &pax, exact).map_err(fail)?;
                    on_bytes(inode.size);
                    written.insert(*ino, &node.path);
                }
            }
            Entry::Dir(meta) => {
                let (h, pax) =
                    header(&node.path, EntryType::Directory, meta, 0, clamp, None).map_err(fail)?;
                append(&mut builder, &h, &pax, io::empty()).map_err(fail)?;
            }
            Entry::Symlink { meta, target } => {
                let (h, pax) = header(&node.path, EntryType::Symlink, meta, 0, clamp, Some(target))
                    .map_err(fail)?;
                append(&mut builder, &h, &pax, io::empty()).map_err(fail)?;
            }
            Entry::Device {
                meta,
                kind,
                major,
                minor,
            } => {
                let t = match kind {
                    Device::Char => EntryType::Char,
                    Device::Block => EntryType::Block,
                };
                let (mut h, pax) = header(&node.path, t, meta, 0, clamp, None).map_err(fail)?;
                h.set_device_major(*major).map_err(fail)?;
                h.set_device_minor(*minor).map_err(fail)?;
                h.set_cksum();
                append(&mut builder, &h, &pax, io::empty()).map_err(fail)?;
            }
            Entry::Fifo(meta) => {
                let (h, pax) =
                    header(&node.path, EntryType::Fifo, meta, 0, clamp, None).map_err(fail)?;
                append(&mut builder, &h, &pax, io::empty()).map_err(fail)?;
            }
        }
    }
    builder.into_inner().map_err(|source| WriteError {
        path: Vec::new(),
        source,
    })
}

type PaxRecords = Vec<(String, Vec<u8>)>;

fn append<W: Write, R: Read>(
    b: &mut tar::Builder<W>,
    h: &Header,
    pax: &PaxRecords,
    data: R,
) -> io::Result<()> {
    if !pax.is_empty() {
        b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
    }
    b.append(h, data)
}

/// Builds the ustar header of an entry and the pax records for whatever the
/// header can't hold (long names, big sizes or ids, xattrs).
fn header(
    p: &[u8],
    kind: EntryType,
    meta: &Meta,
    size: u64,
    clamp: i64,
    link: Option<&[u8]>,
) -> io::Result<(Header, PaxRecords)> {
    let mut pax: PaxRecords = Vec::new();
    let mut h = Header::new_ustar();
    h.set_entry_type(kind);

    let mut name = if p.is_empty() {
        b".".to_vec()
    } else {
        p.to_vec()
    };
    if kind == EntryType::Directory {
        name.push(b'/');
    }
    let binary = std::str::from_utf8(&name).is_err()
        || link.is_some_and(|l| std::str::from_utf8(l).is_err());
    if binary {
        // POSIX: path values that aren't UTF-8 are flagged, so GNU tar won't
        // try to convert them; Go and others take the bytes as they are.
        pax.push(("hdrcharset".into(), b"BINARY".to_vec()));
    }
    if let Some(ustar) = h.as_ustar_mut() {
        if !split_name(&name, &mut ustar.prefix, &mut ustar.name) {
            let keep = name.len().min(ustar.name.len());
            ustar.name[..keep].copy_from_slice(&name[..keep]);
            pax.push(("path".into(), name.clone()));
        }
        if let Some(target) = link {
            if target.len() <= ustar.linkname.len() {
                ustar.linkname[..target.len()].copy_from_slice(target);
            } else {
                ustar.linkname.copy_from_slice(&target[..100]);
                pax.push(("linkpath".into(), target.to_vec()));
            }
        }
    }

    h.set_mode(meta.mode & 0o7777);
    h.set_uid(meta.uid);
    h.set_gid(meta.gid);
    if meta.uid > MAX_OCTAL_ID {
        pax.push(("uid".into(), meta.uid.to_string().into_bytes()));
    }
    if meta.gid > MAX_OCTAL_ID {
        pax.push(("gid".into(), meta.gid.to_string().into_bytes()));
    }
    h.set_size(size);
    if size > MAX_OCTAL_SIZE {
        pax.push(("size".into(), size.to_string().into_bytes()));
    }
    h.set_mtime(u64::try_from(meta.mtime.min(clamp)).unwrap_or(0));
    for (k, v) in &meta.xattrs {
        let name = std::str::from_utf8(k).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "extended attribute name is not UTF-8, which pax headers can't carry",
            )
        })?;
        pax.push((format!("SCHILY.xattr.{name}"), v.clone()));
    }
    h.set_cksum();
    Ok((h, pax))
}

/// Fits a name into ustar's name (100) and prefix (155) fields, split at a
/// slash. Returns false when it doesn't fit.
fn split_name(name: &[u8], prefix: &mut [u8; 155], field: &mut [u8; 100]) -> bool {
    if name.len() <= field.len() {
        field[..name.len()].copy_from_slice(name);
        return true;
    }
    // The earliest slash that leaves at most 100 bytes after it.
    let Some(cut) = name
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'/' && name.len() - i - 1 <= field.len() && i > 0)
        .map(|(i, _)| i)
        .next()
    else {
        return false;
    };
    if cut > prefix.len() || name.len() - cut - 1 == 0 {
        return false;
    }
    prefix[..cut].copy_from_slice(&name[..cut]);
    field[..name.len() - cut - 1].copy_from_slice(&name[cut + 1..]);
    true
}

/// Yields exactly `left` bytes or fails: a file that shrank since the scan
/// must not produce a tar whose data is shorter than its header says.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file is shorter than when it was scanned",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_long_names_at_a_slash() {
        let mut prefix = [0u8; 155];
        let mut field = [0u8; 100];
        let name = [&[b'a'; 60][..], b"/", &[b'b'; 90][..]].concat();
        assert!(split_name(&name, &mut prefix, &mut field));
        assert_eq!(&prefix[..60], &[b'a'; 60][..]);
        assert_eq!(&field[..90], &[b'b'; 90][..]);

        let mut prefix = [0u8; 155];
        let mut field = [0u8; 100];
        assert!(!split_name(&[b'c'; 120], &mut prefix, &mut field));
    }

    #[test]
    fn pax_for_what_ustar_cannot_hold() {
        let meta = Meta {
            mode: 0o4755,
            uid: 5_000_000,
            gid: 1,
            mtime: 2_000_000_000,
            xattrs: vec![(b"security.capability".to_vec(), vec![1, 0, 0, 2])],
        };
        let long = vec![b'x'; 200];
        let (h, pax) = header(&long, EntryType::Regular, &meta, 9 << 30, 1000, None).unwrap();
        let keys: Vec<&str> = pax.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            vec!["path", "uid", "size", "SCHILY.xattr.security.capability"]
        );
        assert_eq!(h.mode().unwrap(), 0o4755);
        assert_eq!(h.mtime().unwrap(), 1000);
        assert_eq!(h.size().unwrap(), 9 << 30);
    }
}

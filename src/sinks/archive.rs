//! One tar that is both a Docker archive (`manifest.json`) and an OCI image
//! layout (`oci-layout`, `index.json`, `blobs/`), as `docker save` writes
//! since Docker 25: `docker load`, `podman load`, skopeo and containerd all
//! read it.

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use tar::{EntryType, Header};

use super::{Blob, Error, Files};
use crate::atomic::AtomicFile;
use crate::image;

/// Writes the archive to `path`, or to stdout when `path` is `-`.
pub fn write(files: &Files<'_>, path: &Path) -> Result<(), Error> {
    let fail = |e: io::Error| Error::new(path, e);
    if path == Path::new("-") {
        let out = io::stdout().lock();
        let out = write_to(files, BufWriter::with_capacity(1 << 20, out)).map_err(fail)?;
        out.into_inner()
            .map_err(|e| fail(e.into_error()))?
            .flush()
            .map_err(fail)?;
        return Ok(());
    }
    let mut file = AtomicFile::create(path).map_err(fail)?;
    {
        let out = BufWriter::with_capacity(1 << 20, file.file());
        write_to(files, out)
            .map_err(fail)?
            .into_inner()
            .map_err(|e| fail(e.into_error()))?;
    }
    file.commit().map_err(fail)
}

fn write_to<W: Write>(files: &Files<'_>, out: W) -> io::Result<W> {
    let mtime = files.mtime;
    let mut tar = tar::Builder::new(out);
    // Blobs by path, each once (two layers may be equal).
    let mut blobs: BTreeMap<String, &Blob<'_>> = BTreeMap::new();
    for b in &files.blobs {
        blobs.insert(image::blob_path(&b.digest), b);
    }
    dir(&mut tar, "blobs/", mtime)?;
    dir(&mut tar, "blobs/sha256/", mtime)?;
    for (name, blob) in &blobs {
        file(&mut tar, name, mtime, blob.size, blob.reader()?)?;
    }
    file(
        &mut tar,
        "index.json",
        mtime,
        files.index.len() as u64,
        &files.index[..],
    )?;
    if let Some(m) = &files.docker_manifest {
        file(&mut tar, "manifest.json", mtime, m.len() as u64, &m[..])?;
    }
    let layout = image::oci_layout();
    file(
        &mut tar,
        "oci-layout",
        mtime,
        layout.len() as u64,
        &layout[..],
    )?;
    tar.into_inner()
}

fn header(name: &str, kind: EntryType, mode: u32, mtime: u64, size: u64) -> io::Result<Header> {
    let mut h = Header::new_ustar();
    h.set_path(name)?;
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_size(size);
    h.set_cksum();
    Ok(h)
}

fn dir<W: Write>(tar: &mut tar::Builder<W>, name: &str, mtime: u64) -> io::Result<()> {
    let h = header(name, EntryType::Directory, 0o755, mtime, 0)?;
    tar.append(&h, io::empty())
}

fn file<W: Write, R: Read>(
    tar: &mut tar::Builder<W>,
    name: &str,
    mtime: u64,
    size: u64,
    data: R,
) -> io::Result<()> {
    let h = header(name, EntryType::Regular, 0o644, mtime, size)?;
    let mut data = data.take(size);
    tar.append(&h, &mut data)?;
    if data.limit() != 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{name}: blob is shorter than recorded"),
        ));
    }
    Ok(())
}

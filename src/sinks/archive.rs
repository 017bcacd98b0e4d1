//! One tar that is both a Docker archive (`manifest.json`) and an OCI image
//! layout (`oci-layout`, `index.json`, `blobs/`), as `docker save` writes
//! since Docker 25: `docker load`, `podman load`, skopeo and containerd all
//! read it.

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use serde::Serialize;
use tar::{EntryType, Header};

use super::OutputError;
use crate::atomic::AtomicFile;
use crate::oci::{Blob, Digest, ImageSet, Manifest, canonical, media, oci_layout};

/// Writes the archive to `path` (or stdout when `path` is `-`); `mtime`
/// dates its members.
pub fn write(set: &ImageSet, path: &Path, mtime: u64) -> Result<(), OutputError> {
    let fail = |e: io::Error| OutputError::new(path, e);
    let docker = docker_manifest(set).map_err(fail)?;
    if path == Path::new("-") {
        let out = io::stdout().lock();
        let out = write_to(
            set,
            docker.as_deref(),
            mtime,
            BufWriter::with_capacity(1 << 20, out),
        )
        .map_err(fail)?;
        out.into_inner()
            .map_err(|e| fail(e.into_error()))?
            .flush()
            .map_err(fail)?;
        return Ok(());
    }
    let mut file = AtomicFile::create(path).map_err(fail)?;
    {
        let out = BufWriter::with_capacity(1 << 20, file.file());
        write_to(set, docker.as_deref(), mtime, out)
            .map_err(fail)?
            .into_inner()
            .map_err(|e| fail(e.into_error()))?;
    }
    file.commit().map_err(fail)
}

/// Docker's `manifest.json`, pointing into the layout's blobs: one entry
/// per image with its names as RepoTags. `None` when an entry is an index
/// (Docker's view has no indexes).
fn docker_manifest(set: &ImageSet) -> io::Result<Option<Vec<u8>>> {
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct DockerImage {
        config: String,
        repo_tags: Vec<String>,
        layers: Vec<String>,
    }
    let mut entries: Vec<(Digest, DockerImage)> = Vec::new();
    for e in &set.entries {
        if !media::is_manifest(&e.media_type) {
            return Ok(None);
        }
        let names = e.ref_name().map(str::to_string);
        if let Some((_, seen)) = entries.iter_mut().find(|(d, _)| *d == e.digest) {
            seen.repo_tags.extend(names);
            continue;
        }
        let m: Manifest = set.doc(&e.digest).map_err(io::Error::other)?;
        entries.push((
            e.digest,
            DockerImage {
                config: m.config.digest.blob_path(),
                repo_tags: names.into_iter().collect(),
                layers: m.layers.iter().map(|l| l.digest.blob_path()).collect(),
            },
        ));
    }
    let entries: Vec<DockerImage> = entries.into_iter().map(|(_, e)| e).collect();
    Ok(Some(canonical(&entries)))
}

fn write_to<W: Write>(set: &ImageSet, docker: Option<&[u8]>, mtime: u64, out: W) -> io::Result<W> {
    let mut tar = tar::Builder::new(out);
    // Blobs by path, each once.
    let blobs: BTreeMap<String, &Blob> = set
        .blobs()
        .iter()
        .map(|b| (b.digest.blob_path(), b))
        .collect();
    dir(&mut tar, "blobs/", mtime)?;
    dir(&mut tar, "blobs/sha256/", mtime)?;
    for (name, blob) in &blobs {
        file(&mut tar, name, mtime, blob.size, blob.reader()?)?;
    }
    let index = set.index_json();
    file(
        &mut tar,
        "index.json",
        mtime,
        index.len() as u64,
        &index[..],
    )?;
    if let Some(m) = docker {
        file(&mut tar, "manifest.json", mtime, m.len() as u64, m)?;
    }
    let layout = oci_layout();
    file(&mut tar, "oci-layout", mtime, layout.len() as u64, layout)?;
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

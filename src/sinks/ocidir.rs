//! An OCI image layout directory: written whole, or given more blobs
//! (an SBOM attached to the image in it).

use std::fs;
use std::io;
use std::path::Path;

use super::OutputError;
use crate::atomic::{AtomicDir, AtomicFile, write_new};
use crate::oci::{Blob, ImageSet, oci_layout};

/// Writes a layout holding `set` at `path`, replacing an earlier layout.
pub fn write(set: &ImageSet, path: &Path) -> Result<(), OutputError> {
    let fail = |e: io::Error| OutputError::new(path, e);
    let dir = AtomicDir::create(path).map_err(fail)?;
    let root = dir.path();
    fs::create_dir_all(root.join("blobs/sha256")).map_err(fail)?;
    write_new(&root.join("oci-layout"), oci_layout()).map_err(fail)?;
    write_new(&root.join("index.json"), &set.index_json()).map_err(fail)?;
    for blob in set.blobs() {
        // A file-backed blob is linked in, not copied, where it can be.
        blob.place(&root.join(blob.digest.blob_path()))
            .map_err(fail)?;
    }
    dir.commit().map_err(fail)
}

/// Adds `blobs` to the layout at `path` (those it has are left alone);
/// `index.json` is not touched. Each blob appears whole under its name or
/// not at all.
pub fn add_blobs(path: &Path, blobs: &[&Blob]) -> Result<(), OutputError> {
    let fail = |e: io::Error| OutputError::new(path, e);
    let dir = path.join("blobs/sha256");
    fs::create_dir_all(&dir).map_err(fail)?;
    for blob in blobs {
        let dest = path.join(blob.digest.blob_path());
        if fs::symlink_metadata(&dest).is_ok() {
            continue;
        }
        let mut out = AtomicFile::create(&dest).map_err(fail)?;
        let n = io::copy(&mut blob.reader().map_err(fail)?, out.file()).map_err(fail)?;
        if n != blob.size {
            return Err(fail(io::Error::other(format!(
                "blob {} is {n} bytes, expected {}",
                blob.digest, blob.size
            ))));
        }
        out.commit().map_err(fail)?;
    }
    Ok(())
}

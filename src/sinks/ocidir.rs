//! An OCI image layout directory.

use std::fs;
use std::io;
use std::path::Path;

use super::OutputError;
use crate::atomic::{AtomicDir, write_new};
use crate::oci::{ImageSet, oci_layout};

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

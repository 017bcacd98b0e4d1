//! An OCI image layout directory.

use std::fs;
use std::io;
use std::path::Path;

use super::{Error, Files, Source};
use crate::atomic::{AtomicDir, write_new};
use crate::image;

/// Writes a layout holding `files` at `path`, replacing an earlier layout.
pub fn write(files: &Files<'_>, path: &Path) -> Result<(), Error> {
    let fail = |e: io::Error| Error::new(path, e);
    let dir = AtomicDir::create(path).map_err(fail)?;
    let root = dir.path();
    fs::create_dir_all(root.join("blobs/sha256")).map_err(fail)?;
    write_new(&root.join("oci-layout"), &image::oci_layout()).map_err(fail)?;
    write_new(&root.join("index.json"), &files.index).map_err(fail)?;
    for blob in &files.blobs {
        let dest = root.join(image::blob_path(&blob.digest));
        if dest.exists() {
            continue;
        }
        match &blob.source {
            Source::Bytes(b) => write_new(&dest, b).map_err(fail)?,
            // A layer file is linked in, not copied, where it can be.
            Source::Layer(l) => l.place(&dest).map_err(fail)?,
            Source::Open(_) => {
                let mut out = fs::File::create_new(&dest).map_err(fail)?;
                io::copy(&mut blob.reader().map_err(fail)?, &mut out).map_err(fail)?;
            }
        }
        let n = fs::metadata(&dest).map_err(fail)?.len();
        if n != blob.size {
            return Err(fail(io::Error::other(format!(
                "{}: blob is {n} bytes, expected {}",
                blob.digest, blob.size
            ))));
        }
    }
    dir.commit().map_err(fail)
}

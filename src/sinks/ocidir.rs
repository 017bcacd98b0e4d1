//! An OCI image layout directory.

use std::fs;
use std::io;
use std::path::Path;

use super::Error;
use crate::atomic::{AtomicDir, write_new};
use crate::image::{self, Image};

/// Writes a layout holding `image` at `path`, replacing an earlier layout.
pub fn write(image: &Image, path: &Path) -> Result<(), Error> {
    let fail = |e: io::Error| Error::new(path, e);
    let dir = AtomicDir::create(path).map_err(fail)?;
    let root = dir.path();
    fs::create_dir_all(root.join("blobs/sha256")).map_err(fail)?;
    write_new(&root.join("oci-layout"), &image::oci_layout()).map_err(fail)?;
    let index = image::layout_index(image).map_err(|e| fail(io::Error::other(e.to_string())))?;
    write_new(&root.join("index.json"), &index).map_err(fail)?;
    write_new(
        &root.join(image::blob_path(&image.config_digest)),
        &image.config,
    )
    .map_err(fail)?;
    write_new(
        &root.join(image::blob_path(&image.manifest_digest)),
        &image.manifest,
    )
    .map_err(fail)?;
    for layer in &image.layers {
        let dest = root.join(image::blob_path(&layer.digest));
        if dest.exists() {
            continue;
        }
        layer.blob.place(&dest).map_err(fail)?;
        let n = fs::metadata(&dest).map_err(fail)?.len();
        if n != layer.size {
            return Err(fail(io::Error::other(format!(
                "{}: blob is {n} bytes, expected {}",
                layer.digest, layer.size
            ))));
        }
    }
    dir.commit().map_err(fail)
}

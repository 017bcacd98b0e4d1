//! Sinks: where a finished image set goes, as an archive or a layout
//! directory (the registry sink is `registry`). Each takes an
//! [`ImageSet`] and knows nothing of the others. A file is written under a
//! temporary name beside its target and renamed at the end, so a failed or
//! killed run leaves nothing at the output path.
//!
//! [`ImageSet`]: crate::oci::ImageSet

pub mod archive;
pub mod ocidir;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Writing an output failed: which one, and the I/O error.
#[derive(Debug)]
pub struct OutputError {
    pub path: PathBuf,
    pub source: io::Error,
}

impl OutputError {
    pub fn new(path: &Path, source: io::Error) -> Self {
        OutputError {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl fmt::Display for OutputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for OutputError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

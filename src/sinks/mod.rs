//! Sinks: where a finished image goes. Each takes the same [`Image`] and
//! knows nothing of the others. Every sink writes under a temporary name
//! beside its target and renames at the end, so a failed or killed run
//! leaves nothing at the output path.

pub mod archive;
pub mod ocidir;

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct Error {
    pub path: PathBuf,
    pub reason: String,
}

impl Error {
    pub fn new(path: &Path, reason: impl fmt::Display) -> Self {
        Error {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for Error {}

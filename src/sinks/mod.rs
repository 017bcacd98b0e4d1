//! Sinks: where a finished image goes. Each takes the same [`Image`] and
//! knows nothing of the others. Every sink writes under a temporary name
//! beside its target and renames at the end, so a failed or killed run
//! leaves nothing at the output path.

pub mod archive;
pub mod ocidir;

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::image::{self, Image};
use crate::layers;

/// Where a blob's bytes come from.
pub enum Source<'a> {
    Bytes(&'a [u8]),
    Layer(&'a layers::Blob),
    /// A reader opened on demand (a blob of another archive or layout).
    Open(Box<dyn Fn() -> io::Result<Box<dyn Read + Send + 'a>> + 'a>),
}

pub struct Blob<'a> {
    pub digest: String,
    pub size: u64,
    pub source: Source<'a>,
}

impl Blob<'_> {
    pub fn reader(&self) -> io::Result<Box<dyn Read + Send + '_>> {
        match &self.source {
            Source::Bytes(b) => Ok(Box::new(*b)),
            Source::Layer(l) => l.reader(),
            Source::Open(open) => open(),
        }
    }
}

/// What an image layout holds, whichever way it is written: blobs, the
/// `index.json`, and Docker's `manifest.json` when there is a Docker view.
pub struct Files<'a> {
    pub blobs: Vec<Blob<'a>>,
    pub index: Vec<u8>,
    pub docker_manifest: Option<Vec<u8>>,
    /// mtime of archive members.
    pub mtime: u64,
}

impl<'a> Files<'a> {
    /// A single built image, with its Docker view.
    pub fn of_image(image: &'a Image) -> Result<Files<'a>, image::Error> {
        let mut blobs = vec![
            Blob {
                digest: image.config_digest.clone(),
                size: image.config.len() as u64,
                source: Source::Bytes(&image.config),
            },
            Blob {
                digest: image.manifest_digest.clone(),
                size: image.manifest.len() as u64,
                source: Source::Bytes(&image.manifest),
            },
        ];
        for l in &image.layers {
            blobs.push(Blob {
                digest: l.digest.clone(),
                size: l.size,
                source: Source::Layer(&l.blob),
            });
        }
        Ok(Files {
            blobs,
            index: image::layout_index(image)?,
            docker_manifest: Some(image::docker_manifest(image)?),
            mtime: u64::try_from(image.created).unwrap_or(0),
        })
    }
}

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

//! The commands: each a thin function from parsed arguments (see [`cli`])
//! to the library's stages. Nothing in the library imports this module;
//! usage errors are made in `cli` only.

pub mod cli;

mod attach;
mod build;
mod index;
mod inspect;
mod push;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use cli::{Outputs, UsageError};

use crate::oci::ImageSet;
use crate::progress::Progress;
use crate::registry::Target;
use crate::sinks;

/// Runs a parsed command line.
pub fn run(cli: &cli::Cli) -> Result<(), Error> {
    match &cli.command {
        cli::Command::Build(args) => build::run(args),
        cli::Command::Inspect(args) => inspect::run(args),
        cli::Command::Push(args) => push::run(args),
        cli::Command::Index(args) => index::run(args),
        cli::Command::Attach(args) => attach::run(args),
    }
}

/// Writes `set` where `outputs` say (archive members dated `mtime`),
/// pushes it to `target`, and says what was done.
fn write_outputs(
    set: &ImageSet,
    outputs: &Outputs,
    target: Option<&Target>,
    mtime: u64,
    progress: &Progress,
) -> Result<(), Error> {
    let mut wrote = Vec::new();
    if let Some(out) = &outputs.output {
        sinks::archive::write(set, out, mtime)?;
        wrote.push(if out.as_os_str() == "-" {
            "stdout".to_string()
        } else {
            out.display().to_string()
        });
    }
    if let Some(dir) = &outputs.oci_dir {
        sinks::ocidir::write(set, dir)?;
        wrote.push(dir.display().to_string());
    }
    if !wrote.is_empty() {
        progress.done(&format!("wrote {}: {}", wrote.join(" and "), describe(set)));
    }
    if let Some(target) = target {
        let report = push::send(set, target, &outputs.registry, progress)?;
        push::finish(target, &report, &outputs.registry, progress, false)?;
    }
    Ok(())
}

/// `image sha256:..., 13 layer(s), 1.2 MiB` or `index sha256:... over 2
/// image(s)`, for the closing line.
fn describe(set: &ImageSet) -> String {
    let Some(entry) = set.entries.first() else {
        return "nothing".into();
    };
    if crate::oci::media::is_index(&entry.media_type) {
        let n = set.manifests_of(entry).map_or(0, |m| m.len());
        return format!("index {} over {n} image(s)", entry.digest);
    }
    match set.doc::<crate::oci::Manifest>(&entry.digest) {
        Ok(m) => format!(
            "image {}, {} layer(s), {}",
            entry.digest,
            m.layers.len(),
            indicatif::HumanBytes(m.layers.iter().map(|l| l.size).sum())
        ),
        Err(_) => format!("image {}", entry.digest),
    }
}

/// How a command failed: the error of the stage that failed, which keeps
/// its cause; [`Error::exit_code`] maps it to the process's exit code.
#[derive(Debug)]
pub enum Error {
    Usage(UsageError),
    /// A path given on the command line that can't be used as asked.
    Path {
        path: PathBuf,
        what: String,
        source: Option<io::Error>,
    },
    Source(crate::source::SourceError),
    Packages(crate::packages::PackageError),
    Plan(crate::plan::PlanError),
    Rules(crate::plan::RulesError),
    Layers(crate::layers::LayerError),
    Image(crate::image::ImageError),
    Layout(crate::oci::LayoutError),
    Set(crate::oci::SetError),
    Output(crate::sinks::OutputError),
    Registry(crate::registry::RegistryError),
    Sbom(crate::sbom::SbomError),
    /// A bug: what should not happen did.
    Internal(&'static str),
}

impl Error {
    /// 2 for usage errors, 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }

    fn path(path: &Path, what: impl Into<String>, source: Option<io::Error>) -> Error {
        Error::Path {
            path: path.to_path_buf(),
            what: what.into(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(e) => e.fmt(f),
            Error::Path { path, what, source } => {
                write!(f, "{}: {what}", path.display())?;
                match source {
                    Some(e) => write!(f, ": {e}"),
                    None => Ok(()),
                }
            }
            Error::Source(e) => e.fmt(f),
            Error::Packages(e) => e.fmt(f),
            Error::Plan(e) => e.fmt(f),
            Error::Rules(e) => e.fmt(f),
            Error::Layers(e) => e.fmt(f),
            Error::Image(e) => write!(f, "building the image description: {e}"),
            Error::Layout(e) => e.fmt(f),
            Error::Set(e) => e.fmt(f),
            Error::Output(e) => e.fmt(f),
            Error::Registry(e) => e.fmt(f),
            Error::Sbom(e) => e.fmt(f),
            Error::Internal(e) => write!(f, "internal error: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Path { source, .. } => source.as_ref().map(|e| e as _),
            Error::Usage(e) => Some(e),
            Error::Source(e) => Some(e),
            Error::Packages(e) => Some(e),
            Error::Plan(e) => Some(e),
            Error::Rules(e) => Some(e),
            Error::Layers(e) => Some(e),
            Error::Image(e) => Some(e),
            Error::Layout(e) => Some(e),
            Error::Set(e) => Some(e),
            Error::Output(e) => Some(e),
            Error::Registry(e) => Some(e),
            Error::Sbom(e) => Some(e),
            Error::Internal(_) => None,
        }
    }
}

macro_rules! from {
    ($($v:ident($t:ty)),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::$v(e)
            }
        }
    )*};
}

from!(
    Usage(UsageError),
    Source(crate::source::SourceError),
    Packages(crate::packages::PackageError),
    Plan(crate::plan::PlanError),
    Rules(crate::plan::RulesError),
    Layers(crate::layers::LayerError),
    Image(crate::image::ImageError),
    Layout(crate::oci::LayoutError),
    Set(crate::oci::SetError),
    Output(crate::sinks::OutputError),
    Registry(crate::registry::RegistryError),
    Sbom(crate::sbom::SbomError)
);

//! The error a command ends with: each stage's own error, and the exit code
//! it maps to (2 for usage, 1 for everything else).

use std::fmt;

use crate::cli::UsageError;

#[derive(Debug)]
pub enum Error {
    Usage(UsageError),
    Source(crate::source::Error),
    Layers(crate::layers::Error),
    Image(crate::image::Error),
    Sink(crate::sinks::Error),
    Inspect(crate::layout::Error),
    Packages(crate::packages::Error),
    Plan(crate::plan::Error),
    Rules(crate::plan::RulesError),
    Registry(crate::registry::Error),
    Internal(String),
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(e) => e.fmt(f),
            Error::Source(e) => e.fmt(f),
            Error::Layers(e) => e.fmt(f),
            Error::Image(e) => e.fmt(f),
            Error::Sink(e) => e.fmt(f),
            Error::Inspect(e) => e.fmt(f),
            Error::Packages(e) => e.fmt(f),
            Error::Plan(e) => e.fmt(f),
            Error::Rules(e) => e.fmt(f),
            Error::Registry(e) => e.fmt(f),
            Error::Internal(e) => write!(f, "internal error: {e}"),
        }
    }
}

impl std::error::Error for Error {}

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
    Source(crate::source::Error),
    Layers(crate::layers::Error),
    Image(crate::image::Error),
    Sink(crate::sinks::Error),
    Inspect(crate::layout::Error),
    Packages(crate::packages::Error),
    Plan(crate::plan::Error),
    Rules(crate::plan::RulesError),
    Registry(crate::registry::Error)
);

//! Where registry settings live on the machine: docker's and the
//! containers tools' files under `/etc`, and the user's under
//! `$HOME/.config`.
//!
//! `$RUSTIMAGE_CONFIG_ROOT`, when set, is put before every `/etc` path (as
//! the containers tools' `RootForImplicitAbsolutePaths` does), so a build
//! sysroot or a test can bring its own files without touching the host's;
//! the user's files follow `$HOME` as usual.

use std::path::PathBuf;

/// `/etc/<rel>`, under `$RUSTIMAGE_CONFIG_ROOT` if set.
pub fn etc(rel: &str) -> PathBuf {
    let mut path = std::env::var_os("RUSTIMAGE_CONFIG_ROOT")
        .filter(|r| !r.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"));
    path.push("etc");
    path.push(rel);
    path
}

/// `$HOME/.config/<rel>`; `None` without a usable `$HOME`.
pub fn user_config(rel: &str) -> Option<PathBuf> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    let mut path = PathBuf::from(home);
    path.push(".config");
    path.push(rel);
    Some(path)
}

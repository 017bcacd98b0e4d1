//! Per-registry certificate directories, as docker and podman keep them
//! (containers-certs.d(5)): in `HOST[:PORT]/` below
//! `$HOME/.config/containers/certs.d`, `/etc/containers/certs.d` and
//! `/etc/docker/certs.d`, the first that exists; or one directory given
//! with `--cert-dir` (skopeo's flag), used alone. In it, `*.crt` are extra
//! CA certificates and each `NAME.cert` with its `NAME.key` is a client
//! certificate for mutual TLS.
//!
//! `$DOCKER_CERT_PATH` is not read: it holds the docker CLI's certificate
//! for talking to the docker daemon (`ca.pem`, `cert.pem`, `key.pem`), not
//! anything about registries, and sending that identity to a registry
//! would be wrong.

use std::fs;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{RegistryError, paths};

/// The directories searched for `registry` (as named in the reference:
/// `HOST` or `HOST:PORT`), in order.
pub fn search_path(registry: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(home) = paths::user_config("containers/certs.d") {
        dirs.push(home.join(registry));
    }
    dirs.push(paths::etc("containers/certs.d").join(registry));
    dirs.push(paths::etc("docker/certs.d").join(registry));
    dirs
}

/// A client certificate and its key, and the files they came from.
pub struct ClientPair {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// What a certificate directory holds.
pub struct Dir {
    pub path: PathBuf,
    pub roots: Vec<CertificateDer<'static>>,
    /// The first client pair by name (docker offers the first one the
    /// server's accepted CAs allow; registries ask for one).
    pub client: Option<ClientPair>,
}

/// The directory for `registry`: `cert_dir` if given (it must exist), else
/// the first of [`search_path`] that exists, loaded. `None` when there is
/// none.
pub fn find(registry: &str, cert_dir: Option<&Path>) -> Result<Option<Dir>, RegistryError> {
    if let Some(dir) = cert_dir {
        if !dir.is_dir() {
            return Err(RegistryError::new(format!(
                "--cert-dir {}: not a directory",
                dir.display()
            )));
        }
        return load(dir).map(Some);
    }
    for dir in search_path(registry) {
        if dir.is_dir() {
            return load(&dir).map(Some);
        }
    }
    Ok(None)
}

/// Reads `*.crt`, `*.cert` and `*.key` of `dir` (other files are ignored,
/// as docker does); a `.cert` without its `.key`, or the reverse, is an
/// error, as it is for docker and podman.
pub fn load(dir: &Path) -> Result<Dir, RegistryError> {
    let err = |path: &Path, what: String| RegistryError::new(format!("{}: {what}", path.display()));
    let mut names: Vec<String> = fs::read_dir(dir)
        .map_err(|e| err(dir, e.to_string()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    let mut out = Dir {
        path: dir.to_path_buf(),
        roots: Vec::new(),
        client: None,
    };
    for name in &names {
        let path = dir.join(name);
        if name.ends_with(".crt") {
            let certs = read_certs(&path)?;
            out.roots.extend(certs);
        } else if let Some(base) = name.strip_suffix(".cert") {
            let key_name = format!("{base}.key");
            if !names.contains(&key_name) {
                return Err(err(
                    &path,
                    format!(
                        "client certificate without its key {key_name} (CA certificates \
                         take the extension .crt)"
                    ),
                ));
            }
            if out.client.is_none() {
                let key_path = dir.join(&key_name);
                out.client = Some(ClientPair {
                    chain: read_certs(&path)?,
                    key: PrivateKeyDer::from_pem_file(&key_path)
                        .map_err(|e| err(&key_path, format!("no usable private key: {e}")))?,
                    cert_path: path,
                    key_path,
                });
            }
        } else if let Some(base) = name.strip_suffix(".key")
            && !names.contains(&format!("{base}.cert"))
        {
            return Err(err(
                &path,
                format!("key without its client certificate {base}.cert"),
            ));
        }
    }
    Ok(out)
}

/// Every certificate in a PEM file; none is an error.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, RegistryError> {
    let err = |what: String| RegistryError::new(format!("{}: {what}", path.display()));
    let pem = fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in it".into()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpaired_client_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        assert!(load(p).is_ok_and(|d| d.roots.is_empty() && d.client.is_none()));
        fs::write(p.join("client.key"), "x").unwrap();
        let e = load(p).err().unwrap().to_string();
        assert!(e.contains("client.cert"), "{e}");
        fs::remove_file(p.join("client.key")).unwrap();
        fs::write(p.join("client.cert"), "x").unwrap();
        let e = load(p).err().unwrap().to_string();
        assert!(e.contains("client.key") && e.contains(".crt"), "{e}");
        fs::remove_file(p.join("client.cert")).unwrap();
        fs::write(p.join("ca.crt"), "not pem").unwrap();
        let e = load(p).err().unwrap().to_string();
        assert!(
            e.contains("ca.crt") && e.contains("no PEM certificate"),
            "{e}"
        );
        // Other files are none of our business.
        fs::remove_file(p.join("ca.crt")).unwrap();
        fs::write(p.join("README"), "x").unwrap();
        assert!(load(p).is_ok());
    }
}

//! Files and directories that appear at their path only when complete:
//! outputs, digest files and cache entries all go through here.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

fn parent(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `.NAME.rustimage-PID-`: every temporary name for `target` starts so,
/// which lets a later run recognise the leftovers of a killed one.
fn temp_prefix(target: &Path) -> String {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.rustimage-{}-", std::process::id())
}

fn temp_name(target: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    parent(target).join(format!(
        "{}{}",
        temp_prefix(target),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Removes temporary siblings of `target` left by runs that were killed
/// (their process is gone), so SIGKILL leaves no lasting debris.
fn remove_leftovers(target: &Path) {
    let Some(name) = target.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    let start = format!(".{name}.rustimage-");
    let Ok(entries) = fs::read_dir(parent(target)) else {
        return;
    };
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = file
            .strip_prefix(&start)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: kill with signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0
            || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if !alive {
            let p = e.path();
            let _ = fs::remove_dir_all(&p).or_else(|_| fs::remove_file(&p));
        }
    }
}

/// A file being written for `target`. A regular file (or nothing) at the
/// target is replaced atomically: the data goes to an unnamed O_TMPFILE
/// file (so a killed run leaves no trace at all), or, on filesystems
/// without O_TMPFILE, to a hidden temporary name removed on drop, and takes
/// the target's name on commit. A symlink is followed, so the file it
/// points to is replaced, not the link. Anything else (a pipe, a device, a
/// terminal, `/dev/stdout`) is written to in place: renaming over it would
/// destroy it, and a stream can't be taken back anyway.
pub struct AtomicFile {
    file: File,
    mode: Mode,
}

enum Mode {
    Unnamed(PathBuf),
    Named(tempfile::TempPath, PathBuf),
    Through,
}

impl AtomicFile {
    pub fn create(target: &Path) -> io::Result<Self> {
        match fs::metadata(target) {
            Ok(m) if m.is_dir() => {
                return Err(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    "is a directory",
                ));
            }
            Ok(m) if !m.is_file() => {
                let file = OpenOptions::new().write(true).open(target)?;
                return Ok(AtomicFile {
                    file,
                    mode: Mode::Through,
                });
            }
            // A regular file, maybe behind symlinks: replace the file itself.
            Ok(_) => return Self::replace(&fs::canonicalize(target)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Self::replace(target)
    }

    /// True when the output is written in place (not atomically).
    pub fn is_stream(&self) -> bool {
        matches!(self.mode, Mode::Through)
    }

    fn replace(target: &Path) -> io::Result<Self> {
        let dir = parent(target);
        let unnamed = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_TMPFILE)
            .mode(0o666)
            .open(&dir);
        match unnamed {
            Ok(file) => Ok(AtomicFile {
                file,
                mode: Mode::Unnamed(target.to_path_buf()),
            }),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
                ) =>
            {
                remove_leftovers(target);
                let tmp = tempfile::Builder::new()
                    .prefix(&temp_prefix(target))
                    .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
                    .tempfile_in(&dir)?;
                let (file, path) = tmp.into_parts();
                Ok(AtomicFile {
                    file,
                    mode: Mode::Named(path, target.to_path_buf()),
                })
            }
            Err(e) => Err(e),
        }
    }

    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Puts the finished file at its target path, replacing what was there.
    pub fn commit(self) -> io::Result<()> {
        match self.mode {
            Mode::Through => Ok(()),
            Mode::Named(path, target) => {
                remove_leftovers(&target);
                path.persist(&target).map_err(|e| e.error)
            }
            Mode::Unnamed(target) => {
                remove_leftovers(&target);
                let tmp = temp_name(&target);
                let proc = CString::new(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
                    .map_err(io::Error::other)?;
                let to = CString::new(tmp.as_os_str().as_bytes()).map_err(io::Error::other)?;
                // SAFETY: both are valid C strings.
                let rc = unsafe {
                    libc::linkat(
                        libc::AT_FDCWD,
                        proc.as_ptr(),
                        libc::AT_FDCWD,
                        to.as_ptr(),
                        libc::AT_SYMLINK_FOLLOW,
                    )
                };
                if rc != 0 {
                    return Err(io::Error::last_os_error());
                }
                fs::rename(&tmp, &target).inspect_err(|_| {
                    let _ = fs::remove_file(&tmp);
                })
            }
        }
    }
}

/// A directory being filled for `target`, under a hidden sibling name that
/// is removed on drop unless committed.
pub struct AtomicDir {
    tmp: Option<tempfile::TempDir>,
    target: PathBuf,
}

impl AtomicDir {
    /// Refuses to go on if `target` exists and holds anything an OCI image
    /// layout does not (`oci-layout`, `index.json`, `blobs/ALG/HEX`):
    /// replacing a user's files by mistake is worse than any error.
    pub fn create(target: &Path) -> io::Result<Self> {
        match fs::symlink_metadata(target) {
            Ok(m) if m.is_dir() => {
                if let Some(foreign) = not_of_a_layout(target)? {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!(
                            "holds {}, which is not part of an OCI image layout; \
                             refusing to replace the directory",
                            foreign.display()
                        ),
                    ));
                }
            }
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "exists and is not a directory",
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        remove_leftovers(target);
        let tmp = tempfile::Builder::new()
            .prefix(&temp_prefix(target))
            .tempdir_in(parent(target))?;
        Ok(AtomicDir {
            tmp: Some(tmp),
            target: target.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        self.tmp.as_ref().map(|t| t.path()).unwrap_or(&self.target)
    }

    /// Puts the directory in place. An existing layout is swapped out in
    /// one atomic exchange, then deleted.
    pub fn commit(mut self) -> io::Result<()> {
        let Some(tmp) = self.tmp.take() else {
            return Ok(());
        };
        // tempdir makes 0700 directories; a layout is as readable as a file.
        let mut perm = fs::metadata(tmp.path())?.permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        fs::set_permissions(tmp.path(), perm)?;
        let tmp_path = tmp.keep();
        match fs::rename(&tmp_path, &self.target) {
            Ok(()) => return Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => {}
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp_path);
                return Err(e);
            }
        }
        let a = CString::new(tmp_path.as_os_str().as_bytes()).map_err(io::Error::other)?;
        let b = CString::new(self.target.as_os_str().as_bytes()).map_err(io::Error::other)?;
        // SAFETY: both are valid C strings.
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                a.as_ptr(),
                libc::AT_FDCWD,
                b.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if rc != 0 {
            let e = io::Error::last_os_error();
            let _ = fs::remove_dir_all(&tmp_path);
            return Err(e);
        }
        // The old layout now sits at the temporary name.
        fs::remove_dir_all(&tmp_path)
    }
}

/// The first entry of `dir` that an OCI image layout would not have.
fn not_of_a_layout(dir: &Path) -> io::Result<Option<PathBuf>> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let kind = e.file_type()?;
        let name = e.file_name();
        let ok = match name.to_str() {
            Some("oci-layout" | "index.json") => kind.is_file(),
            Some("blobs") if kind.is_dir() => {
                if let Some(inner) = not_blobs(&e.path())? {
                    return Ok(Some(inner));
                }
                true
            }
            _ => false,
        };
        if !ok {
            return Ok(Some(e.path()));
        }
    }
    Ok(None)
}

/// The first entry of a layout's `blobs/` that is not `ALG/` or `ALG/HEX`.
fn not_blobs(blobs: &Path) -> io::Result<Option<PathBuf>> {
    for alg in fs::read_dir(blobs)? {
        let alg = alg?;
        if !alg.file_type()?.is_dir() {
            return Ok(Some(alg.path()));
        }
        for blob in fs::read_dir(alg.path())? {
            let blob = blob?;
            let hex = blob
                .file_name()
                .to_str()
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_hexdigit()));
            if !hex || !blob.file_type()?.is_file() {
                return Ok(Some(blob.path()));
            }
        }
    }
    Ok(None)
}

/// Gives an open file (an unnamed temporary one included) the name `dest`
/// by linking it; copies when linking can't work (another filesystem).
pub fn link_or_copy(file: &File, dest: &Path) -> io::Result<()> {
    let proc =
        CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).map_err(io::Error::other)?;
    let to = CString::new(dest.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: both are valid C strings.
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            proc.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let mut src = file.try_clone()?;
    io::Seek::seek(&mut src, io::SeekFrom::Start(0))?;
    let mut out = OpenOptions::new().write(true).create_new(true).open(dest)?;
    io::copy(&mut src, &mut out)?;
    Ok(())
}

/// Replaces the file at `path` with `data`, atomically.
pub fn write_file(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = AtomicFile::create(path)?;
    io::Write::write_all(f.file(), data)?;
    f.commit()
}

/// Writes `data` to a new file (used inside an [`AtomicDir`]).
pub fn write_new(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).create_new(true).open(path)?;
    io::Write::write_all(&mut f, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    /// What `--digestfile` goes through: a FIFO is written to, not replaced.
    #[test]
    fn write_file_writes_through_a_fifo_and_replaces_behind_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs::read(fifo).unwrap())
        };
        write_file(&fifo, b"sha256:abc").unwrap();
        assert_eq!(reader.join().unwrap(), b"sha256:abc");
        assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());

        let real = dir.path().join("digest");
        fs::write(&real, b"old").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("digest", &link).unwrap();
        write_file(&link, b"new").unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read(&real).unwrap(), b"new");

        let err = write_file(dir.path(), b"x").map(|_| ()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::IsADirectory);
    }
}

//! The image manifest: `<image>.manifest` beside the image in the deploy
//! dir, written by `write_image_manifest` (rootfs-postcommands.bbclass) as
//! `format_pkg_list(pkgs, "ver")`: sorted lines `<package> <arch> <version>`.
//!
//! What fills the fields depends on the image's package manager:
//! - ipk (`opkg status`): the control `Architecture` (PACKAGE_ARCH as is,
//!   `core2-64`, `qemux86_64`) and `Version` (`[epoch:]PKGV-PKGR`).
//! - deb (`dpkg-query -f '${PackageArch} ${Version}'`): OE's own
//!   `PackageArch` field, PACKAGE_ARCH with `_` written as `-`
//!   (`qemux86-64`), not the dpkg arch; `Version` as for ipk.
//! - rpm (`dnf repoquery --queryformat '%{name} %{arch} %{version}'`): the rpm
//!   arch (PACKAGE_ARCH with `-` written as `_`, `noarch` for `all`) and
//!   VERSION alone: no epoch, no release, and PKGV's `-` written as `+`.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use super::PackageError;

/// Longest manifest line accepted.
const MAX_LINE: usize = 4096;

/// One package of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestLine {
    pub name: String,
    pub arch: String,
    pub version: String,
    /// 1-based line number in the manifest, for messages.
    pub line: usize,
}

/// Reads an image manifest. Blank lines are skipped; any other line that is
/// not three fields is an error naming its number.
pub fn read_manifest(path: &Path) -> Result<Vec<ManifestLine>, PackageError> {
    let file = File::open(path).map_err(|e| PackageError::new(path, e))?;
    let mut reader = BufReader::new(file);
    let mut out = Vec::new();
    let mut buf = Vec::new();
    for number in 1.. {
        let at = |reason: String| PackageError::new(path, format!("line {number}: {reason}"));
        buf.clear();
        // One byte past the limit (plus the newline) tells an overlong line.
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 2)
            .read_until(b'\n', &mut buf)
            .map_err(|e| at(e.to_string()))?;
        if n == 0 {
            break;
        }
        let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.len() > MAX_LINE {
            return Err(at(format!("longer than {MAX_LINE} bytes")));
        }
        let text = std::str::from_utf8(text).map_err(|_| at("not UTF-8".into()))?;
        let fields: Vec<&str> = text.split_whitespace().collect();
        match fields[..] {
            [] => continue,
            [name, arch, version] => out.push(ManifestLine {
                name: name.to_string(),
                arch: arch.to_string(),
                version: version.to_string(),
                line: number,
            }),
            _ => {
                return Err(at(format!(
                    "expected '<package> <arch> <version>', found {text:?}"
                )));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(text: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir
            .path()
            .join("core-image-minimal-qemux86-64.rootfs.manifest");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn reads_lines_and_skips_blanks() {
        let (_d, path) = manifest(
            b"base-files qemux86_64 3.0.14-r0\n\nbusybox core2-64 1:1.36.1-r0\r\n  \nlibc6 core2-64 2.39+git-r0",
        );
        let lines = read_manifest(&path).unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[1],
            ManifestLine {
                name: "busybox".into(),
                arch: "core2-64".into(),
                version: "1:1.36.1-r0".into(),
                line: 3,
            }
        );
        assert_eq!((lines[2].name.as_str(), lines[2].line), ("libc6", 5));
        let (_d, empty) = manifest(b"");
        assert!(read_manifest(&empty).unwrap().is_empty());
    }

    #[test]
    fn bad_lines_name_their_number() {
        let (_d, path) = manifest(b"a all 1-r0\nb all\nc all 1-r0\n");
        let e = read_manifest(&path).unwrap_err();
        assert_eq!(e.path, path);
        assert!(e.to_string().contains("line 2:"), "{e}");
        let (_d, path) = manifest(b"a all 1-r0 extra\n");
        assert!(
            read_manifest(&path)
                .unwrap_err()
                .reason
                .starts_with("line 1:")
        );
        let (_d, path) = manifest(b"a all \xff\n");
        assert!(read_manifest(&path).unwrap_err().reason.contains("UTF-8"));
        let mut long = b"ok all 1\n".to_vec();
        long.extend(vec![b'x'; 5000]);
        let (_d, path) = manifest(&long);
        let e = read_manifest(&path).unwrap_err();
        assert!(e.reason.contains("line 2: longer than 4096"), "{e}");
        let exact = [vec![b'n'; 4090], b" a 1\n".to_vec()].concat();
        let (_d, path) = manifest(&exact);
        assert_eq!(read_manifest(&path).unwrap().len(), 1);
        assert!(read_manifest(Path::new("/nonexistent/x.manifest")).is_err());
    }
}

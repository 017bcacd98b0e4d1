//! ipk and deb packages: the control data and the file list.
//!
//! Both are an `ar` archive of `debian-binary` (`2.0\n`), `control.tar.*`
//! and `data.tar.*`, in that order. OE writes ipks with opkg-build
//! (`control.tar.gz`, `data.tar.zst` today; xz or gz before) and debs with
//! `dpkg-deb -b`. Old ipkg-era ipks (and opkg-build -c) are instead a
//! gzipped tar holding `./debian-binary`, `./data.tar.gz` and
//! `./control.tar.gz`, in either order.
//!
//! The `control` file is RFC 822-like: `Field: value` lines, continuation
//! lines starting with a space. OE's package_ipk and package_deb write
//! `Package` (the final, renamed name), `Version` (`[PKGE:]PKGV-PKGR`, the
//! epoch only when non-zero), `Architecture`, `OE: <PN>` and (ipk only)
//! `License: <LICENSE>`. In a deb,
//! `Architecture` is the dpkg arch (`amd64`), so package_deb adds
//! `PackageArch: <PACKAGE_ARCH with _ as ->`, which is what dpkg-query puts
//! in the image manifest.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use super::{
    FileKind, FileList, Format, Package, PackageError, ar, canonical, context, decode, drain,
    hash_content, invalid, read_up_to,
};

/// Longest control file we read; real ones are a few KiB.
const MAX_CONTROL: u64 = 1 << 20;
const MAX_LINK: u64 = 4096;

/// Reads an ipk: an ar archive or the old gzipped-tar form.
#[cfg(test)]
pub fn read_ipk(path: &Path) -> Result<Package, PackageError> {
    read(path, Some(Format::Ipk), true)
}

/// Reads a deb (an ar archive; data.tar.xz, .zst, .gz, .bz2, .lzma or
/// uncompressed).
#[cfg(test)]
pub fn read_deb(path: &Path) -> Result<Package, PackageError> {
    read(path, Some(Format::Deb), true)
}

/// `format`: what the caller asked for, or `None` to decide by name and
/// control fields. With `files == false` the data archive is not read.
pub(super) fn read(
    path: &Path,
    format: Option<Format>,
    files: bool,
) -> Result<Package, PackageError> {
    let at = |e: io::Error| PackageError::new(path, e);
    let file = File::open(path).map_err(at)?;
    let len = file.metadata().map_err(at)?.len();
    let mut input = BufReader::new(file);
    let mut head = [0u8; 8];
    let n = read_up_to(&mut input, &mut head).map_err(at)?;
    let input = io::Cursor::new(head[..n].to_vec()).chain(input);
    let parts = if &head[..n] == ar::MAGIC {
        read_ar(ar::ArReader::new(input, len).map_err(at)?, files).map_err(at)?
    } else if head.starts_with(&[0x1f, 0x8b]) && format != Some(Format::Deb) {
        read_old_ipk(input, files).map_err(at)?
    } else {
        let what = if format == Some(Format::Deb) {
            "a deb"
        } else {
            "an ipk"
        };
        return Err(PackageError::new(
            path,
            format!("not {what} package (neither an ar archive nor a gzipped tar)"),
        ));
    };
    let control = parts
        .control
        .ok_or_else(|| PackageError::new(path, "the package has no control.tar member"))?;
    if files && parts.files.is_none() {
        return Err(PackageError::new(
            path,
            "the package has no data.tar member",
        ));
    }
    let field = |name: &str| control.get(name).map(str::to_string);
    let need = |name: &str| {
        field(name)
            .ok_or_else(|| PackageError::new(path, format!("control file has no {name} field")))
    };
    let format = format.unwrap_or_else(|| {
        let by_name = path.extension().and_then(|e| e.to_str());
        match by_name {
            Some("deb") => Format::Deb,
            Some("ipk" | "opk") => Format::Ipk,
            _ if control.get("PackageArch").is_some() => Format::Deb,
            _ => Format::Ipk,
        }
    });
    let arch = match format {
        Format::Deb => field("PackageArch").map_or_else(|| need("Architecture"), Ok)?,
        _ => need("Architecture")?,
    };
    Ok(Package {
        name: need("Package")?,
        version: need("Version")?,
        arch,
        recipe: field("OE"),
        license: field("License"),
        depends: field("Depends")
            .map(|d| super::dependency_names(&d))
            .unwrap_or_default(),
        files: parts.files.map(|f| f.files).unwrap_or_default(),
        source: path.to_path_buf(),
        format,
    })
}

/// Whether a gzipped file is an old-style ipk: its tar's first member is
/// `debian-binary`.
pub(super) fn is_old_ipk(path: &Path) -> io::Result<bool> {
    let gz = flate2::read::GzDecoder::new(BufReader::new(File::open(path)?));
    let mut header = [0u8; 512];
    if read_up_to(&mut gz.take(512), &mut header)? < 512 {
        return Ok(false);
    }
    let name = &header[..100];
    let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(100)];
    Ok(name.strip_prefix(b"./").unwrap_or(name) == b"debian-binary")
}

#[derive(Default)]
struct Parts {
    control: Option<Control>,
    files: Option<FileList>,
}

fn read_ar<R: Read>(mut ar: ar::ArReader<R>, files: bool) -> io::Result<Parts> {
    let mut parts = Parts::default();
    while let Some((name, _)) = ar.next_member()? {
        member(&name, &mut ar, files, &mut parts)?;
        if parts.control.is_some() && (!files || parts.files.is_some()) {
            break;
        }
    }
    Ok(parts)
}

fn read_old_ipk<R: Read>(input: R, files: bool) -> io::Result<Parts> {
    let mut outer = tar::Archive::new(flate2::read::GzDecoder::new(input));
    let mut parts = Parts::default();
    for entry in outer.entries().map_err(context("outer tar"))? {
        let mut entry = entry.map_err(context("outer tar"))?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(raw.strip_prefix(b"./").unwrap_or(&raw)).into_owned();
        member(&name, &mut entry, files, &mut parts)?;
        if parts.control.is_some() && !files {
            break;
        }
    }
    if files {
        // The gzip trailer's CRC and length catch damage past the members.
        drain(outer.into_inner()).map_err(context("outer tar"))?;
    }
    Ok(parts)
}

/// Handles one member of the outer archive.
fn member(name: &str, data: &mut dyn Read, files: bool, parts: &mut Parts) -> io::Result<()> {
    if name == "debian-binary" {
        let mut version = Vec::new();
        data.take(64).read_to_end(&mut version)?;
        if !version.starts_with(b"2.") {
            return Err(invalid(format!(
                "debian-binary says {:?}, not format 2.x",
                String::from_utf8_lossy(&version).trim()
            )));
        }
    } else if name.starts_with("control.tar") {
        let control = read_control(decode::decoder(data, name)?).map_err(context(name))?;
        parts.control = Some(control);
    } else if name.starts_with("data.tar") && files {
        let list = read_data(decode::decoder(data, name)?).map_err(context(name))?;
        parts.files = Some(list);
    }
    Ok(())
}

/// The `control` file from a control tarball.
fn read_control(input: impl Read) -> io::Result<Control> {
    let mut archive = tar::Archive::new(input);
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.path_bytes().as_ref() != b"./control" && entry.path_bytes().as_ref() != b"control"
        {
            continue;
        }
        if entry.size() > MAX_CONTROL {
            return Err(invalid("control file is larger than 1 MiB"));
        }
        let mut text = Vec::new();
        entry.read_to_end(&mut text)?;
        return Control::parse(&text);
    }
    Err(invalid("no control file in the control tarball"))
}

/// Walks a data tarball, hashing file contents as they stream past.
fn read_data(input: impl Read) -> io::Result<FileList> {
    let mut archive = tar::Archive::new(input);
    let mut list = FileList::default();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = canonical(&entry.path_bytes())?;
        let link = || -> io::Result<Vec<u8>> {
            let target = entry.link_name_bytes().unwrap_or_default();
            if target.is_empty() || target.len() as u64 > MAX_LINK {
                return Err(invalid(format!(
                    "{}: link target is empty or too long",
                    String::from_utf8_lossy(&path)
                )));
            }
            Ok(target.into_owned())
        };
        use tar::EntryType as T;
        let kind = match entry.header().entry_type() {
            T::Regular | T::Continuous | T::GNUSparse => {
                let expected = entry.size();
                let (size, sha) = hash_content(&mut entry)?;
                // A sparse entry's header size is what is stored, not the
                // size of the file it expands to.
                let sparse = entry.header().entry_type() == T::GNUSparse;
                if size != expected && !sparse {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{}: content is truncated", String::from_utf8_lossy(&path)),
                    ));
                }
                FileKind::File {
                    size,
                    sha256: Some(sha),
                }
            }
            T::Directory => FileKind::Dir,
            T::Symlink => FileKind::Symlink { target: link()? },
            T::Link => {
                let target = canonical(&link()?)?;
                if !list.contains(&target) {
                    return Err(invalid(format!(
                        "{}: hard link to {}, which comes nowhere before it",
                        String::from_utf8_lossy(&path),
                        String::from_utf8_lossy(&target)
                    )));
                }
                FileKind::Hardlink { target }
            }
            T::Char | T::Block => FileKind::Device,
            T::Fifo => FileKind::Fifo,
            T::XGlobalHeader => continue,
            other => {
                return Err(invalid(format!(
                    "{}: unsupported tar entry type {:?}",
                    String::from_utf8_lossy(&path),
                    other.as_byte() as char
                )));
            }
        };
        list.push(path, kind);
    }
    // Read to the compressed stream's end, so its checksum is verified.
    drain(archive.into_inner())?;
    Ok(list)
}

/// The fields of a control file, by name (case-insensitive, as dpkg).
struct Control(Vec<(String, String)>);

impl Control {
    fn parse(text: &[u8]) -> io::Result<Control> {
        // Descriptions are sometimes Latin-1; the fields used are ASCII.
        let text = String::from_utf8_lossy(text);
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            if line.starts_with([' ', '\t']) {
                // A continuation (Description's long text): not needed.
                if fields.is_empty() {
                    return Err(invalid("control file starts with a continuation line"));
                }
                continue;
            }
            if line.trim().is_empty() {
                continue;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| invalid(format!("control file line {line:?} has no ':'")))?;
            fields.push((name.trim().to_string(), value.trim().to_string()));
        }
        Ok(Control(fields))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, v)| n.eq_ignore_ascii_case(name) && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    fn kinds(p: &Package) -> Vec<(String, FileKind)> {
        p.files
            .iter()
            .map(|f| {
                (
                    String::from_utf8_lossy(&f.path).into_owned(),
                    f.kind.clone(),
                )
            })
            .collect()
    }

    fn expect_sample_files(p: &Package) {
        let want = vec![
            ("usr".to_string(), FileKind::Dir),
            ("usr/bin".into(), FileKind::Dir),
            ("usr/bin/hello".into(), file(b"hello\n")),
            (
                "usr/bin/hi".into(),
                FileKind::Symlink {
                    target: b"hello".to_vec(),
                },
            ),
            ("usr/bin/same".into(), file(b"same\n")),
            (
                "usr/bin/same2".into(),
                FileKind::Hardlink {
                    target: b"usr/bin/same".to_vec(),
                },
            ),
            ("dev".into(), FileKind::Dir),
            ("dev/null".into(), FileKind::Device),
            ("run".into(), FileKind::Dir),
            ("run/fifo".into(), FileKind::Fifo),
        ];
        assert_eq!(kinds(p), want);
    }

    #[test]
    fn reads_ar_ipks_with_every_data_compression() {
        let dir = tempfile::tempdir().unwrap();
        for comp in [Comp::Zstd, Comp::Xz, Comp::Gzip, Comp::Bzip2, Comp::None] {
            let path = dir
                .path()
                .join(format!("busybox_1.36.1-r0_core2-64.ipk.{comp:?}"));
            let control = control_text("busybox", "1:1.36.1-r0", "core2-64", Some("busybox"));
            write_ipk(&path, &control, &sample_data(), comp);
            let p = read_ipk(&path).unwrap();
            assert_eq!(p.name, "busybox");
            assert_eq!(p.version, "1:1.36.1-r0");
            assert_eq!(p.arch, "core2-64");
            assert_eq!(p.recipe.as_deref(), Some("busybox"));
            assert_eq!(p.license.as_deref(), Some("MIT"));
            assert_eq!(p.format, Format::Ipk);
            assert_eq!(p.source, path);
            expect_sample_files(&p);
            // Dispatch by content gives the same.
            assert_eq!(super::super::read_package(&path).unwrap().files, p.files);
        }
    }

    #[test]
    fn reads_old_gzipped_tar_ipks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old_1.0-r0_all.ipk");
        let control = control_text("old", "1.0-r0", "all", None);
        write_old_ipk(&path, &control, &sample_data());
        let p = read_ipk(&path).unwrap();
        assert_eq!((p.name.as_str(), p.arch.as_str()), ("old", "all"));
        assert_eq!(p.recipe, None);
        expect_sample_files(&p);
        let p = super::super::read_package(&path).unwrap();
        assert_eq!(p.format, Format::Ipk);
        // A deb is never in this form.
        assert!(read_deb(&path).is_err());
        let bytes = std::fs::read(&path).unwrap();
        for cut in (0..bytes.len() - 8).step_by(5) {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            assert!(read_ipk(&path).is_err(), "cut at {cut} accepted");
        }
    }

    #[test]
    fn reads_debs_built_by_dpkg_deb() {
        let Some(dpkg_deb) = tool("dpkg-deb") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        for comp in ["xz", "zstd", "gzip", "none"] {
            let out = dir.path().join(comp);
            std::fs::create_dir(&out).unwrap();
            let deb = build_deb(
                &dpkg_deb,
                &out,
                &["-Z", comp],
                "libfoo1",
                "2:1.2-r3",
                "qemux86-64",
                "foo",
            );
            assert_eq!(deb.file_name().unwrap(), "libfoo1_1.2-r3_amd64.deb");
            let p = read_deb(&deb).unwrap();
            assert_eq!(p.name, "libfoo1");
            assert_eq!(p.version, "2:1.2-r3");
            assert_eq!(p.arch, "qemux86-64", "PackageArch, not the dpkg arch");
            assert_eq!(p.recipe.as_deref(), Some("foo"));
            assert_eq!(p.format, Format::Deb);
            let names: Vec<String> = kinds(&p).into_iter().map(|(n, _)| n).collect();
            assert_eq!(
                names,
                ["usr", "usr/lib", "usr/lib/libfoo.so.1", "usr/lib/libfoo.so"]
            );
            assert_eq!(p.files[2].kind, file(b"libfoo\n"));
            let link = FileKind::Symlink {
                target: b"libfoo.so.1".to_vec(),
            };
            assert_eq!(p.files[3].kind, link);
            // Without its name the control fields tell it from an ipk.
            let renamed = dir.path().join(format!("nameless-{comp}"));
            std::fs::copy(&deb, &renamed).unwrap();
            assert_eq!(read_ipk_or_deb(&renamed).format, Format::Deb);
        }
    }

    fn read_ipk_or_deb(path: &Path) -> Package {
        super::super::read_package(path).unwrap()
    }

    #[test]
    fn corrupt_packages_are_errors_never_panics() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.ipk");
        let control = control_text("busybox", "1.0-r0", "core2-64", Some("busybox"));
        write_ipk(&good, &control, &sample_data(), Comp::Zstd);
        let bytes = std::fs::read(&good).unwrap();
        let bad = dir.path().join("bad.ipk");
        // Every truncation fails (the ar layer knows the file length, the
        // decoders and tar know their ends).
        for cut in (0..bytes.len() - 1).step_by(7) {
            std::fs::write(&bad, &bytes[..cut]).unwrap();
            let e = read_ipk(&bad).expect_err(&format!("cut at {cut} accepted"));
            assert_eq!(e.path, bad);
        }
        // Flipped bytes anywhere: an error or, where the byte is slack (ar
        // mtime, tar padding), the same package; never a panic.
        for at in (0..bytes.len()).step_by(13) {
            let mut b = bytes.clone();
            b[at] ^= 0x55;
            std::fs::write(&bad, &b).unwrap();
            let _ = read_ipk(&bad);
        }
        std::fs::write(&bad, random_bytes(4096)).unwrap();
        let e = read_ipk(&bad).unwrap_err();
        assert!(e.to_string().contains("not an ipk"), "{e}");
        assert!(super::super::read_package(&bad).is_err());
    }

    #[test]
    fn refuses_missing_members_and_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.ipk");
        std::fs::write(&path, ar_archive(&[("debian-binary", b"2.0\n")])).unwrap();
        let e = read_ipk(&path).unwrap_err();
        assert!(e.reason.contains("no control.tar"), "{e}");
        std::fs::write(&path, ar_archive(&[("debian-binary", b"3.0\n")])).unwrap();
        assert!(read_ipk(&path).unwrap_err().reason.contains("not format 2"));
        write_ipk(
            &path,
            "Package: x\nVersion: 1\n",
            &sample_data(),
            Comp::Gzip,
        );
        let e = read_ipk(&path).unwrap_err();
        assert!(e.reason.contains("Architecture"), "{e}");
        let escaping = tar_bytes(&[TarMember::file("./../etc/passwd", b"x")]);
        let control = control_text("x", "1", "all", None);
        write_ipk(&path, &control, &escaping, Comp::None);
        let e = read_ipk(&path).unwrap_err();
        assert!(e.reason.contains(".."), "{e}");
        let dangling = tar_bytes(&[TarMember::hardlink("./a", "./b")]);
        write_ipk(&path, &control, &dangling, Comp::None);
        assert!(read_ipk(&path).unwrap_err().reason.contains("hard link"));
    }

    #[test]
    fn parses_control_fields() {
        let c = Control::parse(
            b"Package: foo\nversion: 1.0-r0\nDescription: x\n long text\n .\nOE: foo-src\n",
        )
        .unwrap();
        assert_eq!(c.get("Version"), Some("1.0-r0"));
        assert_eq!(c.get("oe"), Some("foo-src"));
        assert_eq!(c.get("Missing"), None);
        assert!(Control::parse(b" leading\n").is_err());
        assert!(Control::parse(b"no colon\n").is_err());
        let latin1 = Control::parse(b"Package: x\nDescription: caf\xe9\n").unwrap();
        assert_eq!(latin1.get("Package"), Some("x"));
    }
}

//! Builders for real packages at test time: ar, tar, cpio and rpm writers,
//! and the Debian tools when they are installed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::FileKind;

/// A command from PATH. Missing: the test is skipped, except under CI
/// (`CI=true`), where it must fail rather than pass without testing.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{name} is not installed (scripts/install-deps installs it)"
        );
        eprintln!("skipped: {name} is not installed");
    }
    found
}

pub fn run(cmd: &mut Command) {
    let out = cmd.output().expect("tool runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The kind a regular file with this content gets.
pub fn file(content: &[u8]) -> FileKind {
    FileKind::File {
        size: content.len() as u64,
        sha256: Some(Sha256::digest(content).into()),
    }
}

/// A GNU-style ar archive (names as given, e.g. `debian-binary/`).
pub fn ar_archive(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = b"!<arch>\n".to_vec();
    for (name, data) in members {
        let header = format!(
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            name,
            1520598896,
            0,
            0,
            100644,
            data.len()
        );
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        if !data.len().is_multiple_of(2) {
            out.push(b'\n');
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comp {
    Zstd,
    Xz,
    Gzip,
    Bzip2,
    None,
}

/// Compresses `data`; returns the member name suffix and the bytes.
pub fn compress(data: &[u8], comp: Comp) -> (&'static str, Vec<u8>) {
    match comp {
        Comp::Zstd => (".zst", zstd::encode_all(data, 3).unwrap()),
        Comp::Xz => {
            let mut w = liblzma::write::XzEncoder::new(Vec::new(), 1);
            w.write_all(data).unwrap();
            (".xz", w.finish().unwrap())
        }
        Comp::Gzip => (".gz", gzip(data)),
        Comp::Bzip2 => {
            let mut w = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            w.write_all(data).unwrap();
            (".bz2", w.finish().unwrap())
        }
        Comp::None => ("", data.to_vec()),
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    w.write_all(data).unwrap();
    w.finish().unwrap()
}

/// One tar entry to write.
pub struct TarMember {
    path: String,
    kind: tar::EntryType,
    data: Vec<u8>,
    link: String,
}

impl TarMember {
    fn new(path: &str, kind: tar::EntryType, data: &[u8], link: &str) -> TarMember {
        TarMember {
            path: path.into(),
            kind,
            data: data.to_vec(),
            link: link.into(),
        }
    }
    pub fn file(path: &str, data: &[u8]) -> TarMember {
        TarMember::new(path, tar::EntryType::Regular, data, "")
    }
    pub fn dir(path: &str) -> TarMember {
        TarMember::new(path, tar::EntryType::Directory, b"", "")
    }
    pub fn symlink(path: &str, target: &str) -> TarMember {
        TarMember::new(path, tar::EntryType::Symlink, b"", target)
    }
    pub fn hardlink(path: &str, target: &str) -> TarMember {
        TarMember::new(path, tar::EntryType::Link, b"", target)
    }
    pub fn device(path: &str) -> TarMember {
        TarMember::new(path, tar::EntryType::Char, b"", "")
    }
    pub fn fifo(path: &str) -> TarMember {
        TarMember::new(path, tar::EntryType::Fifo, b"", "")
    }
}

/// A GNU tar of the entries, as opkg-build and dpkg-deb write (`./` names).
pub fn tar_bytes(entries: &[TarMember]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(e.kind);
        h.set_size(e.data.len() as u64);
        h.set_mode(if e.kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_mtime(1520598896);
        // Raw names: the tar crate's setters would drop the "./" that
        // opkg-build and dpkg-deb write.
        let old = h.as_old_mut();
        old.name[..e.path.len()].copy_from_slice(e.path.as_bytes());
        old.linkname[..e.link.len()].copy_from_slice(e.link.as_bytes());
        h.set_cksum();
        b.append(&h, &e.data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// The data tarball most tests use: every kind of entry.
pub fn sample_data() -> Vec<u8> {
    tar_bytes(&[
        TarMember::dir("./"),
        TarMember::dir("./usr/"),
        TarMember::dir("./usr/bin/"),
        TarMember::file("./usr/bin/hello", b"hello\n"),
        TarMember::symlink("./usr/bin/hi", "hello"),
        TarMember::file("./usr/bin/same", b"same\n"),
        TarMember::hardlink("./usr/bin/same2", "./usr/bin/same"),
        TarMember::dir("./dev/"),
        TarMember::device("./dev/null"),
        TarMember::dir("./run/"),
        TarMember::fifo("./run/fifo"),
    ])
}

pub fn control_text(name: &str, version: &str, arch: &str, recipe: Option<&str>) -> String {
    let mut s = format!(
        "Package: {name}\nVersion: {version}\nDescription: test package\n long text\n\
         Section: base\nPriority: optional\nMaintainer: OE-Core Developers <x@y>\n\
         License: MIT\nArchitecture: {arch}\n"
    );
    if let Some(pn) = recipe {
        s.push_str(&format!("OE: {pn}\n"));
    }
    s
}

/// `control.tar.gz` holding `./control`.
pub fn control_tar(control: &str) -> Vec<u8> {
    gzip(&tar_bytes(&[
        TarMember::dir("./"),
        TarMember::file("./control", control.as_bytes()),
    ]))
}

/// An ipk as opkg-build writes it (also a valid deb).
pub fn write_ipk(path: &Path, control: &str, data_tar: &[u8], comp: Comp) {
    let (suffix, data) = compress(data_tar, comp);
    let data_name = format!("data.tar{suffix}");
    let bytes = ar_archive(&[
        ("debian-binary", b"2.0\n"),
        ("control.tar.gz", &control_tar(control)),
        (&data_name, &data),
    ]);
    std::fs::write(path, bytes).unwrap();
}

/// An ipkg-era ipk: a gzipped tar of debian-binary, data.tar.gz and
/// control.tar.gz, in ipkg-build's order.
pub fn write_old_ipk(path: &Path, control: &str, data_tar: &[u8]) {
    let outer = tar_bytes(&[
        TarMember::file("./debian-binary", b"2.0\n"),
        TarMember::file("./data.tar.gz", &gzip(data_tar)),
        TarMember::file("./control.tar.gz", &control_tar(control)),
    ]);
    std::fs::write(path, gzip(&outer)).unwrap();
}

/// Builds a deb with dpkg-deb: a library and its symlink, control fields as
/// OE's package_deb writes them. Returns the file dpkg-deb named.
pub fn build_deb(
    dpkg_deb: &Path,
    out: &Path,
    args: &[&str],
    name: &str,
    version: &str,
    package_arch: &str,
    recipe: &str,
) -> PathBuf {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir_all(r.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(r.join("usr/lib")).unwrap();
    std::fs::write(r.join("usr/lib/libfoo.so.1"), b"libfoo\n").unwrap();
    std::os::unix::fs::symlink("libfoo.so.1", r.join("usr/lib/libfoo.so")).unwrap();
    let mut control = control_text(name, version, "amd64", Some(recipe));
    control.push_str(&format!("PackageArch: {package_arch}\n"));
    std::fs::write(r.join("DEBIAN/control"), control).unwrap();
    run(Command::new(dpkg_deb)
        .args(args)
        .arg("--root-owner-group")
        .arg("-b")
        .arg(r)
        .arg(out));
    let debs: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "{debs:?}");
    debs.into_iter().next().unwrap()
}

/// One newc cpio entry.
pub fn cpio_entry(name: &[u8], ino: u32, mode: u32, nlink: u32, data: &[u8]) -> Vec<u8> {
    let fields = [
        ino,
        mode,
        0,
        0,
        nlink,
        1520598896,
        data.len() as u32,
        0,
        0,
        0,
        0,
        name.len() as u32 + 1,
        0,
    ];
    let mut out = b"070701".to_vec();
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name);
    out.push(0);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
    out.extend_from_slice(data);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
    out
}

/// A header tag value for [`rpm_bytes`].
pub enum RpmTag {
    Str(&'static str),
    Strs(Vec<Vec<u8>>),
    I32(Vec<u32>),
    I16(Vec<u16>),
}

/// A header: magic, counts, index, data.
pub fn rpm_header(tags: &[(u32, RpmTag)]) -> Vec<u8> {
    let mut index = Vec::new();
    let mut data = Vec::new();
    for (tag, value) in tags {
        let (ty, count) = match value {
            RpmTag::Str(s) => {
                let offset = data.len();
                data.extend_from_slice(s.as_bytes());
                data.push(0);
                (6u32, (1, offset))
            }
            RpmTag::Strs(v) => {
                let offset = data.len();
                for s in v {
                    data.extend_from_slice(s);
                    data.push(0);
                }
                (8, (v.len(), offset))
            }
            RpmTag::I32(v) => {
                while !data.len().is_multiple_of(4) {
                    data.push(0);
                }
                let offset = data.len();
                v.iter()
                    .for_each(|x| data.extend_from_slice(&x.to_be_bytes()));
                (4, (v.len(), offset))
            }
            RpmTag::I16(v) => {
                while !data.len().is_multiple_of(2) {
                    data.push(0);
                }
                let offset = data.len();
                v.iter()
                    .for_each(|x| data.extend_from_slice(&x.to_be_bytes()));
                (3, (v.len(), offset))
            }
        };
        let (count, offset) = count;
        for x in [*tag, ty, offset as u32, count as u32] {
            index.extend_from_slice(&x.to_be_bytes());
        }
    }
    let mut out = vec![0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0];
    out.extend_from_slice(&((index.len() / 16) as u32).to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend(index);
    out.extend(data);
    out
}

/// An rpm: lead, an empty signature header, the header, the payload.
pub fn rpm_bytes(tags: &[(u32, RpmTag)], payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0xed, 0xab, 0xee, 0xdb, 3, 0];
    out.resize(96, 0);
    out.extend(rpm_header(&[]));
    out.extend(rpm_header(tags));
    out.extend_from_slice(payload);
    out
}

/// Deterministic noise that is no known format.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out: Vec<u8> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    out[0] = 0;
    out
}

/// A recipe's worth of rpms: every file kind, a %ghost, a subpackage with
/// its own version.
pub const SPEC: &str = r#"
Name: demo
Version: 1.0
Release: r0
Epoch: 2
Summary: demo
License: MIT
%description
demo
%package -n libdemo-extra
Summary: extra
Version: 1.1+git
%description -n libdemo-extra
extra
%install
mkdir -p %{buildroot}/usr/bin %{buildroot}/etc/demo %{buildroot}/var/log %{buildroot}/usr/share
printf 'hello\n' > %{buildroot}/usr/bin/hello
ln -s hello %{buildroot}/usr/bin/hi
printf 'same\n' > %{buildroot}/usr/bin/a
ln %{buildroot}/usr/bin/a %{buildroot}/usr/bin/b
: > %{buildroot}/usr/share/empty1
ln %{buildroot}/usr/share/empty1 %{buildroot}/usr/share/empty2
printf 'extra\n' > %{buildroot}/usr/share/extra
%files
%defattr(-,root,root,-)
/usr/bin/hello
/usr/bin/hi
/usr/bin/a
/usr/bin/b
/usr/share/empty1
/usr/share/empty2
%dir /etc/demo
%ghost /var/log/demo.log
%files -n libdemo-extra
/usr/share/extra
"#;

/// Builds [`SPEC`]'s rpms with OE's naming and the given payload; returns
/// the directory holding them.
pub fn rpmbuild(dir: &Path, target: &str, defines: &[(&str, &str)]) -> Option<PathBuf> {
    let rpmbuild = tool("rpmbuild")?;
    let spec = dir.join("demo.spec");
    std::fs::write(&spec, SPEC).unwrap();
    let out = dir.join("RPMS");
    let mut cmd = Command::new(rpmbuild);
    cmd.arg("-bb").arg("--target").arg(target);
    let topdir = dir.display().to_string();
    let outdir = out.display().to_string();
    let base = [
        ("_topdir", topdir.as_str()),
        ("_tmppath", topdir.as_str()),
        ("_rpmdir", outdir.as_str()),
        (
            "_build_name_fmt",
            "%%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm",
        ),
        ("__os_install_post", "%{nil}"),
        ("_build_id_links", "none"),
    ];
    for (k, v) in base.iter().chain(defines) {
        cmd.arg("--define").arg(format!("{k} {v}"));
    }
    run(cmd.arg(&spec).env("HOME", dir));
    Some(out)
}

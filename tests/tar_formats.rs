//! Tarballs as other tools write them: sparse files in every encoding GNU
//! tar and bsdtar use, and bsdtar's ACLs. The judge is umoci: the image it
//! unpacks must equal what GNU tar extracts from the input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// `rustimage build --squash` of `tarball` into an OCI layout, unpacked by
/// umoci; returns the unpacked rootfs.
fn build_and_unpack(tarball: &Path, dir: &Path, name: &str) -> PathBuf {
    let layout = dir.join(format!("layout-{name}"));
    run_ok(
        rustimage()
            .args(["build", "--squash", "-q", "--tag", "t:1", "--rootfs"])
            .arg(tarball)
            .arg("--oci-dir")
            .arg(&layout),
    );
    umoci_unpack(&layout, "t:1", &dir.join(format!("bundle-{name}")))
}

/// What GNU tar extracts from `tarball` (as root: owners, modes, xattrs and
/// ACLs kept).
fn tar_extract(tarball: &Path, dir: &Path, name: &str) -> PathBuf {
    let dest = dir.join(format!("tar-{name}"));
    make_root_dir(&dest);
    run_ok(
        Command::new("tar")
            .args([
                "--acls",
                "--xattrs",
                "--xattrs-include=*",
                "--numeric-owner",
                "-p",
                "-xf",
            ])
            .arg(tarball)
            .arg("-C")
            .arg(&dest),
    );
    dest
}

/// Writes `data` at each offset of a file of `size` bytes that is holes
/// everywhere else.
fn sparse_file(path: &Path, size: u64, writes: &[(u64, &[u8])]) {
    let f = fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    for (at, data) in writes {
        f.write_all_at(data, *at).unwrap();
    }
}

/// A small rootfs of sparse files: a 16 MiB lastlog with two records and a
/// hole at the end, a faillog that is all hole, a file that starts and ends
/// with data, and, last in name order (where old GNU members broke the
/// end-of-archive check), one with 40 data runs (old GNU needs extension
/// headers for more than 4).
fn sparse_rootfs(root: &Path) {
    make_root_dir(root);
    fs::create_dir_all(root.join("var/log")).unwrap();
    let record = [0xa5u8; 292];
    sparse_file(
        &root.join("var/log/lastlog"),
        16 << 20,
        &[(1000 * 292, &record), (10 << 20, &record)],
    );
    sparse_file(&root.join("var/log/faillog"), 1 << 20, &[]);
    let head = vec![7u8; 8192];
    sparse_file(
        &root.join("var/log/ends"),
        (2 << 20) + 100,
        &[(0, &head), (2 << 20, &[9u8; 100])],
    );
    let runs: Vec<(u64, Vec<u8>)> = (0..40u64)
        .map(|i| (i * 65536, vec![i as u8 + 1; 4096 + i as usize]))
        .collect();
    let runs: Vec<(u64, &[u8])> = runs.iter().map(|(o, d)| (*o, d.as_slice())).collect();
    sparse_file(&root.join("zz-many-runs"), 40 * 65536, &runs);
    fs::write(root.join("var/log/plain"), b"not sparse\n").unwrap();
}

#[test]
fn sparse_files_in_every_encoding_become_plain_files() {
    if !require_all(&["tar", "bsdtar", "umoci"]) {
        return;
    }
    let tmp = tempdir("tar-formats");
    let root = tmp.path().join("rootfs");
    sparse_rootfs(&root);
    let input = snapshot(&root);
    let gnu = |args: &[&str]| {
        let mut c = Command::new("tar");
        c.args(["--sort=name", "--numeric-owner", "--sparse"])
            .args(args);
        c
    };
    let makers: [(&str, Command); 5] = [
        ("gnu", gnu(&["--format=gnu"])),
        ("pax-0.0", gnu(&["--format=posix", "--sparse-version=0.0"])),
        ("pax-0.1", gnu(&["--format=posix", "--sparse-version=0.1"])),
        ("pax-1.0", gnu(&["--format=posix", "--sparse-version=1.0"])),
        ("bsdtar", Command::new("bsdtar")),
    ];
    for (name, mut maker) in makers {
        let tarball = tmp.path().join(format!("{name}.tar"));
        run_ok(maker.arg("-cf").arg(&tarball).arg("-C").arg(&root).arg("."));
        // The holes are not in the archive: it is sparse-encoded.
        let size = fs::metadata(&tarball).unwrap().len();
        assert!(size < 512 << 10, "{name}: {size} bytes, not sparse");

        let want = snapshot(&tar_extract(&tarball, tmp.path(), name));
        assert_eq!(want[&b"var/log/lastlog"[..]].size, 16 << 20, "{name}");
        let got = snapshot(&build_and_unpack(&tarball, tmp.path(), name));
        assert_same_tree(&want, &got, &[]);
        assert_same_tree(&input, &got, &[]);
    }
}

#[test]
fn bsdtar_acls_become_posix_acl_xattrs() {
    if !require_all(&["tar", "bsdtar", "setfacl", "umoci"]) {
        return;
    }
    let tmp = tempdir("tar-formats");
    let root = tmp.path().join("rootfs");
    make_root_dir(&root);
    fs::create_dir_all(root.join("srv/shared")).unwrap();
    fs::write(root.join("srv/report"), b"figures\n").unwrap();
    fs::write(root.join("srv/plain"), b"no acl\n").unwrap();
    // Users by name (root: bsdtar writes "user:root:rwx:0") and by number.
    let setfacl = |args: &[&str], path: &str| {
        run_ok(Command::new("setfacl").args(args).arg(root.join(path)));
    };
    setfacl(&["-m", "u:root:rwx,u:1000:r--,g:2000:rw-"], "srv/report");
    setfacl(&["-m", "u:1001:r-x"], "srv/shared");
    setfacl(&["-d", "-m", "u:1000:rwx,g::r-x"], "srv/shared");

    let tarball = tmp.path().join("acls.tar");
    run_ok(
        Command::new("bsdtar")
            .args(["--acls", "--numeric-owner", "-cf"])
            .arg(&tarball)
            .arg("-C")
            .arg(&root)
            .arg("."),
    );
    let raw = fs::read(&tarball).unwrap();
    let has = |needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"SCHILY.acl.access=") && has(b"SCHILY.acl.default="));
    assert!(!has(b"SCHILY.xattr.system.posix_acl"));

    let want = snapshot(&tar_extract(&tarball, tmp.path(), "acls"));
    let got = snapshot(&build_and_unpack(&tarball, tmp.path(), "acls"));
    assert_same_tree(&want, &got, &[]);
    let xattrs = |p: &[u8]| got[p].xattrs.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        xattrs(b"srv/report"),
        vec![b"system.posix_acl_access".to_vec()]
    );
    assert_eq!(
        xattrs(b"srv/shared"),
        vec![
            b"system.posix_acl_access".to_vec(),
            b"system.posix_acl_default".to_vec()
        ]
    );
    assert!(xattrs(b"srv/plain").is_empty());
    // The same bytes the kernel keeps on the rootfs itself.
    assert_same_tree(&snapshot(&root), &got, &[]);
}

#[test]
fn acls_naming_users_without_ids_are_dropped_with_one_warning() {
    if !require_all(&["umoci"]) {
        return;
    }
    // Made by hand: bsdtar adds the id to every name it writes (GNU tar's
    // names-alone form is in gnu_tar_acl_text_is_converted).
    let tmp = tempdir("tar-formats");
    let mut b = tar::Builder::new(Vec::new());
    for name in ["a", "b"] {
        b.append_pax_extensions([(
            "SCHILY.acl.access",
            &b"user::rw-,user:alice:r--,group::r--,mask::r--,other::r--"[..],
        )])
        .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_size(2);
        h.set_mode(0o640);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append(&h, &b"hi"[..]).unwrap();
    }
    let tarball = tmp.path().join("names.tar");
    fs::write(&tarball, b.into_inner().unwrap()).unwrap();
    let layout = tmp.path().join("layout");
    let out = run_ok(
        rustimage()
            .args(["build", "--squash", "--tag", "t:1", "--rootfs"])
            .arg(&tarball)
            .arg("--oci-dir")
            .arg(&layout),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(
        warnings[0].contains("POSIX ACLs left out of the image: /a:")
            && warnings[0].contains("'user:alice:r--'")
            && warnings[0].contains("(and 1 more)"),
        "{err}"
    );
    let got = snapshot(&umoci_unpack(&layout, "t:1", &tmp.path().join("bundle")));
    assert!(got[&b"a"[..]].xattrs.is_empty());

    let quiet = run_ok(
        rustimage()
            .args(["build", "--squash", "-q", "--rootfs"])
            .arg(&tarball)
            .arg("-o")
            .arg(tmp.path().join("q.tar")),
    );
    assert!(quiet.stderr.is_empty());
}

/// `getfattr -R -d -m - -e hex` of a tree: every xattr of every path as the
/// kernel hands it out, names relative to `dir`.
fn getfattr(dir: &Path) -> String {
    run_stdout(
        Command::new("getfattr")
            .args(["-R", "-P", "-h", "-d", "-m", "-", "-e", "hex", "."])
            .current_dir(dir),
    )
}

/// GNU tar `--xattrs --acls` of a real system: pax values holding byte 0x0a
/// (a capability mask with cap_dac_override and cap_fowner, binary ACLs
/// naming id 10, a user xattr with a newline) are framed by their length,
/// not split at newlines. umoci's and podman's unpacked images must equal
/// both GNU tar's extraction and the source tree, xattr bytes included.
#[test]
fn pax_values_holding_newlines_are_read_whole() {
    if !require_all(&[
        "tar", "setcap", "setfacl", "setfattr", "getfattr", "umoci", "podman",
    ]) {
        return;
    }
    let tmp = tempdir("tar-formats");
    let root = tmp.path().join("rootfs");
    make_root_dir(&root);
    fs::create_dir_all(root.join("usr/sbin")).unwrap();
    fs::create_dir_all(root.join("srv/share")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    let tool = root.join("usr/sbin/fixperms");
    fs::write(&tool, b"#!/bin/sh\n").unwrap();
    fs::write(root.join("srv/report"), b"figures\n").unwrap();
    fs::write(root.join("etc/nl"), b"newline in an xattr\n").unwrap();
    fs::write(root.join("etc/plain"), b"nothing special\n").unwrap();
    fs::hard_link(&tool, root.join("usr/sbin/fixperms.hl")).unwrap();
    std::os::unix::fs::symlink("fixperms", root.join("usr/sbin/fp")).unwrap();
    run_ok(
        Command::new("setcap")
            .arg("cap_dac_override,cap_fowner+ep")
            .arg(&tool),
    );
    run_ok(
        Command::new("setfacl")
            .args(["-m", "u:10:r,g:10:r"])
            .arg(root.join("srv/report")),
    );
    run_ok(
        Command::new("setfacl")
            .args(["-d", "-m", "u:10:rx,g:10:rx"])
            .arg(root.join("srv/share")),
    );
    run_ok(
        Command::new("setfattr")
            .args(["-n", "user.nl", "-v", "0x610a62"])
            .arg(root.join("etc/nl")),
    );
    run_ok(
        Command::new("setfattr")
            .args(["-n", "user.eq", "-v", "a=b\n=c"])
            .arg(root.join("srv/share")),
    );
    let source = snapshot(&root);
    // The values really hold 0x0a: the permitted mask of these two
    // capabilities is 0x0a, the ACLs name id 10.
    let cap = &source[&b"usr/sbin/fixperms"[..]].xattrs[&b"security.capability"[..]];
    assert_eq!(cap[4], 0x0a, "{cap:x?}");
    let acl = &source[&b"srv/report"[..]].xattrs[&b"system.posix_acl_access"[..]];
    assert!(acl.contains(&0x0a), "{acl:x?}");

    let tarball = tmp.path().join("xattrs.tar");
    run_ok(
        Command::new("tar")
            .args([
                "--xattrs",
                "--xattrs-include=*",
                "--acls",
                "--format=posix",
                "--numeric-owner",
                "--sort=name",
                "-cf",
            ])
            .arg(&tarball)
            .arg("-C")
            .arg(&root)
            .arg("."),
    );
    let raw = fs::read(&tarball).unwrap();
    let has = |needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"SCHILY.xattr.security.capability="));
    assert!(has(b"SCHILY.xattr.user.nl=a\nb\n"));

    let extracted = tar_extract(&tarball, tmp.path(), "xattrs");
    let want = snapshot(&extracted);
    assert_same_tree(&source, &want, &[]);
    let got = snapshot(&build_and_unpack(&tarball, tmp.path(), "xattrs"));
    assert_same_tree(&want, &got, &[]);
    let bundle = tmp.path().join("bundle-xattrs/rootfs");
    assert_eq!(getfattr(&bundle), getfattr(&extracted));
    assert_eq!(getfattr(&bundle), getfattr(&root));

    // podman reads the archive view of the same build.
    let archive = tmp.path().join("image.tar");
    run_ok(
        rustimage()
            .args(["build", "--squash", "-q", "--tag", "xattrs:1", "--rootfs"])
            .arg(&tarball)
            .arg("-o")
            .arg(&archive),
    );
    let podman = Podman::new();
    let name = podman.load(&archive);
    let mounted = podman.image_mount(&name);
    assert_same_tree(&want, &snapshot(&mounted), &[]);
    assert_eq!(getfattr(&mounted), getfattr(&extracted));
    podman.image_unmount(&name);
}

/// GNU tar `--acls` without `--xattrs` stores only the ACL's text, one
/// entry per line (newlines in a pax value again). Numeric ids convert to
/// the kernel's bytes; an entry GNU tar wrote by name (uid 10 has one
/// here) can't be resolved and leaves that ACL out, with one warning.
#[test]
fn gnu_tar_acl_text_is_converted() {
    if !require_all(&["tar", "setfacl", "umoci"]) {
        return;
    }
    let tmp = tempdir("tar-formats");
    let root = tmp.path().join("rootfs");
    make_root_dir(&root);
    fs::create_dir_all(root.join("srv/share")).unwrap();
    fs::write(root.join("srv/numeric"), b"ids only\n").unwrap();
    fs::write(root.join("srv/named"), b"uid 10 has a name\n").unwrap();
    let setfacl = |args: &[&str], path: &str| {
        run_ok(Command::new("setfacl").args(args).arg(root.join(path)));
    };
    // Ids no user or group on this machine has, so GNU tar writes numbers.
    setfacl(&["-m", "u:64123:rw,g:64124:r"], "srv/numeric");
    setfacl(&["-d", "-m", "u:64123:rwx"], "srv/share");
    setfacl(&["-m", "u:10:r"], "srv/named");

    let tarball = tmp.path().join("acl-text.tar");
    run_ok(
        Command::new("tar")
            .args(["--acls", "--format=posix", "--numeric-owner", "-cf"])
            .arg(&tarball)
            .arg("-C")
            .arg(&root)
            .arg("."),
    );
    let raw = fs::read(&tarball).unwrap();
    let has = |needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"SCHILY.acl.access=user::rw-\nuser:64123:rw-\n"));
    assert!(!has(b"SCHILY.xattr."));

    let layout = tmp.path().join("layout");
    let out = run_ok(
        rustimage()
            .args(["build", "--squash", "--tag", "t:1", "--rootfs"])
            .arg(&tarball)
            .arg("--oci-dir")
            .arg(&layout),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(
        warnings[0].contains("POSIX ACLs left out of the image: /srv/named:"),
        "{err}"
    );
    let got = snapshot(&umoci_unpack(&layout, "t:1", &tmp.path().join("bundle")));
    let mut source = snapshot(&root);
    source
        .get_mut(&b"srv/named"[..])
        .unwrap()
        .xattrs
        .remove(&b"system.posix_acl_access"[..]);
    assert_same_tree(&source, &got, &[]);
    let xattrs = |p: &[u8]| got[p].xattrs.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        xattrs(b"srv/share"),
        vec![b"system.posix_acl_default".to_vec()]
    );
    assert_eq!(
        xattrs(b"srv/numeric"),
        vec![b"system.posix_acl_access".to_vec()]
    );
}

/// An xattr named twice in one member's pax records keeps its last value,
/// as extraction leaves it (each record overwrites the one before).
#[test]
fn an_xattr_given_twice_keeps_its_last_value() {
    if !require_all(&["tar", "getfattr"]) {
        return;
    }
    let tmp = tempdir("tar-formats");
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([
        ("SCHILY.xattr.user.twice", &b"aaa first"[..]),
        ("SCHILY.xattr.user.twice", &b"zzz last"[..]),
    ])
    .unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_path("file").unwrap();
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(2);
    h.set_cksum();
    b.append(&h, &b"hi"[..]).unwrap();
    let archive = tmp.path().join("twice.tar");
    std::fs::write(&archive, b.into_inner().unwrap()).unwrap();

    // What GNU tar leaves on disk is the reference.
    let extracted = tmp.path().join("extracted");
    std::fs::create_dir(&extracted).unwrap();
    run_ok(
        std::process::Command::new("tar")
            .args(["--xattrs", "--xattrs-include=*", "-xf"])
            .arg(&archive)
            .arg("-C")
            .arg(&extracted),
    );
    let want = read_xattrs(&extracted.join("file"));
    assert_eq!(want[&b"user.twice"[..]], b"zzz last");

    let layout = tmp.path().join("layout");
    run_ok(
        rustimage()
            .args(["build", "--squash", "-q", "--tag", "t:1", "--rootfs"])
            .arg(&archive)
            .arg("--oci-dir")
            .arg(&layout),
    );
    let tar = single_layer_tar(&layout);
    let mut a = tar::Archive::new(&tar[..]);
    let mut seen = None;
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().ends_with("file") {
            for rec in e.pax_extensions().unwrap().unwrap() {
                let rec = rec.unwrap();
                if rec.key().unwrap() == "SCHILY.xattr.user.twice" {
                    seen = Some(rec.value_bytes().to_vec());
                }
            }
        }
    }
    assert_eq!(seen.as_deref(), Some(&b"zzz last"[..]));
}

/// The uncompressed tar of a one-layer image in an OCI layout.
fn single_layer_tar(layout: &std::path::Path) -> Vec<u8> {
    use std::io::Read;
    let json = |p: std::path::PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let blob = |d: &serde_json::Value| layout.join("blobs/sha256").join(&d.as_str().unwrap()[7..]);
    let index = json(layout.join("index.json"));
    let manifest = json(blob(&index["manifests"][0]["digest"]));
    let gz = std::fs::read(blob(&manifest["layers"][0]["digest"])).unwrap();
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(&gz[..])
        .read_to_end(&mut out)
        .unwrap();
    out
}

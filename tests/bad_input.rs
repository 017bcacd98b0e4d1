//! Bad input and bad output paths: one line naming the file and the
//! problem, exit 1 (2 for usage mistakes), never a panic, and nothing left at
//! the output path or beside it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;

/// Runs a build of `rootfs` into `dir/out/image.tar` expecting failure with
/// `code`; checks the message and that `dir/out` stayed empty.
fn fails(dir: &Path, rootfs: &Path, extra: &[&str], code: i32, needle: &str) -> String {
    let out_dir = dir.join("out");
    fs::create_dir_all(&out_dir).unwrap();
    let out = run_fail(
        rustimage()
            .args(["build", "--squash", "--rootfs"])
            .arg(rootfs)
            .arg("-o")
            .arg(out_dir.join("image.tar"))
            .args(extra),
    );
    check_failure(&out, code, needle);
    let left: Vec<_> = fs::read_dir(&out_dir).unwrap().collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
    String::from_utf8(out.stderr).unwrap()
}

fn check_failure(out: &Output, code: i32, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(needle), "expected '{needle}' in: {err}");
    if code == 1 {
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(err.starts_with("rustimage: error: "), "{err}");
    }
}

/// A tar whose one member has a raw name (the tar crate refuses `..` in
/// its own setters, hostile archives don't).
/// (name, type, link target, data) of one raw member.
type Raw<'a> = (&'a [u8], tar::EntryType, &'a [u8], &'a [u8]);

fn raw_tar(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, data).unwrap();
    p
}

fn small_rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/hello"), vec![b'x'; 200_000]).unwrap();
    for i in 0..50 {
        fs::write(root.join(format!("etc/f{i}")), format!("{i}").repeat(3000)).unwrap();
    }
    root
}

#[test]
fn empty_random_and_unknown_files() {
    let tmp = tempdir("bad");
    let empty = write(tmp.path(), "empty.tar", b"");
    let err = fails(tmp.path(), &empty, &[], 1, "empty file");
    assert!(err.contains("empty.tar"), "{err}");
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let random = write(tmp.path(), "random.bin", &random);
    fails(tmp.path(), &random, &[], 1, "random.bin: not a tar archive");
    fails(
        tmp.path(),
        &tmp.path().join("missing.tar"),
        &[],
        1,
        "missing.tar: No such file",
    );
    let lz4 = write(tmp.path(), "x.tar.lz4", &[0x04, 0x22, 0x4d, 0x18, 0, 0, 0]);
    fails(tmp.path(), &lz4, &[], 1, "lz4");
}

#[test]
fn truncated_and_corrupt_archives_of_every_compression() {
    if !require_all(&["tar", "gzip", "pbzip2", "xz", "zstd"]) {
        return;
    }
    let tmp = tempdir("bad");
    let root = small_rootfs(tmp.path());
    for c in COMPRESSIONS {
        let good = tmp.path().join(format!("good{}", tarball_suffix(c)));
        make_tarball(&root, &good, c);
        let bytes = fs::read(&good).unwrap();
        let cut = write(
            tmp.path(),
            &format!("cut-{c}.tar"),
            &bytes[..bytes.len() * 2 / 3],
        );
        fails(tmp.path(), &cut, &[], 1, "corrupt or truncated");
        let mut bad = bytes.clone();
        // Plain tar carries no content checksum: hit a header there.
        let mid = if c == "none" { 100 } else { bad.len() / 2 };
        for b in &mut bad[mid..mid + 64] {
            *b ^= 0x5a;
        }
        let bad = write(tmp.path(), &format!("flipped-{c}.tar"), &bad);
        let err = fails(tmp.path(), &bad, &[], 1, "flipped-");
        assert!(
            err.contains("corrupt") || err.contains("checksum"),
            "{c}: {err}"
        );
    }
}

#[test]
fn tar_cut_at_an_entry_boundary_is_refused() {
    let tmp = tempdir("bad");
    let full = raw_tar(&[
        (b"etc/", tar::EntryType::Directory, b"", b""),
        (b"etc/a", tar::EntryType::Regular, b"", b"hello"),
    ]);
    // Two headers and one data block, no end-of-archive blocks.
    let cut = write(tmp.path(), "cut.tar", &full[..3 * 512]);
    fails(tmp.path(), &cut, &[], 1, "end-of-archive");
}

#[test]
fn entries_escaping_the_root_are_refused() {
    let tmp = tempdir("bad");
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "dotdot.tar",
            raw_tar(&[(b"../evil", tar::EntryType::Regular, b"", b"x")]),
            "'../evil': path leaves the root",
        ),
        (
            "inner-dotdot.tar",
            raw_tar(&[(b"etc/../../evil", tar::EntryType::Regular, b"", b"x")]),
            "path leaves the root",
        ),
        (
            "link-escape.tar",
            raw_tar(&[(b"etc/pw", tar::EntryType::Link, b"../../etc/passwd", b"")]),
            "hardlink target '../../etc/passwd': path leaves the root",
        ),
        (
            "link-missing.tar",
            raw_tar(&[(b"etc/pw", tar::EntryType::Link, b"etc/nothere", b"")]),
            "/etc/pw: hardlink to /etc/nothere, which does not precede it",
        ),
        (
            "whiteout.tar",
            raw_tar(&[(b"etc/.wh.passwd", tar::EntryType::Regular, b"", b"")]),
            "deletion marker",
        ),
    ];
    for (name, data, needle) in cases {
        let p = write(tmp.path(), name, &data);
        let err = fails(tmp.path(), &p, &[], 1, needle);
        assert!(err.contains(name), "{err}");
    }
}

#[test]
fn unwritable_outputs_leave_nothing() {
    let tmp = tempdir("bad");
    let root = small_rootfs(tmp.path());
    let run = |args: &[&str], needle: &str| {
        let out = run_fail(
            rustimage()
                .args(["build", "--squash", "--rootfs"])
                .arg(&root)
                .args(args),
        );
        check_failure(&out, 1, needle);
    };
    let nodir = tmp.path().join("no/such/dir/image.tar");
    run(&["-o", nodir.to_str().unwrap()], "no/such/dir/image.tar");
    assert!(!tmp.path().join("no").exists());

    let file = write(tmp.path(), "plainfile", b"x");
    run(
        &["-o", &format!("{}/image.tar", file.display())],
        "plainfile/image.tar",
    );

    // An existing directory that is not an image layout is never replaced.
    let precious = tmp.path().join("precious");
    fs::create_dir_all(&precious).unwrap();
    fs::write(precious.join("thesis.txt"), b"years of work").unwrap();
    run(
        &["--oci-dir", precious.to_str().unwrap()],
        "thesis.txt, which is not part of an OCI image layout",
    );
    assert_eq!(
        fs::read(precious.join("thesis.txt")).unwrap(),
        b"years of work"
    );
    assert_eq!(fs::read_dir(&precious).unwrap().count(), 1);
    // Nor is one that holds a file named oci-layout among other things,
    // at the top or inside blobs/.
    fs::write(precious.join("oci-layout"), b"{}").unwrap();
    run(
        &["--oci-dir", precious.to_str().unwrap()],
        "thesis.txt, which is not part of an OCI image layout",
    );
    assert!(precious.join("thesis.txt").exists());
    let stray = tmp.path().join("stray");
    fs::create_dir_all(stray.join("blobs/sha256")).unwrap();
    fs::write(stray.join("oci-layout"), b"{}").unwrap();
    fs::write(stray.join("blobs/sha256/photo.jpg"), b"jpeg").unwrap();
    run(&["--oci-dir", stray.to_str().unwrap()], "photo.jpg");
    assert!(stray.join("blobs/sha256/photo.jpg").exists());
    let names: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.to_string_lossy().starts_with(".precious")),
        "{names:?}"
    );
}

#[test]
fn a_read_only_filesystem_fails_cleanly() {
    // Root ignores permission bits, so use a read-only bind mount.
    if !require_root() {
        return;
    }
    let tmp = tempdir("bad");
    let root = small_rootfs(tmp.path());
    let ro = tmp.path().join("ro");
    fs::create_dir_all(&ro).unwrap();
    let mount = |args: &[&str]| run_ok(std::process::Command::new("mount").args(args));
    mount(&["--bind", ro.to_str().unwrap(), ro.to_str().unwrap()]);
    mount(&["-o", "remount,bind,ro", ro.to_str().unwrap()]);
    let out = run_fail(
        rustimage()
            .args(["build", "--squash", "--rootfs"])
            .arg(&root)
            .arg("-o")
            .arg(ro.join("image.tar")),
    );
    run_ok(std::process::Command::new("umount").arg(&ro));
    check_failure(&out, 1, "Read-only file system");
    assert_eq!(fs::read_dir(&ro).unwrap().count(), 0);
}

#[test]
fn usage_mistakes_exit_2() {
    let tmp = tempdir("bad");
    let root = small_rootfs(tmp.path());
    let out = tmp.path().join("x.tar");
    let o = out.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&[], "no output"),
        (&["-o", o, "--env", "NOEQUALS"], "--env 'NOEQUALS'"),
        (&["-o", o, "--tag", "Bad:Name"], "--tag"),
        (
            &["-o", o, "--created", "yesterday"],
            "--created 'yesterday'",
        ),
        (
            &["-o", o, "--compression-level", "13"],
            "--compression-level 13",
        ),
        (&["-o", o, "--expose", "99999"], "--expose '99999'"),
        (&["-o", o, "--entrypoint", "[\"sh\","], "--entrypoint"),
        (&["-o", o, "--workdir", "relative"], "--workdir"),
        (&["-o", o, "--compression", "lzma"], "invalid value 'lzma'"),
    ];
    for (args, needle) in cases {
        let res = run_fail(
            rustimage()
                .args(["build", "--squash", "--rootfs"])
                .arg(&root)
                .args(*args),
        );
        check_failure(&res, 2, needle);
        assert!(!out.exists());
    }
    let res = run_fail(
        rustimage()
            .args(["build", "--squash", "--rootfs"])
            .arg(&root)
            .args(["-o", o])
            .env("SOURCE_DATE_EPOCH", "soon"),
    );
    check_failure(&res, 2, "SOURCE_DATE_EPOCH");
}

#[test]
fn inspect_refuses_what_is_not_an_image() {
    let tmp = tempdir("bad");
    let junk = write(
        tmp.path(),
        "junk.tar",
        &raw_tar(&[(b"hello", tar::EntryType::Regular, b"", b"hi")]),
    );
    let out = run_fail(rustimage().arg("inspect").arg(&junk));
    check_failure(&out, 1, "junk.tar: neither index.json nor manifest.json");
    let mut f = fs::File::create(tmp.path().join("garbage")).unwrap();
    f.write_all(&[0xff; 3000]).unwrap();
    let out = run_fail(rustimage().arg("inspect").arg(tmp.path().join("garbage")));
    check_failure(&out, 1, "garbage: not an image archive");
}

#[test]
fn limits_give_clear_errors() {
    let tmp = tempdir("bad");
    // A decompression bomb: 64 MiB of zeros in a few KiB of gzip.
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_path("zeros").unwrap();
    h.set_size(64 << 20);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    tar.append(&h, std::io::repeat(0).take(64 << 20)).unwrap();
    let raw = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&raw).unwrap();
    let bomb = write(tmp.path(), "bomb.tar.gz", &gz.finish().unwrap());
    fails(
        tmp.path(),
        &bomb,
        &["--max-size", "1M"],
        1,
        "bomb.tar.gz: the archive decompresses to more than --max-size",
    );

    // A pax header of 2 MiB.
    let big = raw_pax(&[("comment", vec![b'x'; 2 << 20])]);
    let p = write(tmp.path(), "bigpax.tar", &big);
    fails(tmp.path(), &p, &[], 1, "over 1 MiB of header data");

    // A symlink target beyond PATH_MAX, an xattr beyond 64 KiB.
    let p = write(
        tmp.path(),
        "longlink.tar",
        &raw_pax(&[("linkpath", vec![b'a'; 5000])]),
    );
    fails(
        tmp.path(),
        &p,
        &[],
        1,
        "symlink target is longer than 4096 bytes",
    );
    let p = write(
        tmp.path(),
        "bigxattr.tar",
        &raw_pax(&[("SCHILY.xattr.user.big", vec![b'v'; 70 << 10])]),
    );
    fails(tmp.path(), &p, &[], 1, "exceeds Linux's limits");
}

/// A tar with one pax header carrying `records`, then a symlink entry.
fn raw_pax(records: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let refs: Vec<(&str, &[u8])> = records.iter().map(|(k, v)| (*k, v.as_slice())).collect();
    b.append_pax_extensions(refs).unwrap();
    let mut h = tar::Header::new_ustar();
    h.as_old_mut().name[..4].copy_from_slice(b"link");
    h.as_old_mut().linkname[..6].copy_from_slice(b"target");
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_mode(0o777);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(0);
    h.set_cksum();
    b.append(&h, std::io::empty()).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn gzip_trailers_other_than_zeros_are_refused() {
    // Zeros after the last gzip member are padding; anything else is not.
    let tmp = tempdir("bad");
    let tar = raw_tar(&[(b"etc/a", tar::EntryType::Regular, b"", b"hello")]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let junk = write(tmp.path(), "junk.tar.gz", &[&gz[..], b"junk"].concat());
    fails(
        tmp.path(),
        &junk,
        &[],
        1,
        "junk.tar.gz: corrupt or truncated",
    );
    let after = write(
        tmp.path(),
        "after-zeros.tar.gz",
        &[&gz[..], &[0; 100], b"x"].concat(),
    );
    fails(
        tmp.path(),
        &after,
        &[],
        1,
        "data after the zero padding that follows the gzip stream",
    );
}

/// A one-file tar: `records` in a pax header (if any), then the file with
/// `data`; `header` edits the file's header last.
fn pax_file(records: &[(&str, &[u8])], data: &[u8], header: impl Fn(&mut tar::Header)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    if !records.is_empty() {
        b.append_pax_extensions(records.iter().copied()).unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_path("usr/bin/tool").unwrap();
    h.set_size(data.len() as u64);
    h.set_mode(0o4755);
    h.set_uid(1000);
    h.set_gid(1000);
    h.set_mtime(0);
    header(&mut h);
    h.set_cksum();
    b.append(&h, data).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn owner_ids_beyond_32_bits_are_refused() {
    // A PAX uid of 2^32 used to become 0 in the image: a setuid-root file.
    let tmp = tempdir("bad");
    let pax: [(&str, &str); 5] = [
        ("uid", "4294967296"),
        ("uid", "18446744073709551623"),
        ("uid", "-1"),
        ("gid", "4294967296"),
        // (uid_t)-1: chown(2) leaves such a file owned by whoever unpacks it.
        ("uid", "4294967295"),
    ];
    for (i, (key, value)) in pax.into_iter().enumerate() {
        let tar = pax_file(&[(key, value.as_bytes())], b"#!", |_| {});
        let p = write(tmp.path(), &format!("pax-{i}.tar"), &tar);
        let err = fails(
            tmp.path(),
            &p,
            &[],
            1,
            &format!("/usr/bin/tool: bad header: {key} {value} is out of range"),
        );
        assert!(err.contains(&format!("pax-{i}.tar")), "{err}");
    }
    // The same in the header's own fields (GNU base-256 numbers).
    let big = pax_file(&[], b"#!", |h| h.set_uid(1 << 32));
    let p = write(tmp.path(), "base256.tar", &big);
    fails(tmp.path(), &p, &[], 1, "uid 4294967296 is out of range");
    let negative = pax_file(&[], b"#!", |h| h.as_old_mut().gid = [0xff; 8]);
    let p = write(tmp.path(), "negative.tar", &negative);
    fails(tmp.path(), &p, &[], 1, "gid -1 is out of range");
}

/// Pax records by key.
type Records = Vec<(&'static str, Vec<u8>)>;

#[test]
fn hostile_sparse_maps_are_refused() {
    let tmp = tempdir("bad");
    let v01 = |map: &str, size: &str| -> Records {
        vec![
            ("GNU.sparse.major", b"0".to_vec()),
            ("GNU.sparse.minor", b"1".to_vec()),
            ("GNU.sparse.name", b"var/log/lastlog".to_vec()),
            ("GNU.sparse.size", size.as_bytes().to_vec()),
            ("GNU.sparse.map", map.as_bytes().to_vec()),
        ]
    };
    let v10 = vec![
        ("GNU.sparse.major", b"1".to_vec()),
        ("GNU.sparse.minor", b"0".to_vec()),
        ("GNU.sparse.name", b"var/log/lastlog".to_vec()),
        ("GNU.sparse.realsize", b"4096".to_vec()),
    ];
    let mut map_block = b"999999999999999999\n0\n512\n".to_vec();
    map_block.resize(512, 0);
    let cases: Vec<(&str, Records, Vec<u8>, &str)> = vec![
        (
            "overlap",
            v01("0,512,256,512", "4096"),
            vec![1; 1024],
            "/var/log/lastlog: the sparse map's segments overlap",
        ),
        (
            "unsorted",
            v01("1024,512,0,512", "4096"),
            vec![1; 1024],
            "out of order",
        ),
        (
            "beyond",
            v01("0,512,8192,512", "4096"),
            vec![1; 1024],
            "beyond the file's size of 4096 bytes",
        ),
        (
            "short",
            v01("0,512,1024,512", "4096"),
            vec![1; 512],
            "lists 1024 bytes of data, the archive holds 512",
        ),
        (
            "huge-count",
            v10,
            [map_block, vec![1; 512]].concat(),
            "the sparse map runs past the entry's data",
        ),
        (
            "version",
            vec![
                ("GNU.sparse.major", b"7".to_vec()),
                ("GNU.sparse.minor", b"0".to_vec()),
            ],
            vec![1; 512],
            "unsupported GNU sparse format version 7.0",
        ),
    ];
    for (name, records, data, needle) in cases {
        let recs: Vec<(&str, &[u8])> = records.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        let p = write(
            tmp.path(),
            &format!("{name}.tar"),
            &pax_file(&recs, &data, |_| {}),
        );
        fails(tmp.path(), &p, &[], 1, needle);
    }

    // A few bytes claiming an exabyte: the holes count against --max-size.
    let records = v01("0,512", "1152921504606846976");
    let recs: Vec<(&str, &[u8])> = records.iter().map(|(k, v)| (*k, v.as_slice())).collect();
    let p = write(
        tmp.path(),
        "exabyte.tar",
        &pax_file(&recs, &[1; 512], |_| {}),
    );
    fails(
        tmp.path(),
        &p,
        &["--max-size", "1G"],
        1,
        "exabyte.tar: the archive decompresses to more than --max-size",
    );

    // Old GNU ('S'): the map in the header, here out of order.
    let old = pax_file(&[], &[1; 1024], |h| {
        h.set_entry_type(tar::EntryType::GNUSparse);
        let g = h.as_gnu_mut().unwrap();
        g.sparse[0].set_offset(2048);
        g.sparse[0].set_length(512);
        g.sparse[1].set_offset(0);
        g.sparse[1].set_length(512);
        g.set_real_size(4096);
    });
    let p = write(tmp.path(), "old-gnu.tar", &old);
    fails(tmp.path(), &p, &[], 1, "overlapping sparse blocks");
}

#[test]
fn malformed_acls_are_refused() {
    let tmp = tempdir("bad");
    let acl: &[u8] = b"user::rw-,user:1000:r--,group::r--,other::r--";
    let p = write(
        tmp.path(),
        "acl.tar",
        &pax_file(&[("SCHILY.acl.access", acl)], b"#!", |_| {}),
    );
    fails(
        tmp.path(),
        &p,
        &[],
        1,
        "/usr/bin/tool: bad SCHILY.acl.access: the ACL names users or groups but has no mask",
    );
    // Linux keeps default ACLs on directories only.
    let default: &[u8] = b"user::rwx,group::r-x,other::r-x";
    let p = write(
        tmp.path(),
        "default.tar",
        &pax_file(&[("SCHILY.acl.default", default)], b"#!", |_| {}),
    );
    fails(
        tmp.path(),
        &p,
        &[],
        1,
        "SCHILY.acl.default on an entry that can't carry it",
    );
}

/// An image read back (inspect, push, index) is checked before anything is
/// trusted: names can't leave it, sizes must be there and true, documents
/// must match their digests.
#[test]
fn images_read_back_are_checked_before_use() {
    let tmp = tempdir("bad");
    let sha = |b: &[u8]| format!("sha256:{}", sha256_hex(b));
    let layout = |name: &str, files: &[(&str, &[u8])]| -> PathBuf {
        let dir = tmp.path().join(name);
        for (path, data) in files {
            let p = dir.join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, data).unwrap();
        }
        dir
    };
    let inspect_fails = |image: &Path, needle: &str| {
        let out = run_fail(rustimage().arg("inspect").arg(image));
        check_failure(&out, 1, needle);
        let out = run_fail(
            rustimage()
                .args(["push", "--insecure", "--timeout", "1"])
                .arg(image)
                .arg("127.0.0.1:9/x/y:1"),
        );
        check_failure(&out, 1, needle);
    };

    // A Docker manifest.json whose Config leaves the archive.
    let secret = tmp.path().join("secret.json");
    fs::write(
        &secret,
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    )
    .unwrap();
    let escape = raw_tar(&[(
        b"manifest.json",
        tar::EntryType::Regular,
        b"",
        br#"[{"Config":"../secret.json","RepoTags":["x:1"],"Layers":[]}]"#,
    )]);
    let archive = write(tmp.path(), "escape.tar", &escape);
    inspect_fails(&archive, "'../secret.json' is not a name inside the image");
    let dir = layout(
        "escape-dir",
        &[(
            "manifest.json",
            br#"[{"Config":"../secret.json","RepoTags":["x:1"],"Layers":[]}]"#,
        )],
    );
    inspect_fails(&dir, "'../secret.json' is not a name inside the image");

    // A blob that is a symlink out of the layout directory.
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[]}}"#,
        sha(config),
        config.len()
    );
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{}}}]}}"#,
        sha(manifest.as_bytes()),
        manifest.len()
    );
    let blob = |d: &str| format!("blobs/sha256/{}", &d[7..]);
    let good = layout(
        "good",
        &[
            ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
            ("index.json", index.as_bytes()),
            (&blob(&sha(manifest.as_bytes())), manifest.as_bytes()),
            (&blob(&sha(config)), config),
        ],
    );
    run_ok(rustimage().arg("inspect").arg(&good));
    let config_path = good.join(blob(&sha(config)));
    fs::remove_file(&config_path).unwrap();
    std::os::unix::fs::symlink(&secret, &config_path).unwrap();
    inspect_fails(&good, "is not a regular file");
    fs::remove_file(&config_path).unwrap();
    fs::write(&config_path, config).unwrap();

    // A descriptor without a size, or with a wrong one.
    let unsized_index = index.replace(&format!(r#","size":{}"#, manifest.len()), "");
    fs::write(good.join("index.json"), &unsized_index).unwrap();
    inspect_fails(&good, "missing field `size`");
    let wrong = index.replace(
        &format!(r#""size":{}"#, manifest.len()),
        &format!(r#""size":{}"#, manifest.len() + 1),
    );
    fs::write(good.join("index.json"), &wrong).unwrap();
    inspect_fails(&good, "its descriptor says");

    // A manifest that does not match its digest.
    fs::write(good.join("index.json"), &index).unwrap();
    let tampered = manifest
        .replace("amd64", "arm64")
        .replace("\"layers\":[]", "\"layers\" :[]");
    fs::write(
        good.join(blob(&sha(manifest.as_bytes()))),
        &tampered[..manifest.len()],
    )
    .unwrap();
    inspect_fails(&good, "does not match its digest");
}

/// A tar whose first header is a pax header holding `data` as it is, then
/// a file.
fn raw_pax_data(data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut x = tar::Header::new_ustar();
    x.set_path("PaxHeaders/tool").unwrap();
    x.set_entry_type(tar::EntryType::XHeader);
    x.set_size(data.len() as u64);
    x.set_cksum();
    b.append(&x, data).unwrap();
    let tar = pax_file(&[], b"#!", |_| {});
    let mut out = b.into_inner().unwrap();
    out.truncate(out.len() - 1024);
    out.extend(tar);
    out
}

#[test]
fn malformed_pax_records_are_refused() {
    // Records are framed by their length, which must be there and right;
    // their values may hold anything (the file after them is fine).
    let tmp = tempdir("bad");
    let cases: [(&str, &[u8], &str); 4] = [
        (
            "overrun",
            b"99 path=x\n",
            "length 99 runs past the header's end",
        ),
        ("zero", b"0 path=x\n", "length 0 is too short"),
        ("letters", b"ab path=x\n", "length 'ab' is not a number"),
        ("cut", b"9 path=xy", "do not end in a newline"),
    ];
    for (name, data, needle) in cases {
        let p = write(tmp.path(), &format!("{name}.tar"), &raw_pax_data(data));
        let err = fails(tmp.path(), &p, &[], 1, needle);
        assert!(
            err.contains("corrupt or truncated tar archive: header at byte 0: bad pax record"),
            "{err}"
        );
    }
    // A name may hold a newline; the message stays one line.
    let p = write(
        tmp.path(),
        "nl-name.tar",
        &raw_tar(&[(b"../a\nb", tar::EntryType::Regular, b"", b"x")]),
    );
    fails(
        tmp.path(),
        &p,
        &[],
        1,
        "entry '../a\\nb': path leaves the root",
    );
    let ok = write(
        tmp.path(),
        "newline.tar",
        &raw_pax_data(b"31 SCHILY.xattr.user.nl=a\nb=c\n\n"),
    );
    let out = tmp.path().join("ok.tar");
    run_ok(
        rustimage()
            .args(["build", "--squash", "-q", "--rootfs"])
            .arg(&ok)
            .arg("-o")
            .arg(&out),
    );
}

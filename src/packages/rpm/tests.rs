use super::super::testutil::*;
use super::*;

fn expect_demo(p: &Package) {
    assert_eq!(p.name, "demo");
    assert_eq!(p.version, "2:1.0-r0");
    assert_eq!(p.arch, "noarch");
    assert_eq!(p.recipe.as_deref(), Some("demo"));
    assert_eq!(p.license.as_deref(), Some("MIT"));
    assert_eq!(p.format, Format::Rpm);
    let mut got: Vec<(String, FileKind)> = p
        .files
        .iter()
        .map(|f| {
            (
                String::from_utf8_lossy(&f.path).into_owned(),
                f.kind.clone(),
            )
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let link = |t: &str| FileKind::Hardlink {
        target: t.as_bytes().to_vec(),
    };
    // rpm stores a hard link set's content with its last name; the first
    // name the payload gives carries it here, the others link to it.
    let (a, b) = match &got[1].1 {
        FileKind::File { .. } => (file(b"same\n"), link("usr/bin/a")),
        _ => (link("usr/bin/b"), file(b"same\n")),
    };
    let (e1, e2) = match &got[5].1 {
        FileKind::File { .. } => (file(b""), link("usr/share/empty1")),
        _ => (link("usr/share/empty2"), file(b"")),
    };
    let want = vec![
        ("etc/demo".to_string(), FileKind::Dir),
        ("usr/bin/a".into(), a),
        ("usr/bin/b".into(), b),
        ("usr/bin/hello".into(), file(b"hello\n")),
        (
            "usr/bin/hi".into(),
            FileKind::Symlink {
                target: b"hello".to_vec(),
            },
        ),
        ("usr/share/empty1".into(), e1),
        ("usr/share/empty2".into(), e2),
    ];
    assert_eq!(got, want, "no ghost, every kind");
}

#[test]
fn reads_rpmbuild_packages_with_every_payload_compressor() {
    for payload in ["w19.zstdio", "w6.xzdio", "w9.gzdio", "w9.bzdio", "w6.lzdio"] {
        let dir = tempfile::tempdir().unwrap();
        let Some(out) = rpmbuild(dir.path(), "noarch", &[("_binary_payload", payload)]) else {
            return;
        };
        let p = read_rpm(&out.join("demo-1.0-r0.noarch.rpm")).unwrap();
        expect_demo(&p);
        let extra = read_rpm(&out.join("libdemo-extra-1.1+git-r0.noarch.rpm")).unwrap();
        assert_eq!(extra.name, "libdemo-extra");
        assert_eq!(extra.version, "2:1.1+git-r0");
        assert_eq!(
            extra.recipe.as_deref(),
            Some("demo"),
            "SOURCERPM names the recipe"
        );
        assert_eq!(extra.files.len(), 1);
        assert_eq!(extra.files[0].kind, file(b"extra\n"));
        assert_eq!(
            super::super::read_package(&out.join("demo-1.0-r0.noarch.rpm")).unwrap(),
            p
        );
    }
}

#[test]
fn md5_rpms_get_sha256_from_the_payload() {
    let dir = tempfile::tempdir().unwrap();
    let defines = [
        ("_binary_payload", "w9.gzdio"),
        ("_binary_filedigest_algorithm", "1"),
    ];
    let Some(out) = rpmbuild(dir.path(), "noarch", &defines) else {
        return;
    };
    expect_demo(&read_rpm(&out.join("demo-1.0-r0.noarch.rpm")).unwrap());
}

#[test]
fn corrupt_rpms_are_errors_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let Some(out) = rpmbuild(dir.path(), "noarch", &[("_binary_payload", "w9.gzdio")]) else {
        return;
    };
    let bytes = std::fs::read(out.join("demo-1.0-r0.noarch.rpm")).unwrap();
    let bad = dir.path().join("bad.rpm");
    for cut in (0..bytes.len() - 1).step_by(61) {
        std::fs::write(&bad, &bytes[..cut]).unwrap();
        let e = read_rpm(&bad).expect_err(&format!("cut at {cut} accepted"));
        assert_eq!(e.path, bad);
    }
    for at in (0..bytes.len()).step_by(17) {
        let mut b = bytes.clone();
        b[at] ^= 0x5a;
        std::fs::write(&bad, &b).unwrap();
        let _ = read_rpm(&bad);
    }
    // The last bytes are compressed payload: a flip there is caught.
    let mut b = bytes.clone();
    let n = b.len();
    b[n - 12] ^= 0xff;
    std::fs::write(&bad, &b).unwrap();
    assert!(read_rpm(&bad).is_err());
    let mut b = bytes;
    b[0] = 0;
    std::fs::write(&bad, &b).unwrap();
    let e = read_rpm(&bad).unwrap_err();
    assert!(e.reason.contains("bad lead magic"), "{e}");
    std::fs::write(&bad, random_bytes(1000)).unwrap();
    assert!(read_rpm(&bad).is_err());
}

fn tags(files: &[(&str, u16, u32, &str)], digest_algo: Option<u32>) -> Vec<(u32, RpmTag)> {
    let mut t = vec![
        (NAME, RpmTag::Str("old")),
        (VERSION, RpmTag::Str("1.0")),
        (RELEASE, RpmTag::Str("r1")),
        (ARCH, RpmTag::Str("core2_64")),
        (SOURCERPM, RpmTag::Str("old-recipe-1.0-r1.src.rpm")),
        (PAYLOADCOMPRESSOR, RpmTag::Str("gzip")),
        (
            OLDFILENAMES,
            RpmTag::Strs(files.iter().map(|f| f.0.as_bytes().to_vec()).collect()),
        ),
        (FILEMODES, RpmTag::I16(files.iter().map(|f| f.1).collect())),
        (FILESIZES, RpmTag::I32(files.iter().map(|f| f.2).collect())),
        (
            FILEDIGESTS,
            RpmTag::Strs(files.iter().map(|f| f.3.as_bytes().to_vec()).collect()),
        ),
    ];
    if let Some(a) = digest_algo {
        t.push((FILEDIGESTALGO, RpmTag::I32(vec![a])));
    }
    t
}

fn payload(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut cpio = Vec::new();
    for (i, (name, mode, data)) in entries.iter().enumerate() {
        cpio.extend(cpio_entry(name.as_bytes(), i as u32 + 1, *mode, 1, data));
    }
    cpio.extend(cpio_entry(b"TRAILER!!!", 0, 0, 1, b""));
    gzip(&cpio)
}

const HELLO_SHA: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

#[test]
fn reads_old_filenames_and_checks_header_against_payload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.rpm");
    let write = |tags: &[(u32, RpmTag)], payload: &[u8]| {
        std::fs::write(&path, rpm_bytes(tags, payload)).unwrap();
        read_rpm(&path)
    };
    let hello = [("/usr/bin/hello", 0o100755u16, 6u32, HELLO_SHA)];
    let good = payload(&[("./usr/bin/hello", 0o100755, b"hello\n")]);
    let p = write(&tags(&hello, Some(8)), &good).unwrap();
    assert_eq!((p.name.as_str(), p.version.as_str()), ("old", "1.0-r1"));
    assert_eq!(p.recipe.as_deref(), Some("old-recipe"));
    assert_eq!(p.files.len(), 1);
    assert_eq!(p.files[0].kind, file(b"hello\n"));

    let wrong = payload(&[("./usr/bin/hello", 0o100755, b"HELLO\n")]);
    let e = write(&tags(&hello, Some(8)), &wrong).unwrap_err();
    assert!(e.reason.contains("SHA-256"), "{e}");
    // MD5 digests (no FILEDIGESTALGO) are not compared: the payload wins.
    let md5 = [(
        "/usr/bin/hello",
        0o100755u16,
        6u32,
        "b1946ac92492d2347c6235b4d2611184",
    )];
    assert!(write(&tags(&md5, None), &wrong).is_ok());
    let e = write(&tags(&hello, Some(8)), &payload(&[])).unwrap_err();
    assert!(e.reason.contains("not in the payload"), "{e}");
    let extra = payload(&[
        ("./usr/bin/hello", 0o100755, b"hello\n"),
        ("./usr/bin/sneaky", 0o100755, b"x"),
    ]);
    let e = write(&tags(&hello, Some(8)), &extra).unwrap_err();
    assert!(e.reason.contains("not in the header"), "{e}");
    let bad_mode = payload(&[("./usr/bin/hello", 0o100644, b"hello\n")]);
    assert!(
        write(&tags(&hello, Some(8)), &bad_mode)
            .unwrap_err()
            .reason
            .contains("mode")
    );
    let short = [("/usr/bin/hello", 0o100755u16, 7u32, "")];
    assert!(
        write(&tags(&short, Some(8)), &good)
            .unwrap_err()
            .reason
            .contains("bytes")
    );
    let escape = [("/usr/../etc/passwd", 0o100755u16, 6u32, "")];
    assert!(write(&tags(&escape, Some(8)), &good).is_err());
    let mut uneven = tags(&hello, Some(8));
    uneven.push((FILEFLAGS, RpmTag::I32(vec![0, 0])));
    assert!(
        write(&uneven, &good)
            .unwrap_err()
            .reason
            .contains("FILEFLAGS")
    );
    let mut other = tags(&hello, Some(8));
    other.push((PAYLOADFORMAT, RpmTag::Str("drpm")));
    assert!(write(&other, &good).unwrap_err().reason.contains("drpm"));
}

#[test]
fn refuses_absurd_headers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absurd.rpm");
    let base = rpm_bytes(&tags(&[], None), &payload(&[]));
    assert!(
        std::fs::write(&path, &base).is_ok() && read_rpm(&path).unwrap().files.is_empty(),
        "a package with no files is fine"
    );
    // The main header starts after the lead and the 16-byte empty signature.
    let main = 96 + 16;
    let mut b = base.clone();
    b[main + 8..main + 12].copy_from_slice(&2_000_000u32.to_be_bytes());
    std::fs::write(&path, &b).unwrap();
    assert!(
        read_rpm(&path)
            .unwrap_err()
            .reason
            .contains("index entries")
    );
    let mut b = base.clone();
    b[main + 12..main + 16].copy_from_slice(&(300u32 << 20).to_be_bytes());
    std::fs::write(&path, &b).unwrap();
    assert!(read_rpm(&path).unwrap_err().reason.contains("256 MiB"));
    let mut b = base.clone();
    b[main + 12..main + 16].copy_from_slice(&(200u32 << 20).to_be_bytes());
    std::fs::write(&path, &b).unwrap();
    assert!(read_rpm(&path).unwrap_err().reason.contains("truncated"));
    // An index entry pointing past the data.
    let mut b = base.clone();
    b[main + 16 + 8..main + 16 + 12].copy_from_slice(&u32::MAX.to_be_bytes());
    std::fs::write(&path, &b).unwrap();
    assert!(read_rpm(&path).unwrap_err().reason.contains("outside"));
    let mut b = base;
    b[main] = 0;
    std::fs::write(&path, &b).unwrap();
    assert!(read_rpm(&path).unwrap_err().reason.contains("header magic"));
}

#[test]
fn recipe_from_source_rpm() {
    assert_eq!(
        source_name("glibc-2.39+git-r0.src.rpm").as_deref(),
        Some("glibc")
    );
    assert_eq!(
        source_name("gcc-runtime-14.2.0-r0.src.rpm").as_deref(),
        Some("gcc-runtime")
    );
    assert_eq!(source_name("x-1-r0.nosrc.rpm").as_deref(), Some("x"));
    assert_eq!(source_name("nodash.src.rpm"), None);
    assert_eq!(source_name("a-b.rpm"), None);
}

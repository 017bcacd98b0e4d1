use std::path::{Path, PathBuf};

use super::super::testutil::*;
use super::super::{Format, read_manifest, read_package};
use super::*;

fn ipk(dir: &Path, file: &str, name: &str, version: &str, arch: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(file);
    let control = control_text(name, version, arch, Some(name));
    write_ipk(&path, &control, &sample_data(), Comp::Zstd);
    path
}

/// A deb as package_deb writes it (without dpkg-deb, for speed).
fn deb(dir: &Path, file: &str, name: &str, version: &str, dpkg: &str, arch: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(file);
    let mut control = control_text(name, version, dpkg, Some(name));
    control.push_str(&format!("PackageArch: {arch}\n"));
    write_ipk(&path, &control, &sample_data(), Comp::Xz);
    path
}

/// A small rpm as package_rpm writes it (a real rpmbuild one is in
/// `real_rpmbuild_output_is_found`).
fn rpm(dir: &Path, name: &'static str, version: &'static str, arch: &'static str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!("{name}-{version}-r0.{arch}.rpm"));
    let tags = vec![
        (1000, RpmTag::Str(name)),
        (1001, RpmTag::Str(version)),
        (1002, RpmTag::Str("r0")),
        (1022, RpmTag::Str(arch)),
    ];
    let mut cpio = cpio_entry(b"TRAILER!!!", 0, 0, 1, b"");
    cpio = gzip(&cpio);
    std::fs::write(&path, rpm_bytes(&tags, &cpio)).unwrap();
    path
}

fn manifest(dir: &Path, text: &str) -> Vec<ManifestLine> {
    let path = dir.join("image.manifest");
    std::fs::write(&path, text).unwrap();
    read_manifest(&path).unwrap()
}

#[test]
fn finds_ipks_as_bitbake_lays_them_out() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("deploy/ipk");
    let busybox = ipk(
        &root.join("core2-64"),
        "busybox_1.36.1-r0_core2-64.ipk",
        "busybox",
        "1.36.1-r0",
        "core2-64",
    );
    let base = ipk(
        &root.join("qemux86_64"),
        "base-files_3.0.14-r0_qemux86_64.ipk",
        "base-files",
        "3.0.14-r0",
        "qemux86_64",
    );
    // The epoch is in the control file and the manifest, not the file name.
    let epoch = ipk(
        &root.join("all"),
        "tzdata_2024a-r0_all.ipk",
        "tzdata",
        "1:2024a-r0",
        "all",
    );
    // IPK_HIERARCHICAL_FEED: <arch>/<libX>/<stem>/.
    let hier = ipk(
        &root.join("core2-64/libz/libz"),
        "libz1_1.3.1-r0_core2-64.ipk",
        "libz1",
        "1.3.1-r0",
        "core2-64",
    );
    // opkg-build keeps a two-digit epoch in the name; `-O` writes .opk.
    let epoch10 = ipk(
        &root.join("all"),
        "tz_10:1-r0_all.opk",
        "tz",
        "10:1-r0",
        "all",
    );
    // Found by content, whatever the name.
    let odd = ipk(&root.join("misc"), "renamed.bin", "odd", "1-r0", "all");
    // Named for one package, holding another.
    ipk(
        &root.join("all"),
        "liar_1-r0_all.ipk",
        "other",
        "1-r0",
        "all",
    );
    // Noise a feed holds.
    std::fs::write(root.join("Packages"), "Package: busybox\n").unwrap();
    std::fs::write(root.join("Packages.gz"), gzip(b"Package: busybox\n")).unwrap();

    let feeds = Feeds::scan(std::slice::from_ref(&root)).unwrap();
    assert_eq!(feeds.entries.len(), 7);
    let lines = manifest(
        tmp.path(),
        "base-files qemux86_64 3.0.14-r0\nbusybox core2-64 1.36.1-r0\nlibz1 core2-64 1.3.1-r0\n\
         liar all 1-r0\nodd all 1-r0\ntz all 10:1-r0\ntzdata all 1:2024a-r0\n\
         busybox core2-64 1.36.2-r0\n",
    );
    let found: Vec<Option<PathBuf>> = lines.iter().map(|l| feeds.find(l)).collect();
    assert_eq!(
        found,
        [
            Some(base),
            Some(busybox.clone()),
            Some(hier),
            None,
            Some(odd),
            Some(epoch10),
            Some(epoch),
            None
        ]
    );
    let p = read_package(&busybox).unwrap();
    assert!(p.matches(&lines[1]));
    assert_eq!(p.format, Format::Ipk);
}

#[test]
fn finds_debs_by_package_arch() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("deb");
    // Same name and version in two arch dirs: the manifest's PackageArch
    // (`_` written `-`) decides; the file names only have the dpkg arch.
    let machine = deb(
        &root.join("qemux86_64"),
        "base-files_3.0.14-r0_amd64.deb",
        "base-files",
        "3.0.14-r0",
        "amd64",
        "qemux86-64",
    );
    let other = deb(
        &root.join("genericx86_64"),
        "base-files_3.0.14-r0_amd64.deb",
        "base-files",
        "3.0.14-r0",
        "amd64",
        "genericx86-64",
    );
    let epoch = deb(
        &root.join("core2-64"),
        "libfoo1_1.2-r3_amd64.deb",
        "libfoo1",
        "2:1.2-r3",
        "amd64",
        "core2-64",
    );
    let all = deb(
        &root.join("all"),
        "tzdata_2024a-r0_all.deb",
        "tzdata",
        "2024a-r0",
        "all",
        "all",
    );
    let feeds = Feeds::scan(std::slice::from_ref(&root)).unwrap();
    let lines = manifest(
        tmp.path(),
        "base-files qemux86-64 3.0.14-r0\nbase-files genericx86-64 3.0.14-r0\n\
         libfoo1 core2-64 2:1.2-r3\ntzdata all 2024a-r0\nlibfoo1 core2-32 2:1.2-r3\n",
    );
    let found: Vec<Option<PathBuf>> = lines.iter().map(|l| feeds.find(l)).collect();
    assert_eq!(
        found,
        [
            Some(machine),
            Some(other),
            Some(epoch.clone()),
            Some(all),
            None
        ]
    );
    assert_eq!(read_package(&epoch).unwrap().format, Format::Deb);
}

#[test]
fn finds_rpms_by_version_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("rpm");
    let base = rpm(
        &root.join("qemux86_64"),
        "base-files",
        "3.0.14",
        "qemux86_64",
    );
    let busybox = rpm(&root.join("core2_64"), "busybox", "1.36.1", "core2_64");
    // A name that is a prefix of another's.
    let syslog = rpm(
        &root.join("core2_64"),
        "busybox-syslog",
        "1.36.1",
        "core2_64",
    );
    let all = rpm(&root.join("noarch"), "tzdata", "2024a", "noarch");
    let feeds = Feeds::scan(std::slice::from_ref(&root)).unwrap();
    let lines = manifest(
        tmp.path(),
        "base-files qemux86_64 3.0.14\nbusybox core2_64 1.36.1\nbusybox-syslog core2_64 1.36.1\n\
         tzdata noarch 2024a\nbusybox core2_64 1.36.1-r0\nbusybox core2_64 1.36\n",
    );
    let found: Vec<Option<PathBuf>> = lines.iter().map(|l| feeds.find(l)).collect();
    assert_eq!(
        found,
        [
            Some(base),
            Some(busybox.clone()),
            Some(syslog),
            Some(all),
            Some(busybox),
            None
        ]
    );
}

#[test]
fn earlier_dirs_win_and_flat_dirs_work() {
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("first");
    let second = tmp.path().join("second");
    let name = "busybox_1.36.1-r0_core2-64.ipk";
    let a = ipk(&first, name, "busybox", "1.36.1-r0", "core2-64");
    ipk(&second, name, "busybox", "1.36.1-r0", "core2-64");
    let feeds = Feeds::scan(&[first, second]).unwrap();
    let line = ManifestLine {
        name: "busybox".into(),
        arch: "core2-64".into(),
        version: "1.36.1-r0".into(),
        line: 1,
    };
    assert_eq!(feeds.find(&line), Some(a));
    let e = Feeds::scan(&[tmp.path().join("missing")]).err().unwrap();
    assert!(e.to_string().contains("missing"), "{e}");
}

#[test]
fn an_unreadable_named_package_is_still_returned() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("busybox_1.36.1-r0_core2-64.ipk");
    std::fs::write(&path, b"!<arch>\ntruncated").unwrap();
    let feeds = Feeds::scan(&[tmp.path().to_path_buf()]).unwrap();
    let line = ManifestLine {
        name: "busybox".into(),
        arch: "core2-64".into(),
        version: "1.36.1-r0".into(),
        line: 1,
    };
    assert_eq!(feeds.find(&line), Some(path.clone()));
    assert!(read_package(&path).is_err());
}

#[test]
fn real_rpmbuild_output_is_found() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(out) = rpmbuild(
        tmp.path(),
        "core2_64-poky-linux",
        &[("_binary_payload", "w19.zstdio")],
    ) else {
        return;
    };
    let feeds = Feeds::scan(&[out]).unwrap();
    let lines = manifest(
        tmp.path(),
        "demo core2_64 1.0\nlibdemo-extra core2_64 1.1+git\n",
    );
    for line in &lines {
        let path = feeds.find(line).expect("found");
        let p = read_package(&path).unwrap();
        assert!(p.matches(line), "{p:?}");
        assert_eq!(p.recipe.as_deref(), Some("demo"));
    }
}

#[test]
fn arch_spellings() {
    assert!(same_arch("qemux86_64", "qemux86-64"));
    assert!(same_arch("core2-64", "core2-64"));
    assert!(!same_arch("core2-64", "core2-32"));
    assert!(!same_arch("all", "al"));
}

//! Finds BitBake's outputs in a deploy directory (`tmp/deploy`): the image
//! manifest, the rootfs tarball beside it, the package feeds, and pkgdata
//! (`tmp/pkgdata/<machine>`, the deploy directory's sibling).

use std::path::{Path, PathBuf};

/// Tarball suffixes in order of preference: the fastest to read first.
const ROOTFS_SUFFIXES: &[&str] = &["tar.zst", "tar.xz", "tar.bz2", "tar.gz", "tar"];

#[derive(Debug, Default, Clone)]
pub struct Found {
    pub rootfs: Option<PathBuf>,
    pub manifest: Option<PathBuf>,
    pub feeds: Vec<PathBuf>,
    pub pkgdata: Option<PathBuf>,
}

/// Looks for `image` built for `machine` under `deploy`. Link names are
/// tried with the `.rootfs` suffix OE uses since 2023, then without it.
pub fn find(deploy: &Path, image: &str, machine: &str) -> Found {
    let images = deploy.join("images").join(machine);
    let stems = [
        format!("{image}-{machine}.rootfs"),
        format!("{image}-{machine}"),
    ];
    let existing = |name: &str| {
        let p = images.join(name);
        p.is_file().then_some(p)
    };
    let manifest = stems
        .iter()
        .find_map(|s| existing(&format!("{s}.manifest")));
    let rootfs = stems.iter().find_map(|s| {
        ROOTFS_SUFFIXES
            .iter()
            .find_map(|suffix| existing(&format!("{s}.{suffix}")))
    });
    let feeds = ["ipk", "deb", "rpm"]
        .iter()
        .map(|k| deploy.join(k))
        .filter(|p| p.is_dir())
        .collect();
    let pkgdata = deploy
        .parent()
        .map(|tmp| tmp.join("pkgdata").join(machine))
        .filter(|p| p.join("runtime").is_dir());
    Found {
        rootfs,
        manifest,
        feeds,
        pkgdata,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn finds_current_and_old_link_names() {
        let tmp = tempfile::tempdir().unwrap();
        let deploy = tmp.path().join("deploy");
        let images = deploy.join("images/qemux86-64");
        fs::create_dir_all(&images).unwrap();
        fs::create_dir_all(deploy.join("ipk/core2-64")).unwrap();
        fs::create_dir_all(tmp.path().join("pkgdata/qemux86-64/runtime")).unwrap();
        for name in [
            "core-image-minimal-qemux86-64.rootfs.manifest",
            "core-image-minimal-qemux86-64.rootfs.tar.gz",
            "core-image-minimal-qemux86-64.rootfs.tar.zst",
            "old-image-qemux86-64.manifest",
            "old-image-qemux86-64.tar.bz2",
        ] {
            fs::write(images.join(name), b"x").unwrap();
        }
        let f = find(&deploy, "core-image-minimal", "qemux86-64");
        assert!(
            f.manifest
                .unwrap()
                .ends_with("core-image-minimal-qemux86-64.rootfs.manifest")
        );
        assert!(
            f.rootfs
                .unwrap()
                .ends_with("core-image-minimal-qemux86-64.rootfs.tar.zst")
        );
        assert_eq!(f.feeds, vec![deploy.join("ipk")]);
        assert_eq!(f.pkgdata, Some(tmp.path().join("pkgdata/qemux86-64")));
        let f = find(&deploy, "old-image", "qemux86-64");
        assert!(f.rootfs.unwrap().ends_with("old-image-qemux86-64.tar.bz2"));
        assert!(f.manifest.is_some());
        assert!(find(&deploy, "nope", "qemux86-64").rootfs.is_none());
    }
}

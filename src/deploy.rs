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

/// Why `image` for `machine` is not in `deploy`, and what is there: the
/// images built for that machine, the machines, or the directory that was
/// probably meant.
pub fn hint(deploy: &Path, image: &str, machine: &str) -> String {
    let images = deploy.join("images");
    if !images.is_dir() {
        if deploy.join("deploy/images").is_dir() {
            return format!(
                "this is the build's tmp directory: give --deploy-dir {}",
                deploy.join("deploy").display()
            );
        }
        return "no images/ directory here: --deploy-dir takes BitBake's tmp/deploy".into();
    }
    let machines = names(&images, |p| p.is_dir().then(|| file_name(p)));
    if !machines.iter().any(|m| m == machine) {
        return format!(
            "no images for MACHINE {machine}; machines here: {}",
            list(&machines)
        );
    }
    let built = names(&images.join(machine), |p| {
        let name = file_name(p);
        [".rootfs.manifest", ".manifest"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .and_then(|stem| stem.strip_suffix(&format!("-{machine}")))
            .map(str::to_string)
    });
    if built.iter().any(|b| b == image) {
        return format!(
            "{image} has a manifest but no rootfs tarball \
             ({image}-{machine}.rootfs.tar[.zst|.xz|.bz2|.gz]): add a tar type to IMAGE_FSTYPES \
             or give --rootfs"
        );
    }
    format!(
        "no image {image} for {machine}; images here: {}",
        list(&built)
    )
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// What `pick` makes of each entry of `dir`, sorted and deduplicated.
fn names(dir: &Path, pick: impl Fn(&Path) -> Option<String>) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| pick(&e.path()))
        .collect();
    out.sort();
    out.dedup();
    out
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
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

    #[test]
    fn hints_name_what_is_there() {
        let tmp = tempfile::tempdir().unwrap();
        let tmpdir = tmp.path().join("tmp");
        let deploy = tmpdir.join("deploy");
        let images = deploy.join("images/qemux86-64");
        fs::create_dir_all(&images).unwrap();
        fs::create_dir_all(deploy.join("images/qemuarm64")).unwrap();
        for name in [
            "core-image-minimal-qemux86-64.rootfs.manifest",
            "core-image-base-qemux86-64.rootfs.manifest",
            "core-image-base-qemux86-64.rootfs.tar.zst",
            "old-image-qemux86-64.manifest",
        ] {
            fs::write(images.join(name), b"x").unwrap();
        }
        let h = hint(&tmpdir, "core-image-base", "qemux86-64");
        assert!(
            h.contains("give --deploy-dir") && h.ends_with("tmp/deploy"),
            "{h}"
        );
        let h = hint(tmp.path(), "x", "qemux86-64");
        assert!(h.contains("tmp/deploy"), "{h}");
        let h = hint(&deploy, "core-image-base", "qemuarm");
        assert!(h.ends_with("machines here: qemuarm64, qemux86-64"), "{h}");
        let h = hint(&deploy, "core-image-sato", "qemux86-64");
        assert!(
            h.ends_with("images here: core-image-base, core-image-minimal, old-image"),
            "{h}"
        );
        let h = hint(&deploy, "core-image-minimal", "qemux86-64");
        assert!(h.contains("no rootfs tarball"), "{h}");
    }
}

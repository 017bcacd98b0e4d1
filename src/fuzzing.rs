//! Entry points shared by the fuzz targets (fuzz/) and the regression tests
//! that replay what they found (tests/fuzz_regressions.rs); compiled only
//! with the `fuzzing` feature. Each takes raw bytes, drives one parser the
//! way the tool does, must return without panicking whatever the bytes,
//! and says whether the input was accepted (every seed must be).

use std::path::{Path, PathBuf};

use crate::{oci, packages, plan, registry, sbom, source};

/// A scratch file holding `data` (parsers that take paths read it back).
fn scratch(data: &[u8], name: &str) -> Option<(tempfile::TempDir, PathBuf)> {
    // tmpfs where there is one: fuzzing writes a file per input.
    let base = if Path::new("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    };
    let dir = tempfile::Builder::new()
        .prefix("rustimage-fuzz-")
        .tempdir_in(base)
        .ok()?;
    let path = dir.path().join(name);
    std::fs::write(&path, data).ok()?;
    Some((dir, path))
}

/// A rootfs tarball in any compression: scanned and hashed.
pub fn rootfs_tar(data: &[u8]) -> bool {
    let Some((dir, path)) = scratch(data, "rootfs.tar") else {
        return false;
    };
    let opts = source::ScanOptions {
        hash: true,
        tmpdir: dir.path().to_path_buf(),
        max_size: 64 << 20,
    };
    let Ok(rootfs) = source::scan(&path, &opts, &|_| {}, &|_| {}) else {
        return false;
    };
    // Reading every inode back exercises the spool offsets.
    (0..rootfs.inodes().len()).all(|id| {
        rootfs
            .open(id)
            .and_then(|mut r| std::io::copy(&mut r, &mut std::io::sink()))
            .is_ok()
    })
}

/// An ipk, deb (ar or old gzipped tar) or rpm file.
pub fn package(data: &[u8]) -> bool {
    let Some((_dir, path)) = scratch(data, "package") else {
        return false;
    };
    packages::read_package(&path).is_ok()
}

/// The small text formats: image manifest, pkgdata runtime file, layer
/// rules, image references, WWW-Authenticate headers, SBOMs told apart by
/// content. The first byte picks which.
pub fn text_inputs(data: &[u8]) -> bool {
    let Some((&which, rest)) = data.split_first() else {
        return false;
    };
    let text = String::from_utf8_lossy(rest);
    match which % 6 {
        0 => scratch(rest, "image.manifest")
            .is_some_and(|(_d, p)| packages::read_manifest(&p).is_ok()),
        1 => scratch(rest, "runtime-pkg")
            .is_some_and(|(_d, p)| packages::read_pkgdata_runtime(&p).is_ok()),
        2 => plan::Rules::parse(&text).is_ok(),
        3 => {
            let a = oci::Reference::parse(&text).is_ok();
            registry::Target::parse(&text).is_ok() && a
        }
        4 => !registry::auth::parse_challenges(&text).is_empty(),
        _ => sbom::kind::detect_in(rest).is_ok(),
    }
}

/// An image archive (or its index.json) read back as `inspect` and
/// `push` read it, referrers (attached SBOMs) included; nothing is sent
/// anywhere.
pub fn image_layout(data: &[u8]) -> bool {
    let Some((_dir, path)) = scratch(data, "image.tar") else {
        return false;
    };
    let Ok(set) = oci::read(&path) else {
        return false;
    };
    let images = set.images().is_ok();
    let Ok(target) = registry::Target::parse("127.0.0.1:5000/fuzz/image:1") else {
        return false;
    };
    let Ok(content) = registry::from_set(&set, &target) else {
        return false;
    };
    let read = content.blobs.iter().all(|blob| {
        blob.open_at(0)
            .and_then(|mut r| std::io::copy(&mut r, &mut std::io::sink()))
            .is_ok()
    });
    images && read
}

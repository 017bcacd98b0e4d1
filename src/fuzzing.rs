//! Entry points shared by the fuzz targets (fuzz/) and the regression tests
//! that replay what they found (tests/fuzz_regressions.rs). Each takes raw
//! bytes, drives one parser the way the tool does, and must return without
//! panicking whatever the bytes.

use std::path::{Path, PathBuf};

use crate::{layout, packages, plan, reference, registry, source};

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
pub fn rootfs_tar(data: &[u8]) {
    let Some((dir, path)) = scratch(data, "rootfs.tar") else {
        return;
    };
    let opts = source::ScanOptions {
        hash: true,
        tmpdir: dir.path().to_path_buf(),
        max_size: 64 << 20,
    };
    if let Ok(rootfs) = source::scan(&path, &opts, &|_| {}, &|_| {}) {
        // Reading every inode back exercises the spool offsets.
        for id in 0..rootfs.inodes().len() {
            if let Ok(mut r) = rootfs.open(id) {
                let _ = std::io::copy(&mut r, &mut std::io::sink());
            }
        }
    }
}

/// An ipk, deb (ar or old gzipped tar) or rpm file.
pub fn package(data: &[u8]) {
    let Some((_dir, path)) = scratch(data, "package") else {
        return;
    };
    let _ = packages::read_package(&path);
}

/// The small text formats: image manifest, pkgdata runtime file, layer
/// rules, image references, WWW-Authenticate headers. The first byte picks
/// which.
pub fn text_inputs(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 5 {
        0 => {
            if let Some((_d, p)) = scratch(rest, "image.manifest") {
                let _ = packages::read_manifest(&p);
            }
        }
        1 => {
            if let Some((_d, p)) = scratch(rest, "runtime-pkg") {
                let _ = packages::read_pkgdata_runtime(&p);
            }
        }
        2 => {
            let _ = plan::Rules::parse(&String::from_utf8_lossy(rest));
        }
        3 => {
            let s = String::from_utf8_lossy(rest);
            let _ = reference::Reference::parse(&s);
            let _ = registry::Target::parse(&s);
        }
        _ => {
            let _ = registry::auth::parse_challenges(&String::from_utf8_lossy(rest));
        }
    }
}

/// An image archive (or its index.json) read back as `inspect` and
/// `push` read it; nothing is sent anywhere.
pub fn image_layout(data: &[u8]) {
    let Some((_dir, path)) = scratch(data, "image.tar") else {
        return;
    };
    let Ok(layout) = layout::Layout::open(&path) else {
        return;
    };
    let _ = layout::images(&layout);
    if let Ok(target) = registry::Target::parse("127.0.0.1:5000/fuzz/image:1")
        && let Ok(content) = registry::from_layout(&layout, &target)
    {
        for blob in &content.blobs {
            if let Ok(mut r) = (blob.open_at)(0) {
                let _ = std::io::copy(&mut r, &mut std::io::sink());
            }
        }
    }
}

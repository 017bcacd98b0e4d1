//! meta-rustimage, driven by BitBake's own Python library (the `bb` package
//! of `pip install bitbake-setup`) over a small stand-in for OE-core
//! (`tests/meta/standin`, written for these tests): the layer and the
//! recipe parse, the docker-tar image task gets its flags, signature and
//! command line from OE's variables, and its shell body, run under pseudo as
//! BitBake runs fakeroot tasks, writes an image that skopeo and umoci read
//! back equal to the rootfs, owners, setuid bits, devices and file
//! capabilities included; a later bitbake invocation (new DATETIME, no
//! do_rootfs) reruns it to the same bytes; images without docker-tar keep
//! every task signature they had without the layer; scarthgap's Rust makes
//! the recipe say which mixin layer it needs. `tests/meta/bbdriver.py`
//! drives `bb` (see its docs); `meta-rustimage/VERIFIED.md` records the
//! checks against the real OE-core and BitBake (`scripts/check-layer`).
//!
//! With `CI=true` a missing `bb` module, pseudo or client fails the tests
//! instead of skipping them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::registry::{Registry, TEST_PASSWORD, TEST_USER, require_registry};
use common::*;
use serde_json::Value;
use tempfile::TempDir;

const IMAGE: &str = "core-image-minimal";
const DATETIME: &str = "20240102030405";
/// OE's default REPRODUCIBLE_TIMESTAMP_ROOTFS, also make-deploy.py's mtime.
const ROOTFS_EPOCH: &str = "1520598896";
const ROOTFS_CREATED: &str = "2018-03-09T12:34:56Z";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn driver() -> PathBuf {
    repo().join("tests/meta/bbdriver.py")
}

/// True if python3 can import BitBake's `bb`; else SKIP, or panic with CI=true.
fn require_bb() -> bool {
    if !require("python3") {
        return false;
    }
    let ok = Command::new("python3")
        .args(["-c", "import bb"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "CI=true and python3 cannot import bb: scripts/install-deps must install bitbake-setup"
        );
    }
    skip("python3 cannot import bb (pip install bitbake-setup)");
    false
}

/// A BitBake build directory (TOPDIR) whose BBLAYERS are the stand-in and
/// meta-rustimage, with TMPDIR laid out as OE's.
struct Build {
    _tmp: TempDir,
    dir: PathBuf,
}

impl Build {
    /// conf/bblayers.conf (plus `bblayers_extra`) and conf/local.conf with
    /// `local` after the lines every test shares.
    fn new(local: &str, bblayers_extra: &str) -> Build {
        Self::with_layers(local, bblayers_extra, true)
    }

    /// Like [`Build::new`], with or without meta-rustimage in BBLAYERS.
    fn with_layers(local: &str, bblayers_extra: &str, with_layer: bool) -> Build {
        let tmp = tempfile::Builder::new()
            .prefix("rustimage-meta-")
            .tempdir()
            .unwrap();
        let dir = tmp.path().join("build");
        Self::write_conf_layers(&dir, local, bblayers_extra, with_layer);
        Build { _tmp: tmp, dir }
    }

    /// A build directory that also holds what an OE build of
    /// core-image-minimal for qemux86-64 leaves in tmp/ (example/
    /// make-deploy.py: feed, pkgdata, the rootfs as a plain tarball), which
    /// the stand-in's do_rootfs installs.
    fn with_deploy(backend: &str, local: &str) -> Build {
        let tmp = tempfile::Builder::new()
            .prefix("rustimage-meta-")
            .tempdir()
            .unwrap();
        let dir = tmp.path().join("build");
        run_ok(
            Command::new("python3")
                .arg(repo().join("example/make-deploy.py"))
                .arg(&dir)
                .args(["--backend", backend, "--rootfs-compression", "none"]),
        );
        let images = dir.join("tmp/deploy/images/qemux86-64");
        let local = format!(
            "IMAGE_PKGTYPE = \"{backend}\"\n\
             STANDIN_ROOTFS_TARBALL = \"{}\"\n\
             STANDIN_IMAGE_MANIFEST = \"{}\"\n{local}",
            images
                .join("core-image-minimal-qemux86-64.rootfs.tar")
                .display(),
            images
                .join("core-image-minimal-qemux86-64.rootfs.manifest")
                .display(),
        );
        Self::write_conf(&dir, &local, "");
        Build { _tmp: tmp, dir }
    }

    fn write_conf(dir: &Path, local: &str, bblayers_extra: &str) {
        Self::write_conf_layers(dir, local, bblayers_extra, true)
    }

    fn write_conf_layers(dir: &Path, local: &str, bblayers_extra: &str, with_layer: bool) {
        fs::create_dir_all(dir.join("conf")).unwrap();
        let layer = if with_layer {
            repo().join("meta-rustimage").display().to_string()
        } else {
            String::new()
        };
        fs::write(
            dir.join("conf/bblayers.conf"),
            format!(
                "BBPATH = \"${{TOPDIR}}\"\nBBFILES ?= \"\"\n{bblayers_extra}\n\
                 BBLAYERS = \"{} {layer}\"\n",
                repo().join("tests/meta/standin").display(),
            ),
        )
        .unwrap();
        fs::write(
            dir.join("conf/local.conf"),
            format!("MACHINE ?= \"qemux86-64\"\nDATETIME = \"{DATETIME}\"\n{local}\n"),
        )
        .unwrap();
    }

    /// Appends lines to conf/local.conf (a later assignment wins).
    fn append_local(&self, lines: &str) {
        let path = self.dir.join("conf/local.conf");
        let old = fs::read_to_string(&path).unwrap();
        fs::write(&path, format!("{old}{lines}\n")).unwrap();
    }

    fn tmpdir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    /// The image recipe's WORKDIR.
    fn workdir(&self) -> PathBuf {
        self.tmpdir().join(format!("work/{IMAGE}/1.0"))
    }

    /// IMGDEPLOYDIR, where the image tasks write.
    fn imgdeploydir(&self) -> PathBuf {
        self.workdir()
            .join(format!("deploy-{IMAGE}-image-complete"))
    }

    /// Where do_rootfs's postfunc keeps the image manifest.
    fn kept_manifest(&self) -> PathBuf {
        self.workdir().join("rustimage/image.manifest")
    }

    fn sysroot_bin(&self) -> PathBuf {
        self.workdir().join("recipe-sysroot-native/usr/bin")
    }

    /// Puts `program` into the recipe's native sysroot as `rustimage`, as
    /// do_image_docker_tar[depends] on rustimage-native would.
    fn install_tool(&self, program: &Path) {
        fs::create_dir_all(self.sysroot_bin()).unwrap();
        std::os::unix::fs::symlink(program, self.sysroot_bin().join("rustimage")).unwrap();
    }

    fn parse_cmd(&self, recipe: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("python3");
        cmd.arg(driver())
            .arg(&self.dir)
            .args(["parse", recipe])
            .args(args);
        cmd
    }

    /// `bbdriver.py parse RECIPE ARGS` as JSON.
    fn parse(&self, recipe: &str, args: &[&str]) -> Value {
        let out = run_ok(self.parse_cmd(recipe, args));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The task's signature variables and base hash (`--sig TASK`).
    fn sig(&self, task: &str) -> (Vec<String>, String) {
        let parsed = self.parse(IMAGE, &["--sig", task]);
        let sig = &parsed["sig"][task];
        let vars = sig["vars"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        (vars, sig["basehash"].as_str().unwrap().to_string())
    }

    /// The shell script of `task` as bb.build writes it, or the error.
    fn emit(&self, task: &str) -> Result<String, String> {
        let parsed = self.parse(IMAGE, &["--emit", task]);
        let e = &parsed["emit"][task];
        match e["script"].as_str() {
            Some(s) => Ok(s.to_string()),
            None => Err(e["error"].as_str().unwrap().to_string()),
        }
    }

    /// `bbdriver.py run core-image-minimal TASKS`, under pseudo with its
    /// database in BUILDDIR/pseudo (as all of a recipe's fakeroot tasks
    /// share WORKDIR/pseudo in OE).
    fn run_pseudo(&self, tasks: &[&str]) -> Output {
        let mut cmd = pseudo(&self.dir.join("pseudo"), "python3");
        cmd.arg(driver())
            .arg(&self.dir)
            .args(["run", IMAGE])
            .args(tasks);
        run_ok(cmd)
    }

    /// Like [`Build::run_pseudo`], and the tasks must fail; returns stderr.
    fn run_pseudo_fails(&self, tasks: &[&str]) -> String {
        let mut cmd = pseudo(&self.dir.join("pseudo"), "python3");
        cmd.arg(driver())
            .arg(&self.dir)
            .args(["run", IMAGE])
            .args(tasks);
        String::from_utf8_lossy(&run_fail(cmd).stderr).into_owned()
    }

    /// Like [`Build::run_pseudo`] but without pseudo, and the task must fail.
    fn run_fails(&self, tasks: &[&str]) -> String {
        let out = run_fail(
            Command::new("python3")
                .arg(driver())
                .arg(&self.dir)
                .args(["run", IMAGE])
                .args(tasks),
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn stop_pseudo(&self) {
        pseudo_shutdown(&self.dir.join("pseudo"));
    }
}

fn var<'a>(parsed: &'a Value, name: &str) -> &'a str {
    parsed["vars"][name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} not set: {}", parsed["vars"]))
}

fn task<'a>(parsed: &'a Value, name: &str) -> &'a Value {
    let t = &parsed["tasks"][name];
    assert!(t.is_object(), "no task {name}: {}", parsed["tasks"]);
    t
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

/// (name, version, checksum) of Cargo.lock's crates.io packages, in order.
fn cargo_lock_crates() -> Vec<(String, String, String)> {
    let lock = fs::read_to_string(repo().join("Cargo.lock")).unwrap();
    let mut out = Vec::new();
    for pkg in lock.split("[[package]]").skip(1) {
        let field = |key: &str| {
            pkg.lines()
                .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
                .map(|v| v.trim_end_matches('"').to_string())
        };
        if field("source").is_some_and(|s| s.contains("crates.io")) {
            out.push((
                field("name").unwrap(),
                field("version").unwrap(),
                field("checksum").unwrap(),
            ));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Parsing: layer, recipe, task, variables
// ---------------------------------------------------------------------------

#[test]
fn layer_and_recipe_parse_with_every_crate_and_the_license() {
    if !require_bb() {
        return;
    }
    let build = Build::new("", "");
    let parsed = build.parse(
        "rustimage",
        &[
            "--var",
            "SRC_URI",
            "--var",
            "LIC_FILES_CHKSUM",
            "--var",
            "LAYERSERIES_COMPAT_rustimage",
            "--var",
            "LAYERDEPENDS_rustimage",
            "--var",
            "LAYERRECOMMENDS_rustimage",
            "--var",
            "S",
            "--var",
            "CARGO_MANIFEST_PATH",
            "--var",
            "SRCREV",
            "--var",
            "DEPENDS",
            "--var",
            "RUSTIMAGE_MIN_RUST",
            "--var",
            "ZSTD_SYS_USE_PKG_CONFIG",
            "--varflags",
            "SRC_URI",
            "--varflags",
            "ZSTD_SYS_USE_PKG_CONFIG",
        ],
    );
    assert_eq!(parsed["skipped"], serde_json::json!({}));
    assert_eq!(strings(&parsed["collections"]), ["core", "rustimage"]);
    assert_eq!(parsed["layer_problems"], Value::Array(vec![]));
    let compat: Vec<&str> = var(&parsed, "LAYERSERIES_COMPAT_rustimage")
        .split_whitespace()
        .collect();
    for release in ["scarthgap", "whinlatter", "wrynose", "blacksail"] {
        assert!(compat.contains(&release), "{release} in {compat:?}");
    }
    assert_eq!(var(&parsed, "LAYERDEPENDS_rustimage"), "core");
    assert_eq!(
        var(&parsed, "LAYERRECOMMENDS_rustimage"),
        "scarthgap-rust-mixin"
    );

    // BBCLASSEXTEND gives the native tool do_image_docker_tar depends on.
    let variants: BTreeMap<String, String> =
        serde_json::from_value(parsed["variants"].clone()).unwrap();
    assert_eq!(variants[""], "rustimage");
    assert_eq!(variants["native"], "rustimage-native");
    assert_eq!(variants["nativesdk"], "nativesdk-rustimage");

    // Every crates.io package of Cargo.lock is fetched, with its checksum.
    let src_uri: Vec<&str> = var(&parsed, "SRC_URI").split_whitespace().collect();
    assert!(src_uri[0].starts_with("git://"), "{src_uri:?}");
    assert!(src_uri[0].contains(";protocol=https;branch="));
    assert_eq!(var(&parsed, "SRCREV").len(), 40);
    let crates = cargo_lock_crates();
    let fetched: Vec<&str> = src_uri[1..].to_vec();
    let wanted: Vec<String> = crates
        .iter()
        .map(|(n, v, _)| format!("crate://crates.io/{n}/{v}"))
        .collect();
    assert_eq!(fetched, wanted, "run scripts/update-crates-inc");
    let flags = &parsed["varflags"]["SRC_URI"];
    for (name, version, checksum) in &crates {
        assert_eq!(
            flags[format!("{name}-{version}.sha256sum")].as_str(),
            Some(checksum.as_str()),
            "{name} {version}"
        );
    }
    assert!(
        var(&parsed, "CARGO_MANIFEST_PATH").starts_with(var(&parsed, "S")),
        "Cargo.toml is at the top of S"
    );
    // The git sources unpack into S on every release (scarthgap's fetcher
    // would use "git" without destsuffix).
    assert!(
        src_uri[0].ends_with(";destsuffix=rustimage-0.1.0"),
        "{src_uri:?}"
    );
    assert!(var(&parsed, "S").ends_with("/rustimage-0.1.0"));

    // The -sys crates link the system libzstd (zstd-sys, through
    // pkg-config: OE-core master's cargo class exports
    // ZSTD_SYS_USE_PKG_CONFIG=1, and so does the recipe) and liblzma.
    let depends: Vec<&str> = var(&parsed, "DEPENDS").split_whitespace().collect();
    for dep in ["zstd", "xz", "pkgconfig-native"] {
        assert!(depends.contains(&dep), "{dep} not in DEPENDS {depends:?}");
    }
    assert!(
        strings(&parsed["inherits"]).contains(&"pkgconfig"),
        "{}",
        parsed["inherits"]
    );
    assert_eq!(var(&parsed, "ZSTD_SYS_USE_PKG_CONFIG"), "1");
    assert_eq!(
        parsed["varflags"]["ZSTD_SYS_USE_PKG_CONFIG"]["export"].as_str(),
        Some("1")
    );
    assert!(
        cargo_lock_crates().iter().any(|(n, _, _)| n == "zstd-sys"),
        "the zstd-sys reasoning no longer applies: revisit DEPENDS"
    );
    // The Rust the recipe asks for is Cargo.toml's rust-version.
    let toml = fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let rust_version = toml
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .map(|v| v.trim_end_matches('"'))
        .unwrap();
    assert_eq!(var(&parsed, "RUSTIMAGE_MIN_RUST"), rust_version);

    // LIC_FILES_CHKSUM matches the repository's LICENSE.
    let lic = var(&parsed, "LIC_FILES_CHKSUM");
    let (file, md5) = lic
        .strip_prefix("file://")
        .and_then(|l| l.split_once(";md5="))
        .unwrap_or_else(|| panic!("LIC_FILES_CHKSUM {lic}"));
    let sum = run_stdout(Command::new("md5sum").arg(repo().join(file)));
    assert_eq!(sum.split_whitespace().next(), Some(md5), "{file}");
}

#[test]
fn a_core_layer_of_another_series_is_refused() {
    if !require_bb() {
        return;
    }
    let build = Build::new(
        "",
        "LAYERSERIES_CORENAMES = \"kirkstone\"\nLAYERSERIES_COMPAT_core = \"kirkstone\"",
    );
    let out = run_fail(build.parse_cmd(IMAGE, &[]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Layer rustimage is not compatible with the core layer")
            && stderr.contains("kirkstone"),
        "{stderr}"
    );
}

/// scarthgap's core layer and its Rust (RUSTVERSION "1.75%"): the layer is
/// accepted, images still get docker-tar, and the rustimage recipe skips
/// itself naming the mixin layer; with the mixin's newer RUSTVERSION it
/// does not.
#[test]
fn scarthgap_is_accepted_and_the_recipe_names_the_rust_mixin_it_needs() {
    if !require_bb() {
        return;
    }
    let series = "LAYERSERIES_CORENAMES = \"scarthgap\"\nLAYERSERIES_COMPAT_core = \"scarthgap\"";
    let old = Build::new(
        "RUSTVERSION = \"1.75%\"\nIMAGE_FSTYPES:append = \" docker-tar\"",
        series,
    );
    let parsed = old.parse("rustimage", &[]);
    for variant in ["", "native", "nativesdk"] {
        let why = parsed["skipped"][variant]
            .as_str()
            .unwrap_or_else(|| panic!("{variant} not skipped: {}", parsed["skipped"]));
        for needle in [
            "Rust 1.90 or later",
            "RUSTVERSION is 1.75%",
            "meta-lts-mixins",
            "scarthgap/rust",
            "scarthgap-rust-mixin",
        ] {
            assert!(why.contains(needle), "{needle} not in {why}");
        }
    }
    let image = old.parse(IMAGE, &[]);
    assert!(task(&image, "do_image_docker_tar").is_object());

    // The mixin's Rust (its layer.conf sets RUSTVERSION ?= "1.9x%").
    for version in ["1.90%", "1.91.0%", "1.96.1%"] {
        let new = Build::new(&format!("RUSTVERSION = \"{version}\""), series);
        let parsed = new.parse("rustimage", &[]);
        assert_eq!(parsed["skipped"], serde_json::json!({}), "{version}");
    }
    let older = Build::new("RUSTVERSION = \"1.89.0%\"", series).parse("rustimage", &[]);
    assert!(older["skipped"]["native"].is_string(), "1.89 is too old");
    // A mixin layer in BBLAYERS whose Rust is still too old: update it.
    let stale = Build::new(
        "RUSTVERSION = \"1.81%\"",
        &format!("{series}\nBBFILE_COLLECTIONS += \"scarthgap-rust-mixin\""),
    )
    .parse("rustimage", &[]);
    let why = stale["skipped"]["native"].as_str().unwrap();
    assert!(
        why.contains("RUSTVERSION is 1.81%")
            && why.contains("mixin layer in BBLAYERS (scarthgap-rust-mixin) is too old"),
        "{why}"
    );
}

#[test]
fn the_layer_adds_the_type_and_the_task_gets_its_flags() {
    if !require_bb() {
        return;
    }
    let build = Build::new("IMAGE_FSTYPES:append = \" docker-tar\"", "");
    let parsed = build.parse(
        IMAGE,
        &[
            "--var",
            "IMAGE_CLASSES",
            "--var",
            "IMAGE_TYPES",
            "--var",
            "IMAGE_CMD:docker-tar",
            "--var",
            "SPDX_IMAGE_PURPOSE:docker-tar",
        ],
    );
    // The class comes in through IMGCLASSES, not IMAGE_CLASSES.
    assert!(strings(&parsed["inherits"]).contains(&"image_types_rustimage"));
    assert!(
        !var(&parsed, "IMAGE_CLASSES")
            .split_whitespace()
            .any(|c| c == "image_types_rustimage")
    );
    assert_eq!(var(&parsed, "SPDX_IMAGE_PURPOSE:docker-tar"), "container");
    assert!(
        var(&parsed, "IMAGE_TYPES")
            .split_whitespace()
            .any(|t| t == "docker-tar")
    );
    assert_eq!(var(&parsed, "IMAGE_CMD:docker-tar"), "rustimage_docker_tar");
    assert_eq!(var(&parsed, "RUSTIMAGE_TAG"), "core-image-minimal:latest");
    assert_eq!(var(&parsed, "RUSTIMAGE_ARCH"), "amd64");
    assert_eq!(var(&parsed, "RUSTIMAGE_VARIANT"), "");

    let t = task(&parsed, "do_image_docker_tar");
    assert_eq!(t["fakeroot"], "1");
    assert!(
        t["depends"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .any(|d| d == "rustimage-native:do_populate_sysroot"),
        "{t}"
    );
    assert!(strings(&t["deps"]).contains(&"do_image"));
    assert!(t["postfuncs"].as_str().unwrap().contains("create_symlinks"));
    assert_eq!(t["subimages"], "docker-tar");
    // Reads ${IMAGE_ROOTFS} through pseudo: no dependency on the tar type.
    assert!(!strings(&t["deps"]).contains(&"do_image_tar"));
    assert!(strings(&task(&parsed, "do_image_complete")["deps"]).contains(&"do_image_docker_tar"));
    // do_rootfs keeps the manifest for reruns of the task.
    assert!(
        task(&parsed, "do_rootfs")["postfuncs"]
            .as_str()
            .unwrap()
            .contains("rustimage_keep_rootfs_manifest")
    );

    // The push task exists, needs the network, always runs when asked, and
    // nothing runs it by default.
    let push = task(&parsed, "do_push_container");
    assert_eq!(push["network"], "1");
    assert_eq!(push["nostamp"], "1");
    assert_eq!(
        push["exports"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        [
            "DOCKER_CONFIG",
            "REGISTRY_AUTH_FILE",
            "XDG_RUNTIME_DIR",
            "CONTAINERS_REGISTRIES_CONF",
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "NO_PROXY",
            "no_proxy"
        ]
    );
    assert_eq!(strings(&push["deps"]), ["do_image_complete"]);
    assert!(
        push["prefuncs"]
            .as_str()
            .unwrap()
            .contains("rustimage_credential_helpers")
    );
    assert!(
        push["depends"]
            .as_str()
            .unwrap()
            .contains("rustimage-native:do_populate_sysroot")
    );
    for (name, t) in parsed["tasks"].as_object().unwrap() {
        assert!(
            !strings(&t["deps"]).contains(&"do_push_container"),
            "{name} runs after do_push_container"
        );
    }
}

/// All base hashes of core-image-minimal's tasks, task -> hash.
fn all_sigs(build: &Build) -> (Value, BTreeMap<String, String>) {
    let parsed = build.parse(IMAGE, &["--sig-all"]);
    let sigs = parsed["sig"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(t, s)| (t.clone(), s["basehash"].as_str().unwrap().to_string()))
        .collect();
    (parsed, sigs)
}

#[test]
fn without_docker_tar_the_layer_changes_no_task_and_no_signature() {
    if !require_bb() {
        return;
    }
    let (without_layer, want) = all_sigs(&Build::with_layers("", "", false));
    let (plain, got) = all_sigs(&Build::new("", ""));
    assert!(want.contains_key("do_rootfs_wicenv") && want.contains_key("do_image_tar"));
    assert_eq!(got, want, "adding the layer changed an image task");
    assert!(!strings(&plain["inherits"]).contains(&"image_types_rustimage"));
    assert!(plain["tasks"]["do_image_docker_tar"].is_null());
    assert!(plain["tasks"]["do_push_container"].is_null());
    assert!(
        !plain["vars"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.starts_with("RUSTIMAGE_")),
        "{}",
        plain["vars"]
    );
    assert!(without_layer["tasks"]["do_image_tar"].is_object());

    // The check can fail: the class in IMAGE_CLASSES for every image (as
    // the layer once did) changes do_rootfs_wicenv, which covers WICVARS.
    let (_, every) = all_sigs(&Build::new(
        "IMAGE_CLASSES:append = \" image_types_rustimage\"",
        "",
    ));
    assert_ne!(every["do_rootfs_wicenv"], want["do_rootfs_wicenv"]);
}

#[test]
fn a_compressed_docker_tar_skips_the_image_and_says_why() {
    if !require_bb() {
        return;
    }
    let parsed = Build::new("IMAGE_FSTYPES:append = \" docker-tar.gz\"", "").parse(IMAGE, &[]);
    let why = parsed["skipped"][""]
        .as_str()
        .unwrap_or_else(|| panic!("{}", parsed["skipped"]));
    assert!(why.contains("'docker-tar.gz'"), "{why}");
    assert!(why.contains("RUSTIMAGE_COMPRESSION"), "{why}");
}

#[test]
fn the_example_container_image_has_docker_tar_only_and_no_kernel() {
    if !require_bb() {
        return;
    }
    let parsed = Build::new("", "").parse(
        "container-image-minimal",
        &[
            "--var",
            "IMAGE_FSTYPES",
            "--var",
            "IMAGE_FEATURES",
            "--var",
            "IMAGE_INSTALL",
            "--var",
            "KERNELDEPMODDEPEND",
            "--var",
            "KERNEL_DEPLOY_DEPEND",
            "--var",
            "ROOTFS_BOOTSTRAP_INSTALL",
        ],
    );
    assert_eq!(parsed["skipped"], serde_json::json!({}));
    assert_eq!(var(&parsed, "IMAGE_FSTYPES"), "docker-tar");
    assert_eq!(var(&parsed, "IMAGE_FEATURES"), "");
    assert_eq!(var(&parsed, "KERNELDEPMODDEPEND"), "");
    assert_eq!(var(&parsed, "KERNEL_DEPLOY_DEPEND"), "");
    assert_eq!(var(&parsed, "ROOTFS_BOOTSTRAP_INSTALL"), "");
    assert!(var(&parsed, "IMAGE_INSTALL").contains("busybox"));
    assert!(strings(&parsed["inherits"]).contains(&"image_types_rustimage"));
    let images: Vec<&str> = parsed["tasks"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .filter(|t| t.starts_with("do_image_"))
        .collect();
    assert_eq!(images, ["do_image_complete", "do_image_docker_tar"]);
    assert_eq!(
        var(&parsed, "RUSTIMAGE_TAG"),
        "container-image-minimal:latest"
    );
}

#[test]
fn the_command_line_comes_from_oe_variables_when_the_task_runs() {
    if !require_bb() {
        return;
    }
    let build = Build::new("IMAGE_FSTYPES:append = \" docker-tar\"", "");
    let script = build.emit("do_image_docker_tar").unwrap();
    let tmp = build.tmpdir();
    let imgdeploy = build.imgdeploydir();
    let name = format!("core-image-minimal-qemux86-64.rootfs-{DATETIME}");
    for needle in [
        format!("--rootfs \"{}\"", build.workdir().join("rootfs").display()),
        format!("--manifest \"{}\"", build.kept_manifest().display()),
        format!("--feed {}", tmp.join("deploy/ipk").display()),
        format!("--pkgdata \"{}\"", tmp.join("pkgdata/qemux86-64").display()),
        format!(
            "--output \"{}\"",
            imgdeploy.join(format!("{name}.docker-tar")).display()
        ),
        format!("--created @{ROOTFS_EPOCH}"),
        "--arch amd64".to_string(),
        // The task body image.bbclass makes: the command, then cd.
        format!(
            "do_image_docker_tar() {{\n\trustimage_docker_tar\n\tcd {}\n}}",
            imgdeploy.display()
        ),
    ] {
        assert!(script.contains(&needle), "{needle}\nnot in\n{script}");
    }
    // Only rustimage, shell builtins and the logging functions run; PATH is
    // the native sysroot and HOSTTOOLS.
    assert!(script.contains(&format!(
        "export PATH=\"{}:{}\"",
        build.sysroot_bin().display(),
        tmp.join("hosttools").display()
    )));
}

/// Runs do_rootfs and do_image_docker_tar with a stand-in `rustimage` that
/// records its arguments; returns them.
fn recorded_argv(local: &str, files: &[(&str, &str)]) -> (Build, Vec<String>) {
    let build = Build::new(local, "");
    for (path, content) in files {
        let p = build.dir.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }
    // A one-file rootfs and a manifest for the stand-in's do_rootfs.
    let input = build.dir.join("input");
    fs::create_dir_all(input.join("root/etc")).unwrap();
    fs::write(input.join("root/etc/hostname"), "test\n").unwrap();
    run_ok(
        Command::new("tar")
            .arg("-cf")
            .arg(input.join("rootfs.tar"))
            .arg("-C")
            .arg(input.join("root"))
            .arg("."),
    );
    fs::write(input.join("manifest"), "base-files qemux86_64 3.0.14-r0\n").unwrap();
    fs::write(
        build.dir.join("conf/local.conf"),
        format!(
            "{}STANDIN_ROOTFS_TARBALL = \"{}\"\nSTANDIN_IMAGE_MANIFEST = \"{}\"\n",
            fs::read_to_string(build.dir.join("conf/local.conf")).unwrap(),
            input.join("rootfs.tar").display(),
            input.join("manifest").display()
        ),
    )
    .unwrap();
    let fake = build.dir.join("fake-rustimage");
    fs::write(
        &fake,
        "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done > \"${0%/*}/argv\"\n",
    )
    .unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    build.install_tool(&fake);
    let mut cmd = Command::new("python3");
    cmd.arg(driver())
        .arg(&build.dir)
        .args(["run", IMAGE, "do_rootfs", "do_image_docker_tar"]);
    run_ok(cmd);
    let argv = fs::read(build.sysroot_bin().join("argv")).unwrap();
    let argv = argv
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8(a.to_vec()).unwrap())
        .collect();
    (build, argv)
}

#[test]
fn defaults_map_to_these_build_flags() {
    if !require_bb() || !require_all(&["tar", "zstd"]) {
        return;
    }
    let (build, argv) = recorded_argv("IMAGE_FSTYPES:append = \" docker-tar\"", &[]);
    let w = build.workdir();
    let d = build.imgdeploydir();
    let t = build.tmpdir();
    let name = format!("core-image-minimal-qemux86-64.rootfs-{DATETIME}");
    let p = |p: PathBuf| p.display().to_string();
    let want = [
        "build".to_string(),
        "--rootfs".into(),
        p(w.join("rootfs")),
        "--manifest".into(),
        p(build.kept_manifest()),
        "--feed".into(),
        p(t.join("deploy/ipk")),
        "--pkgdata".into(),
        p(t.join("pkgdata/qemux86-64")),
        "--tag".into(),
        "core-image-minimal:latest".into(),
        "--max-layers".into(),
        "100".into(),
        "--cmd".into(),
        "/bin/sh".into(),
        "--annotation".into(),
        format!("org.opencontainers.image.created={ROOTFS_CREATED}"),
        "--annotation".into(),
        "org.opencontainers.image.description=Stand-in image for the meta-rustimage tests".into(),
        "--annotation".into(),
        "org.opencontainers.image.title=core-image-minimal".into(),
        "--annotation".into(),
        "org.opencontainers.image.version=nodistro.0".into(),
        "--os".into(),
        "linux".into(),
        "--arch".into(),
        "amd64".into(),
        "--created".into(),
        format!("@{ROOTFS_EPOCH}"),
        "--compression".into(),
        "gzip".into(),
        "--sbom".into(),
        "generate".into(),
        "--jobs".into(),
        "4".into(),
        "--output".into(),
        p(d.join(format!("{name}.docker-tar"))),
    ];
    assert_eq!(argv, want);
}

#[test]
fn every_variable_maps_to_its_flag() {
    if !require_bb() || !require_all(&["tar", "zstd"]) {
        return;
    }
    let local = r#"
MACHINE = "qemuarm"
IMAGE_FSTYPES:append = " docker-tar"
IMAGE_PKGTYPE = "deb"
DISTRO_VERSION = "5.3"
METADATA_REVISION = "0123456789abcdef0123456789abcdef01234567"
HOMEPAGE = "https://example.com/app"
RUSTIMAGE_TAG = "registry.example.com/team/app:1.0 app:latest"
RUSTIMAGE_MAX_LAYERS = "20"
RUSTIMAGE_LAYER_RULES = "conf/rustimage-layers.ini"
RUSTIMAGE_ENTRYPOINT = '["/usr/bin/app", "--serve"]'
RUSTIMAGE_CMD = ""
RUSTIMAGE_ENV = "LANG=C.UTF-8 'GREETING=hello world'"
RUSTIMAGE_WORKDIR = "/srv/app"
RUSTIMAGE_USER = "1000:1000"
RUSTIMAGE_PORTS = "8080 53/udp"
RUSTIMAGE_LABELS = "org.example.team=platform"
RUSTIMAGE_ANNOTATIONS = "org.opencontainers.image.vendor=Example org.opencontainers.image.description= org.opencontainers.image.version=2.0"
RUSTIMAGE_COMPRESSION = "zstd"
RUSTIMAGE_SBOM = "none"
RUSTIMAGE_JOBS = "2"
RUSTIMAGE_EXTRA_ARGS = "--stop-signal SIGTERM --volume /data"
"#;
    let rules = "[base]\npackages = libc6 busybox*\n";
    let (build, argv) = recorded_argv(local, &[("conf/rustimage-layers.ini", rules)]);
    let w = build.workdir();
    let d = build.imgdeploydir();
    let t = build.tmpdir();
    let name = format!("core-image-minimal-qemuarm.rootfs-{DATETIME}");
    let p = |p: PathBuf| p.display().to_string();
    let want = [
        "build".to_string(),
        "--rootfs".into(),
        p(w.join("rootfs")),
        "--manifest".into(),
        p(build.kept_manifest()),
        "--feed".into(),
        p(t.join("deploy/deb")),
        "--pkgdata".into(),
        p(t.join("pkgdata/qemuarm")),
        "--tag".into(),
        "registry.example.com/team/app:1.0".into(),
        "--tag".into(),
        "app:latest".into(),
        "--max-layers".into(),
        "20".into(),
        "--layer-rules".into(),
        p(build.dir.join("conf/rustimage-layers.ini")),
        "--entrypoint".into(),
        r#"["/usr/bin/app", "--serve"]"#.into(),
        "--workdir".into(),
        "/srv/app".into(),
        "--user".into(),
        "1000:1000".into(),
        "--env".into(),
        "LANG=C.UTF-8".into(),
        "--env".into(),
        "GREETING=hello world".into(),
        "--expose".into(),
        "8080".into(),
        "--expose".into(),
        "53/udp".into(),
        "--label".into(),
        "org.example.team=platform".into(),
        "--annotation".into(),
        format!("org.opencontainers.image.created={ROOTFS_CREATED}"),
        "--annotation".into(),
        "org.opencontainers.image.title=core-image-minimal".into(),
        "--annotation".into(),
        "org.opencontainers.image.url=https://example.com/app".into(),
        "--annotation".into(),
        "org.opencontainers.image.vendor=Example".into(),
        "--annotation".into(),
        "org.opencontainers.image.version=2.0".into(),
        "--os".into(),
        "linux".into(),
        "--arch".into(),
        "arm".into(),
        "--variant".into(),
        "v7".into(),
        "--created".into(),
        format!("@{ROOTFS_EPOCH}"),
        "--compression".into(),
        "zstd".into(),
        "--jobs".into(),
        "2".into(),
        "--stop-signal".into(),
        "SIGTERM".into(),
        "--volume".into(),
        "/data".into(),
        "--output".into(),
        p(d.join(format!("{name}.docker-tar"))),
    ];
    assert_eq!(argv, want);

    // The rules file is a file-checksums input of the task.
    let parsed = build.parse(IMAGE, &[]);
    assert_eq!(
        task(&parsed, "do_image_docker_tar")["file-checksums"]
            .as_str()
            .unwrap()
            .trim(),
        format!(
            "{}:True",
            build.dir.join("conf/rustimage-layers.ini").display()
        )
    );

    // squash: one layer, no layer budget or rules.
    let squash = Build::new(
        "IMAGE_FSTYPES:append = \" docker-tar\"\nRUSTIMAGE_LAYERS = \"squash\"",
        "",
    )
    .emit("do_image_docker_tar")
    .unwrap();
    assert!(squash.contains(" --squash "), "{squash}");
    assert!(!squash.contains("--max-layers"), "{squash}");
}

#[test]
fn architecture_and_variant_follow_target_arch_and_tune() {
    if !require_bb() {
        return;
    }
    for (machine, arch, variant) in [
        ("qemux86-64", "amd64", ""),
        ("qemux86", "386", ""),
        ("qemuarm", "arm", "v7"),
        ("qemuarm64", "arm64", ""),
    ] {
        let parsed = Build::new(
            &format!("MACHINE = \"{machine}\"\nIMAGE_FSTYPES:append = \" docker-tar\""),
            "",
        )
        .parse(IMAGE, &[]);
        assert_eq!(var(&parsed, "RUSTIMAGE_ARCH"), arch, "{machine}");
        assert_eq!(var(&parsed, "RUSTIMAGE_VARIANT"), variant, "{machine}");
    }
    // No OCI name for 32-bit powerpc: the task says what to set.
    let ppc = Build::new(
        "MACHINE = \"qemuppc\"\nIMAGE_FSTYPES:append = \" docker-tar\"",
        "",
    );
    let err = ppc.emit("do_image_docker_tar").unwrap_err();
    assert!(err.contains("set RUSTIMAGE_ARCH"), "{err}");
    let ppc = Build::new(
        "MACHINE = \"qemuppc\"\nIMAGE_FSTYPES:append = \" docker-tar\"\nRUSTIMAGE_ARCH = \"ppc\"",
        "",
    );
    assert!(
        ppc.emit("do_image_docker_tar")
            .unwrap()
            .contains("--arch ppc")
    );

    let bad = Build::new(
        "IMAGE_FSTYPES:append = \" docker-tar\"\nRUSTIMAGE_LAYERS = \"one-per-file\"",
        "",
    );
    let err = bad.emit("do_image_docker_tar").unwrap_err();
    assert!(err.contains("per-package or squash"), "{err}");
}

#[test]
fn the_signature_covers_the_variables_but_not_the_thread_count() {
    if !require_bb() {
        return;
    }
    let base = "IMAGE_FSTYPES:append = \" docker-tar\"\n";
    let (vars, hash) = Build::new(base, "").sig("do_image_docker_tar");
    for v in [
        "RUSTIMAGE_TAG",
        "RUSTIMAGE_LAYERS",
        "RUSTIMAGE_MAX_LAYERS",
        "RUSTIMAGE_LAYER_RULES",
        "RUSTIMAGE_ENTRYPOINT",
        "RUSTIMAGE_CMD",
        "RUSTIMAGE_ENV",
        "RUSTIMAGE_WORKDIR",
        "RUSTIMAGE_USER",
        "RUSTIMAGE_PORTS",
        "RUSTIMAGE_LABELS",
        "RUSTIMAGE_ANNOTATIONS",
        "RUSTIMAGE_COMPRESSION",
        "RUSTIMAGE_SBOM",
        "RUSTIMAGE_EXTRA_ARGS",
        "RUSTIMAGE_ARCH",
        "RUSTIMAGE_VARIANT",
        "RUSTIMAGE_ROOTFS_MANIFEST",
        "IMAGE_ROOTFS",
        "IMAGE_PKGTYPE",
        "DEPLOY_DIR_IPK",
        "TARGET_ARCH",
        "TUNE_FEATURES",
        "DISTRO_VERSION",
        "REPRODUCIBLE_TIMESTAMP_ROOTFS",
    ] {
        assert!(vars.iter().any(|x| x == v), "{v} not in {vars:?}");
    }
    for v in [
        "RUSTIMAGE_JOBS",
        "BB_NUMBER_THREADS",
        "DATETIME",
        "METADATA_REVISION",
        "IMAGE_MANIFEST",
    ] {
        assert!(!vars.iter().any(|x| x == v), "{v} in {vars:?}");
    }
    for same in [
        "BB_NUMBER_THREADS = \"1\"",
        "RUSTIMAGE_JOBS = \"3\"",
        "DATETIME = \"20991231235959\"",
        "METADATA_REVISION = \"0123456789abcdef0123456789abcdef01234567\"",
    ] {
        let other = Build::new(&format!("{base}{same}"), "")
            .sig("do_image_docker_tar")
            .1;
        assert_eq!(other, hash, "{same} must leave do_image_docker_tar alone");
    }
    for change in [
        "RUSTIMAGE_TAG = \"other:1\"",
        "RUSTIMAGE_ENV = \"A=1\"",
        "RUSTIMAGE_EXTRA_ARGS = \"--volume /data\"",
        "RUSTIMAGE_LAYERS = \"squash\"",
        "RUSTIMAGE_MAX_LAYERS = \"50\"",
        "RUSTIMAGE_COMPRESSION = \"zstd\"",
        "RUSTIMAGE_ANNOTATIONS = \"a=b\"",
        "RUSTIMAGE_ANNOTATIONS = \"org.opencontainers.image.revision=${METADATA_REVISION}\"",
        "DISTRO_VERSION = \"9.9\"",
    ] {
        let changed = Build::new(&format!("{base}{change}"), "")
            .sig("do_image_docker_tar")
            .1;
        assert_ne!(changed, hash, "{change} must rerun do_image_docker_tar");
    }
}

// ---------------------------------------------------------------------------
// The task's shell body, run under pseudo; the image checked by real clients
// ---------------------------------------------------------------------------

/// `security.capability` as setfattr takes it.
fn cap_hex() -> String {
    let hex: String = CAP_NET_RAW_EP.iter().map(|b| format!("{b:02x}")).collect();
    format!("0x{hex}")
}

/// The rootfs as the image should hold it: the tarball do_rootfs installs,
/// extracted as root, plus the file capability set on bin/ping.
fn expected_rootfs(build: &Build, dest: &Path) -> Tree {
    make_root_dir(dest);
    extract_tar(
        &build
            .tmpdir()
            .join("deploy/images/qemux86-64/core-image-minimal-qemux86-64.rootfs.tar"),
        dest,
    );
    set_xattr(
        &dest.join("bin/ping"),
        "security.capability",
        &CAP_NET_RAW_EP,
    );
    snapshot_with_mtime(dest)
}

/// Unpacks a docker-tar as the OCI image layout it also is, with umoci.
fn unpack_layout(archive: &Path, work: &Path, tag: &str) -> PathBuf {
    let layout = work.join("layout");
    fs::create_dir_all(&layout).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(archive)
            .arg("-C")
            .arg(&layout),
    );
    umoci_unpack(&layout, tag, &work.join("bundle"))
}

fn squash_image(rootfs: &Path, out: &Path, pseudo_state: Option<&Path>) {
    let mut cmd = match pseudo_state {
        Some(state) => pseudo(state, env!("CARGO_BIN_EXE_rustimage")),
        None => rustimage(),
    };
    cmd.args(["build", "-q", "--squash", "--tag", "x:latest", "--created"])
        .arg(format!("@{ROOTFS_EPOCH}"))
        .arg("--rootfs")
        .arg(rootfs)
        .arg("-o")
        .arg(out);
    run_ok(cmd);
}

/// Runs do_rootfs under pseudo (which extracts the rootfs there, so that
/// only pseudo's database has the owners), then sets a file capability
/// under pseudo as a postinst would. Returns IMAGE_ROOTFS.
fn make_rootfs_under_pseudo(build: &Build) -> PathBuf {
    build.run_pseudo(&["do_rootfs"]);
    let rootfs = build.workdir().join("rootfs");
    run_ok(
        pseudo(&build.dir.join("pseudo"), "setfattr")
            .args(["-n", "security.capability", "-v", &cap_hex()])
            .arg(rootfs.join("bin/ping")),
    );
    rootfs
}

#[test]
fn docker_tar_under_pseudo_keeps_owners_setuid_devices_and_capabilities() {
    if !require_bb() || !require_all(&["pseudo", "setfattr", "tar", "zstd", "skopeo", "umoci"]) {
        return;
    }
    let build = Build::with_deploy("ipk", "IMAGE_FSTYPES:append = \" docker-tar\"");
    build.install_tool(Path::new(env!("CARGO_BIN_EXE_rustimage")));
    let work = build.dir.join("check");
    let want = expected_rootfs(&build, &work.join("want"));

    let rootfs = make_rootfs_under_pseudo(&build);
    let out = build.run_pseudo(&["do_image_tar", "do_image_docker_tar", "do_image_complete"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains("warning"), "{log}");

    // Deployed under IMAGE_NAME, with the IMAGE_LINK_NAME link.
    let images = build.tmpdir().join("deploy/images/qemux86-64");
    let link = images.join("core-image-minimal-qemux86-64.rootfs.docker-tar");
    assert_eq!(
        fs::read_link(&link).unwrap(),
        PathBuf::from(format!(
            "core-image-minimal-qemux86-64.rootfs-{DATETIME}.docker-tar"
        ))
    );

    // skopeo reads it as a Docker archive: per-package layers, config from OE.
    let archive = format!("docker-archive:{}", link.display());
    let inspect: Value =
        serde_json::from_str(&run_stdout(skopeo().args(["inspect", &archive]))).unwrap();
    assert_eq!(inspect["Architecture"], "amd64");
    assert_eq!(inspect["Os"], "linux");
    assert_eq!(inspect["Created"], ROOTFS_CREATED);
    // 12 packages plus the image-specific layer.
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 13, "{inspect}");
    let config: Value = serde_json::from_str(&run_stdout(
        skopeo().args(["inspect", "--config", &archive]),
    ))
    .unwrap();
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["/bin/sh"]));
    // ... and as an OCI archive, with OE's annotations on the manifest.
    let manifest: Value = serde_json::from_str(&run_stdout(skopeo().args([
        "inspect",
        "--raw",
        &format!("oci-archive:{}", link.display()),
    ])))
    .unwrap();
    let notes = &manifest["annotations"];
    assert_eq!(notes["org.opencontainers.image.title"], IMAGE);
    assert_eq!(notes["org.opencontainers.image.version"], "nodistro.0");
    assert_eq!(notes["org.opencontainers.image.created"], ROOTFS_CREATED);

    // Unpacked, the image is the rootfs: owners only pseudo knew, setuid
    // bits, device nodes, hardlinks, the capability, and the mtimes.
    let got = snapshot_with_mtime(&unpack_layout(
        &link,
        &work.join("image"),
        "core-image-minimal:latest",
    ));
    assert_same_tree(&want, &got, &[]);
    let node = |p: &str| &got[p.as_bytes()];
    assert_eq!((node("srv/app").uid, node("srv/app").gid), (1000, 1000));
    assert_eq!(node("bin/ping").mode, 0o4755);
    assert_eq!(node("usr/bin/sudo").mode, 0o4111);
    assert_eq!(node("dev/console").rdev, Some((5, 1)));
    assert_eq!(
        node("bin/ping").xattrs.get(&b"security.capability"[..]),
        Some(&CAP_NET_RAW_EP.to_vec())
    );

    // Same rootfs, same bytes.
    let first = sha256_file(&link);
    make_rootfs_under_pseudo(&build);
    build.run_pseudo(&["do_image_docker_tar"]);
    let again = build.imgdeploydir().join(format!(
        "core-image-minimal-qemux86-64.rootfs-{DATETIME}.docker-tar"
    ));
    assert_eq!(sha256_file(&again), first, "rebuilt image differs");

    // Why the class reads IMAGE_ROOTFS under pseudo, and not OE's tarball:
    // - the same directory read without pseudo has the wrong owners, modes
    //   and devices (the real files belong to root);
    let plain = work.join("plain.tar");
    squash_image(&rootfs, &plain, None);
    let seen = snapshot(&unpack_layout(&plain, &work.join("plain"), "x:latest"));
    assert_eq!(seen[&b"srv/app"[..]].uid, 0);
    assert_ne!(seen[&b"dev/console"[..]].rdev, Some((5, 1)));
    assert!(seen[&b"bin/ping"[..]].xattrs.is_empty());
    // - OE's tar type (no --xattrs) keeps owners but loses the capability.
    let oe_tar = images.join("core-image-minimal-qemux86-64.rootfs.tar.zst");
    let from_tar = work.join("from-tar.tar");
    squash_image(&oe_tar, &from_tar, None);
    let seen = snapshot_with_mtime(&unpack_layout(&from_tar, &work.join("tar"), "x:latest"));
    let mut want_no_caps = want.clone();
    retain_xattrs(&mut want_no_caps, |_| false);
    assert_same_tree(&want_no_caps, &seen, &[]);
    // - and the directory read under pseudo, squashed, equals the rootfs too.
    let squashed = work.join("squashed.tar");
    squash_image(&rootfs, &squashed, Some(&build.dir.join("pseudo")));
    let seen = snapshot_with_mtime(&unpack_layout(&squashed, &work.join("sq"), "x:latest"));
    assert_same_tree(&want, &seen, &[]);
    build.stop_pseudo();
}

/// The second bitbake invocation of an image whose RUSTIMAGE_* variable
/// changed (or whose rustimage-native did): a new DATETIME, IMGDEPLOYDIR
/// emptied into DEPLOY_DIR_IMAGE by do_image_complete's sstate, and only
/// do_image_docker_tar and do_image_complete run, not do_rootfs.
#[test]
fn a_later_invocation_reruns_the_image_task_alone_and_gets_the_exact_image() {
    if !require_bb() || !require_all(&["pseudo", "tar", "zstd"]) {
        return;
    }
    let build = Build::with_deploy("ipk", "IMAGE_FSTYPES:append = \" docker-tar\"");
    build.install_tool(Path::new(env!("CARGO_BIN_EXE_rustimage")));
    let images = build.tmpdir().join("deploy/images/qemux86-64");
    let link = images.join("core-image-minimal-qemux86-64.rootfs.docker-tar");
    let named = |datetime: &str| {
        images.join(format!(
            "core-image-minimal-qemux86-64.rootfs-{datetime}.docker-tar"
        ))
    };
    let manifest_of = |archive: &Path| -> Value {
        serde_json::from_str(&run_stdout(
            Command::new("tar")
                .arg("-xOf")
                .arg(archive)
                .arg("index.json"),
        ))
        .unwrap()
    };

    // First invocation: the whole image.
    build.run_pseudo(&["do_rootfs", "do_image_docker_tar", "do_image_complete"]);
    let first = sha256_file(&named(DATETIME));
    assert!(build.kept_manifest().is_file());
    // do_image_complete moved everything out of IMGDEPLOYDIR, the image
    // manifest of this DATETIME included.
    assert_eq!(fs::read_dir(build.imgdeploydir()).unwrap().count(), 0);
    assert!(
        images
            .join(format!(
                "core-image-minimal-qemux86-64.rootfs-{DATETIME}.manifest"
            ))
            .is_file()
    );

    // Second invocation, nothing changed but the clock: the same bytes.
    build.append_local("DATETIME = \"20240202030405\"");
    build.run_pseudo(&["do_image_docker_tar", "do_image_complete"]);
    assert_eq!(sha256_file(&named("20240202030405")), first);
    assert_eq!(
        fs::read_link(&link).unwrap(),
        PathBuf::from("core-image-minimal-qemux86-64.rootfs-20240202030405.docker-tar")
    );

    // Third: RUSTIMAGE_TAG changed, as the README invites.
    build.append_local("DATETIME = \"20240303030405\"\nRUSTIMAGE_TAG = \"example/minimal:2.0\"");
    build.run_pseudo(&["do_image_docker_tar", "do_image_complete"]);
    let third = named("20240303030405");
    assert_eq!(
        manifest_of(&third)["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "example/minimal:2.0"
    );
    // Same layers as the first image: only the name changed.
    let layers = |archive: &Path| -> Value {
        let index = manifest_of(archive);
        let digest = index["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .replace(':', "/");
        let m: Value = serde_json::from_str(&run_stdout(
            Command::new("tar")
                .arg("-xOf")
                .arg(archive)
                .arg(format!("blobs/{digest}")),
        ))
        .unwrap();
        m["layers"].clone()
    };
    assert_eq!(layers(&third), layers(&named(DATETIME)));

    // Without the kept manifest (rm_work empties WORKDIR) the task says
    // what to do instead of writing an image without package layers.
    fs::remove_file(build.kept_manifest()).unwrap();
    build.append_local("DATETIME = \"20240404030405\"");
    let err = build.run_pseudo_fails(&["do_image_docker_tar"]);
    assert!(
        err.contains("bitbake -C rootfs core-image-minimal"),
        "{err}"
    );
    build.stop_pseudo();
}

#[test]
fn deb_images_get_their_layers_from_the_deb_feed() {
    if !require_bb() || !require_all(&["pseudo", "tar", "zstd", "skopeo"]) {
        return;
    }
    let build = Build::with_deploy(
        "deb",
        "IMAGE_FSTYPES:append = \" docker-tar\"\nRUSTIMAGE_TAG = \"example/minimal:1.0\"",
    );
    build.install_tool(Path::new(env!("CARGO_BIN_EXE_rustimage")));
    let out = build.run_pseudo(&["do_rootfs", "do_image_docker_tar", "do_image_complete"]);
    build.stop_pseudo();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains("warning"), "{log}");
    let link = build
        .tmpdir()
        .join("deploy/images/qemux86-64/core-image-minimal-qemux86-64.rootfs.docker-tar");
    let inspect: Value = serde_json::from_str(&run_stdout(
        skopeo().args(["inspect", &format!("docker-archive:{}", link.display())]),
    ))
    .unwrap();
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 13, "{inspect}");
    let index: Value = serde_json::from_str(&run_stdout(
        Command::new("tar").arg("-xOf").arg(&link).arg("index.json"),
    ))
    .unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "example/minimal:1.0"
    );
}

#[test]
fn push_container_pushes_the_deployed_image_with_docker_config_credentials() {
    if !require_bb() || !require_all(&["pseudo", "tar", "zstd"]) || !require_registry() {
        return;
    }
    let registry = Registry::htpasswd(true);
    let host = registry.host();
    let scratch = tempfile::tempdir().unwrap();
    let config = scratch.path().join("docker-config");
    registry.write_docker_config(&config);
    // DOCKER_CONFIG as a user passes it through BB_ENV_PASSTHROUGH_ADDITIONS
    // (here set in local.conf): the task's [exports] hands it to rustimage.
    let build = Build::with_deploy(
        "ipk",
        &format!(
            "IMAGE_FSTYPES:append = \" docker-tar\"\n\
             RUSTIMAGE_PUSH_REF = \"{host}/oe/minimal:1.0 {host}/oe/minimal:latest\"\n\
             RUSTIMAGE_PUSH_ARGS = \"--ca-cert {}\"\n\
             DOCKER_CONFIG = \"{}\"",
            registry.ca_cert().unwrap().display(),
            config.display()
        ),
    );
    build.install_tool(Path::new(env!("CARGO_BIN_EXE_rustimage")));
    build.run_pseudo(&["do_rootfs", "do_image_docker_tar", "do_image_complete"]);
    build.stop_pseudo();
    // What OE's do_create_image_sbom_spdx leaves beside the image (an SPDX
    // 3 document in OE's shape, from tests/data).
    let images = build.tmpdir().join("deploy/images/qemux86-64");
    let oe_spdx =
        fs::read(repo().join("tests/data/core-image-minimal-qemux86-64.rootfs.spdx.json")).unwrap();
    fs::write(
        images.join("core-image-minimal-qemux86-64.rootfs.spdx.json"),
        &oe_spdx,
    )
    .unwrap();
    // Not a fakeroot task: run outside pseudo, as bitbake-worker does.
    let out = run_ok(Command::new("python3").arg(driver()).arg(&build.dir).args([
        "run",
        IMAGE,
        "do_push_container",
    ]));
    let log = String::from_utf8_lossy(&out.stderr);

    // The deployed image's manifest is what the registry now has, under
    // both tags, and its digest is logged and written to the digest file.
    let link = build
        .tmpdir()
        .join("deploy/images/qemux86-64/core-image-minimal-qemux86-64.rootfs.docker-tar");
    let index: Value = serde_json::from_str(&run_stdout(
        Command::new("tar").arg("-xOf").arg(&link).arg("index.json"),
    ))
    .unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    for tag in ["1.0", "latest"] {
        let pushed = registry.manifest("oe/minimal", tag).unwrap();
        assert_eq!(pushed.digest, digest, "{tag}");
        assert!(
            log.contains(&format!("pushed {host}/oe/minimal:{tag}@{digest}")),
            "{log}"
        );
    }
    let digestfile = build
        .workdir()
        .join("push_container/core-image-minimal.digest");
    assert_eq!(fs::read_to_string(digestfile).unwrap().trim(), digest);
    assert!(!log.contains(TEST_PASSWORD), "{log}");

    // The registry has no referrers API: the referrers tag lists the
    // docker-tar's own SBOM (RUSTIMAGE_SBOM's default) and OE's, once each
    // (pushed twice, under two tags), and OE's comes back byte for byte.
    let tag = format!("sha256-{}", &digest[7..]);
    let referrers = registry
        .manifest("oe/minimal", &tag)
        .expect("a referrers tag");
    let referrers: Value = serde_json::from_slice(&referrers.body).unwrap();
    let mut types: Vec<&str> = referrers["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["artifactType"].as_str().unwrap())
        .collect();
    types.sort();
    assert_eq!(
        types,
        ["application/spdx+json", "application/spdx3+json"],
        "{referrers}"
    );
    let spdx3 = referrers["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["artifactType"] == "application/spdx3+json")
        .unwrap();
    let artifact = registry
        .manifest("oe/minimal", spdx3["digest"].as_str().unwrap())
        .unwrap();
    let artifact: Value = serde_json::from_slice(&artifact.body).unwrap();
    assert_eq!(artifact["subject"]["digest"], digest);
    let layer = artifact["layers"][0]["digest"].as_str().unwrap();
    assert_eq!(registry.blob("oe/minimal", layer).unwrap(), oe_spdx);
    assert!(log.contains("attached OE's SBOM"), "{log}");
}

#[test]
fn push_task_says_what_is_missing() {
    if !require_bb() || !require_all(&["tar", "zstd"]) {
        return;
    }
    let build = Build::new("IMAGE_FSTYPES:append = \" docker-tar\"", "");
    let err = build.run_fails(&["do_push_container"]);
    assert!(err.contains("set RUSTIMAGE_PUSH_REF"), "{err}");
    let build = Build::new(
        "IMAGE_FSTYPES:append = \" docker-tar\"\nRUSTIMAGE_PUSH_REF = \"127.0.0.1:5000/minimal:latest\"",
        "",
    );
    let err = build.run_fails(&["do_push_container"]);
    assert!(err.contains("add docker-tar to IMAGE_FSTYPES"), "{err}");
    // BB_NO_NETWORK: stop before anything is contacted.
    build.append_local("BB_NO_NETWORK = \"1\"");
    let err = build.run_fails(&["do_push_container"]);
    assert!(
        err.contains("BB_NO_NETWORK is set, so do_push_container does not contact 127.0.0.1:5000/minimal:latest"),
        "{err}"
    );
}

/// Logins kept by a credential helper: the docker configuration names
/// docker-credential-NAME, which is on the PATH bitbake was started with
/// but not on BitBake's task PATH (HOSTTOOLS only).
#[test]
fn push_container_finds_the_hosts_credential_helper() {
    if !require_bb() || !require_all(&["pseudo", "tar", "zstd"]) || !require_registry() {
        return;
    }
    let registry = Registry::htpasswd(true);
    let host = registry.host();
    let scratch = tempfile::tempdir().unwrap();
    let bin = scratch.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-rustimagetest");
    let calls = scratch.path().join("helper-calls");
    fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread server\necho \"$1 $server\" >> '{}'\n\
             [ \"$1\" = get ] || exit 1\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"{TEST_USER}\",\"Secret\":\"{TEST_PASSWORD}\"}}\\n' \"$server\"\n",
            calls.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).unwrap();
    let config = scratch.path().join("docker-config");
    fs::create_dir_all(&config).unwrap();
    fs::write(
        config.join("config.json"),
        serde_json::to_vec(&serde_json::json!({"credHelpers": {host.clone(): "rustimagetest"}}))
            .unwrap(),
    )
    .unwrap();
    let build = Build::with_deploy(
        "ipk",
        &format!(
            "IMAGE_FSTYPES:append = \" docker-tar\"\n\
             RUSTIMAGE_PUSH_REF = \"{host}/oe/helper:1.0\"\n\
             RUSTIMAGE_PUSH_ARGS = \"--ca-cert {}\"\n\
             DOCKER_CONFIG = \"{}\"",
            registry.ca_cert().unwrap().display(),
            config.display()
        ),
    );
    build.install_tool(Path::new(env!("CARGO_BIN_EXE_rustimage")));
    build.run_pseudo(&["do_rootfs", "do_image_docker_tar", "do_image_complete"]);
    build.stop_pseudo();
    // The helper is on bitbake's own PATH (BB_ORIGENV), not in HOSTTOOLS.
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = run_ok(
        Command::new("python3")
            .arg(driver())
            .arg(&build.dir)
            .args(["run", IMAGE, "do_push_container"])
            .env("PATH", path),
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains(&format!("pushed {host}/oe/helper:1.0@sha256:")),
        "{log}"
    );
    assert!(registry.manifest("oe/helper", "1.0").is_some());
    let calls = fs::read_to_string(&calls).unwrap();
    assert!(calls.starts_with(&format!("get {host}")), "{calls}");
    assert!(!log.contains(TEST_PASSWORD), "{log}");
    // Only the helpers are linked, none of the host's other programs.
    let linked: Vec<String> =
        fs::read_dir(build.workdir().join("push_container-credential-helpers"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
    assert!(
        linked.iter().all(|n| n.starts_with("docker-credential-")),
        "{linked:?}"
    );
    assert!(linked.contains(&"docker-credential-rustimagetest".to_string()));
}

// ---------------------------------------------------------------------------
// The crates file
// ---------------------------------------------------------------------------

/// The recipe fetches the sources at SRCREV and builds them with
/// `cargo --frozen` from the crates the crates file lists: SRCREV's
/// Cargo.lock must be the one the crates file was made from, else BitBake's
/// build fails on a crate it never fetched.
#[test]
fn the_recipes_srcrev_has_the_cargo_lock_the_crates_file_lists() {
    if !require_all(&["python3", "git"]) {
        return;
    }
    let recipe =
        fs::read_to_string(repo().join("meta-rustimage/recipes-core/rustimage/rustimage_0.1.0.bb"))
            .unwrap();
    let srcrev = recipe
        .lines()
        .find_map(|l| l.strip_prefix("SRCREV = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("SRCREV = \"...\" in the recipe");
    let lock = Command::new("git")
        .arg("-C")
        .arg(repo())
        .args(["show", &format!("{srcrev}:Cargo.lock")])
        .output()
        .unwrap();
    if !lock.status.success() {
        let why = format!(
            "SRCREV {srcrev} is not in this clone: {}",
            String::from_utf8_lossy(&lock.stderr).trim()
        );
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{why}");
        }
        skip(&why);
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let inc = "meta-rustimage/recipes-core/rustimage/rustimage-crates.inc";
    fs::create_dir_all(root.join("scripts")).unwrap();
    fs::create_dir_all(root.join(inc).parent().unwrap()).unwrap();
    fs::copy(
        repo().join("scripts/update-crates-inc"),
        root.join("scripts/update-crates-inc"),
    )
    .unwrap();
    fs::copy(repo().join(inc), root.join(inc)).unwrap();
    fs::write(root.join("Cargo.lock"), &lock.stdout).unwrap();
    let out = Command::new(root.join("scripts/update-crates-inc"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the crates file does not match Cargo.lock at SRCREV {srcrev}: set SRCREV to a commit \
         with this Cargo.lock\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn crates_inc_matches_cargo_lock_and_the_check_catches_drift() {
    if !require("python3") {
        return;
    }
    let script = repo().join("scripts/update-crates-inc");
    run_ok(Command::new(&script).arg("--check"));

    // A copy whose Cargo.lock gained a crate fails the check, with a diff.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let inc = "meta-rustimage/recipes-core/rustimage/rustimage-crates.inc";
    fs::create_dir_all(root.join("scripts")).unwrap();
    fs::create_dir_all(root.join(inc).parent().unwrap()).unwrap();
    fs::copy(&script, root.join("scripts/update-crates-inc")).unwrap();
    fs::copy(repo().join(inc), root.join(inc)).unwrap();
    let lock = fs::read_to_string(repo().join("Cargo.lock")).unwrap();
    fs::write(
        root.join("Cargo.lock"),
        format!(
            "{lock}\n[[package]]\nname = \"zzz-new\"\nversion = \"1.0.0\"\n\
             source = \"registry+https://github.com/rust-lang/crates.io-index\"\n\
             checksum = \"{}\"\n",
            "0".repeat(64)
        ),
    )
    .unwrap();
    let out = run_fail(Command::new(root.join("scripts/update-crates-inc")).arg("--check"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("+    crate://crates.io/zzz-new/1.0.0 \\"),
        "{stderr}"
    );
    assert!(stderr.contains("run scripts/update-crates-inc"), "{stderr}");
    run_ok(Command::new(root.join("scripts/update-crates-inc")));
    run_ok(Command::new(root.join("scripts/update-crates-inc")).arg("--check"));
}

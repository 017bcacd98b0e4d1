#!/usr/bin/env python3
"""The steps of scripts/check-layer that drive a real OE-core through
BitBake's Python library, with tests/meta/bbdriver.py (the driver CI uses
over the stand-in metadata). Run in the build directory check-layer made,
with PYTHONPATH at the BitBake checkout's lib/.

    check-layer-real.py vars OUTDIR
    check-layer-real.py task OUTDIR RUSTIMAGE
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DRIVER = os.path.join(REPO, "tests/meta/bbdriver.py")
IMAGE = "core-image-minimal"
TASK = "do_image_docker_tar"
BUILD = os.getcwd()


def say(*a):
    print(*a, flush=True)


def local_conf(extra):
    """Appends lines to conf/local.conf; returns a function that restores it."""
    path = os.path.join(BUILD, "conf/local.conf")
    with open(path) as f:
        orig = f.read()
    with open(path, "w") as f:
        f.write(orig + "\n" + extra + "\n")

    def restore():
        with open(path, "w") as f:
            f.write(orig)
    return restore


def parse(recipe, args=(), extra=""):
    restore = local_conf(extra)
    try:
        out = subprocess.run([sys.executable, DRIVER, BUILD, "parse", recipe, *args],
                             capture_output=True, text=True)
    finally:
        restore()
    if out.returncode != 0:
        sys.exit(f"bbdriver parse {recipe} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cmd_vars(outdir):
    ok = True
    base = parse(IMAGE, ["--sig", TASK, "--var", "IMAGE_CLASSES", "--var", "IMGCLASSES",
                         "--var", "SPDX_IMAGE_PURPOSE:docker-tar", "--var", "IMAGE_FSTYPES"])
    say("with docker-tar (IMAGE_FSTYPES = %r):" % base["vars"]["IMAGE_FSTYPES"])
    say("  inherits image_types_rustimage:", "image_types_rustimage" in base["inherits"])
    say("  IMAGE_CLASSES:", base["vars"]["IMAGE_CLASSES"])
    say("  rustimage tasks:", [t for t in base["tasks"] if "docker" in t or "push" in t])
    for k, v in sorted(base["tasks"][TASK].items()):
        say("  %s[%s] = %r" % (TASK, k, v))
    say("  do_rootfs[postfuncs] = %r" % base["tasks"]["do_rootfs"].get("postfuncs"))
    for k in ("depends", "network", "nostamp", "exports", "prefuncs", "deps"):
        say("  do_push_container[%s] = %r" % (k, base["tasks"]["do_push_container"].get(k)))
    say("  SPDX_IMAGE_PURPOSE:docker-tar = %r" % base["vars"]["SPDX_IMAGE_PURPOSE:docker-tar"])
    for k, v in sorted(base["vars"].items()):
        if k.startswith("RUSTIMAGE_"):
            say("  %s = %r" % (k, v))
    sigvars = base["sig"][TASK]["vars"]
    say("  %s's signature covers %d variables and functions; of note:" % (TASK, len(sigvars)))
    say("   ", " ".join(v for v in sigvars if v.startswith("RUSTIMAGE_") or v in (
        "IMAGE_ROOTFS", "IMAGE_MANIFEST", "IMAGE_NAME", "DEPLOY_DIR_IPK", "IMAGE_PKGTYPE", "TARGET_ARCH",
        "TUNE_FEATURES", "DISTRO_VERSION", "REPRODUCIBLE_TIMESTAMP_ROOTFS", "METADATA_REVISION", "DATETIME",
        "oe.go.map_arch")))
    for v in ("RUSTIMAGE_JOBS", "METADATA_REVISION", "DATETIME", "BB_NUMBER_THREADS"):
        if v in sigvars:
            say("  WRONG: %s is in the signature" % v)
            ok = False
    h0 = base["sig"][TASK]["basehash"]
    for line, should_change in [
        ('RUSTIMAGE_JOBS = "7"', False),
        ('BB_NUMBER_THREADS = "13"', False),
        ('DATETIME = "20991231235959"', False),
        ('METADATA_REVISION = "0123456789abcdef0123456789abcdef01234567"', False),
        ('RUSTIMAGE_TAG = "other:1"', True),
        ('RUSTIMAGE_ENV = "A=1"', True),
        ('RUSTIMAGE_COMPRESSION = "zstd"', True),
        ('DISTRO_VERSION = "9.9"', True),
    ]:
        h = parse(IMAGE, ["--sig", TASK], line)["sig"][TASK]["basehash"]
        changed = h != h0
        good = changed == should_change
        ok &= good
        say("  %-62s %s (%s)" % (line, "CHANGED" if changed else "same", "as it should" if good else "WRONG"))

    # Without docker-tar, with and without the layer: every base hash.
    # do_rootfs_wicenv (every image) covers WICVARS, and WICVARS has
    # BBLAYERS: adding any layer at all, even an empty one, changes it. So
    # BBLAYERS itself is left out of this comparison, and what remains is
    # what the layer's content changes.
    nodocker = 'IMAGE_FSTYPES:remove = "docker-tar"\nBB_BASEHASH_IGNORE_VARS:append = " BBLAYERS"'
    with_layer = parse(IMAGE, ["--sig-all"], nodocker)
    say("without docker-tar: inherits image_types_rustimage: %s; rustimage tasks: %s; RUSTIMAGE_* variables: %d" % (
        "image_types_rustimage" in with_layer["inherits"],
        [t for t in with_layer["tasks"] if "docker" in t or "push" in t],
        sum(1 for k in with_layer["vars"] if k.startswith("RUSTIMAGE_"))))
    bbl = os.path.join(BUILD, "conf/bblayers.conf")
    with open(bbl) as f:
        layers = f.read()
    layer = os.path.join(REPO, "meta-rustimage")
    with open(bbl, "w") as f:
        f.write(layers.replace(" " + layer, ""))
    try:
        without_layer = parse(IMAGE, ["--sig-all"], nodocker)
    finally:
        with open(bbl, "w") as f:
            f.write(layers)
    a = {t: s["basehash"] for t, s in without_layer["sig"].items()}
    b = {t: s["basehash"] for t, s in with_layer["sig"].items()}
    differ = sorted(t for t in set(a) | set(b) if a.get(t) != b.get(t))
    say("  base hashes of core-image-minimal's %d tasks with the layer vs without: %s" % (
        len(a), "all the same" if not differ else "DIFFER: %s" % differ))
    ok &= not differ and "image_types_rustimage" not in with_layer["inherits"]

    example = parse("container-image-minimal", ["--var", "IMAGE_FSTYPES"])
    kernel = sorted(t for t, f in example["tasks"].items() if "virtual/kernel" in (f.get("depends") or ""))
    say("container-image-minimal: IMAGE_FSTYPES %r, image tasks %s, tasks depending on virtual/kernel: %s, "
        "skipped %s" % (example["vars"]["IMAGE_FSTYPES"], [t for t in example["tasks"] if t.startswith("do_image_")],
                        kernel or "none", example["skipped"] or "no"))
    ok &= not kernel
    plain = parse(IMAGE)
    say("  (core-image-minimal, for comparison: tasks depending on virtual/kernel: %s)" % sorted(
        t for t, f in plain["tasks"].items() if "virtual/kernel" in (f.get("depends") or "")))
    bad = parse(IMAGE, [], 'IMAGE_FSTYPES:append = " docker-tar.gz"')
    say("docker-tar.gz: skipped: %s" % bad["skipped"].get(""))
    ok &= bool(bad["skipped"].get(""))

    recipe = parse("rustimage", ["--variant", "native", "--var", "S", "--var", "DEPENDS", "--var", "SRC_URI",
                                 "--var", "CARGO_MANIFEST_PATH", "--var", "RUSTVERSION",
                                 "--var", "ZSTD_SYS_USE_PKG_CONFIG"])
    say("rustimage-native: RUSTVERSION %r" % recipe["vars"]["RUSTVERSION"])
    if recipe["skipped"]:
        say("  skipped: %s" % recipe["skipped"].get("native"))
    else:
        uris = recipe["vars"]["SRC_URI"].split()
        for v in ("S", "CARGO_MANIFEST_PATH", "DEPENDS", "ZSTD_SYS_USE_PKG_CONFIG"):
            say("  %s = %r" % (v, recipe["vars"][v]))
        say("  SRC_URI: %s + %d crates" % (uris[0], sum(1 for u in uris if u.startswith("crate://"))))
        say("  inherits pkgconfig: %s" % ("pkgconfig" in recipe["inherits"]))
    with open(os.path.join(outdir, "vars.json"), "w") as f:
        json.dump({"base": base, "recipe": recipe}, f, indent=1, sort_keys=True)
    if not ok:
        sys.exit("vars: a check failed")


def pseudo_env(state):
    """Debian's pseudo with the state directory and include paths OE's
    FAKEROOTENV gives the image's fakeroot tasks."""
    env = dict(os.environ)
    env.update(PSEUDO_PREFIX="/usr", PSEUDO_LOCALSTATEDIR=state)
    env.update(FAKEROOT_EXTRA)
    return env


FAKEROOT_EXTRA = {}
TASKHASHES = {}


def run_tasks(tasks, datetime, skip=(), check=True):
    args = [sys.executable, DRIVER, BUILD, "run", IMAGE, *tasks,
            "--set", "DATETIME=" + datetime,
            # What bitbake-worker sets for a task (sstate names its archive
            # after it): the task's hash, here its base hash.
            "--set", "BB_TASKHASH=" + TASKHASHES.get(tasks[0], "0" * 64),
            "--set", "BB_UNIHASH=" + TASKHASHES.get(tasks[0], "0" * 64),
            # Debian's pseudo stands in for pseudo-native, which is not built:
            # PSEUDO_PREFIX (FAKEROOTENV) becomes /usr.
            "--set", "PSEUDO_SYSROOT="]
    for s in skip:
        args += ["--skip", s]
    out = subprocess.run(["pseudo", *args], env=pseudo_env(STATE), capture_output=True, text=True)
    if check and out.returncode != 0:
        sys.exit("task run failed: %s\n%s" % (" ".join(tasks), out.stderr[-4000:]))
    return out


def archive_summary(path):
    with tarfile.open(path) as t:
        docker = json.load(t.extractfile("manifest.json"))
        index = json.load(t.extractfile("index.json"))
    return {"RepoTags": docker[0]["RepoTags"], "layers": len(docker[0]["Layers"]),
            "digest": index["manifests"][0]["digest"],
            "annotations": index["manifests"][0].get("annotations", {})}


def cmd_task(outdir, rustimage):
    global STATE
    info = parse(IMAGE, ["--var", "WORKDIR", "--var", "IMAGE_ROOTFS", "--var", "IMGDEPLOYDIR",
                         "--var", "IMAGE_LINK_NAME", "--var", "DEPLOY_DIR_IMAGE", "--var", "PSEUDO_LOCALSTATEDIR",
                         "--var", "STAGING_BINDIR_NATIVE", "--var", "DEPLOY_DIR_IPK", "--var", "PKGDATA_DIR",
                         "--var", "RUSTIMAGE_ROOTFS_MANIFEST", "--var", "TMPDIR", "--var", "FAKEROOTENV", "--var", "IMGMANIFESTDIR",
                         "--sig", "do_image_complete", "--sig", TASK],
                 'PSEUDO_SYSROOT = ""')
    v = info["vars"]
    TASKHASHES.update({t: sig["basehash"] for t, sig in info["sig"].items()})
    work, rootfs, imgdeploy, deploy = v["WORKDIR"], v["IMAGE_ROOTFS"], v["IMGDEPLOYDIR"], v["DEPLOY_DIR_IMAGE"]
    STATE = v["PSEUDO_LOCALSTATEDIR"]
    for kv in v["FAKEROOTENV"].split():
        key, _, value = kv.partition("=")
        if key in ("PSEUDO_INCLUDE_PATHS", "PSEUDO_IGNORE_PATHS", "PSEUDO_NOSYMLINKEXP"):
            FAKEROOT_EXTRA[key] = value
    rootfs_postfuncs = (info["tasks"]["do_rootfs"].get("postfuncs") or "").split()
    say("do_rootfs postfuncs: %s" % rootfs_postfuncs)
    # A fresh work directory and deploy area for core-image-minimal.
    for p in (work, deploy, v["DEPLOY_DIR_IPK"], v["PKGDATA_DIR"]):
        shutil.rmtree(p, ignore_errors=True)
    import glob
    for p in glob.glob(os.path.join(v["TMPDIR"], "sstate-control", "manifest-*-core-image-minimal.*")):
        os.remove(p)
    inputs = os.path.join(outdir, "inputs")
    shutil.rmtree(inputs, ignore_errors=True)
    # What a build of core-image-minimal leaves in tmp/: feed, pkgdata, and
    # (moved aside) the rootfs as a tarball and the manifest do_rootfs writes.
    subprocess.run([sys.executable, os.path.join(REPO, "example/make-deploy.py"), inputs,
                    "--backend", "ipk", "--rootfs-compression", "none"], check=True, capture_output=True)
    made = os.path.join(inputs, "tmp")
    shutil.copytree(os.path.join(made, "deploy/ipk"), v["DEPLOY_DIR_IPK"])
    shutil.copytree(os.path.join(made, "pkgdata/qemux86-64"), v["PKGDATA_DIR"])
    images = os.path.join(made, "deploy/images/qemux86-64")
    tarball = os.path.join(images, "core-image-minimal-qemux86-64.rootfs.tar")
    manifest = os.path.join(images, "core-image-minimal-qemux86-64.rootfs.manifest")

    # do_rootfs's result: the rootfs, owned as pseudo recorded it, and the
    # image manifest at ${IMAGE_MANIFEST} of the first invocation.
    first = "20260101000001"
    os.makedirs(rootfs)
    os.makedirs(imgdeploy)
    if v.get("IMGMANIFESTDIR"):
        # do_image's cleandirs (do_image itself is not run).
        os.makedirs(v["IMGMANIFESTDIR"], exist_ok=True)
    env = pseudo_env(STATE)
    subprocess.run(["pseudo", "tar", "--numeric-owner", "-xpf", tarball, "-C", rootfs], env=env, check=True)
    subprocess.run(["pseudo", "setfattr", "-n", "security.capability", "-v", "0x0100000200200000000000000000000000000000",
                    os.path.join(rootfs, "bin/ping")], env=env, check=True)
    shutil.copy(manifest, os.path.join(imgdeploy, "%s-%s.manifest" % (v["IMAGE_LINK_NAME"], first)))
    os.makedirs(v["STAGING_BINDIR_NATIVE"])
    os.symlink(rustimage, os.path.join(v["STAGING_BINDIR_NATIVE"], "rustimage"))

    # Invocation 1: do_rootfs's postfuncs (not do_rootfs itself, nor OE's
    # other postfuncs), then do_image_docker_tar with OE's prefuncs and
    # postfuncs but extend_recipe_sysroot (the native sysroot is made by
    # hand above), then do_image_complete with its sstate postfunc, which
    # moves IMGDEPLOYDIR to DEPLOY_DIR_IMAGE.
    rootfs_prefuncs = (info["tasks"]["do_rootfs"].get("prefuncs") or "").split()
    skip_rootfs = ["do_rootfs"] + rootfs_prefuncs + [f for f in rootfs_postfuncs if f != "rustimage_keep_rootfs_manifest"]
    run_tasks(["do_rootfs"], first, skip_rootfs)
    say("invocation 1 (DATETIME %s): kept manifest %s: %s" % (
        first, v["RUSTIMAGE_ROOTFS_MANIFEST"], os.path.isfile(v["RUSTIMAGE_ROOTFS_MANIFEST"])))
    run_tasks([TASK], first, ["extend_recipe_sysroot"])
    out1 = os.path.join(imgdeploy, "%s-%s.docker-tar" % (v["IMAGE_LINK_NAME"], first))
    h1 = sha256(out1)
    s1 = archive_summary(out1)
    say("  %s: sha256 %s, %s" % (os.path.basename(out1), h1, s1))
    complete = run_tasks(["do_image_complete"], first, ["extend_recipe_sysroot"], check=False)
    if complete.returncode != 0:
        with open(os.path.join(outdir, "do_image_complete.log"), "w") as f:
            f.write(complete.stderr)
        sys.exit("do_image_complete failed:\n" + "\n".join(
            l for l in complete.stderr.splitlines() if l.startswith(("ERROR", "Exception", "bbdriver")))[-3000:])
    else:
        say("  do_image_complete (OE's, with its sstate postfunc) ran")
    say("  IMGDEPLOYDIR now: %s; DEPLOY_DIR_IMAGE: %s" % (
        sorted(os.listdir(imgdeploy)) if os.path.isdir(imgdeploy) else "(removed)", sorted(os.listdir(deploy))))
    os.makedirs(imgdeploy, exist_ok=True)

    # Invocation 2: a new DATETIME, do_rootfs not run.
    second = "20260101000002"
    gone = os.path.join(imgdeploy, "%s-%s.manifest" % (v["IMAGE_LINK_NAME"], second))
    say("invocation 2 (DATETIME %s): ${IMAGE_MANIFEST} %s exists: %s" % (second, gone, os.path.exists(gone)))
    run_tasks([TASK], second, ["extend_recipe_sysroot"])
    out2 = os.path.join(imgdeploy, "%s-%s.docker-tar" % (v["IMAGE_LINK_NAME"], second))
    h2 = sha256(out2)
    say("  %s: sha256 %s: %s" % (os.path.basename(out2), h2, "the same bytes" if h2 == h1 else "DIFFERENT"))
    run_tasks(["do_image_complete"], second, ["extend_recipe_sysroot"])
    os.makedirs(imgdeploy, exist_ok=True)

    # Invocation 3: RUSTIMAGE_TAG changed.
    third = "20260101000003"
    restore = local_conf('RUSTIMAGE_TAG = "example/minimal:2.0"')
    try:
        run_tasks([TASK], third, ["extend_recipe_sysroot"])
    finally:
        restore()
    out3 = os.path.join(imgdeploy, "%s-%s.docker-tar" % (v["IMAGE_LINK_NAME"], third))
    s3 = archive_summary(out3)
    say("invocation 3 (DATETIME %s, RUSTIMAGE_TAG changed): %s" % (third, s3))
    run_tasks(["do_image_complete"], third, ["extend_recipe_sysroot"])
    say("  after its do_image_complete, DEPLOY_DIR_IMAGE: %s" % sorted(os.listdir(deploy)))
    ok = h1 == h2 and s3["RepoTags"] == ["example/minimal:2.0"] and s3["layers"] == s1["layers"]
    shutil.copy(out1, os.path.join(outdir, "first.docker-tar"))
    subprocess.run(["pseudo", "-S"], env=pseudo_env(STATE), capture_output=True)
    if not ok:
        sys.exit("task: a check failed")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "vars":
        cmd_vars(sys.argv[2])
    elif cmd == "task":
        # No hash equivalence server here: sstate_task_postfunc would report
        # the task's unihash to one (bitbake-worker context).
        restore_conf = local_conf('BB_SIGNATURE_HANDLER = "OEBasicHash"')
        try:
            cmd_task(sys.argv[2], os.path.abspath(sys.argv[3]))
        finally:
            restore_conf()
    else:
        sys.exit("unknown command " + cmd)

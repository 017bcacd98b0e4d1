#!/usr/bin/env python3
"""rustimage benchmark: wall time and peak RSS of each way to build (and
push) an image, next to the compression floor, pigz and umoci.

    bench/run.py                 # small and large deploy dirs, writes bench/RESULTS.md
    bench/run.py --sizes small   # quick run

It generates its own OE-like build outputs with example/make-deploy.py: a
small one (core-image-minimal's dozen packages) and a large one (a few
hundred packages, a rootfs of over 500 MB of mixed small and large files).
Everything runs on this machine, the registry on 127.0.0.1. Needs: cargo,
python3, zstd, gzip, pigz, umoci, docker-registry, GNU time (/usr/bin/time).
"""

import argparse
import glob
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE, MACHINE = "core-image-minimal", "qemux86-64"
# Real code and data for file contents, where the machine has them: the
# compressors then work as hard as on a real rootfs.
CONTENT = next((d for d in ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib"]
                if os.path.isdir(d)), None)
SIZES = {
    # name: make-deploy.py arguments
    "small": [],
    "large": ["--extra", "300", "--extra-mb", "520"] + (["--content-from", CONTENT] if CONTENT else []),
}
BUMPED = {"small": "busybox", "large": "extra150"}


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=isinstance(cmd, str), check=True, **kw)


def measure(name, cmd, env=None):
    """Runs `cmd` under GNU time; returns (seconds, peak RSS MiB)."""
    fmt = "%e %M"
    full = ["/usr/bin/time", "-f", fmt, "-o", "/tmp/rustimage-bench-time"] + (
        ["sh", "-c", cmd] if isinstance(cmd, str) else cmd)
    subprocess.run(full, check=True, stdout=subprocess.DEVNULL, env=env)
    secs, kb = open("/tmp/rustimage-bench-time").read().split()[-2:]
    print(f"  {name:<42} {float(secs):7.2f} s {int(kb) / 1024:7.1f} MiB", flush=True)
    return float(secs), int(kb) / 1024


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Registry:
    def __init__(self, work):
        self.port = free_port()
        cfg = os.path.join(work, "registry.yml")
        with open(cfg, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                    f"    rootdirectory: {work}/registry\nhttp:\n  addr: 127.0.0.1:{self.port}\n")
        self.proc = subprocess.Popen(["docker-registry", "serve", cfg],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("docker-registry did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def deploy(work, size, bump=None):
    out = os.path.join(work, size + ("-bumped" if bump else ""))
    args = SIZES[size] + (["--bump", bump] if bump else [])
    sh([sys.executable, os.path.join(ROOT, "example/make-deploy.py"), out] + args, stdout=subprocess.DEVNULL)
    return os.path.join(out, "tmp/deploy")


def rootfs_of(d):
    return os.path.join(d, "images", MACHINE, f"{IMAGE}-{MACHINE}.rootfs.tar.zst")


def run_size(size, work, tool, results):
    print(f"{size}: generating the deploy dirs", flush=True)
    d = deploy(work, size)
    b = deploy(work, size, BUMPED[size])
    rootfs = rootfs_of(d)
    raw = int(subprocess.run(f"zstd -dc {rootfs} | wc -c", shell=True, check=True,
                             capture_output=True, text=True).stdout)
    files = int(subprocess.run(f"zstd -dc {rootfs} | tar -t | wc -l", shell=True, check=True,
                               capture_output=True, text=True).stdout)
    out = os.path.join(work, "out")
    os.makedirs(out, exist_ok=True)
    r = {"rootfs_bytes": raw, "entries": files, "runs": {}}
    runs = r["runs"]
    deploy_args = ["--deploy-dir", d, "--image", IMAGE, "--machine", MACHINE]
    runs["floor: zstd -dc | gzip -6 -n (1 core)"] = measure(
        "floor: zstd -dc | gzip -6 -n", f"zstd -dc {rootfs} | gzip -6 -n > /dev/null")
    runs["zstd -dc | pigz -6 -n"] = measure(
        "zstd -dc | pigz -6 -n", f"zstd -dc {rootfs} | pigz -6 -n > /dev/null")
    runs["build --squash (gzip)"] = measure(
        "build --squash (gzip)", [tool, "build", "-q", "--squash", "--rootfs", rootfs, "-o", f"{out}/sq.tar"])
    runs["build --squash (zstd)"] = measure(
        "build --squash (zstd)",
        [tool, "build", "-q", "--squash", "--compression", "zstd", "--rootfs", rootfs, "-o", f"{out}/sqz.tar"])
    runs["build per-package, cold"] = measure(
        "build per-package, cold", [tool, "build", "-q"] + deploy_args + ["-o", f"{out}/pp.tar"])
    runs["build per-package (zstd), cold"] = measure(
        "build per-package (zstd), cold",
        [tool, "build", "-q", "--compression", "zstd"] + deploy_args + ["-o", f"{out}/ppz.tar"])
    cache = os.path.join(work, "cache-" + size)
    shutil.rmtree(cache, ignore_errors=True)
    sh([tool, "build", "-q", "--cache", cache] + deploy_args + ["-o", f"{out}/warm0.tar"])
    bumped_args = ["--deploy-dir", b, "--image", IMAGE, "--machine", MACHINE]
    runs["build per-package, warm, one package changed"] = measure(
        "build per-package, warm, 1 package changed",
        [tool, "build", "-q", "--cache", cache] + bumped_args + ["-o", f"{out}/warm1.tar"])

    reg = Registry(work)
    try:
        ref = f"127.0.0.1:{reg.port}/bench/{size}:1"
        sh([tool, "push", "-q", "--insecure", f"{out}/warm0.tar", ref])
        runs["push of the one-package change"] = measure(
            "push of the one-package change", [tool, "push", "-q", "--insecure", f"{out}/warm1.tar", ref])
    finally:
        reg.stop()

    # meta-virtualization's path: umoci fills an empty image from the rootfs
    # directory (IMAGE_ROOTFS) and repacks it. We time the same start point
    # for rustimage: the extracted directory.
    rdir = os.path.join(work, "rootfs-" + size)
    shutil.rmtree(rdir, ignore_errors=True)
    os.makedirs(rdir)
    sh(f"zstd -dc {rootfs} | tar -x --numeric-owner -p -C {rdir}")
    umoci = os.path.join(work, "umoci-" + size)
    script = (f"set -e; rm -rf {umoci}; mkdir -p {umoci}; cd {umoci}; "
              f"umoci init --layout img; umoci new --image img:latest; "
              f"umoci unpack --image img:latest bundle; "
              f"cp -r -a --no-preserve=ownership {rdir}/* bundle/rootfs/; "
              f"umoci repack --image img:latest bundle")
    runs["umoci init/new/unpack, cp -a, repack (meta-virtualization)"] = measure(
        "umoci (meta-virtualization's way)", script)
    runs["build --squash (gzip) from the rootfs directory"] = measure(
        "build --squash (gzip) from the directory",
        [tool, "build", "-q", "--squash", "--rootfs", rdir, "-o", f"{out}/dir.tar"])
    runs["build --squash (gzip level 4) from the rootfs directory"] = measure(
        "build --squash (gzip -4) from the directory",
        [tool, "build", "-q", "--squash", "--compression-level", "4", "--rootfs", rdir, "-o", f"{out}/dir4.tar"])
    r["layer_bytes"] = {
        "umoci": max(os.path.getsize(p) for p in glob.glob(f"{umoci}/img/blobs/sha256/*")),
        "rustimage gzip 6": os.path.getsize(f"{out}/dir.tar"),
        "rustimage gzip 4": os.path.getsize(f"{out}/dir4.tar"),
    }
    shutil.rmtree(umoci, ignore_errors=True)
    shutil.rmtree(rdir, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    results[size] = r


def machine():
    cpu = "unknown"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(open("/proc/meminfo").readline().split()[1]) // 1024
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory_mib": mem, "kernel": platform.release(),
            "commit": commit, "date": time.strftime("%Y-%m-%d")}


TARGETS = {
    # run: (target ratio to the floor, comparison)
    "build --squash (gzip)": 0.6,
    "build per-package, cold": 0.6,
    "build per-package, warm, one package changed": 0.15,
}


def report(results, m):
    lines = ["# Benchmark results", "",
             f"Machine: {m['cpus']} cores ({m['cpu']}), {m['memory_mib']} MiB, Linux {m['kernel']}; "
             f"rustimage {m['commit']}, {m['date']}. Rerun with `bench/run.py`. "
             f"File contents of the large image: {CONTENT or 'synthetic'}.", ""]
    for size, r in results.items():
        floor = r["runs"]["floor: zstd -dc | gzip -6 -n (1 core)"][0]
        umoci = r["runs"].get("umoci init/new/unpack, cp -a, repack (meta-virtualization)", (None,))[0]
        lines += [f"## {size}: {r['rootfs_bytes'] / 2**20:.0f} MiB rootfs, {r['entries']} entries", "",
                  "| run | wall s | peak RSS MiB | / floor | target |", "|---|---:|---:|---:|---|"]
        for name, (secs, rss) in r["runs"].items():
            target = TARGETS.get(name)
            t = f"<= {target}" if target else ""
            if target and floor < 1:
                t += " (too short to judge)"
            elif target:
                t += " ok" if secs / floor <= target else " MISSED"
            rel = f"{secs / floor:.2f}" if floor > 0 else "n/a"
            lines.append(f"| {name} | {secs:.2f} | {rss:.1f} | {rel} | {t} |")
        if umoci:
            sq = r["runs"]["build --squash (gzip) from the rootfs directory"][0]
            sq4 = r["runs"]["build --squash (gzip level 4) from the rootfs directory"][0]
            pp = r["runs"]["build per-package, cold"][0]
            sizes = r.get("layer_bytes", {})
            # GNU time counts hundredths: a tiny run can take "0.00 s".
            def x(t):
                return f"{umoci / t:.1f}x" if t > 0 else "n/a (too short to time)"
            lines += ["", f"umoci / rustimage: {x(sq)} (squash, gzip level 6, from the same "
                          f"directory), {x(sq4)} (level 4), {x(pp)} (per-package from "
                          f"the deploy dir, which also reads every package); target >= 3x.",
                      "Output sizes (bytes): " + ", ".join(f"{k} {v}" for k, v in sizes.items()) + "."]
        peak = max(rss for _, rss in r["runs"].values() if True)
        ours = max(rss for n, (_, rss) in r["runs"].items() if n.startswith(("build", "push")))
        lines += [f"Peak RSS of rustimage runs: {ours:.1f} MiB (target <= 64 MiB); of all runs {peak:.1f} MiB.", ""]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="small,large")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "RESULTS.md"))
    ap.add_argument("--workdir", default=None, help="scratch space (default: a temp dir)")
    args = ap.parse_args()
    sh(["cargo", "build", "--release", "--locked", "-q"], cwd=ROOT)
    tool = os.path.join(ROOT, "target", "release", "rustimage")
    work = args.workdir or tempfile.mkdtemp(prefix="rustimage-bench-")
    results = {}
    try:
        for size in args.sizes.split(","):
            run_size(size, work, tool, results)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    m = machine()
    text = report(results, m)
    with open(args.out, "w") as f:
        f.write(text)
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump({"machine": m, "results": results}, f, indent=1)
    print(text)


if __name__ == "__main__":
    main()

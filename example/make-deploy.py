#!/usr/bin/env python3
"""Writes a small OpenEmbedded-like build output, as BitBake leaves it:

    OUT/tmp/deploy/images/<machine>/<image>-<machine>.rootfs.tar.{zst,xz}
    OUT/tmp/deploy/images/<machine>/<image>-<machine>.rootfs.manifest
    OUT/tmp/deploy/{ipk,deb,rpm}/<arch>/...     (the package feed asked for)
    OUT/tmp/pkgdata/<machine>/runtime/...       (and runtime-reverse/)

The rootfs is what installing the packages gives, plus what OE's rootfs
step changes afterwards: useradd edits of /etc/passwd, ld.so.cache,
update-alternatives links, /etc/version, device nodes, a file a postinst
rewrote. Owners, modes and setuid bits are set in the tarball itself, so
no root is needed. Everything is deterministic: same arguments, same bytes.

It serves the README's example, the tests (every package backend, one
package changed, one added or removed) and the benchmark (--extra and
--extra-mb make hundreds of packages and hundreds of MB).

Only the standard library is used; rpm feeds need rpmbuild (Debian's rpm
package), zstd rootfs tarballs the zstd command.
"""

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

MTIME = 1520598896  # OE's REPRODUCIBLE_TIMESTAMP_ROOTFS
MACHINE_ARCH = "qemux86_64"
TUNE_ARCH = "core2_64"


def blob(seed, size, text_ratio=0.7):
    """Deterministic content that compresses about as well as binaries
    (gzip -6 about 3:1): text runs between random 64-byte chunks."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        if (counter % 10) < text_ratio * 10:
            out += (f"{seed} line {counter} " * 4).encode()
        else:
            h = hashlib.sha256(f"{seed}:{counter}".encode()).digest()
            out += h + hashlib.sha256(h).digest()
        counter += 1
    return bytes(out[:size])


class F:
    """One entry a package ships."""

    def __init__(self, path, kind="file", data=b"", mode=None, uid=0, gid=0, target=None,
                 to_dir=False):
        self.path = path.lstrip("/")
        # A symlink that resolves to a directory: OE's package split walks
        # it as a directory, so pkgdata's FILES_INFO does not list it.
        self.to_dir = to_dir
        self.kind = kind  # file, dir, symlink, hardlink
        self.data = data
        self.mode = mode if mode is not None else (0o755 if kind == "dir" else 0o644)
        self.uid, self.gid = uid, gid
        self.target = target


# Recipe licenses as OE spells LICENSE (releases before 2026 join with & and
# |; master writes SPDX AND/OR). ipk controls carry them as License, rpms as
# License, pkgdata as LICENSE; OE's debs do not (package_deb has no field).
RECIPE_LICENSES = {
    "base-files": "GPL-2.0-only",
    "base-passwd": "GPL-2.0-or-later",
    "glibc": "GPL-2.0-only & LGPL-2.1-or-later",
    "busybox": "GPL-2.0-only & bzip2-1.0.6",
    "zlib": "Zlib",
    "e2fsprogs": "GPL-2.0-only",
    "netbase": "GPL-2.0-only",
    "iputils": "BSD-3-Clause & GPL-2.0-or-later",
    "sudo": "ISC & BSD-3-Clause & BSD-2-Clause & Zlib",
    "app-data": "Proprietary",
}


class Pkg:
    def __init__(self, name, recipe, arch, pkgv, pkgr="r0", files=(), depends=(), pn_name=None):
        self.name = name  # final (renamed) package name
        self.recipe = recipe
        self.arch = arch
        self.pkgv, self.pkgr = pkgv, pkgr
        self.files = list(files)
        self.depends = list(depends)  # final names
        self.runtime = pn_name or name  # name before OE's renaming

    @property
    def version(self):
        return f"{self.pkgv}-{self.pkgr}"

    @property
    def license(self):
        return RECIPE_LICENSES.get(self.recipe, "MIT")


def static_elf(path):
    """The bytes of `path` if it is a statically linked ELF executable (no
    PT_INTERP program header), else exit with a message."""
    import struct
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        sys.exit(f"make-deploy.py: {path} is not a 64-bit ELF file")
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        kind, = struct.unpack_from("<I", data, phoff + i * phentsize)
        if kind == 3:  # PT_INTERP: needs a dynamic loader the image lacks
            sys.exit(f"make-deploy.py: {path} is dynamically linked; give a static "
                     "busybox (Debian's busybox-static installs /bin/busybox)")
    return data


def base_packages(bump, busybox=None):
    """A core-image-minimal sized set of packages. With `busybox` (a static
    binary's bytes) the image runs: /bin/sh is busybox."""

    def v(name, base):
        return base + ("+bump1" if name in bump else "")

    def d(name, seed, size):
        return blob(seed + ("bump" if name in bump else ""), size)

    busybox_bin = d("busybox", "busybox", 120_000)
    if busybox is not None:
        # A bumped package must change: bytes after an ELF's end are inert.
        busybox_bin = busybox + (b"\0bump" if "busybox" in bump else b"")

    pkgs = [
        Pkg("base-files", "base-files", MACHINE_ARCH, v("base-files", "3.0.14"), files=[
            F("/etc", "dir"), F("/etc/hostname", data=b"qemux86-64\n"),
            F("/etc/issue", data=b"Poky (Yocto Project Reference Distro) \\n \\l\n"),
            F("/etc/profile", data=d("base-files", "profile", 900)),
            F("/home", "dir"), F("/var", "dir"), F("/var/log", "dir"),
            F("/var/run", "symlink", target="../run", to_dir=True),
            F("/var/spool/mail", "dir", mode=0o2775, gid=8),
        ]),
        Pkg("base-passwd", "base-passwd", TUNE_ARCH, v("base-passwd", "3.6.3"), files=[
            F("/etc/passwd", data=b"root::0:0:root:/home/root:/bin/sh\ndaemon:*:1:1::/usr/sbin:/bin/sh\n"),
            F("/etc/group", data=b"root:x:0:\ndaemon:x:1:\nmail:x:8:\n"),
        ]),
        Pkg("libc6", "glibc", TUNE_ARCH, v("libc6", "2.39+git0+abc"), pn_name="glibc", files=[
            F("/lib", "dir"), F("/lib/libc.so.6", data=d("libc6", "libc", 180_000), mode=0o755),
            F("/lib/ld-linux-x86-64.so.2", data=d("libc6", "ld", 40_000), mode=0o755),
            F("/lib/libm.so.6", data=d("libc6", "libm", 60_000), mode=0o755),
        ]),
        Pkg("ldconfig", "glibc", TUNE_ARCH, v("ldconfig", "2.39+git0+abc"),
            depends=["libc6"], files=[F("/sbin/ldconfig", data=d("ldconfig", "ldconfig", 30_000), mode=0o755)]),
        Pkg("busybox", "busybox", TUNE_ARCH, v("busybox", "1.36.1"), depends=["libc6"], files=[
            F("/bin/busybox.nosuid", data=busybox_bin, mode=0o755),
            F("/bin/busybox.suid", data=d("busybox", "busybox-suid", 20_000), mode=0o4755),
            F("/etc/busybox.links.nosuid", data=b"/bin/sh\n/bin/ls\n/bin/cat\n"),
        ]),
        Pkg("busybox-udhcpc", "busybox", TUNE_ARCH, v("busybox-udhcpc", "1.36.1"), depends=["busybox"], files=[
            F("/usr/share/udhcpc/default.script", data=b"#!/bin/sh\nexit 0\n", mode=0o755),
        ]),
        Pkg("libz1", "zlib", TUNE_ARCH, v("libz1", "1.3.1"), pn_name="zlib", depends=["libc6"], files=[
            F("/usr/lib/libz.so.1.3.1", data=d("libz1", "libz", 90_000), mode=0o755),
            F("/usr/lib/libz.so.1", "symlink", target="libz.so.1.3.1"),
        ]),
        Pkg("e2fsprogs-mke2fs", "e2fsprogs", TUNE_ARCH, v("e2fsprogs-mke2fs", "1.47.1"),
            depends=["libc6", "libz1"], files=[
                F("/sbin/mke2fs", data=d("e2fsprogs-mke2fs", "mke2fs", 50_000), mode=0o755),
                F("/sbin/mkfs.ext2", "hardlink", target="sbin/mke2fs"),
                F("/sbin/mkfs.ext4", "hardlink", target="sbin/mke2fs"),
                F("/etc/mke2fs.conf", data=b"[defaults]\n"),
            ]),
        Pkg("netbase", "netbase", "all", v("netbase", "6.4"), files=[
            F("/etc/services", data=d("netbase", "services", 12_000)),
            F("/etc/protocols", data=b"ip 0 IP\nicmp 1 ICMP\n"),
        ]),
        Pkg("iputils-ping", "iputils", TUNE_ARCH, v("iputils-ping", "20240117"), depends=["libc6"], files=[
            F("/bin/ping", data=d("iputils-ping", "ping", 25_000), mode=0o4755),
        ]),
        Pkg("sudo", "sudo", TUNE_ARCH, v("sudo", "1.9.15p5"), depends=["libc6", "libz1"], files=[
            F("/usr/bin/sudo", data=d("sudo", "sudo", 70_000), mode=0o4111),
            F("/etc/sudoers", data=b"root ALL=(ALL:ALL) ALL\n", mode=0o440),
            F("/etc/sudoers.d", "dir", mode=0o750),
        ]),
        Pkg("app-data", "app-data", "all", v("app-data", "1.0"), files=[
            F("/srv/app", "dir", uid=1000, gid=1000, mode=0o750),
            F("/srv/app/data.db", data=d("app-data", "db", 8_000), uid=1000, gid=1000, mode=0o640),
        ]),
    ]
    return pkgs


class ContentPool:
    """File contents taken in turn from the regular files under a directory
    (say /usr/lib: real ELF code and data), so that compression costs what
    it costs on a real rootfs. Deterministic for a given directory."""

    def __init__(self, root):
        self.files = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for f in sorted(filenames):
                p = os.path.join(dirpath, f)
                if os.path.isfile(p) and not os.path.islink(p) and os.path.getsize(p) > 0:
                    self.files.append(p)
        if not self.files:
            sys.exit(f"make-deploy.py: no files under {root}")
        self.index, self.data, self.pos = 0, b"", 0

    def take(self, n):
        out = bytearray()
        while len(out) < n:
            if self.pos >= len(self.data):
                with open(self.files[self.index % len(self.files)], "rb") as f:
                    self.data = f.read()
                self.index += 1
                self.pos = 0
            part = self.data[self.pos:self.pos + n - len(out)]
            out += part
            self.pos += len(part)
        return bytes(out)


def extra_packages(count, total_mb, bump, pool=None):
    """Synthetic packages for size: a realistic mix of small and big files."""
    pkgs = []
    per_pkg = (total_mb << 20) // max(count, 1)
    for i in range(count):
        name = f"extra{i:03d}"
        recipe = f"extra-recipe{i // 3:03d}"  # three packages per recipe
        files = [F(f"/usr/share/{name}", "dir")]
        left = per_pkg
        j = 0
        while left > 0:
            # One file in forty is big (a sixth of the package); the rest
            # are up to 16 KiB: about a hundred files per package.
            size = min(left, per_pkg // 6 if j % 40 == 0 else 1 + (j * 7919) % 16384)
            seed = f"{name}-{j}" + ("bump" if name in bump else "")
            # The pool is read in the same order with or without --bump, so
            # a bumped package changes its own files only.
            data = pool.take(size) if pool else None
            if data is None or name in bump:
                data = blob(seed, size)
            files.append(F(f"/usr/share/{name}/f{j:04d}", data=data))
            left -= size
            j += 1
        pkgv = "1.0" + ("+bump1" if name in bump else "")
        pkgs.append(Pkg(name, recipe, TUNE_ARCH, pkgv, depends=["libc6"], files=files))
    return pkgs


def tar_bytes(entries, compress_gz=False):
    """A tar of (TarInfo, data) pairs; OE-like: posix format, numeric owners."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        for info, data in entries:
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    data = raw.getvalue()
    if compress_gz:
        import gzip
        data = gzip.compress(data, 9, mtime=0)
    return data


def info(path, kind, mode, uid=0, gid=0, size=0, target=None, dev=None):
    ti = tarfile.TarInfo(path)
    ti.mtime = MTIME
    ti.mode = mode
    ti.uid, ti.gid = uid, gid
    ti.uname = ti.gname = ""
    ti.size = size
    ti.type = {
        "file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
        "hardlink": tarfile.LNKTYPE, "char": tarfile.CHRTYPE, "fifo": tarfile.FIFOTYPE,
    }[kind]
    if target is not None:
        ti.linkname = target
    if dev:
        ti.devmajor, ti.devminor = dev
    return ti


def data_entries(pkg):
    """The package's data.tar members, parents first, as ./path."""
    seen, out = set(), [(info(".", "dir", 0o755), None)]
    for f in pkg.files:
        parts = f.path.split("/")
        for i in range(1, len(parts)):
            p = "/".join(parts[:i])
            if p not in seen and not any(g.path == p for g in pkg.files):
                seen.add(p)
                out.append((info("./" + p, "dir", 0o755), None))
        seen.add(f.path)
        if f.kind == "file":
            out.append((info("./" + f.path, "file", f.mode, f.uid, f.gid, len(f.data)), f.data))
        elif f.kind == "hardlink":
            out.append((info("./" + f.path, "hardlink", f.mode, target="./" + f.target), None))
        elif f.kind == "symlink":
            out.append((info("./" + f.path, "symlink", 0o777, target=f.target), None))
        else:
            out.append((info("./" + f.path, "dir", f.mode, f.uid, f.gid), None))
    return out


def ar(members):
    out = b"!<arch>\n"
    for name, data in members:
        hdr = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{0o100644:<8o}{len(data):<10}`\n"
        out += hdr.encode() + data + (b"\n" if len(data) % 2 else b"")
    return out


def control_tar(fields):
    text = "".join(f"{k}: {v}\n" for k, v in fields).encode()
    return tar_bytes([(info(".", "dir", 0o755), None),
                      (info("./control", "file", 0o644, size=len(text)), text)], compress_gz=True)


def compress_xz(data):
    import lzma
    return lzma.compress(data, preset=6)


def compress_zstd(data):
    """OE's ipks carry data.tar.zst today; xz where zstd is missing."""
    if shutil.which("zstd"):
        out = subprocess.run(["zstd", "-q", "-3", "-c"], input=data, stdout=subprocess.PIPE, check=True)
        return "data.tar.zst", out.stdout
    return "data.tar.xz", compress_xz(data)


def write_ipk(pkg, feed):
    fields = [("Package", pkg.name), ("Version", pkg.version), ("Description", pkg.name),
              ("Section", "base"), ("Priority", "optional"), ("Maintainer", "OE"),
              ("License", pkg.license), ("Architecture", pkg.arch), ("OE", pkg.recipe),
              ("Source", f"{pkg.recipe}.bb")]
    if pkg.depends:
        fields.append(("Depends", ", ".join(f"{d} (>= 0)" for d in pkg.depends)))
    member, data = compress_zstd(tar_bytes(data_entries(pkg)))
    path = os.path.join(feed, "ipk", pkg.arch, f"{pkg.name}_{pkg.version}_{pkg.arch}.ipk")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(ar([("debian-binary", b"2.0\n"), ("control.tar.gz", control_tar(fields)),
                    (member, data)]))


def deb_arch(arch):
    return "all" if arch == "all" else "amd64"


def write_deb(pkg, feed):
    fields = [("Package", pkg.name), ("Version", pkg.version), ("Description", pkg.name),
              ("Section", "base"), ("Priority", "optional"), ("Maintainer", "OE"),
              ("Architecture", deb_arch(pkg.arch)), ("OE", pkg.recipe),
              ("PackageArch", pkg.arch.replace("_", "-"))]
    if pkg.depends:
        fields.append(("Depends", ", ".join(f"{d} (>= 0)" for d in pkg.depends)))
    data = compress_xz(tar_bytes(data_entries(pkg)))
    path = os.path.join(feed, "deb", pkg.arch, f"{pkg.name}_{pkg.version}_{deb_arch(pkg.arch)}.deb")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(ar([("debian-binary", b"2.0\n"), ("control.tar.gz", control_tar(fields)),
                    ("data.tar.xz", data)]))


def rpm_arch(arch):
    return "noarch" if arch == "all" else arch.replace("-", "_")


def write_rpms(pkgs, feed, work):
    """One spec per recipe, as OE's package_rpm writes; built by rpmbuild."""
    if not shutil.which("rpmbuild"):
        sys.exit("make-deploy.py: --backend rpm needs rpmbuild (Debian package rpm)")
    by_recipe = {}
    for p in pkgs:
        by_recipe.setdefault(p.recipe, []).append(p)
    for recipe, members in sorted(by_recipe.items()):
        arch = rpm_arch(members[0].arch)
        root = os.path.join(work, "src-" + recipe)
        os.makedirs(root, exist_ok=True)
        for p in members:
            for f in p.files:
                dest = os.path.join(root, f.path)
                if f.kind == "dir":
                    os.makedirs(dest, exist_ok=True)
                    continue
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                if f.kind == "file":
                    with open(dest, "wb") as out:
                        out.write(f.data)
                elif f.kind == "symlink":
                    os.symlink(f.target, dest)
                else:
                    os.link(os.path.join(root, f.target), dest)
        # OE writes one spec per recipe (Name: PN); each package is the
        # main package (when named like the recipe) or a subpackage.
        main = next((p for p in members if p.name == recipe), None)
        first = main or members[0]
        spec = [f"Name: {recipe}", f"Version: {first.pkgv}", f"Release: {first.pkgr}",
                "Summary: x", f"License: {first.license}"]
        if arch == "noarch":
            spec.append("BuildArch: noarch")
        if main:
            spec += [f"Requires: {d}" for d in main.depends]
        spec += ["%description", "x", "%install", f"cp -a {root}/. %{{buildroot}}/"]

        def files_section(p):
            lines = []
            for f in p.files:
                if f.kind == "dir":
                    lines.append(f"%dir %attr({f.mode:o},root,root) /{f.path}")
                elif f.kind == "symlink":
                    lines.append(f"/{f.path}")
                else:
                    lines.append(f"%attr({f.mode:o},root,root) /{f.path}")
            return lines

        if main:
            spec += ["%files"] + files_section(main)
        for p in members:
            if p is main:
                continue
            reqs = [f"Requires: {d}" for d in p.depends]
            spec += ["", f"%package -n {p.name}", "Summary: x", f"Version: {p.pkgv}"] + reqs
            spec += [f"%description -n {p.name}", "x", f"%files -n {p.name}"] + files_section(p)
        specfile = os.path.join(work, recipe + ".spec")
        with open(specfile, "w") as out:
            out.write("\n".join(spec) + "\n")
        rpmdir = os.path.join(feed, "rpm")
        cmd = ["rpmbuild", "-bb", "--quiet", "--target", "noarch" if arch == "noarch" else arch]
        for k, val in [("_topdir", work), ("_tmppath", work), ("_rpmdir", rpmdir),
                       ("_build_name_fmt", "%%{ARCH}/%%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm"),
                       ("__os_install_post", "%{nil}"), ("_build_id_links", "none"),
                       ("_binary_payload", "w19.zstdio"), ("_buildhost", "oe"),
                       ("use_source_date_epoch_as_buildtime", "1"), ("clamp_mtime_to_source_date_epoch", "1")]:
            cmd += ["--define", f"{k} {val}"]
        env = dict(os.environ, SOURCE_DATE_EPOCH=str(MTIME), HOME=work)
        subprocess.run(cmd + [specfile], check=True, env=env, stdout=subprocess.DEVNULL)


def write_pkgdata(pkgs, pkgdata):
    runtime = os.path.join(pkgdata, "runtime")
    reverse = os.path.join(pkgdata, "runtime-reverse")
    os.makedirs(runtime, exist_ok=True)
    os.makedirs(reverse, exist_ok=True)
    by_final = {p.name: p for p in pkgs}
    for p in pkgs:
        rt = p.runtime
        files = {}
        for f in p.files:
            if f.kind == "file":
                files["/" + f.path] = len(f.data)
            elif f.kind == "hardlink":
                files["/" + f.path] = len(next(g for g in p.files if g.path == f.target).data)
            elif f.kind == "symlink" and not f.to_dir:
                files["/" + f.path] = len(f.target)
        deps = " ".join(f"{by_final[d].runtime} (>= 0)" if d in by_final else d for d in p.depends)
        lines = [f"PN: {p.recipe}", f"LICENSE: {p.license}", f"PKGV: {p.pkgv}", f"PKGR: {p.pkgr}",
                 f"PKG:{rt}: {p.name}",
                 f"RDEPENDS:{rt}: {deps}", f"FILES_INFO:{rt}: {json.dumps(files, sort_keys=True)}"]
        with open(os.path.join(runtime, rt), "w") as out:
            out.write("\n".join(lines) + "\n")
        link = os.path.join(reverse, p.name)
        if not os.path.lexists(link):
            os.symlink(os.path.join("..", "runtime", rt), link)


def rootfs_entries(pkgs):
    """What do_rootfs leaves: the packages installed, then OE's changes."""
    entries = {}  # path -> (TarInfo, data)

    def put(path, ti, data=None):
        entries[path] = (ti, data)

    put("", info(".", "dir", 0o755))
    for p in pkgs:
        for e, data in data_entries(p):
            path = e.name[2:] if e.name.startswith("./") else ""
            if e.type == tarfile.LNKTYPE:
                e.linkname = e.linkname[2:]
            e.name = "./" + path if path else "."
            if path in entries and e.type == tarfile.DIRTYPE:
                continue
            put(path, e, data)
    # Directories opkg creates with their packaged metadata are kept; the
    # rest is what OE's rootfs steps do afterwards.
    passwd = entries["etc/passwd"][1] + b"app:x:1000:1000::/srv/app:/bin/sh\n"
    put("etc/passwd", info("./etc/passwd", "file", 0o644, size=len(passwd)), passwd)  # useradd
    cache = blob("ld.so.cache", 4000)
    put("etc/ld.so.cache", info("./etc/ld.so.cache", "file", 0o644, size=len(cache)), cache)
    version = b"20180309123456\n"
    put("etc/version", info("./etc/version", "file", 0o644, size=len(version)), version)
    for link in ["bin/sh", "bin/ls", "bin/cat"]:
        put(link, info("./" + link, "symlink", 0o777, target="/bin/busybox.nosuid"))
    put("dev", info("./dev", "dir", 0o755))
    put("dev/console", info("./dev/console", "char", 0o600, dev=(5, 1)))
    put("dev/null", info("./dev/null", "char", 0o666, dev=(1, 3)))
    put("home/root", info("./home/root", "dir", 0o700))
    put("tmp", info("./tmp", "dir", 0o1777))
    put("run", info("./run", "dir", 0o755))
    # A postinst that rewrote a packaged file keeps it out of its layer.
    if "etc/issue" in entries:
        issue = entries["etc/issue"][1] + b"built by make-deploy\n"
        put("etc/issue", info("./etc/issue", "file", 0o644, size=len(issue)), issue)
    # tar --sort=name order: depth first, names sorted bytewise.
    order = sorted(entries, key=lambda p: [c.encode() for c in p.split("/")] if p else [])
    return [entries[p] for p in order]


def write_rootfs(pkgs, images, stem, compression):
    raw = tar_bytes(rootfs_entries(pkgs))
    if compression == "zst":
        path = os.path.join(images, stem + ".tar.zst")
        with open(path, "wb") as out:
            subprocess.run(["zstd", "-q", "-3", "-c"], input=raw, stdout=out, check=True)
    elif compression == "xz":
        path = os.path.join(images, stem + ".tar.xz")
        with open(path, "wb") as out:
            out.write(compress_xz(raw))
    else:
        path = os.path.join(images, stem + ".tar")
        with open(path, "wb") as out:
            out.write(raw)
    return path


def manifest_line(p, backend):
    if backend == "deb":
        return f"{p.name} {p.arch.replace('_', '-')} {p.version}"
    if backend == "rpm":
        return f"{p.name} {rpm_arch(p.arch)} {p.pkgv.replace('-', '+')}"
    return f"{p.name} {p.arch} {p.version}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="directory to create (its tmp/ holds the build output)")
    ap.add_argument("--backend", choices=["ipk", "deb", "rpm"], default="ipk",
                    help="package feed to write (the manifest is spelled to match)")
    ap.add_argument("--no-feed", action="store_true", help="write no package feed")
    ap.add_argument("--no-pkgdata", action="store_true", help="write no pkgdata")
    ap.add_argument("--image", default="core-image-minimal")
    ap.add_argument("--machine", default="qemux86-64")
    ap.add_argument("--bump", action="append", default=[], help="change this package's version and content")
    ap.add_argument("--drop", action="append", default=[], help="leave this package out of the image")
    ap.add_argument("--extra", type=int, default=0, help="add this many synthetic packages")
    ap.add_argument("--extra-mb", type=int, default=4, help="total size of the synthetic packages")
    ap.add_argument("--content-from", metavar="DIR",
                    help="fill the synthetic packages with the bytes of the files under DIR")
    ap.add_argument("--busybox", metavar="FILE",
                    help="a static busybox binary to ship, so that the image runs")
    ap.add_argument("--rootfs-compression", choices=["zst", "xz", "none"],
                    default="zst" if shutil.which("zstd") else "xz")
    args = ap.parse_args()

    pool = ContentPool(args.content_from) if args.content_from else None
    busybox = static_elf(args.busybox) if args.busybox else None
    pkgs = base_packages(set(args.bump), busybox) + extra_packages(args.extra, args.extra_mb, set(args.bump), pool)
    pkgs = [p for p in pkgs if p.name not in args.drop]
    tmp = os.path.join(args.out, "tmp")
    deploy = os.path.join(tmp, "deploy")
    images = os.path.join(deploy, "images", args.machine)
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(images)
    stem = f"{args.image}-{args.machine}.rootfs"
    write_rootfs(pkgs, images, stem, args.rootfs_compression)
    with open(os.path.join(images, stem + ".manifest"), "w") as out:
        out.write("".join(manifest_line(p, args.backend) + "\n" for p in sorted(pkgs, key=lambda p: p.name)))
    if not args.no_feed:
        if args.backend == "ipk":
            for p in pkgs:
                write_ipk(p, deploy)
        elif args.backend == "deb":
            for p in pkgs:
                write_deb(p, deploy)
        else:
            with tempfile.TemporaryDirectory() as work:
                write_rpms(pkgs, deploy, work)
    if not args.no_pkgdata:
        write_pkgdata(pkgs, os.path.join(tmp, "pkgdata", args.machine))
    print(deploy)


if __name__ == "__main__":
    main()

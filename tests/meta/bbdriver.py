#!/usr/bin/env python3
"""Drives BitBake's Python library (the `bb` package) for meta-rustimage's
tests, without BitBake's command-line tools or server.

    bbdriver.py BUILDDIR parse RECIPE [--variant V] [--var NAME]...
                [--varflags NAME]... [--emit TASK]... [--sig TASK]...
    bbdriver.py BUILDDIR run RECIPE TASK... [--skip FUNC]... [--set VAR=VALUE]...

Both read the configuration as BitBake does (bb.cookerdata: BUILDDIR/conf/
bblayers.conf, each layer's conf/layer.conf with its LAYERSERIES_COMPAT
check, conf/bitbake.conf from BBPATH, the base class) and parse RECIPE (a
recipe name from BBFILES) with its BBCLASSEXTEND variants.

`parse` prints JSON: the layers' collections, LAYERDEPENDS problems, the
recipe's variants, the tasks with their flags, the values asked for with
--var (and every RUSTIMAGE_* variable), the flags of each --varflags
variable, the shell script of each --emit
task as bb.build would write it, and for each --sig task the variables
its signature covers and its base hash (--sig-all: every task), the
classes it inherits, and the reason of a bb.parse.SkipRecipe.

`run` executes the tasks in order in this process with bb.build.exec_func
(prefuncs, the task, postfuncs), in an environment emptied as
bitbake-worker empties it, with FAKEROOTENV or FAKEROOTNOENV and the
task's [exports] applied as bitbake-worker applies them. Run it under pseudo when a task is fakeroot,
as BitBake runs fakeroot tasks under pseudo.

The `bb` package from PyPI (bitbake-setup) lacks BitBake's hashserv
package, which bb.parse imports through bb.siggen; when it is missing the
import-only stub in stubs/ stands in (see stubs/hashserv/__init__.py).
"""

import argparse
import glob
import io
import json
import logging
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# Leave no __pycache__ in the source tree (stubs/ is imported from there).
sys.dont_write_bytecode = True

try:
    import hashserv  # noqa: F401  (a full BitBake checkout has it)
except ImportError:
    sys.path.insert(0, os.path.join(HERE, "stubs"))

import bb  # noqa: E402
import bb.build  # noqa: E402
import bb.cookerdata  # noqa: E402
import bb.data  # noqa: E402
import bb.msg  # noqa: E402
import bb.parse  # noqa: E402
import bb.utils  # noqa: E402

# Task flags the tests look at.
FLAGS = [
    "depends", "deps", "fakeroot", "nostamp", "network", "noexec", "exports", "dirs",
    "cleandirs", "file-checksums", "prefuncs", "postfuncs", "vardeps", "vardepsexclude",
    "subimages", "doc",
]
# Environment kept for tasks (bitbake-worker keeps pseudo's and what the
# metadata exports; HOME is one of BitBake's preserved variables).
KEEP_ENV = re.compile(r"^(PSEUDO_.*|LD_PRELOAD|LD_LIBRARY_PATH|HOME|LANG|LC_ALL)$")


def setup_logging():
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(bb.msg.BBLogFormatter("%(levelname)s: %(message)s"))
    logger = logging.getLogger("BitBake")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    # Echo task output into the log as bitbake -v does, so that a failing
    # test shows it.
    bb.build.verboseStdoutLogging = True


def base_config(builddir):
    """The parsed configuration, as `bitbake` has it before parsing recipes."""
    os.chdir(builddir)
    cfg = bb.cookerdata.CookerConfiguration()
    cfg.env = {k: v for k, v in os.environ.items() if k in ("HOME", "PATH", "USER", "LOGNAME", "SHELL")}
    cfg.env["BBPATH"] = builddir
    builder = bb.cookerdata.CookerDataBuilder(cfg)
    builder.parseBaseConfiguration()
    return builder


def layer_problems(d):
    """LAYERDEPENDS entries naming no known collection."""
    collections = (d.getVar("BBFILE_COLLECTIONS") or "").split()
    problems = []
    for c in collections:
        for dep in (d.getVar("LAYERDEPENDS_" + c) or "").split():
            name = dep.split(":", 1)[0]
            if name not in collections:
                problems.append(f"{c} depends on missing layer {name}")
    return problems


def find_recipe(d, pn):
    files = []
    for pattern in (d.getVar("BBFILES") or "").split():
        files += [f for f in glob.glob(pattern) if f.endswith(".bb")]
    found = [f for f in sorted(set(files)) if bb.parse.vars_from_file(f, d)[0] == pn]
    if not found:
        sys.exit(f"bbdriver: no recipe {pn} in BBFILES ({d.getVar('BBFILES')})")
    return found[-1]


def layer_name(d, fn):
    for c in (d.getVar("BBFILE_COLLECTIONS") or "").split():
        pattern = d.getVar("BBFILE_PATTERN_" + c)
        if pattern and re.match(pattern, fn):
            return c
    return None


def parse_recipe(builder, pn):
    fn = find_recipe(builder.data, pn)
    return fn, builder.parseRecipeVariants(fn, [], layername=layer_name(builder.data, fn))


def task_flags(d, task):
    flags = {}
    for f in FLAGS:
        v = d.getVarFlag(task, f)
        if v is not None:
            flags[f] = v if isinstance(v, str) else list(v) if isinstance(v, (list, set)) else str(v)
    return flags


class Collect(logging.Handler):
    """Keeps the messages logged while it is attached (bb.fatal logs its
    message, then raises a BBHandledException without one)."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def emit(d, task):
    out = io.StringIO()
    errors = Collect()
    logger = logging.getLogger("BitBake")
    logger.addHandler(errors)
    try:
        bb.data.emit_func(task, out, d)
    except Exception as e:  # noqa: BLE001  the tests look at the message
        return {"error": "\n".join(errors.messages + [f"{type(e).__name__}: {e}"])}
    finally:
        logger.removeHandler(errors)
    return {"script": out.getvalue()}


def signature(d, fn, tasks):
    ignored = set((d.getVar("BB_BASEHASH_IGNORE_VARS") or "").split())
    tasklist, gendeps, lookupcache = bb.data.generate_dependencies(d, ignored)
    hashes = bb.data.generate_dependency_hash(tasklist, gendeps, lookupcache, ignored, fn)[1]
    result = {}
    for task in tasks:
        seen, todo = set(), set(gendeps.get(task, ()))
        while todo:
            seen |= todo
            todo = set().union(*(gendeps.get(v, set()) for v in todo)) - seen
        result[task] = {"vars": sorted(seen), "basehash": hashes.get(fn + ":" + task)}
    return result


def cmd_parse(args):
    builder = base_config(args.builddir)
    conf = builder.data
    fn, variants = parse_recipe(builder, args.recipe)
    d = variants[args.variant]
    names = sorted(set(args.var) | {k for k in d.keys() if k.startswith("RUSTIMAGE_")})
    values = {}
    for name in names:
        try:
            values[name] = d.getVar(name)
        except Exception as e:  # noqa: BLE001
            values[name] = f"<error {type(e).__name__}: {e}>"
    tasks = d.getVar("__BBTASKS", False) or []
    out = {
        "file": fn,
        "collections": (conf.getVar("BBFILE_COLLECTIONS") or "").split(),
        "layerseries_corenames": conf.getVar("LAYERSERIES_CORENAMES"),
        "layer_problems": layer_problems(conf),
        "variants": {v: variants[v].getVar("PN") for v in sorted(variants)},
        # bb.parse.SkipRecipe raised while parsing: the reason, per variant.
        "skipped": {v: variants[v].getVar("__SKIPPED") for v in sorted(variants) if variants[v].getVar("__SKIPPED")},
        "inherits": sorted(os.path.splitext(os.path.basename(c))[0] for c in d.getVar("__inherit_cache", False) or []),
        "tasks": {t: task_flags(d, t) for t in tasks},
        "vars": values,
        "unexpanded": {n: d.getVar(n, False) for n in args.var},
        "varflags": {n: {f: v if isinstance(v, str) else str(v) for f, v in (d.getVarFlags(n) or {}).items()
                         if isinstance(v, (str, int, bool))} for n in args.varflags},
        "emit": {t: emit(d, t) for t in args.emit},
        "sig": signature(d, fn, tasks if args.sig_all else args.sig) if args.sig or args.sig_all else {},
    }
    json.dump(out, sys.stdout, indent=1, sort_keys=True, default=str)
    print()


def run_task(d, fn, task, skip=()):
    """Runs one task as bitbake-worker and bb.build.exec_task do, without
    stamps or logs: FAKEROOTENV (fakeroot tasks) or FAKEROOTNOENV (others)
    into the environment and the datastore, the task's [exports], then
    prefuncs, the task and postfuncs."""
    # As bb.build._task_data: the task's override and BB_FILENAME.
    d = bb.data.createCopy(d)
    d.setVar("BB_FILENAME", fn)
    d.setVar("OVERRIDES", "task-%s:%s" % (task[3:].replace("_", "-"), d.getVar("OVERRIDES", False)))
    bb.data.expandKeys(d)
    saved = dict(os.environ)
    fakeroot = bb.utils.to_boolean(d.getVarFlag(task, "fakeroot"))
    for kv in (d.getVar("FAKEROOTENV" if fakeroot else "FAKEROOTNOENV") or "").split():
        key, value = kv.split("=", 1)
        os.environ[key] = value
        d.setVar(key, value)
        d.setVarFlag(key, "export", "1")
    # A task's [exports]: variables exported when they are set.
    for key in (d.getVarFlag(task, "exports") or "").split():
        d.setVarFlag(key, "export", "1")
        value = d.getVar(key)
        if value is not None:
            os.environ[key] = value
    d.setVar("BB_CURRENTTASK", task[3:] if task.startswith("do_") else task)
    d.setVar("BB_RUNTASK", task)
    try:
        for f in (d.getVarFlag(task, "prefuncs") or "").split():
            if f not in skip:
                bb.build.exec_func(f, d)
        if task not in skip:
            bb.build.exec_func(task, d)
        for f in (d.getVarFlag(task, "postfuncs") or "").split():
            if f not in skip:
                bb.build.exec_func(f, d)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def cmd_run(args):
    builder = base_config(args.builddir)
    fn, variants = parse_recipe(builder, args.recipe)
    d = variants[args.variant]
    for kv in args.set:
        key, _, value = kv.partition("=")
        d.setVar(key, value)
    hosttools(d)
    for k in list(os.environ):
        if not KEEP_ENV.match(k):
            del os.environ[k]
    tasks = d.getVar("__BBTASKS", False) or []
    for task in args.task:
        if task not in tasks:
            sys.exit(f"bbdriver: {args.recipe} has no task {task} (tasks: {' '.join(tasks)})")
        if d.getVarFlag(task, "noexec"):
            continue
        print(f"bbdriver: running {task}", file=sys.stderr)
        try:
            run_task(d, fn, task, set(args.skip))
        except bb.BBHandledException:
            sys.exit(f"bbdriver: {task} failed")
        except Exception as e:  # noqa: BLE001
            sys.exit(f"bbdriver: {task} failed: {type(e).__name__}: {e}")


def hosttools(d):
    """Links HOSTTOOLS into HOSTTOOLS_DIR, the only host tool directory on
    the tasks' PATH (as BitBake's OE setup does)."""
    import shutil

    dest = d.getVar("HOSTTOOLS_DIR")
    bb.utils.mkdirhier(dest)
    fatal = (d.getVar("HOSTTOOLS") or "").split()
    nonfatal = (d.getVar("HOSTTOOLS_NONFATAL") or "").split()
    for tool in fatal + nonfatal:
        link = os.path.join(dest, tool)
        if os.path.lexists(link):
            continue
        found = shutil.which(tool, path="/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        if not found:
            if tool in nonfatal:
                continue
            sys.exit(f"bbdriver: HOSTTOOLS has {tool}, which is not on this host")
        os.symlink(found, link)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("builddir", type=os.path.abspath)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("parse")
    p.add_argument("recipe")
    p.add_argument("--variant", default="")
    p.add_argument("--var", action="append", default=[])
    p.add_argument("--varflags", action="append", default=[])
    p.add_argument("--emit", action="append", default=[])
    p.add_argument("--sig", action="append", default=[])
    p.add_argument("--sig-all", action="store_true", help="--sig for every task")
    r = sub.add_parser("run")
    r.add_argument("recipe")
    r.add_argument("task", nargs="+")
    r.add_argument("--variant", default="")
    r.add_argument("--skip", action="append", default=[],
                   help="a task, prefunc or postfunc not to run (with a real OE-core: one that needs what was not built)")
    r.add_argument("--set", action="append", default=[], metavar="VAR=VALUE",
                   help="set a variable after parsing")
    args = ap.parse_args()
    setup_logging()
    {"parse": cmd_parse, "run": cmd_run}[args.cmd](args)


if __name__ == "__main__":
    main()

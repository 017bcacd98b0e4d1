"""Stand-in for OE-core's oe.go (tests only): map_arch(TARGET_ARCH) gives
Go's GOARCH name, and for an architecture Go has no name for raises
bb.parse.SkipRecipe, as OE-core master and wrynose do (whinlatter raises
KeyError, scarthgap returns '')."""

import re

import bb.parse

_NAMES = [
    (r"i[3-6]86$", "386"),
    (r"x86_64$", "amd64"),
    (r"arm", "arm"),
    (r"aarch64", "arm64"),
    (r"mips64el", "mips64le"),
    (r"mips64", "mips64"),
    (r"mips$", "mips"),
    (r"mipsel$", "mipsle"),
    (r"p(pc|owerpc)64le", "ppc64le"),
    (r"p(pc|owerpc)64", "ppc64"),
    (r"riscv64$", "riscv64"),
    (r"loongarch64$", "loong64"),
]


def map_arch(a):
    for pattern, name in _NAMES:
        if re.match(pattern, a):
            return name
    raise bb.parse.SkipRecipe(f"Cannot map architecture {a}")

"""Import-only stand-in for BitBake's hashserv package.

The `bb` package on PyPI (pip install bitbake-setup) leaves out BitBake's
sibling packages, but bb.siggen imports hashserv at module level, and
bb.parse imports bb.siggen. Only the hash equivalence signature handlers
use it, and the tests never select one (BB_SIGNATURE_HANDLER is BitBake's
default). bbdriver.py puts this directory on sys.path only when no real
hashserv can be imported; anything actually used from here fails loudly.
"""


def __getattr__(name):
    raise RuntimeError(
        f"hashserv.{name}: the hash equivalence server is not available to "
        "meta-rustimage's tests (stub module)"
    )

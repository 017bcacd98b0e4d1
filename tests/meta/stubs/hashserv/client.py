"""Import-only stand-in for hashserv.client; see __init__.py."""


def __getattr__(name):
    raise RuntimeError(f"hashserv.client.{name}: not available in meta-rustimage's tests (stub)")

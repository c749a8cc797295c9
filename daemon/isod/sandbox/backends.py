"""Choosing a sandbox backend by name."""

from __future__ import annotations

from .box import SandboxError

BACKENDS = ("seccomp",)               # concrete backends (tests run each)
BACKEND_CHOICES = ("seccomp",)         # what --backend accepts


def open_backend(name: str = "seccomp"):
    """A started backend; close() it when done."""
    if name == "seccomp":
        from .seccomp_backend import SeccompBackend
        return SeccompBackend()
    raise SandboxError(f"unknown sandbox backend {name!r} (known: {', '.join(BACKENDS)})")

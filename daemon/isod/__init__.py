"""isod: kernel-enforced test sizes for pytest (seccomp user notification, ptrace fallback).

Kept import-free: the sandbox launcher imports this package with -S before it
execs the target, so anything imported here slows every launch.
"""

__version__ = "0.1.0"

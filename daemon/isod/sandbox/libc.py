"""The process's own libc, for the few calls the stdlib does not wrap.

One ctypes handle shared by every module that needs one (prctl, seccomp(2),
process_vm_readv, bpf(2)): the restype and argtypes set on its functions then
hold for all of them. The launcher imports this under ``python -E -s -S``, so
it stays stdlib-only and cheap.
"""

from __future__ import annotations

import ctypes

# CDLL(None): the symbols already loaded in this process (libc among them);
# find_library would run ldconfig, which the launcher cannot afford.
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

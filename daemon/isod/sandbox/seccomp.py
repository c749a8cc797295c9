"""seccomp(2): installing a filter, and the user-notification ioctls and
struct layouts.

The launcher installs the filter (stdlib only: it runs under ``python -E -s
-S`` right before it execs the target); the seccomp backend's pure-Python
receive/send speak the ioctls (the C twin is _notif.c). The kernel's side of
both is in docs/kernel-notes.md (receiving and answering, filter flags).
"""

from __future__ import annotations

import ctypes
import os
import struct

from .libc import libc
from .syscalls import AUDIT_ARCH_X86_64, NR_SECCOMP

SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 1 << 2
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = 1 << 5
SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1
PR_SET_NO_NEW_PRIVS = 38

# struct seccomp_notif { u64 id; u32 pid; u32 flags;
#   struct seccomp_data { i32 nr; u32 arch; u64 ip; u64 args[6]; } }
NOTIF = struct.Struct("=QIIiIQ6Q")
# struct seccomp_notif_resp { u64 id; s64 val; s32 error; u32 flags; }
NOTIF_RESP = struct.Struct("=QqiI")


def _iowr(nr: int, size: int) -> int:
    return (3 << 30) | (size << 16) | (ord("!") << 8) | nr


IOCTL_NOTIF_RECV = _iowr(0, NOTIF.size)
IOCTL_NOTIF_SEND = _iowr(1, NOTIF_RESP.size)
IOCTL_NOTIF_ID_VALID = (1 << 30) | (8 << 16) | (ord("!") << 8) | 2


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install_filter(bpf: bytes, flags: int) -> int:
    """seccomp(SET_MODE_FILTER, flags, prog); returns the listener fd or raises."""
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = SockFprog(len(bpf) // 8, ctypes.cast(buf, ctypes.c_void_p))
    ret = libc.syscall(NR_SECCOMP[AUDIT_ARCH_X86_64], SECCOMP_SET_MODE_FILTER, flags, ctypes.byref(prog))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def set_no_new_privs() -> None:
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))

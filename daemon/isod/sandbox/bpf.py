"""The seccomp filter program (docs/kernel-notes.md, trap set), built with libseccomp via pyseccomp.

Built once in the supervisor's process and exported as raw BPF, so the launcher
only has to load bytes (fast, and it needs no libseccomp of its own). libseccomp
writes the architecture checks: x86_64 and i386 (``int 0x80``) get the same
rules on their own numbers; x32 numbers and unknown architectures get ENOSYS.
"""

from __future__ import annotations

import errno
import functools
import tempfile

import pyseccomp as sc

from .syscalls import CLONE_THREAD, CLONE_UNTRACED

# Syscalls that reach the supervisor. clone is trapped only without
# CLONE_THREAD, so threads never cost a round trip on the clone path; clone3
# always is, because BPF cannot read its flags (they sit in user memory).
NOTIFIED = ("fork", "vfork", "execve", "execveat", "clone3", "ptrace")
# Answered in the filter itself, never recorded: an io_uring ring's
# operations bypass seccomp, and event loops (libuv, uvloop) that get ENOSYS
# fall back to plain syscalls. A ring cannot create a process: no violation.
ENOSYS_IN_FILTER = ("io_uring_setup",)
# socket(): trapped unless its family is AF_UNIX (1) or AF_NETLINK (16), the
# local families event loops and libc use all the time; the supervisor
# decides the others by the family (policy.LOCAL_FAMILIES), a register. One
# rule per range (libseccomp takes one comparison per argument and rule):
# 0, 2-3, 4-7, 8-15, above 16. The masked ranges ignore the upper 32 bits (the
# kernel reads an int); "above 16" compares all 64, so an AF_UNIX with garbage
# in the upper half is trapped too and let through by the supervisor.
SOCKET_TRAPPED = (
    (sc.LT, 1, None), (sc.MASKED_EQ, 0xFFFFFFFE, 2), (sc.MASKED_EQ, 0xFFFFFFFC, 4),
    (sc.MASKED_EQ, 0xFFFFFFF8, 8), (sc.GT, 16, None),
)


@functools.cache
def program(action: int | None = None, network: bool = True,
            extra_rules: tuple[tuple[str, int, int, int], ...] = ()) -> bytes:
    """Raw BPF (struct sock_filter[]) for the trap set; cached per process.

    ``action`` replaces USER_NOTIF (the ptrace backend uses
    SECCOMP_RET_TRACE); None means user notification. ``network``: trap
    socket() of network families and i386 socketcall (--isod-network on).
    ``extra_rules``: (syscall, argument, mask, value) rules added last, each
    trapping the syscall as the rest when ``argument & mask == value``.
    """
    f = sc.SyscallFilter(sc.ALLOW)
    f.set_attr(sc.Attr.ACT_BADARCH, sc.ERRNO(errno.ENOSYS))
    f.add_arch(sc.Arch.X86)
    trap = sc.NOTIFY if action is None else action
    for name in NOTIFIED:
        f.add_rule(trap, name)
    for name in ENOSYS_IN_FILTER:
        f.add_rule(sc.ERRNO(errno.ENOSYS), name)
    f.add_rule(trap, "clone", sc.Arg(0, sc.MASKED_EQ, CLONE_THREAD, 0))
    if action is not None:
        # ptrace follows threads only if it sees them: a thread made with
        # CLONE_UNTRACED would get ENOSYS for every trap, unrecorded. The
        # tracer clears the flag (user notification needs no tracer).
        both = CLONE_THREAD | CLONE_UNTRACED
        f.add_rule(trap, "clone", sc.Arg(0, sc.MASKED_EQ, both, both))
    if network:
        for op, a, b in SOCKET_TRAPPED:
            f.add_rule(trap, "socket", sc.Arg(0, op, a) if b is None else sc.Arg(0, op, a, b))
        # i386: the socketcall multiplexer's arguments are in memory, which a
        # decision must not depend on; the supervisor answers it ENOSYS (glibc
        # has made direct socket syscalls on i386 since Linux 4.3) and records
        # a socket() through it. On x86_64 it does not exist (libseccomp
        # skips it there).
        f.add_rule(trap, "socketcall")
    for name, arg, mask, value in extra_rules:
        f.add_rule(trap, name, sc.Arg(arg, sc.MASKED_EQ, mask, value))
    with tempfile.TemporaryFile() as tmp:
        f.export_bpf(tmp)
        tmp.seek(0)
        data = tmp.read()
    if not data or len(data) % 8:
        raise RuntimeError(f"libseccomp exported a malformed program ({len(data)} bytes)")
    return data


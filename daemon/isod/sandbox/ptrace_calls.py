"""The ptrace requests the tracer thread makes, on python-ptrace's low-level binding.

python-ptrace has the raw ``ptrace()`` call and the classic requests but not
the newer ones this backend relies on (SEIZE, LISTEN, GET_SYSCALL_INFO, the
seccomp event), so their numbers live here. Every call may raise PtraceError;
ESRCH means the tracee died meanwhile, which callers treat as "gone".
"""

from __future__ import annotations

import ctypes
import errno
import struct

import pyseccomp as sc
from ptrace import PtraceError
from ptrace.binding import func as _pt

from . import bpf
from .seccomp import SECCOMP_FILTER_FLAG_NEW_LISTENER
from .syscalls import AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, NR_SECCOMP

__all__ = ["PtraceError"]

PTRACE_SEIZE = 0x4206
PTRACE_LISTEN = 0x4208
PTRACE_GET_SYSCALL_INFO = 0x420E

EVENT_FORK, EVENT_VFORK, EVENT_CLONE, EVENT_EXEC = 1, 2, 3, 4
EVENT_SECCOMP = 7
EVENT_STOP = 128

O_TRACEFORK, O_TRACEVFORK, O_TRACECLONE, O_TRACEEXEC = 0x2, 0x4, 0x8, 0x10
O_TRACESECCOMP = 0x80
O_EXITKILL = 0x100000   # the tracer's death SIGKILLs every tracee: the sandbox fails closed
FOLLOW = O_TRACEFORK | O_TRACEVFORK | O_TRACECLONE | O_TRACEEXEC | O_EXITKILL

WALL = 0x40000000        # __WALL: threads and clone children too
WNOTHREAD = 0x20000000   # __WNOTHREAD: only this thread's tracees, never the process's other children

STOP_SIGNALS = frozenset({19, 20, 21, 22})   # SIGSTOP SIGTSTP SIGTTIN SIGTTOU: group-stop

# seccomp(2) per ABI: the trace filter also traps seccomp(SET_MODE_FILTER,
# NEW_LISTENER) so a tracee cannot stack a user-notif filter, whose action
# outranks SECCOMP_RET_TRACE, and answer its own spawns (the seccomp backend
# gets EBUSY from the kernel for this; here the tracer answers EBUSY).
SECCOMP_SYSCALLS = frozenset(NR_SECCOMP.items())

# offsetof(struct user_regs_struct, ...) on x86_64
_RAX, _ORIG_RAX, _RDI, _RBX, _CS = 80, 120, 112, 40, 136
_MASK = (1 << 64) - 1

_ptrace = _pt.ptrace
cont = _pt.ptrace_cont


def seize(pid: int, options: int) -> None:
    _ptrace(PTRACE_SEIZE, pid, 0, options)


def listen(tid: int) -> None:
    """Leave a group-stopped tracee stopped (as without a tracer) until SIGCONT."""
    _ptrace(PTRACE_LISTEN, tid, 0, 0)


_msg = ctypes.c_ulong()
_msg_addr = ctypes.addressof(_msg)


def eventmsg(tid: int) -> int:
    """PTRACE_GETEVENTMSG (python-ptrace's reads an unsigned long into a C int)."""
    _ptrace(_pt.PTRACE_GETEVENTMSG, tid, 0, _msg_addr)
    return _msg.value


def fail_syscall(tid: int, err: int) -> None:
    """Skip the stopped syscall (nr -1) so that it returns -err, and resume.
    At a seccomp stop rax already holds -ENOSYS (set on syscall entry)."""
    _ptrace(_pt.PTRACE_POKEUSER, tid, _ORIG_RAX, _MASK)
    if err != errno.ENOSYS:
        _ptrace(_pt.PTRACE_POKEUSER, tid, _RAX, -err & _MASK)
    _ptrace(_pt.PTRACE_CONT, tid, 0, 0)


def set_arg0(tid: int, arch: int, value: int) -> None:
    """Change the first argument of the stopped syscall (a register)."""
    _ptrace(_pt.PTRACE_POKEUSER, tid, _RBX if arch == AUDIT_ARCH_I386 else _RDI, value & _MASK)


def peekuser(tid: int, offset: int) -> int:
    return _ptrace(_pt.PTRACE_PEEKUSER, tid, offset, 0, check_errno=True)


class SyscallInfo:
    """(arch, nr, args, seccomp data) of a stopped tracee: one
    PTRACE_GET_SYSCALL_INFO (5.3+), else the registers and GETEVENTMSG."""

    # struct ptrace_syscall_info: op, pad, flags, arch, ip, sp, {nr, args[6], ret_data}
    _LAYOUT = struct.Struct("=BxHIQQQ6QI4x")

    def __init__(self, mem) -> None:
        self._mem = mem
        self._buf = ctypes.create_string_buffer(self._LAYOUT.size)
        self._addr = ctypes.addressof(self._buf)
        self._have_info = True

    def read(self, tid: int) -> tuple[int, int, tuple[int, ...], int]:
        if self._have_info:
            try:
                _ptrace(PTRACE_GET_SYSCALL_INFO, tid, self._LAYOUT.size, self._addr)
                _op, _fl, arch, _ip, _sp, nr, *args, data = self._LAYOUT.unpack(self._buf.raw)
                return arch, nr, tuple(args), data
            except PtraceError as e:
                if e.errno not in (errno.EIO, errno.EINVAL):
                    raise
                self._have_info = False
        regs = _pt.ptrace_getregs(tid)
        # i386: a compat-mode process (32-bit code segment), or `int 0x80` (cd 80)
        # from 64-bit code: the instruction right before the stop's rip
        if regs.cs == 0x23 or self._mem.read(tid, regs.rip - 2, 2) == b"\xcd\x80":
            arch, args = AUDIT_ARCH_I386, (regs.rbx, regs.rcx, regs.rdx, regs.rsi, regs.rdi, regs.rbp)
        else:
            arch, args = AUDIT_ARCH_X86_64, (regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9)
        return arch, regs.orig_rax, tuple(a & 0xFFFFFFFF for a in args) if arch == AUDIT_ARCH_I386 else args, \
            eventmsg(tid)

    def current(self, tid: int) -> tuple[int, int, int]:
        """(arch, nr, arg0) of the syscall a tracee is in, from any ptrace stop
        (the event stops of fork/clone/exec, which carry no syscall info)."""
        arch = self.read(tid)[0]   # op NONE still fills arch
        nr = peekuser(tid, _ORIG_RAX)
        arg0 = peekuser(tid, _RBX if arch == AUDIT_ARCH_I386 else _RDI)
        return arch, nr, arg0


# SECCOMP_RET_DATA of our filter's traps: a stop with another value comes from
# a filter of the tracee's own (a syscall we do not know is then let through)
TRACE_DATA = 0x150D


# seccomp(SET_MODE_FILTER, NEW_LISTENER, ...): see SECCOMP_SYSCALLS
_NO_LISTENER = (("seccomp", 1, SECCOMP_FILTER_FLAG_NEW_LISTENER, SECCOMP_FILTER_FLAG_NEW_LISTENER),)


def filter_program(network: bool = True) -> bytes:
    """The trap set of bpf.py with SECCOMP_RET_TRACE, plus seccomp(NEW_LISTENER)."""
    return bpf.program(sc.TRACE(TRACE_DATA), network, _NO_LISTENER)


def gone(e: PtraceError) -> bool:
    return e.errno == errno.ESRCH

"""Linux ABI the sandbox needs and the stdlib does not expose.

Syscall numbers, seccomp user-notification ioctls and struct layouts, and a
cross-process memory reader. Kept in one place so that the hot path
(:mod:`isod.sandbox.supervisor`) only does attribute lookups.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

# CDLL(None): the symbols already loaded in this process (libc among them);
# find_library would run ldconfig, which the launcher cannot afford.
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

# --- syscall numbers -------------------------------------------------------
NR_SECCOMP_X86_64 = 317
NR_PIDFD_OPEN = 434

# name -> number, per ABI. Only what the filter traps or the policy names.
SYSCALLS = {
    "x86_64": {
        "fork": 57, "vfork": 58, "execve": 59, "clone": 56, "execveat": 322,
        "clone3": 435, "ptrace": 101, "io_uring_setup": 425, "socket": 41,
    },
    "i386": {
        "fork": 2, "vfork": 190, "execve": 11, "clone": 120, "execveat": 358,
        "clone3": 435, "ptrace": 26, "io_uring_setup": 425, "socket": 359,
        "socketcall": 102,   # the multiplexer: its arguments are in memory
    },
}
AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003
ABI_OF_ARCH = {AUDIT_ARCH_X86_64: "x86_64", AUDIT_ARCH_I386: "i386"}
# (arch, nr) -> syscall name, the supervisor's lookup table
NAME_OF = {
    (arch, nr): name
    for arch, abi in ABI_OF_ARCH.items()
    for name, nr in SYSCALLS[abi].items()
}

CLONE_VM = 0x00000100
CLONE_VFORK = 0x00004000
CLONE_THREAD = 0x00010000
CLONE_UNTRACED = 0x00800000

# --- seccomp ---------------------------------------------------------------
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_GET_NOTIF_SIZES = 3
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
    ret = libc.syscall(NR_SECCOMP_X86_64, SECCOMP_SET_MODE_FILTER, flags, ctypes.byref(prog))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def set_no_new_privs() -> None:
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


# --- reading another process's memory --------------------------------------
class IOVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


libc.process_vm_readv.restype = ctypes.c_ssize_t
libc.process_vm_readv.argtypes = [
    ctypes.c_int, ctypes.POINTER(IOVec), ctypes.c_ulong,
    ctypes.POINTER(IOVec), ctypes.c_ulong, ctypes.c_ulong,
]
PAGE = os.sysconf("SC_PAGE_SIZE")
MAX_ARGS = 256          # argv entries recorded; more mark the argv as cut
MAX_ARG_LEN = 4096      # bytes per string recorded; a longer one marks it as cut


class MemReader:
    """Reads C strings and pointer arrays out of another process.

    process_vm_readv needs no open() per call (a /proc/PID/mem read costs an
    open, a pread and a close). Each remote range is clipped to its page so a
    string next to an unmapped page is still read up to the boundary. The
    iovec arrays and buffers are allocated once: this runs on the hot path.
    """

    FIRST = 256   # bytes read per argv string at first; longer ones get a second read

    def __init__(self) -> None:
        self._buf = ctypes.create_string_buffer(PAGE)
        self._buf_addr = ctypes.addressof(self._buf)
        self._one_local = IOVec(self._buf_addr, 0)
        self._one_remote = IOVec(0, 0)
        self._one_local_ref = ctypes.byref(self._one_local)
        self._one_remote_ref = ctypes.byref(self._one_remote)
        self._local = (IOVec * MAX_ARGS)()
        self._remote = (IOVec * MAX_ARGS)()
        self._strbufs = ctypes.create_string_buffer(MAX_ARGS * self.FIRST)
        base = ctypes.addressof(self._strbufs)
        self._addrs = [base + i * self.FIRST for i in range(MAX_ARGS)]
        for i, a in enumerate(self._addrs):
            self._local[i].base = a

    def read(self, pid: int, addr: int, size: int) -> bytes:
        """Up to size bytes (at most a page) at addr; shorter if unmapped."""
        self._one_local.len = size
        self._one_remote.base = addr
        self._one_remote.len = size
        n = _vm_readv(pid, self._one_local_ref, 1, self._one_remote_ref, 1, 0)
        return ctypes.string_at(self._buf_addr, n) if n > 0 else b""

    def string(self, pid: int, addr: int) -> bytes | None:
        """The C string at addr, at most MAX_ARG_LEN bytes; None if unreadable."""
        s, _cut = self.string_cut(pid, addr)
        return s or None

    def string_cut(self, pid: int, addr: int) -> tuple[bytes, bool]:
        """(the C string at addr, cut): read page by page up to MAX_ARG_LEN + 1
        bytes; cut when it has no NUL within them (kept: MAX_ARG_LEN bytes).
        What was readable if a page is not. The C twin: _notif.c read_str."""
        if not addr:
            return b"", False
        out = b""
        limit = MAX_ARG_LEN + 1
        while len(out) < limit:
            chunk = self.read(pid, addr, min(PAGE - addr % PAGE, limit - len(out)))
            if not chunk:
                return out, False
            end = chunk.find(b"\0")
            if end >= 0:
                return out + chunk[:end], False
            out += chunk
            addr += len(chunk)
        return out[:MAX_ARG_LEN], True

    def string_array(self, pid: int, addr: int) -> list[bytes]:
        """A NULL-terminated char*[] (argv): typically two syscalls."""
        return self.argv(pid, addr, 8)[0]

    def string_array32(self, pid: int, addr: int) -> list[bytes]:
        """A NULL-terminated array of 32-bit pointers: argv of an i386 execve."""
        return self.argv(pid, addr, 4)[0]

    def argv(self, pid: int, addr: int, wide: int = 8) -> tuple[list[bytes], bool]:
        """(strings, cut) of a NULL-terminated array of `wide`-byte pointers.

        The pointers are read page by page (up to MAX_ARGS + 1 of them: more
        than MAX_ARGS marks the result as cut), then the first FIRST bytes of
        every string in one process_vm_readv, then the strings that did not
        end there one by one. The C twin: _notif.c read_exec.
        """
        if not addr:
            return [], False
        total = (MAX_ARGS + 1) * wide
        fmt = "Q" if wide == 8 else "I"
        raw = b""
        ptrs: list[int] = []
        ended = False
        while len(raw) < total and not ended and len(ptrs) <= MAX_ARGS:
            a = addr + len(raw)
            chunk = self.read(pid, a, min(PAGE - a % PAGE, total - len(raw)))
            if not chunk:
                break
            raw += chunk
            words = memoryview(raw)[: len(raw) - len(raw) % wide].cast(fmt).tolist()[len(ptrs):]
            if 0 in words:
                words = words[: words.index(0)]
                ended = True
            ptrs += words
        cut = len(ptrs) > MAX_ARGS
        count = len(ptrs) if not cut else MAX_ARGS
        if not count:
            return [], cut
        local, remote, first = self._local, self._remote, self.FIRST
        lens = []
        for i in range(count):
            p = ptrs[i]
            ln = min(PAGE - p % PAGE, first)
            remote[i].base = p
            remote[i].len = ln
            local[i].len = ln
            lens.append(ln)
        got = _vm_readv(pid, local, count, remote, count, 0)
        out: list[bytes] = []
        string_at, addrs = ctypes.string_at, self._addrs
        for i, ln in enumerate(lens):
            if got < ln:
                # this one failed part-way (unmapped page): the rest one by one
                for q in ptrs[i:count]:
                    s, c = self.string_cut(pid, q)
                    out.append(s)
                    cut = cut or c
                break
            got -= ln
            s = string_at(addrs[i], ln)
            end = s.find(b"\0")
            if end >= 0:
                out.append(s[:end])
            else:
                s, c = self.string_cut(pid, ptrs[i])
                out.append(s)
                cut = cut or c
        return out, cut


_vm_readv = libc.process_vm_readv


def pidfd_open(pid: int) -> int:
    fd = libc.syscall(NR_PIDFD_OPEN, pid, 0)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return fd


def errno_name(code: int) -> str:
    return errno.errorcode.get(code, str(code))

"""Reading another process's memory: the strings and argv a trapped call
points at.

A trapped execve names its program and argv by pointers into the caller's
memory; clone3 and socketcall keep their arguments there too. Both backends
read them here while the caller is held (the seccomp backend only on its
pure-Python path: the C twin is _notif.c read_str / read_exec).
"""

from __future__ import annotations

import ctypes
import os

from .libc import libc


class IOVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


libc.process_vm_readv.restype = ctypes.c_ssize_t
libc.process_vm_readv.argtypes = [
    ctypes.c_int, ctypes.POINTER(IOVec), ctypes.c_ulong,
    ctypes.POINTER(IOVec), ctypes.c_ulong, ctypes.c_ulong,
]
_vm_readv = libc.process_vm_readv
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

"""What a trapped call asks for: its arguments, decoded from its registers
and the caller's memory.

One decoder for both backends: the seccomp backend's pure-Python path (the C
twin is _notif.c notif_receive) and the ptrace backend's RET_TRACE stops. It
only reads, while the caller is held; deciding, and answering a call that
must never run (a clone3 thread, a socketcall), stay with the backends.
"""

from __future__ import annotations

import os
import struct

from ..policy import SYS_SOCKET
from .remote_memory import MemReader
from .syscalls import AUDIT_ARCH_I386

NO_NET = (0, 0, 0)
_SOCKET_ARGS = struct.Struct("=III")


def decode(mem: MemReader, tid: int, name: str | None, arch: int, a) -> tuple[
        str, list[str], str, int, tuple[int, int, int], bool]:
    """(path, argv, cwd, flags, (family, type, protocol), cut) of a trapped
    call, ``a`` its six arguments.

    execve/execveat: the program, argv and the caller's cwd; cut when a
    string or argv was longer than is kept (flags: execveat's). clone3: the
    flags of its clone_args, read from memory; clone: its flags; ptrace: the
    request. socket: its family, type and protocol (ints: the lower 32 bits).
    socketcall (i386): the call in flags, and for SYS_SOCKET the three
    arguments it points at. Anything else: nothing.
    """
    path = cwd = ""
    argv: list[str] = []
    flags = 0
    net = NO_NET
    cut = False
    if name == "execve" or name == "execveat":
        path_addr, argv_addr = (a[0], a[1]) if name == "execve" else (a[1], a[2])
        raw, cut = mem.string_cut(tid, path_addr)
        args, cut_argv = mem.argv(tid, argv_addr, 4 if arch == AUDIT_ARCH_I386 else 8)
        cut = cut or cut_argv
        path = os.fsdecode(raw)
        argv = [os.fsdecode(x) for x in args]
        try:
            cwd = os.readlink(f"/proc/{tid}/cwd")
        except OSError:
            pass
        if name == "execveat":
            flags = a[4]
    elif name == "clone3":
        flags = clone3_flags(mem, tid, a[0])
    elif name == "clone" or name == "ptrace":
        flags = a[0]   # clone: its flags; ptrace: the request
    elif name == "socket":
        net = (a[0] & 0xFFFFFFFF, a[1] & 0xFFFFFFFF, a[2] & 0xFFFFFFFF)
    elif name == "socketcall":
        flags = a[0]   # the call; its arguments for the record only
        raw = mem.read(tid, a[1], 12) if flags == SYS_SOCKET and a[1] else b""
        if len(raw) == 12:
            net = _SOCKET_ARGS.unpack(raw)
    return path, argv, cwd, flags, net, cut


def clone3_flags(mem: MemReader, tid: int, args_addr: int) -> int:
    """clone_args.flags (its first u64) of a clone3; 0 if unreadable."""
    raw = mem.read(tid, args_addr, 8) if args_addr else b""
    return int.from_bytes(raw, "little") if len(raw) == 8 else 0

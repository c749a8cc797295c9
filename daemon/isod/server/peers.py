"""Which processes are connected to a Unix socket path, from the kernel's
sock_diag (what `ss -xp` shows): how the daemon tells that a session comes
from one of its own small tests (Python gRPC gives no SO_PEERCRED). A
server-side socket accepted on a listener carries the listener's path; its
peer is the client's socket; /proc/PID/fd maps that socket's inode to the
processes holding it."""

from __future__ import annotations

import os
import socket
import struct

NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY = 4, 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
UDIAG_SHOW_NAME, UDIAG_SHOW_PEER = 0x1, 0x4
UNIX_DIAG_NAME, UNIX_DIAG_PEER = 0, 2
_NLMSG = struct.Struct("=IHHII")
_REQ = struct.Struct("=BBHIIIII")      # struct unix_diag_req
_MSG = struct.Struct("=BBBBIII")       # struct unix_diag_msg
_RTA = struct.Struct("=HH")


def unix_sockets() -> dict[int, tuple[str, int]]:
    """inode -> (bound path or "", peer inode or 0) for every Unix socket of this netns."""
    req = _REQ.pack(socket.AF_UNIX, 0, 0, 0xFFFFFFFF, 0, UDIAG_SHOW_NAME | UDIAG_SHOW_PEER, 0xFFFFFFFF, 0xFFFFFFFF)
    out: dict[int, tuple[str, int]] = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as s:
        s.send(_NLMSG.pack(_NLMSG.size + len(req), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + req)
        while True:
            data = s.recv(1 << 16)
            off = 0
            while off + _NLMSG.size <= len(data):
                length, kind = _NLMSG.unpack_from(data, off)[:2]
                if kind == NLMSG_DONE:
                    return out
                if kind == NLMSG_ERROR:
                    raise OSError("sock_diag refused the dump")
                ino = _MSG.unpack_from(data, off + _NLMSG.size)[4]
                name, peer = "", 0
                a = off + _NLMSG.size + _MSG.size
                while a + _RTA.size <= off + length:
                    alen, atype = _RTA.unpack_from(data, a)
                    if alen < _RTA.size:
                        break
                    payload = data[a + _RTA.size:a + alen]
                    if atype == UNIX_DIAG_NAME:
                        name = payload.rstrip(b"\0").decode(errors="replace")
                    elif atype == UNIX_DIAG_PEER:
                        peer = struct.unpack_from("=I", payload)[0]
                    a += (alen + 3) & ~3
                out[ino] = (name, peer)
                off += (length + 3) & ~3


def socket_inodes(pid: int) -> set[int]:
    found = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return found
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            found.add(int(link[8:-1]))
    return found


def connected_to(path: str, pids) -> set[int]:
    """The pids among `pids` holding a socket connected to the listener at `path`."""
    path = "/" + path.lstrip("/")   # gRPC binds as ///abs/path
    socks = unix_sockets()
    server_side = {ino for ino, (name, _peer) in socks.items() if name and "/" + name.lstrip("/") == path}
    return {pid for pid in pids if any(socks.get(i, ("", 0))[1] in server_side for i in socket_inodes(pid))}

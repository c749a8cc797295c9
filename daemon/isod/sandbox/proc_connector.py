"""Process births and deaths from the kernel's process events connector.

Seccomp user notification sees a fork only from the parent's side, before the
child exists, and never sees an exit. `isod trace` wants the child's pid and
every process's exit status, so it listens on the netlink connector (CN_PROC),
which needs CAP_NET_ADMIN. Without it the tree is shown from the traps alone.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
from collections.abc import Callable

from .events import ProcEvent

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2
NLMSG_DONE = 3
PROC_EVENT_FORK = 0x00000001
PROC_EVENT_EXIT = 0x80000000

_NLMSGHDR = struct.Struct("=IHHII")
_CN_MSG = struct.Struct("=IIIIHH")
_EVENT_HDR = struct.Struct("=IIQ")
_FORK = struct.Struct("=IIII")
_EXIT = struct.Struct("=IIII")


class ProcConnector:
    """Follows one process tree: forks whose parent is in it, exits of its members."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_CONNECTOR)
        try:
            self.sock.bind((0, CN_IDX_PROC))
            self._control(PROC_CN_MCAST_LISTEN)
        except OSError:
            self.sock.close()
            raise
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        _attach_filter(self.sock)
        self._stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC)
        self._thread: threading.Thread | None = None
        self.members: set[int] = set()
        self.lost = False

    def _control(self, op: int) -> None:
        payload = struct.pack("=I", op)
        cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(payload), 0) + payload
        hdr = _NLMSGHDR.pack(_NLMSGHDR.size + len(cn), NLMSG_DONE, 0, 0, os.getpid())
        self.sock.send(hdr + cn)

    def follow(self, root: int, sink: Callable[[ProcEvent], None]) -> None:
        self.members.add(root)
        self._thread = threading.Thread(target=self._run, args=(sink,), name="isod-proc-events", daemon=True)
        self._thread.start()

    def _run(self, sink: Callable[[ProcEvent], None]) -> None:
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        while True:
            ready = {fd for fd, _ in poller.poll()}
            if self.sock.fileno() in ready:
                try:
                    data = self.sock.recv(65536)
                except OSError:   # ENOBUFS: the kernel dropped events
                    self.lost = True
                    continue
                self._parse(data, sink)
            elif self._stop_r in ready:
                return

    def _parse(self, data: bytes, sink: Callable[[ProcEvent], None]) -> None:
        off = 0
        while off + _NLMSGHDR.size <= len(data):
            length = _NLMSGHDR.unpack_from(data, off)[0]
            if length < _NLMSGHDR.size:
                return
            body = off + _NLMSGHDR.size + _CN_MSG.size
            what, _cpu, ts = _EVENT_HDR.unpack_from(data, body)
            ev = body + _EVENT_HDR.size
            if what == PROC_EVENT_FORK:
                _ppid, ptgid, cpid, ctgid = _FORK.unpack_from(data, ev)
                if ptgid in self.members and cpid == ctgid:
                    self.members.add(cpid)
                    sink(ProcEvent(t_ns=ts, kind="fork", pid=cpid, ppid=ptgid))
            elif what == PROC_EVENT_EXIT:
                pid, tgid, status, _sig = _EXIT.unpack_from(data, ev)
                if pid == tgid and pid in self.members:
                    self.members.discard(pid)
                    code = (status >> 8) & 0xFF if status & 0x7F == 0 else None
                    signal = status & 0x7F or None
                    sink(ProcEvent(t_ns=ts, kind="exit", pid=pid, exit_code=code, exit_signal=signal))
            off += (length + 3) & ~3

    def close(self) -> None:
        os.write(self._stop_w, b"x")
        if self._thread is not None:
            self._thread.join(2)
        try:
            self._control(PROC_CN_MCAST_IGNORE)
        except OSError:
            pass
        self.sock.close()
        os.close(self._stop_r)
        os.close(self._stop_w)


# The connector reports every process event of the machine (execs, uid
# changes, every thread start...) and each one woke our thread and took the
# GIL from the supervisor. A socket filter keeps only what _parse uses:
# forks of a process (child pid == child tgid) and exits of a process.
# BPF_ABS loads are big-endian: a native 32-bit field reads byte-swapped.
_OFF_WHAT = _NLMSGHDR.size + _CN_MSG.size            # proc_event.what
_OFF_DATA = _OFF_WHAT + _EVENT_HDR.size              # event_data
_LD_ABS, _JEQ_K, _JEQ_X, _JA, _TAX, _RET = 0x20, 0x15, 0x1D, 0x05, 0x07, 0x06
_FILTER = (
    (_LD_ABS, 0, 0, _OFF_WHAT),
    (_JEQ_K, 0, 4, int.from_bytes(PROC_EVENT_FORK.to_bytes(4, "little"), "big")),   # fork -> 2, else 6
    (_LD_ABS, 0, 0, _OFF_DATA + 8),                   # child_pid
    (_TAX, 0, 0, 0),
    (_LD_ABS, 0, 0, _OFF_DATA + 12),                  # child_tgid
    (_JA, 0, 0, 4),                                   # -> 10
    (_JEQ_K, 0, 5, int.from_bytes(PROC_EVENT_EXIT.to_bytes(4, "little"), "big")),   # exit -> 7, else 12
    (_LD_ABS, 0, 0, _OFF_DATA),                       # process_pid
    (_TAX, 0, 0, 0),
    (_LD_ABS, 0, 0, _OFF_DATA + 4),                   # process_tgid
    (_JEQ_X, 0, 1, 0),                                # same: keep (11), else drop (12)
    (_RET, 0, 0, 0xFFFF),
    (_RET, 0, 0, 0),
)
SO_ATTACH_FILTER = 26


def _attach_filter(sock: socket.socket) -> None:
    """Best effort: without the filter every event is parsed in Python."""
    import ctypes

    prog = b"".join(struct.pack("=HBBI", *ins) for ins in _FILTER)
    buf = ctypes.create_string_buffer(prog, len(prog))
    fprog = struct.pack("@HP", len(_FILTER), ctypes.addressof(buf))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    except OSError:
        pass


def open_connector() -> ProcConnector | None:
    try:
        return ProcConnector()
    except OSError:
        return None

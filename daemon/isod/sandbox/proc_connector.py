"""Process births, execs and deaths from the kernel's process events connector.

Seccomp user notification sees a fork only from the parent's side, before the
child exists, and never an exit; and a call it traps can fail with EINTR
before the supervisor receives it (docs/kernel-notes.md, "interruptible
wait"). So where the rule allows spawning, isod traps nothing and learns of
the tree's processes here instead, after the fact: the kernel queues each
event on this socket in the context of the process that forks, execs or
exits, so when a worker tells the daemon "my test ended", every event of that
test is already queued and ``sync`` reads it. Needs CAP_NET_ADMIN.
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
PROC_EVENT_EXEC = 0x00000002
PROC_EVENT_EXIT = 0x80000000

_NLMSGHDR = struct.Struct("=IHHII")
_CN_MSG = struct.Struct("=IIIIHH")
_EVENT_HDR = struct.Struct("=IIQ")
_FORK = struct.Struct("=IIII")
_EXEC = struct.Struct("=II")
_EXIT = struct.Struct("=IIII")
SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NETLINK_DROP_MEMBERSHIP = 270, 1, 2
ARGV_MAX = 128 << 10     # bytes of /proc/PID/cmdline kept per exec

Sink = Callable[[ProcEvent], None]


class ProcConnector:
    """Follows process trees (one sink per root): forks whose parent is in a
    tree, execs and exits of its members. One socket and one thread serve
    every tree of the process."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_CONNECTOR)
        try:
            self.sock.bind((0, CN_IDX_PROC))
            self._control(PROC_CN_MCAST_LISTEN)
        except OSError:
            self.sock.close()
            raise
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        _attach_filter(self.sock)
        self._membership(False)      # until a tree is followed
        self.sock.setblocking(False)
        self._stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()        # one reader at a time: the thread or sync()
        self.members: dict[int, int] = {}    # pid -> root of its tree
        self.sinks: dict[int, Sink] = {}     # root -> sink
        self.lost = False

    def _control(self, op: int) -> None:
        payload = struct.pack("=I", op)
        cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(payload), 0) + payload
        hdr = _NLMSGHDR.pack(_NLMSGHDR.size + len(cn), NLMSG_DONE, 0, 0, os.getpid())
        self.sock.send(hdr + cn)

    def _membership(self, on: bool) -> None:
        """In the group only while a tree is followed: the kernel sends every
        fork, exec and exit of the machine to each member, and a busy host
        would wake our thread for nothing."""
        try:
            self.sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP if on else NETLINK_DROP_MEMBERSHIP,
                                 CN_IDX_PROC)
        except OSError:
            pass

    def follow(self, root: int, sink: Sink) -> None:
        """Report root's tree to sink from now on; call before root can fork."""
        with self._lock:
            if not self.sinks:
                self._membership(True)
            self.members[root] = root
            self.sinks[root] = sink
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="isod-proc-events", daemon=True)
                self._thread.start()

    def unfollow(self, root: int) -> None:
        with self._lock:
            self.sinks.pop(root, None)
            for pid in [p for p, r in self.members.items() if r == root]:
                del self.members[pid]
            if not self.sinks:
                self._membership(False)
                self._read_all()       # what was queued before: nobody's now

    def tree_size(self, root: int) -> int:
        """Processes of root's tree not yet seen exiting."""
        with self._lock:
            return sum(1 for r in self.members.values() if r == root)

    def sync(self) -> None:
        """Deliver every event queued so far, from the caller's thread."""
        with self._lock:
            self._read_all()

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        while True:
            ready = {fd for fd, _ in poller.poll()}
            if self._stop_r in ready:
                return
            with self._lock:
                self._read_all()

    def _read_all(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError:   # ENOBUFS: the kernel dropped events
                self.lost = True
                continue
            self._parse(data)

    def _parse(self, data: bytes) -> None:
        off = 0
        members = self.members
        while off + _NLMSGHDR.size <= len(data):
            length = _NLMSGHDR.unpack_from(data, off)[0]
            if length < _NLMSGHDR.size:
                return
            body = off + _NLMSGHDR.size + _CN_MSG.size
            what, _cpu, ts = _EVENT_HDR.unpack_from(data, body)
            ev = body + _EVENT_HDR.size
            off += (length + 3) & ~3
            if what == PROC_EVENT_FORK:
                _ppid, ptgid, cpid, ctgid = _FORK.unpack_from(data, ev)
                root = members.get(ptgid)
                # a child already followed as a root of its own (a worker the
                # zygote forked) stays its own
                if root is not None and cpid == ctgid and cpid not in self.sinks:
                    members[cpid] = root
                    self._deliver(root, ProcEvent(t_ns=ts, kind="fork", pid=cpid, ppid=ptgid))
            elif what == PROC_EVENT_EXEC:
                pid, tgid = _EXEC.unpack_from(data, ev)
                root = members.get(tgid)
                if root is not None:
                    path, argv, cwd, ppid, complete = _exec_details(tgid)
                    self._deliver(root, ProcEvent(t_ns=ts, kind="exec", pid=tgid, ppid=ppid, path=path,
                                                  argv=argv, cwd=cwd, argv_complete=complete))
            elif what == PROC_EVENT_EXIT:
                pid, tgid, status, _sig = _EXIT.unpack_from(data, ev)
                if pid == tgid:
                    root = members.pop(pid, None)
                    if root is not None:
                        code = (status >> 8) & 0xFF if status & 0x7F == 0 else None
                        signal = status & 0x7F or None
                        self._deliver(root, ProcEvent(t_ns=ts, kind="exit", pid=pid, exit_code=code,
                                                      exit_signal=signal))

    def _deliver(self, root: int, ev: ProcEvent) -> None:
        sink = self.sinks.get(root)
        if sink is not None:
            sink(ev)

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


def _exec_details(pid: int) -> tuple[str, list[str], str, int, bool]:
    """(program, argv, cwd, parent, complete) of a process that just exec'd;
    best effort: a short program may be gone before we look."""
    path = cwd = ""
    argv: list[str] = []
    ppid = 0
    complete = False
    try:
        path = os.readlink(f"/proc/{pid}/exe")
        fd = os.open(f"/proc/{pid}/cmdline", os.O_RDONLY | os.O_CLOEXEC)
        try:
            raw = os.read(fd, ARGV_MAX)
        finally:
            os.close(fd)
        argv = [os.fsdecode(a) for a in raw.split(b"\0")[:-1]] if raw else []
        complete = bool(argv) and len(raw) < ARGV_MAX
        cwd = os.readlink(f"/proc/{pid}/cwd")
        with open(f"/proc/{pid}/stat", "rb") as f:
            ppid = int(f.read().rpartition(b")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return path, argv, cwd, ppid, complete


# The connector reports every process event of the machine (every thread
# start, uid change...) and each one would wake our thread and take the GIL
# from the supervisor. A socket filter keeps only what _parse uses: forks of
# a process (child pid == child tgid), execs, and exits of a process.
# BPF_ABS loads are big-endian: a native 32-bit field reads byte-swapped.
_OFF_WHAT = _NLMSGHDR.size + _CN_MSG.size            # proc_event.what
_OFF_DATA = _OFF_WHAT + _EVENT_HDR.size              # event_data
_LD_ABS, _JEQ_K, _JEQ_X, _JA, _TAX, _RET = 0x20, 0x15, 0x1D, 0x05, 0x07, 0x06


def _be(value: int) -> int:
    return int.from_bytes(value.to_bytes(4, "little"), "big")


_FILTER = (
    (_LD_ABS, 0, 0, _OFF_WHAT),
    (_JEQ_K, 10, 0, _be(PROC_EVENT_EXEC)),            # exec -> keep (12)
    (_JEQ_K, 0, 4, _be(PROC_EVENT_FORK)),             # fork -> 3, else 7
    (_LD_ABS, 0, 0, _OFF_DATA + 8),                   # child_pid
    (_TAX, 0, 0, 0),
    (_LD_ABS, 0, 0, _OFF_DATA + 12),                  # child_tgid
    (_JA, 0, 0, 4),                                   # -> 11
    (_JEQ_K, 0, 5, _be(PROC_EVENT_EXIT)),             # exit -> 8, else drop (13)
    (_LD_ABS, 0, 0, _OFF_DATA),                       # process_pid
    (_TAX, 0, 0, 0),
    (_LD_ABS, 0, 0, _OFF_DATA + 4),                   # process_tgid
    (_JEQ_X, 0, 1, 0),                                # same: keep (12), else drop (13)
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

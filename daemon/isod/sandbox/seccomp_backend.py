"""The seccomp user-notification backend: launcher + one epoll supervisor.

Every sandboxed tree has its own listener fd; one thread waits on all of them
with epoll. Per notification the hot path is: RECV, read what the decision or
the record needs out of the caller's memory, check ID_VALID, SEND. Everything
else (/proc look-ups, building the Event, callbacks) happens after the answer,
so the caller is held only for the decision itself.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time

from .. import policy
from ..policy import IDLE, Rule
from . import bpf, kernel
from .box import Box, EventSink, SandboxError
from .events import ALLOW, DENY, ENOSYS, Event
from .spawn import LauncherProcess

_EPOLLIN, _EPOLLHUP, _EPOLLERR = select.EPOLLIN, select.EPOLLHUP, select.EPOLLERR
_CONTINUE = kernel.SECCOMP_USER_NOTIF_FLAG_CONTINUE
_I386 = kernel.AUDIT_ARCH_I386   # its argv is an array of 32-bit pointers
_EXECS = ("execve", "execveat")
_SPAWNS = ("fork", "vfork", "clone")


class SeccompBackend:
    """Runs commands under the USER_NOTIF filter and answers their traps."""

    name = "seccomp"

    def __init__(self) -> None:
        self._program = bpf.program()
        self._epoll = select.epoll()
        self._boxes: dict[int, Box] = {}
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._epoll.register(self._wake_r, _EPOLLIN)
        self._mem = kernel.MemReader()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="isod-supervisor", daemon=True)
        self._thread.start()

    # --- owner side -------------------------------------------------------
    def spawn(self, argv: list[str], *, rule: Rule = IDLE, on_event: EventSink | None = None,
              **popen_kwargs) -> Box:
        """Start argv in a new sandbox; returns once the filter is in place."""
        launch = LauncherProcess(argv, "notif", self._program, **popen_kwargs)
        box = Box(launch.popen, rule, on_event)
        listener = launch.receive_listener()
        self._boxes[listener] = box
        self._epoll.register(listener, _EPOLLIN)
        return box

    def close(self) -> None:
        self._closing = True
        os.write(self._wake_w, b"x")
        self._thread.join(5)
        for fd in list(self._boxes):
            self._release(fd)
        self._epoll.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    # --- supervisor thread ------------------------------------------------
    def _loop(self) -> None:
        poll = self._epoll.poll
        boxes = self._boxes
        while not self._closing:
            for fd, mask in poll():
                box = boxes.get(fd)
                if box is None:
                    continue
                try:
                    if mask & _EPOLLIN:
                        self._answer(fd, box)
                    elif mask & (_EPOLLHUP | _EPOLLERR):
                        self._release(fd)
                except Exception as e:  # never leave a tree waiting on a dead loop
                    sys.stderr.write(f"isod: supervisor error on pid {box.pid}: {e!r}; "
                                     "closing its listener (its traps now fail with ENOSYS)\n")
                    self._release(fd)

    def _release(self, fd: int) -> None:
        box = self._boxes.pop(fd, None)
        try:
            self._epoll.unregister(fd)
        except (OSError, ValueError):
            pass
        os.close(fd)
        if box is not None:
            box.released.set()

    def _answer(self, fd: int, box: Box) -> None:
        buf = bytearray(kernel.NOTIF.size)
        try:
            fcntl.ioctl(fd, kernel.IOCTL_NOTIF_RECV, buf, True)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.EINTR):   # the caller went away first
                return
            raise
        t0 = time.monotonic_ns()
        nid, tid, _flags, nr, arch, _ip, a0, a1, a2, _a3, a4, _a5 = kernel.NOTIF.unpack(buf)
        name = kernel.NAME_OF.get((arch, nr), f"syscall{nr}")
        mem = self._mem
        path = b""
        argv: list[bytes] = []
        flags = 0
        if name == "execve":
            path = mem.string(tid, a0) or b""
            argv = mem.string_array(tid, a1) if arch != _I386 else mem.string_array32(tid, a1)
        elif name == "execveat":
            path = mem.string(tid, a1) or b""
            argv = mem.string_array(tid, a2) if arch != _I386 else mem.string_array32(tid, a2)
            flags = a4
        elif name == "clone3":
            raw = mem.read(tid, a0, 8) if a0 else b""
            flags = int.from_bytes(raw, "little") if len(raw) == 8 else 0
            if flags & kernel.CLONE_THREAD:
                # a thread: ENOSYS so that libc falls back to clone(CLONE_THREAD),
                # which the filter allows without asking. Not recorded.
                _send(fd, nid, -errno.ENOSYS, 0)
                return
        elif name == "clone":
            flags = a0
        elif name == "ptrace":
            flags = a0  # the request
        # while the caller is held: once answered it may exit at once (a denied
        # caller, or a short program it execs) and /proc/TID with it
        tgid, ppid = _ids(tid)
        valid = _id_valid(fd, nid)
        if box.before_decision is not None:
            box.before_decision()
        rule = box.rule
        if box.launch_rule is not None and tid == box.pid and name == "execve":
            # the launcher execs the command: allowed; the owner's rule holds from here
            rule = IDLE
            box.rule, box.launch_rule = box.launch_rule, None
        box.inflight += 1      # answered from here on, recorded below (see Box.settle)
        if name == "clone3":
            decision = ENOSYS       # never CONTINUE a clone3: its flags may change after the check
            _send(fd, nid, -errno.ENOSYS, 0)
        elif policy.decide(rule, name):
            decision = ALLOW
            _send(fd, nid, 0, _CONTINUE)
        else:
            decision = DENY
            _send(fd, nid, -errno.EPERM, 0)
        t1 = time.monotonic_ns()
        ev = Event(
            t_ns=t0, pid=tgid, tid=tid, ppid=ppid, syscall=name,
            abi=kernel.ABI_OF_ARCH.get(arch, hex(arch)), decision=decision,
            latency_ns=t1 - t0, path=os.fsdecode(path), argv=[os.fsdecode(a) for a in argv],
            clone_flags=flags, argv_complete=valid,
        )
        if name in _EXECS:
            try:
                ev.cwd = os.readlink(f"/proc/{tid}/cwd")
            except OSError:
                pass
        box.record(ev)
        box.inflight -= 1


def _send(fd: int, nid: int, error: int, flags: int) -> None:
    try:
        fcntl.ioctl(fd, kernel.IOCTL_NOTIF_SEND, kernel.NOTIF_RESP.pack(nid, 0, error, flags))
    except OSError as e:
        if e.errno != errno.ENOENT:   # the caller was interrupted or died: nothing to answer
            raise


def _id_valid(fd: int, nid: int) -> bool:
    try:
        fcntl.ioctl(fd, kernel.IOCTL_NOTIF_ID_VALID, struct.pack("=Q", nid))
        return True
    except OSError:
        return False


def _ids(tid: int) -> tuple[int, int]:
    """(thread group id, parent pid) of a thread, from /proc; (tid, 0) if gone.
    os.open/os.read: a third of the cost of open() and a buffered read."""
    try:
        fd = os.open(f"/proc/{tid}/status", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return tid, 0
    try:
        text = os.read(fd, 1024)      # Name, Umask, State, Tgid, Ngid, Pid, PPid come first
    except OSError:
        return tid, 0
    finally:
        os.close(fd)
    tgid = ppid = 0
    for line in text.split(b"\n"):
        if line.startswith(b"Tgid:"):
            tgid = int(line[5:])
        elif line.startswith(b"PPid:"):
            ppid = int(line[5:])
            break
    return tgid or tid, ppid

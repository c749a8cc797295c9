"""The seccomp user-notification backend: launcher + one epoll supervisor.

Every sandboxed tree has its own listener fd; one thread waits on all of them
with epoll. Per notification the hot path is: RECV, read what the decision or
the record needs out of the caller's memory and /proc, check ID_VALID, decide,
SEND. Only building the Event and handing it on happen after the answer, so
the caller is held only for the decision itself.

The kernel side of it (RECV ... ID_VALID, SEND) runs in C when the
``_notif`` extension is built (``pip install`` builds it), else in the pure
Python twins below (also with ISOD_NO_C=1): both give the same Events.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import struct
import sys
import threading
import time
from collections import deque

from .. import policy
from ..policy import IDLE, Rule
from . import bpf, netguard, seccomp, syscalls
from .box import Box, EventSink
from .events import ALLOW, DENY, ENOSYS, Event
from .procfs import ids
from .remote_memory import MemReader
from .spawn import LauncherProcess
from .syscall_args import decode

try:
    from . import _notif
except ImportError:      # not built (no compiler at install time): the Python twins below
    _notif = None

_EPOLLIN, _EPOLLHUP, _EPOLLERR = select.EPOLLIN, select.EPOLLHUP, select.EPOLLERR
_CONTINUE = seccomp.SECCOMP_USER_NOTIF_FLAG_CONTINUE
_CLONE_THREAD = syscalls.CLONE_THREAD
_NAME_OF = syscalls.NAME_OF
_ABI_OF_ARCH = syscalls.ABI_OF_ARCH
_decide = policy.decide
_is_network_family = policy.is_network_family
_SYS_SOCKET = policy.SYS_SOCKET
_monotonic_ns = time.monotonic_ns
SPIN_NS = 25_000         # after an answer, poll this long for the next trap before sleeping
STALE_NS = 100_000_000   # an on_event call waits at most this long in a burst of traps (then one per trap)


def c_path_available() -> bool:
    """Whether the C fast path is built and not turned off (ISOD_NO_C=1)."""
    return _notif is not None and os.environ.get("ISOD_NO_C", "") in ("", "0")


class SeccompBackend:
    """Runs commands under the USER_NOTIF filter and answers their traps."""

    name = "seccomp"

    def __init__(self) -> None:
        self._program = bpf.program()
        self._epoll = select.epoll()
        self._boxes: dict[int, Box] = {}
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._epoll.register(self._wake_r, _EPOLLIN)
        self._caches: dict[int, object] = {}    # listener fd -> _notif.PidCache
        self.fast_path = c_path_available()    # chosen once: the C hot path or its Python twin
        if self.fast_path:
            self._receive, self._send, self._new_cache = _notif.receive, _notif.send, _notif.PidCache
        else:
            mem = MemReader()
            self._receive = lambda fd, _cache: _py_receive(fd, mem)
            self._send = _py_send
        self._later: deque = deque()           # (fd, on_event, box, event) not yet delivered
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="isod-supervisor", daemon=True)
        self._thread.start()

    # --- owner side -------------------------------------------------------
    def spawn(self, argv: list[str], *, rule: Rule = IDLE, on_event: EventSink | None = None,
              **popen_kwargs) -> Box:
        """Start argv in a new sandbox; returns once the filter is in place.

        Network (env ISOD_NETWORK, ISOD_ENFORCEMENT; docs/kernel-notes.md,
        network): the filter traps socket() of network families, and the
        tree gets the cgroup socket hooks where the kernel allows them."""
        guard, net, _why = netguard.prepare(popen_kwargs, None if rule is IDLE else rule.name)
        program = self._program if net.network else bpf.program(network=False)
        try:
            launch = LauncherProcess(argv, "notif", program, **popen_kwargs)
            box = Box(launch.popen, rule, None)
            listener = launch.receive_listener()
        except BaseException:
            if guard is not None:
                guard.close()
            raise
        netguard.attach_tree(guard, net, box, None if rule is IDLE else rule.name)
        self._supervise(box, listener, on_event)
        return box

    def filter_for(self, env: dict | None) -> bytes:
        """The program a process of this environment installs itself (a
        worker forked by the zygote), as ``spawn`` would give its launcher."""
        return self._program if netguard.NetConfig.from_env(env).network else bpf.program(network=False)

    def adopt(self, popen, listener: int, *, rule: Rule, env: dict | None = None,
              on_event: EventSink | None = None) -> Box:
        """Supervise a process that installed ``filter_for``'s program itself
        (no launcher exec to allow: ``rule`` holds from its first call)."""
        guard, net, _why = netguard.prepare({"env": env}, None if rule is IDLE else rule.name)
        box = Box(popen, rule, None)
        box.launch_rule, box.rule = None, rule
        netguard.attach_tree(guard, net, box, None if rule is IDLE else rule.name)
        self._supervise(box, listener, on_event)
        return box

    def _supervise(self, box: Box, listener: int, on_event: EventSink | None) -> None:
        if on_event is not None:
            # Box.record queues the call; the supervisor makes it when no trap waits (see _loop)
            later = self._later
            box.on_event = lambda b, ev: later.append((listener, on_event, b, ev))
        self._boxes[listener] = box
        if self.fast_path:
            self._caches[listener] = self._new_cache()
        self._epoll.register(listener, _EPOLLIN)

    def close(self) -> None:
        self._closing = True
        os.write(self._wake_w, b"x")
        self._thread.join(5)
        self._deliver_all()
        for fd in list(self._boxes):
            self._release(fd)
        self._epoll.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    # --- supervisor thread ------------------------------------------------
    def _loop(self) -> None:
        """Answers traps; in between, makes the owners' on_event calls.

        After an answer it polls for SPIN_NS before it sleeps (C path only):
        a caller that traps again at once (a loop of denied calls, a vfork
        child's exec) is then answered without the ~10 us it takes to wake
        a sleeping thread on an idle CPU.

        on_event (isod trace prints each event: ~5 us) runs only when no trap
        is waiting, so it never delays the next answer: in a burst of traps
        the calls queue up and are made when the burst ends, or one per trap
        once the oldest has waited STALE_NS. The same thread makes them, in
        order: another thread would take the GIL from this one at the worst
        moments.
        """
        poll = self._epoll.poll
        epfd = self._epoll.fileno()
        spin = _notif.wait if self.fast_path else None
        boxes, caches, later = self._boxes, self._caches, self._later
        while not self._closing:
            ready = spin(epfd, SPIN_NS) if spin is not None else poll(0)
            if not ready:
                if later:
                    self._deliver_one()
                    continue
                ready = poll()
            for fd, mask in ready:
                box = boxes.get(fd)
                if box is None:
                    continue
                try:
                    if mask & _EPOLLIN:
                        self._answer(fd, box, caches.get(fd))
                    elif mask & (_EPOLLHUP | _EPOLLERR):
                        self._release(fd, gone=True)
                except Exception as e:  # never leave a tree waiting on a dead loop
                    self._failed(fd, box, e)
            if later and later[0][3].t_ns < _monotonic_ns() - STALE_NS:
                self._deliver_one()

    def _deliver_one(self) -> None:
        fd, sink, box, ev = self._later.popleft()
        try:
            sink(box, ev)
        except Exception as e:
            if fd in self._boxes:
                self._failed(fd, box, e)

    def _deliver_all(self) -> None:
        while self._later:
            self._deliver_one()

    def _failed(self, fd: int, box: Box, e: Exception) -> None:
        sys.stderr.write(f"isod: supervisor error on pid {box.pid}: {e!r}; "
                         "closing its listener (its traps now fail with ENOSYS)\n")
        self._release(fd)

    def _release(self, fd: int, gone: bool = False) -> None:
        """Stop supervising a tree; ``gone``: every task of it has exited."""
        if gone and fd in self._boxes:
            _tree_gone(self._boxes[fd])
        if fd in self._boxes:
            self._deliver_all()    # the owner sees every event before `released`
        box = self._boxes.pop(fd, None)
        cache = self._caches.pop(fd, None)
        if cache is not None:
            cache.clear()      # its pidfds: the tree is gone
        try:
            self._epoll.unregister(fd)
        except (OSError, ValueError):
            pass
        os.close(fd)
        if box is not None:
            box.released.set()

    def _answer(self, fd: int, box: Box, cache) -> None:
        got = self._receive(fd, cache)
        if got is None:           # the caller went away first
            return
        nid, tid, tgid, ppid, nr, arch, path, argv, cwd, flags, complete, t0, net = got
        name = _NAME_OF.get((arch, nr)) or f"syscall{nr}"
        send = self._send
        if name == "clone3" and flags & _CLONE_THREAD:
            # a thread: ENOSYS so that libc falls back to clone(CLONE_THREAD),
            # which the filter allows without asking. Not recorded.
            send(fd, nid, -errno.ENOSYS, 0)
            return
        if name == "socket" and not _is_network_family(net[0]):
            # a local family (AF_ALG, AF_KEY, ...; the filter lets AF_UNIX and
            # AF_NETLINK through itself): decided on a register, not recorded
            send(fd, nid, 0, _CONTINUE)
            return
        rule = box.rule_for(tid, name)
        box.inflight += 1      # answered from here on, recorded below (see Box.settle)
        if name == "clone3":
            decision = ENOSYS       # never CONTINUE a clone3: its flags may change after the check
            send(fd, nid, -errno.ENOSYS, 0)
        elif name == "socketcall":
            # i386 multiplexer: never CONTINUE (its arguments are in memory);
            # recorded when it asked for an inet (or other network) socket
            send(fd, nid, -errno.ENOSYS, 0)
            if flags != _SYS_SOCKET or not _is_network_family(net[0]):
                box.inflight -= 1
                return
            decision = ENOSYS
        elif _decide(rule, name, net[0]):
            decision = ALLOW
            send(fd, nid, 0, _CONTINUE)
        else:
            decision = DENY
            send(fd, nid, -errno.EPERM, 0)
        t1 = _monotonic_ns()
        if net[0] and (name == "socket" or name == "socketcall"):
            ev = Event(t0, tgid, tid, ppid, name, _ABI_OF_ARCH.get(arch) or hex(arch), decision, t1 - t0,
                       argv_complete=complete, family=net[0], sock_type=net[1] & 0xF, protocol=net[2])
        else:
            ev = Event(t0, tgid, tid, ppid, name, _ABI_OF_ARCH.get(arch) or hex(arch), decision, t1 - t0,
                       path, argv, cwd, flags, complete)
        box.record(ev)
        box.inflight -= 1


def _tree_gone(box: Box) -> None:
    """Its network hooks recorded all they will: into the box, and let go of
    the kernel objects (the owner may never call release())."""
    if box.net is not None:
        try:
            box.net.close()
        except OSError:
            pass


# --- the kernel side of one notification, in pure Python ---------------------
# The same results as _notif.receive/send (the fast path, in C); used when
# the extension is missing or ISOD_NO_C=1.
def _py_receive(fd: int, mem: MemReader):
    """(id, tid, tgid, ppid, nr, arch, path, argv, cwd, flags, complete,
    t_recv_ns, (family, type, protocol)) or None if the caller went away;
    see _notif.receive."""
    buf = bytearray(seccomp.NOTIF.size)
    try:
        fcntl.ioctl(fd, seccomp.IOCTL_NOTIF_RECV, buf, True)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.EINTR):   # the caller went away first
            return None
        raise
    t0 = time.monotonic_ns()
    nid, tid, _flags, nr, arch, _ip, *args = seccomp.NOTIF.unpack(buf)
    name = _NAME_OF.get((arch, nr))
    path, argv, cwd, flags, net, cut = decode(mem, tid, name, arch, args)
    if name == "clone3" and flags & _CLONE_THREAD:   # answered ENOSYS, not recorded: nothing more to read
        return nid, tid, tid, 0, nr, arch, path, argv, cwd, flags, False, t0, net
    # while the caller is held: once answered it may exit at once (a denied
    # caller, or a short program it execs) and /proc/TID with it
    tgid, ppid = ids(tid)
    valid = _id_valid(fd, nid)
    return nid, tid, tgid, ppid, nr, arch, path, argv, cwd, flags, valid and not cut, t0, net


def _py_send(fd: int, nid: int, error: int, flags: int) -> bool:
    try:
        fcntl.ioctl(fd, seccomp.IOCTL_NOTIF_SEND, seccomp.NOTIF_RESP.pack(nid, 0, error, flags))
    except OSError as e:
        if e.errno != errno.ENOENT:   # the caller was interrupted or died: nothing to answer
            raise
        return False
    return True


def _id_valid(fd: int, nid: int) -> bool:
    try:
        fcntl.ioctl(fd, seccomp.IOCTL_NOTIF_ID_VALID, struct.pack("=Q", nid))
        return True
    except OSError:
        return False


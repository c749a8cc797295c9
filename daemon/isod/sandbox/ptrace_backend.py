"""The ptrace fallback backend: one tracer thread, SECCOMP_RET_TRACE stops.

For where seccomp user notification is missing (pre-5.0 kernels) or taken (isod
nested in another user-notif sandbox: EBUSY). The launcher is seized before it
installs the trap set with SECCOMP_RET_TRACE (with no tracer those calls would
fail with ENOSYS), every child is followed, and each trapped call stops its
caller until the tracer decides; deny = skip the call (orig_rax -1) returning
-EPERM. Mode "events" needs no seccomp at all: it decides on the fork/clone/exec
ptrace events, after the fact (a denied child is killed before it runs, a denied
exec kills the process that made it; ptrace, io_uring_setup and a
clone(CLONE_UNTRACED) child go unseen).

ptrace is per thread, so every request comes from one tracer thread, which waits
with waitpid(-1, __WALL|__WNOTHREAD): its own tracees only, never the daemon's
other children. PTRACE_O_EXITKILL: if that thread or the daemon dies, the kernel
SIGKILLs every tracee, so the sandbox fails closed (without it a call held in a
seccomp stop would run: the kernel re-checks it and RET_TRACE then allows).
A traced ``sleep`` child (the sentinel) keeps that waitpid blocking when no tree
runs; a SIGCONT to it wakes the thread for a request (attach a launcher, close).
Tracees cannot run a debugger (strace, gdb): their children are traced already.

Cost here: the 500 fork+exec shell loop runs 1.6x native (seccomp backend 1.3x),
a denied execve round trip is ~65 us p50 (seccomp ~25 us).
"""

from __future__ import annotations

import collections
import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from .. import policy
from ..policy import IDLE, Rule
from . import netguard, procfs, ptrace_popen
from . import ptrace_calls as pt
from .box import Box, EventSink, SandboxError
from .events import ALLOW, DENY, ENOSYS, Event
from .notif_probe import probe_user_notif
from .remote_memory import MemReader
from .spawn import SETUP_TIMEOUT, LauncherProcess
from .syscall_args import clone3_flags, decode
from .syscalls import ABI_OF_ARCH, CLONE_THREAD, CLONE_UNTRACED, NAME_OF

_CHILD_EVENTS = (pt.EVENT_FORK, pt.EVENT_VFORK, pt.EVENT_CLONE)
_EPERM, _ENOSYS, _EBUSY = errno.EPERM, errno.ENOSYS, errno.EBUSY
STALE_NS = 20_000_000    # an on_event call waits at most this long in a burst of stops
MODES = {
    "seccomp": "ptrace on SECCOMP_RET_TRACE stops",
    "events": "ptrace on fork/clone/exec events (after the fact; no ptrace/io_uring_setup checks)",
}


class _Tree:
    """The tasks of one box the tracer knows about."""

    __slots__ = ("box", "tids")

    def __init__(self, box: Box) -> None:
        self.box = box
        self.tids = {box.pid}


class PtraceBackend:
    """Runs commands under ptrace; same interface as SeccompBackend.

    ``seccomp``: True for SECCOMP_RET_TRACE stops, False for plain events, None
    to choose (env ISOD_PTRACE_MODE=seccomp|events, else what the kernel allows).
    """

    name = "ptrace"

    def __init__(self, *, seccomp: bool | None = None, reason: str = "") -> None:
        if seccomp is None:
            seccomp, why = choose_mode()
            reason = reason or why
        self.mode = "seccomp" if seccomp else "events"
        self.reason = reason or MODES[self.mode]
        self._program = pt.filter_program() if seccomp else b""
        self._options = pt.FOLLOW | pt.O_TRACESECCOMP if seccomp else pt.FOLLOW
        self._trees: dict[int, _Tree] = {}        # tid -> its tree
        self._orphans: dict[int, int] = {}        # new tid -> stop status, until its parent's event names it
        # tids adopted from /proc before their parent's fork event: waitpid
        # reports the newest tracees first, so a child can even exit before
        # that event, which must then not bring it back
        self._unannounced: set[int] = set()
        # (tgid, ppid) per tid for the records: /proc/TID/status costs ~25 us a
        # read; dropped when the tid goes or execs, or its parent goes (reparented)
        self._tgid_ppid: dict[int, tuple[int, int]] = {}
        self._requests: collections.deque = collections.deque()
        self._later: collections.deque = collections.deque()   # (tree, on_event, box, event) not yet delivered
        self._mem = MemReader()
        self._info = pt.SyscallInfo(self._mem)
        self._sentinel: subprocess.Popen | None = None
        self._closing = False
        self._killing = False
        self._error: BaseException | None = None
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), name="isod-tracer", daemon=True)
        self._thread.start()
        started.wait()
        if self._error is not None:
            why = str(self._error)
            if _traced():
                why = ("this process is traced itself (by isod's ptrace backend or a debugger), "
                       "so the processes it starts are traced already and cannot be traced again")
            raise SandboxError(f"cannot use ptrace here: {why}") from self._error

    # --- owner side -------------------------------------------------------
    def spawn(self, argv: list[str], *, rule: Rule = IDLE, on_event: EventSink | None = None,
              **popen_kwargs) -> Box:
        """Start argv traced; returns once it is attached and its filter is in place."""
        guard, net, _why = netguard.prepare(popen_kwargs, None if rule is IDLE else rule.name)
        program = self._program if net.network or not self._program else pt.filter_program(network=False)
        try:
            launch = LauncherProcess(argv, "trace", program, **popen_kwargs)
        except BaseException:
            if guard is not None:
                guard.close()
            raise
        box = None
        try:
            msg = _read(launch)
            if msg != b"ready":
                launch.fail(msg)
            box = Box(launch.popen, rule, None)
            ptrace_popen.adopt(launch.popen)
            try:
                self._call(self._attach, box, on_event)
            except BaseException as e:
                ptrace_popen.disown(launch.popen)
                launch.popen.kill()
                launch.popen.wait()
                raise SandboxError(f"cannot trace the launcher: {e}") from e
            launch.sock.sendall(b"go")
            msg = _read(launch)
            if msg.startswith(b"err "):
                launch.popen.wait()
                raise SandboxError(f"cannot install the SECCOMP_RET_TRACE filter: {msg[4:].decode(errors='replace')} "
                                   "(ISOD_PTRACE_MODE=events traces fork/exec events without seccomp)")
            if msg != b"ok":
                launch.fail(msg)
            netguard.attach_tree(guard, net, box, None if rule is IDLE else rule.name)
            guard = None
            return box
        finally:
            launch.sock.close()
            if guard is not None:
                guard.close()

    def close(self) -> None:
        """Kill every traced tree, reap it, stop the tracer thread."""
        self._closing = True
        self._wake()
        self._thread.join(10)

    def _call(self, fn, *args):
        if threading.current_thread() is self._thread:
            return fn(*args)
        if not self._thread.is_alive() or self._closing:
            raise SandboxError("the ptrace backend is closed")
        fut: Future = Future()
        self._requests.append((fn, args, fut))
        deadline = time.monotonic() + SETUP_TIMEOUT
        while True:
            self._wake()
            try:
                return fut.result(0.5)
            except FutureTimeout:
                if time.monotonic() > deadline or not self._thread.is_alive():
                    raise SandboxError("the ptrace tracer thread does not answer") from None

    def _wake(self) -> None:
        s = self._sentinel
        if s is not None:
            try:
                os.kill(s.pid, signal.SIGCONT)   # a signal-delivery stop: waitpid returns
            except OSError:
                pass

    # --- tracer thread: setup and loop ------------------------------------
    def _run(self, started: threading.Event) -> None:
        try:
            self._start_sentinel()
        except BaseException as e:  # noqa: BLE001 - reported to the constructor
            self._error = e
            started.set()
            return
        started.set()
        try:
            self._loop()
        except BaseException as e:   # the thread ends: EXITKILL kills every tracee (fails closed)
            sys.stderr.write(f"isod: ptrace tracer failed: {e!r}; every traced process is killed\n")
            raise
        finally:
            self._finish()

    def _start_sentinel(self) -> None:
        sleep = shutil.which("sleep")
        argv = [sleep, "1000000000"] if sleep else [sys.executable, "-S", "-c", "import time\nwhile 1: time.sleep(1e6)"]
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            pt.seize(p.pid, pt.O_EXITKILL)
        except BaseException:
            p.kill()
            p.wait()
            raise
        self._sentinel = p

    def _loop(self) -> None:
        """Answers stops; in between, makes the owners' on_event calls.

        As in the seccomp backend, on_event runs only when no stop is waiting
        (or once the oldest call has waited STALE_NS), so that printing an
        event never delays the next answer.
        """
        waitpid, flags, now, later = os.waitpid, pt.WALL | pt.WNOTHREAD, time.monotonic_ns, self._later
        while True:
            if self._requests:
                self._serve()
            if self._closing and not self._killing:
                self._kill_all()
            try:
                tid, status = waitpid(-1, flags | os.WNOHANG if later else flags)
            except ChildProcessError:
                self._deliver_all()
                if self._closing:
                    return
                self._start_sentinel()
                continue
            if tid == 0:
                self._deliver_one()
                continue
            t0 = now()
            try:
                self._dispatch(tid, status, t0)
            except Exception as e:  # noqa: BLE001 - never leave a tree stopped on a dead loop
                self._broken(self._trees.get(tid), tid, e)
            if later and later[0][3].t_ns < t0 - STALE_NS:
                self._deliver_one()

    def _deliver_one(self) -> None:
        tree, sink, box, ev = self._later.popleft()
        try:
            sink(box, ev)
        except Exception as e:  # noqa: BLE001 - the owner's callback: fail its tree closed
            self._broken(tree, box.pid, e)

    def _deliver_all(self) -> None:
        while self._later:
            self._deliver_one()

    def _serve(self) -> None:
        while self._requests:
            fn, args, fut = self._requests.popleft()
            try:
                fut.set_result(fn(*args))
            except BaseException as e:  # noqa: BLE001 - raised in the owner's thread
                fut.set_exception(e)

    def _attach(self, box: Box, on_event: EventSink | None) -> None:
        pt.seize(box.pid, self._options)
        tree = self._trees[box.pid] = _Tree(box)
        if on_event is not None:
            # Box.record queues the call; the loop makes it when no stop waits
            later = self._later
            box.on_event = lambda b, ev: later.append((tree, on_event, b, ev))

    def _kill_all(self) -> None:
        self._killing = True
        for tid in [*self._trees, *self._orphans]:
            _kill(tid)
        if self._sentinel is not None:
            _kill(self._sentinel.pid)

    def _finish(self) -> None:
        self._closing = True
        self._deliver_all()
        while self._requests:
            _fn, _args, fut = self._requests.popleft()
            fut.set_exception(SandboxError("the ptrace backend is closed"))
        for tree in {id(t): t for t in self._trees.values()}.values():
            ptrace_popen.disown(tree.box.popen)
            tree.box.released.set()
        self._trees.clear()

    def _broken(self, tree: _Tree | None, tid: int, e: Exception) -> None:
        sys.stderr.write(f"isod: tracer error on pid {tid}: {e!r}; killing its tree (fail closed)\n")
        for t in (list(tree.tids) if tree is not None else (tid,)):
            _kill(t)

    # --- tracer thread: stops --------------------------------------------
    def _dispatch(self, tid: int, status: int, t0: int) -> None:
        sentinel = self._sentinel
        if sentinel is not None and tid == sentinel.pid:
            self._on_sentinel(status)
            return
        if not os.WIFSTOPPED(status):
            self._on_gone(tid, status)
            return
        event = status >> 16
        tree = self._trees.get(tid)
        if tree is None:
            tree = self._claim(tid, status, event)
            if tree is None:
                return
        if self._killing:
            _kill(tid)        # SIGKILL ends the stop; nothing more may run
        elif event == pt.EVENT_SECCOMP:
            self._on_seccomp(tid, tree, t0)
        elif event == pt.EVENT_STOP:
            if os.WSTOPSIG(status) in pt.STOP_SIGNALS:
                self._listen(tid)     # a group-stop: stay stopped until SIGCONT, as untraced
            else:
                self._cont(tid, 0)    # a new child's first stop, or the end of a group-stop
        elif event == 0:
            self._cont(tid, os.WSTOPSIG(status))   # signal-delivery stop: deliver it
        elif event in _CHILD_EVENTS:
            self._on_child(tid, tree, t0)
        elif event == pt.EVENT_EXEC:
            self._on_exec(tid, tree, t0)
        else:
            self._cont(tid, 0)

    def _on_sentinel(self, status: int) -> None:
        sentinel = self._sentinel
        if os.WIFSTOPPED(status):
            self._cont(sentinel.pid, 0)   # a wake-up: the loop serves the requests
            return
        sentinel.returncode = os.waitstatus_to_exitcode(status)
        self._sentinel = None
        if not self._closing:
            self._start_sentinel()

    def _claim(self, tid: int, status: int, event: int) -> _Tree | None:
        """The tree of a tid seen for the first time, or None (kept stopped)."""
        if self._killing:
            _kill(tid)
            return None
        tree = None
        if event == pt.EVENT_EXEC:   # a non-leader thread exec'd: it took the leader's tid
            try:
                tree = self._trees.get(pt.eventmsg(tid))
            except pt.PtraceError:
                pass
        if tree is None:
            tgid, ppid = self._tgid_ppid_of(tid)
            tree = self._trees.get(tgid) if tgid != tid else None
            tree = tree or self._trees.get(ppid)
        if tree is None:
            # a child whose first stop beat its parent's fork event: the event names it
            self._orphans[tid] = status
            return None
        self._trees[tid] = tree
        tree.tids.add(tid)
        if event != pt.EVENT_EXEC:
            self._unannounced.add(tid)
        return tree

    def _add_child(self, tree: _Tree, child: int, t0: int) -> None:
        if child in self._unannounced:
            self._unannounced.discard(child)
            return
        if child in self._trees:
            return
        self._trees[child] = tree
        tree.tids.add(child)
        status = self._orphans.pop(child, None)
        if status is not None:
            self._dispatch(child, status, t0)

    def _on_gone(self, tid: int, status: int) -> None:
        self._orphans.pop(tid, None)
        ids = self._tgid_ppid
        ids.pop(tid, None)
        for t in [t for t, (_g, p) in ids.items() if p == tid]:
            del ids[t]
        tree = self._trees.pop(tid, None)
        if tree is None:
            return
        tree.tids.discard(tid)
        if tid == tree.box.pid:
            ptrace_popen.deliver(tree.box.popen, status)
        if not tree.tids:
            for orphan in list(self._orphans):
                # an unclaimed child whose parent is gone (killed inside fork, before
                # its fork event): most likely this tree's, and it must not stay stopped
                _tgid, ppid = procfs.ids(orphan)
                if ppid not in self._trees and ppid != os.getpid():
                    self._add_child(tree, orphan, time.monotonic_ns())
            if not tree.tids:
                if tree.box.net is not None:
                    try:
                        tree.box.net.close()    # what its network hooks recorded, into the box
                    except OSError:
                        pass
                self._deliver_all()    # the owner sees every event before `released`
                tree.box.released.set()

    def _cont(self, tid: int, sig: int) -> None:
        try:
            pt.cont(tid, sig)
        except pt.PtraceError as e:
            if not pt.gone(e):
                raise

    def _listen(self, tid: int) -> None:
        try:
            pt.listen(tid)
        except pt.PtraceError as e:
            if not pt.gone(e):
                self._cont(tid, 0)

    # --- tracer thread: decisions ----------------------------------------
    def _on_seccomp(self, tid: int, tree: _Tree, t0: int) -> None:
        try:
            arch, nr, a, data = self._info.read(tid)
        except pt.PtraceError as e:
            if pt.gone(e):
                return
            raise
        name = NAME_OF.get((arch, nr))
        if name is None:
            if (arch, nr) in pt.SECCOMP_SYSCALLS:   # a user-notif filter would outrank ours
                self._fail(tid, _EBUSY)
            elif data != pt.TRACE_DATA:             # a RET_TRACE of the tracee's own filter
                self._resume(tid)
            else:                                   # ours, yet unknown: never let it run
                sys.stderr.write(f"isod: unknown trapped syscall {nr} (arch {arch:#x}) from {tid}: ENOSYS\n")
                self._fail(tid, _ENOSYS)
            return
        path, argv, cwd, flags, net, cut = decode(self._mem, tid, name, arch, a)
        if name == "socket":
            if not policy.is_network_family(net[0]):
                self._resume(tid)      # a local family: decided on a register, not recorded
                return
        elif name == "socketcall":
            if flags != policy.SYS_SOCKET or not policy.is_network_family(net[0]):
                self._fail(tid, _ENOSYS)   # never let it run (its arguments are in memory); not recorded
                return
        elif name == "clone3":
            if flags & CLONE_THREAD:
                self._fail(tid, _ENOSYS)   # libc falls back to clone(CLONE_THREAD), not trapped
                return
        elif name == "clone":
            if flags & CLONE_UNTRACED:
                # the child would escape the tracer (and get ENOSYS for every trap): follow it
                try:
                    pt.set_arg0(tid, arch, flags & ~CLONE_UNTRACED)
                except pt.PtraceError as e:
                    if pt.gone(e):
                        return
                    raise
                if flags & CLONE_THREAD:    # a thread (trapped only for its flag): not recorded
                    self._resume(tid)
                    return
        # while the caller is held: once answered it may exit at once
        tgid, ppid = self._tgid_ppid_of(tid)
        box = tree.box
        rule = box.rule_for(tid, name)
        box.inflight += 1      # answered from here on, recorded below (see Box.settle)
        try:
            if name in ("clone3", "socketcall"):
                decision = ENOSYS      # never let it run: its flags / arguments may change after the check
                valid = self._fail(tid, _ENOSYS)
            elif policy.decide(rule, name, net[0]):
                decision = ALLOW
                valid = self._resume(tid)
            else:
                decision = DENY
                valid = self._fail(tid, _EPERM)
            abi = ABI_OF_ARCH.get(arch) or hex(arch)
            if net[0]:
                ev = Event(t0, tgid, tid, ppid, name, abi, decision, time.monotonic_ns() - t0,
                           argv_complete=valid, family=net[0], sock_type=net[1] & 0xF, protocol=net[2])
            else:
                ev = Event(t0, tgid, tid, ppid, name, abi, decision, time.monotonic_ns() - t0, path, argv, cwd,
                           flags, valid and not cut)
            box.record(ev)
        finally:
            box.inflight -= 1

    def _on_child(self, tid: int, tree: _Tree, t0: int) -> None:
        try:
            child = pt.eventmsg(tid)
        except pt.PtraceError as e:
            if pt.gone(e):
                return
            raise
        if self.mode == "events":
            try:
                self._decide_child(tid, tree, child, t0)
            except pt.PtraceError as e:
                if not pt.gone(e):
                    raise
                _kill(child)    # the parent died before the decision: fail closed
        self._add_child(tree, child, t0)
        self._cont(tid, 0)

    def _on_exec(self, tid: int, tree: _Tree, t0: int) -> None:
        try:
            former = pt.eventmsg(tid)
        except pt.PtraceError as e:
            if pt.gone(e):
                return
            raise
        if former != tid:   # a non-leader thread exec'd and took the leader's tid
            self._tgid_ppid.pop(former, None)
            self._trees.pop(former, None)
            tree.tids.discard(former)
        if self.mode == "events" and not self._decide_exec(tid, tree, t0):
            return
        self._cont(tid, 0)

    def _decide_child(self, tid: int, tree: _Tree, child: int, t0: int) -> None:
        """Events mode, at a fork/vfork/clone event: the child exists, has not run."""
        arch, nr, arg0 = self._info.current(tid)
        name = NAME_OF.get((arch, nr), f"syscall{nr}")
        flags = 0
        if name == "clone":
            flags = arg0
        elif name == "clone3":
            flags = clone3_flags(self._mem, tid, arg0)
        if flags & CLONE_THREAD:
            return
        ids = self._tgid_ppid_of(tid)
        if policy.decide(tree.box.rule_for(tid, name), name):
            decision = ALLOW
        else:
            decision = DENY
            _kill(child)
        self._record(tree.box, tid, t0, name, arch, decision, b"", [], flags, ids)

    def _decide_exec(self, tid: int, tree: _Tree, t0: int) -> bool:
        """Events mode, after an exec succeeded; False if the process was killed."""
        arch, nr, _arg0 = self._info.current(tid)
        name = NAME_OF.get((arch, nr), "execve")
        try:
            path = os.readlink(f"/proc/{tid}/exe").encode()
            cwd = os.readlink(f"/proc/{tid}/cwd")
            with open(f"/proc/{tid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")[:-1]
        except OSError:
            path, cwd, argv = b"", "", []
        ids = self._tgid_ppid_of(tid)
        allowed = policy.decide(tree.box.rule_for(tid, name), name)
        if not allowed:
            _kill(tid)
        self._record(tree.box, tid, t0, name, arch, ALLOW if allowed else DENY, path, argv, 0, ids, cwd)
        return allowed

    def _resume(self, tid: int) -> bool:
        try:
            pt.cont(tid, 0)
            return True
        except pt.PtraceError as e:
            if pt.gone(e):
                return False
            raise

    def _fail(self, tid: int, err: int) -> bool:
        try:
            pt.fail_syscall(tid, err)
            return True
        except pt.PtraceError as e:
            if pt.gone(e):
                return False
            raise

    def _record(self, box: Box, tid: int, t0: int, name: str, arch: int, decision: str,
                path: bytes, argv: list[bytes], flags: int, ids: tuple[int, int], cwd: str = "") -> None:
        """Events mode: the call already happened; ids and cwd were read before acting."""
        box.record(Event(t0, ids[0], tid, ids[1], name, ABI_OF_ARCH.get(arch) or hex(arch), decision,
                         time.monotonic_ns() - t0, os.fsdecode(path), [os.fsdecode(x) for x in argv], cwd,
                         flags, True))

    def _tgid_ppid_of(self, tid: int) -> tuple[int, int]:
        ids = self._tgid_ppid.get(tid)
        if ids is None:
            ids = procfs.ids(tid)
            if ids[1]:
                self._tgid_ppid[tid] = ids
        return ids


def _read(launch: LauncherProcess) -> bytes:
    try:
        return launch.sock.recv(256)
    except TimeoutError:
        launch.popen.kill()
        raise SandboxError(f"the launcher did not report within {SETUP_TIMEOUT:.0f} s") from None


def _kill(tid: int) -> None:
    """SIGKILL the process of tid (kill(2) wants a thread group id)."""
    try:
        os.kill(tid, signal.SIGKILL)
    except ProcessLookupError:
        tgid, _ppid = procfs.ids(tid)
        if tgid != tid:
            try:
                os.kill(tgid, signal.SIGKILL)
            except OSError:
                pass
    except OSError:
        pass


def _traced() -> bool:
    try:
        with open("/proc/self/status") as f:
            return any(line.startswith("TracerPid:") and line.split()[1] != "0" for line in f)
    except OSError:
        return False


def choose_mode() -> tuple[bool, str]:
    """(use SECCOMP_RET_TRACE?, why). An enclosing user-notif filter outranks
    RET_TRACE (the enclosing supervisor would answer our traps), so under one
    only the plain events are trustworthy."""
    forced = os.environ.get("ISOD_PTRACE_MODE", "")
    if forced in MODES:
        return forced == "seccomp", f"{MODES[forced]} (ISOD_PTRACE_MODE={forced})"
    try:
        with open("/proc/self/status") as f:
            status = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        status = {}
    if "Seccomp" not in status:
        return False, f"{MODES['events']}: this kernel has no seccomp"
    if int(status.get("Seccomp_filters", "0").strip() or 0) == 0:
        return True, MODES["seccomp"]
    ok, code, _text = probe_user_notif()
    if not ok and code == _EBUSY:
        return False, (f"{MODES['events']}: nested in a user-notif sandbox, whose filter would "
                       "answer the SECCOMP_RET_TRACE traps first")
    return True, MODES["seccomp"]

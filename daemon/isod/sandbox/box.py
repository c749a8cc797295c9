"""A sandboxed process tree as its owner sees it, whichever backend runs it."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable

from ..policy import IDLE, Rule
from .events import Event

EventSink = Callable[["Box", Event], None]


class SandboxError(RuntimeError):
    """The sandbox could not be set up; the message says why and what to do."""


class Box:
    """One launched command and everything it spawns.

    ``rule`` is read by the supervisor for every trapped call: the owner swaps
    it (a plain attribute store) to change what the tree may do from then on.
    Events accumulate until ``take_events`` drains them.
    """

    def __init__(self, popen: subprocess.Popen, rule: Rule = IDLE, on_event: EventSink | None = None):
        self.popen = popen
        self.pid = popen.pid
        # The launcher's own exec of the command is always allowed; ``rule``
        # takes effect from the first call after it.
        self.rule = IDLE
        self.launch_rule: Rule | None = rule
        self.on_event = on_event
        # Trapped calls answered but not yet recorded. A backend raises it
        # right before it answers and lowers it after record(); the owner
        # calls settle() before cutting events at a boundary the tree
        # announced after such a call returned, so no event lands late.
        self.inflight = 0
        self._events: list[Event] = []
        self._lock = threading.Lock()
        self.released = threading.Event()   # the supervisor let go of the tree (all tasks gone)
        # Backends that record after the fact (the native one) deliver what the
        # kernel has queued so far when asked, and stop when told to let go.
        self.flush: Callable[[], None] | None = None
        self.on_release: Callable[[], None] | None = None
        self.unfollow: Callable[[], None] | None = None   # stop recording, nothing else (native backend)
        self.net = None    # netguard.TreeNet: the cgroup socket hooks on this tree, where available
        self._exited: set[int] = set()      # pids seen exiting (native backend), until taken

    def rule_for(self, tid: int, name: str) -> Rule:
        """The rule a trapped call of this tree is judged by; the backends
        call it right before deciding. It reads one attribute: nothing of the
        owner runs while a trapped caller waits."""
        if self.launch_rule is not None and tid == self.pid and name == "execve":
            # the launcher execs the command: allowed; the owner's rule holds from here
            self.rule, self.launch_rule = self.launch_rule, None
            return IDLE
        return self.rule

    def record(self, ev: Event) -> None:
        with self._lock:
            self._events.append(ev)
        if self.on_event is not None:
            self.on_event(self, ev)

    def settle(self, timeout: float = 1.0) -> None:
        """Wait until every answered call has been recorded (microseconds),
        and every process event already queued by the kernel delivered."""
        if self.flush is not None:
            self.flush()
        deadline = time.monotonic() + timeout
        while self.inflight and time.monotonic() < deadline:
            time.sleep(0.00005)

    def take_events(self, until_ns: int | None = None) -> list[Event]:
        """The events recorded so far (up to ``until_ns`` if given, in time
        order); the later ones stay for the next take."""
        with self._lock:
            if until_ns is None:
                out, self._events = self._events, []
            else:
                out = [e for e in self._events if e.t_ns <= until_ns]
                if len(out) != len(self._events):
                    self._events = [e for e in self._events if e.t_ns > until_ns]
                else:
                    self._events = []
        out.sort(key=lambda e: e.t_ns)
        return out

    def exited(self, pid: int) -> None:
        with self._lock:
            self._exited.add(pid)

    def take_exited(self, pids: set[int]) -> set[int]:
        """Which of pids were seen exiting (forgotten once asked for)."""
        with self._lock:
            out = self._exited & pids
            self._exited -= out
        return out

    def release(self) -> None:
        """The owner is done with the tree: stop recording it."""
        if self.on_release is not None:
            self.on_release()

    def wait(self, timeout: float | None = None) -> int:
        return self.popen.wait(timeout)

    def wait_after_close(self, kill: Callable[[], None], grace: float = 10.0) -> int:
        """Its status once its channel closed: a process that lives on past
        ``grace`` (it exec'd over itself) is killed with ``kill``."""
        try:
            return self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            kill()
            return self.popen.wait()

    def kill(self) -> None:
        try:
            self.popen.kill()
        except ProcessLookupError:
            pass

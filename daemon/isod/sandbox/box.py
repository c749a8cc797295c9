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
        # Called by the backend right before it decides each trapped call of
        # this tree, from the backend's thread. The owner uses it to apply what
        # the tree announced on its own channel before making the call (the
        # daemon's worker says "test X starts" then may spawn at once): without
        # it the decision could use a stale rule.
        self.before_decision: Callable[[], None] | None = None
        # Trapped calls answered but not yet recorded. A backend raises it
        # right before it answers and lowers it after record(); the owner
        # calls settle() before cutting events at a boundary the tree
        # announced after such a call returned, so no event lands late.
        self.inflight = 0
        self._events: list[Event] = []
        self._lock = threading.Lock()
        self.released = threading.Event()   # the supervisor let go of the tree (all tasks gone)

    def rule_for(self, tid: int, name: str) -> Rule:
        """The rule a trapped call of this tree is judged by; the backends
        call it right before deciding (it runs ``before_decision`` first)."""
        if self.before_decision is not None:
            self.before_decision()
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
        """Wait until every answered call has been recorded (microseconds)."""
        deadline = time.monotonic() + timeout
        while self.inflight and time.monotonic() < deadline:
            time.sleep(0.00005)

    def take_events(self) -> list[Event]:
        with self._lock:
            out, self._events = self._events, []
        return out

    def wait(self, timeout: float | None = None) -> int:
        return self.popen.wait(timeout)

    def kill(self) -> None:
        try:
            self.popen.kill()
        except ProcessLookupError:
            pass

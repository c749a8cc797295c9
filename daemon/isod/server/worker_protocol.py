"""The order of a worker's messages, as a state machine with no I/O.

A real worker runs the items it was sent in order, one at a time:
``started`` (before setup), the setup report, then ``finished`` with the call
and teardown reports. Anything else was written on the channel by test code
(docs/threat-model.md N2) and is a ``Violation``: the handle kills the worker.
"""

from __future__ import annotations

import time
from collections import deque

from ..v1 import isod_pb2 as pb
from .test_record import Running


class Violation(Exception):
    """A message no real worker sends; the text names it."""


class WorkerProtocol:
    def __init__(self, enforcing: bool = True) -> None:
        # sent, not finished (the running one first). Appended by the session
        # without the handle's lock (held while results go out to the
        # session: taking it here would invert the order of the two locks).
        self.assigned: deque[pb.TestItem] = deque()
        self.running: Running | None = None
        self.last_test = ""
        self.exiting = False        # a test ended its pytest session (pytest.exit, KeyboardInterrupt)
        self.enforcing = enforcing  # warn/off workers may skip the teardown check

    def started(self, nodeid: str, t_ns: int) -> Running:
        if self.running is not None or self.exiting or not self.assigned or self.assigned[0].nodeid != nodeid:
            raise Violation(f"`started {nodeid}` out of order")
        t0_ns = t_ns or time.monotonic_ns()
        self.running = Running(item=self.assigned[0], t0=t0_ns / 1e9, t0_ns=t0_ns)
        return self.running

    def reported(self, report: pb.PhaseReport) -> Running | None:
        """The setup report (sent at once: a test killed later failed in call)."""
        run = self.running
        if run is not None:
            run.reports.append(report)
            run.phase = {"setup": "call", "call": "teardown"}.get(report.when, "teardown")
        return run

    def finished(self, msg: pb.TestFinished) -> tuple[Running, list[pb.PhaseReport]]:
        """The test and its late reports in time order; it is over."""
        run = self.running
        if run is None or run.item.nodeid != msg.nodeid:
            raise Violation(f"`finished {msg.nodeid}` for a test not running")
        ended = msg.HasField("exit")     # pytest.exit / KeyboardInterrupt: no teardown report
        late = sorted(msg.reports, key=lambda r: r.t_ns)
        if self.enforcing and not ended and (not late or late[-1].when != "teardown"):
            # pytest always makes a teardown report before the worker says finished
            raise Violation(f"`finished {run.item.nodeid}` without its teardown report")
        run.reports.extend(late)
        self.end(run)
        self.last_test = run.item.nodeid
        if ended:
            self.exiting = True      # its pytest ends now: nothing more starts on it
        return run, late

    def end(self, run: Running) -> None:
        """The running test is over (finished, timed out, its worker died)."""
        self.running = None
        item = run.item
        if self.assigned and self.assigned[0] is item:
            self.assigned.popleft()
        else:
            self.assigned = deque(i for i in self.assigned if i is not item)

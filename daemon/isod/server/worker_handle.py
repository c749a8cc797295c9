"""The daemon's handle on one sandboxed pytest worker of one class.

It starts the worker through its class's backend, reads the worker's channel
from its own thread, turns the small rule on once a small worker has
collected (the rule never changes after that: nothing of the daemon runs
while a trapped caller waits), cuts the recorded events per test and phase by
the times the worker reports, enforces the time limit, and turns a dead or
replaced worker into a failed result. It knows nothing of gRPC: results go to
the session through ``on_result`` / ``on_exit``.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError

from .. import channel, phase_word, policy
from ..phase_word import PhaseWord
from ..sandbox import Box
from ..v1 import isod_pb2 as pb
from .convert import SIZE_FROM_PB, event_to_pb
from .limits import LimitsConfig, TreeLimits

WORKER_PLUGIN = "isod.worker.plugin"
# A test's record stays far below gRPC's message limit: argv is dropped from
# events past MAX_EVENT_BYTES, events past MAX_EVENTS are only counted.
MAX_EVENTS = 10_000
MAX_EVENT_BYTES = 8 << 20
READ_BATCH_DELAY = 0.0005
# seconds a test's setup or teardown may take at least (a session fixture that
# starts a database); the size's limit times the call only
FIXTURE_LIMIT_S = 60.0


@dataclass
class Running:
    """The test a worker is in, and what it has produced so far."""

    item: pb.TestItem
    t0: float
    reports: list[pb.PhaseReport] = field(default_factory=list)
    events: list[pb.SpawnEvent] = field(default_factory=list)
    phase: str = "setup"
    t0_ns: int = 0
    dropped: int = 0          # events past MAX_EVENTS
    event_bytes: int = 0


class WorkerHandle:
    def __init__(self, name: str, cls: str, backend, open_msg: pb.SessionOpen, *,
                 on_collected: Callable[[WorkerHandle, pb.Collected], None],
                 on_result: Callable[[WorkerHandle, pb.TestResult], None],
                 on_output: Callable[[WorkerHandle, bytes, bool], None],
                 on_exit: Callable[[WorkerHandle], None], limits: LimitsConfig | None = None,
                 on_outside: Callable[[WorkerHandle, pb.OutsideTests], None] | None = None,
                 on_node_down: Callable[[WorkerHandle, pb.NodeDown], None] | None = None,
                 enforcing: bool = True, worker_count: int = 1, testrun_uid: str = "") -> None:
        self.name = name
        self.cls = cls
        self.on_node_down = on_node_down
        self.on_forgery: Callable[[WorkerHandle, str], None] | None = None
        self.deferred: tuple[pb.TestResult, int] | None = None   # a result waiting for the batch's end
        self._batching = False
        self.node_down_sent = False
        self.ready = False          # collected as the client did; takes tests until finished
        self.retiring = False       # finished early by the scheduler (started on a wrong guess)
        self.held: pb.TestItem | None = None   # sent with hold=True, not released yet
        self.on_collected, self.on_result, self.on_output, self.on_exit = on_collected, on_result, on_output, on_exit
        self.on_outside = on_outside
        # trapped calls while no test ran (allowed and recorded, design §1), sent when the worker ends
        self.outside: list[pb.SpawnEvent] = []     # at most MAX_EVENTS
        self.last_test = ""
        self.on_log: Callable[[str], None] = lambda msg: None
        # sent, not finished (the running one first). Appended by the session
        # without this handle's lock (which is held while results go out to the
        # session: taking it here would invert the order of the two locks).
        self.assigned: deque[pb.TestItem] = deque()
        self.finish_sent = False
        self.stop_sent = False
        self.running: Running | None = None
        self.exited = False
        # warn/off: record everything, deny nothing (the verdict is the client's)
        self.enforcing = enforcing
        self.collected = False      # it sent its collection
        self.timed_out = False      # the daemon killed it for a time limit
        self.crashed = False        # it died mid-test or before being told to finish
        self.abort_reason: str | None = None   # why the daemon killed it (a forged or bad message)
        self.exiting = False        # a test ended its pytest session (pytest.exit, KeyboardInterrupt)
        self.exit_status: int | None = None
        self._lock = threading.RLock()
        daemon_end, worker_end = channel.pair()
        self.chan = channel.Channel(daemon_end)
        self.phase = PhaseWord.create()      # which phase the running test is in (its deadlines)
        env = dict(open_msg.env)
        env["ISOD_WORKER_FD"] = str(worker_end.fileno())
        env[phase_word.ENV_FD] = str(self.phase.fd)
        # pytest-xdist's conventions: per-worker ports, databases, coverage files
        env["ISOD_WORKER_ID"] = env["PYTEST_XDIST_WORKER"] = name
        env["ISOD_WORKER_COUNT"] = env["PYTEST_XDIST_WORKER_COUNT"] = str(worker_count)
        env["ISOD_TESTRUN_UID"] = env["PYTEST_XDIST_TESTRUNUID"] = testrun_uid
        env["ISOD_WORKER_CLASS"] = cls
        env["PYTHONUNBUFFERED"] = "1"
        env.setdefault("PYTHONBREAKPOINT", "isod.worker.plugin.no_debugger")   # no terminal to debug in
        # as the client started: `python -m pytest`, or the `pytest` script
        # (sys.argv[0] and sys.path[0] differ: a flat layout tests another copy)
        start = ["-m", "pytest"] if open_msg.launch in ("", "-m") else [open_msg.launch]
        argv = [open_msg.python, *start, "-p", WORKER_PLUGIN, *open_msg.pytest_args]
        try:
            self.box: Box = backend.spawn(
                argv, cwd=open_msg.cwd or None, env=env, pass_fds=(worker_end.fileno(), self.phase.fd),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                start_new_session=True,
            )
        finally:
            worker_end.close()
        self.pid = self.box.pid
        # per-size pids/memory limits on the tree, and the sweep of strays
        self.limits = TreeLimits(self.pid, limits)
        self.reported_strays: set[int] = set()
        self.started_at = time.monotonic()
        self.started_ns = time.monotonic_ns()
        self._thread = threading.Thread(target=self._read_loop, name=f"isod-{name}", daemon=True)
        self._thread.start()

    # --- commands ---------------------------------------------------------
    def send_item(self, item: pb.TestItem, hold: bool = False) -> None:
        """``hold``: the worker knows it (as the next test, for teardown) but
        starts it only on ``send_release``."""
        self.assigned.append(item)
        if hold:
            self.held = item
            sent = pb.TestItem()
            sent.CopyFrom(item)
            sent.hold = True
            self._send(pb.WorkerCommand(run=sent))
        else:
            self._send(pb.WorkerCommand(run=item))

    def send_release(self) -> None:
        self.held = None
        self._send(pb.WorkerCommand(release=pb.Release()))

    def send_finish(self, stop: bool = False) -> None:
        """No more items; with ``stop`` (-x, --maxfail) the worker also drops
        those it was sent and has not started."""
        if stop:
            if self.stop_sent:
                return
            self.stop_sent = self.finish_sent = True   # the worker reads a stop even after a finish
            self._send(pb.WorkerCommand(stop=pb.Stop()))
            return
        if self.finish_sent:
            return
        self.finish_sent = True      # a second finish would be harmless: the worker stops reading
        self._send(pb.WorkerCommand(finish=pb.Finish()))

    def _send(self, cmd: pb.WorkerCommand) -> None:
        try:
            self.chan.send(cmd.SerializeToString())
        except OSError:
            pass   # the worker is gone; the read loop reports it

    def kill(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.box.kill()

    # --- channel ----------------------------------------------------------
    def _read_loop(self) -> None:
        poller = select.poll()
        fds = {self.chan.fileno(): "chan"}
        for pipe, is_err in ((self.box.popen.stdout, False), (self.box.popen.stderr, True)):
            os.set_blocking(pipe.fileno(), False)
            fds[pipe.fileno()] = (pipe, is_err)
        for fd in fds:
            poller.register(fd, select.POLLIN)
        eof = False
        while not eof:
            timeout = self._time_left()
            events = poller.poll(None if timeout is None else max(0, timeout) * 1000)
            if not events and timeout is not None and self._time_left() <= 0:
                self._timeout()
                continue
            for fd, _mask in events:
                what = fds.get(fd)
                if what == "chan":
                    if not self._drain():
                        eof = True
                    else:
                        # let a few messages gather: a wake-up per message costs more than the message
                        time.sleep(READ_BATCH_DELAY)
                elif what is not None:
                    pipe, is_err = what
                    try:
                        data = os.read(fd, 65536)
                    except BlockingIOError:
                        continue
                    if data:
                        self.on_output(self, data, is_err)
                    else:
                        poller.unregister(fd)
                        del fds[fd]
        self._finish_after_exit()

    def _drain(self) -> bool:
        """Handle what is waiting on the channel; False once it is closed."""
        with self._lock:
            while True:
                try:
                    raw = self.chan.recv(block=False)
                except (EOFError, OSError):
                    return False
                if raw is None:
                    return True
                if self.abort_reason is not None:
                    continue      # killed: what it still wrote changes nothing (the test in it failed)
                try:
                    msg = pb.WorkerEvent.FromString(raw)
                except DecodeError:
                    self._protocol_violation(f"{len(raw)} bytes that are not a WorkerEvent")
                    return True
                try:
                    self._handle(msg)
                except Exception as e:    # a bug of ours: fail the test loudly, never hang the session
                    self.on_log(f"worker {self.name}: error handling its {msg.WhichOneof('kind')} message: "
                                + "".join(traceback.format_exception(e)).rstrip())
                    self._abort(f"isod could not handle worker {self.name}'s "
                                f"{msg.WhichOneof('kind')} message ({e!r}); isod killed the worker")

    # --- messages (called with the lock held) -------------------------------
    def _handle(self, msg: pb.WorkerEvent) -> None:
        kind = msg.WhichOneof("kind")
        if kind == "batch":
            # a test's `finished` with the next one's `started`: its result
            # waits for the started, so that what a small test left behind
            # (a thread's fork that reached the supervisor after its teardown)
            # is charged to it, not listed as "between tests"
            self.deferred = None
            self._batching = True
            for inner in msg.batch.events:
                if self.abort_reason is not None:
                    break
                if inner.WhichOneof("kind") == "batch":
                    self._protocol_violation("a nested batch")
                    break
                self._handle(inner)
            self._batching = False
            done, self.deferred = self.deferred, None
            if done is not None:
                self.on_result(self, done[0])
        elif kind == "started":
            # the worker runs its items in order, one at a time: anything else
            # was written by test code on the channel (docs/threat-model.md N2)
            if (self.running is not None or self.exiting or not self.assigned
                    or self.assigned[0].nodeid != msg.started.nodeid):
                self._protocol_violation(f"`started {msg.started.nodeid}` out of order")
                return
            item = self.assigned[0]
            t0_ns = msg.started.t_ns or time.monotonic_ns()
            if self.deferred is not None and self.cls == policy.SMALL_CLASS:
                self._charge_leftovers(*self.deferred, t0_ns - 1)
            self._cut_outside("between tests" if self.last_test else "collection", until_ns=t0_ns - 1)
            size = SIZE_FROM_PB.get(item.size)
            self.running = Running(item=item, t0=t0_ns / 1e9, t0_ns=t0_ns)
            if size is not None:
                self.limits.apply(size.value)
        elif kind == "report":
            run = self.running
            if run is None:
                return
            self._cut(run, [msg.report])
            run.reports.append(msg.report)
            run.phase = {"setup": "call", "call": "teardown"}.get(msg.report.when, "teardown")
        elif kind == "finished":
            run = self.running
            if run is None or run.item.nodeid != msg.finished.nodeid:
                self._protocol_violation(f"`finished {msg.finished.nodeid}` for a test not running")
                return
            ended = msg.finished.HasField("exit")     # pytest.exit / KeyboardInterrupt: no teardown report
            late = sorted(msg.finished.reports, key=lambda r: r.t_ns)
            if self.enforcing and not ended and (not late or late[-1].when != "teardown"):
                # pytest always makes a teardown report before the worker says finished
                self._protocol_violation(f"`finished {run.item.nodeid}` without its teardown report")
                return
            self._cut(run, late)
            run.reports.extend(late)
            self.running = None
            self.last_test = run.item.nodeid
            self._done(run.item)
            if ended:
                self.exiting = True     # its pytest ends now: nothing more starts on it
            _name_quick_execs(run.events, msg.finished.intents, run.t0_ns, self.pid)
            res = self._result(run, intents=msg.finished.intents, warnings=self._strays(run),
                               recorded_warnings=msg.finished.warnings)
            if ended:
                res.interruption.kind = pb.Interruption.SESSION_EXIT
                res.interruption.message = msg.finished.exit.reason
                res.interruption.session_exit.CopyFrom(msg.finished.exit)
            if self._batching and not ended:
                self.deferred = (res, run.t0_ns)
            else:
                self.on_result(self, res)
        elif kind == "collected":
            self.collected = True
            if self.cls == policy.SMALL_CLASS and self.enforcing:
                # before any test is sent: from here on, between tests and at
                # session teardown too, nothing of this worker may spawn
                self.box.rule = policy.RULES[policy.Size.SMALL]
            self.on_collected(self, msg.collected)
        elif kind == "node_down":
            if self.on_node_down is not None and not self.node_down_sent:
                self.node_down_sent = True
                self.on_node_down(self, pb.NodeDown(worker=self.name,
                                                    workeroutput_json=msg.node_down.workeroutput_json))

    def _charge_leftovers(self, res: pb.TestResult, t0_ns: int, until_ns: int) -> None:
        """Calls recorded after the test's teardown ended and before the next
        test started: in a small worker, what the test left running made them."""
        self.box.settle()
        for ev in self.box.take_events(until_ns):
            res.events.append(event_to_pb(ev, "teardown", (ev.t_ns - t0_ns) / 1e9))

    def _protocol_violation(self, what: str) -> None:
        """Messages no real worker sends: a test forged them. It may already
        have spawned under a wrong rule; make that loud: kill the worker, and
        the test it is in fails saying why."""
        if self.abort_reason is None:
            self.on_log(f"worker {self.name}: protocol violation ({what}); killing it")
        why = (f"test code wrote on the isod worker channel ({what}); isod killed the worker"
               + ("" if self.cls == policy.SMALL_CLASS else ": the reports of its tests cannot be trusted"))
        if self.running is None and self.abort_reason is None and self.on_forgery is not None:
            # no test to fail (a forged `finished` was taken for real): the run fails instead
            self.on_forgery(self, f"worker {self.name} (last test {self.last_test or 'none'}): {why}")
        self._abort(why)

    def _abort(self, why: str) -> None:
        """Kill the worker; the test it is in fails with `why`."""
        if self.abort_reason is None:
            self.abort_reason = why
            self.kill()

    def flag(self, what: str) -> None:
        """A violation found outside the trap path (the daemon's socket): the
        running test fails with TC003 like a trapped spawn."""
        with self._lock:
            if self.running is not None:
                self.running.events.append(pb.SpawnEvent(
                    t_ns=time.monotonic_ns(), pid=self.pid, tid=self.pid, syscall="connect", decision="deny",
                    phase=self.running.phase, path=what,
                    offset_s=(time.monotonic_ns() - self.running.t0_ns) / 1e9))

    def _strays(self, run: Running) -> list[str]:
        """Processes this test started that are still running (they are killed
        when the worker ends: a session fixture's server may legitimately
        outlive the test that started it). Only processes the record says
        were born in this test: by the time this runs the worker may be in
        its next test, whose children are not this test's strays."""
        born = {e.child_pid for e in run.events if e.child_pid and e.decision == "allow"}
        if not born:
            return []
        strays = (self.limits.members() & born) - {self.pid} - self.reported_strays
        self.reported_strays |= strays
        return [f"{run.item.nodeid} left process {pid} running: {_command(pid)} "
                "(isod kills it when the worker ends)" for pid in sorted(strays)]

    def _cut_outside(self, when: str, until_ns: int | None = None) -> None:
        """Calls made while no test ran: kept for the client's report."""
        self.box.settle()
        for ev in self.box.take_events(until_ns):
            if len(self.outside) < MAX_EVENTS:
                self.outside.append(event_to_pb(ev, when, (ev.t_ns - self.started_ns) / 1e9))

    def _cut(self, run: Running, ends: list[pb.PhaseReport] = ()) -> None:
        """The test's events up to the end of the last of ``ends`` (reports of
        the phases that ended since, in time order, whose end times tell an
        event's phase), or all so far when the test was cut short."""
        self.box.settle()
        for ev in self.box.take_events(ends[-1].t_ns if ends and ends[-1].t_ns else None):
            if len(run.events) >= MAX_EVENTS:    # a spawn loop: count the rest, keep the result sendable
                run.dropped += 1
                continue
            phase = next((r.when for r in ends if ev.t_ns <= r.t_ns), run.phase if not ends else ends[-1].when)
            pe = event_to_pb(ev, phase, (ev.t_ns - run.t0_ns) / 1e9)
            if run.event_bytes > MAX_EVENT_BYTES:
                del pe.argv[:]
                pe.argv_complete = False
            run.event_bytes += pe.ByteSize()
            run.events.append(pe)

    # --- time limits and deaths -----------------------------------------
    def _deadline(self) -> tuple[float, str, float, float] | None:
        """(deadline, phase, its limit, its start) of the running test, in
        monotonic seconds: the call is timed by the size's limit (as
        pytest-test-categories times it); setup and teardown (fixtures) by a
        limit of their own, so a slow session fixture fails no small test."""
        run = self.running
        if run is None or run.item.timeout_s <= 0:
            return None
        phase, t_ns, _ = self.phase.read()
        fixtures = max(run.item.fixture_timeout_s or FIXTURE_LIMIT_S, run.item.timeout_s)
        if t_ns < run.t0_ns or phase not in (phase_word.CALL, phase_word.TEARDOWN):
            return run.t0 + fixtures, "setup", fixtures, run.t0
        limit = run.item.timeout_s if phase == phase_word.CALL else fixtures
        return t_ns / 1e9 + limit, phase_word.NAMES[phase], limit, t_ns / 1e9

    def _time_left(self) -> float | None:
        d = self._deadline()
        return None if d is None else d[0] - time.monotonic()

    def _timeout(self) -> None:
        with self._lock:
            d = self._deadline()
            run = self.running
            if run is None or d is None or d[0] > time.monotonic():
                return
            _, phase, limit, start = d
            elapsed = time.monotonic() - start
            self.timed_out = True
            self._cut(run)
            self.running = None
            self._done(run.item)
            size = SIZE_FROM_PB.get(run.item.size)
            what = f"{run.item.nodeid} ({size.value if size else 'unsized'})"
            if phase == "call":
                msg = (f"[TC006] Timeout: {what} ran {elapsed:.2f} s, past its limit of {limit:g} s; "
                       "isod killed its worker")
            else:
                msg = (f"[TC006] Timeout: the {phase} of {what} (its fixtures) ran {elapsed:.2f} s, past isod's "
                       f"limit of {limit:g} s for a setup or teardown (the size's {run.item.timeout_s:g} s limit "
                       "times the call); isod killed its worker")
            self.on_result(self, self._result(run, interruption=pb.Interruption(
                kind=pb.Interruption.TIMEOUT, message=msg, limit_s=limit, elapsed_s=elapsed, phase=phase,
                call_outcome=self.phase.read()[2] if phase == "teardown" else "")))
        self.kill()

    def _finish_after_exit(self) -> None:
        try:
            status = self.box.popen.wait(10)
        except subprocess.TimeoutExpired:
            # the channel closed but the process lives: it exec'd over the worker
            self.kill()
            status = self.box.popen.wait()
        self.exit_status = status
        self.oom_killed = self.limits.oom_kills() > 0   # before close() removes the cgroup
        left = self.limits.sweep()      # no process of the session outlives its worker
        self.limits.close()
        if left:
            self.on_log(f"worker {self.name}: killed {len(left)} leftover process(es): "
                        + ", ".join(f"{pid} {cmd}" for pid, cmd in left[:5]))
        with self._lock:
            self.exited = True
            run = self.running
            self.running = None
            self.crashed = (run is not None or not self.finish_sent or self.timed_out) and not self.exiting
            if run is not None:
                self._cut(run)
                self._done(run.item)
                self.on_result(self, self._crash_result(run, status))
            self._cut_outside("after the last test" if self.last_test else "collection")
            if self.outside and self.on_outside is not None:
                self.on_outside(self, pb.OutsideTests(worker=self.name, events=self.outside,
                                                      last_test=self.last_test))
            if not self.node_down_sent and self.on_node_down is not None:
                self.node_down_sent = True
                how = f"signal {-status}" if status < 0 else f"exit code {status}"
                self.on_node_down(self, pb.NodeDown(worker=self.name, error=f"worker {self.name} ended ({how}) "
                                                    "before its session finished"))
        self.chan.close()
        self.phase.close()
        for pipe in (self.box.popen.stdout, self.box.popen.stderr):
            pipe.close()
        self.box.released.wait(5)
        self.box.release()
        self.on_exit(self)

    def _crash_result(self, run: Running, status: int) -> pb.TestResult:
        elapsed = time.monotonic() - run.t0
        own_execs = [e for e in run.events if e.syscall in ("execve", "execveat") and e.pid == self.pid
                     and e.decision == "allow"]
        if self.abort_reason is not None:
            kind = pb.Interruption.WORKER_CRASHED
            msg = f"while {run.item.nodeid} ran: {self.abort_reason}"
        elif own_execs:
            kind = pb.Interruption.WORKER_REPLACED
            msg = (f"{run.item.nodeid} replaced the worker process with exec: "
                   f"{' '.join(own_execs[-1].argv) or own_execs[-1].path}; a fresh worker takes over")
        else:
            kind = pb.Interruption.WORKER_CRASHED
            how = f"signal {-status} ({_signame(-status)})" if status < 0 else f"exit code {status}"
            if status == -9 and self.oom_killed:
                how += ", killed by the memory limit of its size (isod serve --limits)"
            msg = f"worker '{self.name}' crashed while running {run.item.nodeid}: {how}"
        return self._result(run, interruption=pb.Interruption(
            kind=kind, message=msg, elapsed_s=elapsed, exit_code=max(status, 0), signal=-status if status < 0 else 0))

    def _result(self, run: Running, **more) -> pb.TestResult:
        """The result of the test ``run`` holds, with what it produced so far."""
        return pb.TestResult(nodeid=run.item.nodeid, size=run.item.size, reports=run.reports, events=run.events,
                             events_dropped=run.dropped, worker=self.name, **more)

    def _done(self, item: pb.TestItem) -> None:
        """The running item is the head of ``assigned`` (the worker runs them in order)."""
        if self.assigned and self.assigned[0] is item:
            self.assigned.popleft()
        else:
            self.assigned = deque(i for i in self.assigned if i is not item)

    def unfinished(self) -> list[pb.TestItem]:
        """Items sent to this worker that it never started (to hand to another)."""
        return list(self.assigned)



# Python-level spawns whose argv is the program the child execs
_RUNS_ARGV = ("subprocess.Popen", "os.posix_spawn", "os.spawn", "os.exec")


def _name_quick_execs(events, intents, t0_ns: int, worker_pid: int) -> None:
    """An exec seen by the process events connector whose program exited
    before /proc could be read has no command: when the worker itself started
    it, the audit hook's last Python-level spawn before it names it (marked
    incomplete: the hook saw the intent, not the exec)."""
    parent_of = {ev.child_pid: ev.pid for ev in events if ev.child_pid}
    for ev in events:
        if not ev.ppid and ev.pid in parent_of:
            ev.ppid = parent_of[ev.pid]      # gone before /proc was read: its fork tells
    named = sorted(((t0_ns + int(i.offset_s * 1e9), list(i.argv)) for i in intents
                    if i.event in _RUNS_ARGV and i.argv), key=lambda x: x[0])
    if not named:
        return
    for ev in events:
        if ev.syscall != "execve" or ev.argv or ev.decision != "allow":
            continue
        if parent_of.get(ev.pid, ev.ppid) != worker_pid:
            continue
        before = [argv for t, argv in named if t <= ev.t_ns]
        if before:
            ev.argv.extend(before[-1])
            ev.argv_complete = False


def _command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return " ".join(a.decode(errors="replace") for a in f.read().split(b"\0") if a) or "?"
    except OSError:
        return "?"


def _signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return "?"


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
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable

from google.protobuf.message import DecodeError

from .. import channel, contract, phase_word, policy
from ..phase_word import PhaseWord
from ..sandbox import Box, SandboxError
from ..sandbox.adopted import AdoptedProcess
from ..v1 import isod_pb2 as pb
from ..wire import event_to_pb
from .limits import LimitsConfig, TreeLimits
from .test_record import MAX_EVENTS, Running, name_quick_execs
from .worker_launch import ForkedWorker, can_fork, spawn_fresh
from .worker_protocol import Violation, WorkerProtocol
from .worker_start import identity_env
from .worker_texts import crash_text, replaced_text, stray_text, timeout_text
from .zygote_handle import ForkFailed

SETUP_RECHECK_S = 0.05       # how often the phase word is read while a test is in setup
READ_BATCH_DELAY = 0.0005
# seconds a test's setup or teardown may take at least (a session fixture that
# starts a database); the size's limit times the call only
FIXTURE_LIMIT_S = 60.0


class WorkerHandle:
    def __init__(self, name: str, cls: str, backend, open_msg: pb.SessionOpen, *,
                 on_collected: Callable[[WorkerHandle, pb.Collected], None],
                 on_result: Callable[[WorkerHandle, pb.TestResult], None],
                 on_output: Callable[[WorkerHandle, bytes, bool], None],
                 on_exit: Callable[[WorkerHandle], None], limits: LimitsConfig | None = None,
                 on_outside: Callable[[WorkerHandle, pb.OutsideTests], None] | None = None,
                 on_node_down: Callable[[WorkerHandle, pb.NodeDown], None] | None = None,
                 enforcing: bool = True, worker_count: int = 1, testrun_uid: str = "", zygote=None) -> None:
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
        # calls recorded while no test ran (collection, after the last test), sent when the worker ends
        self.outside: list[pb.SpawnEvent] = []     # at most MAX_EVENTS
        self.on_log: Callable[[str], None] = lambda msg: None
        self.protocol = WorkerProtocol(enforcing)
        self.finish_sent = False
        self.stop_sent = False
        self.exited = False
        # warn/off: record everything, deny nothing (the verdict is the client's)
        self.enforcing = enforcing
        self.collected = False      # it sent its collection
        self.timed_out = False      # the daemon killed it for a time limit
        self.crashed = False        # it died mid-test or before being told to finish
        self.abort_reason: str | None = None   # why the daemon killed it (a forged or bad message)
        self.exit_status: int | None = None
        self._lock = threading.RLock()
        self.phase = PhaseWord.create()      # which phase the running test is in (its deadlines)
        self._open_msg, self._backend, self._limits_config = open_msg, backend, limits
        # pytest-xdist's conventions: per-worker ports, databases, coverage files
        self.identity = identity_env(name, cls, worker_count, testrun_uid)
        self.reported_strays: set[int] = set()
        self.started_at = time.monotonic()
        self.started_ns = time.monotonic_ns()
        self.box: Box | None = None         # None while a forked worker is on its way
        self.pid = 0
        self.forked = False                 # forked from the zygote, collected by it
        self._kill_asked = False
        self._zygote = zygote
        fork = None
        if can_fork(zygote, backend):
            fork = ForkedWorker(zygote, backend, open_msg, name, cls, self.identity, self.phase)
            self.chan = fork.chan
        else:
            self._took(*spawn_fresh(backend, open_msg, self.identity, self.phase))
        self._thread = threading.Thread(target=self._read_loop, args=(fork,), name=f"isod-{name}", daemon=True)
        self._thread.start()

    def _took(self, box: Box, chan: channel.Channel | None = None) -> None:
        self.box = box
        self.pid = box.pid
        if chan is not None:
            self.chan = chan
        # per-size pids/memory limits on the tree, and the sweep of strays
        self.limits = TreeLimits(self.pid, self._limits_config)
        if self._kill_asked:
            self.kill()

    def _adopt(self, fork: ForkedWorker) -> bool:
        """The forked worker's process, supervised by its class's backend;
        False (the worker failed to start) when the zygote could not give it."""
        try:
            proc = fork.wait()
        except ForkFailed as e:
            fork.abandon()
            if not e.refused and not self._zygote.collected:
                # it died collecting: a fresh worker would too (the session says why)
                self.on_log(f"worker {self.name}: {e}")
                self.exit_status = -1
                return False
            # forking is unsafe in this session's zygote, or it is gone: this worker starts fresh
            try:
                self._took(*spawn_fresh(self._backend, self._open_msg, self.identity, self.phase))
            except (SandboxError, OSError, ValueError) as e:
                # on this thread nobody else would hear of it: the session sees the worker end
                self.on_output(self, f"isod: cannot start worker {self.name}: {e}\n".encode(), True)
                self.exit_status = -1
                return False
            return True
        small = self.enforcing and self.cls == contract.SMALL_CLASS
        box = fork.adopt(proc, policy.RULES[contract.Size.SMALL] if small else policy.IDLE)
        if box is None:
            self.on_log(f"worker {self.name}: forked pid {proc.pid} did not report")
            box = Box(proc)
            box.released.set()
            self._took(box)
            return True        # the read loop sees it exit before collecting
        self.forked = True
        self._took(box)
        if box.net is not None:
            box.net.set_size(self.cls)
        self.collected = True
        self.on_collected(self, None)
        return True

    # the protocol's state, as the session and the service read it
    @property
    def assigned(self) -> deque[pb.TestItem]:
        return self.protocol.assigned

    @property
    def running(self) -> Running | None:
        return self.protocol.running

    @property
    def last_test(self) -> str:
        return self.protocol.last_test

    @property
    def exiting(self) -> bool:
        return self.protocol.exiting

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
        if self.box is None:
            self._kill_asked = True      # on its way from the zygote: killed when it comes
            return
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.box.kill()

    # --- channel ----------------------------------------------------------
    def _read_loop(self, fork=None) -> None:
        if fork is not None and not self._adopt(fork):
            self._never_started()
            return
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
            for raw in self.chan.waiting():
                if self.abort_reason is not None:
                    continue      # killed: what it still wrote changes nothing (the test in it failed)
                try:
                    msg = pb.WorkerEvent.FromString(raw)
                except DecodeError:
                    self._protocol_violation(f"{len(raw)} bytes that are not a WorkerEvent")
                    break
                try:
                    self._handle(msg)
                except Violation as v:
                    self._protocol_violation(str(v))
                except Exception as e:    # a bug of ours: fail the test loudly, never hang the session
                    self.on_log(f"worker {self.name}: error handling its {msg.WhichOneof('kind')} message: "
                                + "".join(traceback.format_exception(e)).rstrip())
                    self._abort(f"isod could not handle worker {self.name}'s "
                                f"{msg.WhichOneof('kind')} message ({e!r}); isod killed the worker")
            return not self.chan.closed

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
            try:
                for inner in msg.batch.events:
                    if self.abort_reason is not None:
                        break
                    if inner.WhichOneof("kind") == "batch":
                        raise Violation("a nested batch")
                    self._handle(inner)
            finally:
                self._batching = False
                done, self.deferred = self.deferred, None
                if done is not None:
                    self.on_result(self, done[0])
        elif kind == "started":
            t0_ns = msg.started.t_ns or time.monotonic_ns()
            if self.deferred is not None and self.cls == contract.SMALL_CLASS:
                self._charge_leftovers(*self.deferred, t0_ns - 1)
            run = self.protocol.started(msg.started.nodeid, t0_ns)
            self._cut_outside("between tests" if self.last_test else "collection", until_ns=t0_ns - 1)
            size = contract.size_from_pb(run.item.size)
            if size is not None:
                self.limits.apply(size.value)
        elif kind == "report":
            run = self.protocol.running
            if run is not None:
                self._cut(run, [msg.report])
                self.protocol.reported(msg.report)
        elif kind == "finished":
            run, late = self.protocol.finished(msg.finished)
            self._cut(run, late)
            ended = msg.finished.HasField("exit")
            name_quick_execs(run.events, msg.finished.intents, run.t0_ns, self.pid)
            res = run.result(self.name, intents=msg.finished.intents, warnings=self._strays(run),
                             recorded_warnings=msg.finished.warnings, keywords=msg.finished.keywords)
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
            if self.cls == contract.SMALL_CLASS and self.enforcing:
                # before any test is sent: from here on, between tests and at
                # session teardown too, nothing of this worker may spawn
                self.box.rule = policy.RULES[contract.Size.SMALL]
            if self.box.net is not None:
                self.box.net.set_size(self.cls)     # the class's network rule, from now on
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
               + ("" if self.cls == contract.SMALL_CLASS else ": the reports of its tests cannot be trusted"))
        if self.running is None and self.abort_reason is None and self.on_forgery is not None:
            # no test to fail (a forged `finished` was taken for real): the run fails instead
            self.on_forgery(self, f"worker {self.name} (last test {self.last_test or 'none'}): {why}")
        self._abort(why)

    def _abort(self, why: str) -> None:
        """Kill the worker; the test it is in fails with `why`."""
        if self.abort_reason is None:
            self.abort_reason = why
            self.kill()

    def fail_running_test(self, what: str) -> None:
        """A violation found outside the trap path (the daemon's socket): the
        running test fails with TC003 like a trapped spawn."""
        with self._lock:
            if self.running is not None:
                self.running.events.append(pb.SpawnEvent(
                    t_ns=time.monotonic_ns(), pid=self.pid, tid=self.pid, syscall="connect", decision="deny",
                    phase=self.running.phase, path=what, violation=pb.SpawnEvent.PROCESS,
                    offset_s=(time.monotonic_ns() - self.running.t0_ns) / 1e9))

    def _strays(self, run: Running) -> list[str]:
        """Processes this test started that are still running (they are killed
        when the worker ends: a session fixture's server may legitimately
        outlive the test that started it). Only processes the record says
        were born in this test: by the time this runs the worker may be in
        its next test, whose children are not this test's strays."""
        born = {e.child_pid for e in run.events if e.child_pid and e.decision == "allow"}
        born -= self.box.take_exited(born)      # seen exiting: no need to look for them
        if not born:
            return []
        strays = (self.limits.members() & born) - {self.pid} - self.reported_strays
        self.reported_strays |= strays
        return [stray_text(run.item.nodeid, pid) for pid in sorted(strays)]

    def _cut_outside(self, when: str, until_ns: int | None = None) -> None:
        """Calls made while no test ran: kept for the client's report."""
        self.box.settle()
        for ev in self.box.take_events(until_ns):
            if len(self.outside) < MAX_EVENTS:
                self.outside.append(event_to_pb(ev, when, (ev.t_ns - self.started_ns) / 1e9))

    def _cut(self, run: Running, ends: list[pb.PhaseReport] = ()) -> None:
        """The test's events up to the end of the last of ``ends`` (reports of
        the phases that ended since, in time order), or all so far when the
        test was cut short."""
        self.box.settle()
        run.add(self.box.take_events(ends[-1].t_ns if ends and ends[-1].t_ns else None), ends)

    # --- time limits and deaths -----------------------------------------
    def _deadline(self) -> tuple[float, str, float, float] | None:
        """(deadline, phase, its limit, its start) of the running test, in
        monotonic seconds: the call is timed by the size's limit (as
        pytest-test-categories times it); setup and teardown (fixtures) by a
        limit of their own, so a slow session fixture fails no small test."""
        run = self.running
        if run is None or run.item.timeout_s <= 0:
            return None
        phase, t_ns, _, _ = self.phase.read()
        fixtures = max(run.item.fixture_timeout_s or FIXTURE_LIMIT_S, run.item.timeout_s)
        if t_ns < run.t0_ns or phase not in (phase_word.CALL, phase_word.TEARDOWN):
            return run.t0 + fixtures, "setup", fixtures, run.t0
        limit = run.item.timeout_s if phase == phase_word.CALL else fixtures
        return t_ns / 1e9 + limit, phase_word.NAMES[phase], limit, t_ns / 1e9

    def _time_left(self) -> float | None:
        """Until the running test's deadline; in setup, at most SETUP_RECHECK_S:
        no message says when the call starts (the phase word does)."""
        d = self._deadline()
        if d is None:
            return None
        left = d[0] - time.monotonic()
        return min(left, SETUP_RECHECK_S) if d[1] == "setup" else left

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
            self.protocol.end(run)
            size = contract.size_from_pb(run.item.size)
            msg = timeout_text(f"{run.item.nodeid} ({size.value if size else 'unsized'})", phase, elapsed, limit,
                               run.item.timeout_s)
            self.on_result(self, run.result(self.name, interruption=pb.Interruption(
                kind=pb.Interruption.TIMEOUT, message=msg, limit_s=limit, elapsed_s=elapsed, phase=phase,
                call_outcome=self.phase.read()[2] if phase == "teardown" else "",
                setup_outcome=self.phase.read()[3] if phase != "setup" else "")))
        self.kill()

    def _finish_after_exit(self) -> None:
        status = self.exit_status = self.box.wait_after_close(self.kill)
        self.oom_killed = self.limits.oom_kills() > 0   # before close() removes the cgroup
        left = self.limits.sweep()      # no process of the session outlives its worker
        self.limits.close()
        if left:
            self.on_log(f"worker {self.name}: killed {len(left)} leftover process(es): "
                        + ", ".join(f"{pid} {cmd}" for pid, cmd in left[:5]))
        with self._lock:
            self.exited = True
            run = self.running
            self.crashed = (run is not None or not self.finish_sent or self.timed_out) and not self.exiting
            if run is not None:
                self._cut(run)
                self.protocol.end(run)
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
        if isinstance(self.box.popen, AdoptedProcess):
            self.box.popen.close()
        self.box.released.wait(5)
        self.box.release()
        self.on_exit(self)

    def _never_started(self) -> None:
        """The zygote died before forking it, or the fresh worker in its place
        could not start: the session sees a worker that exited before
        collecting (and says why)."""
        with self._lock:
            self.exited = True
            self.crashed = True
        self.chan.close()
        self.phase.close()
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
            # a program that exits at once leaves no argv in /proc: the worker said it before the exec
            argv = list(own_execs[-1].argv) or self.phase.read_exec()
            msg = replaced_text(run.item.nodeid, argv, own_execs[-1].path)
        else:
            kind = pb.Interruption.WORKER_CRASHED
            msg = crash_text(self.name, run.item.nodeid, status, self.oom_killed)
        # its reports died with it: the phase word says where it was and how the phases before went
        phase, t_ns, call_outcome, setup_outcome = self.phase.read()
        where = phase_word.NAMES.get(phase, "") if t_ns >= run.t0_ns else ""
        return run.result(self.name, interruption=pb.Interruption(
            kind=kind, message=msg, elapsed_s=elapsed, exit_code=max(status, 0), signal=-status if status < 0 else 0,
            phase=where, call_outcome=call_outcome if where == "teardown" else "",
            setup_outcome=setup_outcome if where in ("call", "teardown") else ""))

    def unfinished(self) -> list[pb.TestItem]:
        """Items sent to this worker that it never started (to hand to another)."""
        return list(self.assigned)

"""One pytest run on the daemon: its workers, its results, its end.

The scheduler (``scheduler.py``) decides which worker runs which test; this
module does the I/O around it: starts workers of the class the scheduler
asks for (a small worker under the trapping backend, a spawning one under the
native backend), sends what it says to send, replaces a crashed worker (its
unstarted items go back to the queue, up to ``max_worker_restart`` crashes)
and relays results. Everything the client must see goes into ``out`` (a queue
the gRPC handler drains); ``None`` ends it.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import uuid

from .. import contract, policy
from ..v1 import isod_pb2 as pb
from .scheduler import MIN_TESTS_FOR_ANOTHER_WORKER, Scheduler
from .worker_handle import WorkerHandle
from .worker_start import ZYGOTE_NAME, zygote_key
from .zygote_handle import ZygoteHandle
from .zygote_pool import ZygotePool

STDERR_TAIL = 4096


class Session:
    def __init__(self, sid: str, open_msg: pb.SessionOpen, backends: dict, log, default_workers: int,
                 limits=None, zygotes: ZygotePool | None = None) -> None:
        self.limits = limits
        self.zygotes = zygotes      # warm zygotes of earlier sessions (isod serve)
        self.sid = sid
        self.open = open_msg
        self.backends = backends     # "trap" (seccomp or ptrace) and "native" (no filter)
        self.log = log
        self.out: queue.SimpleQueue = queue.SimpleQueue()
        self.nworkers = open_msg.workers or default_workers
        self.max_restart = open_msg.max_worker_restart or (4 + self.nworkers)
        self.enforcing = open_msg.enforcement in (pb.ENFORCEMENT_UNSPECIFIED, pb.STRICT)
        self.sched = Scheduler(self.nworkers, min_tests_each=1 if open_msg.workers else MIN_TESTS_FOR_ANOTHER_WORKER)
        self.testrun_uid = uuid.uuid4().hex
        self.lock = threading.RLock()
        self.workers: dict[str, WorkerHandle] = {}
        self.retired: set[WorkerHandle] = set()     # finishing without a test, their ids given on
        self.free_ids = [f"gw{i}" for i in range(self.sched.slots)]   # xdist-style, reused by a replacement
        self.early_collections: dict[str, pb.Collected] = {}
        self.collection_sent = False    # the client got the session's collection (the first one made)
        self.zygote: ZygoteHandle | None = None     # collects once; workers are forked from it
        self.fresh_note_sent = False
        self.stderr_tail: dict[str, bytes] = {}
        self.items: list[pb.TestItem] | None = None
        self.client_ids: set[str] = set()
        self.results = 0
        self.crashes = 0
        self.started_workers = 0
        self.stopped = False
        self.ended = False
        self.error = ""
        self.t0 = time.monotonic()

    # --- lifecycle --------------------------------------------------------
    def start(self) -> None:
        """Workers of the classes the client expects start while the session
        collects (forked from the zygote once it has collected, where it can
        be used)."""
        self.out.put(pb.DaemonMessage(ready=pb.SessionReady(
            workers=self.nworkers, backend=self.backends["trap"].name, session_id=self.sid)))
        with self.lock:
            if self._zygote_wanted():
                ready = self.zygotes.take(zygote_key(self.open)) if self.zygotes is not None else None
                if ready is not None:
                    # kept from an earlier run (warm), or started ahead of this session
                    self.zygote = ready
                    self.log(f"session {self.sid}: a {'warm' if ready.collected else 'prestarted'} zygote "
                             f"(pid {ready.pid}) forks the workers")
                    self._bind_zygote()
                    if ready.collected:
                        # collected for an earlier session: its collection is this one's now
                        self._on_zygote_collected(ready.collection)
                else:
                    self._new_zygote()
            if self.zygote is None:
                # each fresh worker collects: the first to start makes the
                # session's collection. With a zygote, workers start once its
                # collection says which classes the tests need (forks take ms).
                self._start_workers(list(self.open.class_hint) or [contract.SMALL_CLASS])

    def _start_workers(self, hint: list[str] = (), expected: dict[str, int] | None = None) -> None:
        for cls in self.sched.classes_to_start(list(self.workers.values()), list(hint), expected):
            self._spawn_worker(cls)

    def _new_zygote(self) -> None:
        self.zygote = ZygoteHandle(
            self.backends["native"], self.open, worker_count=self.sched.slots, testrun_uid=self.testrun_uid,
            limits=self.limits, on_collected=self._on_zygote_collected,
            on_output=lambda data, is_err: self._on_output(None, data, is_err), on_exit=self._on_zygote_exit)
        self._bind_zygote()

    def _bind_zygote(self) -> None:
        z = self.zygote
        z.on_output = lambda data, is_err: self._on_output(None, data, is_err)
        z.on_exit = self._on_zygote_exit
        z.on_log = lambda msg: self.log(f"session {self.sid} {msg}")
        z.on_refused = self._on_zygote_refused
        # its collection, now if no session had it yet (a zygote started ahead of this one)
        z.bind(self._on_zygote_collected, lambda outside: self._on_outside(None, outside))

    def _zygote_wanted(self) -> bool:
        return session_wants_zygote(self.open, self.backends)

    def _spawn_worker(self, cls: str, name: str | None = None) -> None:
        if name is None or name not in self.free_ids:
            name = self.free_ids[0]
        self.free_ids.remove(name)
        self.started_workers += 1
        native_records = getattr(self.backends["native"], "records", True)
        backend = self.backends["trap" if policy.traps_spawns(cls, self.enforcing, native_records) else "native"]
        try:
            w = WorkerHandle(name, cls, backend, self.open, on_collected=self._on_collected,
                             on_result=self._on_result, on_output=self._on_output, on_exit=self._on_exit,
                             limits=self.limits, on_outside=self._on_outside, on_node_down=self._on_node_down,
                             enforcing=self.enforcing, worker_count=self.sched.slots,
                             testrun_uid=self.testrun_uid, zygote=self.zygote)
        except BaseException:
            self.free_ids.insert(0, name)
            raise
        w.on_log = lambda msg: self.log(f"session {self.sid} {msg}")
        w.on_forgery = lambda _w, why: self._fail(why)
        self.workers[name] = w

    def run(self, msg: pb.RunTests) -> None:
        with self.lock:
            if self.items is not None:
                self._fail("the client sent its tests twice")
                return
            self.items = list(msg.items)
            self.client_ids = {i.nodeid for i in self.items}
            self.sched.load([(contract.worker_class(contract.size_from_pb(i.size)), i) for i in self.items])
            for name, col in list(self.early_collections.items()):
                if name == ZYGOTE_NAME:
                    self._check_collection(name, None, col)
                elif name in self.workers and self._check_collection(name, self.workers[name].cls, col):
                    self.workers[name].ready = True
            self.early_collections.clear()
            self._rebalance()
            self._maybe_end()

    def stop(self, reason: str) -> None:
        with self.lock:
            if self.items is None:
                self.items = []     # stopped before sending tests: nothing to wait for
            self.stopped = True
            self.sched.stop()
            for w in self.workers.values():
                w.send_finish(stop=True)
            self._maybe_end()

    def abort(self) -> None:
        """The client went away: kill everything now."""
        with self.lock:
            self.stopped = True
            self.sched.stop()
            workers = [*self.workers.values(), *self.retired]
        try:
            for w in workers:
                try:
                    w.kill()
                except Exception as e:  # noqa: BLE001 (one that cannot be killed must not keep the session open)
                    self.log(f"session {self.sid}: killing worker {w.name}: {e!r}")
            if self.zygote is not None:
                self.zygote.kill()
        finally:
            self._end()         # always: the client's stream and the session's record end

    # --- scheduling -------------------------------------------------------
    def _rebalance(self) -> None:
        """Retire workers with nothing to do, start the ones the tests need."""
        if self.stopped:
            return
        for w in self.sched.to_retire(list(self.workers.values())):
            w.ready = False
            w.retiring = True
            w.send_finish()
            # it ran no test and will run none: its id goes to the worker that takes its slot
            self.retired.add(w)
            del self.workers[w.name]
            self.free_ids.append(w.name)
            self.free_ids.sort(key=lambda n: int(n[2:]))
        self._start_workers()
        self._dispatch_all()

    def _dispatch_all(self) -> None:
        for w in list(self.workers.values()):
            self._dispatch(w)

    def _dispatch(self, w: WorkerHandle) -> None:
        if w.exited or not w.ready or self.items is None:
            return
        d = self.sched.dispatch(w, list(self.workers.values()))
        if d.release:
            w.send_release()
        for item in d.items:
            w.send_item(item)
        if d.hold is not None:
            w.send_item(d.hold, hold=True)
        if d.finish:
            w.ready = False
            w.send_finish()

    # --- worker callbacks -------------------------------------------------
    def _on_collected(self, w: WorkerHandle, col: pb.Collected | None) -> None:
        """``col`` None: a worker forked from the zygote, whose collection was checked once."""
        with self.lock:
            if col is not None and not self._forward_collection(col):
                return
            if col is None:
                w.ready = True
                self._rebalance()
            elif self.items is None:
                self.early_collections[w.name] = col
            elif self._check_collection(w.name, w.cls, col):
                w.ready = True
                self._rebalance()

    def _on_zygote_collected(self, col: pb.Collected) -> None:
        with self.lock:
            if not self._forward_collection(col):
                return
            if self.items is None:
                self.early_collections[ZYGOTE_NAME] = col
            else:
                self._check_collection(ZYGOTE_NAME, None, col)

    def _forward_collection(self, col: pb.Collected) -> bool:
        """The first collection made for this session is the client's (it
        collects nothing itself). False when collecting raised: the client
        raises the same, and the session ends without running anything."""
        if self.collection_sent or not col.HasField("collection"):
            return True
        self.collection_sent = True
        c = col.collection
        self.out.put(pb.DaemonMessage(collection=c))
        why = (c.usage_error or c.internal_error or (c.exit.reason if c.HasField("exit") else "")).strip()
        if why or c.HasField("exit"):
            self._fail(f"collecting raised (the client reports it): {why.splitlines()[-1] if why else 'exit'}")
            return False
        if self.items is None and not self.stopped:
            # the client will send these tests: their classes' workers start now
            expected: dict[str, int] = {}
            for t in c.tests:
                size = contract.size_from_pb(t.size)
                if size is not None:
                    cls = contract.worker_class(size)
                    expected[cls] = expected.get(cls, 0) + 1
            self._start_workers(expected=expected)
        return True

    def _on_zygote_exit(self, z: ZygoteHandle) -> None:
        with self.lock:
            if not z.collected and not z.killed and not self.stopped and not self.ended:
                self._fail(self._zygote_died_text())
            self._maybe_end()

    def _zygote_died_text(self) -> str:
        z = self.zygote
        tail = self.stderr_tail.get(ZYGOTE_NAME, b"").decode(errors="replace").strip()
        return (f"the isod zygote (the process that collects for the workers) exited with status "
                f"{z.exit_status} before collecting{': ' + tail if tail else ''}")

    def _on_zygote_refused(self, why: str) -> None:
        """Said once in the run's output: every worker collects by itself now."""
        if self.fresh_note_sent:
            return
        self.fresh_note_sent = True
        self.out.put(pb.DaemonMessage(output=pb.WorkerOutput(
            worker=ZYGOTE_NAME, stderr=True,
            data=f"isod: workers start fresh and each collects the suite: {why}\n".encode())))

    def _check_collection(self, who: str, cls: str | None, col: pb.Collected) -> bool:
        """Tests the client collected and this worker (or the zygote, for
        every class: ``cls`` None) did not (a parameter id made of
        datetime.now(), a conftest that differs per process) cannot run
        anywhere of its class: each fails on its own, the rest run. False
        when the session failed on it."""
        missing = self.client_ids - set(col.nodeids)
        if missing and missing == self.client_ids:
            # not a test that differs: another project, another rootdir, or a broken conftest
            shown = "\n  ".join(sorted(missing)[:20]) + ("\n  ..." if len(missing) > 20 else "")
            errors = ("\nworker collection errors:\n  " + "\n  ".join(col.errors[:5])) if col.errors else ""
            self._fail(f"worker {who} collected none of the client's {len(missing)} test(s):\n  {shown}{errors}")
            return False
        lost = self.sched.remove(cls, missing) if missing else []
        if lost:
            errors = ("; its collection errors: " + "; ".join(col.errors[:3])) if col.errors else ""
            self.log(f"session {self.sid} worker {who} did not collect {len(lost)} test(s) the client did")
            for item in lost:
                self.results += 1
                self.out.put(pb.DaemonMessage(result=pb.TestResult(
                    nodeid=item.nodeid, size=item.size, worker=who, interruption=pb.Interruption(
                        kind=pb.Interruption.NOT_RUN,
                        message=f"{item.nodeid} was collected by the client but not by isod worker {who} "
                                f"(its id or its presence differs between processes: e.g. a parameter id "
                                f"made of the time or a random value){errors}"))))
        return True

    def _on_result(self, w: WorkerHandle, res: pb.TestResult) -> None:
        with self.lock:
            self.results += 1
            self.out.put(pb.DaemonMessage(result=res))
            self.sched.finished(w)
            if res.interruption.kind == pb.Interruption.SESSION_EXIT:
                self.stop(f"{res.nodeid} ended the session")   # as pytest does; the client follows
            elif not res.HasField("interruption"):
                if self.sched.ordered:
                    self._dispatch_all()      # the next run may be another worker's
                else:
                    self._dispatch(w)

    def _on_outside(self, w: WorkerHandle | None, outside: pb.OutsideTests) -> None:
        self.out.put(pb.DaemonMessage(outside=outside))

    def _on_node_down(self, w: WorkerHandle, down: pb.NodeDown) -> None:
        self.out.put(pb.DaemonMessage(node_down=down))

    def _on_output(self, w: WorkerHandle | None, data: bytes, is_err: bool) -> None:
        name = w.name if w is not None else ZYGOTE_NAME
        if is_err:
            self.stderr_tail[name] = (self.stderr_tail.get(name, b"") + data)[-STDERR_TAIL:]
        self.out.put(pb.DaemonMessage(output=pb.WorkerOutput(worker=name, data=data, stderr=is_err)))

    def _on_exit(self, w: WorkerHandle) -> None:
        with self.lock:
            self.retired.discard(w)
            if self.workers.get(w.name) is w:
                del self.workers[w.name]
            if not w.retiring:
                self.free_ids.append(w.name)
                self.free_ids.sort(key=lambda n: int(n[2:]))
            self.sched.lost(w, w.unfinished())
            if w.crashed and not self.stopped and not self.ended:
                tail = self.stderr_tail.get(w.name, b"").decode(errors="replace").strip()
                if not w.collected:
                    # pytest itself failed to start or collect: a new worker would too
                    z = self.zygote
                    if z is not None and z.exited and not z.collected and not w.forked:
                        self._fail(self._zygote_died_text())     # its fork failed: the zygote says why
                    else:
                        self._fail(f"worker {w.name} exited with status {w.exit_status} before collecting"
                                   f"{': ' + tail if tail else ''}")
                    return
                if not w.timed_out:
                    self.crashes += 1
                if self.crashes > self.max_restart:
                    self._fail(f"workers crashed {self.crashes} times, more than --isod-max-worker-restart="
                               f"{self.max_restart}; stopping. Last worker's stderr:\n{tail}")
                elif self.sched.pending(w.cls):
                    self._spawn_worker(w.cls, w.name)     # the replacement takes its id, as in xdist
            if not self.stopped and not self.ended:
                self._rebalance()
            self._maybe_end()

    # --- ending -----------------------------------------------------------
    def _fail(self, message: str) -> None:
        self.error = self.error or message      # the first cause, not its consequences
        self.stopped = True
        self.sched.stop()
        for w in list(self.workers.values()):
            w.kill()
        if self.zygote is not None:
            self.zygote.kill()
        self._maybe_end()

    def _maybe_end(self) -> None:
        if self.ended:
            return
        if self.workers:
            if self.items is not None and (self.stopped or not self.sched.pending()):
                for w in self.workers.values():
                    if (w.ready and not w.assigned) or self.stopped or not w.collected:
                        w.send_finish()
            return
        if self.items is None and not self.error:
            return   # workers all gone before the client sent its tests: wait for it
        if self.sched.pending() and not self.stopped:
            self._start_workers()        # tests left and no worker (all retired or crashed)
            if self.workers:
                return
        if self.retired:
            return   # finishing on their own; no process of a session outlives it
        if self.zygote is not None and not self.zygote.exited:
            # no worker left to fork or reap: kept warm for the next run
            # (isod serve), else killed, and its exit ends the session
            if not self.error and self.zygotes is not None and self.zygotes.give(self.zygote):
                self.zygote = None
            else:
                self.zygote.kill()
                return
        self._end()

    def _end(self) -> None:
        with self.lock:
            if self.ended:
                return
            self.ended = True
        wall = time.monotonic() - self.t0
        self.out.put(pb.DaemonMessage(end=pb.SessionEnd(
            tests=self.results, workers_started=self.started_workers, worker_crashes=self.crashes,
            error=self.error, wall_s=wall)))
        self.out.put(None)
        self.log(f"session {self.sid} end: {self.results} results, {self.started_workers} workers, "
                 f"{self.crashes} crashes, {wall:.2f} s{' ERROR: ' + self.error.splitlines()[0] if self.error else ''}")


def session_wants_zygote(open_msg: pb.SessionOpen, backends: dict) -> bool:
    """A zygote needs backends that can take over a forked process (not
    ptrace: it must be the worker's parent); ISOD_ZYGOTE=0 turns it off."""
    if dict(open_msg.env).get("ISOD_ZYGOTE", "1") in ("0", "no", "off", "false"):
        return False
    return all(hasattr(b, "adopt") for b in backends.values())


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) or 1

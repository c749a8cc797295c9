"""One pytest run on the daemon: its workers, its queue of tests, its results.

Scheduling is pytest-xdist's `load`: one shared queue; each worker holds at
least two items (the one running and the next, so it runs with its real
``nextitem``) and up to MAX_IN_FLIGHT while the queue is long, so it never
waits for the daemon; when the queue is empty a worker is told to finish. A crashed
worker's unstarted item goes back to the front of the queue and a fresh worker
takes over, up to ``max_worker_restart`` crashes. Everything the client must
see goes into ``out`` (a queue the gRPC handler drains); ``None`` ends it.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque

from ..v1 import isod_pb2 as pb
from .worker_handle import WorkerHandle

STDERR_TAIL = 4096
MAX_IN_FLIGHT = 32


class Session:
    def __init__(self, sid: str, open_msg: pb.SessionOpen, backend, log, default_workers: int,
                 limits=None) -> None:
        self.limits = limits
        self.sid = sid
        self.open = open_msg
        self.backend = backend
        self.log = log
        self.out: queue.SimpleQueue = queue.SimpleQueue()
        self.nworkers = open_msg.workers or default_workers
        self.max_restart = open_msg.max_worker_restart or (4 + self.nworkers)
        self.lock = threading.RLock()
        self.workers: dict[str, WorkerHandle] = {}
        self.ready: set[str] = set()
        self.early_collections: dict[str, pb.Collected] = {}
        self.stderr_tail: dict[str, bytes] = {}
        self.items: list[pb.TestItem] | None = None
        self.client_ids: set[str] = set()
        self.todo: deque[pb.TestItem] = deque()
        self.results = 0
        self.crashes = 0
        self.started_workers = 0
        self.stopped = False
        self.ended = False
        self.error = ""
        self.t0 = time.monotonic()
        self._seq = 0

    # --- lifecycle --------------------------------------------------------
    def start(self) -> None:
        with self.lock:
            for _ in range(self.nworkers):
                self._spawn_worker()
        self.out.put(pb.DaemonMessage(ready=pb.SessionReady(
            workers=self.nworkers, backend=self.backend.name, session_id=self.sid)))

    def _spawn_worker(self) -> None:
        self._seq += 1
        name = f"w{self._seq}"
        self.started_workers += 1
        w = WorkerHandle(name, self.backend, self.open, on_collected=self._on_collected,
                         on_result=self._on_result, on_output=self._on_output, on_exit=self._on_exit,
                         limits=self.limits, on_outside=self._on_outside)
        w.on_log = lambda msg: self.log(f"session {self.sid} {msg}")
        self.workers[name] = w

    def run(self, msg: pb.RunTests) -> None:
        with self.lock:
            if self.items is not None:
                self._fail("the client sent its tests twice")
                return
            self.items = list(msg.items)
            self.client_ids = {i.nodeid for i in self.items}
            self.todo.extend(self.items)
            for name, col in list(self.early_collections.items()):
                self._check_collection(self.workers[name], col)
            self.early_collections.clear()
            self._maybe_end()

    def stop(self, reason: str) -> None:
        with self.lock:
            if self.items is None:
                self.items = []     # stopped before sending tests: nothing to wait for
            self.stopped = True
            self.todo.clear()
            for w in self.workers.values():
                w.send_finish(stop=True)
            self._maybe_end()

    def abort(self) -> None:
        """The client went away: kill everything now."""
        with self.lock:
            self.stopped = True
            self.todo.clear()
            workers = list(self.workers.values())
        for w in workers:
            w.kill()
        self._end()

    # --- worker callbacks -------------------------------------------------
    def _on_collected(self, w: WorkerHandle, col: pb.Collected) -> None:
        with self.lock:
            if self.items is None:
                self.early_collections[w.name] = col
            else:
                self._check_collection(w, col)

    def _check_collection(self, w: WorkerHandle, col: pb.Collected) -> None:
        missing = sorted(self.client_ids - set(col.nodeids))
        if missing:
            shown = "\n  ".join(missing[:20]) + ("\n  ..." if len(missing) > 20 else "")
            errors = ("\nworker collection errors:\n  " + "\n  ".join(col.errors[:5])) if col.errors else ""
            self._fail(f"worker {w.name} collected differently from the client: {len(missing)} test(s) "
                       f"the client collected are missing in the worker:\n  {shown}{errors}")
            return
        self.ready.add(w.name)
        self._dispatch(w)

    def _dispatch(self, w: WorkerHandle) -> None:
        if w.name not in self.ready or w.exited:
            return
        # Keep enough in flight that the worker never waits for us (a round
        # trip per test idles it), but leave the tail of the queue to share.
        depth = max(2, min(MAX_IN_FLIGHT, len(self.todo) // (2 * max(1, len(self.ready)))))
        while len(w.assigned) < depth and self.todo and not self.stopped:
            w.send_item(self.todo.popleft())
        if not self.todo:
            w.send_finish()

    def _on_result(self, w: WorkerHandle, res: pb.TestResult) -> None:
        with self.lock:
            self.results += 1
            self.out.put(pb.DaemonMessage(result=res))
            if res.interruption.kind == pb.Interruption.SESSION_EXIT:
                self.stop(f"{res.nodeid} ended the session")   # as pytest does; the client follows
            elif not res.HasField("interruption"):
                self._dispatch(w)

    def _on_outside(self, w: WorkerHandle, outside: pb.OutsideTests) -> None:
        self.out.put(pb.DaemonMessage(outside=outside))

    def _on_output(self, w: WorkerHandle, data: bytes, is_err: bool) -> None:
        if is_err:
            self.stderr_tail[w.name] = (self.stderr_tail.get(w.name, b"") + data)[-STDERR_TAIL:]
        self.out.put(pb.DaemonMessage(output=pb.WorkerOutput(worker=w.name, data=data, stderr=is_err)))

    def _on_exit(self, w: WorkerHandle) -> None:
        with self.lock:
            self.workers.pop(w.name, None)
            self.ready.discard(w.name)
            leftover = w.unfinished()
            if leftover and not self.stopped:
                self.todo.extendleft(reversed(leftover))
            if w.crashed and not self.stopped and not self.ended:
                tail = self.stderr_tail.get(w.name, b"").decode(errors="replace").strip()
                if not w.collected:
                    # pytest itself failed to start or collect: a new worker would too
                    self._fail(f"worker {w.name} exited with status {w.exit_status} before collecting"
                               f"{': ' + tail if tail else ''}")
                    return
                if not w.timed_out:
                    self.crashes += 1
                if self.crashes > self.max_restart:
                    self._fail(f"workers crashed {self.crashes} times, more than --isod-max-worker-restart="
                               f"{self.max_restart}; stopping. Last worker's stderr:\n{tail}")
                elif self.todo:
                    self._spawn_worker()
            self._maybe_end()

    # --- ending -----------------------------------------------------------
    def _fail(self, message: str) -> None:
        self.error = message
        self.stopped = True
        self.todo.clear()
        for w in list(self.workers.values()):
            w.kill()
        self._maybe_end()

    def _maybe_end(self) -> None:
        if self.ended:
            return
        if self.workers:
            if self.items is not None and not self.todo:
                for w in self.workers.values():
                    if w.name in self.ready or self.stopped:
                        w.send_finish()
            return
        if self.items is None and not self.error:
            return   # workers all gone before the client sent its tests: wait for it
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


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) or 1

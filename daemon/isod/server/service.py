"""The gRPC service: validates what clients send and bridges streams to Sessions."""

from __future__ import annotations

import itertools
import os
import queue
import sys
import threading
import time

import grpc

from .. import __version__, contract
from ..sandbox import SandboxError
from ..sandbox.watch import WatchBackend
from ..v1 import isod_pb2 as pb
from ..v1 import isod_pb2_grpc as pb_grpc
from . import peers
from .requests import Reject, validate_open, validate_run
from .session import Session
from .zygote_pool import ZygotePool

BATCH = 256
BATCH_BYTES = 4 << 20     # a batch of big results (long captured output) stays one result each
# Results of fast tests come one by one, ~0.5 ms apart: a batch waits this
# long for the next (a gRPC message costs both ends more than a trivial test).
BATCH_WAIT_S = 0.002


def batched(out: queue.SimpleQueue):
    """Yield what the session queued, folding results that are ready together
    into one message: one gRPC message per test costs more than the test."""
    pending = None
    while True:
        msg = pending if pending is not None else out.get()
        pending = None
        if msg is None:
            return
        if isinstance(msg, pb.DaemonMessage) and msg.WhichOneof("kind") == "result":
            batch = [msg.result]
            size = msg.result.ByteSize()
            until = time.monotonic() + BATCH_WAIT_S
            while len(batch) < BATCH and size < BATCH_BYTES:
                try:
                    nxt = out.get(timeout=max(0.0, until - time.monotonic()))
                except queue.Empty:
                    break
                if isinstance(nxt, pb.DaemonMessage) and nxt.WhichOneof("kind") == "result":
                    batch.append(nxt.result)
                    size += nxt.result.ByteSize()
                else:
                    pending = nxt
                    break
            msg = pb.DaemonMessage(results=pb.TestResults(results=batch))
        yield msg


# A trapped caller waits while the supervisor thread waits for the GIL; with
# the default 5 ms switch interval a busy gRPC or reader thread can hold it
# that long (and a signal landing meanwhile fails a pending fork with EINTR).
SWITCH_INTERVAL_S = 0.0005


class IsodService(pb_grpc.IsodServicer):
    def __init__(self, backend, log, default_workers: int, listen: str, features: dict[str, bool],
                 limits=None, native=None, warm_zygotes: int = 0) -> None:
        self.limits = limits
        self.zygotes = ZygotePool(warm_zygotes)     # collected zygotes kept for the next run
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self.backend = backend
        # small workers trap under `backend`; spawning ones run natively, recorded
        self.native = native if native is not None else WatchBackend()
        self.backends = {"trap": backend, "native": self.native}
        self.log = log
        self.default_workers = default_workers
        self.listen = listen
        self.features = features
        self.accepting = True
        self.sessions: dict[str, Session] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def Session(self, request_iterator, context):
        if not self.accepting:
            context.abort(grpc.StatusCode.UNAVAILABLE, "isod is shutting down; no new sessions")
        try:
            opened = validate_open(next(request_iterator, None))
        except Reject as r:
            self.log(f"rejected a session: {r}")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(r))
        intruder = self._sandboxed_peer()
        if intruder:
            self.log(f"refused a session from inside a sandbox: {intruder}")
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          f"isod refuses sessions from its own small tests ({intruder})")
        sid = f"s{next(self._ids)}"
        session = Session(sid, opened, self.backends, self.log, self.default_workers, self.limits,
                          zygotes=self.zygotes)
        with self._lock:
            self.sessions[sid] = session
        context.add_callback(session.abort)      # the client went away: kill its workers
        self.log(f"session {sid} start: {session.nworkers} workers, cwd {opened.cwd}, python {opened.python}")
        try:
            try:
                session.start()
            except (SandboxError, OSError, ValueError) as e:
                session.abort()
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"cannot start workers: {e}")
            threading.Thread(target=self._read_client, args=(request_iterator, session),
                             name=f"isod-{sid}-client", daemon=True).start()
            for msg in batched(session.out):
                if isinstance(msg, Reject):
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(msg))
                yield msg
        finally:
            session.abort()
            with self._lock:
                self.sessions.pop(sid, None)

    def _read_client(self, request_iterator, session: Session) -> None:
        try:
            for msg in request_iterator:
                kind = msg.WhichOneof("kind")
                if kind == "run":
                    validate_run(msg.run)
                    session.run(msg.run)
                elif kind == "stop":
                    session.stop(msg.stop.reason)
                elif kind == "finish":
                    pass   # the tests were all sent with `run`
                else:
                    raise Reject(f"unexpected `{kind}` message mid-session")
            if session.items is None:
                raise Reject("the client ended its requests before sending its tests (`run`)")
        except Reject as r:
            self.log(f"session {session.sid} rejected: {r}")
            session.out.put(r)     # ahead of the end that abort() queues
            session.abort()
        except Exception:
            session.abort()   # the stream broke: the client is gone

    def _sandboxed_peer(self) -> str:
        """A small test connected to this daemon to have it spawn for it? The
        kernel knows who holds the client end of each accepted connection
        (gRPC Python cannot tell us): match those against the trees of
        workers running a small test under strict enforcement."""
        path = self.listen[len("unix://"):] if self.listen.startswith("unix://") else None
        if path is None:
            return ""
        with self._lock:
            watched = {w.pid: w for s in self.sessions.values() for w in list(s.workers.values())
                       if w.enforcing and w.cls == contract.SMALL_CLASS and w.collected}
        if not watched:
            return ""
        members = {pid: w for w in watched.values() for pid in w.limits.members()}
        try:
            found = peers.connected_to(path, members)
        except OSError:
            return ""
        for pid in found:
            w = members[pid]
            run = w.running
            test = run.item.nodeid if run else "(between tests)"
            w.fail_running_test(f"connected to the isod daemon's socket to open a session (pid {pid})")
            return f"pid {pid} of worker {w.name}, running small test {test}"
        return ""

    def Status(self, request, context):
        with self._lock:
            sessions = list(self.sessions.values())
        return pb.StatusReply(
            version=__version__, backend=self.backend.name,
            backend_reason=getattr(self.backend, "reason", ""), kernel_features=self.features,
            sessions=len(sessions), workers=sum(len(s.workers) for s in sessions), pid=os.getpid(),
            listen=self.listen)

"""The gRPC service: validates what clients send and bridges streams to Sessions."""

from __future__ import annotations

import itertools
import os
import queue
import sys
import threading
import time
import uuid

import grpc
from google.protobuf.message import DecodeError

from .. import __version__, contract
from ..sandbox import SandboxError
from ..sandbox.watch import WatchBackend
from ..v1 import isod_pb2 as pb
from ..v1 import isod_pb2_grpc as pb_grpc
from . import peers
from .session import Session, session_wants_zygote
from .zygote_handle import ZygoteHandle
from .zygote_pool import ZygotePool

MAX_ITEMS = 1_000_000
MAX_NODEID = 65536
MAX_TIMEOUT_S = 7 * 86400.0


class Reject(Exception):
    """A request the daemon will not serve; becomes a gRPC status for the client."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def validate_open(msg: pb.ClientMessage) -> pb.SessionOpen:
    if msg is None:
        raise Reject(grpc.StatusCode.INVALID_ARGUMENT, "the session stream ended before `open`")
    if msg.WhichOneof("kind") != "open":
        raise Reject(grpc.StatusCode.INVALID_ARGUMENT,
                     f"the first message of a session must be `open`, got `{msg.WhichOneof('kind')}`")
    o = msg.open
    for what, text in (("python", o.python), ("cwd", o.cwd), ("launch", o.launch),
                       *(("pytest_args", a) for a in o.pytest_args)):
        if "\0" in text:
            raise Reject(grpc.StatusCode.INVALID_ARGUMENT, f"open.{what} has a NUL byte: {text[:80]!r}")
    for key, value in o.env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise Reject(grpc.StatusCode.INVALID_ARGUMENT,
                         f"open.env has an entry no process can have: {key[:80]!r}={value[:80]!r}")
    if not o.python or not os.path.isabs(o.python):
        raise Reject(grpc.StatusCode.INVALID_ARGUMENT, f"open.python must be an absolute path, got {o.python!r}")
    if not os.access(o.python, os.X_OK) or os.path.isdir(o.python):
        raise Reject(grpc.StatusCode.INVALID_ARGUMENT, f"open.python {o.python!r} is not an executable file")
    if not o.cwd or not os.path.isdir(o.cwd):
        raise Reject(grpc.StatusCode.INVALID_ARGUMENT, f"open.cwd {o.cwd!r} is not a directory")
    if o.launch not in ("", "-m") and not (os.path.isabs(o.launch) and os.path.isfile(o.launch)):
        raise Reject(grpc.StatusCode.INVALID_ARGUMENT,
                     f"open.launch must be '-m' or the absolute path of a script, got {o.launch!r}")
    if o.workers > 256:
        raise Reject(grpc.StatusCode.INVALID_ARGUMENT, f"open.workers={o.workers} is more than 256")
    return o


def validate_run(run: pb.RunTests) -> None:
    if len(run.items) > MAX_ITEMS:
        raise Reject(grpc.StatusCode.INVALID_ARGUMENT, f"{len(run.items)} tests is more than {MAX_ITEMS}")
    seen = set()
    for it in run.items:
        if not it.nodeid or len(it.nodeid) > MAX_NODEID:
            raise Reject(grpc.StatusCode.INVALID_ARGUMENT, f"bad node id {it.nodeid[:80]!r}")
        if it.size not in (pb.SMALL, pb.MEDIUM, pb.LARGE, pb.XLARGE):
            raise Reject(grpc.StatusCode.INVALID_ARGUMENT,
                         f"test {it.nodeid!r} has an unknown size ({it.size}); known: small, medium, large, xlarge")
        if not 0 <= it.timeout_s <= MAX_TIMEOUT_S:   # also rejects NaN and inf
            raise Reject(grpc.StatusCode.INVALID_ARGUMENT, f"test {it.nodeid!r} has a bad timeout {it.timeout_s} "
                                                            f"(0 for none, at most {MAX_TIMEOUT_S:g} s)")
        if it.nodeid in seen:
            raise Reject(grpc.StatusCode.INVALID_ARGUMENT, f"test {it.nodeid!r} is listed twice")
        seen.add(it.nodeid)


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

    def prestart(self, path: str) -> None:
        """An embedded daemon is told at start which session it will serve:
        that session's zygote starts now (its interpreter, pytest and the
        collection), while the server starts and the client collects."""
        try:
            with open(path, "rb") as f:
                opened = validate_open(pb.ClientMessage(open=pb.SessionOpen.FromString(f.read())))
            if not session_wants_zygote(opened, self.backends):
                return
            z = ZygoteHandle(self.native, opened, worker_count=opened.workers or self.default_workers,
                             testrun_uid=uuid.uuid4().hex, limits=self.limits, on_collected=None,
                             on_output=lambda data, is_err: None, on_exit=lambda z: None)
        except (OSError, DecodeError, Reject, ValueError, SandboxError) as e:
            self.log(f"no zygote started ahead of the session: {e}")
            return
        self.zygotes.prestart(z)

    def Session(self, request_iterator, context):
        if not self.accepting:
            context.abort(grpc.StatusCode.UNAVAILABLE, "isod is shutting down; no new sessions")
        try:
            opened = validate_open(next(request_iterator, None))
        except Reject as r:
            self.log(f"rejected a session: {r}")
            context.abort(r.code, str(r))
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
                    context.abort(msg.code, str(msg))
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
                    raise Reject(grpc.StatusCode.INVALID_ARGUMENT, f"unexpected `{kind}` message mid-session")
            if session.items is None:
                raise Reject(grpc.StatusCode.INVALID_ARGUMENT,
                             "the client ended its requests before sending its tests (`run`)")
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

"""The daemon's handle on a session's zygote (worker/zygote.py).

The zygote is started like a worker of no class, unfiltered, under the native
backend (what its collection runs is recorded as any worker's collection).
Once it has collected it forks workers on request; this handle sends the
requests (with the worker's fds), tells each requester its worker's pid, and
routes the exit statuses the zygote reports to the worker's process handle.
The session kills it once it needs no more workers and the forked ones have
exited (a stopped zygote cannot hold the session up), or it dies: a request
it cannot answer any more fails, and the session starts fresh workers from
then on.
"""

from __future__ import annotations

import os
import select
import subprocess
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future

from google.protobuf.message import DecodeError

from .. import channel, watched
from ..sandbox.adopted import AdoptedProcess
from ..v1 import isod_pb2 as pb
from ..wire import event_to_pb
from .limits import LimitsConfig, TreeLimits
from .test_record import MAX_EVENTS
from .worker_start import ZYGOTE_NAME, identity_env, process_env, pytest_argv, zygote_key


class ForkFailed(Exception):
    """The zygote could not give this worker; ``refused``: it is alive but
    forking is unsafe in it (start fresh workers)."""

    def __init__(self, why: str, refused: bool = False) -> None:
        super().__init__(why)
        self.refused = refused


class ZygoteHandle:
    def __init__(self, backend, open_msg: pb.SessionOpen, *, worker_count: int, testrun_uid: str,
                 on_collected: Callable[[pb.Collected], None] | None, on_output: Callable[[bytes, bool], None],
                 on_exit: Callable[[ZygoteHandle], None], limits: LimitsConfig | None = None) -> None:
        self.on_collected, self.on_output, self.on_exit = on_collected, on_output, on_exit
        self.key = zygote_key(open_msg)
        self._delivered = False       # the collection went to a session's on_collected
        self._collection_outside: pb.OutsideTests | None = None
        self.collection: pb.Collected | None = None     # what it collected (a warm zygote's next session gets it)
        # a worker asked of it: a Future of its AdoptedProcess, or of ForkFailed
        self.on_log: Callable[[str], None] = lambda msg: None
        self.on_refused: Callable[[str], None] = lambda why: None
        self.on_outside: Callable[[pb.OutsideTests], None] = lambda outside: None
        self.refused = ""             # why it would not fork (the session starts fresh workers then)
        self.exited = False
        self.exit_status: int | None = None
        self.killed = False
        self._lock = threading.Lock()
        self._pending: OrderedDict[str, Future] = OrderedDict()
        self._procs: dict[int, AdoptedProcess] = {}
        self._early_exits: dict[int, int] = {}
        daemon_end, zygote_end = channel.pair()
        self.ctl = channel.Channel(daemon_end)
        # an xdist-shaped id (code that parses it at import must not break);
        # a read of it while collecting makes the zygote refuse to fork
        env = process_env(open_msg, identity_env("gw0", "", worker_count, testrun_uid))
        env["ISOD_WORKER_FD"] = env["ISOD_ZYGOTE_FD"] = str(zygote_end.fileno())
        try:
            self.box = backend.spawn(
                pytest_argv(open_msg), cwd=open_msg.cwd or None, env=env, pass_fds=(zygote_end.fileno(),),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        finally:
            zygote_end.close()
        self.pid = self.box.pid
        self.limits = TreeLimits(self.pid, limits)
        self.started_ns = time.monotonic_ns()
        self._thread = threading.Thread(target=self._read_loop, name="isod-zygote", daemon=True)
        self._thread.start()

    @property
    def collected(self) -> bool:
        return self.collection is not None

    @property
    def usable(self) -> bool:
        return not self.exited and not self.refused and not self.killed

    def fork(self, name: str, cls: str, env: dict[str, str], program: bytes, fds: list[int]) -> Future:
        """Ask for a worker: its AdoptedProcess once forked (ForkFailed says
        why not). The caller keeps its fds (the zygote gets copies)."""
        req: Future = Future()
        cmd = pb.ZygoteCommand(fork=pb.ForkWorker(name=name, worker_class=cls, env=env, filter=program))
        with self._lock:
            if not self.usable:
                req.set_exception(ForkFailed(self.refused or "the zygote has exited", refused=bool(self.refused)))
                return req
            self._pending[name] = req
            try:
                self.ctl.send_fds(cmd.SerializeToString(), fds)
            except OSError as e:
                del self._pending[name]
                req.set_exception(ForkFailed(f"the zygote cannot be reached: {e.strerror or e}"))
        return req

    def unchanged(self) -> bool:
        """Alive, forking, and everything its collection depends on as it was."""
        c = self.collection
        return c is not None and self.usable and watched.unchanged(c.watched, c.watched_mtime_ns, c.watched_dirs,
                                                                   c.watched_dir_digests)

    def kill(self) -> None:
        """Its end: it runs no test, and every worker it forked has exited (or is being killed)."""
        self.killed = True
        try:
            os.killpg(self.pid, 9)
        except (ProcessLookupError, PermissionError):
            pass
        self.box.kill()

    # --- reader thread ----------------------------------------------------
    def _read_loop(self) -> None:
        poller = select.poll()
        fds = {self.ctl.fileno(): None}
        for pipe, is_err in ((self.box.popen.stdout, False), (self.box.popen.stderr, True)):
            os.set_blocking(pipe.fileno(), False)
            fds[pipe.fileno()] = is_err
        for fd in fds:
            poller.register(fd, select.POLLIN)
        chan_open = True
        while chan_open or len(fds) > 1:
            for fd, _mask in poller.poll():
                if fd not in fds:
                    continue
                if fds[fd] is None:
                    chan_open = self._drain()
                    if not chan_open:
                        poller.unregister(fd)
                        del fds[fd]
                    continue
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if data:
                    self.on_output(data, fds[fd])
                else:
                    poller.unregister(fd)
                    del fds[fd]
        self._after_exit()

    def _drain(self) -> bool:
        """Handle what the zygote said; False once its channel is closed."""
        for raw in self.ctl.waiting():
            try:
                msg = pb.ZygoteEvent.FromString(raw)
            except DecodeError:       # only the zygote writes here: it is broken
                self.on_log(f"zygote: {len(raw)} bytes that are not a ZygoteEvent; killing it")
                self.kill()
                break
            kind = msg.WhichOneof("kind")
            if kind == "collected":
                self._collected(msg.collected)
            elif kind == "forked":
                proc = AdoptedProcess(msg.forked.pid)
                with self._lock:
                    self._procs[proc.pid] = proc
                    if proc.pid in self._early_exits:
                        proc.set_status(self._early_exits.pop(proc.pid))
                    req = self._pending.pop(msg.forked.name, None)
                if req is not None:
                    req.set_result(proc)
            elif kind == "exited":
                with self._lock:
                    proc = self._procs.pop(msg.exited.pid, None)
                    if proc is None:
                        self._early_exits[msg.exited.pid] = msg.exited.status
                if proc is not None:
                    proc.set_status(msg.exited.status)
            elif kind == "refused":
                with self._lock:
                    self.refused = msg.refused.reason
                    req = self._pending.popitem(last=False)[1] if self._pending else None
                self.on_log(f"zygote refused to fork: {msg.refused.reason}")
                self.on_refused(msg.refused.reason)
                if req is not None:
                    req.set_exception(ForkFailed(msg.refused.reason, refused=True))
        return not self.ctl.closed

    def _collected(self, collection: pb.Collected) -> None:
        """Its collection, and what its start and collection ran (reported
        as a worker's collection is; what it does later is forking workers:
        ours). Kept until a session binds it (a zygote started before its
        session: bind)."""
        self.box.settle()
        if self.box.unfollow is not None:
            self.box.unfollow()
        events = [event_to_pb(ev, "collection", (ev.t_ns - self.started_ns) / 1e9)
                  for ev in self.box.take_events()[:MAX_EVENTS]]
        with self._lock:
            self.collection = collection
            self._collection_outside = pb.OutsideTests(worker=ZYGOTE_NAME, events=events) if events else None
        self._deliver()

    def bind(self, on_collected: Callable[[pb.Collected], None], on_outside: Callable[[pb.OutsideTests], None]) -> None:
        """A session takes this zygote: its collection (now, if it came
        before) and what the collection ran go to the session."""
        with self._lock:
            self.on_collected, self.on_outside = on_collected, on_outside
        self._deliver()

    def _deliver(self) -> None:
        """The collection to the bound session, once."""
        with self._lock:
            due = self.collection is not None and self.on_collected is not None and not self._delivered
            self._delivered = self._delivered or due
            on_collected, on_outside = self.on_collected, self.on_outside
        if due:
            if self._collection_outside is not None:
                on_outside(self._collection_outside)
            on_collected(self.collection)

    def _after_exit(self) -> None:
        status = self.exit_status = self.box.wait_after_close(self.kill)
        with self._lock:
            self.exited = True
            pending = list(self._pending.items())
            self._pending.clear()
        left = self.limits.sweep()
        self.limits.close()
        if left:
            self.on_log(f"zygote: killed {len(left)} leftover process(es)")
        self.ctl.close()
        for pipe in (self.box.popen.stdout, self.box.popen.stderr):
            pipe.close()
        self.box.take_events()
        self.box.release()
        self.on_exit(self)      # first: the session's error says why the zygote died
        for name, req in pending:
            req.set_exception(ForkFailed(f"the zygote exited (status {status}) before forking {name}"))

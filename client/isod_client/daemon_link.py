"""Reaching a daemon: the configured one, or a private embedded `isod serve`.

The session stream is opened from a background thread as soon as pytest
starts, so the daemon (and its workers' collection) starts while the client
collects; `RunTests` follows when the client's collection is done.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from isod.contract import EMBEDDED_DIR_PREFIX
from isod.v1 import isod_pb2 as pb
from isod.v1 import isod_pb2_grpc as pb_grpc

START_TIMEOUT = 30.0      # an embedded daemon we started
WATCH_PERIOD_S = 0.5      # how often the client looks whether its embedded daemon was stopped
CONNECT_TIMEOUT = 10.0    # a configured one, which should be up already
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 256 << 20),
    ("grpc.max_send_message_length", 256 << 20),
    ("grpc.keepalive_time_ms", 5000),
    ("grpc.keepalive_timeout_ms", 5000),
    ("grpc.keepalive_permit_without_calls", 1),
    # the embedded daemon's socket appears ~0.3 s after we start it: retry
    # quickly instead of gRPC's default 1 s backoff
    ("grpc.initial_reconnect_backoff_ms", 20),
    ("grpc.min_reconnect_backoff_ms", 20),
    ("grpc.max_reconnect_backoff_ms", 200),
]


TOKEN_ENV = "ISOD_TOKEN"


class LinkError(Exception):
    """The daemon could not be reached or started; the message says which and why."""


class EmbeddedDaemon:
    """A private `isod serve` on a temporary Unix socket, for this run only."""

    def __init__(self, backend: str | None, workers: int | None) -> None:
        self.dir = tempfile.mkdtemp(prefix=EMBEDDED_DIR_PREFIX)
        os.chmod(self.dir, 0o700)
        self.target = "unix://" + os.path.join(self.dir, "isod.sock")
        self.log_path = os.path.join(self.dir, "daemon.log")
        self.backend, self.workers = backend, workers
        self.proc: subprocess.Popen | None = None
        self.resumed = 0            # times something stopped the daemon and the watchdog continued it
        self._stopping = threading.Event()

    def start(self, session: pb.SessionOpen) -> None:
        """Start it with the session it will serve: it starts that session's
        zygote (imports pytest, collects) while it starts its own server."""
        prestart = os.path.join(self.dir, "session.pb")
        with open(prestart, "wb") as f:
            f.write(session.SerializeToString())
        argv = [sys.executable, "-m", "isod", "serve", "--listen", self.target, "--exit-with-parent", str(os.getpid()),
                "--prestart", prestart]
        if self.backend:
            argv += ["--backend", self.backend]
        if self.workers:
            argv += ["--workers", str(self.workers)]
        env = dict(os.environ)
        env.pop("ISOD_TARGET", None)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, env=env)
        threading.Thread(target=self._watch, name="isod-embedded-watch", daemon=True).start()

    def _watch(self) -> None:
        """A test can SIGSTOP its worker's parent, the daemon (same uid): the
        session would then wait forever. Ours, we continue it."""
        stat = f"/proc/{self.proc.pid}/stat"
        while not self._stopping.wait(WATCH_PERIOD_S):
            try:
                with open(stat, "rb") as f:
                    state = f.read().rpartition(b")")[2].split()[0]
            except (OSError, IndexError):
                return
            if state in (b"T", b"t"):
                self.resumed += 1
                try:
                    os.kill(self.proc.pid, signal.SIGCONT)
                except ProcessLookupError:
                    return

    def log_tail(self, n: int = 2000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace").strip()
        except OSError:
            return ""

    def stop(self, graceful: bool = True) -> None:
        """SIGTERM (its workers get the grace period), or SIGKILL when the
        session already ended and no worker is left to look after."""
        self._stopping.set()
        if self.proc is None:           # never started (the session did not open)
            shutil.rmtree(self.dir, ignore_errors=True)
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_healthy(channel: grpc.Channel, timeout: float, daemon: EmbeddedDaemon | None,
                 closing: threading.Event | None = None, lock: threading.Lock | None = None) -> None:
    """Until the daemon answers SERVING. With ``closing``/``lock`` (the
    link's), no call starts on a channel that is being closed."""
    lock = lock or threading.Lock()
    with lock:
        stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if daemon is not None and daemon.proc.poll() is not None:
            raise LinkError(f"the embedded isod daemon exited with status {daemon.proc.returncode}:\n"
                            f"{daemon.log_tail()}")
        try:
            with lock:
                if closing is not None and closing.is_set():
                    raise LinkError("the run ended before the daemon answered")
                call = stub.Check.future(health_pb2.HealthCheckRequest(service=""), timeout=1, wait_for_ready=True)
            reply = call.result()
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
            last = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        except grpc.RpcError as e:
            last = f"{e.code().name}: {e.details()}"
        time.sleep(0.02)
    raise LinkError(f"the isod daemon did not become healthy within {timeout:.0f} s ({last})")


class Link:
    """One session stream: `send` client messages, iterate `responses`."""

    def __init__(self, target: str | None, token: str | None, backend: str | None, workers: int | None) -> None:
        self.daemon = None if target else EmbeddedDaemon(backend, workers)
        self.target = target or self.daemon.target
        self.token = token
        self.tls_ca: str | None = None   # a PEM CA file: connect with TLS (--isod-tls-ca)
        self._out: queue.SimpleQueue = queue.SimpleQueue()
        self.channel: grpc.Channel | None = None
        self.responses = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._closing = threading.Event()
        self._opener: threading.Thread | None = None
        self._channel_lock = threading.Lock()      # a call starts on the channel, or the channel closes

    def open_async(self, open_msg: pb.SessionOpen) -> None:
        if self.daemon is not None:
            session = pb.SessionOpen()
            session.CopyFrom(open_msg)
            session.env.pop(TOKEN_ENV, None)
            self.daemon.start(session)
        self._opener = threading.Thread(target=self._open, args=(open_msg,), name="isod-link", daemon=True)
        self._opener.start()

    def _open(self, open_msg: pb.SessionOpen) -> None:
        try:
            if self.daemon is None and self.target.startswith("unix://") and not os.path.exists(self.target[7:]):
                raise LinkError(f"no socket at {self.target[7:]} (is `isod serve` running there?)")
            with self._channel_lock:
                if self._closing.is_set():
                    raise LinkError("the run ended before the session opened")
                self.channel = self._channel()
            wait_healthy(self.channel, START_TIMEOUT if self.daemon else CONNECT_TIMEOUT, self.daemon, self._closing,
                         self._channel_lock)
            metadata = [("authorization", f"Bearer {self.token}")] if self.token else None
            open_msg.env.pop(TOKEN_ENV, None)   # workers get the client's environment: not its credential
            self._out.put(pb.ClientMessage(open=open_msg))
            with self._channel_lock:
                if self._closing.is_set():
                    raise LinkError("the run ended before the session opened")
                self.responses = pb_grpc.IsodStub(self.channel).Session(self._requests(), metadata=metadata)
        except BaseException as e:   # reported by wait_open in the main thread
            self.error = e
        finally:
            self._ready.set()

    def _channel(self) -> grpc.Channel:
        if not self.tls_ca:
            return grpc.insecure_channel(self.target, options=CHANNEL_OPTIONS)
        try:
            with open(self.tls_ca, "rb") as f:
                ca = f.read()
        except OSError as e:
            raise LinkError(f"cannot read --isod-tls-ca {self.tls_ca}: {e.strerror}") from None
        return grpc.secure_channel(self.target, grpc.ssl_channel_credentials(root_certificates=ca),
                                   options=CHANNEL_OPTIONS)

    def wait_open(self) -> None:
        self._ready.wait()
        if self.error is not None:
            raise self.error

    def _requests(self):
        while True:
            msg = self._out.get()
            if msg is None:
                return
            yield msg

    def send(self, msg: pb.ClientMessage) -> None:
        self._out.put(msg)

    def close(self, session_ended: bool = False) -> None:
        """The link thread may still be opening (a run that ended at once, a
        usage error): no call is made on the channel once it is closed (gRPC's
        C core crashed on that)."""
        self._closing.set()
        self._out.put(None)
        with self._channel_lock:
            if self.responses is not None:
                self.responses.cancel()
            if self.channel is not None:
                self.channel.close()       # cancels a health check in flight
        if self._opener is not None:
            # not still running in gRPC while the interpreter exits (a crash in its C core)
            self._opener.join(5)
        if self.daemon is not None:
            self.daemon.stop(graceful=not session_ended)

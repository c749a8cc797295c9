"""Reaching a daemon: the configured one, or the private embedded `isod serve`
(embedded.py, started before this module imports gRPC).

The session stream is opened from a background thread as soon as pytest
starts; the client waits for the session's collection, then sends `RunTests`.
"""

from __future__ import annotations

import os
import queue
import threading
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from isod.v1 import isod_pb2 as pb
from isod.v1 import isod_pb2_grpc as pb_grpc

from .embedded import EmbeddedDaemon

TOKEN_ENV = "ISOD_TOKEN"
START_TIMEOUT = 30.0      # an embedded daemon we started
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


class LinkError(Exception):
    """The daemon could not be reached or started; the message says which and why."""


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

    def __init__(self, target: str | None, token: str | None, daemon: EmbeddedDaemon | None = None) -> None:
        """``daemon``: the embedded one, already started (embedded.py), when no target is given."""
        self.daemon = daemon
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

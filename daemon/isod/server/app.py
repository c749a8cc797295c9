"""`isod serve`: the gRPC server, its address, health, and graceful stop."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from .. import EMBEDDED_DIR_PREFIX
from ..sandbox import open_backend
from ..sandbox.watch import WatchBackend
from ..v1 import isod_pb2 as pb
from ..v1 import isod_pb2_grpc as pb_grpc
from .auth import TokenInterceptor, read_token, tls_credentials
from .limits import LimitsConfig, remove_stale_cgroups
from .service import IsodService
from .session import default_workers

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Isod"].full_name
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
MAX_MESSAGE = 256 << 20


def log(msg: str) -> None:
    sys.stderr.write(f"isod[{os.getpid()}] {time.strftime('%H:%M:%S')} {msg}\n")
    sys.stderr.flush()


def default_listen() -> str:
    """A Unix socket in a 0700 directory of this user's."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    d = os.path.join(base, f"isod-{os.getuid()}")
    os.makedirs(d, mode=0o700, exist_ok=True)
    st = os.stat(d)
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise SystemExit(f"isod serve: {d} must be owned by uid {os.getuid()} with mode 0700")
    return "unix://" + os.path.join(d, "isod.sock")


def unix_path(listen: str) -> str | None:
    return listen[len("unix://"):] if listen.startswith("unix://") else None


def kernel_features() -> dict[str, bool]:
    from ..sandbox.kernel import SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV  # noqa: F401

    actions = ""
    try:
        with open("/proc/sys/kernel/seccomp/actions_avail") as f:
            actions = f.read()
    except OSError:
        pass
    release = tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2] if x.isdigit())
    return {
        "seccomp_user_notif": "user_notif" in actions,
        "seccomp_ret_trace": "trace" in actions,
        "wait_killable_recv": release >= (5, 19),
        "pidfd": release >= (5, 3),
    }


def serve(listen: str | None, workers: int | None, backend_name: str, token_file: str | None,
          exit_with_parent: int | None = None, grace: float = 10.0,
          tls_cert: str | None = None, tls_key: str | None = None, limits: str = "") -> int:
    if exit_with_parent:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != exit_with_parent:
            return 0   # the parent is already gone
    # a same-uid test must not ptrace the daemon or read its memory
    ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)

    listen = listen or default_listen()
    path = unix_path(listen)
    token = read_token(token_file) if token_file else None
    tls = tls_credentials(tls_cert, tls_key)
    if path is None and token is None:
        raise SystemExit("isod serve: listening on TCP needs --token-file (anyone could run commands otherwise)")
    if path is not None:
        if not os.path.isabs(path):
            raise SystemExit(f"isod serve: unix socket path must be absolute: {listen}")
        parent = os.path.dirname(path)
        if os.stat(parent).st_mode & 0o077:
            log(f"warning: {parent} is accessible to other users; prefer a 0700 directory")
        if os.path.exists(path):
            os.unlink(path)

    try:
        limits_config = LimitsConfig.parse(limits)
    except ValueError as e:
        raise SystemExit(f"isod serve: --limits: {e}") from None
    for pid, cmd in remove_stale_cgroups():
        log(f"killed {pid} ({cmd}), left in the cgroup of a daemon that died")
    backend = open_backend(backend_name)
    native = WatchBackend()
    nworkers = workers or default_workers()
    service = IsodService(backend, log, nworkers, listen, kernel_features(), limits_config, native=native)
    interceptors = [TokenInterceptor(token, log)] if token else []
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=256, thread_name_prefix="isod-grpc"),
        interceptors=interceptors, maximum_concurrent_rpcs=200,
        options=[("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE),
                 # clients ping every 5 s to notice a dead daemon; gRPC's server default
                 # (one ping per 5 min without data) would end a quiet session with "too many pings"
                 ("grpc.http2.min_recv_ping_interval_without_data_ms", 4000),
                 ("grpc.http2.max_ping_strikes", 0),
                 ("grpc.keepalive_permit_without_calls", 1)],
    )
    pb_grpc.add_IsodServicer_to_server(service, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    try:
        port = server.add_secure_port(listen, tls) if tls else server.add_insecure_port(listen)
    except RuntimeError as e:
        raise SystemExit(f"isod serve: cannot listen on {listen}: {e}") from None
    if path is None and port == 0:
        raise SystemExit(f"isod serve: cannot listen on {listen}")
    if path is None:
        listen = service.listen = f"{listen.rsplit(':', 1)[0]}:{port}"   # HOST:0 picks a free port: say which
    server.start()
    if path is not None:
        os.chmod(path, 0o600)
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reason = getattr(backend, "reason", "")
    security = (" (TLS)" if tls else "") + (" (bearer token required)" if token else "")
    log(f"serving on {listen}{security} (backend {backend.name}{': ' + reason if reason else ''}; "
        f"medium and larger tests: {native.reason}; {nworkers} workers per session)")

    stopping = threading.Event()

    def on_signal(signum, _frame):
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stopping.wait()
    log(f"stopping: no new sessions; running tests get {grace:g} s")
    service.accepting = False
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    done = server.stop(grace)
    deadline = time.monotonic() + grace
    while service.sessions and time.monotonic() < deadline:
        time.sleep(0.05)
    for s in list(service.sessions.values()):
        s.abort()
    done.wait(grace + 1)
    backend.close()
    native.close()
    if path is not None and os.path.exists(path):
        os.unlink(path)
    log("stopped")
    if exit_with_parent and path is not None and os.getppid() != exit_with_parent:
        # an embedded daemon whose client died (SIGKILL): the client cannot
        # remove the private directory it made for us any more
        parent = os.path.dirname(path)
        if os.path.basename(parent).startswith(EMBEDDED_DIR_PREFIX):
            shutil.rmtree(parent, ignore_errors=True)
    return 0

"""The gRPC server of `isod serve`: its options, health and reflection, and
its graceful stop (running tests get the grace period, then their sessions
end and every process of theirs is killed)."""

from __future__ import annotations

import os
import time
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ..v1 import isod_pb2 as pb
from ..v1 import isod_pb2_grpc as pb_grpc
from .auth import TokenInterceptor
from .options import UsageError
from .service import IsodService

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Isod"].full_name
MAX_MESSAGE = 256 << 20


def serve_grpc(service: IsodService, listen: str, path: str | None, tls, token: str | None, grace: float,
               stopping, log) -> int:
    """Serve until ``stopping`` is set; 0 once stopped."""
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
        raise UsageError(f"--listen: cannot listen on {listen}: {e}") from None
    if path is None and port == 0:
        raise UsageError(f"--listen: cannot listen on {listen}")
    if path is None:
        listen = service.listen = f"{listen.rsplit(':', 1)[0]}:{port}"   # HOST:0 picks a free port: say which
    server.start()
    if path is not None:
        os.chmod(path, 0o600)
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reason = getattr(service.backend, "reason", "")
    security = (" (TLS)" if tls else "") + (" (bearer token required)" if token else "")
    log(f"serving on {listen}{security} (backend {service.backend.name}{': ' + reason if reason else ''}; "
        f"medium and larger tests: {service.native.reason}; {service.default_workers} workers per session)")

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
    service.zygotes.close()
    done.wait(grace + 1)
    service.backend.close()
    service.native.close()
    if path is not None and os.path.exists(path):
        os.unlink(path)
    log("stopped")
    return 0

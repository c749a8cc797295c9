"""`isod serve` as a process: address, status, health, reflection, graceful stop, session log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from harness.daemon import Daemon, run_pytest
from isod.v1 import isod_pb2 as pb
from isod.v1 import isod_pb2_grpc as pb_grpc

pytestmark = pytest.mark.large


@pytest.fixture
def own_daemon():
    d = Daemon(workers=1)
    yield d
    d.stop()


def test_status_health_and_reflection(own_daemon):
    with grpc.insecure_channel(own_daemon.target) as ch:
        st = pb_grpc.IsodStub(ch).Status(pb.StatusRequest(), timeout=5)
        assert st.backend == "seccomp" and st.pid == own_daemon.proc.pid and st.listen == own_daemon.target
        assert st.kernel_features["seccomp_user_notif"] is True
        assert st.sessions == 0 and st.workers == 0
        for service in ("", "isod.v1.Isod"):
            h = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert h.status == health_pb2.HealthCheckResponse.SERVING
        reply = next(reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5))
        names = {s.name for s in reply.list_services_response.service}
        assert {"isod.v1.Isod", "grpc.health.v1.Health"} <= names
    st_mode = os.stat(own_daemon.target[len("unix://"):]).st_mode & 0o777
    assert st_mode == 0o600


def test_cli_status_prints_json(own_daemon):
    out = subprocess.run([sys.executable, "-m", "isod", "status", "--target", own_daemon.target],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and '"backend": "seccomp"' in out.stdout


def test_session_log_lines(own_daemon, tmp_path):
    r = run_pytest(tmp_path, {"test_a.py": "def test_a(): pass\ndef test_b(): pass\n"}, "-q",
                   target=own_daemon.target)
    assert r.rc == 0
    log = own_daemon.log_text()
    assert "serving on " + own_daemon.target in log
    assert "session s1 start: 1 workers" in log
    assert "session s1 end: 2 results, 1 workers, 0 crashes" in log


def test_sigterm_stops_gracefully_and_removes_the_socket(tmp_path):
    d = Daemon(workers=1, extra=("--grace", "5"))
    (tmp_path / "test_slow.py").write_text("import time, pytest\n@pytest.mark.medium\ndef test_slow():\n"
                                           "    time.sleep(1)\n")
    client = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "isod_client", "-p", "no:cacheprovider",
                               f"--isod-target={d.target}"], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while "session s1 start" not in d.log_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    d.proc.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    with grpc.insecure_channel(d.target) as ch, pytest.raises(grpc.RpcError) as refused:
        list(pb_grpc.IsodStub(ch).Session(iter([pb.ClientMessage(open=pb.SessionOpen(
            python=sys.executable, cwd=str(tmp_path)))]), timeout=5))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE   # no new session while stopping
    out, _ = client.communicate(timeout=60)
    assert d.proc.wait(30) == 0
    assert "1 passed" in out, out            # the running test finished within the grace period
    assert not os.path.exists(d.target[len("unix://"):])
    assert "stopping: no new sessions" in d.log_text() and "stopped" in d.log_text()
    d.stop()


def test_tcp_without_token_is_refused():
    p = subprocess.run([sys.executable, "-m", "isod", "serve", "--listen", "127.0.0.1:0"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and "needs --token-file" in p.stderr

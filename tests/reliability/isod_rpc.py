"""Talking to a real `isod serve` directly over gRPC, without the pytest client:
for fault injection, load, soak and fuzzing (tests/reliability, tests/security).

Import as ``from reliability.isod_rpc import ...`` (tests/ is on sys.path).
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc
from isod.v1 import isod_pb2 as pb
from isod.v1 import isod_pb2_grpc as pb_grpc

_SERVING = re.compile(r"serving on (\S+)")


class Serve:
    """`isod serve ARGS`, waited for until it logs its address (any listener kind)."""

    def __init__(self, *args: str, workers: int = 2, wait: bool = True) -> None:
        self._kept: str | None = None     # the log, once stop() removed the directory
        self.dir = tempfile.mkdtemp(prefix="isod-rel-")
        os.chmod(self.dir, 0o700)
        self.log_path = os.path.join(self.dir, "log")
        if "--listen" not in args:
            args = ("--listen", f"unix://{self.dir}/isod.sock", *args)
        self._log = open(self.log_path, "wb")   # noqa: SIM115 (the daemon writes it until stop())
        self.proc = subprocess.Popen([sys.executable, "-m", "isod", "serve", "--workers", str(workers), *args],
                                     stdout=self._log, stderr=self._log, stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid
        self.target = ""
        if wait:
            deadline = time.monotonic() + 20
            while not (m := _SERVING.search(self.log_text())):
                assert self.proc.poll() is None, f"isod serve exited {self.proc.returncode}:\n{self.log_text()}"
                assert time.monotonic() < deadline, f"isod serve did not start:\n{self.log_text()}"
                time.sleep(0.02)
            self.target = m.group(1)

    def log_text(self) -> str:
        if self._kept is not None:
            return self._kept          # stopped: its directory is gone
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_log(self, needle: str, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while needle not in self.log_text():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def warm_zygotes(self) -> list[psutil.Process]:
        """Collected zygotes the daemon keeps for the next run (--warm-zygotes)."""
        out = []
        for p in self.descendants():
            try:
                if p.ppid() == self.pid and "ISOD_ZYGOTE_FD" in p.environ() and not p.children():
                    out.append(p)
            except psutil.Error:
                pass
        return out

    def session_processes(self) -> list[psutil.Process]:
        """What is left of sessions: everything under the daemon but its warm zygotes."""
        warm = {p.pid for p in self.warm_zygotes()}
        return [p for p in self.descendants() if p.pid not in warm]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        if self._kept is None:
            self._kept = self.log_text()
            shutil.rmtree(self.dir, ignore_errors=True)


def channel(target: str, ca: bytes | None = None) -> grpc.Channel:
    if ca is None:
        return grpc.insecure_channel(target)
    return grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=ca))


def healthy(target: str, ca: bytes | None = None, timeout: float = 5.0) -> bool:
    with channel(target, ca) as ch:
        try:
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def open_msg(cwd: Path | str, *pytest_args: str, workers: int = 1, **kw) -> pb.ClientMessage:
    env = dict(os.environ)
    env.pop("ISOD_TARGET", None)
    return pb.ClientMessage(open=pb.SessionOpen(
        python=sys.executable, cwd=str(cwd), env=env,
        pytest_args=["-p", "no:cacheprovider", "-q", *pytest_args], workers=workers, **kw))


def items(nodeids, size=pb.MEDIUM, timeout_s: float = 60.0) -> pb.ClientMessage:
    return pb.ClientMessage(run=pb.RunTests(items=[pb.TestItem(nodeid=n, size=size, timeout_s=timeout_s)
                                                   for n in nodeids]))


FINISH = pb.ClientMessage(finish=pb.Finish())


@dataclass
class SessionOutcome:
    ready: pb.SessionReady | None = None
    results: list[pb.TestResult] = field(default_factory=list)
    end: pb.SessionEnd | None = None
    code: grpc.StatusCode = grpc.StatusCode.OK
    details: str = ""

    def outcomes(self) -> dict[str, str]:
        """nodeid -> passed / failed / interrupted (from the call phase report)."""
        import json
        out = {}
        for r in self.results:
            if r.HasField("interruption"):
                out[r.nodeid] = "interrupted"
                continue
            phases = {p.when: p.outcome or json.loads(p.report_json)["outcome"] for p in r.reports}   # plain, or JSON
            out[r.nodeid] = "failed" if "failed" in phases.values() else phases.get("call", "?")
        return out


class Stream:
    """One Session stream: `send` messages (or close the sending side), `collect` the answers."""

    def __init__(self, target: str, metadata=None, ca: bytes | None = None) -> None:
        self.channel = channel(target, ca)
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self.call = pb_grpc.IsodStub(self.channel).Session(self._requests(), metadata=metadata)

    def _requests(self):
        while (msg := self._q.get()) is not None:
            yield msg

    def send(self, *msgs: pb.ClientMessage) -> Stream:
        for m in msgs:
            self._q.put(m)
        return self

    def close_sending(self) -> None:
        self._q.put(None)

    def collect(self, timeout: float = 60.0) -> SessionOutcome:
        out = SessionOutcome()
        timer = threading.Timer(timeout, self.call.cancel)
        timer.start()
        try:
            for msg in self.call:
                kind = msg.WhichOneof("kind")
                if kind == "ready":
                    out.ready = msg.ready
                elif kind == "result":
                    out.results.append(msg.result)
                elif kind == "results":    # the daemon batches results that are ready together
                    out.results.extend(msg.results.results)
                elif kind == "end":
                    out.end = msg.end
        except grpc.RpcError as e:
            out.code, out.details = e.code(), e.details() or ""
        finally:
            timer.cancel()
            self.close_sending()
            self.channel.close()
        return out


def run_session(target: str, cwd: Path, nodeids, *pytest_args: str, workers: int = 1, size=pb.MEDIUM,
                timeout: float = 60.0) -> SessionOutcome:
    s = Stream(target).send(open_msg(cwd, *pytest_args, workers=workers), items(nodeids, size), FINISH)
    return s.collect(timeout)


def write_tests(directory: Path, name: str, count: int, body: str = "pass") -> list[str]:
    """A module of `count` trivial tests; their node ids."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [f"def test_{i:04d}():\n    {body}\n" for i in range(count)]
    (directory / name).write_text("\n".join(lines))
    return [f"{name}::test_{i:04d}" for i in range(count)]


def wait_until(pred, timeout: float = 10.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)

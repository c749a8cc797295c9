"""The compared ways to run a suite, each timed as a user would see it.

Every runner is a fresh `python -m pytest` process with plugin autoloading off
and its plugins named with -p, so that a runner pays only for what it uses
(pytest-test-categories and pytest-xdist sit in the same bench venv). A run
counts only if pytest's closing line has exactly the outcome counts the suite
must give: a broken runner cannot look fast.
"""

from __future__ import annotations

import importlib.util
import os
import re
import resource
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from suites import Suite


@dataclass(frozen=True)
class Runner:
    key: str
    label: str
    args: Callable[[Context], list[str]]
    needs: tuple[str, ...] = ()             # importable modules the runner needs
    backend: str | None = None              # isod sandbox backend it needs
    prestarted: bool = False                # runs against Context.daemon
    probe_expect: dict = field(default_factory=dict)   # outcome on the spawn probe
    env: dict = field(default_factory=dict)             # set in the run's environment


@dataclass
class Context:
    python: str
    daemon: PreDaemon | None = None


# strict is isod's default (the enforcement probe checks it is on); the option itself is
# only registered when pytest-test-categories is not installed, so it is not passed here
ISOD = ("-p", "isod_client")
ISOD_CAUGHT = {"failed": 2}                 # both escapes fail under isod strict

RUNNERS: dict[str, Runner] = {r.key: r for r in (
    Runner("plain", "plain pytest", lambda c: [], probe_expect={"passed": 2}),
    Runner("tc-strict", "pytest-test-categories strict",
           lambda c: ["-p", "test_categories", "--test-categories-enforcement=strict"],
           needs=("pytest_test_categories",), probe_expect={"failed": 1, "passed": 1}),
    Runner("xdist", "pytest-xdist -n 2", lambda c: ["-p", "xdist", "-n", "2"], needs=("xdist",),
           probe_expect={"passed": 2}),
    Runner("isod", "isod strict, seccomp (embedded daemon)", lambda c: [*ISOD, "--isod-backend", "seccomp"],
           backend="seccomp", probe_expect=ISOD_CAUGHT),
    Runner("isod-fresh", "isod strict, seccomp, fresh workers (no zygote: each collects)",
           lambda c: [*ISOD, "--isod-backend", "seccomp"], backend="seccomp", probe_expect=ISOD_CAUGHT,
           env={"ISOD_ZYGOTE": "0"}),
    Runner("isod-ptrace", "isod strict, ptrace (embedded daemon)", lambda c: [*ISOD, "--isod-backend", "ptrace"],
           backend="ptrace", probe_expect=ISOD_CAUGHT),
    Runner("isod-w1", "isod strict, seccomp, --isod-workers 1",
           lambda c: [*ISOD, "--isod-backend", "seccomp", "--isod-workers", "1"], backend="seccomp",
           probe_expect=ISOD_CAUGHT),
    Runner("isod-w2", "isod strict, seccomp, --isod-workers 2",
           lambda c: [*ISOD, "--isod-backend", "seccomp", "--isod-workers", "2"], backend="seccomp",
           probe_expect=ISOD_CAUGHT),
    Runner("isod-daemon", "isod strict, seccomp, pre-started `isod serve`",
           lambda c: [*ISOD, f"--isod-target={c.daemon.target}"], backend="seccomp", prestarted=True,
           probe_expect=ISOD_CAUGHT),
)}


def unavailable(r: Runner) -> str | None:
    """Why the runner cannot run in this interpreter, or None."""
    missing = [m for m in r.needs if importlib.util.find_spec(m) is None]
    if missing:
        return f"n/a ({', '.join(missing)} not installed)"
    if r.backend is not None:
        try:
            from isod.sandbox.backends import BACKENDS
        except ImportError:
            return "n/a (isod not importable)"
        if r.backend not in BACKENDS:
            return "n/a (backend not available)"
    return None


def pytest_env() -> dict[str, str]:
    # PYTHONDONTWRITEBYTECODE (set in some CI and sandbox shells) is dropped:
    # a user's pytest keeps its rewritten test modules cached, and without the
    # cache every process (isod's client and each worker) pays the rewrite again
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "ISOD_TARGET", "ISOD_TOKEN", "ISOD_BACKEND",
                        "PYTHONDONTWRITEBYTECODE")}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return env


_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected)\b")


def outcome(output: str) -> dict[str, int]:
    """Counts from pytest's closing line ('2000 passed in 2.04s')."""
    for line in reversed(output.strip().splitlines()):
        found = _COUNT.findall(line)
        if found and " in " in line:
            return {("error" if k.startswith("error") else k): int(n) for n, k in found}
    return {}


@dataclass
class Run:
    wall: float
    cpu: float              # user+sys of the whole process tree (client, daemon, workers)
    counts: dict[str, int]
    ok: bool
    output: str


def run_once(runner: Runner, suite: Suite, ctx: Context, expect: dict | None = None,
             timeout: float = 600, extra: tuple[str, ...] = ()) -> Run:
    argv = [ctx.python, "-m", "pytest", *runner.args(ctx), *extra]
    expect = suite.expect if expect is None else expect
    before = _tree_cpu(ctx.daemon if runner.prestarted else None)
    t = time.perf_counter()
    p = subprocess.run(argv, cwd=suite.path, env={**pytest_env(), **runner.env}, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=timeout, check=False)
    wall = time.perf_counter() - t
    cpu = _tree_cpu(ctx.daemon if runner.prestarted else None) - before
    out = p.stdout.decode(errors="replace")
    counts = outcome(out)
    ok = counts == expect and p.returncode == (0 if set(expect) <= {"passed", "skipped"} else 1)
    return Run(wall, cpu, counts, ok, out)


def _tree_cpu(daemon: PreDaemon | None) -> float:
    """CPU seconds of our reaped children (a run's client reaps its embedded daemon,
    which reaps its workers), plus the pre-started daemon's own and its reaped workers'."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = ru.ru_utime + ru.ru_stime
    if daemon is not None:
        total += daemon.cpu()
    return total


class PreDaemon:
    """`isod serve` started ahead of the runs, on a private Unix socket."""

    def __init__(self, python: str, backend: str = "seccomp", workers: int | None = None) -> None:
        self.dir = tempfile.mkdtemp(prefix="isod-bench-")
        os.chmod(self.dir, 0o700)
        self.target = f"unix://{self.dir}/isod.sock"
        self.log = open(os.path.join(self.dir, "daemon.log"), "wb")  # noqa: SIM115 (closed in stop)
        argv = [python, "-m", "isod", "serve", "--listen", self.target, "--backend", backend]
        if workers:
            argv += ["--workers", str(workers)]
        t = time.perf_counter()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
                                     env=pytest_env())
        self._wait_healthy()
        self.startup_s = time.perf_counter() - t

    def _wait_healthy(self) -> None:
        """Until the socket exists, then until the health check says SERVING (with a short reconnect
        backoff: gRPC's default waits 1 s after a failed connect, which would be timed as daemon start)."""
        import grpc
        from isod_client.daemon_link import wait_healthy
        path = self.target[len("unix://"):]
        deadline = time.monotonic() + 30
        while not os.path.exists(path):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"isod serve did not start (status {self.proc.poll()}); log in {self.dir}")
            time.sleep(0.002)
        opts = [("grpc.initial_reconnect_backoff_ms", 10), ("grpc.min_reconnect_backoff_ms", 10),
                ("grpc.max_reconnect_backoff_ms", 50)]
        with grpc.insecure_channel(self.target, options=opts) as ch:
            wait_healthy(ch, 30, None)

    def cpu(self) -> float:
        import psutil
        try:
            t = psutil.Process(self.proc.pid).cpu_times()
        except psutil.Error:
            return 0.0
        return t.user + t.system + t.children_user + t.children_system

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def startup_time(python: str, runs: int) -> list[float]:
    """Seconds from `isod serve` to a healthy gRPC server, per start."""
    out = []
    for _ in range(runs):
        d = PreDaemon(python)
        out.append(d.startup_s)
        d.stop()
    return out


def describe_failure(run: Run, expect: dict) -> str:
    tail = "\n".join(run.output.strip().splitlines()[-15:])
    return f"expected {expect or 'no tests'}, got {run.counts or 'no summary line'}:\n{tail}"

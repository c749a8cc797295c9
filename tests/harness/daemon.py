"""A real `isod serve` and real `pytest -p isod_client` runs, for the plugin tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


# Test code that finds its worker's channel as any code could: the process's
# SOCK_SEQPACKET socket (the worker takes its fd out of the environment).
FIND_CHANNEL = '''
import os, socket

def worker_channel():
    for name in os.listdir("/proc/self/fd"):
        try:
            s = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        if s.family == socket.AF_UNIX and s.type == socket.SOCK_SEQPACKET:
            return s
        s.close()
    raise AssertionError("no channel")
'''


class Daemon:
    """A real `isod serve` on a private Unix socket."""

    def __init__(self, backend: str = "seccomp", workers: int = 2, extra: tuple = (), env: dict | None = None,
                 warm_zygotes: int = 0) -> None:
        """``warm_zygotes``: 0 by default: each test runs in a directory of
        its own, so no zygote would be reused (they would only show as
        processes left running)."""
        self.dir = tempfile.mkdtemp(prefix="isod-test-")
        os.chmod(self.dir, 0o700)
        self.target = f"unix://{self.dir}/isod.sock"
        self.log = open(os.path.join(self.dir, "log"), "w+b")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "isod", "serve", "--listen", self.target, "--workers", str(workers),
             "--backend", backend, "--warm-zygotes", str(warm_zygotes), *extra], stdout=self.log, stderr=self.log,
            env=None if env is None else {**os.environ, **env})
        deadline = time.monotonic() + 20
        while not os.path.exists(f"{self.dir}/isod.sock"):
            assert self.proc.poll() is None, self.log_text()
            assert time.monotonic() < deadline, "daemon did not start"
            time.sleep(0.02)

    def log_text(self) -> str:
        if self.log.closed:             # stopped: its directory is gone, the text was kept
            return self._final_log
        self.log.flush()
        with open(self.log.name, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self) -> None:
        """Stop the daemon and remove its directory (socket and log)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:
            self._final_log = self.log_text()
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Outcome:
    rc: int
    out: str
    report: dict | None

    def test(self, name: str) -> dict:
        (t,) = [t for t in self.report["tests"] if t["nodeid"].endswith("::" + name)]
        return t

    def failure_block(self, name: str) -> str:
        """The text between this test's failure header and the next header."""
        marker = f" {name} "
        lines = self.out.splitlines()
        start = next(i for i, line in enumerate(lines) if marker in line and line.startswith("_"))
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith(("_", "=="))
                    and "TC003" not in lines[i] and not set(lines[i]) <= {"="}), len(lines))
        return "\n".join(lines[start:end])


def run_pytest(tmp_path: Path, files: dict[str, str], *args: str, target: str | None = None,
               timeout: float = 120, env: dict | None = None) -> Outcome:
    """pytest -p isod_client on a generated project, as a real subprocess."""
    for name, text in files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    report = tmp_path / "isod-report.json"
    argv = [sys.executable, "-m", "pytest", "-p", "isod_client", "-p", "no:cacheprovider",
            f"--isod-report={report}", *args]
    if target:
        argv.append(f"--isod-target={target}")
    e = dict(os.environ)
    e.pop("ISOD_TARGET", None)
    e.update(env or {})
    proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=timeout, env=e)
    data = json.loads(report.read_text()) if report.exists() else None
    return Outcome(proc.returncode, proc.stdout + proc.stderr, data)

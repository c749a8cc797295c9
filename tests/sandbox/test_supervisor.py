"""Supervisor robustness: it dies (the tree must fail closed, not hang), and it
answers long runs of denials without leaking.

The death tests run the supervisor as `isod trace` in its own process, so that
it can be SIGKILLed while the sandboxed tree lives on.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import subprocess
import sys
import time

import pytest
from harness.sandbox import SMALL, run_py
from isod.sandbox.backends import BACKENDS

pytestmark = pytest.mark.medium   # these tests start sandboxed processes

DEADLINE = 10.0   # seconds; every step below normally takes milliseconds


def _child_code(go: str) -> str:
    """Says ready, waits for GO to exist, then tries a trapped call (os.fork)."""
    return (
        "import os, time\n"
        "print('ready', os.getpid(), flush=True)\n"
        f"while not os.path.exists({go!r}):\n"
        "    time.sleep(0.005)\n"
        "t = time.monotonic()\n"
        "try:\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        os._exit(0)\n"
        "    print('forked', pid, flush=True)\n"
        "except OSError as e:\n"
        "    print('errno', e.errno, round(time.monotonic() - t, 3), flush=True)\n"
    )


class Traced:
    """`isod trace -- python -c CODE` with the child's stdout on a pipe."""

    def __init__(self, backend_name: str, code: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "isod", "trace", "--backend", backend_name, "-o", os.devnull,
             "--", sys.executable, "-c", code],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
        )
        self.buf = b""
        self.child = 0

    def readline(self, timeout: float = DEADLINE) -> str:
        """One line of the child's stdout; "" at EOF. Fails on timeout (a hang)."""
        end = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = end - time.monotonic()
            assert left > 0, f"no output within {timeout} s: the sandboxed process hangs"
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    def wait_ready(self) -> None:
        word, pid = self.readline().split()
        assert word == "ready"
        self.child = int(pid)

    def kill_supervisor(self) -> None:
        self.proc.kill()
        self.proc.wait(DEADLINE)

    def cleanup(self) -> None:
        for pid in (self.proc.pid, self.child):
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.proc.wait(DEADLINE)
        self.proc.stdout.close()


def _in_syscall(pid: int, nr: int) -> bool:
    try:
        with open(f"/proc/{pid}/syscall") as f:
            return f.read().split()[0] == str(nr)
    except (OSError, IndexError):
        return False


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_supervisor_death_makes_the_next_trapped_call_fail_with_enosys(tmp_path, backend_name):
    go = tmp_path / "go"
    t = Traced(backend_name, _child_code(str(go)))
    try:
        t.wait_ready()
        t.kill_supervisor()
        go.touch()
        assert t.readline().split()[:2] == ["errno", str(errno.ENOSYS)]   # fails closed, promptly
        assert t.readline() == ""                                         # and then exits
    finally:
        t.cleanup()


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_supervisor_death_releases_a_call_it_was_holding_with_enosys(tmp_path, backend_name):
    """The supervisor is stopped while the call waits for it, then killed."""
    go = tmp_path / "go"
    t = Traced(backend_name, _child_code(str(go)))
    try:
        t.wait_ready()
        os.kill(t.proc.pid, signal.SIGSTOP)
        go.touch()
        end = time.monotonic() + DEADLINE
        while not _in_syscall(t.child, 56):        # clone: the child is held in it
            assert time.monotonic() < end, "the child never reached its trapped clone"
            time.sleep(0.005)
        time.sleep(0.05)
        t.kill_supervisor()
        assert t.readline().split()[:2] == ["errno", str(errno.ENOSYS)]
        assert t.readline() == ""
    finally:
        t.cleanup()


# --- long runs of denials -------------------------------------------------------
STORM = """
import os, threading
errs = []
def storm(n):
    for i in range(n):
        try:
            if i % 2:
                os.execv("/bin/true", ["true", str(i)])
            elif os.fork() == 0:
                os._exit(0)
        except OSError as e:
            errs.append(e.errno)
ts = [threading.Thread(target=storm, args=(N // THREADS,)) for _ in range(THREADS)]
[t.start() for t in ts]; [t.join() for t in ts]
print(len(errs), set(errs))
"""


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("threads", [1, 4])
def test_a_thousand_denials_in_a_row_leak_nothing(backend, threads):
    code = f"N, THREADS = 1000, {threads}\n" + STORM
    run_py(backend, code, SMALL)                       # warm-up: lazy allocations, caches
    fds0, rss0 = _fds(), _rss_kb()
    for _ in range(2):
        r = run_py(backend, code, SMALL)
        assert r.rc == 0, r.err
        assert r.out.strip() == "1000 {1}"               # every one got EPERM
        denied = r.denied()
        assert len(denied) == 1000
        assert {e.syscall for e in denied} == {"clone", "execve"}
        del r, denied
    # the supervisor runs in this process: its fds and memory are ours
    assert _fds() == fds0
    assert _rss_kb() - rss0 < 16 * 1024, "RSS grew by more than 16 MB"

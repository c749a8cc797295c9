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


def _child_code(go: str, prelude: str = "") -> str:
    """Says ready, waits for GO to exist, then tries a trapped call (os.fork)."""
    return (
        "import os, time\n"
        + prelude +
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
    """`isod trace --size small -- python -c CODE` with the child's stdout on
    a pipe (small: the only rule under which anything reaches a supervisor)."""

    def __init__(self, backend_name: str, code: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "isod", "trace", "--backend", backend_name, "--size", "small",
             "-o", os.devnull, "--", sys.executable, "-c", code],
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

    def stop_supervisor(self) -> None:
        """SIGSTOP the supervisor and wait until every thread of it has stopped:
        kill() returns before that, and a thread still running could answer."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        end = time.monotonic() + DEADLINE
        while not all(state == "T" for state in _thread_states(self.proc.pid)):
            assert time.monotonic() < end, "the supervisor did not stop"
            time.sleep(0.002)

    def wait_child_in(self, nr: int) -> None:
        """Until the child sits in syscall nr (held there by the stopped supervisor)."""
        end = time.monotonic() + DEADLINE
        while not _in_syscall(self.child, nr):
            assert time.monotonic() < end, f"the child never reached syscall {nr}: {_where(self)}"
            time.sleep(0.002)

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


def _thread_states(pid: int) -> list[str]:
    states = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                states.append(f.read().rpartition(")")[2].split()[0])
        except OSError:
            pass
    return states


def _in_syscall(pid: int, nr: int) -> bool:
    try:
        with open(f"/proc/{pid}/syscall") as f:
            return f.read().split()[0] == str(nr)
    except (OSError, IndexError):
        return False


def _where(t: Traced) -> str:
    """Where the child is, for a failure message."""
    out = []
    for name in ("syscall", "stat", "wchan"):
        try:
            with open(f"/proc/{t.child}/{name}") as f:
                out.append(f"{name}: {f.read().strip()}")
        except OSError as e:
            out.append(f"{name}: {e}")
    fd = t.proc.stdout.fileno()
    if select.select([fd], [], [], 0)[0]:
        out.append(f"stdout: {os.read(fd, 4096)!r}")
    return "; ".join(out)


def _assert_failed_closed(t: Traced, backend_name: str) -> None:
    """The fork did not happen and the child did not hang (readline fails on a hang)."""
    line = t.readline()
    if backend_name == "seccomp":
        assert line.split()[:2] == ["errno", str(errno.ENOSYS)], line   # docs/kernel-notes.md, failing closed
    else:
        # ptrace: PTRACE_O_EXITKILL, the tracer's death SIGKILLs the tree; ENOSYS would do too
        assert line == "" or line.split()[:2] == ["errno", str(errno.ENOSYS)], line
    assert t.readline() == ""                                        # and then it is gone


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_supervisor_death_makes_the_next_trapped_call_fail_with_enosys(tmp_path, backend_name):
    go = tmp_path / "go"
    t = Traced(backend_name, _child_code(str(go)))
    try:
        t.wait_ready()
        t.kill_supervisor()
        go.touch()
        _assert_failed_closed(t, backend_name)
    finally:
        t.cleanup()


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_supervisor_death_releases_a_call_it_was_holding_with_enosys(tmp_path, backend_name):
    """The supervisor is stopped while the call waits for it, then killed."""
    go = tmp_path / "go"
    t = Traced(backend_name, _child_code(str(go)))
    try:
        t.wait_ready()
        t.stop_supervisor()
        go.touch()
        t.wait_child_in(56)                      # clone: held there, not yet received
        time.sleep(0.05)
        t.kill_supervisor()
        _assert_failed_closed(t, backend_name)
    finally:
        t.cleanup()


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_a_signal_while_a_denied_call_waits_never_lets_it_run(tmp_path, backend_name):
    """The window that remains (docs/threat-model.md G1): a trapped call the
    supervisor has not received yet is interruptible, so a signal whose
    handler lacks SA_RESTART makes a *denied* fork fail with EINTR instead of
    EPERM (seccomp), unrecorded. It never runs either way."""
    go = tmp_path / "go"
    # a Python handler is installed without SA_RESTART, as dash's SIGCHLD one is
    t = Traced(backend_name, _child_code(str(go), "import signal\nsignal.signal(signal.SIGUSR1, lambda *a: None)\n"))
    try:
        t.wait_ready()
        t.stop_supervisor()
        go.touch()
        t.wait_child_in(56)
        os.kill(t.child, signal.SIGUSR1)
        time.sleep(0.05)
        os.kill(t.proc.pid, signal.SIGCONT)
        word, code, *_ = t.readline().split()
        assert word == "errno" and int(code) in (errno.EINTR, errno.EPERM)
    finally:
        t.cleanup()


SIGNAL_STORM = r"""
import os, signal, subprocess, sys
signal.signal(signal.SIGALRM, lambda *a: None)        # no SA_RESTART, as dash's SIGCHLD handler
signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
forks = 0
for _ in range(200):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    forks += 1
pipes = subprocess.run("for j in $(seq 30); do true | true | true; done", shell=True).returncode
system = os.system("for j in $(seq 30); do true | true; done")
signal.setitimer(signal.ITIMER_REAL, 0)
print(forks, pipes, system, flush=True)
"""


def test_allowed_forks_run_natively_under_a_signal_storm():
    """Without --size small nothing is trapped: 200 forks under a 0.5 ms
    interval timer and dash pipelines (SIGCHLD without SA_RESTART) all work,
    as they do without isod."""
    p = subprocess.run([sys.executable, "-m", "isod", "trace", "-o", os.devnull, "--", sys.executable, "-c",
                        SIGNAL_STORM], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["200", "0", "0"], p.stderr


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

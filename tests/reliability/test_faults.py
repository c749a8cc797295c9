"""Faults injected into a real daemon, real workers and real `pytest -p
isod_client` runs: a worker, the daemon or the client SIGKILLed mid-run, a small
test spinning forever, processes a test leaves behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import psutil
import pytest
from harness.daemon import run_pytest
from reliability.isod_rpc import Serve, run_session, wait_until

pytestmark = pytest.mark.large


def pid_file_test(name: str, size: str = "medium", extra: str = "") -> str:
    """A test that writes its pid (and its child's, if it starts one) to <name>.pid, then waits."""
    return f'''
@pytest.mark.{size}
def {name}():
    {extra}
    with open("{name}.pid.tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename("{name}.pid.tmp", "{name}.pid")
    time.sleep(30)
'''


HEAD = "import os, subprocess, time, pytest\n"


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_pid(path, timeout=20.0) -> int:
    assert wait_until(lambda: path.exists(), timeout), f"{path} never appeared"
    return int(path.read_text())


class Background:
    """run_pytest in a thread (it returns when the client exits)."""

    def __init__(self, *args, **kw) -> None:
        self.outcome = None
        self.t0 = time.monotonic()
        self.thread = threading.Thread(target=self._run, args=args, kwargs=kw)
        self.thread.start()

    def _run(self, *args, **kw) -> None:
        self.outcome = run_pytest(*args, **kw)
        self.took = time.monotonic() - self.t0

    def join(self, timeout=60):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the client did not finish"
        return self.outcome


def test_worker_sigkill_mid_test_fails_that_test_and_the_rest_continue(tmp_path, serve):
    code = HEAD + "def test_a():\n    pass\n" + pid_file_test("test_victim") + \
        "\ndef test_b():\n    pass\n\ndef test_c():\n    pass\n"
    run = Background(tmp_path, {"test_f.py": code}, "-q", "--isod-workers=1", "--isod-default-size=medium",
                     target=serve.target)
    pid = wait_pid(tmp_path / "test_victim.pid")
    os.kill(pid, signal.SIGKILL)
    r = run.join()
    assert r.test("test_victim")["outcome"] == "failed"
    assert "crashed while running test_f.py::test_victim: signal 9 (SIGKILL)" in r.out, r.out[-2000:]
    assert [r.test(n)["outcome"] for n in ("test_a", "test_b", "test_c")] == ["passed"] * 3
    # a replacement ran the rest, under the crashed worker's id (as pytest-xdist does)
    assert r.test("test_b")["worker"] == r.test("test_a")["worker"]
    assert re.search(r"session s\d+ end: 4 results, 2 workers, 1 crashes", serve.log_text()), serve.log_text()
    assert run.took < 20


def test_daemon_sigkill_mid_run_ends_the_client_with_a_clear_error(tmp_path):
    d = Serve(workers=1)
    try:
        code = HEAD + pid_file_test("test_long")
        run = Background(tmp_path, {"test_d.py": code}, "-q", target=d.target)
        worker = wait_pid(tmp_path / "test_long.pid")
        t_kill = time.monotonic()
        d.proc.kill()
        r = run.join(30)
        took = time.monotonic() - t_kill
    finally:
        d.stop()
    assert r.rc != 0
    assert f"isod: lost the daemon at {d.target}" in r.out, r.out[-2000:]
    assert took < 10, took
    # the worker notices its channel closing and exits at once: no orphan
    assert wait_until(lambda: not alive(worker), 5), "the worker outlived its daemon"


def client(tmp_path, files: dict[str, str], *args: str, target: str | None) -> subprocess.Popen:
    """A client in the background; target None: with its embedded daemon."""
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    env = dict(os.environ)
    env.pop("ISOD_TARGET", None)
    where = [f"--isod-target={target}"] if target else []
    return subprocess.Popen([sys.executable, "-m", "pytest", "-p", "isod_client", "-p", "no:cacheprovider", "-q",
                             *where, *args], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_client_sigkill_mid_run_makes_the_daemon_reap_the_session(tmp_path, serve):
    spawn = "child = subprocess.Popen(['sleep', '60']); open('child.pid', 'w').write(str(child.pid))"
    code = HEAD + pid_file_test("test_long", extra=spawn) + "\ndef test_next():\n    pass\n"
    before = {p.pid for p in serve.descendants()}
    ended_before = serve.log_text().count(" end: ")
    c = client(tmp_path, {"test_k.py": code}, "--isod-workers=2", target=serve.target)
    try:
        worker = wait_pid(tmp_path / "test_long.pid")
        child = int((tmp_path / "child.pid").read_text())
        session = {p.pid for p in serve.descendants()} - before
        assert worker in session and child in session
        t_kill = time.monotonic()
        c.kill()
    finally:
        c.wait()
    gone = wait_until(lambda: not ({p.pid for p in serve.descendants()} & session), 10)
    left = [(p.pid, p.cmdline()) for p in serve.descendants() if p.pid in session]
    assert gone, f"left after the client died: {left}"
    assert time.monotonic() - t_kill < 10
    assert wait_until(lambda: not alive(child), 5), "the test's child outlived the session"
    # the session ended (test_next may have finished on the other worker first)
    assert wait_until(lambda: serve.log_text().count(" end: ") > ended_before, 10), serve.log_text()[-3000:]


SPIN = '''
import signal, pytest

@pytest.mark.small
def test_spins_with_signals_blocked():
    signal.pthread_sigmask(signal.SIG_BLOCK, set(signal.Signals) - {signal.SIGKILL, signal.SIGSTOP})
    while True:
        pass

@pytest.mark.small
def test_after_1():
    pass

@pytest.mark.small
def test_after_2():
    pass
'''


def test_infinite_loop_in_a_small_test_is_killed_at_its_limit(tmp_path, serve):
    t0 = time.monotonic()
    r = run_pytest(tmp_path, {"test_spin.py": SPIN}, "-q", "--isod-workers=1", target=serve.target)
    took = time.monotonic() - t0
    t = r.test("test_spins_with_signals_blocked")
    assert t["outcome"] == "failed"
    assert "[TC006] Timeout: test_spin.py::test_spins_with_signals_blocked (small)" in r.out
    assert "past its limit of 1 s; isod killed its worker" in r.out
    elapsed = float(t["interruption"].split(" ran ")[1].split(" s,")[0])
    assert 1.0 <= elapsed < 5.0, t["interruption"]     # at its 1 s limit, not at the 60 s one of fixtures
    assert r.test("test_after_1")["outcome"] == r.test("test_after_2")["outcome"] == "passed"
    assert took < 20


LEAVES = '''
import subprocess, pytest

@pytest.mark.medium
def test_leaves_a_sleeper_in_its_group():
    subprocess.Popen(["sleep", "61"])

@pytest.mark.medium
def test_leaves_a_setsid_sleeper():
    subprocess.Popen(["setsid", "sleep", "62"])
'''


def test_processes_a_test_leaves_running_do_not_outlive_the_session(tmp_path, serve):
    def sleepers():
        found = []
        for p in psutil.process_iter():
            try:
                if p.cmdline() in (["sleep", "61"], ["sleep", "62"]) and p.cwd() == str(tmp_path):
                    found.append(p)
            except psutil.Error:
                pass
        return found

    (tmp_path / "test_leave.py").write_text(LEAVES)
    try:
        t0 = time.monotonic()
        out = run_session(serve.target, tmp_path, ["test_leave.py::test_leaves_a_sleeper_in_its_group",
                                                   "test_leave.py::test_leaves_a_setsid_sleeper"])
        took = time.monotonic() - t0
        assert out.end is not None and out.end.tests == 2, out
        left = wait_until(lambda: not sleepers(), 2) or sleepers()
        assert left is True, f"left running after the session: {[p.cmdline() for p in left]}"
        assert took < 30, f"the session took {took:.1f} s to end"     # it did not wait for the 61 s sleepers
    finally:
        for p in sleepers():
            p.kill()


def test_report_of_a_crash_names_the_signal_in_the_json(tmp_path, serve):
    """The --isod-report entry of a killed worker's test says why (for CI dashboards)."""
    code = HEAD + pid_file_test("test_victim")
    run = Background(tmp_path, {"test_j.py": code}, "-q", target=serve.target)
    os.kill(wait_pid(tmp_path / "test_victim.pid"), signal.SIGKILL)
    run.join()
    entry = json.loads((tmp_path / "isod-report.json").read_text())["tests"][0]
    assert entry["outcome"] == "failed" and "signal 9 (SIGKILL)" in entry["interruption"], entry


def test_client_sigkill_leaves_nothing_of_its_embedded_daemon(tmp_path):
    code = HEAD + "\n@pytest.mark.medium\ndef test_long():\n    time.sleep(60)\n"
    c = client(tmp_path, {"test_e.py": code}, "--isod-workers=1", target=None)       # embedded daemon
    try:
        deadline = time.monotonic() + 30
        daemon = None
        while daemon is None and time.monotonic() < deadline:
            kids = psutil.Process(c.pid).children()
            daemon = next((k for k in kids if "serve" in k.cmdline()), None)
            time.sleep(0.05)
        assert daemon is not None, "no embedded daemon started"
        listen = daemon.cmdline()[daemon.cmdline().index("--listen") + 1]
        sock_dir = os.path.dirname(listen[len("unix://"):])
        assert os.path.isdir(sock_dir)
        time.sleep(1.0)                        # the session runs
        c.kill()
    finally:
        c.wait()
    assert wait_until(lambda: not daemon.is_running(), 15), "the embedded daemon outlived its client"
    assert wait_until(lambda: not os.path.exists(sock_dir), 5), f"{sock_dir} is left behind"

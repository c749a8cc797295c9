"""Workers by class: what a size allows runs natively, and a small test is
judged only by what it (or what it requested) does.

Real daemon, real pytest sessions, real dash pipelines and signals.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from harness.daemon import run_pytest

pytestmark = pytest.mark.large

# Allowed spawns that fail with EINTR when routed through a supervisor: dash's
# SIGCHLD handler lacks SA_RESTART, as does any Python signal handler.
SPAWNING_SUITE = '''
import ctypes, os, signal, subprocess, pytest

PIPELINE = "for j in 1 2 3 4 5 6 7 8 9 10; do true | true | true; done"

@pytest.mark.medium
@pytest.mark.parametrize("i", range(10))
def test_dash_pipeline(i):
    r = subprocess.run(PIPELINE, shell=True, capture_output=True, text=True)
    assert r.returncode == 0 and "Cannot fork" not in r.stderr, r.stderr

@pytest.mark.medium
def test_os_system_pipelines():
    for _ in range(10):
        assert os.system(PIPELINE) == 0

@pytest.mark.large
def test_c_level_forks_under_a_sigchld_handler_without_sa_restart():
    libc = ctypes.CDLL(None, use_errno=True)
    old = signal.signal(signal.SIGCHLD, lambda *a: None)
    try:
        for _ in range(200):
            pid = libc.fork()
            assert pid >= 0, os.strerror(ctypes.get_errno())
            if pid == 0:
                libc._exit(0)
    finally:
        signal.signal(signal.SIGCHLD, old)
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break

@pytest.mark.medium
def test_spawns_under_an_interval_timer():
    signal.signal(signal.SIGALRM, lambda *a: None)
    signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
    try:
        for _ in range(200):
            assert subprocess.run(["true"]).returncode == 0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
'''


def _hog(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


@pytest.mark.parametrize("hog", [False, True], ids=["idle", "cpu-hog"])
def test_allowed_spawns_never_fail_five_runs_in_a_row(tmp_path, daemon, hog):
    hogs = _hog(os.cpu_count() or 2) if hog else []
    try:
        for run in range(5):
            r = run_pytest(tmp_path, {"test_spawning.py": SPAWNING_SUITE}, "-q", target=daemon.target)
            assert r.rc == 0 and "13 passed" in r.out, f"run {run}:\n{r.out[-3000:]}"
            # still recorded, from the kernel's process events
            forks = [c for c in r.test("test_c_level_forks_under_a_sigchld_handler_without_sa_restart")["commands"]
                     if c["syscall"] == "fork"]
            assert len(forks) == 200 and all(c["decision"] == "allow" for c in forks)
    finally:
        for h in hogs:
            h.kill()
            h.wait()


# --- shared fixtures are judged by the tests that request them ----------------
FIXTURES = '''
import subprocess, pytest

@pytest.fixture(scope="session")
def server():
    yield "srv"
    subprocess.run(["true", "session-cleanup"], check=True)

@pytest.fixture(scope="module")
def module_tool():
    yield "tool"
    subprocess.run(["true", "module-cleanup"], check=True)

@pytest.mark.medium
def test_medium_uses_the_session_fixture(server):
    assert server == "srv"

@pytest.mark.medium
def test_medium_uses_the_module_fixture(module_tool):
    assert module_tool == "tool"

@pytest.mark.small
@pytest.mark.parametrize("i", range(3))
def test_small_pure(i):
    assert i >= 0

@pytest.mark.small
def test_small_requests_the_spawning_fixture(server):
    assert server == "srv"
'''

CONFTEST_TEARDOWN_HOOK = '''
import subprocess

def pytest_runtest_teardown(item, nextitem):
    if item.get_closest_marker("medium"):
        subprocess.run(["true", "hook-cleanup"], check=True)
'''

AUTOUSE = '''
import subprocess, pytest

@pytest.fixture(scope="session", autouse=True)
def everywhere():
    subprocess.run(["true", "autouse-setup"], check=True)
    yield

@pytest.mark.small
def test_small_a():
    pass

@pytest.mark.medium
def test_medium_b():
    assert subprocess.run(["true"]).returncode == 0

@pytest.mark.small
def test_small_c():
    pass

@pytest.mark.medium
def test_medium_d():
    pass
'''


@pytest.mark.parametrize("workers", ["1", "2"])
def test_fixtures_only_medium_tests_request_never_blame_small_tests(tmp_path, daemon, workers):
    files = {"test_fx.py": FIXTURES, "conftest.py": CONFTEST_TEARDOWN_HOOK}
    r = run_pytest(tmp_path, files, "-q", f"--isod-workers={workers}", target=daemon.target)
    outcomes = {t["nodeid"].split("::")[1]: t["outcome"] for t in r.report["tests"]}
    assert outcomes == {
        "test_medium_uses_the_session_fixture": "passed",
        "test_medium_uses_the_module_fixture": "passed",
        "test_small_pure[0]": "passed", "test_small_pure[1]": "passed", "test_small_pure[2]": "passed",
        # it depends on a process: set up for it in its small worker, torn down there (an error in teardown)
        "test_small_requests_the_spawning_fixture": "error",
    }, r.out[-3000:]
    assert "TC003" in r.failure_block("test_small_requests_the_spawning_fixture")
    # the medium tests' cleanups really ran (natively, recorded)
    medium = [c for t in r.report["tests"] if t["size"] == "medium" for c in t["commands"]]
    ran = {c["argv"][-1] for c in medium if c["syscall"] == "execve" and c["argv"]}
    assert {"session-cleanup", "module-cleanup", "hook-cleanup"} <= ran, medium


def test_a_denied_autouse_session_fixture_never_cascades_into_medium_tests(tmp_path, daemon):
    r = run_pytest(tmp_path, {"test_auto.py": AUTOUSE}, "-q", "--isod-workers=1", target=daemon.target)
    outcomes = {t["nodeid"].split("::")[1]: t["outcome"] for t in r.report["tests"]}
    # plain pytest caches a failed fixture for the session: in the small worker both
    # small tests error; the medium tests run in their own worker and pass
    assert outcomes == {"test_small_a": "error", "test_medium_b": "passed",
                        "test_small_c": "error", "test_medium_d": "passed"}, r.out[-3000:]
    assert "[TC003]" in r.failure_block("test_small_a")


RACE = '''
import ctypes, threading, pytest
libc = ctypes.CDLL(None, use_errno=True)

@pytest.mark.small
@pytest.mark.parametrize("i", range(100))
def test_forks_as_it_ends(i):
    go = threading.Event()
    def late():
        go.wait()
        if libc.fork() == 0:
            libc._exit(0)
    threading.Thread(target=late, daemon=True).start()
    go.set()          # the thread forks as the test ends, or during the next one

@pytest.mark.small
def test_zz_last_small():
    import time
    time.sleep(0.1)   # the last racing thread forks before its worker can end (not after it exited)

@pytest.mark.medium
def test_medium_after_them():
    pass
'''


def test_a_small_tests_late_c_fork_is_always_denied_and_recorded(tmp_path, daemon):
    """100 C-level forks from threads racing the end of their small test: a
    small worker's rule never changes after collection, so every one is
    denied, recorded, and charged to a small test (the one it raced, or the
    one running when it happened) or listed after the worker's last test."""
    r = run_pytest(tmp_path, {"test_race.py": RACE}, "-q", "--isod-workers=1", target=daemon.target)
    in_tests = [c for t in r.report["tests"] for c in t["commands"] if c["syscall"] in ("clone", "fork")]
    after = [c for o in r.report["outside_tests"] for c in o["commands"]
             if c["syscall"] in ("clone", "fork") and c["phase"] != "collection"]
    assert len(in_tests) + len(after) == 100, (len(in_tests), len(after), r.out[-2000:])
    assert all(c["decision"] == "deny" for c in in_tests + after)
    assert r.test("test_medium_after_them")["outcome"] == "passed"
    assert not any(c["syscall"] == "clone" for c in r.test("test_medium_after_them")["commands"])


def test_a_session_of_small_tests_starts_no_spawning_worker(tmp_path, daemon):
    files = {"test_s.py": "import subprocess, pytest\n"
                          "@pytest.mark.small\ndef test_a(): pass\n"
                          "@pytest.mark.small\ndef test_b(): subprocess.run(['true'])\n"}
    r = run_pytest(tmp_path, files, "-q", "--isod-workers=2", target=daemon.target, env={"ISOD_ZYGOTE": "0"})
    assert r.rc == 1 and r.test("test_a")["outcome"] == "passed", r.out
    assert r.test("test_b")["outcome"] == "failed" and "[TC003]" in r.out     # denied: a trapping worker
    assert {t["worker"] for t in r.report["tests"]} <= {"gw0", "gw1"}
    assert all(o["commands"][0]["abi"] for o in r.report["outside_tests"])   # every worker launched trapped
    # forked from the zygote: no launch of its own, under the small rule from its first instruction
    z = run_pytest(tmp_path, files, "-q", "--isod-workers=2", target=daemon.target)
    assert z.rc == 1 and z.test("test_b")["outcome"] == "failed", z.out
    assert {o["worker"] for o in z.report["outside_tests"]} == {"zygote"}, z.report["outside_tests"]
    assert all(c["phase"] == "collection" for o in z.report["outside_tests"] for c in o["commands"])

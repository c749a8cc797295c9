"""What the worker does around a denied spawn that is not the test's own
call: a conftest hook that runs a tool on failure (the kernel's EPERM reaches
pytest's hook machinery), a plugin that makes os.getcwd raise inside the audit
hook, pty.spawn (it forks through os.forkpty, which names no command)."""

from __future__ import annotations

import pytest
from harness.daemon import run_pytest

pytestmark = pytest.mark.large   # a real daemon, real workers, a real pytest run

CONFTEST = '''
import subprocess

def pytest_runtest_logreport(report):
    # a screenshot tool on failure, as UI suites do
    if report.when == "call" and report.failed:
        subprocess.run(["true", "--screenshot", report.nodeid])
'''

TESTS = '''
import os, pty, subprocess, pytest

pytestmark = pytest.mark.small

def test_fails_and_its_hook_spawns():
    open("ran/first", "w").write(str(os.getpid()))
    assert 1 == 2, "the test's own failure"

def test_after_it():
    open("ran/after", "w").write(str(os.getpid()))

def test_pty_spawn():
    with pytest.raises(OSError):
        pty.spawn(["echo", "from-pty"])

def test_spawn_while_getcwd_raises(monkeypatch):
    def blocking(*a):   # an event-loop blocking-call checker does this
        raise RuntimeError("blocking call to os.getcwd")
    monkeypatch.setattr(os, "getcwd", blocking)
    try:
        subprocess.run(["echo", "checked"])
    except OSError:
        pass
    monkeypatch.undo()
'''


@pytest.fixture(scope="module")
def run(tmp_path_factory, daemon):
    tmp = tmp_path_factory.mktemp("hooks")
    (tmp / "ran").mkdir()
    r = run_pytest(tmp, {"conftest.py": CONFTEST, "test_h.py": TESTS}, "-q", "--isod-workers=1",
                   target=daemon.target, timeout=90)
    return tmp, r


def test_a_spawn_denied_in_a_logreport_hook_fails_that_test_and_keeps_its_failure(run):
    tmp, r = run
    assert "INTERNALERROR" not in r.out, r.out
    assert r.test("test_fails_and_its_hook_spawns")["outcome"] == "failed", r.out
    block = r.failure_block("test_fails_and_its_hook_spawns")
    assert "[TC003]" in block and "Attempted subprocess.Popen: true --screenshot" in block, block
    assert "the test's own failure" in block and "assert 1 == 2" in block, block
    # the worker ran on: the next test in the same process
    assert r.test("test_after_it")["outcome"] == "passed", r.out
    assert (tmp / "ran" / "first").read_text() == (tmp / "ran" / "after").read_text()


def test_pty_spawn_names_its_command(run):
    _, r = run
    block = r.failure_block("test_pty_spawn")
    assert "Attempted pty.spawn: echo from-pty" in block, block
    assert "no command" not in block and "Attempted os.fork" not in block, block


def test_a_raising_getcwd_does_not_cost_the_command(run):
    _, r = run
    block = r.failure_block("test_spawn_while_getcwd_raises")
    assert "Attempted subprocess.Popen: echo checked" in block, block
    assert "no command" not in block, block

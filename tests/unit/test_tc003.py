"""The TC003 block and its attempt lines, from recorded events."""

import pytest
from isod.v1 import isod_pb2 as pb
from isod_client import tc003

pytestmark = pytest.mark.small


def ev(syscall, offset, tid=10, decision="deny", **kw):
    return pb.SpawnEvent(syscall=syscall, offset_s=offset, tid=tid, pid=tid, ppid=1, decision=decision,
                         phase="call", **kw)


def test_exec_line_uses_the_real_argv_and_path():
    res = pb.TestResult(nodeid="t.py::test", events=[ev("execve", 0.1, argv=["git", "status"], path="/usr/bin/git")])
    assert tc003.attempt_lines(res) == ["Attempted execve: git status   [/usr/bin/git]"]


def test_fork_without_command_takes_the_intent_of_its_thread():
    res = pb.TestResult(nodeid="t.py::test",
                        events=[ev("vfork", 0.2), ev("clone", 0.3)],
                        intents=[pb.Intent(event="subprocess.Popen", argv=["ls", "-l"], tid=10, offset_s=0.1,
                                           site="t.py:3"),
                                 pb.Intent(event="os.system", argv=["sh", "-c", "x"], tid=99, offset_s=0.15)])
    assert tc003.attempt_lines(res) == ["Attempted subprocess.Popen: ls -l   (at t.py:3)"]


def test_intent_after_the_event_is_not_used():
    res = pb.TestResult(events=[ev("clone", 0.1)], intents=[pb.Intent(event="os.fork", tid=10, offset_s=0.2)])
    assert tc003.attempt_lines(res) == ["Attempted clone (fork) from pid 10 (no command: blocked before any exec)"]


def test_clone3_and_its_clone_fallback_are_one_attempt():
    res = pb.TestResult(events=[ev("clone3", 0.1, decision="enosys"), ev("clone", 0.11)])
    assert len(tc003.attempt_lines(res)) == 1


def test_message_layout():
    res = pb.TestResult(nodeid="tests/test_cli.py::test_run", events=[ev("execve", 0.001, argv=["ls"], path="ls")])
    text = tc003.message(res)
    lines = text.splitlines()
    assert lines[0] == "=" * 70 and lines[1] == "[TC003] Subprocess Spawn Violation" and lines[2] == "=" * 70
    assert "Test: tests/test_cli.py::test_run" in lines and "Category: SMALL" in lines
    assert "  Attempted execve: ls" in lines
    assert "What happened:" in lines and "Why it matters:" in lines and "To fix this (choose one):" in lines
    assert lines[-1] == "=" * 70


def test_no_events_no_violation():
    assert tc003.violations(pb.TestResult()) == []

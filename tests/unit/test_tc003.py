"""The TC003 block and its attempt lines, from recorded events."""

import pytest
from isod.contract import violation
from isod.v1 import isod_pb2 as pb
from isod_client import tc001, tc003

pytestmark = pytest.mark.small


def ev(syscall, offset, tid=10, decision="deny", **kw):
    """A recorded call as the daemon sends it: marked with the rule it breaks."""
    e = pb.SpawnEvent(syscall=syscall, offset_s=offset, tid=tid, pid=tid, ppid=1, decision=decision,
                      phase="call", **kw)
    e.violation = violation(e)
    return e


def test_the_verdicts_follow_the_daemons_mark():
    """TC003 and TC001 read SpawnEvent.violation; they do not judge the call again."""
    unmarked = pb.SpawnEvent(syscall="execve", argv=["ls"], decision="allow", phase="call")
    spawn = ev("execve", 0.1, argv=["ls"], path="/bin/ls")
    local = ev("connect", 0.2, family=2, host="127.0.0.1", port=5432)
    remote = ev("connect", 0.3, family=2, host="192.0.2.1", port=443)
    small = pb.TestResult(size=pb.SMALL, events=[unmarked, spawn, local, remote])
    assert tc003.violations(small) == [spawn]
    assert tc001.violations(small) == [local, remote]
    medium = pb.TestResult(size=pb.MEDIUM, events=[unmarked, spawn, local, remote])
    assert tc001.violations(medium) == [remote]
    assert tc001.violations(pb.TestResult(size=pb.LARGE, events=[remote])) == []
    outside = pb.OutsideTests(worker="gw0", events=[unmarked, spawn])
    outside.events[1].phase = "between tests"
    assert tc003.outside_lines([outside]) == ["worker gw0 between tests: execve: ls [deny]"]


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


# --- commands, not syscalls ---------------------------------------------------------------

def popen(argv, offset, tid=10):
    return pb.Intent(event="subprocess.Popen", argv=argv, tid=tid, offset_s=offset, site="t.py:3")


def test_a_denied_popen_is_one_command():
    # CPython falls back to fork when vfork fails: two trapped calls, one command
    res = pb.TestResult(events=[ev("vfork", 0.2), ev("clone", 0.21)], intents=[popen(["make", "deploy"], 0.1)])
    assert tc003.attempt_lines(res) == ["Attempted subprocess.Popen: make deploy   (at t.py:3)"]
    assert tc003.where(res).startswith("  (1 command attempted, 1 denied in the kernel; first in call")


def test_clone3_enosys_and_its_clone_are_one_denied_command():
    res = pb.TestResult(events=[ev("clone3", 0.1, decision="enosys"), ev("clone", 0.11)],
                        intents=[pb.Intent(event="os.system", argv=["sh", "-c", "x"], tid=10, offset_s=0.05)])
    assert tc003.where(res).startswith("  (1 command attempted, 1 denied in the kernel;")


def test_two_popens_are_two_commands():
    res = pb.TestResult(events=[ev("vfork", 0.2), ev("clone", 0.21), ev("vfork", 0.4), ev("clone", 0.41)],
                        intents=[popen(["true", "A"], 0.1), popen(["true", "B"], 0.3)])
    assert len(tc003.attempts(res)) == 2
    assert tc003.attempt_lines(res) == ["Attempted subprocess.Popen: true A   (at t.py:3)",
                                        "Attempted subprocess.Popen: true B   (at t.py:3)"]
    assert "(2 commands attempted, 2 denied" in tc003.where(res)


def test_two_forks_without_intents_are_two_commands():
    res = pb.TestResult(events=[ev("clone", 0.1), ev("clone", 0.2)])
    assert len(tc003.attempts(res)) == 2


def test_an_allowed_fork_and_its_childs_execs_along_path_are_one_command():
    # warn/off: the vfork is allowed, its child (pid 11) tries PATH in order
    res = pb.TestResult(
        events=[ev("vfork", 0.2, decision="allow"),
                ev("execve", 0.3, tid=11, decision="allow", argv=["echo", "ran"], path="/usr/local/bin/echo"),
                ev("execve", 0.31, tid=11, decision="allow", argv=["echo", "ran"], path="/usr/bin/echo")],
        intents=[popen(["echo", "ran"], 0.1)])
    res.events[1].ppid = res.events[2].ppid = 10
    assert tc003.attempt_lines(res) == ["Attempted subprocess.Popen: echo ran   [/usr/bin/echo]   (at t.py:3)"]
    assert "(1 command attempted, 0 denied in the kernel" in tc003.where(res)


def test_a_shell_and_what_it_runs_are_two_commands():
    res = pb.TestResult(events=[
        ev("vfork", 0.1, decision="allow"),
        ev("execve", 0.2, tid=11, decision="allow", argv=["sh", "-c", "ls | wc"], path="/bin/sh"),
        ev("clone", 0.3, tid=11, decision="allow"),
        ev("execve", 0.4, tid=12, decision="allow", argv=["ls"], path="/bin/ls"),
    ])
    res.events[1].ppid, res.events[3].ppid = 10, 11
    assert [len(g) for g in tc003.attempts(res)] == [2, 2]


def test_repeated_execs_of_one_path_are_separate_commands():
    res = pb.TestResult(events=[ev("execve", 0.1 * i, argv=["x"], path="/nonexistent") for i in range(12)])
    assert "(12 commands attempted, 12 denied in the kernel" in tc003.where(res)

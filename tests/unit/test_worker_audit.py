"""The worker's audit hook keeps the command of every spawn intent, whatever
else fails around it, and names what pty.spawn runs."""

from __future__ import annotations

import errno
import os
import pty

import pytest
from isod.worker import plugin
from isod.worker.plugin import Intents

pytestmark = pytest.mark.small

POPEN = ("ls", ["ls", "-l"], None, None)     # subprocess.Popen's audit arguments


def recorder() -> Intents:
    intents = Intents()
    intents.start()
    return intents


def test_a_raising_getcwd_does_not_cost_the_command(monkeypatch):
    intents = recorder()

    def blocking(*_a):     # an event-loop blocking-call checker's patch
        raise RuntimeError("blocking call to os.getcwd")

    with monkeypatch.context() as m:
        m.setattr(os, "getcwd", blocking)
        intents.hook("subprocess.Popen", POPEN)
    (it,) = intents.items
    assert (it.event, list(it.argv)) == ("subprocess.Popen", ["ls", "-l"])
    assert it.site.startswith(os.path.join("tests", "unit", "test_worker_audit.py:")), it.site


def test_a_failing_call_site_keeps_the_command(monkeypatch):
    intents = recorder()

    def broken(_frame):
        raise RuntimeError("anything at all")

    with monkeypatch.context() as m:
        m.setattr(plugin, "_call_site", broken)
        intents.hook("subprocess.Popen", POPEN)
    (it,) = intents.items
    assert (list(it.argv), it.site) == (["ls", "-l"], "")


def test_unreadable_arguments_still_make_an_intent():
    intents = recorder()
    intents.hook("os.posix_spawn", ("/bin/ls", object(), {}))
    (it,) = intents.items
    assert it.event == "os.posix_spawn" and it.argv and it.argv[0].startswith("('/bin/ls'")


def test_pty_spawn_names_its_command_on_both_of_its_forks(monkeypatch):
    """pty.spawn forks through os.forkpty, then (when that fails) os.fork:
    neither audit event carries the command; pty.spawn's frame does."""
    intents = recorder()
    fds: list[int] = []

    def forkpty():
        intents.hook("os.forkpty", ())
        raise PermissionError(errno.EPERM, "denied")

    def fork():
        intents.hook("os.fork", ())
        raise PermissionError(errno.EPERM, "denied")

    def openpty():
        fds.extend(os.pipe())
        return fds[-2], fds[-1]

    with monkeypatch.context() as m:
        m.setattr(os, "forkpty", forkpty)
        m.setattr(os, "fork", fork)
        m.setattr(os, "openpty", openpty)
        with pytest.raises(PermissionError):
            pty.spawn(["echo", "from-pty"])
    for fd in fds:
        os.close(fd)
    assert [(it.event, list(it.argv)) for it in intents.items] == [
        ("pty.spawn", ["echo", "from-pty"]), ("pty.spawn", ["echo", "from-pty"])]


def test_a_plain_fork_stays_a_fork():
    intents = recorder()
    intents.hook("os.fork", ())
    assert [(it.event, list(it.argv)) for it in intents.items] == [("os.fork", [])]


@pytest.mark.parametrize(("exc", "denied"), [
    (PermissionError(errno.EPERM, "Operation not permitted"), True),
    (PermissionError(errno.EACCES, "Permission denied"), False),     # a file's mode, not isod
    (ValueError("x"), False),
])
def test_what_counts_as_a_denied_spawn(exc, denied):
    assert plugin._denied(exc) is denied


def test_a_denial_wrapped_by_the_hook_still_counts():
    try:
        try:
            raise PermissionError(errno.EPERM, "Operation not permitted")
        except OSError as inner:
            raise RuntimeError("screenshot failed") from inner
    except RuntimeError as e:
        assert plugin._denied(e)


def test_a_passing_report_is_plain_and_one_with_more_is_not():
    """Plain reports travel as protobuf fields; pytest's runner makes them
    with these attributes (pytest 9 keeps the node id as `_id`)."""
    from _pytest.reports import TestReport
    from isod.worker.plugin import plain_report

    def report(**more):
        return TestReport("t.py::test_a", ("t.py", 0, "test_a"), {"test_a": 1}, "passed", None, "call",
                          [("Captured stdout call", "hi\n")], 0.1, 1.0, 1.1, **more)

    assert plain_report(report())
    assert not plain_report(report(user_properties=[("k", 1)]))
    assert not plain_report(report(wasxfail="reason"))        # xfail's attribute
    failed = report()
    failed.longrepr = "boom"
    assert not plain_report(failed)

"""The worker protocol and a test's record, without processes."""

from __future__ import annotations

import pytest
from isod.sandbox.events import Event
from isod.server.test_record import MAX_EVENTS, Running, name_quick_execs
from isod.server.worker_protocol import Violation, WorkerProtocol
from isod.server.worker_texts import crash_text, timeout_text
from isod.v1 import isod_pb2 as pb

pytestmark = pytest.mark.small


def _sent(*nodeids: str) -> WorkerProtocol:
    p = WorkerProtocol()
    for n in nodeids:
        p.assigned.append(pb.TestItem(nodeid=n, size=pb.SMALL))
    return p


def _report(when: str, t_ns: int) -> pb.PhaseReport:
    return pb.PhaseReport(when=when, t_ns=t_ns)


def test_a_test_runs_started_setup_finished_in_order():
    p = _sent("t::a", "t::b")
    run = p.started("t::a", 100)
    assert run.t0_ns == 100 and p.running is run
    p.reported(_report("setup", 200))
    assert run.phase == "call"
    done, late = p.finished(pb.TestFinished(nodeid="t::a", reports=[_report("teardown", 400), _report("call", 300)]))
    assert done is run and [r.when for r in late] == ["call", "teardown"]
    assert p.running is None and p.last_test == "t::a" and [i.nodeid for i in p.assigned] == ["t::b"]


@pytest.mark.parametrize(("steps", "needle"), [
    ([("started", "t::b")], "`started t::b` out of order"),                  # not the next one sent
    ([("started", "t::a"), ("started", "t::a")], "`started t::a` out of order"),   # one at a time
    ([("finished", "t::a")], "`finished t::a` for a test not running"),
    ([("started", "t::a"), ("finished_bare", "t::a")], "without its teardown report"),
])
def test_messages_no_real_worker_sends_are_violations(steps, needle):
    p = _sent("t::a", "t::b")
    with pytest.raises(Violation, match=needle.replace("`", ".").replace("::", "::")):
        for what, nodeid in steps:
            if what == "started":
                p.started(nodeid, 1)
            elif what == "finished":
                p.finished(pb.TestFinished(nodeid=nodeid, reports=[_report("teardown", 2)]))
            else:
                p.finished(pb.TestFinished(nodeid=nodeid))


def test_pytest_exit_ends_the_worker_and_needs_no_teardown_report():
    p = _sent("t::a", "t::b")
    p.started("t::a", 1)
    p.finished(pb.TestFinished(nodeid="t::a", exit=pb.SessionExit(reason="bye")))
    assert p.exiting
    with pytest.raises(Violation):
        p.started("t::b", 2)


def _ev(t_ns: int, syscall: str = "clone", **kw) -> Event:
    return Event(t_ns, 10, 10, 1, syscall, "x86_64", "deny", 0, **kw)


def test_events_take_the_phase_whose_end_follows_them():
    run = Running(item=pb.TestItem(nodeid="t::a"), t0=0.0, t0_ns=0)
    run.add([_ev(5), _ev(15), _ev(25)], [_report("setup", 10), _report("call", 20), _report("teardown", 30)])
    assert [e.phase for e in run.events] == ["setup", "call", "teardown"]
    assert [round(e.offset_s * 1e9) for e in run.events] == [5, 15, 25]


def test_a_spawn_loop_is_counted_past_the_cap():
    run = Running(item=pb.TestItem(nodeid="t::a"), t0=0.0, t0_ns=0)
    run.add([_ev(i) for i in range(MAX_EVENTS + 7)])
    assert len(run.events) == MAX_EVENTS and run.dropped == 7
    assert run.result("gw0").events_dropped == 7


def test_a_quick_exec_is_named_by_the_python_spawn_before_it():
    fork = pb.SpawnEvent(t_ns=100, pid=50, syscall="fork", decision="allow", child_pid=51)
    exe = pb.SpawnEvent(t_ns=120, pid=51, syscall="execve", decision="allow")        # gone before /proc was read
    grandchild = pb.SpawnEvent(t_ns=130, pid=52, ppid=51, syscall="execve", decision="allow")
    intents = [pb.Intent(event="subprocess.Popen", argv=["echo", "hi"], offset_s=90e-9)]
    name_quick_execs([fork, exe, grandchild], intents, t0_ns=0, worker_pid=50)
    assert list(exe.argv) == ["echo", "hi"] and not exe.argv_complete and exe.ppid == 50
    assert list(grandchild.argv) == []            # not the worker's child: no guess


def test_texts():
    assert timeout_text("t::a (small)", "call", 1.234, 1.0, 1.0).startswith(
        "[TC006] Timeout: t::a (small) ran 1.23 s, past its limit of 1 s")
    assert "the teardown of t::a (small) (its fixtures)" in timeout_text("t::a (small)", "teardown", 61, 60, 1)
    assert crash_text("gw0", "t::a", -9, True).endswith("signal 9 (SIGKILL), killed by the memory limit of its "
                                                         "size (isod serve --limits)")

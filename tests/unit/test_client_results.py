"""How the client turns a worker's result into pytest's reports: one outcome
per test, and nothing a worker sends is imported."""

import sys
import warnings
from types import SimpleNamespace

import pytest
from _pytest.reports import TestReport
from isod.v1 import isod_pb2 as pb
from isod_client.dsession import Controller
from isod_client.from_workers import _warning_class

pytestmark = pytest.mark.small

ITEM = SimpleNamespace(nodeid="t.py::test_x", location=("t.py", 4, "test_x"), keywords={})


def report(when, outcome="passed", longrepr=None, sections=()):
    return TestReport(ITEM.nodeid, ITEM.location, {}, outcome, longrepr, when, sections=list(sections), duration=0.1)


def spawned_in(phase):
    return pb.TestResult(nodeid=ITEM.nodeid, size=pb.SMALL, events=[pb.SpawnEvent(
        syscall="execve", argv=["ls"], path="/bin/ls", decision="deny", pid=10, tid=10, phase=phase,
        violation=pb.SpawnEvent.PROCESS)])


def test_a_spawn_in_setup_fails_setup_and_reports_no_call():
    reports = [report("setup", sections=[("Captured stdout setup", "s\n")]),
               report("call", "failed", "assert 0", sections=[("Captured stdout setup", "s\n"),
                                                                ("Captured stdout call", "c\n")]),
               report("teardown")]
    out = Controller._fail_with(None, ITEM, reports, spawned_in("setup"))
    assert [(r.when, r.outcome) for r in out] == [("setup", "failed"), ("teardown", "passed")]
    text = str(out[0].longrepr)
    assert "[TC003] Subprocess Spawn Violation" in text and "assert 0" in text   # the call's failure is kept
    assert ("Captured stdout call", "c\n") in out[0].sections                    # and what it printed


def test_a_spawn_in_call_fails_call_only():
    reports = [report("setup"), report("call"), report("teardown")]
    out = Controller._fail_with(None, ITEM, reports, spawned_in("call"))
    assert [(r.when, r.outcome) for r in out] == [("setup", "passed"), ("call", "failed"), ("teardown", "passed")]


class NotImportedHere(UserWarning):
    pass


def test_a_warning_class_is_looked_up_never_imported(tmp_path, monkeypatch):
    (tmp_path / "isod_planted_mod.py").write_text("import sys\nsys.planted = True\nclass W(UserWarning):\n    pass\n")
    monkeypatch.syspath_prepend(tmp_path)
    assert _warning_class("isod_planted_mod:W") is None
    assert "isod_planted_mod" not in sys.modules and not hasattr(sys, "planted")


def test_known_classes_are_found_without_running_module_code(monkeypatch):
    assert _warning_class("builtins:DeprecationWarning") is DeprecationWarning
    assert _warning_class(f"{__name__}:NotImportedHere") is NotImportedHere
    called = []
    monkeypatch.setattr(sys.modules[__name__], "__getattr__", lambda name: called.append(name), raising=False)
    assert _warning_class(f"{__name__}:Missing") is None and called == []
    assert _warning_class(f"{__name__}:ITEM") is None        # not a warning class


def test_an_unknown_class_reaches_the_summary_as_a_user_warning_naming_it():
    seen = []
    item = SimpleNamespace(ihook=SimpleNamespace(pytest_warning_recorded=SimpleNamespace(
        call_historic=lambda kwargs: seen.append(kwargs["warning_message"]))), nodeid=ITEM.nodeid)
    Controller._recorded(None, item, pb.RecordedWarning(category="isod_planted_mod:W", message="hello",
                                                        filename="t.py", lineno=3))
    (msg,) = seen
    assert msg.category is UserWarning and str(msg.message) == "isod_planted_mod:W: hello"
    assert isinstance(msg, warnings.WarningMessage)

"""The client's controller: replaces pytest's collection and run loop with the daemon's.

Like pytest-xdist's DSession: the client collects nothing; it reports the
collection the session's collecting process made (remote_collection.py),
sends its node ids, and feeds each result's phase reports into pytest's own
hooks (logstart,
logreport, logfinish), so terminal output, -v, -rA, -x/--maxfail, --lf,
--junitxml and --durations behave as in plain pytest. A small test with a
recorded spawn attempt gets the TC003 verdict here (strict) or a warning.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import NoReturn

import grpc
import pytest
from _pytest.reports import TestReport
from isod.contract import Size, size_from_pb, size_to_pb, worker_class
from isod.sizes import fixture_limit, limits
from isod.v1 import isod_pb2 as pb

from . import remote_collection, tc001, tc003
from .daemon_link import Link, LinkError
from .embedded import EmbeddedDaemon
from .from_workers import read_report, warning_message
from .report_file import ReportFile
from .session_open import HINT_KEY


class IsodViolationWarning(pytest.PytestWarning):
    """A small test tried to create a process (enforcement: warn)."""


class Controller:
    def __init__(self, config: pytest.Config, enforcement: str, default_size: Size, open_msg: pb.SessionOpen,
                 daemon: EmbeddedDaemon | None) -> None:
        self.config = config
        self.open_msg = open_msg
        self.enforcement = enforcement
        self.default_size = default_size
        self.limits = limits(config)
        self.sizes: dict[str, tuple[Size, float]] = {}
        self.violators: list[tuple[str, list[str]]] = []
        self.net_violators: list[tuple[str, list[str]]] = []    # TC001 (tc001.py)
        self.network = tc001.enabled(config)                    # --isod-network on|off (session_open.py too)
        self.outside: list[pb.OutsideTests] = []     # calls made while no test ran, per worker
        self.unmarked = 0                            # tests without a size marker
        self.session_exit: pb.SessionExit | None = None   # a test called pytest.exit / raised KeyboardInterrupt
        self.ended = False      # the daemon said the session is over (its workers are gone)
        self.report = ReportFile(config.getoption("isod_report"), self.limits,
                                 keep=config.getoption("isod_suggest_sizes", False), default_size=default_size,
                                 rootdir=str(config.rootpath))
        self.link = Link(config.getoption("isod_target"), os.environ.get("ISOD_TOKEN"), daemon)

    # --- the session opens as pytest starts (session_open.py) -------------
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.link.open_async(self.open_msg)

    def _remember_classes(self) -> None:
        cache = getattr(self.config, "cache", None)
        if cache is not None and self.sizes:
            cache.set(HINT_KEY, sorted({worker_class(size) for size, _ in self.sizes.values()}))

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection(self, session: pytest.Session) -> bool:
        """The session's collection, made by the daemon's collecting process."""
        try:
            self.link.wait_open()
        except (LinkError, grpc.RpcError) as e:
            raise pytest.UsageError(f"isod: cannot reach the daemon at {self.link.target}: {_rpc_text(e)}") from None
        remote_collection.report(session, self._collection(session))
        return True

    def _collection(self, session: pytest.Session) -> pb.Collection:
        error = "the daemon closed the session before sending its collection"
        try:
            for msg in self.link.responses:
                kind = msg.WhichOneof("kind")
                if kind == "collection":
                    return msg.collection
                if kind == "end":
                    self.ended = True
                    error = msg.end.error or "the daemon ended the session before sending its collection"
                    break
                self._side_message(msg)
        except grpc.RpcError as e:
            error = self._lost_text(e)
        self._fail_session(session, error)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Sizes of the tests that will run, as the collecting process read
        them from their markers once every plugin and conftest had modified
        and deselected them."""
        for item in session.items:
            test = item.test
            self.unmarked += not test.marked
            self.report.collected(item.nodeid, test.marked, dict(test.fixtures))
            self.sizes[item.nodeid] = (size_from_pb(test.size), test.timeout_s)
        self._remember_classes()

    # --- the run loop -------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        if session.testsfailed and not session.config.option.continue_on_collection_errors:
            raise session.Interrupted(
                f"{session.testsfailed} error{'s' if session.testsfailed != 1 else ''} during collection")
        items = {item.nodeid: item for item in session.items}
        # only strict kills at the limit; warn reports an overrun, off ignores it
        kill_at_limit = self.enforcement == "strict"
        fixtures = fixture_limit(self.config)
        self.link.send(pb.ClientMessage(run=pb.RunTests(items=[
            pb.TestItem(nodeid=nid, size=size_to_pb(self.sizes[nid][0]),
                        timeout_s=self.sizes[nid][1] if kill_at_limit else 0.0,
                        fixture_timeout_s=fixtures)
            for nid in items])))
        self.link.send(pb.ClientMessage(finish=pb.Finish()))
        stopped = False
        error = ""
        try:
            for msg in self.link.responses:
                kind = msg.WhichOneof("kind")
                if kind in ("result", "results"):
                    for res in ([msg.result] if kind == "result" else msg.results.results):
                        if stopped:
                            break   # ran in a worker before the stop reached it: plain pytest never ran it
                        if res.interruption.kind == pb.Interruption.SESSION_EXIT:
                            self.session_exit = res.interruption.session_exit   # the daemon stops the session
                            stopped = True
                            break
                        self._result(items, res)
                        if session.shouldfail or session.shouldstop:
                            stopped = True
                            self.link.send(pb.ClientMessage(stop=pb.Stop(reason=str(session.shouldfail or
                                                                                     session.shouldstop))))
                elif kind != "end":
                    self._side_message(msg)
                else:
                    error = msg.end.error
                    self.ended = True
                    break
            else:
                error = "the daemon closed the session without ending it"
        except grpc.RpcError as e:
            error = self._lost_text(e)
        if error:
            self._fail_session(session, error)
        if self.session_exit is not None:
            ex = self.session_exit
            if ex.keyboard_interrupt:
                raise KeyboardInterrupt(ex.reason)
            pytest.exit(ex.reason, ex.returncode if ex.returncode >= 0 else None)
        # as pytest's own run loop ends: -x/--maxfail, --sw and the like
        if session.shouldfail:
            raise session.Failed(session.shouldfail)
        if session.shouldstop:
            raise session.Interrupted(session.shouldstop)
        return True

    def _side_message(self, msg: pb.DaemonMessage) -> None:
        """What comes besides results: output, a worker's end, calls outside tests."""
        kind = msg.WhichOneof("kind")
        if kind == "node_down":    # a worker ended: xdist's testnodedown (xdist_nodes.py)
            from .xdist_nodes import node_down
            node_down(self.config, msg.node_down)
        elif kind == "outside":
            self.outside.append(msg.outside)
            self.report.add_outside(msg.outside)
        elif kind == "output":
            stream = sys.stderr if msg.output.stderr else sys.stdout
            stream.write(msg.output.data.decode(errors="replace"))
            stream.flush()

    def _lost_text(self, e: grpc.RpcError) -> str:
        error = f"lost the daemon at {self.link.target}: {_rpc_text(e)}"
        if self.link.daemon is not None and self.link.daemon.proc.poll() is not None:
            error += f" (embedded daemon exited with status {self.link.daemon.proc.returncode})"
        return error

    def _fail_session(self, session: pytest.Session, error: str) -> NoReturn:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("")
            reporter.write_line(f"isod: {error}", red=True, bold=True)
        session.shouldfail = f"isod: {error.splitlines()[0]}"
        raise session.Failed(f"isod: {error}")

    def _result(self, items: dict, res: pb.TestResult) -> None:
        item = items.get(res.nodeid)
        if item is None:
            return
        ihook = item.ihook
        ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        keywords = dict.fromkeys(res.keywords, 1)
        reports = [self._phase_report(item, r, keywords) for r in res.reports]
        if res.HasField("interruption"):
            reports = self._interrupted(item, reports, res.interruption)
        lines = tc003.attempt_lines(res) if res.size == pb.SMALL else []
        net = tc001.attempt_lines(res) if self.network else []
        if lines:
            self.violators.append((res.nodeid, lines))
        if net:
            self.net_violators.append((res.nodeid, net))
        if lines or net:
            if self.enforcement == "strict":
                reports = self._fail_with(item, reports, res)     # TC003 and TC001 both, when both
            elif self.enforcement == "warn":
                if lines:
                    self._warn(item, tc003.message(res))
                if net:
                    self._warn(item, tc001.message(res))
        if self.enforcement == "warn":
            size, limit = self.sizes.get(res.nodeid, (self.default_size, 0.0))
            took = sum(r.duration for r in reports)
            if limit and took > limit:
                self._warn(item, f"[TC006] {res.nodeid} ({size.value}) took {took:.2f} s, "
                                 f"past its limit of {limit:g} s")
        for text in res.warnings:
            self._warn(item, text, pytest.PytestWarning)
        for w in res.recorded_warnings:
            self._recorded(item, w)
        for rep in reports:
            ihook.pytest_runtest_logreport(report=rep)
        ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        self.report.add(res, self.sizes.get(res.nodeid, (self.default_size, 0))[0], reports)

    def _phase_report(self, item, r: pb.PhaseReport, keywords: dict) -> TestReport:
        if r.report_json:
            return read_report(self.config, r.report_json)
        # a plain report (worker/plugin.py): its fields, the test's identity
        return TestReport(item.nodeid, item.location, keywords, r.outcome, None, r.when,
                          [(s.title, s.content) for s in r.sections], r.duration, r.start, r.stop)

    def _interrupted(self, item, reports: list, intr: pb.Interruption) -> list:
        """Complete the reports of a test the daemon ended: a failed phase saying why."""
        done = {r.when for r in reports if "subtest" not in type(r).__name__.lower()}   # a subtest's is "call"
        out = list(reports)
        if intr.phase in ("call", "teardown") and "setup" not in done:
            # the reports travel when the test ends: setup's died with the worker
            out.insert(0, _lost_setup(item, intr.setup_outcome or "passed"))
            done.add("setup")
            if intr.setup_outcome in ("failed", "skipped"):
                done.add("call")        # pytest runs no call after a failed or skipped setup
        when = "setup" if "setup" not in done else ("call" if "call" not in done else "teardown")
        if intr.phase == "teardown" and when == "call":
            # killed in teardown: the call ended, its report died with the worker
            outcome = intr.call_outcome or "passed"
            lost = None if outcome == "passed" else (f"the call {outcome}; its report was lost when isod "
                                                     "killed the worker in teardown")
            out.append(_report(item, "call", outcome if outcome != "skipped" else "passed", lost, 0.0))
            when = "teardown"
        out.append(_report(item, when, "failed", intr.message, intr.elapsed_s))
        if when == "call":
            out.append(_report(item, "teardown", "passed", None, 0.0))
        return out

    def _fail_with(self, item, reports: list, res: pb.TestResult) -> list:
        """Fail the phase where the first attempt happened (a fixture's spawn fails setup).

        After a failed setup pytest reports no call: the call's reports are
        dropped (one outcome per test in the summary and --junitxml), and
        what failed in them is kept in the TC003 text."""
        by_when = {r.when: r for r in reports}
        network = getattr(self, "network", True)
        phase = tc001.first_phase(res)
        target = by_when.get(phase) or by_when.get("call") or (reports[-1] if reports else None)
        if target is None:
            return [_report(item, "call", "failed", tc001.longrepr(res, item.location, network=network), 0.0)]
        failed = [target] if target.failed and target.longrepr is not None else []
        if target.when == "setup":
            calls = [r for r in reports if r.when == "call"]
            failed += [r for r in calls if r.failed and r.longrepr is not None]
            if calls:
                target.sections = list(calls[-1].sections)   # what the test printed: setup's and call's
            reports = [r for r in reports if r.when != "call"]
        previous = "\n\n".join(r.longreprtext for r in failed) or None
        target.outcome = "failed"
        target.longrepr = tc001.longrepr(res, item.location, previous, network)
        if hasattr(target, "wasxfail"):
            del target.wasxfail
        return reports

    def _warn(self, item, text: str, category=IsodViolationWarning) -> None:
        msg = warnings.WarningMessage(category(text), category,
                                      item.location[0], (item.location[1] or 0) + 1)
        item.ihook.pytest_warning_recorded.call_historic(kwargs=dict(
            warning_message=msg, when="runtest", nodeid=item.nodeid, location=None))

    def _recorded(self, item, w: pb.RecordedWarning) -> None:
        """A warning the test raised in its worker, into the warnings summary."""
        item.ihook.pytest_warning_recorded.call_historic(kwargs=dict(
            warning_message=warning_message(w), when=w.when or "runtest", nodeid=item.nodeid, location=None))

    # --- end of run ------------------------------------------------------------
    def pytest_terminal_summary(self, terminalreporter) -> None:
        daemon = self.link.daemon
        if daemon is not None and daemon.resumed:
            terminalreporter.write_line(f"isod: a process stopped the embedded daemon (SIGSTOP) {daemon.resumed} "
                                        "time(s); isod continued it", yellow=True)
        if self.unmarked:
            terminalreporter.write_line(f"isod: {self.unmarked} test(s) without a size marker ran as "
                                        f"{self.default_size.value} (--isod-default-size)")
        late = tc003.outside_lines(self.outside)
        if late:
            # recorded while no test ran, but a small test may have put
            # it there (atexit, a finalizer): shown, never silent
            terminalreporter.section("isod: processes created while no test ran (denied in small workers)",
                                     sep="-", yellow=True)
            for line in late[:20]:
                terminalreporter.write_line(f"    {line}")
            if len(late) > 20:
                terminalreporter.write_line(f"    ... and {len(late) - 20} more (--isod-report has them all)")
        verb = {"strict": "failed", "warn": "warned", "off": "recorded"}[self.enforcement]
        tc001.summary(terminalreporter, self.net_violators, verb)
        if not self.violators:
            return
        terminalreporter.section("isod: small tests that tried to create processes", sep="-", yellow=True)
        for nodeid, lines in self.violators:
            terminalreporter.write_line(f"{nodeid} ({verb})")
            for line in lines[:5]:
                terminalreporter.write_line(f"    {line}")
            if len(lines) > 5:
                terminalreporter.write_line(f"    ... and {len(lines) - 5} more")

    @pytest.hookimpl(specname="pytest_terminal_summary", trylast=True)
    def pytest_terminal_summary_isod_sizes(self, terminalreporter) -> None:
        """--isod-suggest-sizes: the size advisor's summary (isod.advice), last."""
        if self.config.getoption("isod_suggest_sizes", False) and self.report.tests:
            terminalreporter.section("isod: suggested sizes", sep="-", bold=True)
            for line in self.report.summary_lines():
                terminalreporter.write_line(line)

    def pytest_sessionfinish(self, session) -> None:
        self.report.write()
        self.link.close(session_ended=self.ended)


def _lost_setup(item, outcome: str) -> TestReport:
    lost = "its report was lost when isod ended the worker"
    if outcome == "skipped":
        return _report(item, "setup", "skipped", (str(item.location[0]), (item.location[1] or 0) + 1,
                                                   f"Skipped: {lost}"), 0.0)
    return _report(item, "setup", outcome, f"setup {outcome}; {lost}" if outcome == "failed" else None, 0.0)


def _report(item, when: str, outcome: str, longrepr, duration: float) -> TestReport:
    return TestReport(item.nodeid, item.location, {k: 1 for k in item.keywords}, outcome, longrepr, when,
                      sections=[], duration=duration, start=0.0, stop=duration)


def _rpc_text(e: BaseException) -> str:
    if isinstance(e, grpc.RpcError) and hasattr(e, "code"):
        return f"{e.code().name}: {e.details()}"
    return str(e)

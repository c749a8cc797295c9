"""The session's collection, as the client reports it (``pb.Collection``).

The client collects nothing, as pytest-xdist's controller: the process that
collects for the session (its zygote, else a fresh worker) records here what
plain pytest's own process would have seen while collecting: the selected
tests with their sizes and limits (read from the real items, after every
plugin's and conftest's modifyitems), the deselected ones, the collected
count, the collect reports that failed or skipped, the warnings, and the
state that pytest's cache plugins (--lf, --ff, --nf, --sw) keep for the end
of the run. One collection for every worker: a parameter id made of the
time is the same test in the client and in every forked worker.
"""

from __future__ import annotations

import json
import traceback

import pytest

from isod import contract, sizes, wire
from isod.v1 import isod_pb2 as pb

# pytest's cache plugins select from the cache: the collecting process keeps
# them on (isod/worker/plugin.py), and a zygote that used them is not reused
CACHE_SELECTION = ("lf", "failedfirst", "newfirst", "stepwise", "stepwise_skip", "stepwise_reset")


def selects_from_cache(config: pytest.Config) -> bool:
    return any(getattr(config.option, name, False) for name in CACHE_SELECTION)


def recorded_warning(warning_message, when: str) -> pb.RecordedWarning:
    cat = warning_message.category
    return pb.RecordedWarning(
        message=wire.utf8_safe(str(warning_message.message)), category=f"{cat.__module__}:{cat.__qualname__}",
        filename=wire.utf8_safe(str(warning_message.filename)), lineno=warning_message.lineno or 0, when=when)


class CollectionRecorder:
    """A plugin in the collecting process: what its collection showed."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.count = 0                     # items in collect reports: the terminal's "collected N items"
        self.deselected: list[str] = []
        self.reports: list[bytes] = []     # failed and skipped collect reports, serialized
        self.errors: list[str] = []        # the failed ones as text (the daemon's messages)
        self.warnings: list[pb.RecordedWarning] = []

    def pytest_collectreport(self, report) -> None:
        self.count += sum(isinstance(x, pytest.Item) for x in report.result)
        if report.passed:
            return
        if report.failed:
            self.errors.append(f"{report.nodeid}: {report.longreprtext}")
        self.reports.append(json.dumps(wire.report_dict(self.config, report), default=repr).encode())

    def pytest_deselected(self, items) -> None:
        self.deselected.extend(item.nodeid for item in items)

    def pytest_warning_recorded(self, warning_message, when, nodeid, location) -> None:
        if when == "collect":
            self.warnings.append(recorded_warning(warning_message, when))

    def collection(self, session: pytest.Session) -> pb.Collection:
        """The collection of a session whose collection ended normally."""
        config = self.config
        default = sizes.default_size(config)
        table = sizes.limits(config)
        keep_fixtures = bool(config.getoption("isod_report", None) or config.getoption("isod_suggest_sizes", False))
        tests = []
        marks: dict[int, pb.CollectedMark] = {}     # a module's or class's marks are shared: made once
        for item in session.items:
            size, marked = sizes.item_size(item, default)
            file, line, domain = item.location
            tests.append(pb.CollectedTest(
                nodeid=item.nodeid, file=wire.utf8_safe(str(file)), line=-1 if line is None else line,
                domain=wire.utf8_safe(str(domain)), size=contract.size_to_pb(size), marked=marked,
                timeout_s=sizes.item_timeout(item, size, table), marks=_marks(item, marks),
                **({"fixtures": sizes.fixture_scopes(item)} if keep_fixtures else {})))
        return pb.Collection(tests=tests, deselected=self.deselected, collected=self.count, reports_json=self.reports,
                             warnings=self.warnings, plugin_state_json=json.dumps(cache_plugin_state(config)).encode())

    def failed(self, e: BaseException) -> pb.Collection:
        """Collection raised: the client raises the same (pytest's exit code and text)."""
        out = pb.Collection(collected=self.count, reports_json=self.reports, warnings=self.warnings)
        if isinstance(e, pytest.UsageError):
            out.usage_error = wire.utf8_safe("\n".join(str(a) for a in e.args))
        elif isinstance(e, pytest.exit.Exception):
            out.exit.CopyFrom(pb.SessionExit(reason=wire.utf8_safe(str(e.msg)),
                                             returncode=-1 if e.returncode is None else int(e.returncode)))
        elif isinstance(e, KeyboardInterrupt):
            out.exit.CopyFrom(pb.SessionExit(reason="KeyboardInterrupt while collecting", returncode=-1,
                                             keyboard_interrupt=True))
        else:
            out.internal_error = wire.utf8_safe("".join(traceback.format_exception(e)))
        return out


MAX_MARK_ARGS = 512     # bytes of a marker's JSON arguments sent (a parametrize's values are not)


def _marks(item: pytest.Item, made: dict[int, pb.CollectedMark]) -> list[pb.CollectedMark]:
    """The item's markers, closest first, with their arguments where they are
    small JSON values: a client-side hook that asks item.get_closest_marker()."""
    out = []
    for mark in item.iter_markers():
        pm = made.get(id(mark))
        if pm is None:
            try:
                args = json.dumps([list(mark.args), mark.kwargs]).encode()
            except (TypeError, ValueError):
                args = b""
            pm = made[id(mark)] = pb.CollectedMark(name=wire.utf8_safe(mark.name),
                                                  args_json=args if len(args) <= MAX_MARK_ARGS else b"")
        out.append(pm)
    return out


def cache_plugin_state(config: pytest.Config) -> dict:
    """What pytest's cache plugins learnt while collecting, which the client's
    own copies of them write to the cache at the end of the run: lastfailed
    pruned by collect reports, --lf's and --sw's status lines, the stepwise
    test count, and the node ids --nf remembers."""
    state: dict = {}
    pm = config.pluginmanager
    lf = pm.get_plugin("lfplugin")
    if lf is not None:
        state["lfplugin"] = {"lastfailed": {str(k): v for k, v in lf.lastfailed.items()},
                             "report_status": getattr(lf, "_report_status", None)}
    sw = pm.get_plugin("stepwiseplugin")
    info = getattr(sw, "cached_info", None)
    if sw is not None and info is not None:
        state["stepwiseplugin"] = {"report_status": list(sw.report_status),
                                   "last_failed": None if info.last_failed is None else str(info.last_failed),
                                   "last_test_count": info.last_test_count}
    nf = pm.get_plugin("nfplugin")
    if nf is not None and hasattr(nf, "cached_nodeids"):
        state["nfplugin"] = {"cached_nodeids": sorted(str(n) for n in nf.cached_nodeids)}
    return state

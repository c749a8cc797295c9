"""The session's collection, made in isod's collecting process, reported as
the client's own.

The client collects nothing (as pytest-xdist's controller): it imports no
test module outside a sandbox, and every worker runs the very tests the
client reports (one collection: a parameter id made of the time is one test
everywhere). What plain pytest's process would have done while collecting is
replayed here through its own hooks, so the terminal, --junitxml, the cache
plugins and conftest hooks see a collection: the failed and skipped collect
reports, the collected count, the deselected tests, the collection's
warnings, the cache plugins' state (--lf, --sw, --nf), then
``pytest_collection_finish`` with the selected tests as ``session.items``.

Conftest files of the collected tests' directories are loaded (pytest loads
them while collecting): their reporting hooks run in the client, as in plain
pytest's one process.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _pytest.reports import CollectReport
from isod.v1 import isod_pb2 as pb

from .from_workers import read_report, warning_message


class RemoteItem(pytest.Item):
    """A test collected and run in isod's workers: what the client's reporting
    needs of it (node id, location, path for its conftests' hooks), and what
    the collecting process read of it (``test``: size, limit, markers). Made
    without Node's constructor: microseconds a test (20,000 tests replayed in
    0.42 s under cProfile)."""

    __slots__ = ("_nodeid", "test")

    @property
    def nodeid(self) -> str:
        return self._nodeid

    @property
    def id(self):
        try:
            from _pytest.nodeid import coerce_node_id  # pytest >= 9
        except ImportError:
            return self._nodeid
        return coerce_node_id(self._nodeid)

    @property
    def keywords(self) -> dict:
        return {self.name: 1, **{m.name: 1 for m in self.test.marks}} if self.test is not None else {self.name: 1}

    @property
    def own_markers(self) -> list:
        """Its markers as collected (closest first; arguments that were small
        JSON values, else none): get_closest_marker() and iter_markers() work."""
        marks = self.__dict__.get("_marks")
        if marks is None:
            marks = self.__dict__["_marks"] = [_mark(m) for m in self.test.marks] if self.test is not None else []
        return marks

    def runtest(self) -> None:
        raise RuntimeError(f"{self._nodeid} runs in an isod worker, not in the client")

    def reportinfo(self):
        return self.path, self.location[1], self.location[2]


def _mark(m: pb.CollectedMark) -> pytest.Mark:
    args, kwargs = json.loads(m.args_json) if m.args_json else ([], {})
    return pytest.Mark(m.name, tuple(args), kwargs, _ispytest=True)


def _item(session: pytest.Session, paths: dict[str, Path], nodeid: str, file: str, line: int | None,
          domain: str, test: pb.CollectedTest | None = None) -> RemoteItem:
    item = object.__new__(RemoteItem)      # no NodeMeta check, no Node.__init__: see the class
    item._nodeid = nodeid
    item.test = test
    item.name = nodeid.rpartition("::")[2]
    item.parent = session
    item.session = session
    item.config = session.config
    path = paths.get(file)
    if path is None:
        path = paths[file] = (session.config.rootpath / file).resolve() if file else session.config.rootpath
    item.path = path
    item.__dict__["location"] = (file, line, domain)
    return item


def report(session: pytest.Session, collection: pb.Collection) -> list[RemoteItem]:
    """Replay the collection through the client's hooks; the selected tests."""
    config = session.config
    hook = config.hook
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.pytest_collection()           # "collecting ... ", as pytest's own collection prints it
    paths: dict[str, Path] = {}
    items = [_item(session, paths, t.nodeid, t.file, t.line if t.line >= 0 else None, t.domain, t)
             for t in collection.tests]
    load_conftests(config, {item.path.parent for item in items})
    for raw in collection.reports_json:
        rep = read_report(config, raw)
        if rep is None:
            continue
        session.gethookproxy(config.rootpath / rep.fspath).pytest_collectreport(report=rep)
    deselected = [_item(session, paths, nid, nid.partition("::")[0], None, nid.rpartition("::")[2])
                  for nid in collection.deselected]
    everything: list[pytest.Item] = [*items, *deselected]
    if collection.collected > len(everything) and everything:
        # a plugin that dropped tests without pytest_deselected: counted, as pytest counts them
        everything += [everything[-1]] * (collection.collected - len(everything))
    hook.pytest_collectreport(report=CollectReport("", "passed", None, everything))
    if deselected:
        hook.pytest_deselected(items=deselected)
    for w in collection.warnings:
        _warning_recorded(config, w)
    apply_cache_state(config, json.loads(collection.plugin_state_json or b"{}"))
    session.items = items
    session.testscollected = len(items)
    hook.pytest_collection_finish(session=session)     # pytest calls it also when collecting raised
    raise_failure(collection)
    return items


def raise_failure(collection: pb.Collection) -> None:
    """Collection raised in the collecting process: the same here."""
    if collection.usage_error:
        raise pytest.UsageError(collection.usage_error)
    if collection.HasField("exit"):
        ex = collection.exit
        if ex.keyboard_interrupt:
            raise KeyboardInterrupt(ex.reason)
        pytest.exit(ex.reason, ex.returncode if ex.returncode >= 0 else None)
    if collection.internal_error:
        raise CollectionFailed(collection.internal_error)


class CollectionFailed(Exception):
    """An exception in isod's collecting process (pytest shows it as an INTERNALERROR)."""


def load_conftests(config: pytest.Config, directories: set[Path]) -> None:
    """The conftest.py files pytest would have loaded while collecting these
    directories. One that fails to import here failed there too: its
    collect report says so."""
    pm = config.pluginmanager
    load = getattr(pm, "_loadconftestmodules", None)
    if load is None:
        return
    mode = config.getoption("importmode")
    namespace = config.getini("consider_namespace_packages")
    for directory in sorted(directories):
        try:
            load(directory, mode, config.rootpath, consider_namespace_packages=namespace)
        except TypeError:        # an older pytest's signature
            load(directory, mode, config.rootpath)
        except Exception:  # noqa: BLE001, S110 (reported by the collection's own collect report)
            pass


def apply_cache_state(config: pytest.Config, state: dict) -> None:
    """The client's cache plugins take what the collecting process's learnt
    while collecting; they write the cache at the end of the run."""
    pm = config.pluginmanager
    lf, got = pm.get_plugin("lfplugin"), state.get("lfplugin")
    if lf is not None and got is not None:
        lf.lastfailed = {_node_id(k): v for k, v in (got.get("lastfailed") or {}).items()}
        lf._report_status = got.get("report_status")
    sw, got = pm.get_plugin("stepwiseplugin"), state.get("stepwiseplugin")
    if sw is not None and got is not None and hasattr(sw, "cached_info"):
        sw.report_status = list(got.get("report_status") or [])
        sw.cached_info.last_failed = _node_id(got.get("last_failed"))
        sw.cached_info.last_test_count = got.get("last_test_count")
    nf, got = pm.get_plugin("nfplugin"), state.get("nfplugin")
    if nf is not None and got is not None and hasattr(nf, "cached_nodeids"):
        nf.cached_nodeids = {_node_id(n) for n in got.get("cached_nodeids") or ()}


def _node_id(text: str | None):
    """pytest 9 keys its caches by NodeId; earlier ones by str."""
    if text is None:
        return None
    try:
        from _pytest.nodeid import NodeId
    except ImportError:
        return text
    return NodeId.parse(text)


def _warning_recorded(config: pytest.Config, w: pb.RecordedWarning) -> None:
    config.hook.pytest_warning_recorded.call_historic(kwargs=dict(
        warning_message=warning_message(w), when="collect", nodeid="", location=None))


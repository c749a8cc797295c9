"""pytest-xdist's worker conventions, in an isod worker.

Suites written for xdist isolate their workers by its id (the ``worker_id``
fixture, ``config.workerinput["workerid"]``, ``PYTEST_XDIST_WORKER``: port
ranges, database names), and pytest-cov brings each worker's coverage home
through ``config.workeroutput``. An isod worker looks like an xdist worker to
all of them: the daemon names it ``gwN`` and gives the count and the run's
uid; the client's ``sys.argv`` and what its plugins added to a node's
``workerinput`` in ``pytest_configure_node`` come in the environment; what
plugins leave in ``config.workeroutput`` goes back to the client once the
session has finished, and the client calls xdist's controller hooks with it
(``client/isod_client/xdist_nodes.py``). Both ways they travel in the form
the client and its workers share (``xdist_dumps``, isod/contract.py).
"""

from __future__ import annotations

import json
import os
import sys
import uuid

import pytest

from ..contract import ENV_MAINARGV, ENV_WORKERINPUT, xdist_dumps, xdist_loads
from ..v1 import isod_pb2 as pb

# the daemon's names for what xdist's controller tells a worker, and xdist's
ENV_ID = ("ISOD_WORKER_ID", "PYTEST_XDIST_WORKER")
ENV_COUNT = ("ISOD_WORKER_COUNT", "PYTEST_XDIST_WORKER_COUNT")
ENV_UID = ("ISOD_TESTRUN_UID", "PYTEST_XDIST_TESTRUNUID")


def workerinput(environ) -> dict:
    """``config.workerinput`` as xdist's controller would have sent it."""
    wid = _first(environ, ENV_ID)
    count = _first(environ, ENV_COUNT)
    try:
        argv = json.loads(environ.get(ENV_MAINARGV) or "null")
    except ValueError:
        argv = None
    try:
        extra = xdist_loads(environ[ENV_WORKERINPUT].encode()) if environ.get(ENV_WORKERINPUT) else {}
    except ValueError:
        extra = {}
    return {**(extra if isinstance(extra, dict) else {}),
            "workerid": wid,
            "workercount": int(count) if count and count.isdigit() else 1,
            "testrunuid": _first(environ, ENV_UID) or uuid.uuid4().hex,
            "mainargv": argv if isinstance(argv, list) and argv else list(sys.argv)}


def _first(environ, names) -> str | None:
    return next((environ[n] for n in names if environ.get(n)), None)


def install(config: pytest.Config) -> None:
    """What xdist's remote.py sets up before pytest_cmdline_main: before any
    plugin's pytest_configure or sessionstart looks for a worker."""
    wi = workerinput(os.environ)
    os.environ["PYTEST_XDIST_WORKER"] = wi["workerid"]
    os.environ["PYTEST_XDIST_WORKER_COUNT"] = str(wi["workercount"])
    os.environ["PYTEST_XDIST_TESTRUNUID"] = wi["testrunuid"]
    config.workerinput = wi
    config.workeroutput = {}
    try:
        config._parser.prog = os.path.basename(str(wi["mainargv"][0]))   # usage lines name the client's program
    except (AttributeError, IndexError):
        pass


def keep_coverage_data(early_config: pytest.Config) -> None:
    """pytest-cov starts coverage in every process with --cov and erases the
    data files of the directory unless --cov-append: harmless under xdist,
    whose workers all start before any has saved, but an isod worker may
    start later (a replacement after a crash, a worker of another class)
    and would erase the data the client and the other workers saved. The
    client erased them at its start, as plain pytest does."""
    ns = getattr(early_config, "known_args_namespace", None)
    if ns is not None and hasattr(ns, "cov_append"):
        ns.cov_append = True


def register_fixtures(config: pytest.Config) -> None:
    """``worker_id`` / ``testrun_uid`` where pytest-xdist is not there to
    provide them (its own read ``config.workerinput``)."""
    pm = config.pluginmanager
    if any(getattr(p, "__name__", "") == "xdist.plugin" for p in pm.get_plugins()):
        return
    from . import xdist_fixtures

    pm.register(xdist_fixtures, "isod-xdist-fixtures")


class NodeDown:
    """Sends ``config.workeroutput`` once the session has finished, after
    every other plugin's pytest_sessionfinish (pytest-xdist's
    ``workerfinished``, with the same keys it adds)."""

    def __init__(self, config: pytest.Config, send) -> None:
        self.config = config
        self.send = send

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus):
        out = self.config.workeroutput
        out["exitstatus"] = int(exitstatus)
        out["shouldfail"] = session.shouldfail
        out["shouldstop"] = session.shouldstop
        try:
            return (yield)
        finally:
            try:
                self.send(node_down=pb.NodeDown(workeroutput_json=xdist_dumps(out)))
            except OSError:
                pass     # the daemon is gone: the worker exits anyway

"""pytest-xdist's controller, as far as plugins see it: its nodes.

xdist's controller calls ``pytest_configure_node(node)`` before a worker
starts (pytest-cov puts its host and directory into ``node.workerinput``
there) and ``pytest_testnodedown(node, error)`` when a worker ends (pytest-cov
combines that worker's coverage, announced in ``node.workeroutput``). isod's
daemon starts the workers, all from one environment: the client calls
``pytest_configure_node`` once, before the session opens, for a node standing
for all of them, and what it adds to ``workerinput`` reaches every worker
(``isod/worker/xdist_compat.py`` reads it there). Each worker's end comes back
as a ``node_down`` message; the client builds that node and calls
``pytest_testnodedown`` with its ``workeroutput``, or with the error when it
died. ``pytest_testnodeready`` is not called: nothing tells the client when a
worker is ready.
"""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import pytest
from isod.contract import ENV_MAINARGV, ENV_WORKERINPUT, xdist_dumps, xdist_loads
from isod.v1 import isod_pb2 as pb

_NODES = pytest.StashKey["Nodes"]()
ALL_WORKERS = "gw*"      # the id of the node that stands for all workers in pytest_configure_node


class Gateway:
    """What plugins read of a node's execnet gateway."""

    def __init__(self, gid: str, cwd: str) -> None:
        self.id = gid
        self.spec = SimpleNamespace(id=gid, popen=True, chdir=None, python=sys.executable, via=None, env={},
                                    ssh=None, socket=None, execmodel="thread")
        self._cwd = cwd

    def _rinfo(self) -> SimpleNamespace:
        """The worker's interpreter: the client's own, by construction (the
        daemon runs workers with the client's python, in its directory)."""
        return SimpleNamespace(executable=sys.executable, version_info=tuple(sys.version_info),
                               platform=sys.platform, cwd=self._cwd)


class Node:
    """What plugins read of xdist's WorkerController. ``workeroutput`` is set
    only when the worker sent it (pytest-cov checks with getattr)."""

    def __init__(self, config: pytest.Config, gid: str, workerinput: dict) -> None:
        cwd = str(config.invocation_params.dir)
        self.config = config
        self.gateway = Gateway(gid, cwd)
        self.workerinput = workerinput
        self.workerinfo = {"id": gid, "spec": self.gateway.spec, "version": sys.version,
                           "version_info": tuple(sys.version_info), "sysplatform": sys.platform,
                           "platform": sys.platform, "executable": sys.executable, "cwd": cwd}
        self.nodemanager = SimpleNamespace(roots=[], specs=[], config=config)   # no rsync under isod
        self.shutting_down = False

    def __repr__(self) -> str:
        return f"<isod node {self.gateway.id}>"


class Nodes:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.workerinput: dict = {}     # what every worker gets, as pytest_configure_node left it

    def launch_env(self) -> dict[str, str]:
        """Before the session opens: the environment variables that carry the
        client's argv and the configured workerinput to every worker."""
        _distribute_coverage(self.config)
        base = {"workerid": ALL_WORKERS, "workercount": self.config.getoption("isod_workers", None),
                "testrunuid": None, "mainargv": list(sys.argv)}
        node = Node(self.config, ALL_WORKERS, dict(base))
        self._call("pytest_configure_node", node=node)
        self.workerinput = node.workerinput
        added = {k: v for k, v in node.workerinput.items() if k not in base}
        # always set: an outer isod run's value must not reach these workers
        return {ENV_MAINARGV: json.dumps(list(sys.argv)), ENV_WORKERINPUT: xdist_dumps(added).decode()}

    def down(self, msg: pb.NodeDown) -> None:
        """A worker ended: xdist's testnodedown, with its workeroutput or the error."""
        node = Node(self.config, msg.worker, {**self.workerinput, "workerid": msg.worker})
        if not msg.error:
            try:
                node.workeroutput = xdist_loads(msg.workeroutput_json) if msg.workeroutput_json else {}
            except ValueError:
                node.workeroutput = {}
        self._call("pytest_testnodedown", node=node, error=msg.error or None)

    def _call(self, name: str, **kwargs) -> None:
        """A plugin that wants more of xdist than isod has is named, not fatal."""
        hook = getattr(self.config.hook, name, None)
        if hook is None:
            return
        try:
            hook(**kwargs)
        except Exception as e:  # noqa: BLE001 (reported: xdist would have stopped the run)
            node = kwargs["node"].gateway.id
            _say(self.config, f"isod: {name} of {node} failed in a plugin: {type(e).__name__}: {e}")


def nodes(config: pytest.Config) -> Nodes:
    if _NODES not in config.stash:
        config.stash[_NODES] = Nodes(config)
    return config.stash[_NODES]


def launch_env(config: pytest.Config) -> dict[str, str]:
    return nodes(config).launch_env()


def node_down(config: pytest.Config, msg: pb.NodeDown) -> None:
    nodes(config).down(msg)


def _distribute_coverage(config: pytest.Config) -> None:
    """pytest-cov picks its controller when pytest starts, from -n: with no
    -n the client got the central one, which neither configures nodes nor
    takes their data. isod's client is xdist's controller: switch it to the
    distributed one, keeping what it measured so far (conftests imported at
    start: their lines count, and are combined with the workers' at the end)."""
    plugin = config.pluginmanager.get_plugin("_cov")
    controller = getattr(plugin, "cov_controller", None)
    if controller is None or getattr(plugin, "_disabled", False):
        return
    try:
        from pytest_cov import engine
    except ImportError:
        return
    if type(controller) is not engine.Central:
        return
    cov = controller.cov
    cov.stop()
    cov._warn_no_data = cov._warn_unimported_source = False   # as DistMaster's own: the workers import the code
    cov.save()
    append = plugin.options.cov_append
    plugin.options.cov_append = True       # the central one erased old data at its start; keep what it saved
    try:
        plugin.start(engine.DistMaster)
    finally:
        plugin.options.cov_append = append


def _say(config: pytest.Config, line: str) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line, yellow=True)
    else:
        print(line, file=sys.stderr)

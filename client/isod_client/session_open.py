"""The session this run opens on the daemon (pb.SessionOpen), made as pytest
configures: the embedded daemon is started with it at once (embedded.py),
before the client imports gRPC. No gRPC here."""

from __future__ import annotations

import os
import sys

import pytest
from isod.contract import Size, worker_class
from isod.v1 import isod_pb2 as pb

from . import tc001
from .worker_args import launch, worker_args

ENFORCEMENT_TO_PB = {"strict": pb.STRICT, "warn": pb.WARN, "off": pb.OFF}
# The daemon may start workers before the session's collection is known
# (fresh workers collect): it asks which classes to expect, those of the
# last run (pytest's cache), else the default size's.
HINT_KEY = "isod/worker-classes"


def check_usage(config: pytest.Config) -> None:
    opts = config.option
    if getattr(opts, "usepdb", False) or getattr(opts, "trace", False):
        raise pytest.UsageError("isod: --pdb and --trace cannot reach tests that run in isod's sandboxed "
                                "workers; run this test without -p isod_client to debug it")


def session_open(config: pytest.Config, enforcement: str, default_size: Size) -> pb.SessionOpen:
    opts = config.option
    workers = opts.isod_workers or 0
    if getattr(opts, "stepwise", False) or getattr(opts, "stepwise_skip", False):
        workers = 1   # --sw stops at the first failure in collection order: one worker keeps that order
    return pb.SessionOpen(
        python=sys.executable, cwd=str(config.invocation_params.dir),
        env=tc001.session_env(worker_env(config), tc001.enabled(config), enforcement),
        pytest_args=worker_args(config) + _basetemp(config), workers=workers,
        enforcement=ENFORCEMENT_TO_PB[enforcement], max_worker_restart=opts.isod_max_worker_restart or 0,
        class_hint=_class_hint(config, default_size), launch=launch())


def _class_hint(config: pytest.Config, default_size: Size) -> list[str]:
    cache = getattr(config, "cache", None)
    last = cache.get(HINT_KEY, None) if cache is not None else None
    if isinstance(last, list) and all(isinstance(c, str) for c in last) and last:
        return last
    return [worker_class(default_size)]


def _basetemp(config: pytest.Config) -> list[str]:
    """One base temp dir for the session, made here (pytest-xdist does the
    same); each worker uses its own subdirectory (the worker plugin)."""
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is None:
        return []
    base = factory.getbasetemp()      # a given --basetemp is emptied here, as plain pytest does
    if config.option.basetemp:
        return []    # already in the workers' arguments; each worker takes a subdirectory of it
    return [f"--basetemp={base}"]


def worker_env(config: pytest.Config | None = None) -> dict[str, str]:
    """The client's environment for its workers, less isod's own secrets and
    addresses; with a config, plus what xdist's workers get (xdist_nodes.py)."""
    env = {k: v for k, v in os.environ.items() if k not in ("ISOD_TOKEN", "ISOD_TARGET")}
    if config is not None:
        from .xdist_nodes import launch_env
        env.update(launch_env(config))
    return env

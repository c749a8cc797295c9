"""How a session's pytest processes start: the command line and the environment.

A worker (started fresh or forked from the zygote) and the zygote run the
client's pytest with the worker plugin, in the client's interpreter, cwd and
environment; pytest-xdist's variables name the worker (per-worker ports,
databases and coverage files keep working).
"""

from __future__ import annotations

import hashlib

from ..v1 import isod_pb2 as pb

WORKER_PLUGIN = "isod.worker.plugin"
ZYGOTE_NAME = "zygote"


def pytest_argv(open_msg: pb.SessionOpen) -> list[str]:
    """As the client started: `python -m pytest`, or the `pytest` script
    (sys.argv[0] and sys.path[0] differ: a flat layout tests another copy)."""
    start = ["-m", "pytest"] if open_msg.launch in ("", "-m") else [open_msg.launch]
    return [open_msg.python, *start, "-p", WORKER_PLUGIN, *open_msg.pytest_args]


def identity_env(name: str, cls: str, worker_count: int, testrun_uid: str) -> dict[str, str]:
    """What names one worker (also set in a forked worker's os.environ)."""
    env = {"ISOD_WORKER_CLASS": cls}
    env["ISOD_WORKER_ID"] = env["PYTEST_XDIST_WORKER"] = name
    env["ISOD_WORKER_COUNT"] = env["PYTEST_XDIST_WORKER_COUNT"] = str(worker_count)
    env["ISOD_TESTRUN_UID"] = env["PYTEST_XDIST_TESTRUNUID"] = testrun_uid
    return env


BASETEMP_ENV = "ISOD_BASETEMP"     # a forked worker's session basetemp (it may come from a warm zygote)
_VOLATILE_ENV = frozenset({"ISOD_WORKER_ID", "ISOD_WORKER_COUNT", "ISOD_TESTRUN_UID", "ISOD_WORKER_CLASS",
                           "PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"})


def session_basetemp(open_msg: pb.SessionOpen) -> str:
    """The basetemp the client made for this session (its last --basetemp=)."""
    given = [a for a in open_msg.pytest_args if a.startswith("--basetemp=")]
    return given[-1].split("=", 1)[1] if given else ""


def zygote_key(open_msg: pb.SessionOpen) -> str:
    """What a zygote's collection depends on, less what changes every run
    (the session's basetemp, the ids a worker gets): equal keys may share a
    warm zygote."""
    args = [a for a in open_msg.pytest_args if not a.startswith("--basetemp=")]
    env = sorted((k, v) for k, v in open_msg.env.items() if k not in _VOLATILE_ENV)
    raw = repr((open_msg.python, open_msg.cwd, open_msg.launch, args, env)).encode()
    return hashlib.sha256(raw).hexdigest()


def process_env(open_msg: pb.SessionOpen, identity: dict[str, str]) -> dict[str, str]:
    """The whole environment of a started process: the client's, and ours."""
    env = dict(open_msg.env)
    env.update(identity)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("PYTHONBREAKPOINT", "isod.worker.plugin.no_debugger")   # no terminal to debug in
    return env

"""How a session's pytest processes start: the command line and the environment.

A worker (started fresh or forked from the zygote) and the zygote run the
client's pytest with the worker plugin, in the client's interpreter, cwd and
environment; pytest-xdist's variables name the worker (per-worker ports,
databases and coverage files keep working).
"""

from __future__ import annotations

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


def process_env(open_msg: pb.SessionOpen, identity: dict[str, str]) -> dict[str, str]:
    """The whole environment of a started process: the client's, and ours."""
    env = dict(open_msg.env)
    env.update(identity)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("PYTHONBREAKPOINT", "isod.worker.plugin.no_debugger")   # no terminal to debug in
    return env

"""What a client may send: the checks on a session's requests.

No gRPC here: an embedded daemon checks the session it was started with
(prestart.py) before it imports gRPC. A Reject ends the call with
INVALID_ARGUMENT and its text (service.py).
"""

from __future__ import annotations

import os

from ..v1 import isod_pb2 as pb

MAX_ITEMS = 1_000_000
MAX_NODEID = 65536
MAX_TIMEOUT_S = 7 * 86400.0


class Reject(ValueError):
    """A request the daemon will not serve: the call ends with INVALID_ARGUMENT and this text."""


def validate_open(msg: pb.ClientMessage) -> pb.SessionOpen:
    if msg is None:
        raise Reject("the session stream ended before `open`")
    if msg.WhichOneof("kind") != "open":
        raise Reject(f"the first message of a session must be `open`, got `{msg.WhichOneof('kind')}`")
    o = msg.open
    for what, text in (("python", o.python), ("cwd", o.cwd), ("launch", o.launch),
                       *(("pytest_args", a) for a in o.pytest_args)):
        if "\0" in text:
            raise Reject(f"open.{what} has a NUL byte: {text[:80]!r}")
    for key, value in o.env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise Reject(    f"open.env has an entry no process can have: {key[:80]!r}={value[:80]!r}")
    if not o.python or not os.path.isabs(o.python):
        raise Reject(f"open.python must be an absolute path, got {o.python!r}")
    if not os.access(o.python, os.X_OK) or os.path.isdir(o.python):
        raise Reject(f"open.python {o.python!r} is not an executable file")
    if not o.cwd or not os.path.isdir(o.cwd):
        raise Reject(f"open.cwd {o.cwd!r} is not a directory")
    if o.launch not in ("", "-m") and not (os.path.isabs(o.launch) and os.path.isfile(o.launch)):
        raise Reject(f"open.launch must be '-m' or the absolute path of a script, got {o.launch!r}")
    if o.workers > 256:
        raise Reject(f"open.workers={o.workers} is more than 256")
    return o


def validate_run(run: pb.RunTests) -> None:
    if len(run.items) > MAX_ITEMS:
        raise Reject(f"{len(run.items)} tests is more than {MAX_ITEMS}")
    seen = set()
    for it in run.items:
        if not it.nodeid or len(it.nodeid) > MAX_NODEID:
            raise Reject(f"bad node id {it.nodeid[:80]!r}")
        if it.size not in (pb.SMALL, pb.MEDIUM, pb.LARGE, pb.XLARGE):
            raise Reject(    f"test {it.nodeid!r} has an unknown size ({it.size}); known: small, medium, large, xlarge")
        if not 0 <= it.timeout_s <= MAX_TIMEOUT_S:   # also rejects NaN and inf
            raise Reject(f"test {it.nodeid!r} has a bad timeout {it.timeout_s} "
                                                            f"(0 for none, at most {MAX_TIMEOUT_S:g} s)")
        if it.nodeid in seen:
            raise Reject(f"test {it.nodeid!r} is listed twice")
        seen.add(it.nodeid)

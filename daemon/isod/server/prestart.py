"""An embedded daemon's first job: its session's zygote, before its server.

The client starts its private daemon with the SessionOpen it will send
(``isod serve --prestart FILE``). The zygote of that session (an
interpreter, pytest, the collection) starts at once, before the daemon
imports gRPC and builds its server, so the two start side by side; the
session takes it when it opens (zygote_pool.py). No gRPC here.
"""

from __future__ import annotations

import uuid

from google.protobuf.message import DecodeError

from ..sandbox import SandboxError
from ..v1 import isod_pb2 as pb
from .requests import validate_open
from .session import session_wants_zygote
from .zygote_handle import ZygoteHandle


def start_zygote(path: str, native, default_workers: int, limits, log) -> ZygoteHandle | None:
    """The zygote of the session in FILE, under the native backend (the caller
    checks that the trap backend can adopt its workers); None (said in the
    log) when it cannot start."""
    try:
        with open(path, "rb") as f:
            opened = validate_open(pb.ClientMessage(open=pb.SessionOpen.FromString(f.read())))
        if not session_wants_zygote(opened, {"native": native}):
            return None
        return ZygoteHandle(native, opened, worker_count=opened.workers or default_workers,
                            testrun_uid=uuid.uuid4().hex, limits=limits, on_collected=None,
                            on_output=lambda data, is_err: None, on_exit=lambda z: None)
    except (OSError, DecodeError, ValueError, SandboxError) as e:     # Reject is a ValueError
        log(f"no zygote started ahead of the session: {e}")
        return None

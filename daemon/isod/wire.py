"""The daemon's side of the wire: its values as protobuf messages carry them.

Protobuf string fields must be valid UTF-8. Paths and argv come from the
kernel as bytes and are decoded with surrogateescape (os.fsdecode); a byte
that is not UTF-8 (b"\\xff") becomes a lone surrogate that protobuf refuses.
On the wire it is shown escaped instead (``utf8_safe``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .contract import TEXT_LONGREPR, violation
from .v1 import isod_pb2 as pb

if TYPE_CHECKING:
    from .sandbox.events import Event


def utf8_safe(s: str) -> str:
    try:
        s.encode()
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def utf8_safe_list(items) -> list[str]:
    return [utf8_safe(s) for s in items]


def report_dict(config, report) -> dict:
    """A pytest report as pytest serializes it (pytest_report_to_serializable).
    A failure text that is not a traceback (a doctest's, a collect error's)
    becomes a plain string there, and a string reads back as a message for
    the short summary ("FAILED mod.py::mod.add - 002 ..."), which plain
    pytest does not print for it: the dict says it was no string at first."""
    data = config.hook.pytest_report_to_serializable(config=config, report=report)
    longrepr = getattr(report, "longrepr", None)
    if hasattr(longrepr, "toterminal") and not hasattr(longrepr, "reprcrash") and isinstance(data.get("longrepr"), str):
        data[TEXT_LONGREPR] = True
    return data


def event_to_pb(ev: Event, phase: str = "", offset_s: float = 0.0) -> pb.SpawnEvent:
    """A recorded call as the client gets it, marked with the rule it breaks."""
    return pb.SpawnEvent(
        t_ns=ev.t_ns, pid=ev.pid, tid=ev.tid, ppid=ev.ppid, syscall=ev.syscall, abi=ev.abi,
        decision=ev.decision, latency_ns=ev.latency_ns, path=utf8_safe(ev.path), argv=utf8_safe_list(ev.argv),
        cwd=utf8_safe(ev.cwd), clone_flags=ev.clone_flags, argv_complete=ev.argv_complete, phase=phase,
        offset_s=offset_s, child_pid=ev.child, family=ev.family, sock_type=ev.sock_type, protocol=ev.protocol,
        host=ev.host, port=ev.port, violation=violation(ev),
    )

"""Between the sandbox's Python objects and the wire messages."""

from __future__ import annotations

from ..sandbox.events import Event
from ..v1 import isod_pb2 as pb
from ..wire import text, texts


def event_to_pb(ev: Event, phase: str = "", offset_s: float = 0.0) -> pb.SpawnEvent:
    return pb.SpawnEvent(
        t_ns=ev.t_ns, pid=ev.pid, tid=ev.tid, ppid=ev.ppid, syscall=ev.syscall, abi=ev.abi,
        decision=ev.decision, latency_ns=ev.latency_ns, path=text(ev.path), argv=texts(ev.argv), cwd=text(ev.cwd),
        clone_flags=ev.clone_flags, argv_complete=ev.argv_complete, phase=phase, offset_s=offset_s,
        child_pid=ev.child, family=ev.family, sock_type=ev.sock_type, protocol=ev.protocol, host=ev.host, port=ev.port,
    )

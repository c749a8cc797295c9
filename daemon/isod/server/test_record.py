"""What one running test produced: its phase reports and its recorded calls,
cut by phase and capped so that a result stays sendable. Pure: events in,
protobuf out (unit-tested without processes)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..sandbox.events import Event
from ..v1 import isod_pb2 as pb
from ..wire import event_to_pb

# A test's record stays far below gRPC's message limit: argv is dropped from
# events past MAX_EVENT_BYTES, events past MAX_EVENTS are only counted.
MAX_EVENTS = 10_000
MAX_EVENT_BYTES = 8 << 20
# Python-level spawns whose argv is the program the child execs
_RUNS_ARGV = ("subprocess.Popen", "os.posix_spawn", "os.spawn", "os.exec")


@dataclass
class Running:
    """The test a worker is in, and what it has produced so far."""

    item: pb.TestItem
    t0: float
    reports: list[pb.PhaseReport] = field(default_factory=list)
    events: list[pb.SpawnEvent] = field(default_factory=list)
    phase: str = "setup"
    t0_ns: int = 0
    dropped: int = 0          # events past MAX_EVENTS
    event_bytes: int = 0

    def add(self, events: list[Event], ends: list[pb.PhaseReport] = ()) -> None:
        """Recorded calls of this test; ``ends``: reports of the phases that
        ended since (in time order), whose end times tell each call's phase."""
        for ev in events:
            if len(self.events) >= MAX_EVENTS:    # a spawn loop: count the rest, keep the result sendable
                self.dropped += 1
                continue
            phase = next((r.when for r in ends if ev.t_ns <= r.t_ns), self.phase if not ends else ends[-1].when)
            pe = event_to_pb(ev, phase, (ev.t_ns - self.t0_ns) / 1e9)
            if self.event_bytes > MAX_EVENT_BYTES:
                del pe.argv[:]
                pe.argv_complete = False
            self.event_bytes += pe.ByteSize()
            self.events.append(pe)

    def result(self, worker: str, **more) -> pb.TestResult:
        """The test's result with what it produced so far."""
        return pb.TestResult(nodeid=self.item.nodeid, size=self.item.size, reports=self.reports,
                             events=self.events, events_dropped=self.dropped, worker=worker, **more)


def name_quick_execs(events: list[pb.SpawnEvent], intents: list[pb.Intent], t0_ns: int, worker_pid: int) -> None:
    """An exec seen by the process events connector whose program exited
    before /proc could be read has no command: when the worker itself started
    it, the audit hook's last Python-level spawn before it names it (marked
    incomplete: the hook saw the intent, not the exec)."""
    parent_of = {ev.child_pid: ev.pid for ev in events if ev.child_pid}
    for ev in events:
        if not ev.ppid and ev.pid in parent_of:
            ev.ppid = parent_of[ev.pid]      # gone before /proc was read: its fork tells
    named = sorted(((t0_ns + int(i.offset_s * 1e9), list(i.argv)) for i in intents
                    if i.event in _RUNS_ARGV and i.argv), key=lambda x: x[0])
    if not named:
        return
    for ev in events:
        if ev.syscall != "execve" or ev.argv or ev.decision != "allow":
            continue
        if parent_of.get(ev.pid, ev.ppid) != worker_pid:
            continue
        before = [argv for t, argv in named if t <= ev.t_ns]
        if before:
            ev.argv.extend(before[-1])
            ev.argv_complete = False

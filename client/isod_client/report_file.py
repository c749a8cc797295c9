"""`--isod-report FILE`: per test its size, outcome, phase durations and every
attempted command with its time offset, pid tree and decision, as JSON."""

from __future__ import annotations

import json

from isod.policy import Size
from isod.v1 import isod_pb2 as pb


class ReportFile:
    def __init__(self, path: str | None) -> None:
        self.path = path
        self.tests: list[dict] = []
        self.outside: list[dict] = []

    def add(self, res: pb.TestResult, size: Size, reports: list) -> None:
        if not self.path:
            return
        outcome = "passed"
        for r in reports:
            if r.failed:
                outcome = "failed" if r.when == "call" else "error"
                break
            if r.skipped:
                outcome = "skipped"
        self.tests.append({
            "nodeid": res.nodeid,
            "size": size.value,
            "outcome": outcome,
            "worker": res.worker,
            "durations": {r.when: r.duration for r in reports},
            "interruption": res.interruption.message if res.HasField("interruption") else None,
            "commands": [_command(e) for e in res.events],
            "intents": [{"event": i.event, "argv": list(i.argv), "tid": i.tid, "offset_s": round(i.offset_s, 6)}
                        for i in res.intents],
        })

    def add_outside(self, o: pb.OutsideTests) -> None:
        """Calls made while no test ran; offset_s counts from the worker's start."""
        if self.path:
            self.outside.append({"worker": o.worker, "last_test": o.last_test,
                                 "commands": [_command(e) for e in o.events]})

    def write(self) -> None:
        if self.path:
            with open(self.path, "w") as f:
                json.dump({"version": 1, "tests": self.tests, "outside_tests": self.outside}, f, indent=1)


def _command(e: pb.SpawnEvent) -> dict:
    return {
        "offset_s": round(e.offset_s, 6), "phase": e.phase, "syscall": e.syscall, "abi": e.abi,
        "decision": e.decision, "pid": e.pid, "tid": e.tid, "ppid": e.ppid, "path": e.path,
        "argv": list(e.argv), "cwd": e.cwd, "clone_flags": e.clone_flags,
        "latency_ns": e.latency_ns, "argv_complete": e.argv_complete,
        **({"child_pid": e.child_pid} if e.child_pid else {}),
    }

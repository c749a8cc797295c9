"""`--isod-report FILE`: per test its size, outcome, phase durations and every
attempted command with its time offset, pid tree and decision, as JSON; and
the size advisor's suggestion (isod.advice), also kept without a file for
`--isod-suggest-sizes`."""

from __future__ import annotations

import json

from isod import advice
from isod.contract import DEFAULT_TIMEOUTS, Size
from isod.v1 import isod_pb2 as pb

NETWORK_FIELDS = ("family", "sock_type", "protocol", "host", "port", "address")


class ReportFile:
    def __init__(self, path: str | None, limits: dict[Size, float] | None = None, keep: bool = False,
                 default_size: Size | None = None, rootdir: str | None = None) -> None:
        self.path = path
        self.keep = bool(path or keep)     # entries are needed for a file or for --isod-suggest-sizes
        self.limits = dict(limits or DEFAULT_TIMEOUTS)
        self.default_size = default_size
        self.rootdir = rootdir
        self.unmarked: set[str] = set()    # node ids without a size marker (their size is the default)
        self.fixtures: dict[str, dict[str, str]] = {}   # node id -> its fixtures and their scopes
        self.tests: list[dict] = []
        self.outside: list[dict] = []
        self._suggested: list[advice.Suggestion] | None = None

    def collected(self, nodeid: str, marked: bool, fixtures: dict[str, str]) -> None:
        """At collection: whether a test has a size marker, and its fixtures'
        scopes (the advisor follows a shared fixture's spawns to its users)."""
        if self.keep:
            if not marked:
                self.unmarked.add(nodeid)
            self.fixtures[nodeid] = fixtures

    def add(self, res: pb.TestResult, size: Size, reports: list) -> None:
        if not self.keep:
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
            "marked": res.nodeid not in self.unmarked,
            "fixtures": self.fixtures.get(res.nodeid, {}),
            **({"interruption_kind": pb.Interruption.Kind.Name(res.interruption.kind).lower(),
                "elapsed_s": round(res.interruption.elapsed_s, 6)} if res.HasField("interruption") else {}),
        })

    def suggestions(self) -> list[advice.Suggestion]:
        """The advisor's suggestions, once the run is over (the entries get theirs too)."""
        if self._suggested is None or len(self._suggested) != len(self.tests):
            self._suggested = advice.suggest_all(self.tests, self.limits)
            for entry, s in zip(self.tests, self._suggested):
                entry["suggested_size"] = s.size.value if s.size else None
                entry["suggestion_reasons"] = list(s.reasons)
        return self._suggested

    def summary_lines(self) -> list[str]:
        """The advisor's summary (--isod-suggest-sizes)."""
        return advice.summary_lines(self.tests, self.limits, suggestions=self.suggestions())

    def add_outside(self, o: pb.OutsideTests) -> None:
        """Calls made while no test ran; offset_s counts from the worker's start."""
        if self.path:
            self.outside.append({"worker": o.worker, "last_test": o.last_test,
                                 "commands": [_command(e) for e in o.events]})

    def write(self) -> None:
        if self.path:
            self.suggestions()                            # suggested_size, suggestion_reasons
            with open(self.path, "w") as f:
                json.dump({"version": 1, "tests": self.tests, "outside_tests": self.outside,
                           "limits": {s.value: v for s, v in self.limits.items()},
                           "default_size": self.default_size.value if self.default_size else None,
                           "rootdir": self.rootdir}, f, indent=1)


def _command(e: pb.SpawnEvent) -> dict:
    return {
        "offset_s": round(e.offset_s, 6), "phase": e.phase, "syscall": e.syscall, "abi": e.abi,
        "decision": e.decision, "pid": e.pid, "tid": e.tid, "ppid": e.ppid, "path": e.path,
        "argv": list(e.argv), "cwd": e.cwd, "clone_flags": e.clone_flags,
        "latency_ns": e.latency_ns, "argv_complete": e.argv_complete,
        **({"child_pid": e.child_pid} if e.child_pid else {}),
        # network calls, once SpawnEvent carries them (the advisor reads them: isod.advice.network_use)
        **{k: v for k in NETWORK_FIELDS if (v := getattr(e, k, None))},
    }

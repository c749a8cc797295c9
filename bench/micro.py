"""Per-test costs of isod's report path, measured in-process on real pytest reports.

For one passing test, the worker puts its 3 phase reports into 1 channel
message (the test's `finished`, batched with the next test's `started`), the
daemon parses it and builds one TestResult for gRPC, and the client makes
the 3 TestReports again. A plain report (a pass, a skip without text) travels
as protobuf fields; a report with a failure text or extras as pytest's JSON:
both paths are measured. Each step is timed alone (best of a few repetitions
of a loop), so a path's sum is a floor for isod's per-test overhead before
any scheduling, context switch or gRPC transport cost.
"""

from __future__ import annotations

import json
import time

from _pytest.reports import TestReport


def _best(fn, n: int, reps: int = 5) -> float:
    """Seconds per call of fn, best of reps loops of n calls."""
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n)
    return best


def measure(n: int = 2000) -> dict[str, list[tuple[str, float]]]:
    """{path: [(step, µs per test)]} for the plain-fields path and the JSON path."""
    from isod.v1 import isod_pb2 as pb

    reports = [TestReport("tests/test_m000.py::test_000", ("tests/test_m000.py", 2, "test_000"),
                          {"test_000": 1, "small": 1, "test_m000.py": 1, "a": 1}, "passed", None, when,
                          sections=[], duration=1e-5, start=1.0, stop=1.00001, user_properties=[])
               for when in ("setup", "call", "teardown")]

    def to_json():
        return [json.dumps({**r._to_json(), "$report_type": "TestReport"}, default=repr).encode() for r in reports]

    payloads = to_json()

    def events():
        phases = [pb.PhaseReport(when=r.when, report_json=p, t_ns=1) for r, p in zip(reports, payloads)]
        done = pb.WorkerEvent(finished=pb.TestFinished(nodeid=reports[0].nodeid, reports=phases))
        started = pb.WorkerEvent(started=pb.TestStarted(nodeid=reports[0].nodeid, t_ns=1))
        return pb.WorkerEvent(batch=pb.WorkerEvents(events=[done, started])).SerializeToString()

    raw = events()

    def daemon_side():
        done = pb.WorkerEvent.FromString(raw).batch.events[0].finished
        res = pb.TestResult(nodeid=reports[0].nodeid, size=pb.SMALL, reports=done.reports, worker="w1")
        return pb.DaemonMessage(result=res).SerializeToString()

    wire = daemon_side()

    def client_side():
        msg = pb.DaemonMessage.FromString(wire)
        return [TestReport._from_json(json.loads(r.report_json)) for r in msg.result.reports]

    keywords = list(reports[0].keywords)

    def plain_events():
        phases = [pb.PhaseReport(when=r.when, t_ns=1, outcome=r.outcome, duration=r.duration, start=r.start,
                                 stop=r.stop) for r in reports]
        done = pb.WorkerEvent(finished=pb.TestFinished(nodeid=reports[0].nodeid, reports=phases, keywords=keywords))
        started = pb.WorkerEvent(started=pb.TestStarted(nodeid=reports[0].nodeid, t_ns=1))
        return pb.WorkerEvent(batch=pb.WorkerEvents(events=[done, started])).SerializeToString()

    plain_raw = plain_events()

    def plain_daemon_side():
        done = pb.WorkerEvent.FromString(plain_raw).batch.events[0].finished
        res = pb.TestResult(nodeid=reports[0].nodeid, size=pb.SMALL, reports=done.reports, worker="w1",
                            keywords=done.keywords)
        return pb.DaemonMessage(result=res).SerializeToString()

    plain_wire = plain_daemon_side()
    location = reports[0].location

    def plain_client_side():
        res = pb.DaemonMessage.FromString(plain_wire).result
        kw = dict.fromkeys(res.keywords, 1)
        return [TestReport(res.nodeid, location, kw, r.outcome, None, r.when,
                           [(x.title, x.content) for x in r.sections], r.duration, r.start, r.stop)
                for r in res.reports]

    us = 1e6
    empty = _best(lambda: None, n) * us
    return {
        "plain report as protobuf fields (a pass)": [
            ("worker: 3 reports as fields in 1 WorkerEvent message -> bytes", _best(plain_events, n) * us - empty),
            ("daemon: parse the message, build + serialize the TestResult", _best(plain_daemon_side, n) * us),
            ("client: parse the result, 3 fields -> TestReport", _best(plain_client_side, n) * us),
        ],
        "JSON (a failure, or a report with extras)": [
            ("worker: 3 reports -> JSON (`_to_json` + `json.dumps`)", _best(to_json, n) * us),
            ("worker: 1 WorkerEvent message -> bytes", _best(events, n) * us - empty),
            ("daemon: parse the message, build + serialize the TestResult", _best(daemon_side, n) * us),
            ("client: parse the result, 3 JSON -> TestReport", _best(client_side, n) * us),
        ],
    }

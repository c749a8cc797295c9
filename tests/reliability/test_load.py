"""Load on one real daemon: concurrent sessions, and a soak of sessions in a row
watching the daemon's fds, threads and memory."""

from __future__ import annotations

import os
import threading
import time

import psutil
import pytest
from reliability.isod_rpc import FINISH, Serve, Stream, healthy, items, open_msg, run_session, wait_until, write_tests

pytestmark = pytest.mark.large


WARM = 4     # isod serve's default --warm-zygotes


def no_session_processes(d: Serve) -> bool:
    """Nothing of any session is left under the daemon (zombies included:
    someone must reap them), but at most WARM collected zygotes kept for the
    next runs."""
    return not d.session_processes() and len(d.warm_zygotes()) <= WARM


def test_eight_concurrent_sessions_of_200_tests(tmp_path_factory):
    d = Serve(workers=1)
    try:
        runs = []
        for i in range(8):
            cwd = tmp_path_factory.mktemp(f"s{i}")
            body = "assert True" if i % 2 else "print('x' * 200)"   # half of them produce captured output
            runs.append((cwd, write_tests(cwd, f"test_load{i}.py", 200, body)))
        outcomes: dict[int, object] = {}

        def go(i):
            cwd, ids = runs[i]
            outcomes[i] = run_session(d.target, cwd, ids, workers=1 + i % 2, timeout=90)

        t0 = time.monotonic()
        threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        took = time.monotonic() - t0
        print(f"\n8 sessions x 200 tests: {took:.1f} s")
        for i, (_cwd, ids) in enumerate(runs):
            out = outcomes.get(i)
            assert out is not None and out.code.name == "OK", (i, out and out.details)
            assert out.end is not None and out.end.tests == 200 and not out.end.error, (i, out.end)
            got = out.outcomes()
            assert sorted(got) == sorted(ids), f"session {i}: {len(got)} distinct results"
            assert set(got.values()) == {"passed"}, (i, {v for v in got.values()})
            assert len(out.results) == 200, f"session {i}: {len(out.results)} results for 200 tests"
        assert wait_until(lambda: no_session_processes(d), 10), [(p.pid, p.status()) for p in d.session_processes()]
        assert healthy(d.target)
        assert d.proc.poll() is None
    finally:
        d.stop()


def measure(pid: int) -> dict[str, int]:
    p = psutil.Process(pid)
    return {"fds": len(os.listdir(f"/proc/{pid}/fd")), "threads": p.num_threads(), "rss_kib": p.memory_info().rss >> 10}


def test_soak_twenty_sessions_without_growth(tmp_path):
    d = Serve(workers=1)
    try:
        ids = write_tests(tmp_path, "test_soak.py", 20)
        samples = []
        for _ in range(20):
            out = run_session(d.target, tmp_path, ids, workers=1)
            assert out.end is not None and out.end.tests == 20 and not out.end.error, out
            assert wait_until(lambda: no_session_processes(d), 5)
            samples.append(measure(d.pid))
        print("\nsession  fds  threads  rss_kib")
        for i, s in enumerate(samples, 1):
            print(f"{i:7d}  {s['fds']:3d}  {s['threads']:7d}  {s['rss_kib']:7d}")
        warm = samples[4]          # after a few sessions: thread pools and caches are filled
        last = samples[-1]
        # no unbounded growth: 15 more sessions may not add a per-session fd, thread or
        # 1 MiB of memory each (tolerances absorb allocator and gRPC pool noise)
        assert last["fds"] <= warm["fds"] + 3, samples
        assert last["threads"] <= warm["threads"] + 3, samples
        assert last["rss_kib"] <= warm["rss_kib"] + 12 * 1024, samples
        assert max(s["fds"] for s in samples[4:]) <= warm["fds"] + 3, samples
        assert healthy(d.target)
    finally:
        d.stop()


def test_a_zygote_started_ahead_of_its_session_serves_it(tmp_path):
    """An embedded daemon is told at start which session it will serve
    (--prestart): that session's zygote collects while the server starts,
    the session forks from it, and a session of another suite does not."""
    ids = write_tests(tmp_path / "a", "test_pre.py", 5)
    opened = open_msg(tmp_path / "a")
    (tmp_path / "session.pb").write_bytes(opened.open.SerializeToString())
    d = Serve("--prestart", str(tmp_path / "session.pb"), "--warm-zygotes", "0", workers=1)
    try:
        s = Stream(d.target).send(opened, items(ids), FINISH).collect(60)
        assert s.end is not None and s.end.tests == 5 and not s.end.error, s
        assert "a prestarted zygote" in d.log_text(), d.log_text()
        other = write_tests(tmp_path / "b", "test_other.py", 2)
        out = run_session(d.target, tmp_path / "b", other)
        assert out.end is not None and out.end.tests == 2 and not out.end.error, out
        assert d.log_text().count("a prestarted zygote") == 1, d.log_text()
        assert wait_until(lambda: no_session_processes(d), 10), [p.pid for p in d.session_processes()]
    finally:
        d.stop()

"""Where isod's time goes on a suite: CPU and memory per process, and py-spy
profiles of the client, the daemon and the workers, folded into categories.

- `sample_run`: one run against a pre-started daemon while psutil samples every
  process of the tree (client, daemon, workers) every few ms: CPU seconds per
  process and resident memory (the daemon idle, at peak during the run, after).
- `pyspy_run`: one run with the embedded daemon, the client under `py-spy
  record` and a py-spy attached to the daemon and to each worker as soon as it
  appears; the raw stacks are folded into named categories (first rule that
  matches a frame of the stack wins, so the order of the rules matters).
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from runners import RUNNERS, Context, pytest_env
from suites import Suite

ROLE_RULES: dict[str, list[tuple[str, str]]] = {
    "client": [
        ("report JSON -> TestReport", r"pytest_report_from_serializable|json/decoder|loads \(json"),
        ("result -> pytest hooks (logreport, terminal)", r"Controller\._result"),
        ("waiting on the gRPC stream", r"_Rendezvous\.__next__|_MultiThreadedRendezvous\._next"),
        ("gRPC channel spin thread", r"channel_spin"),
        ("link thread (connect, health, open)", r"Link\._open|_requests \(isod_client"),
        ("collection", r"pytest_collection \(|Session\.perform_collect"),
        ("session end (pytest, gc)", r"pytest_sessionfinish|pytest_unconfigure|gc_collect_harder|Link\.close"),
        ("start-up (imports, config)", r"_find_and_load|Config\.|_prepareconfig|pytest_configure|pytest_cmdline_parse"),
    ],
    "daemon": [
        ("send items to workers", r"WorkerHandle\.send_item|WorkerHandle\.send_finish"),
        ("result -> gRPC queue", r"Session\._on_result"),
        ("decode/handle worker messages", r"WorkerHandle\._handle|WorkerHandle\._drain|WorkerEvent"),
        ("worker reader loop (poll, recv)", r"WorkerHandle\._read_loop"),
        ("gRPC: stream results to client", r"_stream_response_in_pool|_send_response|IsodService\.Session"),
        ("gRPC: read client messages", r"_read_client|_RequestIterator"),
        ("gRPC server poll thread", r"_serve \(grpc"),
        ("sandbox supervisor", r"isod/sandbox/(seccomp|ptrace)_backend|isod/sandbox/kernel"),
        ("start workers (spawn)", r"WorkerHandle\.__init__|Session\.start|_spawn_worker"),
        ("start-up (imports, server setup)", r"_find_and_load|serve \(isod/server/app"),
    ],
    "worker": [
        ("send to daemon (channel)", r"Channel\.send \(isod/channel"),
        ("wait for next item (channel recv)", r"Channel\.recv \(isod/channel"),
        ("report -> JSON", r"WorkerPlugin\.pytest_runtest_logreport"),
        ("test protocol (pytest runner, fixtures, test)", r"pytest_runtest_protocol \("),
        ("collection", r"pytest_collection \(|Session\.perform_collect"),
        ("session end (pytest, gc)", r"pytest_sessionfinish|pytest_unconfigure|gc_collect_harder"),
        ("start-up (imports, config)", r"_find_and_load|Config\.|_prepareconfig|pytest_configure|pytest_cmdline_parse"),
    ],
}
RATE = 100   # py-spy samples per second


@dataclass
class ProcStat:
    role: str
    pid: int
    cpu: float = 0.0
    rss_peak: int = 0


@dataclass
class Sampled:
    wall: float
    ok: bool
    procs: list[ProcStat]
    daemon_idle_rss: int
    daemon_peak_rss: int
    daemon_after_rss: int
    worker_peak_rss: int
    client_peak_rss: int


def _role(proc: psutil.Process, client_pid: int | None = None) -> str | None:
    """`isod serve` under anything but a daemon is a daemon; whatever a daemon started is a worker,
    even while its command line is still the daemon's (forked, not yet exec'd) or the launcher's."""
    def is_daemon(p: psutil.Process) -> bool:
        text = " ".join(p.cmdline())
        return "isod serve" in text or "isod.cli serve" in text
    ancestors = proc.parents()
    if any(is_daemon(a) for a in ancestors):
        return "worker"
    if is_daemon(proc):
        return "daemon"
    return None


def sample_run(suite: Suite, ctx: Context, key: str = "isod-daemon", period: float = 0.01,
               timeout: float = 60.0) -> Sampled:
    """One run, psutil sampling the client, the daemon (pre-started: idle RSS too) and the workers."""
    runner = RUNNERS[key]
    daemon = ctx.daemon if runner.prestarted else None
    stats: dict[int, ProcStat] = {}
    idle = after = 0
    if daemon is not None:
        time.sleep(0.5)
        idle = psutil.Process(daemon.proc.pid).memory_info().rss
        stats[daemon.proc.pid] = ProcStat("daemon", daemon.proc.pid)
        base = psutil.Process(daemon.proc.pid).cpu_times()
    argv = [ctx.python, "-m", "pytest", *runner.args(ctx)]
    t = time.perf_counter()
    p = subprocess.Popen(argv, cwd=suite.path, env=pytest_env(), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out_chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: out_chunks.append(p.stdout.read()), daemon=True)
    reader.start()
    roots = [p.pid] + ([daemon.proc.pid] if daemon else [])
    procs: dict[int, psutil.Process] = {}
    while p.poll() is None:
        if time.perf_counter() - t > timeout:
            p.kill()
            break
        for root in roots:
            try:
                rp = psutil.Process(root)
                tree = [rp, *rp.children(recursive=True)]
            except psutil.Error:
                continue
            for proc in tree:
                if proc.pid not in procs:
                    try:
                        role = "client" if proc.pid == p.pid else (
                            "daemon" if daemon is not None and proc.pid == daemon.proc.pid else _role(proc, p.pid))
                    except psutil.Error:
                        continue
                    if role is None:
                        continue
                    procs[proc.pid] = proc
                    stats.setdefault(proc.pid, ProcStat(role, proc.pid))
        for pid, proc in list(procs.items()):
            try:
                with proc.oneshot():
                    ct = proc.cpu_times()
                    rss = proc.memory_info().rss
            except psutil.Error:
                procs.pop(pid)
                continue
            st = stats[pid]
            st.cpu = ct.user + ct.system
            st.rss_peak = max(st.rss_peak, rss)
        time.sleep(period)
    wall = time.perf_counter() - t
    reader.join()
    if daemon is not None:
        time.sleep(0.5)
        dp = psutil.Process(daemon.proc.pid)
        after = dp.memory_info().rss
        ct = dp.cpu_times()
        # the daemon's own CPU in this run (its reaped workers are counted as workers)
        stats[daemon.proc.pid].cpu = ct.user + ct.system - (base.user + base.system)
    from runners import outcome
    text = b"".join(out_chunks).decode(errors="replace")
    ok = outcome(text) == suite.expect
    if not ok:
        print(f"sampled run of {key}: wrong outcome, its output ends:\n" + "\n".join(text.splitlines()[-20:]),
              file=sys.stderr)
    ps = sorted(stats.values(), key=lambda s: ("client", "daemon", "worker").index(s.role))
    dstat = [s for s in ps if s.role == "daemon"]
    return Sampled(
        wall=wall, ok=ok, procs=ps, daemon_idle_rss=idle,
        daemon_peak_rss=max((s.rss_peak for s in dstat), default=0), daemon_after_rss=after,
        worker_peak_rss=max((s.rss_peak for s in ps if s.role == "worker"), default=0),
        client_peak_rss=max((s.rss_peak for s in ps if s.role == "client"), default=0))


# --- py-spy ---------------------------------------------------------------------

@dataclass
class RoleProfile:
    role: str
    pids: list[int] = field(default_factory=list)
    samples: int = 0
    categories: collections.Counter = field(default_factory=collections.Counter)
    top_self: list[tuple[str, int]] = field(default_factory=list)


def pyspy_run(suite: Suite, ctx: Context, out_dir: Path, pyspy: str, key: str = "isod") -> tuple[bool, dict]:
    """Profiles one run of `key`; returns (outcome ok, {role: RoleProfile})."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    runner = RUNNERS[key]
    spies: list[subprocess.Popen] = []
    files: dict[str, list[tuple[int, Path]]] = collections.defaultdict(list)

    def spy(role: str, pid: int | None, cmd: list[str] | None = None) -> subprocess.Popen:
        f = out_dir / f"{role}-{pid or 'main'}.txt"
        argv = [pyspy, "record", "--nonblocking", "--format", "raw", "--rate", str(RATE), "-o", str(f)]
        argv += ["--pid", str(pid)] if pid else ["--", *cmd]
        sp = subprocess.Popen(argv, cwd=suite.path, env=pytest_env(), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE if cmd else subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        spies.append(sp)
        files[role].append((pid or 0, f))
        return sp

    client = spy("client", None, [ctx.python, "-m", "pytest", *runner.args(ctx)])
    out_chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: out_chunks.append(client.stdout.read()), daemon=True)
    reader.start()
    seen: set[int] = set()
    root = psutil.Process(client.pid)
    while client.poll() is None:
        try:
            kids = root.children(recursive=True)
        except psutil.Error:
            break
        for c in kids:
            if c.pid in seen:
                continue
            try:
                role = _role(c, client.pid)
            except psutil.Error:
                continue
            if role in ("daemon", "worker"):
                seen.add(c.pid)
                spy(role, c.pid)
        time.sleep(0.002)
    reader.join()
    for sp in spies:
        try:
            sp.wait(30)
        except subprocess.TimeoutExpired:
            sp.kill()
    from runners import outcome
    ok = outcome(b"".join(out_chunks).decode(errors="replace")) == suite.expect
    profiles = {}
    for role, fl in files.items():
        prof = RoleProfile(role)
        selfc: collections.Counter = collections.Counter()
        rules = [(name, re.compile(rx)) for name, rx in ROLE_RULES[role]]
        for pid, f in fl:
            if not f.exists():
                continue
            prof.pids.append(pid)
            for stack, n in _read_raw(f):
                prof.samples += n
                prof.categories[_categorize(stack, rules)] += n
                selfc[_strip_line(stack[-1])] += n
        prof.top_self = selfc.most_common(8)
        profiles[role] = prof
    return ok, profiles


def _read_raw(path: Path):
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            yield stack.split(";"), int(n)


def _strip_line(frame: str) -> str:
    return re.sub(r":\d+\)$", ")", frame.strip()) or "(native)"


def _categorize(stack: list[str], rules) -> str:
    for name, rx in rules:
        if any(rx.search(fr) for fr in stack):
            return name
    return "other"


def pyspy_path(python: str) -> str | None:
    cand = Path(python).parent / "py-spy"
    return str(cand) if cand.exists() else shutil.which("py-spy")


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))



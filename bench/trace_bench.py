#!/usr/bin/env python3
"""What `isod trace` costs: wall-time ratio to native, and the round trip of a
trapped call as the caller sees it.

    .venv/bin/python bench/trace_bench.py [--quick] [--runs N] [--calls N]

1. `sh -c 'for i in $(seq 500); do /bin/true; done'` (500 forks + 500 execs)
   natively, under `isod trace` with each backend, and under strace (plain and
   --seccomp-bpf) if it is installed. Min of --runs runs, the variants
   interleaved so that machine noise hits them alike. Each wrapper's fixed cost
   (the same wrapper around one /bin/true) is measured too, and the second
   ratio leaves it out: that is the per-fork/exec overhead alone.
2. bench/c/deny_loop.c, compiled at run time, makes --calls execve calls and
   times each with clock_gettime: denied under `--size small`, allowed (and
   failing with ENOENT in the kernel) under `--size medium`. p50/p90/p99 of the
   caller-side round trip, with the unsandboxed call as the floor.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
try:
    import isod  # noqa: F401
except ImportError:   # not installed: use the source tree, for the children too
    sys.path.insert(0, str(REPO / "daemon"))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "daemon"), os.environ.get("PYTHONPATH")]))
from isod.sandbox.backends import BACKENDS

LOOP = "for i in $(seq 500); do /bin/true; done"
MISSING = "/nonexistent-isod-bench/prog"


def isod_trace(backend: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "isod", "trace", "--backend", backend, "-o", os.devnull, *args, "--"]


def wrappers() -> list[tuple[str, list[str]]]:
    out = [("native", [])]
    out += [(f"isod trace --backend {b}", isod_trace(b)) for b in BACKENDS]
    strace = shutil.which("strace")
    if strace:
        out.append(("strace -f -e trace=process", [strace, "-f", "-e", "trace=process", "-o", os.devnull]))
        out.append(("strace -f --seccomp-bpf -e trace=process",
                    [strace, "-f", "--seccomp-bpf", "-e", "trace=process", "-o", os.devnull]))
    return out


def wall(argv: list[str]) -> float:
    t = time.perf_counter()
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"trace_bench: {' '.join(argv)} exited {p.returncode}: {p.stderr.decode(errors='replace')}")
    return dt


def bench_ratios(runs: int) -> list[tuple[str, float, float, float, float]]:
    """(label, loop s, startup s, ratio, ratio without startup) per wrapper."""
    ws = wrappers()
    loop = {name: float("inf") for name, _ in ws}
    start = dict(loop)
    for _ in range(runs):
        for name, w in ws:
            loop[name] = min(loop[name], wall([*w, "sh", "-c", LOOP]))
            start[name] = min(start[name], wall([*w, "/bin/true"]))
    base, base0 = loop["native"], start["native"]
    return [(name, loop[name], start[name], loop[name] / base,
             (loop[name] - start[name]) / (base - base0)) for name, _ in ws]


def compile_deny_loop(tmp: str) -> str | None:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        return None
    exe = os.path.join(tmp, "deny_loop")
    subprocess.run([gcc, "-O2", "-Wall", "-o", exe, str(HERE / "c" / "deny_loop.c")], check=True)
    return exe


def round_trip(argv: list[str]) -> dict[str, str]:
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("n=")), None)
    if line is None:
        raise SystemExit(f"trace_bench: {' '.join(argv)} printed no result (exit {p.returncode}): {p.stderr}")
    return dict(kv.split("=", 1) for kv in line.split())


def bench_round_trips(exe: str, calls: int) -> list[tuple[str, dict[str, str]]]:
    n = str(calls)
    rows = []
    for b in BACKENDS:
        rows.append((f"deny  {b} (--size small, EPERM)", round_trip([*isod_trace(b, "--size", "small"), exe, n, "/bin/true"])))
        rows.append((f"allow {b} (--size medium, ENOENT)", round_trip([*isod_trace(b, "--size", "medium"), exe, n, MISSING])))
    rows.append(("native (no sandbox, ENOENT)", round_trip([exe, n, MISSING])))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs and calls (a smoke run: 2 runs, 300 calls)")
    ap.add_argument("--runs", type=int, help="runs per variant, min taken (default 5)")
    ap.add_argument("--calls", type=int, help="trapped calls in the round-trip loop (default 2000)")
    args = ap.parse_args(argv)
    runs = args.runs or (2 if args.quick else 5)
    calls = args.calls or (300 if args.quick else 2000)

    print(f"sh -c '{LOOP}'   (min of {runs} runs, interleaved)")
    print(f"{'variant':<42} {'wall s':>8} {'ratio':>7} {'fixed s':>8} {'ratio w/o fixed':>16}")
    for name, loop, start, ratio, net in bench_ratios(runs):
        print(f"{name:<42} {loop:8.3f} {ratio:6.2f}x {start:8.3f} {net:15.2f}x")
    print()
    print(f"trapped execve round trip, caller side ({calls} calls, clock_gettime around each)")
    with tempfile.TemporaryDirectory(prefix="isod-bench-") as tmp:
        exe = compile_deny_loop(tmp)
        if exe is None:
            print("skipped: no C compiler (gcc/cc) to build bench/c/deny_loop.c")
            return 0
        print(f"{'variant':<42} {'p50 us':>8} {'p90 us':>8} {'p99 us':>8} {'errno':>7}")
        for name, r in bench_round_trips(exe, calls):
            us = [int(r[k]) / 1000 for k in ("p50_ns", "p90_ns", "p99_ns")]
            print(f"{name:<42} {us[0]:8.1f} {us[1]:8.1f} {us[2]:8.1f} {r['errno']:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

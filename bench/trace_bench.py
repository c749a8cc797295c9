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
from isod.sandbox.backends import BACKENDS  # noqa: E402 (after the path fix above)

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


class BenchError(Exception):
    pass


def wall(argv: list[str], timeout: float) -> float:
    t = time.perf_counter()
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise BenchError(f"timed out after {timeout:.0f} s (hung?)") from None
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise BenchError(f"exit {p.returncode}: {p.stderr.decode(errors='replace').strip()[-200:]}")
    return dt


def bench_ratios(runs: int, timeout: float) -> list[tuple[str, float, float, float, float] | tuple[str, str]]:
    """(label, loop s, startup s, ratio, ratio without startup) per wrapper, or
    (label, error) for one that failed: the others still run."""
    ws = wrappers()
    loop = {name: float("inf") for name, _ in ws}
    start = dict(loop)
    errors: dict[str, str] = {}
    for _ in range(runs):
        for name, w in ws:
            if name in errors:
                continue
            try:
                loop[name] = min(loop[name], wall([*w, "sh", "-c", LOOP], timeout))
                start[name] = min(start[name], wall([*w, "/bin/true"], timeout))
            except BenchError as e:
                errors[name] = str(e)
    if "native" in errors:
        raise SystemExit(f"trace_bench: the native run failed: {errors['native']}")
    base, base0 = loop["native"], start["native"]
    return [(name, errors[name]) if name in errors else
            (name, loop[name], start[name], loop[name] / base, (loop[name] - start[name]) / (base - base0))
            for name, _ in ws]


def compile_deny_loop(tmp: str) -> str | None:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        return None
    exe = os.path.join(tmp, "deny_loop")
    subprocess.run([gcc, "-O2", "-Wall", "-o", exe, str(HERE / "c" / "deny_loop.c")], check=True)
    return exe


def round_trip(argv: list[str], timeout: float) -> dict[str, str]:
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                           check=False)
    except subprocess.TimeoutExpired:
        raise BenchError(f"timed out after {timeout:.0f} s (hung?)") from None
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("n=")), None)
    if line is None:
        raise BenchError(f"no result (exit {p.returncode}): {p.stderr.strip()[-200:]}")
    return dict(kv.split("=", 1) for kv in line.split())


def bench_round_trips(exe: str, calls: int, timeout: float) -> list[tuple[str, dict[str, str] | str]]:
    """(label, deny_loop's result or an error) per variant."""
    n = str(calls)
    variants = []
    for b in BACKENDS:
        variants.append((f"deny  {b} (--size small, EPERM)", [*isod_trace(b, "--size", "small"), exe, n, "/bin/true"]))
        variants.append((f"allow {b} (--size medium, ENOENT)", [*isod_trace(b, "--size", "medium"), exe, n, MISSING]))
    variants.append(("native (no sandbox, ENOENT)", [exe, n, MISSING]))
    rows: list[tuple[str, dict[str, str] | str]] = []
    for name, argv in variants:
        try:
            rows.append((name, round_trip(argv, timeout)))
        except BenchError as e:
            rows.append((name, str(e)))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs and calls (a smoke run: 2 runs, 300 calls)")
    ap.add_argument("--runs", type=int, help="runs per variant, min taken (default 5)")
    ap.add_argument("--calls", type=int, help="trapped calls in the round-trip loop (default 2000)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds one run may take (default 120)")
    args = ap.parse_args(argv)
    runs = args.runs or (2 if args.quick else 5)
    calls = args.calls or (300 if args.quick else 2000)
    failed = False

    print(f"sh -c '{LOOP}'   (min of {runs} runs, interleaved)", flush=True)
    print(f"{'variant':<42} {'wall s':>8} {'ratio':>7} {'fixed s':>8} {'ratio w/o fixed':>16}")
    for row in bench_ratios(runs, args.timeout):
        if len(row) == 2:
            print(f"{row[0]:<42} error: {row[1]}")
            failed = True
            continue
        name, loop, start, ratio, net = row
        print(f"{name:<42} {loop:8.3f} {ratio:6.2f}x {start:8.3f} {net:15.2f}x")
    print()
    print(f"trapped execve round trip, caller side ({calls} calls, clock_gettime around each)")
    with tempfile.TemporaryDirectory(prefix="isod-bench-") as tmp:
        exe = compile_deny_loop(tmp)
        if exe is None:
            print("skipped: no C compiler (gcc/cc) to build bench/c/deny_loop.c")
            return 0
        print(f"{'variant':<42} {'p50 us':>8} {'p90 us':>8} {'p99 us':>8} {'errno':>7}", flush=True)
        for name, r in bench_round_trips(exe, calls, args.timeout):
            if isinstance(r, str):
                print(f"{name:<42} error: {r}")
                failed = True
                continue
            us = [int(r[k]) / 1000 for k in ("p50_ns", "p90_ns", "p99_ns")]
            print(f"{name:<42} {us[0]:8.1f} {us[1]:8.1f} {us[2]:8.1f} {r['errno']:>7}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

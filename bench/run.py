#!/usr/bin/env python3
"""`make bench`: isod side by side with plain pytest, pytest-test-categories and
pytest-xdist, as ratios to plain pytest; plus tracing cost, daemon memory and
where isod's time goes.

    python bench/run.py [--quick] [--runs N] [--suites one,a,b,c] [--runners plain,isod,...]
                        [--no-install] [--no-trace] [--no-profile] [--no-chart] [--out DIR]

The compared tools live in their own venv, bench/.venv (the project installed
editable, pytest-test-categories, pytest-xdist, matplotlib, py-spy), made or
updated here when needed; the script then re-runs itself in it. --no-install
uses the running interpreter instead (runners whose plugin it lacks show n/a).

Suites are generated into a temporary directory (see suites.py); each runner
is timed N times per suite, the runners interleaved (their order rotated each
round), and each run's closing line must show the suite's exact outcome. A full
run writes bench/results.md and bench/results.png; --quick (1 run, smaller
suites, quick trace bench) writes them to bench/out/ unless --out says where.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BENCH_VENV = HERE / ".venv"
REQUIREMENTS = ["pytest-test-categories", "pytest-xdist", "matplotlib", "py-spy"]
SUITE_KEYS = ("one", "a", "b", "c", "d")
sys.path.insert(0, str(HERE))


# --- the bench venv ------------------------------------------------------------

def venv_python() -> Path:
    return BENCH_VENV / "bin" / "python"


def ensure_venv() -> Path:
    """bench/.venv with the project (editable) and the compared tools; a no-op when up to date."""
    stamp = BENCH_VENV / ".installed"
    key = hashlib.sha256((REPO / "pyproject.toml").read_bytes() + "\n".join(REQUIREMENTS).encode()).hexdigest()
    py = venv_python()
    if py.exists() and stamp.exists() and stamp.read_text().strip() == key:
        return py
    if not py.exists():
        print(f"bench: creating {BENCH_VENV}", flush=True)
        base = getattr(sys, "_base_executable", None) or sys.executable
        subprocess.run([base, "-m", "venv", str(BENCH_VENV)], check=True)
    print(f"bench: installing the project and {', '.join(REQUIREMENTS)} into {BENCH_VENV}", flush=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "-e", str(REPO), *REQUIREMENTS], check=True)
    stamp.write_text(key + "\n")
    return py


# --- results -----------------------------------------------------------------

@dataclass
class Row:
    runner: str
    label: str
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    na: str | None = None          # why it did not run
    error: str | None = None       # a run that did not give the expected outcome

    @property
    def min(self) -> float | None:
        return min(self.walls) if self.walls and not self.error else None

    @property
    def median(self) -> float | None:
        return statistics.median(self.walls) if self.walls and not self.error else None

    @property
    def cpu(self) -> float | None:
        return statistics.median(self.cpus) if self.cpus and not self.error else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def fmt(x: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "–" if x is None else f"{x:{spec}}{suffix}"


# --- main ----------------------------------------------------------------------

def parse_args(argv: list[str]) -> argparse.Namespace:
    from runners import RUNNERS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 run each, smaller suites, quick trace bench")
    ap.add_argument("--runs", type=int, help="runs per runner and suite (default 5; --quick 1)")
    ap.add_argument("--suites", default=",".join(SUITE_KEYS),
                    help=f"comma-separated, from {','.join(SUITE_KEYS)} (default all; 'one' = 1 test, fixed cost)")
    ap.add_argument("--runners", default=",".join(RUNNERS), help=f"comma-separated, from {','.join(RUNNERS)}")
    ap.add_argument("--no-install", action="store_true",
                    help="do not make or use bench/.venv: run everything with this interpreter")
    ap.add_argument("--no-trace", action="store_true", help="skip bench/trace_bench.py (trace ratio, round trips)")
    ap.add_argument("--no-profile", action="store_true", help="skip memory/CPU sampling, py-spy and micro costs")
    ap.add_argument("--no-chart", action="store_true", help="do not draw results.png")
    ap.add_argument("--commit", metavar="REV",
                    help="benchmark isod as committed at REV (git archive into a temp dir, first on PYTHONPATH) "
                         "instead of the working tree")
    ap.add_argument("--src", type=Path, metavar="DIR",
                    help="benchmark the isod sources in DIR/daemon and DIR/client (a patched copy, say)")
    ap.add_argument("--profile-only", action="store_true",
                    help="redo only the memory/CPU/py-spy stage into bench/out/last-run.pickle, then write results")
    ap.add_argument("--rerender", type=Path, metavar="PICKLE",
                    help="only write results.md/.png again from a saved run (bench/out/last-run.pickle)")
    ap.add_argument("--out", type=Path, help="where results.md/.png go (default bench/, --quick: bench/out/)")
    args = ap.parse_args(argv)
    args.runs = args.runs or (1 if args.quick else 5)
    args.suite_list = [s for s in args.suites.split(",") if s]
    args.runner_list = [r for r in args.runners.split(",") if r]
    bad = [s for s in args.suite_list if s not in SUITE_KEYS] + [r for r in args.runner_list if r not in RUNNERS]
    if bad:
        ap.error(f"unknown suite or runner: {', '.join(bad)}")
    args.out = args.out or (HERE / "out" if args.quick else HERE)
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.rerender:
        return rerender(args.rerender, args.out if "--out" in argv else None)
    if not args.no_install and Path(sys.prefix).resolve() != BENCH_VENV.resolve():
        py = ensure_venv()
        os.execv(str(py), [str(py), str(Path(__file__).resolve()), *argv])
    t_start = time.monotonic()
    snapshot = use_commit(args.commit) if args.commit else None
    if args.src:
        use_src(args.src.resolve())
    from runners import RUNNERS, Context, PreDaemon, describe_failure, run_once, startup_time, unavailable
    from suites import calibrate_loop, make_suites

    python = sys.executable
    if args.profile_only:
        return profile_only(args, python)
    env_info = environment(python, args.commit)
    if args.src:
        env_info["commit"] = f"the sources in {args.src}"
    print(env_info["line"], flush=True)
    spin_n = calibrate_loop()
    tmp = Path(tempfile.mkdtemp(prefix="isod-bench-suites-"))
    suites = make_suites(tmp, args.quick, spin_n)
    runners = [RUNNERS[k] for k in args.runner_list]
    na = {r.key: unavailable(r) for r in runners}
    ctx = Context(python=python)
    failures: list[str] = []
    daemon = None
    try:
        if any(r.prestarted and not na[r.key] for r in runners):
            daemon = ctx.daemon = PreDaemon(python)
        live = [r for r in runners if not na[r.key]]

        # 1. each runner's enforcement on two small tests that spawn (is strict really on?)
        probe = {}
        for r in live:
            run = run_once(r, suites["probe"], ctx, expect=r.probe_expect, timeout=120)
            probe[r.key] = run
            if not run.ok:
                failures.append(f"{r.key} on the enforcement probe: {describe_failure(run, r.probe_expect)}")
        # 2. timed runs, interleaved
        results: dict[str, list[Row]] = {}
        for skey in args.suite_list:
            suite = suites[skey]
            run_once(RUNNERS["plain"], suite, ctx)          # warm-up: pytest's bytecode cache
            rows = {r.key: Row(r.key, r.label, na=na[r.key]) for r in runners}
            for rep in range(args.runs):
                order = live[rep % len(live):] + live[:rep % len(live)] if live else []
                for r in order:
                    row = rows[r.key]
                    if row.error:
                        continue
                    run = run_once(r, suite, ctx)
                    if not run.ok:
                        row.error = describe_failure(run, suite.expect)
                        failures.append(f"{r.key} on suite {skey}: {row.error}")
                        continue
                    row.walls.append(run.wall)
                    row.cpus.append(run.cpu)
                print(f"  suite {skey} round {rep + 1}/{args.runs}: " + ", ".join(
                    f"{k} {v.walls[-1]:.2f}s" for k, v in rows.items() if v.walls and not v.error), flush=True)
            results[skey] = list(rows.values())
            print_table(suite.title, results[skey])

        # 3. fixed costs: daemon start, client collection
        extra = {}
        if not args.no_profile and not na.get("isod", "n/a"):
            extra["daemon_start"] = startup_time(python, args.runs)
            if "a" in suites:
                extra["collect_a"] = [collect_only(python, suites["a"]) for _ in range(args.runs)]
        # 4. memory and CPU per process, py-spy, per-test micro costs
        profile = {}
        if not args.no_profile and daemon is not None:
            try:
                profile = run_profile(args, suites["a"], ctx, python)
            except Exception as e:  # noqa: BLE001 (the timings above still get written)
                failures.append(f"profile stage: {type(e).__name__}: {e}")
        # 5. trace ratios and round trips
        trace = None if args.no_trace else run_trace(args)
    finally:
        if daemon is not None:
            daemon.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        if snapshot is not None:
            shutil.rmtree(snapshot, ignore_errors=True)

    state = {"args": args, "env_info": env_info, "suites": suites, "results": results, "probe": probe, "na": na,
             "extra": extra, "profile": profile, "trace": trace, "spin_n": spin_n,
             "daemon_start": daemon.startup_s if daemon else None, "elapsed": time.monotonic() - t_start}
    (HERE / "out").mkdir(exist_ok=True)
    with open(HERE / "out" / "last-run.pickle", "wb") as f:
        pickle.dump(state, f)
    write_outputs(state, args.out, args.no_chart)
    if failures:
        print("\nFAILED RUNS:\n" + "\n\n".join(failures), file=sys.stderr)
        return 1
    return 0


def profile_only(args, python: str) -> int:
    from runners import Context, PreDaemon
    from suites import make_suites
    with open(HERE / "out" / "last-run.pickle", "rb") as f:
        state = pickle.load(f)
    tmp = Path(tempfile.mkdtemp(prefix="isod-bench-suites-"))
    ctx = Context(python=python)
    try:
        suites = make_suites(tmp, state["args"].quick, state["spin_n"])
        ctx.daemon = PreDaemon(python)
        state["profile"] = run_profile(state["args"], suites["a"], ctx, python)
    finally:
        if ctx.daemon is not None:
            ctx.daemon.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    with open(HERE / "out" / "last-run.pickle", "wb") as f:
        pickle.dump(state, f)
    write_outputs(state, args.out if args.out != HERE / "out" else state["args"].out, state["args"].no_chart)
    return 0


def rerender(path: Path, out: Path | None) -> int:
    """results.md/.png again from a saved run (e.g. after editing bench/findings.md)."""
    with open(path, "rb") as f:
        state = pickle.load(f)
    write_outputs(state, out or state["args"].out, state["args"].no_chart)
    return 0


def write_outputs(state: dict, out: Path, no_chart: bool) -> None:
    args, suites, results, trace = state["args"], state["suites"], state["results"], state["trace"]
    out.mkdir(parents=True, exist_ok=True)
    md = render(args, state["env_info"], suites, results, state["probe"], state["na"], state["extra"],
                state["profile"], trace, state["spin_n"], state["daemon_start"], state["elapsed"])
    (out / "results.md").write_text(md)
    print(f"\nwrote {out / 'results.md'}")
    if not no_chart:
        from chart import draw
        panels = [(suites[k].title, [(r.label, ratio(r.median, plain_of(results[k], "median")),
                                      ratio(r.min, plain_of(results[k], "min"))) for r in results[k]])
                  for k in args.suite_list]
        tr = [(row[0], row[3]) for row in trace["ratios"] if len(row) == 5] if trace else None
        if draw(out / "results.png", panels, tr):
            print(f"wrote {out / 'results.png'}")
        else:
            print("no chart: matplotlib is not installed here (it is in bench/.venv)")


def plain_of(rows: list[Row], attr: str) -> float | None:
    return next((getattr(r, attr) for r in rows if r.runner == "plain"), None)


def print_table(title: str, rows: list[Row]) -> None:
    print(f"\n{title}")
    print(f"{'runner':<48} {'min s':>7} {'median s':>9} {'x plain':>8} {'CPU s':>7}")
    pm = plain_of(rows, "median")
    for r in rows:
        if r.na or r.error:
            print(f"{r.label:<48} {r.na or 'FAILED (outcome check)'}")
        else:
            print(f"{r.label:<48} {r.min:7.2f} {r.median:9.2f} {fmt(ratio(r.median, pm), '.2f', 'x'):>8} "
                  f"{fmt(r.cpu):>7}")
    sys.stdout.flush()


def collect_only(python: str, suite) -> float:
    from runners import pytest_env
    t = time.perf_counter()
    subprocess.run([python, "-m", "pytest", "--collect-only", "-q"], cwd=suite.path, env=pytest_env(),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def run_profile(args, suite, ctx, python: str) -> dict:
    import micro
    from where_time import pyspy_path, pyspy_run, sample_run
    out: dict = {}
    print("\nsampling memory and CPU per process (suite a, pre-started daemon) ...", flush=True)
    out["sampled"] = sample_run(suite, ctx, "isod-daemon")
    out["sampled_embedded"] = sample_run(suite, ctx, "isod")
    out["sampled_plain"] = sample_run(suite, ctx, "plain")
    spy = pyspy_path(python)
    if spy:
        print("profiling suite a with py-spy (client, embedded daemon, workers) ...", flush=True)
        out["pyspy_ok"], out["pyspy"] = pyspy_run(suite, ctx, HERE / "out" / "profile", spy)
    out["micro"] = micro.measure(500 if args.quick else 2000)
    return out


def run_trace(args) -> dict:
    import trace_bench
    runs = 2 if args.quick else 5
    calls = 300 if args.quick else 2000
    print(f"\ntrace bench (min of {runs} runs; {calls} trapped calls) ...", flush=True)
    out = {"runs": runs, "calls": calls, "ratios": [], "trips": None, "error": None}
    try:
        out["ratios"] = trace_bench.bench_ratios(runs, TRACE_TIMEOUT)
        with tempfile.TemporaryDirectory(prefix="isod-bench-") as tmp:
            exe = trace_bench.compile_deny_loop(tmp)
            if exe is not None:
                out["trips"] = trace_bench.bench_round_trips(exe, calls, TRACE_TIMEOUT)
    except (Exception, SystemExit) as e:  # noqa: BLE001 (rows say which variant failed; this is the rest)
        out["error"] = f"{type(e).__name__}: {e}"
        print(f"trace bench failed: {out['error']}", file=sys.stderr)
    return out


TRACE_TIMEOUT = 120.0


def use_commit(rev: str) -> Path:
    """Extracts daemon/ and client/ as of rev and puts them first on PYTHONPATH, for us and every child."""
    snap = Path(tempfile.mkdtemp(prefix="isod-bench-src-"))
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "daemon", "client"], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(snap)], input=archive, check=True)
    use_src(snap)
    return snap


def use_src(src: Path) -> None:
    """Puts src/daemon and src/client first on PYTHONPATH, for us and every child (workers inherit it)."""
    paths = [str(src / "daemon"), str(src / "client")]
    os.environ["PYTHONPATH"] = os.pathsep.join(paths + [p for p in [os.environ.get("PYTHONPATH")] if p])
    sys.path[:0] = paths
    import isod
    if not isod.__file__.startswith(str(src)):
        raise SystemExit(f"bench: isod still imports from {isod.__file__}, not from {src}")


def environment(python: str, rev: str | None = None) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    def v(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", rev or "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()
    dirty = "" if rev else subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "daemon", "client"],
                                          capture_output=True, text=True, check=False).stdout.strip()
    info = {
        "cpus": len(os.sched_getaffinity(0)), "kernel": platform.release(), "python": platform.python_version(),
        "pytest": v("pytest"), "tc": v("pytest-test-categories"), "xdist": v("pytest-xdist"),
        "commit": commit + (" + uncommitted changes in daemon/ or client/" if dirty else ""),
        "load": os.getloadavg()[0], "python_path": python,
    }
    info["line"] = (f"bench: {info['cpus']} CPUs, Linux {info['kernel']}, Python {info['python']}, "
                    f"pytest {info['pytest']}, pytest-test-categories {info['tc']}, pytest-xdist {info['xdist']}, "
                    f"isod {info['commit']}, load {info['load']:.2f}")
    return info


# --- results.md --------------------------------------------------------------------

GOAL_SPEEDUP = 1.8
GOAL_TRACE = 1.2
GOAL_DENY_US = 25.0


def render(args, env, suites, results, probe, na, extra, profile, trace, spin_n, daemon_start, elapsed) -> str:
    from runners import RUNNERS
    L: list[str] = []
    add = L.append
    add("# isod benchmark results\n")
    add(f"Generated by `make bench` (`bench/run.py{' --quick' if args.quick else ''}`) in {elapsed / 60:.1f} min. "
        f"{env['cpus']} CPUs, Linux {env['kernel']}, Python {env['python']}, pytest {env['pytest']}, "
        f"pytest-test-categories {env['tc']}, pytest-xdist {env['xdist']}; isod at {env['commit']}; "
        f"1-min load average at the start {env['load']:.2f} (other work shares this machine: min is the "
        f"steadier figure). Each runner ran {args.runs}× per suite, interleaved with the others; every run's "
        "closing line had to show the suite's exact outcome (e.g. `2000 passed`), else the row says FAILED. "
        "Every runner is a fresh `python -m pytest` with plugin autoloading off and its own plugins named with "
        "`-p`. Ratios are to plain pytest's median (× plain) and min (× plain, min).\n")

    goals = goal_rows(results, trace)
    add("## Goals\n")
    add("| goal | measured | met? |")
    add("|---|---|---|")
    for g, m, ok in goals:
        add(f"| {g} | {m} | {'met' if ok else ('not met' if ok is False else 'n/a')} |")
    add("")

    for skey in args.suite_list:
        rows = results[skey]
        pm, pmin = plain_of(rows, "median"), plain_of(rows, "min")
        add(f"## {suites[skey].title}\n")
        if skey == "b":
            add(f"Each test runs a pure-Python loop of {spin_n:,} iterations, calibrated to ≈10 ms here.\n")
        add("| runner | min s | median s | × plain | × plain, min | CPU s (median, whole tree) |")
        add("|---|---:|---:|---:|---:|---:|")
        for r in rows:
            if r.na:
                add(f"| {r.label} | {r.na} | | | | |")
            elif r.error:
                add(f"| {r.label} | FAILED: {r.error.splitlines()[0]} | | | | |")
            else:
                add(f"| {r.label} | {r.min:.2f} | {r.median:.2f} | {fmt(ratio(r.median, pm), '.2f', '×')} | "
                    f"{fmt(ratio(r.min, pmin), '.2f', '×')} | {fmt(r.cpu)} |")
        add("")
        if "one" in results and skey != "one" and suites[skey].tests > 1:
            add(per_test_line(rows, results["one"], suites[skey].tests))
    if "one" in results:
        add("The 1-test suite is each runner's fixed cost (interpreter, plugin import, daemon and worker "
            "start-up); the per-test costs above are (median − fixed median) / (tests − 1).\n")

    add("## Enforcement check\n")
    add("Two small tests that spawn, run once per runner before timing, so that a runner whose enforcement "
        "is not really on cannot pass as fast: `subprocess.run([\"true\"])` (monkeypatching sees it) and "
        "`os.posix_spawn(\"/bin/true\", ...)` (it does not).\n")
    add("| runner | expected | got | |")
    add("|---|---|---|---|")
    for k in args.runner_list:
        r = RUNNERS[k]
        if na.get(k):
            add(f"| {r.label} | | {na[k]} | |")
            continue
        run = probe.get(k)
        add(f"| {r.label} | {_counts(r.probe_expect)} | {_counts(run.counts) if run else '–'} | "
            f"{'ok' if run and run.ok else 'MISMATCH'} |")
    add("")

    if trace:
        add(trace_md(trace))
    if extra or profile:
        add(where_md(extra, profile, daemon_start, results))
    notes = HERE / "findings.md"
    if notes.exists() and not args.quick:
        add(notes.read_text().strip() + "\n")
    add("![chart](results.png)\n")
    return "\n".join(L)


def _counts(c: dict) -> str:
    return ", ".join(f"{n} {k}" for k, n in sorted(c.items())) or "–"


def per_test_line(rows: list[Row], one: list[Row], n: int) -> str:
    fixed = {r.runner: r.median for r in one}
    parts = []
    for r in rows:
        f = fixed.get(r.runner)
        if r.median is not None and f is not None:
            us = (r.median - f) / (n - 1) * 1e6
            parts.append(f"{r.label}: {us:,.0f} µs" if us > 0 else f"{r.label}: within noise")
    return ("Per test beyond the fixed cost: " + "; ".join(parts) + ".\n") if parts else ""


def _row(rows: list[Row], key: str) -> Row | None:
    return next((r for r in rows if r.runner == key), None)


def _vs_plain(rows: list[Row], key: str) -> tuple[Row | None, Row | None]:
    return _row(rows, "plain"), _row(rows, key)


def goal_rows(results: dict, trace: dict | None) -> list[tuple[str, str, bool | None]]:
    """The overhead goals (fixed cost, 2000 trivial tests, medium spawning
    tests, a packaging-sized suite, CPU of the tree), then the older ones."""
    out = []
    one = results.get("one")
    if one:
        for key, extra in (("isod", 0.35), ("isod-daemon", 0.15)):
            p, i = _vs_plain(one, key)
            if p and i and p.median is not None and i.median is not None:
                over = i.median - p.median
                where = "embedded daemon" if key == "isod" else "a running isod serve"
                out.append((f"fixed cost, {where}: ≤ plain + {extra:g} s (1 test, median)",
                            f"plain + {over:.2f} s (plain {p.median:.2f} s, isod {i.median:.2f} s)", over <= extra))
    a = results.get("a")
    if a:
        p, i, x = _row(a, "plain"), _row(a, "isod"), _row(a, "xdist")
        if p and i and x and None not in (p.median, i.median, x.median):
            out.append(("trivial tests (suite a): isod faster than pytest-xdist -n 2 (median)",
                        f"isod {i.median:.2f} s, xdist {x.median:.2f} s", i.median < x.median))
        if p and i and p.cpu is not None and i.cpu is not None:
            out.append(("trivial tests (suite a): CPU of the whole tree ≤ 2.5 CPU-s (median)",
                        f"{i.cpu:.2f} CPU-s (plain {p.cpu:.2f})", i.cpu <= 2.5))
    for skey, what, limit in (("c", "medium tests running a subprocess", 1.5), ("d", "packaging-sized suite", 1.0)):
        if results.get(skey):
            p, i = _vs_plain(results[skey], "isod")
            r = ratio(i.median if i else None, p.median if p else None)
            out.append((f"{what} ≤ {limit:g}× plain (suite {skey}, median)", fmt(r, ".2f", "×"),
                        None if r is None else r <= limit))
    if a:
        p, i = _row(a, "plain"), _row(a, "isod")
        rm = ratio(i.median if i else None, p.median if p else None)
        rn = ratio(i.min if i else None, p.min if p else None)
        out.append(("trivial tests (suite a): isod strict ≤ 1.0× plain pytest (median)",
                    (f"{fmt(rm, '.2f', '×')} (min {fmt(rn, '.2f', '×')}; plain {fmt(p.median if p else None)} s, "
                    f"isod {fmt(i.median if i else None)} s)"), None if rm is None else rm <= 1.0))
    for skey in ("b", "a", "c"):
        rows = results.get(skey)
        if not rows:
            continue
        w1, w2 = _row(rows, "isod-w1"), _row(rows, "isod-w2")
        sp = ratio(w1.median if w1 else None, w2.median if w2 else None)
        which = ", the goal" if skey == "b" else ", for reference"
        label = f"(b) isod 2 workers ≥ {GOAL_SPEEDUP}× faster than 1 worker (suite {skey}{which})"
        out.append((label, (f"{fmt(sp, '.2f', '×')} (1 worker {fmt(w1.median if w1 else None)} s, "
                           f"2 workers {fmt(w2.median if w2 else None)} s)"),
                    None if sp is None or skey != "b" else sp >= GOAL_SPEEDUP))
    if trace:
        for row in trace["ratios"]:
            name = row[0]
            if not name.startswith("isod trace"):
                continue
            if len(row) == 2:
                out.append((f"tracing ≤ {GOAL_TRACE}× native ({name})", f"failed: {row[1]}", False))
                continue
            _name, _loop, _start, rt, net = row
            out.append((f"tracing ≤ {GOAL_TRACE}× native ({name})", f"{rt:.2f}× ({net:.2f}× without fixed cost)",
                        rt <= GOAL_TRACE))
        for name, r in trace["trips"] or []:
            if name.startswith("deny") and isinstance(r, str):
                out.append((f"deny round trip ≤ {GOAL_DENY_US:g} µs p50 ({name.split('(')[0].strip()})",
                            f"failed: {r}", False))
            elif name.startswith("deny"):
                p50 = int(r["p50_ns"]) / 1000
                out.append((f"deny round trip ≤ {GOAL_DENY_US:g} µs p50 ({name.split('(')[0].strip()})",
                            f"{p50:.1f} µs p50, {int(r['p99_ns']) / 1000:.1f} µs p99", p50 <= GOAL_DENY_US))
    return out


def trace_md(trace: dict) -> str:
    L = ["## Tracing (bench/trace_bench.py)\n",
         (f"`sh -c 'for i in $(seq 500); do /bin/true; done'`, min of {trace['runs']} runs; the fixed cost is the "
         "same wrapper around one `/bin/true`.\n"),
         "| variant | wall s | × native | fixed s | × native without fixed cost |", "|---|---:|---:|---:|---:|"]
    for row in trace["ratios"]:
        if len(row) == 2:
            L.append(f"| {row[0]} | failed: {row[1]} | | | |")
            continue
        name, loop, start, rt, net = row
        L.append(f"| {name} | {loop:.3f} | {rt:.2f}× | {start:.3f} | {net:.2f}× |")
    if trace.get("error"):
        L.append(f"\nThe trace bench stopped: {trace['error']}\n")
    if trace["trips"]:
        L += ["", f"Trapped execve round trip as the caller sees it ({trace['calls']} calls, bench/c/deny_loop.c):\n",
              "| variant | p50 µs | p90 µs | p99 µs | errno |", "|---|---:|---:|---:|---|"]
        for name, r in trace["trips"]:
            if isinstance(r, str):
                L.append(f"| {name} | failed: {r} | | | |")
                continue
            us = [int(r[k]) / 1000 for k in ("p50_ns", "p90_ns", "p99_ns")]
            L.append(f"| {name} | {us[0]:.1f} | {us[1]:.1f} | {us[2]:.1f} | {r['errno']} |")
    L.append("")
    return "\n".join(L)


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n else "–"


def where_md(extra: dict, profile: dict, daemon_start: float | None, results: dict) -> str:
    L = ["## Where the time goes (suite a)\n", "### Fixed costs\n", "| what | median s | min s |", "|---|---:|---:|"]
    if extra.get("daemon_start"):
        ds = extra["daemon_start"]
        L.append(f"| `isod serve` start until its gRPC health check answers SERVING | {statistics.median(ds):.2f} | "
                 f"{min(ds):.2f} |")
    if extra.get("collect_a"):
        ca = extra["collect_a"]
        L.append(f"| `pytest --collect-only` of suite a (interpreter + collection; the client, and each worker, "
                 f"does this) | {statistics.median(ca):.2f} | {min(ca):.2f} |")
    for key, label in (("plain", "plain pytest, 1 test"), ("isod", "isod embedded daemon, 1 test"),
                       ("isod-daemon", "isod pre-started daemon, 1 test")):
        r = _row(results.get("one", []), key)
        if r and r.median is not None:
            L.append(f"| {label} | {r.median:.2f} | {r.min:.2f} |")
    L.append("")
    s = profile.get("sampled")
    if s:
        L += ["### Memory and CPU per process\n",
              "psutil every 10 ms during one run of suite a (CPU: user+sys seconds of each process).\n",
              "| run | wall s | client CPU s | daemon CPU s | workers CPU s | total CPU s | peak RSS |",
              "|---|---:|---:|---:|---:|---:|---|"]
        for key, label in (("sampled_plain", "plain pytest"), ("sampled_embedded", "isod, embedded daemon"),
                           ("sampled", "isod, pre-started daemon")):
            x = profile.get(key)
            if not x:
                continue
            by = {role: [p for p in x.procs if p.role == role] for role in ("client", "daemon", "worker")}
            cpu = {role: sum(p.cpu for p in ps) for role, ps in by.items()}
            rss = f"client {_mib(x.client_peak_rss)}"
            if by["daemon"]:
                rss += f", daemon {_mib(x.daemon_peak_rss)}, each worker ≤ {_mib(x.worker_peak_rss)}"
            L.append(f"| {label}{'' if x.ok else ' (OUTCOME MISMATCH)'} | {x.wall:.2f} | {cpu['client']:.2f} | "
                     f"{cpu['daemon']:.2f} | {cpu['worker']:.2f} ({len(by['worker'])} workers) | "
                     f"{sum(cpu.values()):.2f} | {rss} |")
        L += ["", (f"Daemon RSS (pre-started): idle {_mib(s.daemon_idle_rss)}, peak during suite a "
                  f"{_mib(s.daemon_peak_rss)}, after the session {_mib(s.daemon_after_rss)}.\n")]
    prof = profile.get("pyspy")
    if prof:
        L += ["### py-spy profile\n",
              ("One run of suite a with the embedded daemon; `py-spy record --nonblocking` on the client, the daemon "
              "and each worker (attached as it appears, so a worker's first few ms are missed). Non-idle samples "
              "only, each process's samples folded into categories (a sample goes to the first category matching "
              "any frame of its stack). py-spy slows the run; read the shares, not the seconds. Raw stacks: "
              f"bench/out/profile/.{'' if profile.get('pyspy_ok') else ' (THE PROFILED RUN HAD THE WRONG OUTCOME)'}\n")]
        from where_time import RATE
        for role in ("client", "daemon", "worker"):
            p = prof.get(role)
            if not p or not p.samples:
                continue
            L += [(f"**{role}** ({len(p.pids)} process{'es' if len(p.pids) > 1 else ''}, {p.samples} samples "
                  f"≈ {p.samples / RATE:.1f} s active)\n"), "| category | share |", "|---|---:|"]
            for cat, n in p.categories.most_common():
                L.append(f"| {cat} | {100 * n / p.samples:.0f}% |")
            L.append("")
            L.append("Top frames (self): " + "; ".join(f"`{f}` {100 * n / p.samples:.0f}%" for f, n in p.top_self[:6])
                     + "\n")
    if profile.get("micro"):
        paths = profile["micro"]
        if isinstance(paths, list):        # a pickle of an older run: one path
            paths = {"JSON": paths}
        L += ["### Serialization per test (in-process floor, bench/micro.py)\n"]
        for path, rows in paths.items():
            L += [f"| {path}: step | µs per test |", "|---|---:|"]
            for step, us in rows:
                L.append(f"| {step} | {us:.1f} |")
            L.append(f"| total | {sum(us for _, us in rows):.1f} |")
            L.append("")
    return "\n".join(L)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

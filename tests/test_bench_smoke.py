"""bench/trace_bench.py runs end to end and prints its tables."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from isod.sandbox.backends import BACKENDS

BENCH = Path(__file__).resolve().parent.parent / "bench" / "trace_bench.py"


@pytest.mark.large
def test_trace_bench_quick_prints_the_tables():
    p = subprocess.run([sys.executable, str(BENCH), "--quick", "--timeout", "30"], capture_output=True, text=True,
                       timeout=240,
                       check=False)
    assert p.returncode == 0, p.stdout + p.stderr     # 1: a variant failed or hung (its row says why)
    lines = p.stdout.splitlines()

    def row(label: str) -> str:
        found = [ln for ln in lines if ln.startswith(label + "  ")]   # labels are padded
        assert len(found) == 1, f"no row {label!r} in:\n{p.stdout}"
        return found[0]

    def numbers(label: str) -> list[float]:
        return [float(x) for x in re.findall(r"\d+\.\d+", row(label)[len(label):])]

    assert numbers("native")[1] == 1.0                       # wall s, ratio 1.00x, fixed s, 1.00x
    for b in BACKENDS:
        wall, ratio, _fixed, net = numbers(f"isod trace --backend {b}")
        assert wall > 0 and ratio > 0 and net > 0
    if shutil.which("strace"):
        assert len(numbers("strace -f -e trace=process")) == 4
        assert len(numbers("strace -f --seccomp-bpf -e trace=process")) == 4
    if shutil.which("gcc") or shutil.which("cc"):
        for b in BACKENDS:
            assert row(f"deny  {b} (--size small, EPERM)").endswith(" EPERM")
            assert row(f"allow {b} (--size medium, ENOENT)").endswith(" ENOENT")
            p50, p90, p99 = numbers(f"deny  {b} (--size small, EPERM)")
            assert 0 < p50 <= p90 <= p99
        assert row("native (no sandbox, ENOENT)").endswith(" ENOENT")

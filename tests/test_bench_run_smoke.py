"""bench/run.py (`make bench`) runs end to end on a tiny configuration, so it cannot rot.

It uses this interpreter (--no-install: no bench venv, no PyPI), plain pytest and
isod on the quick trivial suite, and must write results.md with both rows
timed, the enforcement check passed, and the goals table.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parent.parent / "bench" / "run.py"


@pytest.mark.large
def test_bench_run_quick_writes_the_tables(tmp_path):
    p = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--no-install", "--suites", "a", "--runners", "plain,isod,xdist",
         "--no-trace", "--no-profile", "--no-chart", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    md = (tmp_path / "results.md").read_text()

    def row(label: str) -> list[str]:
        found = [ln for ln in md.splitlines() if ln.startswith(f"| {label} |")]
        assert found, f"no row {label!r} in:\n{md}"
        return [c.strip() for c in found[0].strip("|").split("|")]

    plain = row("plain pytest")
    isod = row("isod strict, seccomp (embedded daemon)")
    assert float(plain[1]) > 0 and plain[3] == "1.00×"
    assert float(isod[1]) > 0 and re.fullmatch(r"\d+\.\d\d×", isod[3])
    # xdist is not in the project venv: shown as n/a, not as a failure
    if "n/a" in " ".join(row("pytest-xdist -n 2")):
        assert "not installed" in row("pytest-xdist -n 2")[1]
    assert "| isod strict, seccomp (embedded daemon) | 2 failed | 2 failed | ok |" in md
    assert "trivial tests (suite a): isod strict ≤ 1.0× plain pytest" in md
    assert "MISMATCH" not in md and "| FAILED" not in md


@pytest.mark.small
def test_outcome_counts_come_from_the_closing_line():
    sys.path.insert(0, str(RUN.parent))
    try:
        from runners import outcome
    finally:
        sys.path.remove(str(RUN.parent))
    out = "....\n=== 1 failed, 1999 passed, 2 errors in 2.04s ===\n"
    assert outcome(out) == {"failed": 1, "passed": 1999, "error": 2}
    assert outcome("2000 passed in 2.04s") == {"passed": 2000}
    assert outcome("isod: lost the daemon\n=== no tests ran in 0.84s ===") == {}

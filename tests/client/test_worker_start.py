"""Workers start the way the client started: the same sys.argv[0] and
sys.path[0] (a flat-layout project tests the same copy of its code), and the
same rootdir and ini file whatever its arguments name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.large

PROBE = '''
import sys
def test_probe():
    print("PROBE", sys.argv[0], sys.path[0])
    assert 0
'''


def _probe(tmp_path: Path, argv: list[str], *extra: str) -> str:
    p = subprocess.run([*argv, "-q", "-p", "no:cacheprovider", "-rA", *extra], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    lines = [line for line in p.stdout.splitlines() if line.startswith("PROBE ")]
    assert lines, p.stdout + p.stderr
    return lines[0]


@pytest.mark.parametrize("how", ["script", "module"])
def test_argv0_and_sys_path_are_the_clients(tmp_path, how):
    (tmp_path / "test_probe.py").write_text(PROBE)
    script = Path(sys.executable).parent / "pytest"
    argv = [str(script)] if how == "script" else [sys.executable, "-m", "pytest"]
    if how == "script" and not script.exists():
        pytest.skip(f"no pytest script next to {sys.executable}")
    plain = _probe(tmp_path, argv)
    isod = _probe(tmp_path, argv, "-p", "isod_client")
    assert isod == plain


def test_a_report_file_named_before_it_exists_moves_no_rootdir(tmp_path):
    """`--isod-report FILE` (space form) on a project without an ini file:
    the second run's FILE exists and pytest's rootdir logic sees it."""
    proj = tmp_path / "proj"
    (proj / "tests").mkdir(parents=True)
    (proj / "tests" / "test_a.py").write_text("def test_a():\n    pass\n")
    out = tmp_path / "elsewhere" / "report.json"
    out.parent.mkdir()
    for _ in range(2):
        p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "isod_client", "-p", "no:cacheprovider",
                            "tests", "--isod-report", str(out)], cwd=proj, capture_output=True, text=True,
                           timeout=120, env=dict(os.environ))
        assert p.returncode == 0 and "1 passed" in p.stdout, p.stdout + p.stderr

"""Reports flow through pytest's own hooks: the usual options behave as in plain pytest."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from harness.daemon import run_pytest

pytestmark = pytest.mark.large

SUITE = '''
import logging, sys, time, pytest
pytestmark = pytest.mark.small

def test_pass():
    pass

def test_fail_with_output():
    print("captured-stdout-line")
    sys.stderr.write("captured-stderr-line\\n")
    logging.getLogger("x").warning("captured-log-line")
    assert 1 == 2

@pytest.mark.skip(reason="because")
def test_skip():
    pass

@pytest.mark.xfail
def test_xfail():
    assert 0

def test_slow():
    time.sleep(0.2)

@pytest.mark.parametrize("n", [1, 2, 3])
def test_param(n):
    assert n != 2
'''


def _counts(out: str) -> dict[str, int]:
    last = out.strip().splitlines()[-1]
    return {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|xfailed|errors?|deselected)", last)}


def test_counts_verbose_and_captured_output(tmp_path, daemon):
    r = run_pytest(tmp_path, {"test_s.py": SUITE}, "-v", "-rA", target=daemon.target)
    assert _counts(r.out) == {"passed": 4, "failed": 2, "skipped": 1, "xfailed": 1}, r.out
    assert re.search(r"test_s.py::test_pass PASSED", r.out)
    assert re.search(r"test_s.py::test_param\[2\] FAILED", r.out)
    for needle in ("captured-stdout-line", "captured-stderr-line", "captured-log-line",
                   "Captured stdout call", "SKIPPED [1] test_s.py", "XFAIL test_s.py::test_xfail"):
        assert needle in r.out, needle


def test_exitfirst_stops_dispatching(tmp_path, daemon):
    many = "import pytest\npytestmark = pytest.mark.small\ndef test_0(): assert 0\n" + "".join(
        f"def test_{i}(): pass\n" for i in range(1, 200))
    r = run_pytest(tmp_path, {"test_x.py": many}, "-x", "-q", "--isod-workers=1", target=daemon.target)
    assert r.rc == 1
    assert "stopping after 1 failures" in r.out
    assert len(r.report["tests"]) < 10, len(r.report["tests"])


def test_maxfail(tmp_path, daemon):
    many = "import pytest\n" + "".join(f"def test_{i}(): assert 0\n" for i in range(50))
    r = run_pytest(tmp_path, {"test_x.py": many}, "--maxfail=3", "-q", "--isod-workers=1", target=daemon.target)
    assert "stopping after 3 failures" in r.out and len(r.report["tests"]) < 10


def test_keyword_selection_and_junitxml_and_durations(tmp_path, daemon):
    r = run_pytest(tmp_path, {"test_s.py": SUITE}, "-q", "-k", "param or slow", "--junitxml=junit.xml",
                   "--durations=2", target=daemon.target)
    assert _counts(r.out) == {"passed": 3, "failed": 1, "deselected": 4}, r.out
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite.get("tests") == "4" and suite.get("failures") == "1"
    assert "slowest 2 durations" in r.out
    assert re.search(r"0\.[2-9]\d*s call\s+test_s.py::test_slow", r.out), r.out


def test_last_failed(tmp_path, daemon):
    (tmp_path / "test_s.py").write_text(SUITE)
    argv = [sys.executable, "-m", "pytest", "-p", "isod_client", f"--isod-target={daemon.target}", "-q"]
    first = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert _counts(first.stdout)["failed"] == 2, first.stdout
    again = subprocess.run(argv + ["--lf"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert _counts(again.stdout) == {"failed": 2}, again.stdout   # as plain pytest prints it
    assert "test_param[2]" in again.stdout and "test_pass" not in again.stdout


def test_zero_setup_embedded_daemon(tmp_path):
    r = run_pytest(tmp_path, {"test_e.py": "import os, pytest\n@pytest.mark.small\ndef test_e():\n"
                                           "    os.system('true')\n"}, "-q")
    assert r.rc == 1
    assert "[TC003] Attempted os.system: sh -c true" in r.out
    assert "isod-embedded-" not in r.out


def test_unreachable_target_is_a_clear_error(tmp_path):
    r = run_pytest(tmp_path, {"test_e.py": "def test_e(): pass\n"}, "-q",
                   target=f"unix://{tmp_path}/nothing-here.sock", timeout=60)
    assert r.rc == 4
    assert "isod: cannot reach the daemon at unix://" in r.out

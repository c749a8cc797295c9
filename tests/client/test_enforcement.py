"""strict / warn / off: what fails, what warns, what is only recorded."""

from __future__ import annotations

import pytest
from harness.daemon import run_pytest

pytestmark = pytest.mark.large

SPAWNER = '''
import os, subprocess, pytest

@pytest.mark.small
def test_spawns():
    out = subprocess.run(["echo", "ran"], capture_output=True).stdout
    assert out == b"ran\\n"      # only true if the spawn was allowed
'''


@pytest.mark.parametrize("mode", ["warn", "off"])
def test_warn_and_off_allow_the_spawn_and_record_it(tmp_path, daemon, mode):
    r = run_pytest(tmp_path, {"test_s.py": SPAWNER}, "-q", f"--test-categories-enforcement={mode}",
                   target=daemon.target)
    assert r.rc == 0, r.out
    t = r.test("test_spawns")
    assert t["outcome"] == "passed"
    assert any(c["argv"] == ["echo", "ran"] and c["decision"] == "allow" for c in t["commands"])
    if mode == "warn":
        assert "IsodViolationWarning" in r.out and "[TC003] Subprocess Spawn Violation" in r.out
        assert "Attempted subprocess.Popen: echo ran" in r.out
    else:
        assert "TC003" not in r.out


def test_ini_enforcement_is_read(tmp_path, daemon):
    r = run_pytest(tmp_path, {"test_s.py": SPAWNER, "pytest.ini": "[pytest]\ntest_categories_enforcement = warn\n"},
                   "-q", target=daemon.target)
    assert r.rc == 0 and "IsodViolationWarning" in r.out, r.out


def test_strict_is_the_default(tmp_path, daemon):
    r = run_pytest(tmp_path, {"test_s.py": SPAWNER}, "-q", target=daemon.target)
    assert r.rc == 1
    assert "[TC003] Attempted subprocess.Popen: echo ran" in r.out


def test_bad_enforcement_is_a_usage_error(tmp_path, daemon):
    r = run_pytest(tmp_path, {"test_s.py": SPAWNER, "pytest.ini": "[pytest]\ntest_categories_enforcement = loud\n"},
                   "-q", target=daemon.target)
    assert r.rc == 4 and "test_categories_enforcement must be one of strict, warn, off" in r.out


STUB = '''
def pytest_addoption(parser):
    # what pytest-test-categories registers (its real plugin also patches subprocess)
    parser.getgroup("test-categories").addoption(
        "--test-categories-enforcement", dest="test_categories_enforcement", default=None,
        choices=("strict", "warn", "off"))
    parser.addini("test_categories_enforcement", "enforcement mode", default=None)
'''


def test_option_shared_with_pytest_test_categories(tmp_path, daemon):
    """With pytest-test-categories installed (here: a stand-in distribution that
    registers the same option through its pytest11 entry point, loaded after
    isod), isod shares its option instead of crashing."""
    site = tmp_path / "site"
    dist = site / "pytest_test_categories-9.9.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pytest-test-categories\nVersion: 9.9\n")
    (dist / "entry_points.txt").write_text("[pytest11]\ntest_categories = ptc_stub\n")
    (site / "ptc_stub.py").write_text(STUB)
    r = run_pytest(tmp_path / "proj", {"test_s.py": SPAWNER}, "-q", "--test-categories-enforcement=warn",
                   target=daemon.target, env={"PYTHONPATH": str(site)})
    assert r.rc == 0, r.out
    assert "IsodViolationWarning" in r.out


OUTPUT = '''
import pytest
@pytest.mark.small
def test_prints():
    print("uncaptured-line-from-worker")
'''


def test_dash_s_output_reaches_the_client(tmp_path, daemon):
    r = run_pytest(tmp_path, {"test_o.py": OUTPUT}, "-q", "-s", target=daemon.target)
    assert r.rc == 0 and "uncaptured-line-from-worker" in r.out

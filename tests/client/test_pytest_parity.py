"""The same project run by plain pytest and by `pytest -p isod_client`: exit
codes, what ran (side-effect files), banners, warnings and paths agree."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from harness.daemon import run_pytest

pytestmark = pytest.mark.large

INI = "[pytest]\nmarkers =\n    small: s\n    medium: m\n"


def plain(tmp_path: Path, files: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


def both(tmp_path: Path, files: dict[str, str], *args: str, isod_args=(), target=None):
    """(plain, isod) runs of the same files in two directories; each has a `ran/` dir for side effects."""
    p_dir, i_dir = tmp_path / "plain", tmp_path / "isod"
    for d in (p_dir, i_dir):
        (d / "ran").mkdir(parents=True)
    files = {"pytest.ini": INI, **files}
    p = plain(p_dir, files, *args)
    i = run_pytest(i_dir, files, *args, *isod_args, target=target)
    return p, i, sorted(os.listdir(p_dir / "ran")), sorted(os.listdir(i_dir / "ran"))


MANY = '''
import os, pytest
pytestmark = pytest.mark.small
@pytest.mark.parametrize("i", range(40))
def test_p(i):
    open(os.path.join("ran", str(i)), "w").close()
    assert i not in (3, 5, 7, 9)
'''


def test_exitfirst_runs_what_plain_pytest_runs(tmp_path, daemon):
    p, i, p_ran, i_ran = both(tmp_path, {"test_m.py": MANY}, "-q", "-x", isod_args=["--isod-workers=1"],
                              target=daemon.target)
    assert (p.returncode, i.rc) == (1, 1), i.out
    assert "stopping after 1 failures" in i.out
    assert p_ran == ["0", "1", "2", "3"]
    assert "1 failed, 3 passed" in p.stdout and "1 failed, 3 passed" in i.out, i.out
    # the worker runs on while the failure travels to the client and the stop
    # back (a few ms): a few trivial tests, not the 36 it had been sent
    assert set(p_ran) <= set(i_ran) and len(i_ran) <= 10, i_ran


def test_maxfail_with_two_workers_stops_both(tmp_path, daemon):
    p, i, p_ran, i_ran = both(tmp_path, {"test_m.py": MANY}, "-q", "--maxfail=2", isod_args=["--isod-workers=2"],
                              target=daemon.target)
    assert (p.returncode, i.rc) == (1, 1)
    assert "2 failed, 4 passed" in p.stdout and "stopping after 2 failures" in i.out, i.out
    # two workers report in the order they finish (as with xdist): the passes
    # before the second failure may differ; what ran beyond that: the other
    # worker's tests until the stop reached it
    assert len(p_ran) == 6 and len(i_ran) < 40, i_ran


def test_stepwise_reports_the_first_failure_in_order(tmp_path, daemon):
    files = {"test_sw.py": '''
        import time, pytest
        pytestmark = pytest.mark.small
        @pytest.mark.parametrize("i", range(10))
        def test_p(i):
            if i == 3:
                time.sleep(0.3)
            assert i not in (3, 8)
        '''}
    runs = []
    for name, extra in (("p", []), ("i", ["-p", "isod_client", f"--isod-target={daemon.target}"])):
        (tmp_path / name).mkdir()
        for fname, text in {"pytest.ini": INI, **files}.items():
            (tmp_path / name / fname).write_text(textwrap.dedent(text))
        runs.append(subprocess.run([sys.executable, "-m", "pytest", *extra, "-q", "--sw"], cwd=tmp_path / name,
                                   capture_output=True, text=True, timeout=120))
    p, i = runs
    out = i.stdout + i.stderr
    assert (p.returncode, i.returncode) == (2, 2), out          # Interrupted, as plain pytest
    assert "Interrupted: Test failed, continuing from this test next run." in out
    assert "FAILED test_sw.py::test_p[3]" in out and "test_p[8]" not in out


@pytest.mark.parametrize("how, rc, text", [
    ("pytest.exit('EXIT-REASON', returncode=7)", 7, "EXIT-REASON"),
    ("raise KeyboardInterrupt", 2, "KeyboardInterrupt"),
])
def test_a_test_that_ends_the_session(tmp_path, daemon, how, rc, text):
    files = {"test_e.py": f'''
        import os, pytest
        pytestmark = pytest.mark.small
        @pytest.mark.parametrize("i", range(6))
        def test_p(i):
            open(os.path.join("ran", str(i)), "w").close()
            if i == 2:
                {how}
        '''}
    p, i, p_ran, i_ran = both(tmp_path, files, "-q", isod_args=["--isod-workers=1"], target=daemon.target)
    assert p.returncode == i.rc == rc, i.out
    assert text in i.out and "crashed" not in i.out
    assert p_ran == ["0", "1", "2"] and i_ran[:3] == ["0", "1", "2"] and len(i_ran) <= 4, i_ran


def test_warnings_from_tests_reach_the_summary(tmp_path, daemon):
    files = {"test_w.py": '''
        import warnings, pytest
        pytestmark = pytest.mark.small
        def test_dep():
            warnings.warn("old() is deprecated", DeprecationWarning)
        def test_user():
            warnings.warn("USER-WARNING-IN-TEST")
        class TwoArgs(UserWarning):
            def __init__(self, a, b):
                super().__init__(f"two-args {a} {b}")
        def test_custom_class():
            warnings.warn(TwoArgs(1, 2))
        '''}
    p, i, _, _ = both(tmp_path, files, "-q", target=daemon.target)
    assert "3 passed, 3 warnings" in p.stdout and "3 passed, 3 warnings" in i.out, i.out
    assert "DeprecationWarning: old() is deprecated" in i.out and "UserWarning: USER-WARNING-IN-TEST" in i.out
    assert "two-args 1 2" in i.out


def test_a_size_marker_added_by_a_conftest_counts(tmp_path, daemon):
    files = {"conftest.py": '''
        import pytest
        def pytest_collection_modifyitems(items):
            for item in items:
                if "spawn" in item.name:
                    item.add_marker(pytest.mark.medium)
        ''', "test_s.py": '''
        import subprocess
        def test_spawn():
            subprocess.run(["true"], check=True)
        '''}
    p, i, _, _ = both(tmp_path, files, "-q", target=daemon.target)
    assert p.returncode == i.rc == 0, i.out


def test_basetemp_is_per_worker(tmp_path, daemon):
    files = {"test_t.py": '''
        import time, pytest
        pytestmark = pytest.mark.small
        @pytest.mark.parametrize("i", range(8))
        def test_t(tmp_path, i):
            (tmp_path / "f").write_text(str(i))
            time.sleep(0.1)
            assert (tmp_path / "f").read_text() == str(i)
        '''}
    bt = tmp_path / "bt"
    i = run_pytest(tmp_path, {"pytest.ini": INI, **files}, "-q", f"--basetemp={bt}", "--isod-workers=2",
                   target=daemon.target)
    assert i.rc == 0, i.out
    assert sorted(os.listdir(bt)) in (["gw0", "gw1"], ["gw0"]), os.listdir(bt)


def test_client_only_options_in_addopts_stay_in_the_client(tmp_path, daemon):
    files = {"pytest.ini": INI + "addopts = --pdb --setup-show -p cacheprovider --lf\n", "test_a.py": '''
        import pytest
        pytestmark = pytest.mark.small
        @pytest.fixture
        def fx():
            return 1
        def test_ok(fx):
            pass
        def test_fails(fx):
            assert 0
        '''}
    i = run_pytest(tmp_path, files, "-q", target=daemon.target)
    # --pdb is refused with a reason, not passed to a worker that would crash on it
    assert i.rc == 4 and "--pdb and --trace cannot reach tests" in i.out, i.out
    files["pytest.ini"] = INI + "addopts = --setup-show -p cacheprovider --lf -x\n"
    i = run_pytest(tmp_path, files, "-q", target=daemon.target)
    assert "1 failed, 1 passed" in i.out and "crashed" not in i.out and "INTERNALERROR" not in i.out, i.out


def test_a_spawn_after_the_last_test_is_shown(tmp_path, daemon):
    """After collection a small worker stays under the small rule, at session
    teardown too: a small test's atexit spawn is denied (it cannot run under
    another test's rule) and listed; a medium test's runs and is listed."""
    files = {"test_a.py": '''
        import atexit, subprocess, pytest
        @pytest.mark.small
        def test_registers_a_spawn_for_later():
            atexit.register(lambda: subprocess.run(["true", "LATER"]))
        @pytest.mark.medium
        def test_medium_registers_one_too():
            # a program that lives a while: one that exits within microseconds may
            # be gone before its command is read from /proc (docs/kernel-notes.md)
            atexit.register(lambda: subprocess.run(["sleep", "0.2"]))
        '''}
    i = run_pytest(tmp_path, {"pytest.ini": INI, **files}, "-q", "--isod-workers=1", target=daemon.target)
    assert "isod: processes created while no test ran" in i.out, i.out
    assert "after its last test (test_a.py::test_registers_a_spawn_for_later): vfork by pid" in i.out, i.out
    assert "[deny]" in i.out
    assert "after its last test (test_a.py::test_medium_registers_one_too): execve: sleep 0.2 [allow]" in i.out
    commands = [c for o in i.report["outside_tests"] for c in o["commands"]]
    assert any(c["argv"] == ["sleep", "0.2"] and c["phase"] == "after the last test" for c in commands)
    assert any(c["decision"] == "deny" and c["phase"] == "after the last test" for c in commands)
    assert any(c["phase"] == "collection" for c in commands)   # the workers' own launch


def test_size_markers_pass_strict_markers_and_warnings_as_errors(tmp_path, daemon):
    files = {"pytest.ini": "[pytest]\n", "test_m.py": '''
        import pytest
        @pytest.mark.small
        def test_s():
            pass
        @pytest.mark.medium(timeout=5)
        def test_m():
            pass
        '''}
    i = run_pytest(tmp_path, files, "-q", "--strict-markers", "-W", "error", target=daemon.target)
    assert i.rc == 0 and "2 passed" in i.out, i.out


SUBTESTS = '''
import time, pytest
pytestmark = pytest.mark.small
def test_a_subtest_fails(subtests):
    for i in range(3):
        with subtests.test(i=i):
            assert i != 1
def test_passes():
    pass
'''


def test_a_failed_subtest_fails_its_test(tmp_path, daemon):
    p, i, _, _ = both(tmp_path, {"test_s.py": SUBTESTS}, "-q", target=daemon.target)
    summary = p.stdout.strip().splitlines()[-1].split(" in ")[0]
    assert summary in i.out, (p.stdout, i.out)          # e.g. "2 failed, 1 passed, 2 subtests passed"
    assert "FAILED test_s.py::test_a_subtest_fails - contains 1 failed subtest" in i.out, i.out


def test_a_time_limit_after_subtests_is_a_failure_in_call(tmp_path, daemon):
    files = {"pytest.ini": INI, "test_t.py": '''
        import time, pytest
        @pytest.mark.small(timeout=0.5)
        def test_slow_subtests(subtests):
            for i in range(20):
                with subtests.test(i=i):
                    time.sleep(0.1)
        '''}
    i = run_pytest(tmp_path, files, "-q", target=daemon.target)
    assert "FAILED test_t.py::test_slow_subtests - [TC006] Timeout" in i.out, i.out
    assert "ERROR at teardown" not in i.out


def test_breakpoint_in_a_test_fails_it_with_a_reason(tmp_path, daemon):
    files = {"pytest.ini": INI, "test_b.py": '''
        import pytest
        @pytest.mark.small
        def test_bp():
            breakpoint()
        '''}
    i = run_pytest(tmp_path, files, "-q", target=daemon.target, timeout=60)
    assert i.rc == 1 and "breakpoint(): this test runs in an isod worker, which has no terminal" in i.out, i.out

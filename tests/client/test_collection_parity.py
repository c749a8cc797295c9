"""Collection parity: the same project run by plain pytest and by `pytest -p
isod_client` agrees on what was collected, deselected, skipped, reported and
run. Written before the client stops collecting locally (and reports the
collection made by the daemon's worker instead): these must hold either way.

Each test runs the same files twice, in two directories (plain/ and isod/),
and compares exit codes and normalized output lines: durations, the header
(platform, rootdir, plugins) and isod's own "isod:" lines are left out, and the
project directory is written as ROOT."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness.daemon import run_pytest

pytestmark = pytest.mark.large

INI = "[pytest]\nmarkers =\n    small: s\n    medium: m\n    slow: a marker to select with -m\n"


# Third-party plugins installed here (hypothesis, cov, xdist) have nothing to
# do with collection and cost ~0.6 s in every pytest process (client and
# workers): both sides run without them.
ENV = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}


@dataclass
class Run:
    rc: int
    out: str
    root: Path
    ran: list[str]          # ran/ right after this run (tests write their side effects there)

    @property
    def lines(self) -> list[str]:
        return normalize(self.out, self.root)


_DURATION = re.compile(r" in \d+(\.\d+)?s( \([0-9:]+\))?")
_ADDRESS = re.compile(r" at 0x[0-9a-f]+")
_STEPWISE_AGE = re.compile(r"\(cache from [0-9:]+ ago, ")
_HEADER = ("platform ", "rootdir:", "configfile:", "plugins:", "cachedir:")


def normalize(out: str, root: Path) -> list[str]:
    """The output's lines as comparable text: no durations, no header, no
    isod lines, no ==== padding (its width depends on the duration's)."""
    lines = []
    for line in out.replace(str(root), "ROOT").splitlines():
        line = _ADDRESS.sub(" at 0x?", _DURATION.sub("", line)).rstrip()
        line = _STEPWISE_AGE.sub("(cache from ? ago, ", line)
        line = line.removeprefix("collecting ... ")      # -v: the progress line, then the count
        if line.startswith(_HEADER) or line.startswith("isod:"):
            continue
        if set(line) - {"="} and line.startswith("=") and line.endswith("="):
            line = "== " + line.strip("= ") + " =="
        lines.append(line)
    while lines and not lines[-1]:
        lines.pop()
    return lines


def summary(run: Run) -> str:
    """The last line: e.g. "== 2 passed, 3 deselected ==" or, with -q, "2 passed, 3 deselected"."""
    return run.lines[-1]


def with_prefix(run: Run, prefix: str) -> list[str]:
    return [line for line in run.lines if line.startswith(prefix)]


def write(d: Path, files: dict[str, str]) -> None:
    (d / "ran").mkdir(parents=True, exist_ok=True)
    for name, text in {"pytest.ini": INI, **files}.items():
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text).lstrip("\n"))


def _ran(d: Path) -> list[str]:
    return sorted(os.listdir(d / "ran"))


def plain(d: Path, files: dict[str, str], *args: str, cache: bool = False) -> Run:
    write(d, files)
    argv = [sys.executable, "-m", "pytest", *([] if cache else ["-p", "no:cacheprovider"]), *args]
    proc = subprocess.run(argv, cwd=d, capture_output=True, text=True, timeout=120, env={**os.environ, **ENV})
    return Run(proc.returncode, proc.stdout + proc.stderr, d, _ran(d))


def isod(d: Path, files: dict[str, str], *args: str, target: str | None, cache: bool = False) -> Run:
    write(d, files)
    if not cache:
        o = run_pytest(d, {}, *args, target=target, env=ENV)
        return Run(o.rc, o.out, d, _ran(d))
    # run_pytest turns the cache off: the same run with the cache on
    argv = [sys.executable, "-m", "pytest", "-p", "isod_client", *args]
    if target:
        argv.append(f"--isod-target={target}")
    env = {**{k: v for k, v in os.environ.items() if k != "ISOD_TARGET"}, **ENV}
    proc = subprocess.run(argv, cwd=d, capture_output=True, text=True, timeout=120, env=env)
    return Run(proc.returncode, proc.stdout + proc.stderr, d, _ran(d))


ONE_WORKER = ("--isod-workers=1",)


def both(tmp_path: Path, files: dict[str, str], *args: str, isod_args=ONE_WORKER, target=None) -> tuple[Run, Run]:
    """(plain, isod): the same files and arguments in tmp_path/plain and tmp_path/isod, run side by side.
    One worker by default: with more, reports arrive in the order the tests
    finish (as under pytest-xdist), and the progress lines differ."""
    with ThreadPoolExecutor(2) as pool:
        p = pool.submit(plain, tmp_path / "plain", files, *args)
        i = pool.submit(isod, tmp_path / "isod", files, *args, *isod_args, target=target)
        return p.result(), i.result()


def sequence(tmp_path: Path, files: dict[str, str], steps, target, isod_args=ONE_WORKER) -> tuple[list[Run], list[Run]]:
    """Consecutive runs with the cache on in one directory, plain and isod
    side by side. steps: (args, before) pairs; before(dir), if given, runs
    just before its run; ran/ is emptied before each run."""
    def side(name: str) -> list[Run]:
        d, runs = tmp_path / name, []
        for args, before in steps:
            write(d, files)
            for f in os.listdir(d / "ran"):
                os.unlink(d / "ran" / f)
            if before:
                before(d)
            if name == "plain":
                runs.append(plain(d, files, *args, cache=True))
            else:
                runs.append(isod(d, files, *args, *isod_args, target=target, cache=True))
        return runs

    with ThreadPoolExecutor(2) as pool:
        p, i = pool.submit(side, "plain"), pool.submit(side, "isod")
        return p.result(), i.result()


def show(p: Run, i: Run) -> str:
    return "\n--- plain ---\n" + "\n".join(p.lines) + "\n--- isod ---\n" + "\n".join(i.lines)


# --- 1, 2: deselection by -k and -m -------------------------------------------

FIVE = {"test_k.py": '''
    import pytest
    def test_apple(): pass
    def test_apricot(): pass
    def test_banana(): pass
    @pytest.mark.slow
    def test_cherry(): pass
    @pytest.mark.slow
    def test_date(): pass
    '''}


@pytest.mark.parametrize("select, verbosity", [
    (("-k", "apple or apricot"), ()),
    (("-k", "apple or apricot"), ("-q",)),
    (("-k", "apple or apricot"), ("-v",)),
    (("-m", "slow"), ()),
    (("-m", "not slow", "-k", "not banana"), ("-q",)),
], ids=["k", "k-q", "k-v", "m", "m-and-k-q"])
def test_deselection_counts(tmp_path, daemon, select, verbosity):
    args = [*select, *verbosity]
    p, i = both(tmp_path, FIVE, *args, target=daemon.target)
    assert p.rc == i.rc == 0, show(p, i)
    assert "2 passed, 3 deselected" in summary(p) and summary(i) == summary(p), show(p, i)
    collected = with_prefix(p, "collected ")
    if "-q" in args:
        assert collected == []
    else:
        assert collected == ["collected 5 items / 3 deselected / 2 selected"], show(p, i)
    assert with_prefix(i, "collected ") == collected, show(p, i)
    assert i.lines == p.lines, show(p, i)


# --- 3: collection errors ----------------------------------------------------

GOOD = {"test_good.py": '''
    def test_one(): pass
    def test_two(): pass
    def test_three(): pass
    '''}
IMPORT_ERROR = {"test_bad.py": '''
    import no_such_module_for_isod_parity
    def test_never(): pass
    '''}
SYNTAX_ERROR = {"test_syntax.py": '''
    def test_broken(:
        pass
    '''}


@pytest.mark.parametrize("bad, errors", [
    (IMPORT_ERROR, "1 error"), ({**IMPORT_ERROR, **SYNTAX_ERROR}, "2 errors"),
], ids=["import", "import-and-syntax"])
def test_collection_errors_interrupt(tmp_path, daemon, bad, errors):
    p, i = both(tmp_path, {**GOOD, **bad}, target=daemon.target)
    assert p.rc == i.rc == 2, show(p, i)
    for name in bad:
        assert any(f"ERROR collecting {name}" in line for line in p.lines), show(p, i)
        assert [x for x in i.lines if f"ERROR collecting {name}" in x] == \
               [x for x in p.lines if f"ERROR collecting {name}" in x], show(p, i)
    interrupted = f"Interrupted: {errors} during collection"
    assert [x for x in p.lines if interrupted in x] == [x for x in i.lines if interrupted in x] != [], show(p, i)
    assert with_prefix(i, "collected ") == with_prefix(p, "collected ") == \
           [f"collected 3 items / {errors}"], show(p, i)
    assert summary(i) == summary(p) == f"== {errors} ==", show(p, i)
    assert i.lines == p.lines, show(p, i)


def test_continue_on_collection_errors(tmp_path, daemon):
    p, i = both(tmp_path, {**GOOD, **IMPORT_ERROR}, "--continue-on-collection-errors", target=daemon.target)
    assert p.rc == i.rc == 1, show(p, i)
    assert summary(i) == summary(p) == "== 3 passed, 1 error ==", show(p, i)
    assert with_prefix(p, "ERROR ") == ["ERROR test_bad.py"], show(p, i)   # short summary
    assert with_prefix(i, "ERROR ") == with_prefix(p, "ERROR "), show(p, i)
    assert any("ERROR collecting test_bad.py" in x for x in i.lines), show(p, i)
    assert i.lines == p.lines, show(p, i)


# --- 4: a module skipped at import -------------------------------------------

SKIPPED_MODULE = {"test_skipmod.py": '''
    import pytest
    pytest.skip("no frobnicator here", allow_module_level=True)
    def test_never(): pass
    ''', **GOOD}


@pytest.mark.parametrize("args", [("-rs",), ("-q", "-rs")], ids=["rs", "q-rs"])
def test_module_level_skip(tmp_path, daemon, args):
    p, i = both(tmp_path, SKIPPED_MODULE, *args, target=daemon.target)
    assert p.rc == i.rc == 0, show(p, i)
    assert "3 passed, 1 skipped" in summary(p) and summary(i) == summary(p), show(p, i)
    reason = with_prefix(p, "SKIPPED ")
    assert reason == ["SKIPPED [1] test_skipmod.py:2: no frobnicator here"], show(p, i)
    assert with_prefix(i, "SKIPPED ") == reason, show(p, i)
    assert i.lines == p.lines, show(p, i)


# --- 5: a warning at import --------------------------------------------------

def test_collect_time_warning_in_the_summary(tmp_path, daemon):
    files = {"test_w.py": '''
        import warnings
        warnings.warn("collect-time warning", UserWarning)
        def test_a(): pass
        def test_b(): pass
        '''}
    p, i = both(tmp_path, files, target=daemon.target)
    assert p.rc == i.rc == 0, show(p, i)
    assert "== warnings summary ==" in p.lines and "== warnings summary ==" in i.lines, show(p, i)
    assert "  ROOT/test_w.py:2: UserWarning: collect-time warning" in p.lines, show(p, i)
    assert "  ROOT/test_w.py:2: UserWarning: collect-time warning" in i.lines, show(p, i)
    assert summary(p) == "== 2 passed, 1 warning ==" == summary(i), show(p, i)
    assert i.lines == p.lines, show(p, i)


# --- 6, 7: the cache: --lf and --sw over two runs ------------------------------

LF = {"test_lf.py": '''
    import os
    def test_a(): open(os.path.join("ran", "a"), "w").close()
    def test_b():
        open(os.path.join("ran", "b"), "w").close()
        assert os.path.exists("fixed")
    def test_c(): open(os.path.join("ran", "c"), "w").close()
    ''', "test_other.py": '''
    def test_d(): pass
    '''}


def fix(d: Path) -> None:
    (d / "fixed").touch()


def test_last_failed_reruns_the_failure(tmp_path, daemon):
    (p1, p2), (i1, i2) = sequence(tmp_path, LF, [((), None), (("--lf",), None)], daemon.target)
    assert p1.rc == i1.rc == 1, show(p1, i1)
    assert summary(p1) == summary(i1) == "== 1 failed, 3 passed ==", show(p1, i1)
    assert p2.rc == i2.rc == 1, show(p2, i2)
    rerun = with_prefix(p2, "run-last-failure:")
    assert rerun == ["run-last-failure: rerun previous 1 failure (skipped 1 file)"], show(p2, i2)
    assert with_prefix(i2, "run-last-failure:") == rerun, show(p2, i2)
    assert with_prefix(p2, "collected ") == ["collected 1 item"], show(p2, i2)
    assert with_prefix(i2, "collected ") == with_prefix(p2, "collected "), show(p2, i2)
    assert summary(i2) == summary(p2) == "== 1 failed ==", show(p2, i2)
    assert p2.ran == i2.ran == ["b"], show(p2, i2)
    assert i2.lines == p2.lines, show(p2, i2)


def test_last_failed_when_nothing_failed(tmp_path, daemon):
    """--lf after a run that passed (the cache has no failure): every test runs, as plain pytest says."""
    (p1, p2), (i1, i2) = sequence(tmp_path, LF, [((), fix), (("--lf",), fix)], daemon.target)
    assert p1.rc == i1.rc == 0, show(p1, i1)
    assert p2.rc == i2.rc == 0, show(p2, i2)
    none = ["run-last-failure: no previously failed tests, not deselecting items."]
    assert with_prefix(p2, "run-last-failure:") == none, show(p2, i2)
    assert with_prefix(i2, "run-last-failure:") == none, show(p2, i2)
    assert summary(i2) == summary(p2) == "== 4 passed ==", show(p2, i2)
    assert p2.ran == i2.ran == ["a", "b", "c"], show(p2, i2)
    assert i2.lines == p2.lines, show(p2, i2)


SW = {"test_sw.py": '''
    import os, pytest
    @pytest.mark.parametrize("i", range(6))
    def test_p(i):
        open(os.path.join("ran", str(i)), "w").close()
        assert i != 3 or os.path.exists("fixed")
    '''}


def test_stepwise_skips_what_passed(tmp_path, daemon):
    (p1, p2), (i1, i2) = sequence(tmp_path, SW, [(("--sw",), None), (("--sw",), fix)], daemon.target)
    assert p1.rc == i1.rc == 2, show(p1, i1)      # Interrupted: Test failed, continuing from this test next run.
    assert summary(i1) == summary(p1) == "== 1 failed, 3 passed ==", show(p1, i1)
    # the worker runs on while the failure travels to the client and the stop
    # back (a few ms, as in test_pytest_parity's -x test): what plain ran came first
    assert p1.ran == ["0", "1", "2", "3"] and set(p1.ran) <= set(i1.ran), (p1.ran, i1.ran)
    assert i1.lines == p1.lines, show(p1, i1)
    assert p2.rc == i2.rc == 0, show(p2, i2)
    step = with_prefix(p2, "stepwise:")
    assert step == ["stepwise: skipping 3 already passed items (cache from ? ago, use --sw-reset to discard)."], \
        show(p2, i2)
    assert with_prefix(i2, "stepwise:") == step, show(p2, i2)
    assert with_prefix(i2, "collected ") == with_prefix(p2, "collected ") != [], show(p2, i2)
    assert summary(i2) == summary(p2) == "== 3 passed, 3 deselected ==", show(p2, i2)
    assert p2.ran == i2.ran == ["3", "4", "5"], show(p2, i2)
    assert i2.lines == p2.lines, show(p2, i2)


def test_stepwise_failing_again(tmp_path, daemon):
    """--sw twice, the failure not fixed: the second run starts at it and stops there again."""
    (_, p2), (_, i2) = sequence(tmp_path, SW, [(("--sw",), None), (("--sw",), None)], daemon.target)
    assert p2.rc == i2.rc == 2, show(p2, i2)
    step = with_prefix(p2, "stepwise:")
    assert step == ["stepwise: skipping 3 already passed items (cache from ? ago, use --sw-reset to discard)."], \
        show(p2, i2)
    assert with_prefix(i2, "stepwise:") == step, show(p2, i2)
    assert summary(i2) == summary(p2) == "== 1 failed, 3 deselected ==", show(p2, i2)
    assert p2.ran == ["3"] and i2.ran[:1] == ["3"], (p2.ran, i2.ran)
    assert i2.lines == p2.lines, show(p2, i2)


# --- 8: reporting hooks in a conftest of a subdirectory ------------------------

SUB_CONFTEST = {"sub/conftest.py": '''
    import os
    def pytest_report_teststatus(report, config):
        if report.when == "call" and report.passed and "sub/" in report.nodeid:
            return "passed", "S", "SUB-PASSED"
    def pytest_terminal_summary(terminalreporter):
        terminalreporter.write_line("SUB-CONFTEST-SUMMARY-LINE")
    def pytest_runtest_logreport(report):
        with open(os.path.join("ran", "log"), "a") as f:
            f.write(f"{os.getpid()} {report.nodeid} {report.when} {report.outcome}\\n")
    ''', "sub/test_in_sub.py": '''
    def test_x(): pass
    def test_y(): pass
    ''', "test_top.py": '''
    def test_top(): pass
    '''}


def _log_by_pid(run: Run) -> dict[str, list[str]]:
    by: dict[str, list[str]] = {}
    for line in (run.root / "ran" / "log").read_text().splitlines():
        pid, rest = line.split(" ", 1)
        by.setdefault(pid, []).append(rest)
    return by


@pytest.mark.parametrize("args", [(), ("-v",)], ids=["default", "v"])
def test_subdirectory_conftest_reporting_hooks(tmp_path, daemon, args):
    p, i = both(tmp_path, SUB_CONFTEST, *args, target=daemon.target)
    assert p.rc == i.rc == 0, show(p, i)
    assert "SUB-CONFTEST-SUMMARY-LINE" in p.lines and "SUB-CONFTEST-SUMMARY-LINE" in i.lines, show(p, i)
    if "-v" in args:
        shown = [x for x in p.lines if "SUB-PASSED" in x]
        assert len(shown) == 2, show(p, i)
        assert [x for x in i.lines if "SUB-PASSED" in x] == shown, show(p, i)
    else:
        assert "sub/test_in_sub.py SS" in " ".join(p.lines), show(p, i)
    assert summary(i) == summary(p), show(p, i)
    assert i.lines == p.lines, show(p, i)
    # plain pytest: one process saw the 6 reports of the tests in sub/
    # (setup/call/teardown; the hook is sub/'s, so not test_top's); under isod
    # the client's pytest must see them too, in the same order (a worker
    # running the hook as well, as under pytest-xdist, is allowed)
    (plain_log,) = _log_by_pid(p).values()
    assert len(plain_log) == 6 and all(x.startswith("sub/test_in_sub.py::") for x in plain_log), plain_log
    assert plain_log in list(_log_by_pid(i).values()), (plain_log, _log_by_pid(i))


# --- 9: a conftest deselects and reorders ------------------------------------

REORDER = {"conftest.py": '''
    def pytest_collection_modifyitems(config, items):
        dropped = [it for it in items if "drop" in it.name]
        kept = [it for it in items if "drop" not in it.name]
        config.hook.pytest_deselected(items=dropped)
        items[:] = list(reversed(kept))
    ''', "test_order.py": '''
    import os
    def mark(name):
        n = len(os.listdir("ran"))
        open(os.path.join("ran", f"{n:02d}-{name}"), "w").close()
    def test_1(): mark("1")
    def test_drop_a(): mark("drop_a")
    def test_2(): mark("2")
    def test_3(): mark("3")
    def test_drop_b(): mark("drop_b")
    def test_4(): mark("4")
    '''}


def test_conftest_deselects_and_reorders(tmp_path, daemon):
    p, i = both(tmp_path, REORDER, "-v", target=daemon.target)
    assert p.rc == i.rc == 0, show(p, i)
    assert p.ran == ["00-4", "01-3", "02-2", "03-1"], p.ran
    assert i.ran == p.ran, show(p, i)
    assert with_prefix(p, "collected ") == ["collected 6 items / 2 deselected / 4 selected"], show(p, i)
    assert with_prefix(i, "collected ") == with_prefix(p, "collected "), show(p, i)
    assert summary(i) == summary(p) == "== 4 passed, 2 deselected ==", show(p, i)
    assert i.lines == p.lines, show(p, i)


# --- 10: nothing to run --------------------------------------------------------

@pytest.mark.parametrize("files, args, text", [
    ({}, (), "== no tests ran =="),
    ({"test_empty.py": "X = 1\n"}, (), "== no tests ran =="),
    (FIVE, ("-k", "nothing_matches_this"), "== 5 deselected =="),
], ids=["no-files", "empty-module", "all-deselected"])
def test_no_tests(tmp_path, daemon, files, args, text):
    p, i = both(tmp_path, files, *args, target=daemon.target)
    assert p.rc == i.rc == 5, show(p, i)
    assert summary(p) == summary(i) == text, show(p, i)
    assert i.lines == p.lines, show(p, i)


# --- 11: parameter ids that differ from one process to the next --------------

STAMPED = '''
import datetime, time, pytest
@pytest.mark.parametrize("stamp", [datetime.datetime.now().isoformat(), time.time_ns()])
def test_stamped(stamp):
    assert stamp
'''


def test_parameter_ids_made_at_collection(tmp_path, daemon):
    files = {"test_stamp_a.py": STAMPED, "test_stamp_b.py": STAMPED}
    p, i = both(tmp_path, files, "-q", isod_args=["--isod-workers=2"], target=daemon.target)
    assert p.rc == 0 and summary(p) == "4 passed", show(p, i)
    assert i.rc == 0 and summary(i) == summary(p), show(p, i)


# --- 12: --collect-only ------------------------------------------------------

@pytest.mark.parametrize("args, text", [
    (("--collect-only", "-q"), "8 tests collected"),
    (("--collect-only", "-q", "-k", "apple or slow"), "3/8 tests collected (5 deselected)"),
], ids=["all", "k"])
def test_collect_only(tmp_path, daemon, args, text):
    p, i = both(tmp_path, {**FIVE, **SUB_CONFTEST}, *args, target=daemon.target)
    assert p.rc == i.rc == 0, show(p, i)
    assert "test_k.py::test_apple" in p.lines and "SUB-CONFTEST-SUMMARY-LINE" in p.lines, show(p, i)
    assert summary(p) == summary(i) == text, show(p, i)
    assert i.lines == p.lines, show(p, i)

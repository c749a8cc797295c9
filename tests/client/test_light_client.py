"""The client collects nothing: what the session's collecting process raised
while collecting, and how reports travel back, are plain pytest's."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from harness.daemon import run_pytest

pytestmark = pytest.mark.large

INI = "[pytest]\nmarkers =\n    small: s\n    medium: m\n"


def plain(tmp_path: Path, files: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    d = tmp_path / "plain"
    d.mkdir()
    for name, text in {"pytest.ini": INI, **files}.items():
        (d / name).write_text(textwrap.dedent(text))
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=d,
                          capture_output=True, text=True, timeout=120)


def isod(tmp_path: Path, files: dict[str, str], *args: str, target=None):
    d = tmp_path / "isod"
    d.mkdir()
    return run_pytest(d, {"pytest.ini": INI, **files}, *args, target=target)


def test_a_path_that_does_not_exist_is_pytests_usage_error(tmp_path, daemon):
    files = {"test_a.py": "def test_a(): pass\n"}
    p = plain(tmp_path, files, "-q", "nothere.py")
    i = isod(tmp_path, files, "-q", "nothere.py", target=daemon.target)
    assert p.returncode == i.rc == 4, i.out
    assert "ERROR: file or directory not found: nothere.py" in p.stderr
    assert "ERROR: file or directory not found: nothere.py" in i.out


EXIT_WHILE_COLLECTING = '''
import pytest
def pytest_collection_modifyitems(items):
    pytest.exit("no tests today", returncode=3)
'''


def test_pytest_exit_while_collecting_ends_the_run_as_in_plain_pytest(tmp_path, daemon):
    files = {"conftest.py": EXIT_WHILE_COLLECTING, "test_a.py": "def test_a(): pass\n"}
    p = plain(tmp_path, files, "-q")
    i = isod(tmp_path, files, "-q", target=daemon.target)
    assert p.returncode == i.rc == 3, i.out
    assert "Exit: no tests today" in p.stdout and "Exit: no tests today" in i.out, i.out


def test_two_size_markers_on_a_test_is_a_usage_error(tmp_path, daemon):
    files = {"test_a.py": "import pytest\n@pytest.mark.small\n@pytest.mark.medium\ndef test_a(): pass\n"}
    i = isod(tmp_path, files, "-q", target=daemon.target)
    assert i.rc == 4, i.out
    assert "test_a.py::test_a: multiple size markers at one level: small, medium" in i.out


REPORT_PLUGIN = '''
WHERE = {}
def pytest_configure(config):
    WHERE["worker"] = hasattr(config, "workerinput")
def pytest_report_to_serializable(report):
    if report.when == "call":
        report.stamp = f"from-{report.nodeid}"
def pytest_runtest_logreport(report):
    if report.when == "call" and not WHERE["worker"]:
        with open("seen.txt", "a") as f:
            f.write(f"{report.nodeid} {getattr(report, 'stamp', '-')} {report.user_properties}\\n")
'''

REPORTED = '''
import pytest
pytestmark = pytest.mark.small
def test_plain(): print("out")
def test_property(record_property): record_property("answer", 42)
'''


@pytest.mark.parametrize("where", ["", "sub/"], ids=["rootdir-conftest", "subdirectory-conftest"])
def test_reports_keep_what_plugins_and_tests_put_in_them(tmp_path, daemon, where):
    """A plugin that serializes reports its own way and a test's user
    properties reach the client's hooks and --junitxml (such reports travel as
    pytest serializes them; plain ones as fields). A subdirectory's conftest
    is loaded only while collecting: it counts as well."""
    files = {f"{where}conftest.py": REPORT_PLUGIN, f"{where}test_r.py": REPORTED}
    i = isod(tmp_path, files, "-q", "-rP", "--junitxml=junit.xml", target=daemon.target)
    assert i.rc == 0, i.out
    seen = (tmp_path / "isod" / "seen.txt").read_text().splitlines()
    assert seen == [f"{where}test_r.py::test_plain from-{where}test_r.py::test_plain []",
                    f"{where}test_r.py::test_property from-{where}test_r.py::test_property [('answer', 42)]"], seen
    junit = (tmp_path / "isod" / "junit.xml").read_text()
    assert re.search(r'<property name="answer" value="42"\s*/>', junit), junit
    assert "Captured stdout call" in i.out and "\nout\n" in i.out, i.out


def test_plain_reports_read_as_pytest_made_them(tmp_path, daemon):
    """Without a report plugin: outcomes, durations, captured output and
    keywords as plain pytest shows them (-rA, --durations, -k)."""
    files = {"test_p.py": '''
        import sys, time, pytest
        pytestmark = pytest.mark.small
        def test_out():
            print("to stdout"); print("to stderr", file=sys.stderr)
        def test_slow(): time.sleep(0.05)
        @pytest.mark.skip(reason="not today")
        def test_skipped(): pass
        '''}
    p = plain(tmp_path, files, "-rA", "--durations=1", "--durations-min=0.04")
    i = isod(tmp_path, files, "-rA", "--durations=1", "--durations-min=0.04", target=daemon.target)
    assert p.returncode == i.rc == 0, i.out
    for needle in ("to stdout", "to stderr", "Captured stdout call", "Captured stderr call",
                   "PASSED test_p.py::test_out", "SKIPPED [1] test_p.py:7: not today", "call     test_p.py::test_slow",
                   "2 passed, 1 skipped"):
        assert needle in p.stdout and needle in i.out, needle


DOCTEST_MODULE = '''
def add(a, b):
    """
    >>> add(2, 2)
    5
    """
    return a + b
'''

CUSTOM_ITEMS = '''
import pytest
class CaseItem(pytest.Item):
    def runtest(self):
        if "bad" in self.name:
            raise ValueError("custom failure")
    def repr_failure(self, excinfo):
        return f"custom repr: {excinfo.value}"
    def reportinfo(self):
        return self.path, 0, f"case: {self.name}"
class CaseFile(pytest.File):
    def collect(self):
        for name in self.path.read_text().split():
            yield CaseItem.from_parent(self, name=name)
def pytest_collect_file(parent, file_path):
    if file_path.suffix == ".cases":
        return CaseFile.from_parent(parent, path=file_path)
'''


def test_doctests_and_custom_items_read_as_in_plain_pytest(tmp_path, daemon):
    """A doctest's failure text is no traceback: no message in the short
    summary, as in plain pytest; a custom item's string repr keeps its own."""
    files = {"mod.py": DOCTEST_MODULE, "conftest.py": CUSTOM_ITEMS, "test_x.cases": "good\nbad\n"}
    args = ("--doctest-modules", "-rA")
    p = plain(tmp_path, files, *args)
    i = isod(tmp_path, files, *args, "--isod-default-size=medium", target=daemon.target)
    assert p.returncode == i.rc == 1, i.out
    for needle in ("FAILED mod.py::mod.add\n", "FAILED test_x.cases::bad - custom repr: custom failure",
                   "PASSED test_x.cases::good", "Expected:\n    5\nGot:\n    4", "1 passed"):
        assert needle in p.stdout and needle in i.out, needle


@pytest.mark.parametrize("option", ["--fixtures", "--fixtures-per-test", "--collect-only"])
def test_options_that_run_no_test_are_plain_pytests(tmp_path, option):
    """pytest collects or prints there and runs nothing: no daemon starts,
    and the output is plain pytest's."""
    files = {"conftest.py": "import pytest\n@pytest.fixture\ndef answer():\n    '''The answer.'''\n    return 42\n",
             "test_f.py": "def test_f(answer): assert answer == 42\n"}
    p = plain(tmp_path, files, "-q", option)
    i = isod(tmp_path, files, "-q", option)
    assert p.returncode == i.rc == 0, i.out
    shown = {"--fixtures": "answer", "--fixtures-per-test": "fixtures used by test_f",
             "--collect-only": "test_f.py::test_f"}[option]
    assert shown in p.stdout and shown in i.out, i.out
    assert "isod:" not in i.out, i.out


MARK_READER = '''
def pytest_collection_finish(session):
    if hasattr(session.config, "workerinput"):
        return       # the collecting process: the file is the client's
    with open("marks.txt", "w") as f:
        for item in session.items:
            tag = item.get_closest_marker("tag")
            f.write(f"{item.nodeid} {tag.args if tag else None} {tag.kwargs if tag else None} "
                    f"{[m.name for m in item.iter_markers('tag')]} {'slow' in item.keywords}\\n")
'''

MARKED = '''
import pytest
pytestmark = pytest.mark.tag("module")

@pytest.mark.tag("own", level=2)
@pytest.mark.slow
def test_own(): pass

@pytest.mark.parametrize("v", range(3))
def test_param(v): pass

class TestC:
    pytestmark = pytest.mark.tag(object())      # not JSON: the marker, without its arguments
    def test_m(self): pass
'''


def test_client_side_hooks_see_each_tests_markers(tmp_path, daemon):
    """A conftest's pytest_collection_finish that reads markers (packaging's
    does) runs in the client on what was collected elsewhere."""
    files = {"conftest.py": MARK_READER, "test_m.py": MARKED,
             "pytest.ini": INI + "    tag: t\n    slow: s\n"}
    plain(tmp_path, files, "-q")
    i = isod(tmp_path, files, "-q", "--isod-default-size=small", target=daemon.target)
    assert i.rc == 0, i.out
    got = (tmp_path / "isod" / "marks.txt").read_text().splitlines()
    want = (tmp_path / "plain" / "marks.txt").read_text().splitlines()
    assert got[:4] == want[:4], (got, want)        # JSON arguments as given
    assert got[4].startswith("test_m.py::TestC::test_m () {} ['tag', 'tag'] False"), got

"""Plain pytest's outcomes, end to end: one size and one outcome per test,
TC003 counts commands, workers collect what the client collected, and
nothing a worker sends is imported in the client."""

from __future__ import annotations

import os
import re

import pytest
from harness.daemon import run_pytest

pytestmark = pytest.mark.medium

INI = "[pytest]\nmarkers =\n    small: s\n    medium: m\n"

TESTS = '''
import os, subprocess, warnings, pytest

PLANTED = """
import os, sys
if "isod.worker.plugin" not in sys.modules:      # imported by the client: it ran a test's code unsandboxed
    open(os.path.join("ran", "planted-imported-in-client"), "w").close()
class W(UserWarning):
    pass
"""

@pytest.fixture
def spawns():
    subprocess.run(["true"])

@pytest.mark.small
def test_spawn_in_setup(spawns):
    pass

@pytest.mark.small
def test_popen():
    try:
        subprocess.Popen(["true", "POPEN"])
    except OSError:
        pass

@pytest.mark.small
@pytest.mark.parametrize("n", [1, pytest.param(2, marks=pytest.mark.medium)])
def test_param(n):
    if n == 2:
        subprocess.run(["true"], check=True)

@pytest.mark.small
def test_warns_with_a_planted_class():
    with open(os.path.join(os.path.dirname(__file__), "planted_mod.py"), "w") as f:
        f.write(PLANTED)
    import planted_mod
    warnings.warn(planted_mod.W("planted"))
'''

FILES = {
    "pytest.ini": INI,
    "ran/.keep": "",
    "tests/test_s.py": TESTS,
    # outside the path given: plain pytest never imports it
    "other/test_other.py": "open('ran/other-collected', 'w').close()\ndef test_o():\n    pass\n",
}


def test_outcomes_sizes_and_counts_as_plain_pytest(tmp_path, daemon):
    r = run_pytest(tmp_path, FILES, "-q", "-rx", "tests/", "--junitxml=out.xml", target=daemon.target)
    # workers collect with the client's arguments: "-rx tests/" stays "-rx tests/"
    assert sorted(os.listdir(tmp_path / "ran")) == [".keep"], (os.listdir(tmp_path / "ran"), r.out)
    # one outcome per test: the setup TC003 is an error, not also a passed call
    assert re.search(r"\b1 failed, 3 passed, 1 warning, 1 error\b", r.out), r.out
    xml = (tmp_path / "out.xml").read_text()
    assert xml.count('name="test_spawn_in_setup"') == 1 and 'errors="1"' in xml and 'failures="1"' in xml, xml
    # a pytest.param's size overrides its function's: the medium param may spawn
    assert r.test("test_param[2]")["outcome"] == "passed" and r.test("test_param[2]")["size"] == "medium"
    # one denied Popen is one command (vfork + the fork CPython falls back to)
    block = r.failure_block("test_popen")
    assert "(1 command attempted, 1 denied in the kernel;" in block, block
    # a class from a module a test planted is named, not imported
    assert "UserWarning: planted_mod:W: planted" in r.out, r.out


def test_two_sizes_on_one_test_is_a_usage_error(tmp_path, daemon):
    files = {"pytest.ini": INI, "test_two.py": '''
        import pytest
        @pytest.mark.small
        @pytest.mark.medium
        def test_both():
            pass
        '''}
    r = run_pytest(tmp_path, files, "-q", target=daemon.target)
    assert r.rc == 4, r.out
    assert "test_two.py::test_both: multiple size markers at one level: small, medium" in r.out, r.out


def test_a_report_file_in_two_words_leaves_workers_collecting_what_the_client_did(tmp_path, daemon):
    """`--isod-report FILE` with no ini file: on the second run pytest's rootdir
    logic takes the existing FILE for a path (the plugin's options do not exist
    yet then); workers given the same arguments pick the same rootdir."""
    files = {"sub/test_a.py": "import pytest\n@pytest.mark.small\ndef test_a():\n    pass\n"}
    for _ in range(2):
        r = run_pytest(tmp_path / "proj", files, "-q", "--isod-report", str(tmp_path / "r.json"),
                       target=daemon.target)
        assert r.rc == 0 and "1 passed" in r.out, r.out

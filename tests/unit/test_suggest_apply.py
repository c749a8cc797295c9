"""`isod suggest`'s report loading and `--apply`'s syntax-tree edit (libcst),
in process on files in a temp directory."""

from __future__ import annotations

import json
import textwrap

import pytest
from isod.contract import Size
from isod.sizes import item_size
from isod.suggest import ReportError, applied_lines, apply, load_report, summary

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.small

SPAWN = [{"syscall": "execve", "argv": ["true"], "path": "/usr/bin/true", "decision": "allow", "phase": "call"}]


def case(nodeid: str, *, spawn=False, call=0.01, outcome="passed", marked=False) -> dict:
    return {"nodeid": nodeid, "size": "xlarge", "outcome": outcome, "marked": marked, "durations": {"call": call},
            "commands": SPAWN if spawn else [], "intents": []}


def run(tmp_path, source: str, tests: list[dict], name="test_m.py"):
    (tmp_path / name).write_text(textwrap.dedent(source))
    result = apply({"tests": tests}, str(tmp_path))
    return (tmp_path / name).read_text(), result


def test_marks_plain_functions_and_adds_the_import_after_the_leading_imports(tmp_path):
    text, result = run(tmp_path, '''\
        """Docstring."""
        from __future__ import annotations

        import os  # a comment

        X = 1


        # about test_a
        def test_a():
            pass


        @some.decorator
        async def test_b():  # trailing
            pass
        ''', [case("test_m.py::test_a"), case("test_m.py::test_b", spawn=True)])
    assert text == textwrap.dedent('''\
        """Docstring."""
        from __future__ import annotations

        import os  # a comment
        import pytest

        X = 1


        # about test_a
        @pytest.mark.small
        def test_a():
            pass


        @pytest.mark.medium
        @some.decorator
        async def test_b():  # trailing
            pass
        ''')
    assert result.marked == {"test_m.py": [("test_a", "small"), ("test_b", "medium")]}
    assert result.imports == ["test_m.py"] and result.left == []
    assert applied_lines(result)[:2] == ["applied: 2 markers in 1 file",
                                         "    test_m.py: 1 small, 1 medium (and import pytest)"]


def test_uses_the_module_own_name_for_pytest(tmp_path):
    text, result = run(tmp_path, "import pytest as pt\n\ndef test_a():\n    pass\n", [case("test_m.py::test_a")])
    assert text == "import pytest as pt\n\n@pt.mark.small\ndef test_a():\n    pass\n"
    assert result.imports == []
    text, _ = run(tmp_path, "import os, pytest\ndef test_a():\n    pass\n", [case("test_m.py::test_a")])
    assert text == "import os, pytest\n@pytest.mark.small\ndef test_a():\n    pass\n"


def test_a_module_without_imports_gets_the_import_first(tmp_path):
    text, _ = run(tmp_path, "# header\n\ndef test_a():\n    pass\n", [case("test_m.py::test_a")])
    assert text == "# header\n\nimport pytest\n@pytest.mark.small\ndef test_a():\n    pass\n"


def test_leaves_what_it_cannot_place_safely_as_a_list(tmp_path):
    source = '''\
        import pytest

        pytestmark = pytest.mark.usefixtures("x")

        @pytest.mark.parametrize("x", [1, 2])
        def test_p(x):
            pass

        @pytest.mark.parametrize("x", [1, 2])
        def test_q(x):
            pass

        class TestC:
            def test_m(self):
                pass

        @pytest.mark.medium(timeout=3)
        def test_marked():
            pass

        def test_twice():
            pass

        def test_twice():
            pass

        if True:
            def test_nested():
                pass

        def test_failed():
            assert False
        '''
    tests = [case("test_m.py::test_p[1]"), case("test_m.py::test_p[2]"),
             case("test_m.py::test_q[1]"), case("test_m.py::test_q[2]", spawn=True),
             case("test_m.py::TestC::test_m"), case("test_m.py::test_marked"), case("test_m.py::test_twice"),
             case("test_m.py::test_nested"), case("test_m.py::test_gone"), case("test_m.py::test_failed",
                                                                              outcome="failed")]
    text, result = run(tmp_path, source, tests)
    # only the parametrized function whose cases agree gets a marker
    assert text == textwrap.dedent(source).replace('@pytest.mark.parametrize("x", [1, 2])\ndef test_p',
                                                   '@pytest.mark.small\n@pytest.mark.parametrize("x", [1, 2])\n'
                                                   'def test_p')
    assert result.marked == {"test_m.py": [("test_p", "small")]}
    assert result.left == sorted([
        "test_m.py::test_failed: no suggestion (failed)",
        "test_m.py::TestC::test_m -> small: in a class: mark the method or the class",
        "test_m.py::test_q: parametrized cases -> small: [1]; medium: [2]",
        "test_m.py::test_marked -> small: already has a size marker in the source",
        "test_m.py::test_twice -> small: the name is bound more than once in its module",
        "test_m.py::test_nested -> small: not a plain function defined at the top level of its module",
        "test_m.py::test_gone -> small: no function of that name at the top level of its module "
        "(generated or imported?)",
    ])


def test_parametrized_cases_that_agree_but_one_marked_or_failed(tmp_path):
    source = "import pytest\n@pytest.mark.parametrize('x', [1, 2, 3])\ndef test_p(x):\n    pass\n"
    text, result = run(tmp_path, source, [case("test_m.py::test_p[1]"), case("test_m.py::test_p[2]", marked=True),
                                          case("test_m.py::test_p[3]")])
    assert text.startswith("import pytest\n@pytest.mark.small\n")   # the marked case keeps its closer marker
    text, result = run(tmp_path, source, [case("test_m.py::test_p[1]"), case("test_m.py::test_p[2]", outcome="failed")])
    assert text == source and result.left == ["test_m.py::test_p: parametrized cases -> small: [1]; no suggestion: [2]"]


def test_marked_tests_in_the_report_are_not_touched(tmp_path):
    text, result = run(tmp_path, "def test_a():\n    pass\n", [case("test_m.py::test_a", marked=True)])
    assert text == "def test_a():\n    pass\n" and result.count == 0 and result.left == []


def test_a_module_with_a_size_in_pytestmark_is_left_alone(tmp_path):
    source = "import pytest\npytestmark = [pytest.mark.large]\ndef test_a():\n    pass\n"
    text, result = run(tmp_path, source, [case("test_m.py::test_a")])
    assert text == source
    assert result.left == ["test_m.py::test_a -> small: its module's pytestmark has a size marker already"]


def test_a_module_that_binds_pytest_to_something_else_is_left_alone(tmp_path):
    source = "pytest = None\ndef test_a():\n    pass\n"
    text, result = run(tmp_path, source, [case("test_m.py::test_a")])
    assert text == source
    assert result.left == ["test_m.py::test_a -> small: test_m.py binds the name pytest to something else than "
                           "the pytest module"]


def test_unreadable_and_unparsable_files_are_listed(tmp_path):
    _, result = run(tmp_path, "def test_a(:\n", [case("test_m.py::test_a")])
    assert result.left[0].startswith("test_m.py::test_a -> small: cannot parse test_m.py: ")
    result = apply({"tests": [case("sub/test_none.py::test_a")]}, str(tmp_path))
    assert result.left == ["sub/test_none.py::test_a -> small: cannot read sub/test_none.py: No such file or directory"]


def test_applying_twice_changes_nothing_more(tmp_path):
    tests = [case("test_m.py::test_a")]
    first, _ = run(tmp_path, "def test_a():\n    pass\n", tests)
    result = apply({"tests": tests}, str(tmp_path))
    assert (tmp_path / "test_m.py").read_text() == first
    assert result.left == ["test_m.py::test_a -> small: already has a size marker in the source"]


def test_pytest_reads_the_applied_markers(tmp_path, pytester):
    text, _ = run(tmp_path, "def test_a():\n    pass\n\ndef test_b():\n    pass\n",
                  [case("test_m.py::test_a"), case("test_m.py::test_b", spawn=True, call=0.7)])
    pytester.makeini("[pytest]\nmarkers =\n    small\n    medium\n")
    got = {item.name: item_size(item, Size.XLARGE) for item in pytester.getitems(text)}
    assert got == {"test_a": (Size.SMALL, True), "test_b": (Size.MEDIUM, True)}


# --- reading a report ------------------------------------------------------------
@pytest.mark.parametrize(("content", "error"), [
    (b"{", "not a JSON report"),
    (b"\xff\xfe", "not a JSON report"),
    (b"[]", 'not an isod report (no "tests" list'),
    (b'{"tests": [{"nodeid": "a"}]}', "test 0 has no node id or no size"),
    (b'{"tests": [{"nodeid": "a", "size": "huge"}]}', "test 0 has no node id or no size"),
    (b'{"tests": [{"nodeid": "a", "size": "small", "commands": [1]}]}', "test a: 'commands' is not a list of objects"),
    (b'{"tests": [{"nodeid": "a", "size": "small", "durations": []}]}', "test a: 'durations' is not an object"),
    (b'{"tests": [], "limits": 3}', "'limits' is not an object"),
])
def test_a_bad_report_is_one_line_naming_the_problem(tmp_path, content, error):
    path = tmp_path / "r.json"
    path.write_bytes(content)
    with pytest.raises(ReportError) as e:
        load_report(str(path))
    assert error in str(e.value) and "\n" not in str(e.value) and str(e.value).startswith(str(path))


def test_a_missing_report(tmp_path):
    with pytest.raises(ReportError, match="r.json: No such file or directory"):
        load_report(str(tmp_path / "r.json"))


def test_summary_uses_the_report_limits(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"tests": [case("test_m.py::test_a", call=0.3)], "limits": {"small": 0.5}}))
    assert summary(load_report(str(path)))[0] == "xlarge: 1 test (1 unmarked): 1 could be smaller (1 medium)"

"""The size advisor end to end: `pytest -p isod_client --isod-suggest-sizes`
on a suite of pure, spawning, slow, loopback-network and failing tests, then
`isod suggest REPORT --apply` on a copy of it, which must still collect the
same ids and pass under strict enforcement with the applied sizes.

Real daemon, real pytest runs, real `isod` processes.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import subprocess
import sys

import pytest
from harness.daemon import run_pytest
from isod.advice import NETWORK_SYSCALLS

pytestmark = pytest.mark.large

SUITE = {
    "conftest.py": '''
        import subprocess, pytest

        @pytest.fixture(scope="session")
        def tool():
            """Set up once per worker: its spawn is charged to the first test using it."""
            return subprocess.run(["echo", "tool-1.0"], capture_output=True, text=True, check=True).stdout
        ''',
    "test_suite.py": '''
        """A suite with no size markers but two."""
        import socket
        import subprocess
        import threading
        import time

        import pytest


        def test_pure():
            assert sorted([3, 1, 2]) == [1, 2, 3]


        def test_spawns():
            assert subprocess.run(["true"]).returncode == 0


        def test_slow():
            time.sleep(0.6)        # over half the small limit of 1 s


        def test_loopback():
            server = socket.create_server(("127.0.0.1", 0))
            port = server.getsockname()[1]
            accepted = threading.Thread(target=lambda: server.accept()[0].close())
            accepted.start()
            socket.create_connection(("127.0.0.1", port)).close()
            accepted.join()
            server.close()


        def test_fails():
            assert 1 == 2


        def test_uses_tool_a(tool):
            assert tool.startswith("tool")


        def test_uses_tool_b(tool):
            assert tool.startswith("tool")


        @pytest.mark.small
        def test_marked_too_small():
            subprocess.run(["echo", "hi"], check=True)


        @pytest.mark.medium
        def test_marked_medium_pure():
            pass


        @pytest.mark.parametrize("n", [1, 2])
        def test_param(n):
            assert n


        class TestGroup:
            def test_method(self):
                pass
        ''',
}
FILE = "test_suite.py"
MIGRATION = ("--test-categories-enforcement=off", "--isod-default-size=xlarge", "--isod-suggest-sizes")


def isod(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("ISOD_BACKEND", "ISOD_TARGET")}
    return subprocess.run([sys.executable, "-m", "isod", *args], capture_output=True, text=True, timeout=60,
                          env=env, stdin=subprocess.DEVNULL)


def section(out: str) -> list[str]:
    """The lines of the terminal section `isod: suggested sizes`."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if "isod: suggested sizes" in line)
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith(("=", "-")))
    return lines[start + 1:end]


def collected(path) -> list[str]:
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "isod_client", "-p", "no:cacheprovider",
                        "--collect-only", "-q"], cwd=path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return [line for line in r.stdout.splitlines() if "::" in line]


def expected(report: dict) -> dict[str, str | None]:
    """What the rule must say for each test of SUITE."""
    t = {e["nodeid"].split("::", 1)[1]: e for e in report["tests"]}
    loopback = any(c["syscall"] in NETWORK_SYSCALLS for c in t["test_loopback"]["commands"])
    return {"test_pure": "small", "test_spawns": "medium", "test_slow": "medium",
            "test_loopback": "medium" if loopback else "small",    # small until network calls are recorded
            "test_fails": None, "test_uses_tool_a": "medium", "test_uses_tool_b": "medium",
            "test_marked_too_small": "medium", "test_marked_medium_pure": "small",
            "test_param[1]": "small", "test_param[2]": "small", "TestGroup::test_method": "small"}


def test_migration_recipe_suggests_applies_and_then_passes_strict(tmp_path, daemon):
    orig, copy = tmp_path / "orig", tmp_path / "copy"
    orig.mkdir()
    # 1. everything recorded, nothing enforced, every unmarked test xlarge
    r = run_pytest(orig, SUITE, *MIGRATION, target=daemon.target)
    assert r.rc == 1 and "1 failed, 11 passed" in r.out, r.out[-3000:]
    got = {e["nodeid"].split("::", 1)[1]: e["suggested_size"] for e in r.report["tests"]}
    assert got == expected(r.report)
    reasons = {e["nodeid"].split("::", 1)[1]: e["suggestion_reasons"] for e in r.report["tests"]}
    assert reasons["test_spawns"] == ["spawned true"]
    assert reasons["test_slow"] == ["call took 0.6 s of small's 1 s (needs under 50% of the limit)"] or \
        reasons["test_slow"][0].startswith("call took 0.6")
    tool = {*reasons["test_uses_tool_a"], *reasons["test_uses_tool_b"]}
    assert "spawned echo tool-1.0" in tool      # the first user in a worker
    assert reasons["test_fails"] == ["no suggestion: failed"]
    lines = section(r.out)
    assert lines[0] == "small: 1 test: 1 too small"
    assert lines[1] == f"    {FILE}::test_marked_too_small -> medium: spawned echo hi"
    assert lines[2] == "medium: 1 test: 1 could be smaller (1 small)"
    assert lines[3].startswith("xlarge: 10 tests (10 unmarked): 9 could be smaller (")
    assert lines[-1].startswith("total: 12 tests: 10 could be smaller, 1 too small, 0 fit their size, "
                                "1 without a suggestion; suggested ")

    # 2. the same summary from the saved report; the markers written into a copy
    shutil.copytree(orig, copy, ignore=shutil.ignore_patterns("__pycache__", "isod-report.json"))
    saved = orig / "isod-report.json"
    applied = isod("suggest", str(saved), "--apply", "--root", str(copy))
    assert applied.returncode == 0 and not applied.stderr, applied.stderr
    out = applied.stdout.splitlines()
    assert out[:len(lines)] == lines
    placed = {"test_pure": "small", "test_spawns": "medium", "test_slow": "medium",
              "test_loopback": got["test_loopback"], "test_uses_tool_a": "medium", "test_uses_tool_b": "medium",
              "test_param": "small"}
    assert out[len(lines)] == "applied: 7 markers in 1 file"
    small = sum(size == "small" for size in placed.values())
    assert out[len(lines) + 1] == f"    {FILE}: {small} small, {len(placed) - small} medium"
    assert out[len(lines) + 3:] == [
        "left for you (2):",
        f"    {FILE}::TestGroup::test_method -> small: in a class: mark the method or the class",
        f"    {FILE}::test_fails: no suggestion (failed)"]
    text = (copy / FILE).read_text()
    for name, size in placed.items():
        assert f"@pytest.mark.{size}\ndef {name}(" in text or f"@pytest.mark.{size}\n@pytest.mark.parametrize" in text
    diff = [d for d in difflib.ndiff((orig / FILE).read_text().splitlines(), text.splitlines()) if d[0] in "+-"]
    assert diff == [f"+ @pytest.mark.{size}" for size in placed.values()]      # nothing else changed
    assert collected(copy) == collected(orig)

    # 3. strict, default size small: each applied test runs at its size and passes
    # (test_fails fails on its own, test_marked_too_small keeps the marker the user gave it)
    s = run_pytest(copy, {}, "--deselect", f"{FILE}::test_fails", "--deselect", f"{FILE}::test_marked_too_small",
                   target=daemon.target)
    assert s.rc == 0 and "10 passed" in s.out, s.out[-3000:]
    sizes = {e["nodeid"].split("::", 1)[1].partition("[")[0]: e["size"] for e in s.report["tests"]}
    assert {n: sizes[n] for n in placed} == placed
    assert all(e["suggested_size"] == e["size"] for e in s.report["tests"]
               if not e["nodeid"].endswith("test_marked_medium_pure")), s.report["tests"]


def test_under_strict_a_denied_spawn_still_gets_a_suggestion(tmp_path, daemon):
    """TC003 failed the test: what it tried up to the denial still tells its size."""
    r = run_pytest(tmp_path, SUITE, "--isod-suggest-sizes", target=daemon.target)
    assert r.rc == 1, r.out[-3000:]
    t = {e["nodeid"].split("::", 1)[1]: e for e in r.report["tests"]}
    assert t["test_spawns"]["outcome"] == "failed" and t["test_spawns"]["suggested_size"] == "medium"
    assert t["test_spawns"]["suggestion_reasons"][0] == "tried to spawn true (denied)"
    assert t["test_spawns"]["suggestion_reasons"][-1].startswith("at least medium: isod stopped the test (TC003)")
    assert t["test_fails"]["suggested_size"] is None
    assert t["test_pure"]["suggested_size"] == "small"
    lines = section(r.out)
    assert lines[0].startswith("small: 11 tests (10 unmarked): ")
    assert f"    {FILE}::test_spawns (unmarked) -> medium: tried to spawn true (denied); at least medium" in \
        "\n".join(lines)


def test_the_report_has_the_suggestions_without_the_terminal_section(tmp_path, daemon):
    r = run_pytest(tmp_path, {"test_one.py": "def test_one():\n    pass\n"}, target=daemon.target)
    assert r.rc == 0 and "isod: suggested sizes" not in r.out
    (t,) = r.report["tests"]
    assert (t["suggested_size"], t["suggestion_reasons"], t["marked"]) == ("small", [], False)
    assert r.report["limits"] == {"small": 1.0, "medium": 300.0, "large": 900.0, "xlarge": 900.0}
    assert r.report["rootdir"] == str(tmp_path) and r.report["default_size"] == "small"


# --- isod suggest: bad input is one line and exit status 2 -------------------------
def refused(*args: str) -> str:
    r = isod("suggest", *args)
    lines = r.stderr.splitlines()
    assert r.returncode == 2 and len(lines) == 1 and not r.stdout, (r.returncode, r.stdout, r.stderr)
    return lines[0]


@pytest.mark.medium
def test_bad_input_of_isod_suggest(tmp_path):
    missing = tmp_path / "none.json"
    assert refused(str(missing)) == f"isod suggest: {missing}: No such file or directory"
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert refused(str(bad)).startswith(f"isod suggest: {bad}: not a JSON report")
    bad.write_text(json.dumps({"tests": {}}))
    assert refused(str(bad)).startswith(f"isod suggest: {bad}: not an isod report")
    assert refused("") == "isod suggest: argument REPORT.json: must not be empty"
    assert refused(str(tmp_path), "--root", "x").startswith(f"isod suggest: {tmp_path}: ")   # a directory
    good = tmp_path / "r.json"
    good.write_text(json.dumps({"version": 1, "tests": [], "rootdir": str(tmp_path / "gone")}))
    assert refused(str(good), "--apply", "--root", str(missing)) == f"isod suggest: --root {missing}: not a directory"
    assert refused(str(good), "--apply") == (f"isod suggest: the report's rootdir {tmp_path / 'gone'} is not a "
                                             "directory (give --root DIR)")
    assert refused(str(good), "--bogus").startswith("isod: unrecognized arguments: --bogus")   # as for every subcommand


@pytest.mark.medium
def test_apply_without_libcst_says_how_to_get_it(tmp_path):
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "libcst.py").write_text("raise ImportError('no libcst here')\n")
    good = tmp_path / "r.json"
    good.write_text(json.dumps({"version": 1, "tests": []}))
    env = {k: v for k, v in os.environ.items() if k not in ("ISOD_BACKEND", "ISOD_TARGET")}
    env["PYTHONPATH"] = str(shadow)
    r = subprocess.run([sys.executable, "-m", "isod", "suggest", str(good), "--apply", "--root", str(tmp_path)],
                       capture_output=True, text=True, timeout=60, env=env)
    assert (r.returncode, r.stdout, r.stderr) == (
        2, "", "isod suggest: --apply needs libcst: pip install 'isod[suggest]'\n")
    # without --apply, libcst is not needed
    r = subprocess.run([sys.executable, "-m", "isod", "suggest", str(good)], capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode == 0 and r.stdout.startswith("total: 0 tests"), r.stderr

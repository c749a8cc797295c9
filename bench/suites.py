"""The generated test suites the runners are timed on.

(a) trivial small tests (`assert 1`), (b) CPU-bound small tests of about
10 ms each (a pure-Python loop calibrated once on this machine), (c) medium
tests that each run `true` in a subprocess, plus a probe suite of two small
tests that spawn (to check that a runner's enforcement is really on) and a
one-test suite (a runner's fixed cost).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

INI = """[pytest]
markers =
    small: one process, no spawn
    medium: may spawn
    large: anything
    xlarge: anything, slow
"""


@dataclass(frozen=True)
class Suite:
    key: str
    title: str
    files: int
    per_file: int
    expect: dict          # outcome counts of a run that did what it should, e.g. {"passed": 2000}
    path: Path

    @property
    def tests(self) -> int:
        return self.files * self.per_file


def calibrate_loop(target_s: float = 0.010) -> int:
    """Iterations of `_spin` that take about target_s here (best of a few tries)."""
    n = 200_000
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        _spin(n)
        best = min(best, time.perf_counter() - t)
    return max(1000, int(n * target_s / best))


def _spin(n: int) -> int:
    x = 0
    for i in range(n):
        x += i ^ (x & 7)
    return x


SPIN_SRC = '''
def _spin(n):
    x = 0
    for i in range(n):
        x += i ^ (x & 7)
    return x
'''


def _write(root: Path, files: int, per_file: int, header: str, body: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pytest.ini").write_text(INI)
    for f in range(files):
        parts = [header]
        for t in range(per_file):
            parts.append(body.format(t=t))
        (root / f"test_m{f:03d}.py").write_text("\n".join(parts))


def make_suites(base: Path, quick: bool, spin_n: int) -> dict[str, Suite]:
    """Writes every suite under base; returns them by key."""
    shape = {"a": (4, 50) if quick else (20, 100), "b": (4, 10) if quick else (10, 20),
             "c": (2, 5) if quick else (5, 20)}
    suites = {}

    files, per = shape["a"]
    root = base / "a"
    _write(root, files, per, "import pytest\n", "@pytest.mark.small\ndef test_{t:03d}():\n    assert 1\n")
    suites["a"] = Suite("a", f"(a) {files * per} trivial small tests", files, per, {"passed": files * per}, root)

    files, per = shape["b"]
    root = base / "b"
    _write(root, files, per, f"import pytest\n{SPIN_SRC}\nN = {spin_n}\n",
           "@pytest.mark.small\ndef test_{t:03d}():\n    assert _spin(N) >= 0\n")
    suites["b"] = Suite("b", f"(b) {files * per} CPU-bound small tests (~10 ms each)", files, per,
                        {"passed": files * per}, root)

    files, per = shape["c"]
    root = base / "c"
    _write(root, files, per, "import subprocess\n\nimport pytest\n",
           '@pytest.mark.medium\ndef test_{t:03d}():\n    subprocess.run(["true"], check=True)\n')
    suites["c"] = Suite("c", f"(c) {files * per} medium tests running a subprocess", files, per,
                        {"passed": files * per}, root)

    # a packaging-sized suite: most of its 64k tests are parametrized cases
    files, per = (4, 500) if quick else (20, 1000)
    root = base / "d"
    root.mkdir(parents=True, exist_ok=True)
    (root / "pytest.ini").write_text(INI)
    for f in range(files):
        (root / f"test_p{f:03d}.py").write_text(
            f"import pytest\n\n@pytest.mark.small\n@pytest.mark.parametrize('v', range({per}))\n"
            "def test_case(v):\n    assert v >= 0\n")
    suites["d"] = Suite("d", f"(d) {files * per} parametrized small tests (a packaging-sized collection)",
                        files, per, {"passed": files * per}, root)

    root = base / "one"
    _write(root, 1, 1, "import pytest\n", "@pytest.mark.small\ndef test_{t:03d}():\n    assert 1\n")
    suites["one"] = Suite("one", "1 trivial small test (fixed cost)", 1, 1, {"passed": 1}, root)

    root = base / "probe"
    root.mkdir(parents=True, exist_ok=True)
    (root / "pytest.ini").write_text(INI)
    (root / "test_probe.py").write_text(PROBE)
    suites["probe"] = Suite("probe", "enforcement probe: 2 small tests that spawn", 1, 2, {}, root)
    return suites


# Two escapes: one that monkeypatching sees (subprocess) and one it does not (os.posix_spawn).
PROBE = '''import os
import subprocess

import pytest


@pytest.mark.small
def test_subprocess_run():
    subprocess.run(["true"], check=True)


@pytest.mark.small
def test_posix_spawn():
    pid = os.posix_spawn("/bin/true", ["true"], dict(os.environ))
    os.waitpid(pid, 0)
'''

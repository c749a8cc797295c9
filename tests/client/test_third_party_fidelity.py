"""A real third-party project's suite, fetched from the package registry by the
test: outcome counts under `-p isod_client` (enforcement off, strict with every
test medium, strict with every test small) equal plain pytest's."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

OUTCOMES = r"(\d+) (passed|failed|skipped|xfailed|xpassed|errors?|subtests passed|subtests failed)"


def fetch_sdist(name: str, dest: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                    "-d", str(dest), name], check=True, timeout=300)
    (archive,) = dest.glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    (src,) = [p for p in dest.iterdir() if p.is_dir()]
    return src


def counts(out: str) -> dict[str, int]:
    last = [line for line in out.splitlines() if re.search(r" in \d+\.\d+s", line)][-1]
    return {k: int(v) for v, k in re.findall(OUTCOMES, last)}


def run(src: Path, *args: str) -> dict[str, int]:
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                       cwd=src, capture_output=True, text=True, timeout=600)
    assert p.returncode in (0, 1), p.stdout[-3000:] + p.stderr[-3000:]
    return counts(p.stdout)


@pytest.mark.parametrize("project,paths", [
    pytest.param("six==1.17.0", ["test_six.py"], marks=pytest.mark.large, id="six"),
    # ~50 s: deselected by `make test`, run by `make test-all`
    pytest.param("more-itertools==11.2.1", ["tests/test_recipes.py"], marks=pytest.mark.xlarge,
                 id="more-itertools"),
])
def test_outcome_counts_equal_plain_pytest(tmp_path, project, paths):
    src = fetch_sdist(project, tmp_path)
    plain = run(src, *paths)
    assert plain and plain.get("passed", 0) > 100, plain
    # recorded only; every test in a spawning worker
    assert run(src, "-p", "isod_client", "--test-categories-enforcement=off", *paths) == plain
    # strict, every test medium: spawning workers, nothing denied
    assert run(src, "-p", "isod_client", "--isod-default-size=medium", *paths) == plain
    # strict, every test small: exactly the tests that create a process (TC003)
    # or run past the small time limit (TC006) fail
    report = tmp_path / "small.json"
    small = run(src, "-p", "isod_client", "--isod-default-size=small", f"--isod-report={report}", *paths)
    tests = json.loads(report.read_text())["tests"]
    spawned = {t["nodeid"] for t in tests if any(c["decision"] == "deny" for c in t["commands"])}
    slow = {t["nodeid"] for t in tests if "[TC006]" in json.dumps(t.get("interruption"))}
    failed = {t["nodeid"] for t in tests if t["outcome"] == "failed"}
    assert failed == spawned | slow, (failed, spawned, slow)
    assert small.get("passed", 0) + len(failed) == plain["passed"], (small, plain)

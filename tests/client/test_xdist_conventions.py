"""pytest-xdist's worker conventions under `pytest -p isod_client`: the
per-worker isolation code written for xdist (worker_id, PYTEST_XDIST_WORKER,
config.workerinput) sees one gwN per worker, and pytest-cov's distributed mode
combines the workers' coverage into the table plain pytest prints."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from harness.daemon import run_pytest

pytestmark = pytest.mark.large   # a real daemon, real workers, real pytest runs

HAS_XDIST = importlib.util.find_spec("xdist") is not None
HAS_COV = importlib.util.find_spec("pytest_cov") is not None

# the common pattern of suites that run under xdist
ISOLATION_CONFTEST = '''
import json, os, pytest

@pytest.fixture(scope="session")
def worker_id(request):
    if hasattr(request.config, "workerinput"):
        return request.config.workerinput["workerid"]
    return "master"

@pytest.fixture(scope="session")
def port_base(worker_id):
    return 5000 + 100 * (0 if worker_id == "master" else int(worker_id[2:]))

@pytest.fixture(scope="session")
def db_path(worker_id):
    return f"test_{worker_id}.db"

@pytest.fixture
def record(request, worker_id, port_base, db_path):
    def write():
        wi = request.config.workerinput
        line = dict(id=worker_id, port=port_base, db=db_path, pid=os.getpid(), env=os.environ["PYTEST_XDIST_WORKER"],
                    count=os.environ["PYTEST_XDIST_WORKER_COUNT"], uid=wi["testrunuid"],
                    mainargv=wi["mainargv"], workercount=wi["workercount"])
        with open(os.path.join("ran", request.node.name), "w") as f:
            json.dump(line, f)
    return write
'''

ISOLATION_TESTS = '''
import time, pytest

pytestmark = pytest.mark.small

@pytest.mark.parametrize("i", range(10))
def test_isolated(i, record):
    time.sleep(0.15)     # long enough that both workers get some
    record()
'''


def test_two_workers_get_two_gw_ids_and_share_no_port_or_path(tmp_path, daemon):
    (tmp_path / "ran").mkdir()
    r = run_pytest(tmp_path, {"conftest.py": ISOLATION_CONFTEST, "test_iso.py": ISOLATION_TESTS}, "-q",
                   "--isod-workers=2", target=daemon.target, timeout=90)
    assert r.rc == 0, r.out
    lines = [json.loads(p.read_text()) for p in (tmp_path / "ran").iterdir()]
    assert len(lines) == 10
    by_id: dict[str, set] = {}
    for line in lines:
        assert line["env"] == line["id"] and line["count"] == "2" and line["workercount"] == 2, line
        by_id.setdefault(line["id"], set()).add((line["port"], line["db"], line["pid"]))
    assert set(by_id) == {"gw0", "gw1"}, by_id
    assert all(len(v) == 1 for v in by_id.values()), by_id      # one port, one db per worker process
    (a,), (b,) = by_id.values()
    assert a[0] != b[0] and a[1] != b[1] and a[2] != b[2], by_id
    assert len({line["uid"] for line in lines}) == 1             # one testrunuid for the whole run
    assert "isod_client" in lines[0]["mainargv"]                 # the client's argv, not the worker's


FIXTURE_TESTS = '''
import os, pytest

pytestmark = pytest.mark.small

def test_worker_id_fixture(worker_id, testrun_uid, request):
    assert worker_id == os.environ["ISOD_WORKER_ID"] == os.environ["PYTEST_XDIST_WORKER"]
    assert worker_id.startswith("gw") and testrun_uid == request.config.workerinput["testrunuid"]
    pm = request.config.pluginmanager
    xdist_loaded = pm.has_plugin("xdist")
    assert pm.has_plugin("isod-xdist-fixtures") is not xdist_loaded    # isod's only where xdist's are not
    print(f"XDIST_LOADED {xdist_loaded}")     # one write: -s output is relayed as it comes
    try:
        import xdist
    except ImportError:
        return
    assert xdist.is_xdist_worker(request) and xdist.get_xdist_worker_id(request) == worker_id
'''


@pytest.mark.parametrize("xdist", ["installed", "not loaded"])
def test_worker_id_and_testrun_uid_fixtures(tmp_path, daemon, xdist):
    if xdist == "installed" and not HAS_XDIST:
        pytest.skip("pytest-xdist is not installed here")
    args = ["-p", "no:xdist"] if xdist == "not loaded" else []
    r = run_pytest(tmp_path, {"test_fx.py": FIXTURE_TESTS}, "-q", "-s", *args, target=daemon.target, timeout=60)
    assert r.rc == 0, r.out
    assert f"XDIST_LOADED {xdist == 'installed'}" in r.out, r.out


COV_FILES = {
    "pkg/__init__.py": '''
        def add(a, b):
            if a < 0:
                return -1
            return a + b


        def unused():
            return 1
        ''',
    # imported by the conftest only: measured where conftests are imported
    "pkg/early.py": '''
        LOADED = [i for i in range(3)]


        def never():
            return "never"
        ''',
    "pkg/more.py": '''
        def mul(a, b):
            return a * b


        def branch(x):
            if x:
                return "yes"
            return "no"
        ''',
    "conftest.py": "import pkg.early  # noqa: F401\n",
    "test_cov.py": '''
        import pytest
        from pkg import add
        from pkg.more import branch, mul

        pytestmark = pytest.mark.small

        @pytest.mark.parametrize("i", range(6))
        def test_add(i):
            assert add(i, 1) == i + 1

        def test_mul():
            assert mul(2, 3) == 6

        def test_branch():
            assert branch(1) == "yes"
        ''',
    "pytest.ini": "[pytest]\nmarkers =\n    small: s\n",
}
COV_ARGS = ("-q", "-p", "no:cacheprovider", "--cov=pkg", "--cov-branch", "--cov-report=term-missing")


def _table(out: str) -> list[str]:
    """pytest-cov's section: its header line through TOTAL."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if "coverage: platform" in line)
    end = next(i for i, line in enumerate(lines) if line.startswith("TOTAL"))
    return lines[start:end + 1]


def _plain(d: Path, *args: str) -> str:
    for name, text in COV_FILES.items():
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_text(textwrap.dedent(text))
    p = subprocess.run([sys.executable, "-m", "pytest", *COV_ARGS, *args], cwd=d, capture_output=True,
                       text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


@pytest.mark.skipif(not HAS_COV, reason="pytest-cov is not installed here")
def test_coverage_table_is_plain_pytests(tmp_path, daemon):
    dirs = {name: tmp_path / name for name in ("plain", "isod", "xdist")}
    for d in dirs.values():
        d.mkdir()
    plain = _table(_plain(dirs["plain"]))
    r = run_pytest(dirs["isod"], COV_FILES, *COV_ARGS, "--isod-workers=2", target=daemon.target, timeout=120)
    assert r.rc == 0, r.out
    assert _table(r.out) == plain, r.out
    assert "failed workers" not in r.out and "isod: pytest_" not in r.out, r.out
    assert not list(dirs["isod"].glob(".coverage.*")), "workers' data files are combined, as under xdist"
    if HAS_XDIST:
        assert _table(_plain(dirs["xdist"], "-n", "2")) == plain

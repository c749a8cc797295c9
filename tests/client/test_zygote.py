"""Workers are forked from one zygote per session, which collected once; and
where forking is unsafe, each worker starts fresh and collects, and the run
says why."""

from __future__ import annotations

import os
import time

import pytest
from harness.daemon import Daemon, run_pytest

pytestmark = pytest.mark.large

# Each process that collects (the client, the zygote, a fresh worker) writes one line.
COUNTING_CONFTEST = '''
import os, uuid
def pytest_collection_finish(session):
    with open(os.path.join(str(session.config.rootpath), "collections.txt"), "a") as f:
        f.write(f"{uuid.uuid4().hex}\\n")     # not os.getpid(): a pid read while collecting refuses the fork
'''

WHO = '''
import os, pytest

def _note(kind, worker_id, tmp_path):
    with open(os.path.join(os.path.dirname(__file__), "who.txt"), "a") as f:
        f.write(f"{kind} {worker_id} {os.getpid()} {os.getppid()} {tmp_path}\\n")

@pytest.mark.parametrize("i", range(3))
@pytest.mark.small
def test_small(i, worker_id, tmp_path):
    _note("small", worker_id, tmp_path)

@pytest.mark.parametrize("i", range(3))
@pytest.mark.medium
def test_medium(i, worker_id, tmp_path):
    _note("medium", worker_id, tmp_path)
'''


def _who(tmp_path):
    rows = [line.split() for line in (tmp_path / "who.txt").read_text().splitlines()]
    return [(kind, wid, int(pid), int(ppid), path) for kind, wid, pid, ppid, path in rows]


def test_one_collection_for_all_workers_and_classes(tmp_path, daemon):
    files = {"conftest.py": COUNTING_CONFTEST, "test_who.py": WHO}
    r = run_pytest(tmp_path, files, "-q", "--isod-workers=2", target=daemon.target)
    assert r.rc == 0 and "6 passed" in r.out, r.out
    assert len((tmp_path / "collections.txt").read_text().split()) == 2     # the client and the zygote
    rows = _who(tmp_path)
    by_class = {kind: {(wid, pid) for k, wid, pid, _, _ in rows if k == kind} for kind in ("small", "medium")}
    assert all(len(v) == 1 for v in by_class.values()), rows        # one worker per class
    (small,), (medium,) = by_class["small"], by_class["medium"]
    assert small[0] != medium[0] and small[1] != medium[1], rows    # distinct gwN and processes
    assert len({ppid for _, _, _, ppid, _ in rows}) == 1, rows      # one parent: the zygote
    # each worker has its own basetemp, named by its id
    for _kind, wid, _, _, path in rows:
        assert f"/{wid}/" in path, rows


def test_without_the_zygote_each_worker_collects(tmp_path, daemon):
    files = {"conftest.py": COUNTING_CONFTEST, "test_who.py": WHO}
    r = run_pytest(tmp_path, files, "-q", "--isod-workers=2", target=daemon.target, env={"ISOD_ZYGOTE": "0"})
    assert r.rc == 0 and "6 passed" in r.out, r.out
    # the client and each worker (a worker started on a wrong guess of its class too)
    assert len((tmp_path / "collections.txt").read_text().split()) >= 3


@pytest.mark.parametrize("conftest, why", [
    ("import threading, time\n"
     "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n",
     "the collecting process runs 2 threads"),
    ("import os\n"
     "PORT = 5000 + int(os.environ.get('PYTEST_XDIST_WORKER', 'gw0')[2:])\n",
     "code read the worker id or the process id while collecting (os.environ['PYTEST_XDIST_WORKER'])"),
    ("import os\nLOCK = f'/tmp/lock-{os.getpid()}'\n",
     "code read the worker id or the process id while collecting (os.getpid() at conftest.py:"),
], ids=["a-thread", "worker-id-at-import", "pid-at-import"])
def test_where_forking_is_unsafe_workers_start_fresh_and_the_run_says_why(tmp_path, daemon, conftest, why):
    files = {"conftest.py": COUNTING_CONFTEST + conftest, "test_who.py": WHO}
    r = run_pytest(tmp_path, files, "-q", "--isod-workers=2", target=daemon.target)
    assert r.rc == 0 and "6 passed" in r.out, r.out
    assert f"isod: workers start fresh and each collects the suite: {why}" in r.out, r.out
    assert r.out.count("isod: workers start fresh") == 1, r.out
    rows = _who(tmp_path)
    assert len({wid for _, wid, _, _, _ in rows}) == 2, rows


def test_a_killed_zygote_leaves_the_run_to_fresh_workers(tmp_path, daemon):
    """A small test may signal its parent (same user): the session goes on
    with fresh workers for what is left."""
    files = {"test_kill.py": '''
import os, signal, pytest

@pytest.mark.small
def test_kills_its_zygote():
    os.kill(os.getppid(), signal.SIGKILL)

@pytest.mark.small
def test_crashes_its_worker():
    os.kill(os.getpid(), signal.SIGKILL)

@pytest.mark.small
def test_after():
    pass
'''}
    r = run_pytest(tmp_path, files, "-q", "--isod-workers=1", target=daemon.target, timeout=120)
    assert r.test("test_kills_its_zygote")["outcome"] == "passed", r.out
    assert r.test("test_crashes_its_worker")["outcome"] == "failed", r.out
    assert r.test("test_after")["outcome"] == "passed", r.out      # on a fresh replacement


def test_a_forked_workers_output_is_its_own(tmp_path, daemon):
    """What a worker writes outside pytest's capture (here: a fatal error's
    traceback, through faulthandler's copy of stderr) comes from its own
    pipe, so a crash report shows it."""
    files = {"test_crash.py": '''
import ctypes, pytest

@pytest.mark.small
def test_segfaults():
    ctypes.string_at(0)
'''}
    r = run_pytest(tmp_path, files, "-q", "--isod-workers=1", target=daemon.target, timeout=120)
    assert r.test("test_segfaults")["outcome"] == "failed", r.out
    assert "Fatal Python error: Segmentation fault" in r.out, r.out


def test_workers_capture_output_apart(tmp_path, daemon):
    """pytest's fd capture file was opened before the fork: each worker must
    capture into its own, or two workers read each other's output."""
    files = {"test_out.py": '''
import pytest
pytestmark = pytest.mark.small
@pytest.mark.parametrize("i", range(30))
def test_p(i):
    print(f"own-line-{i}-" * 20)
    assert 0
'''}
    r = run_pytest(tmp_path, files, "-q", "--isod-workers=2", target=daemon.target)
    assert "30 failed" in r.out, r.out[-2000:]
    for i in range(30):
        block = r.failure_block(f"test_p[{i}]")
        assert f"own-line-{i}-" in block and "Captured stdout call" in block, block
        assert not any(f"own-line-{j}-" in block for j in range(30) if j != i), block


def _collections(tmp_path) -> int:
    return len((tmp_path / "collections.txt").read_text().split())


@pytest.fixture
def warm_daemon():
    d = Daemon(warm_zygotes=4)
    yield d
    d.stop()


def test_isod_serve_keeps_a_warm_zygote_while_the_suite_is_unchanged(tmp_path, warm_daemon):
    """The second run of a suite against `isod serve` forks from the zygote
    the first run left: no collection but the client's. A changed or added
    file makes it collect again, and the new test runs."""
    daemon = warm_daemon
    files = {"conftest.py": COUNTING_CONFTEST, "test_who.py": WHO}
    first = run_pytest(tmp_path, files, "-q", "--isod-workers=2", target=daemon.target)
    assert first.rc == 0 and "6 passed" in first.out, first.out
    assert _collections(tmp_path) == 2                       # the zygote, and the client reporting it
    second = run_pytest(tmp_path, {}, "-q", "--isod-workers=2", target=daemon.target)
    assert second.rc == 0 and "6 passed" in second.out, second.out
    assert _collections(tmp_path) == 3                       # the client only: the zygote was warm
    rows = _who(tmp_path)
    assert {r[4].split("/")[-3] for r in rows[6:]} != {r[4].split("/")[-3] for r in rows[:6]}, rows  # new basetemp
    assert len({wid for _, wid, _, _, _ in rows[6:]}) == 2, rows
    # a new test file: its directory changed, the zygote collects again
    (tmp_path / "test_new.py").write_text("import pytest\n@pytest.mark.small\ndef test_new():\n    pass\n")
    third = run_pytest(tmp_path, {}, "-q", "--isod-workers=2", target=daemon.target)
    assert third.rc == 0 and "7 passed" in third.out, third.out
    assert _collections(tmp_path) == 5
    # an edited module (same size, new mtime): collected again as well
    time.sleep(0.01)
    os.utime(tmp_path / "test_new.py")
    fourth = run_pytest(tmp_path, {}, "-q", "--isod-workers=2", target=daemon.target)
    assert fourth.rc == 0 and "7 passed" in fourth.out, fourth.out
    assert _collections(tmp_path) == 7
    # a data file the test module reads at import: changed, collected again
    (tmp_path / "cases.txt").write_text("1\n")
    (tmp_path / "test_data.py").write_text(
        "import pytest\nCASES = open('cases.txt').read().split()\n"
        "@pytest.mark.small\n@pytest.mark.parametrize('c', CASES)\ndef test_case(c):\n    assert c == '1'\n")
    fifth = run_pytest(tmp_path, {}, "-q", "--isod-workers=2", target=daemon.target)
    assert fifth.rc == 0 and "8 passed" in fifth.out, fifth.out
    assert _collections(tmp_path) == 9      # a new test file in a listed directory: a new zygote collected
    sixth = run_pytest(tmp_path, {}, "-q", "--isod-workers=2", target=daemon.target)
    assert sixth.rc == 0 and "8 passed" in sixth.out and _collections(tmp_path) == 10, sixth.out  # warm again
    (tmp_path / "cases.txt").write_text("2\n")      # same ids, other content: must not run the old data
    seventh = run_pytest(tmp_path, {}, "-q", "--isod-workers=2", target=daemon.target)
    assert seventh.rc == 1 and "1 failed, 7 passed" in seventh.out, seventh.out
    # other arguments: another zygote
    before = _collections(tmp_path)
    eighth = run_pytest(tmp_path, {}, "-q", "--isod-workers=2", "-k", "new", target=daemon.target)
    assert eighth.rc == 0 and "1 passed" in eighth.out, eighth.out
    assert _collections(tmp_path) == before + 2


def test_a_copy_of_the_environment_at_import_is_not_a_read_of_the_worker_id(tmp_path, daemon):
    """`dict(os.environ)` at import (common in conftests) reads every variable
    there is: the zygote has no worker id in its environment, so a copy
    neither refuses the fork nor carries the zygote's id to a worker."""
    files = {"conftest.py": COUNTING_CONFTEST + "import os\nENV = dict(os.environ)\nCOPY = os.environ.copy()\n"
                            "if 'ISOD_ZYGOTE_FD' in ENV:\n"
                            "    open('zygote-env.txt', 'w').write(ENV.get('PYTEST_XDIST_WORKER', 'none'))\n",
             "test_who.py": WHO}
    r = run_pytest(tmp_path, files, "-q", "--isod-workers=2", target=daemon.target)
    assert r.rc == 0 and "6 passed" in r.out, r.out
    assert "workers start fresh" not in r.out, r.out
    assert len((tmp_path / "collections.txt").read_text().split()) == 2
    assert (tmp_path / "zygote-env.txt").read_text() == "none"

"""Time limits, crashing workers, a test that execs over its worker, collection mismatch."""

from __future__ import annotations

import pytest
from harness.daemon import run_pytest

pytestmark = pytest.mark.large

TIMEOUTS = '''
import time, pytest

@pytest.mark.small
def test_spins_forever():
    while True:
        pass

@pytest.mark.medium(timeout=0.5)
def test_tighter_limit():
    time.sleep(5)

@pytest.mark.small
def test_after():
    pass
'''


def test_time_limits_kill_the_test_and_the_rest_go_on(tmp_path, daemon):
    r = run_pytest(tmp_path, {"test_t.py": TIMEOUTS}, "-q", "--isod-workers=1", target=daemon.target)
    assert r.test("test_spins_forever")["outcome"] == "failed"
    assert r.test("test_tighter_limit")["outcome"] == "failed"
    assert r.test("test_after")["outcome"] == "passed", r.out
    assert "[TC006] Timeout: test_t.py::test_spins_forever (small)" in r.out
    assert "past its limit of 1 s" in r.out
    assert "[TC006] Timeout: test_t.py::test_tighter_limit (medium)" in r.out and "limit of 0.5 s" in r.out


def test_ini_time_limit(tmp_path, daemon):
    files = {"test_t.py": "import time, pytest\n@pytest.mark.medium\ndef test_slow():\n    time.sleep(3)\n",
             "pytest.ini": "[pytest]\nisod_timeout_medium = 0.3\n"}
    r = run_pytest(tmp_path, files, "-q", target=daemon.target)
    assert "limit of 0.3 s" in r.out and r.rc == 1


CRASHES = '''
import ctypes, os, signal, pytest
pytestmark = pytest.mark.small

def test_a_ok():
    pass

def test_segfault():
    ctypes.string_at(0)

def test_abort():
    os.abort()

def test_exit():
    os._exit(3)

def test_sigkill():
    os.kill(os.getpid(), signal.SIGKILL)

def test_z_ok():
    pass
'''


def test_crashing_workers_fail_their_test_and_are_replaced(tmp_path, daemon):
    r = run_pytest(tmp_path, {"test_c.py": CRASHES}, "-q", "--isod-workers=1", target=daemon.target)
    for name, how in (("test_segfault", "signal 11 (SIGSEGV)"), ("test_abort", "signal 6 (SIGABRT)"),
                      ("test_exit", "exit code 3"), ("test_sigkill", "signal 9 (SIGKILL)")):
        assert r.test(name)["outcome"] == "failed", name
        assert f"crashed while running test_c.py::{name}: {how}" in r.out, (name, r.out[-2000:])
    assert r.test("test_a_ok")["outcome"] == "passed"
    assert r.test("test_z_ok")["outcome"] == "passed"
    assert "4 failed, 2 passed" in r.out


def test_max_worker_restart_stops_a_crash_loop(tmp_path, daemon):
    crash = "import os, pytest\n" + "".join(
        f"@pytest.mark.small\ndef test_{i}():\n    os._exit(1)\n" for i in range(6))
    r = run_pytest(tmp_path, {"test_loop.py": crash}, "-q", "--isod-workers=1", "--isod-max-worker-restart=2",
                   target=daemon.target)
    assert r.rc != 0
    assert "workers crashed 3 times, more than --isod-max-worker-restart=2; stopping" in r.out
    assert len(r.report["tests"]) == 3


EXECV = '''
import os, pytest

@pytest.mark.medium
def test_replaces_worker():
    os.execv("/bin/echo", ["echo", "worker-replaced"])

@pytest.mark.medium
def test_after():
    pass
'''


def test_medium_execv_replacing_the_worker_is_detected(tmp_path, daemon):
    r = run_pytest(tmp_path, {"test_e.py": EXECV}, "-q", "--isod-workers=1", target=daemon.target)
    assert r.test("test_replaces_worker")["outcome"] == "failed"
    assert "replaced the worker process with exec: echo worker-replaced" in r.out
    assert r.test("test_after")["outcome"] == "passed"


MISMATCH = '''
import os, pytest
if os.environ.get("ISOD_WORKER_FD"):
    def test_only_in_workers(): pass
else:
    open("imported-outside-isod", "w").close()
    def test_only_in_client(): pass
def test_common(): pass
'''


def test_the_client_reports_what_isod_collected_and_imports_no_test_module(tmp_path, daemon):
    r = run_pytest(tmp_path, {"test_m.py": MISMATCH}, "-q", target=daemon.target)
    assert r.rc == 0, r.out
    assert {t["nodeid"].split("::")[1]: t["outcome"] for t in r.report["tests"]} == {
        "test_only_in_workers": "passed", "test_common": "passed"}, r.out
    assert not (tmp_path / "imported-outside-isod").exists()


NOW_IN_IDS = '''
import datetime, os, time, pytest
@pytest.mark.parametrize("when", [datetime.datetime.now().isoformat(), time.time_ns(), id(object())])
def test_stamped(when): pass
@pytest.mark.medium
@pytest.mark.parametrize("when", [datetime.datetime.now().isoformat(), time.time_ns()])
def test_stamped_medium(when): pass
def test_plain(): pass
'''


@pytest.mark.parametrize("how", [["--isod-workers=2"], ["--isod-workers=1"]])
def test_parameter_ids_made_of_the_time_are_one_collection_for_every_worker(tmp_path, daemon, how):
    r = run_pytest(tmp_path, {"test_now.py": NOW_IN_IDS}, "-q", *how, target=daemon.target)
    assert r.rc == 0 and "6 passed" in r.out, r.out
    assert {t["worker"] for t in r.report["tests"]} >= ({"gw0", "gw1"} if "--isod-workers=2" in how else set())


def test_a_broken_conftest_in_workers_is_reported(tmp_path, daemon):
    files = {"conftest.py":
             "import os\nif os.environ.get('ISOD_WORKER_FD'):\n    raise RuntimeError('boom in worker')\n",
             "test_x.py": "def test_x(): pass\n"}
    r = run_pytest(tmp_path, files, "-q", target=daemon.target)
    assert r.rc != 0
    assert "before collecting" in r.out and "boom in worker" in r.out

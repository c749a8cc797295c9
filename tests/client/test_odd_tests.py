"""Tests that do unusual but legitimate things (or break the worker's channel)
must get their own result and never stall the session: non-UTF-8 argv, bytes
argv, a deleted cwd, garbage on the channel, huge output, a spawn loop."""

from __future__ import annotations

import pytest
from harness.daemon import FIND_CHANNEL, run_pytest

pytestmark = pytest.mark.large

ODD = r'''
import ctypes, os, socket, subprocess, sys, tempfile, pytest

@pytest.mark.small
def test_small_exec_with_a_non_utf8_argument():
    argv = (ctypes.c_char_p * 3)(b"true", b"\xff", None)
    ctypes.CDLL(None).execv(b"/usr/bin/true", argv)

@pytest.mark.medium
def test_medium_non_utf8_argument():
    subprocess.run(["sh", "-c", r'exec true "$(printf "\377")"'], check=True)

@pytest.mark.medium
def test_medium_bytes_argv():
    subprocess.run([b"/usr/bin/true", b"caf\xe9.txt"], check=True)

@pytest.fixture
def deleted_cwd():
    here, gone = os.getcwd(), tempfile.mkdtemp()
    os.chdir(gone)
    os.rmdir(gone)
    yield
    os.chdir(here)

@pytest.mark.medium
def test_medium_spawn_from_a_deleted_cwd(deleted_cwd):
    subprocess.run(["/usr/bin/true"], check=True)

@pytest.mark.small
def test_small_ctypes_lookup_from_a_deleted_cwd(deleted_cwd):
    assert ctypes.CDLL(None).getpid() == os.getpid()

@pytest.mark.small
def test_small_zz_last():
    pass
'''

GARBAGE = FIND_CHANNEL + '''
import os, socket, pytest

@pytest.mark.small
def test_writes_garbage_on_its_channel():
    worker_channel().send(b"\\x00\\xff\\xff\\xff\\xff")

@pytest.mark.small
def test_after():
    pass
'''

BIG = '''
import ctypes, os, sys, pytest

@pytest.mark.medium
def test_prints_20_mb_and_fails():
    chunk = "y" * (1 << 20)
    for _ in range(20):
        sys.stdout.write(chunk)
    assert 0

@pytest.mark.small
def test_many_denied_execs_with_a_1mb_argv():
    arg = b"x" * 4095
    argv = (ctypes.c_char_p * 258)(*([arg] * 256), None, None)
    libc = ctypes.CDLL(None)
    for _ in range(12):
        libc.execv(b"/nonexistent", argv)

@pytest.mark.small
def test_innocent():
    pass
'''


def test_odd_arguments_and_cwds_get_their_own_result(tmp_path, daemon):
    r = run_pytest(tmp_path, {"test_odd.py": ODD}, "-q", target=daemon.target, timeout=60)
    outcomes = {t["nodeid"].split("::")[1]: t["outcome"] for t in r.report["tests"]}
    assert outcomes == {
        "test_small_exec_with_a_non_utf8_argument": "failed",     # TC003, not a stalled session
        "test_medium_non_utf8_argument": "passed",
        "test_medium_bytes_argv": "passed",
        "test_medium_spawn_from_a_deleted_cwd": "passed",
        "test_small_ctypes_lookup_from_a_deleted_cwd": "passed",
        "test_small_zz_last": "passed",
    }, r.out
    assert "Attempted execve: true '\\xff'" in r.out, r.out


def test_garbage_on_the_channel_fails_that_test_and_the_rest_run(tmp_path, daemon):
    r = run_pytest(tmp_path, {"test_g.py": GARBAGE}, "-q", "--isod-workers=1", target=daemon.target, timeout=60)
    assert r.test("test_writes_garbage_on_its_channel")["outcome"] in ("failed", "error"), r.out
    assert "bytes that are not a WorkerEvent" in r.out, r.out
    assert r.test("test_after")["outcome"] == "passed", r.out


def test_huge_output_and_records_are_cut_not_lost(tmp_path, daemon):
    r = run_pytest(tmp_path, {"test_big.py": BIG}, "-q", "--isod-workers=1", target=daemon.target, timeout=120)
    assert r.rc == 1, r.out[-3000:]
    assert r.test("test_prints_20_mb_and_fails")["outcome"] == "failed"
    assert "isod cut" in r.out and len(r.out) < 20 << 20
    big = r.test("test_many_denied_execs_with_a_1mb_argv")
    assert big["outcome"] == "failed" and len(big["commands"]) == 12, big
    assert "(12 commands attempted, 12 denied in the kernel" in r.out
    # 12 MB of argv: past 8 MB the argv is no longer kept
    assert [bool(c["argv"]) for c in big["commands"]][-1] is False
    assert r.test("test_innocent")["outcome"] == "passed"


def test_a_test_that_stops_its_embedded_daemon_does_not_hang_the_run(tmp_path):
    files = {"test_stop.py": """
import os, signal, time, pytest

@pytest.mark.small
def test_freezes_its_daemon():
    os.kill(os.getppid(), signal.SIGSTOP)   # the worker's parent is the daemon
    time.sleep(0.1)

@pytest.mark.small
def test_after():
    pass
"""}
    # embedded daemon; fresh workers (a forked worker's parent is the zygote)
    r = run_pytest(tmp_path, files, "-q", "--isod-workers=1", timeout=60, env={"ISOD_ZYGOTE": "0"})
    assert r.rc == 0 and "2 passed" in r.out, r.out
    assert "isod: a process stopped the embedded daemon (SIGSTOP) 1 time(s); isod continued it" in r.out


def test_a_test_that_stops_its_zygote_does_not_hang_the_run(tmp_path):
    """A forked worker's parent is the zygote: stopped, it can neither fork
    nor report its workers' exits, and the session still ends."""
    files = {"test_stop.py": """
import os, signal, pytest

@pytest.mark.small
def test_freezes_its_zygote():
    os.kill(os.getppid(), signal.SIGSTOP)

@pytest.mark.small
def test_after():
    pass
"""}
    r = run_pytest(tmp_path, files, "-q", "--isod-workers=1", timeout=60)
    assert r.rc == 0 and "2 passed" in r.out, r.out

"""Every known escape route (docs/threat-model.md) as a small test run through a real daemon:
each must fail with TC003 naming the command it tried."""

from __future__ import annotations

import sys

import pytest
from harness.daemon import run_pytest

pytestmark = pytest.mark.large   # a real daemon, real workers, a real pytest run

ESCAPES = '''
import asyncio, concurrent.futures, ctypes, multiprocessing, os, pty, subprocess, sys, threading
import pytest
from subprocess import Popen

pytestmark = pytest.mark.small
libc = ctypes.CDLL(None, use_errno=True)

def test_subprocess_run():
    subprocess.run(["echo", "via-run"])

def test_shell_true():
    subprocess.run("echo via-shell", shell=True)

def test_popen_imported_at_module_level():
    Popen(["echo", "via-popen"]).wait()

def test_os_system_returns_quietly():
    assert os.system("echo via-system") != 0    # denied: no exception reaches pytest

def test_os_popen():
    os.popen("echo via-popen2").read()

def test_os_fork():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)

def test_posix_spawn():
    os.posix_spawn("/bin/echo", ["echo", "via-posix-spawn"], os.environ)

def test_spawnv():
    os.spawnv(os.P_WAIT, "/bin/echo", ["echo", "via-spawnv"])

def test_pty_fork():
    pid, fd = pty.fork()
    if pid == 0:
        os._exit(0)

def test_ctypes_system():
    libc.system(b"echo via-libc-system")

def test_ctypes_fork():
    pid = libc.fork()
    if pid == 0:
        os._exit(0)

def test_swallowed_permission_error():
    try:
        subprocess.check_output(["git", "rev-parse", "HEAD"])
    except PermissionError:
        pass

def test_execv_of_the_worker_itself():
    try:
        os.execv("/bin/echo", ["echo", "replaced-the-worker"])
    except PermissionError:
        pass

def test_from_new_thread():
    errors = []
    def go():
        try:
            subprocess.run(["echo", "via-thread"])
        except OSError as e:
            errors.append(e)
    t = threading.Thread(target=go); t.start(); t.join()

def test_multiprocessing_fork():
    ctx = multiprocessing.get_context("fork")
    p = ctx.Process(target=print)
    try:
        p.start(); p.join()
    except OSError:
        pass

def test_multiprocessing_spawn():
    ctx = multiprocessing.get_context("spawn")
    p = ctx.Process(target=print)
    try:
        p.start(); p.join()
    except OSError:
        pass

def test_process_pool():
    try:
        with concurrent.futures.ProcessPoolExecutor(1) as ex:
            ex.submit(print).result()
    except Exception:
        pass

def test_asyncio_subprocess():
    async def main():
        p = await asyncio.create_subprocess_exec("echo", "via-asyncio")
        await p.wait()
    try:
        asyncio.run(main())
    except PermissionError:
        pass

@pytest.fixture
def spawning_fixture():
    subprocess.run(["echo", "via-fixture"])
    yield

def test_spawn_in_fixture(spawning_fixture):
    pass
'''

CONFTEST_THREAD = '''
import subprocess, threading, time
go = threading.Event()
def background():
    go.wait()
    try:
        subprocess.run(["echo", "via-import-time-thread"])
    except OSError:
        pass
threading.Thread(target=background, daemon=True).start()
'''

THREAD_TEST = '''
import time, pytest, conftest
@pytest.mark.small
def test_thread_started_at_import():
    conftest.go.set()
    time.sleep(0.3)
'''

EXPECT = {
    "test_subprocess_run": "echo via-run",
    "test_shell_true": "echo via-shell",
    "test_popen_imported_at_module_level": "echo via-popen",
    "test_os_system_returns_quietly": "echo via-system",
    "test_os_popen": "echo via-popen2",
    "test_os_fork": "os.fork",
    "test_posix_spawn": "echo via-posix-spawn",
    "test_spawnv": "echo via-spawnv",
    "test_pty_fork": "os.forkpty",
    "test_ctypes_system": "looked up through ctypes: system",
    "test_ctypes_fork": "looked up through ctypes: fork",
    "test_swallowed_permission_error": "git rev-parse HEAD",
    "test_execv_of_the_worker_itself": "echo replaced-the-worker",
    "test_from_new_thread": "echo via-thread",
    "test_multiprocessing_fork": "Attempted",
    "test_multiprocessing_spawn": "Attempted",
    "test_process_pool": "Attempted",
    "test_asyncio_subprocess": "echo via-asyncio",
    "test_spawn_in_fixture": "echo via-fixture",
}


def test_every_escape_fails_with_tc003(tmp_path, daemon):
    r = run_pytest(tmp_path, {"test_escapes.py": ESCAPES}, "-q", target=daemon.target)
    assert r.report is not None, r.out
    for name, needle in EXPECT.items():
        t = r.test(name)
        assert t["outcome"] in ("failed", "error"), (name, r.out[-3000:])
        block = r.failure_block(name)
        assert "[TC003] Subprocess Spawn Violation" in block, (name, block)
        assert needle in block, (name, needle, block)
        assert any(c["decision"] in ("deny", "enosys") for c in t["commands"]), name
    # nothing the tests tried actually ran: `echo via-x` would print a line "via-x"
    # (pytest shows it under "Captured stdout"); tracebacks only quote it
    assert not [line for line in r.out.splitlines() if line.strip().startswith("via-")]
    # the fixture's spawn fails setup, i.e. an error, with the command
    assert r.test("test_spawn_in_fixture")["outcome"] == "error"
    assert f"{len(EXPECT) - 1} failed, 1 error" in r.out.splitlines()[-1]


def test_thread_started_by_conftest_at_import_is_covered(tmp_path, daemon):
    r = run_pytest(tmp_path, {"conftest.py": CONFTEST_THREAD, "test_t.py": THREAD_TEST}, "-q",
                   target=daemon.target)
    t = r.test("test_thread_started_at_import")
    assert t["outcome"] == "failed", r.out
    assert "echo via-import-time-thread" in r.out


NO_FALSE_POSITIVES = '''
import concurrent.futures, socket, threading, time, pytest
pytestmark = pytest.mark.small

def test_threads():
    ts = [threading.Thread(target=time.sleep, args=(0.001,)) for _ in range(10)]
    [t.start() for t in ts]; [t.join() for t in ts]

def test_thread_pool():
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        assert sum(ex.map(abs, range(-50, 50))) == 2500

def test_files(tmp_path):
    (tmp_path / "f").write_text("x")
    assert (tmp_path / "f").read_text() == "x"

def test_socketpair():
    a, b = socket.socketpair()
    a.sendall(b"hi"); assert b.recv(2) == b"hi"

def test_short_sleep():
    time.sleep(0.01)

def test_capsys(capsys):
    print("hello")
    assert capsys.readouterr().out == "hello\\n"
'''


def test_no_false_positives(tmp_path, daemon):
    r = run_pytest(tmp_path, {"test_fine.py": NO_FALSE_POSITIVES}, "-q", target=daemon.target)
    assert r.rc == 0, r.out
    assert "6 passed" in r.out
    assert all(t["commands"] == [] for t in r.report["tests"]), r.report


MEDIUM = '''
import subprocess, pytest

@pytest.mark.medium
def test_medium_spawns():
    assert subprocess.run(["echo", "medium-ok"], capture_output=True).stdout == b"medium-ok\\n"

@pytest.mark.large
def test_large_spawns():
    assert subprocess.run(["true"]).returncode == 0
'''


def test_medium_and_large_may_spawn_and_are_recorded(tmp_path, daemon):
    r = run_pytest(tmp_path, {"test_m.py": MEDIUM}, "-q", target=daemon.target)
    assert r.rc == 0, r.out
    med = r.test("test_medium_spawns")
    assert med["size"] == "medium"
    execs = [c for c in med["commands"] if c["syscall"] == "execve"]
    assert any(c["argv"] == ["echo", "medium-ok"] and c["decision"] == "allow" for c in execs), med
    assert all(c["ppid"] > 0 and c["phase"] == "call" for c in execs)
    assert any(c["argv"] == ["true"] for c in r.test("test_large_spawns")["commands"])


def test_python_interpreter_is_the_clients(tmp_path, daemon):
    code = "import sys\ndef test_x():\n    print(sys.executable)\n    assert 0\n"
    r = run_pytest(tmp_path, {"test_py.py": code}, "-q", target=daemon.target)
    assert sys.executable in r.out

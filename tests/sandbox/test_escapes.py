"""Every known escape route (docs/threat-model.md), tried for real under the SMALL rule.

Each test runs a sandboxed program that tries to start ``/usr/bin/touch MARKER``
one way or another. The attempt must be denied (the caller gets an error), it
must be recorded with the syscall it used (and, for an exec, the path and
argv it passed), and nothing may have run: MARKER does not exist.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest
from harness.sandbox import MEDIUM, SMALL, Run, run_in, run_py

pytestmark = pytest.mark.medium   # these tests start sandboxed processes

TOUCH = "/usr/bin/touch"
C_DIR = Path(__file__).parent / "c"
SPAWNS = {"fork", "vfork", "clone", "clone3"}


def attempt(backend, tmp_path: Path, body: str, rule=SMALL) -> tuple[Run, Path]:
    """Run Python ``body`` sandboxed; it sees MARKER (a path) and TOUCH (argv)."""
    marker = tmp_path / "ran"
    head = f"import os, sys\nMARKER = {str(marker)!r}\nTOUCH = [{TOUCH!r}, MARKER]\n"
    return run_py(backend, head + textwrap.dedent(body), rule), marker


def blocked(r: Run, marker: Path) -> list:
    """Common checks; returns the attempts recorded after the launch (all of them
    denied or answered ENOSYS)."""
    assert not marker.exists(), "the spawned command ran"
    assert r.rc == 0, f"exit {r.rc}: {r.err}"
    launch, *after = r.events
    assert launch.syscall == "execve" and launch.decision == "allow"      # the launch itself
    assert after, "the attempt was not recorded"
    assert all(e.decision in ("deny", "enosys") for e in after), after
    # the caller's ids are read while it is held: right even if it exits at once
    assert all(e.pid == launch.pid and e.ppid == launch.ppid for e in after), after
    assert r.denied(), "nothing was denied"
    return after


def syscalls(events) -> list[tuple[str, str]]:
    return [(e.syscall, e.decision) for e in events]


def assert_fork_like(events) -> None:
    """Process creations only, never a thread, each a plain fork of the caller."""
    for e in events:
        assert e.syscall in SPAWNS, e
        assert not e.clone_flags & 0x00010000, e       # CLONE_THREAD


# --- the subprocess family -------------------------------------------------
def test_subprocess_vfork_path(backend, tmp_path):
    r, marker = attempt(backend, tmp_path, """
        import subprocess
        try:
            subprocess.run(TOUCH)
        except PermissionError as e:
            print("EPERM", e.errno)
    """)
    after = blocked(r, marker)
    assert r.out.strip() == "EPERM 1"
    assert after[0].syscall == "vfork" and after[0].decision == "deny"   # vfork first (docs/kernel-notes.md)
    assert_fork_like(after)


def test_subprocess_preexec_fn_clone_path(backend, tmp_path):
    r, marker = attempt(backend, tmp_path, """
        import subprocess
        try:
            subprocess.run(TOUCH, preexec_fn=lambda: None)
        except PermissionError as e:
            print("EPERM", e.errno)
    """)
    after = blocked(r, marker)
    assert r.out.strip() == "EPERM 1"
    assert syscalls(after) == [("clone", "deny")]
    assert after[0].clone_flags & 0xFF == signal.SIGCHLD


def test_subprocess_shell_true(backend, tmp_path):
    r, marker = attempt(backend, tmp_path, """
        import subprocess
        try:
            subprocess.run(f"touch {MARKER}", shell=True)
        except PermissionError as e:
            print("EPERM", e.errno)
    """)
    after = blocked(r, marker)
    assert r.out.strip() == "EPERM 1"
    assert after[0].syscall == "vfork"
    assert not r.of("execve", "execveat")[1:], "the shell's exec was reached"


def test_os_system_returns_nonzero_and_is_recorded(backend, tmp_path):
    r, marker = attempt(backend, tmp_path, "print(os.system(f'touch {MARKER}'))")
    after = blocked(r, marker)
    assert int(r.out) != 0          # 32512 (127 << 8) here: no exception to catch
    assert syscalls(after) == [("clone3", "enosys"), ("clone", "deny")]


def test_os_popen(backend, tmp_path):
    r, marker = attempt(backend, tmp_path, """
        try:
            print(repr(os.popen(f"touch {MARKER}").read()))
        except PermissionError as e:
            print("EPERM", e.errno)
    """)
    after = blocked(r, marker)
    assert r.out.strip() == "EPERM 1"
    assert after[0].syscall == "vfork"
    assert_fork_like(after)


def test_os_fork(backend, tmp_path):
    r, marker = attempt(backend, tmp_path, """
        try:
            if os.fork() == 0:
                open(MARKER, "w").close()
                os._exit(0)
        except PermissionError as e:
            print("EPERM", e.errno)
    """)
    after = blocked(r, marker)
    assert r.out.strip() == "EPERM 1"
    assert syscalls(after) == [("clone", "deny")]
    assert after[0].clone_flags & 0xFF == signal.SIGCHLD


def test_os_posix_spawn_clone3_then_clone(backend, tmp_path):
    r, marker = attempt(backend, tmp_path, """
        try:
            os.posix_spawn(TOUCH[0], TOUCH, {})
        except PermissionError as e:
            print("EPERM", e.errno)
    """)
    after = blocked(r, marker)
    assert r.out.strip() == "EPERM 1"
    # glibc tries clone3, gets ENOSYS, falls back to clone: both recorded
    assert syscalls(after) == [("clone3", "enosys"), ("clone", "deny")]
    assert_fork_like(after)


def test_os_spawnv(backend, tmp_path):
    r, marker = attempt(backend, tmp_path, """
        try:
            print(os.spawnv(os.P_WAIT, TOUCH[0], TOUCH))
        except PermissionError as e:
            print("EPERM", e.errno)
    """)
    after = blocked(r, marker)
    assert r.out.strip() == "EPERM 1"
    assert syscalls(after) == [("clone", "deny")]


def test_pty_fork(backend, tmp_path):
    r, marker = attempt(backend, tmp_path, """
        import pty
        try:
            if pty.fork()[0] == 0:
                open(MARKER, "w").close()
                os._exit(0)
        except OSError as e:
            print("refused", e.errno)
    """)
    after = blocked(r, marker)
    assert r.out.strip() == "refused 1"
    assert {s for s, _ in syscalls(after)} == {"clone"}
    assert_fork_like(after)


# --- C level: ctypes and raw syscalls ----------------------------------------
LIBC = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
"""


def test_ctypes_libc_system(backend, tmp_path):
    r, marker = attempt(backend, tmp_path, LIBC + """
print(libc.system(f"touch {MARKER}".encode()))
""")
    after = blocked(r, marker)
    assert int(r.out) != 0
    assert syscalls(after) == [("clone3", "enosys"), ("clone", "deny")]


def test_ctypes_libc_fork(backend, tmp_path):
    r, marker = attempt(backend, tmp_path, LIBC + """
pid = libc.fork()
if pid == 0:
    open(MARKER, "w").close()
    os._exit(0)
print(pid, ctypes.get_errno())
""")
    after = blocked(r, marker)
    assert r.out.split() == ["-1", "1"]
    assert syscalls(after) == [("clone", "deny")]


def test_raw_clone_syscall(backend, tmp_path):
    r, marker = attempt(backend, tmp_path, LIBC + """
import signal
pid = libc.syscall(56, signal.SIGCHLD, 0, 0, 0, 0)
if pid == 0:
    open(MARKER, "w").close()
    os._exit(0)
print(pid, ctypes.get_errno())
""")
    after = blocked(r, marker)
    assert r.out.split() == ["-1", "1"]
    assert syscalls(after) == [("clone", "deny")]
    assert after[0].clone_flags == signal.SIGCHLD


@pytest.mark.parametrize("flags", [0, 0x00000400], ids=["plain", "CLONE_FILES"])
def test_raw_clone3_without_clone_thread_is_recorded_and_gets_enosys(backend, tmp_path, flags):
    r, marker = attempt(backend, tmp_path, LIBC + f"""
import signal
FIELDS = "flags pidfd child_tid parent_tid exit_signal stack stack_size tls set_tid set_tid_size cgroup"
class CloneArgs(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in FIELDS.split()]
args = CloneArgs(flags={flags}, exit_signal=signal.SIGCHLD)
pid = libc.syscall(435, ctypes.byref(args), ctypes.sizeof(args))
if pid == 0:
    open(MARKER, "w").close()
    os._exit(0)
print(pid, ctypes.get_errno())
""")
    assert not marker.exists()
    assert r.rc == 0, r.err
    assert r.out.split() == ["-1", "38"]              # ENOSYS, as a thread's clone3 gets
    after = r.events[1:]
    assert syscalls(after) == [("clone3", "enosys")]
    assert after[0].clone_flags == flags
    assert after[0].pid == r.events[0].pid


def test_raw_execveat_syscall(backend, tmp_path):
    r, marker = attempt(backend, tmp_path, LIBC + """
argv = (ctypes.c_char_p * 3)(*[a.encode() for a in TOUCH], None)
envp = (ctypes.c_char_p * 1)(None)
print(libc.syscall(322, -100, TOUCH[0].encode(), argv, envp, 0), ctypes.get_errno())   # AT_FDCWD
""")
    after = blocked(r, marker)
    assert r.out.split() == ["-1", "1"]
    (ev,) = after
    assert (ev.syscall, ev.decision, ev.abi) == ("execveat", "deny", "x86_64")
    assert ev.path == TOUCH and ev.argv == [TOUCH, str(marker)]


def test_os_execv_in_the_sandboxed_process_itself(backend, tmp_path):
    r, marker = attempt(backend, tmp_path, """
        try:
            os.execv(TOUCH[0], TOUCH)
        except PermissionError as e:
            print("kept", e.errno)
    """)
    after = blocked(r, marker)
    assert r.out.strip() == "kept 1"
    (ev,) = after
    assert (ev.syscall, ev.decision) == ("execve", "deny")
    assert ev.path == TOUCH and ev.argv == [TOUCH, str(marker)] and ev.cwd


# --- other ABIs: i386 (int 0x80) and x32 ------------------------------------
@pytest.fixture(scope="module")
def abi_escape(tmp_path_factory) -> str:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed: cannot build the int 0x80 / x32 test program")
    exe = tmp_path_factory.mktemp("c") / "abi_escape"
    subprocess.run([gcc, "-O1", "-Wall", "-Werror", "-o", str(exe), str(C_DIR / "abi_escape.c")], check=True)
    return str(exe)


def test_exec_from_a_thread_made_with_clone_untraced(backend, tmp_path):
    """A thread the kernel would not report to a tracer (CLONE_UNTRACED): its
    exec is still judged and recorded (the ptrace backend traps such a clone
    to clear the flag; user notification needs no tracer)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    exe = tmp_path / "untraced_thread"
    subprocess.run([gcc, "-O1", "-Wall", "-Werror", "-o", str(exe), str(C_DIR / "untraced_thread.c")], check=True)
    marker = tmp_path / "ran"
    r = run_in(backend, [str(exe), str(marker)], SMALL)
    after = blocked(r, marker)
    assert r.out.split() == ["exec", "-1"], r.out + r.err          # -EPERM, not ENOSYS
    (ev,) = after
    assert (ev.syscall, ev.decision, ev.argv) == ("execve", "deny", [TOUCH, str(marker)])
    assert ev.tid != ev.pid                                          # from the thread


@pytest.mark.parametrize("call", ["fork", "vfork", "clone", "execve", "execveat"])
def test_i386_int80(backend, tmp_path, abi_escape, call):
    marker = tmp_path / "ran"
    r = run_in(backend, [abi_escape, "i386", call, str(marker)], SMALL)
    after = blocked(r, marker)
    assert r.out.split() == [call, "-1"]            # -EPERM
    (ev,) = after
    assert (ev.syscall, ev.abi, ev.decision) == (call, "i386", "deny")
    if call.startswith("exec"):
        assert ev.path == TOUCH and ev.argv == [TOUCH, str(marker)]
    if call == "clone":
        assert ev.clone_flags == signal.SIGCHLD


@pytest.mark.parametrize("call", ["fork", "vfork", "clone", "execve", "execve64", "execveat"])
def test_x32_numbers_get_enosys(backend, tmp_path, abi_escape, call):
    marker = tmp_path / "ran"
    r = run_in(backend, [abi_escape, "x32", call, str(marker)], SMALL)
    assert not marker.exists()
    assert r.rc == 0, r.err
    assert r.out.split() == [call, "-38"]            # -ENOSYS
    assert all(e.decision != "allow" for e in r.events[1:]), r.events


# --- threads, vfork children, pools, event loops -----------------------------
def test_exec_from_a_non_main_thread(backend, tmp_path):
    r, marker = attempt(backend, tmp_path, """
        import threading
        got = []
        def go():
            got.append(threading.get_native_id())
            try:
                os.execv(TOUCH[0], TOUCH)
            except PermissionError as e:
                got.append(e.errno)
        t = threading.Thread(target=go)
        t.start(); t.join()
        print(*got)
    """)
    after = blocked(r, marker)
    tid, err = map(int, r.out.split())
    assert err == 1
    (ev,) = after
    assert (ev.syscall, ev.decision) == ("execve", "deny")
    assert ev.tid == tid != ev.pid
    assert ev.argv == [TOUCH, str(marker)]


def test_subprocess_from_a_non_main_thread(backend, tmp_path):
    r, marker = attempt(backend, tmp_path, """
        import subprocess, threading
        got = []
        def go():
            got.append(threading.get_native_id())
            try:
                subprocess.run(TOUCH)
            except PermissionError as e:
                got.append(e.errno)
        t = threading.Thread(target=go)
        t.start(); t.join()
        print(*got)
    """)
    after = blocked(r, marker)
    tid, err = map(int, r.out.split())
    assert err == 1
    assert after[0].syscall == "vfork"
    assert all(e.tid == tid for e in after)


def test_vfork_child_exec_is_recorded_under_the_child(backend, tmp_path):
    """MEDIUM allows it: the vfork is the parent's, the exec is the child's own
    notification (the parent is held meanwhile), with the parent as ppid."""
    r, marker = attempt(backend, tmp_path, """
        import subprocess
        p = subprocess.Popen(TOUCH)
        print(p.wait(), p.pid, os.getpid())
    """, rule=MEDIUM)
    assert r.rc == 0, r.err
    assert marker.exists()
    status, child, parent = map(int, r.out.split())
    assert status == 0
    after = r.events[1:]                               # [0] is the launch
    assert syscalls(after) == [("vfork", "allow"), ("execve", "allow")]
    vfork, execve = after
    assert vfork.pid == parent
    assert execve.pid == execve.tid == child
    assert execve.ppid == parent
    assert execve.path == TOUCH and execve.argv == [TOUCH, str(marker)]


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_multiprocessing(backend, tmp_path, method):
    r, marker = attempt(backend, tmp_path, f"""
        import multiprocessing as mp
        if __name__ == "__main__":
            ctx = mp.get_context({method!r})
            try:
                p = ctx.Process(target=os.mknod, args=(MARKER,))
                p.start()
                p.join()
                print("ran", p.exitcode)
            except PermissionError as e:
                print("EPERM", e.errno)
    """)
    after = blocked(r, marker)
    assert r.out.strip() == "EPERM 1"
    assert after[0].syscall == ("clone" if method == "fork" else "vfork")
    assert_fork_like(after)


def test_process_pool_executor(backend, tmp_path):
    r, marker = attempt(backend, tmp_path, """
        import concurrent.futures as cf
        if __name__ == "__main__":
            try:
                with cf.ProcessPoolExecutor(2) as ex:
                    ex.submit(os.mknod, MARKER).result(timeout=10)
                print("ran")
            except Exception as e:
                print(type(e).__name__, getattr(e, "errno", None))
    """)
    after = blocked(r, marker)
    assert r.out.strip() == "PermissionError 1"
    assert_fork_like(after)


def test_asyncio_create_subprocess_exec(backend, tmp_path):
    r, marker = attempt(backend, tmp_path, """
        import asyncio
        async def main():
            try:
                p = await asyncio.create_subprocess_exec(*TOUCH)
                print("ran", await p.wait())
            except PermissionError as e:
                print("EPERM", e.errno)
        asyncio.run(main())
    """)
    after = blocked(r, marker)
    assert r.out.strip() == "EPERM 1"
    assert after[0].syscall == "vfork"
    assert_fork_like(after)


def test_swallowed_permission_error_is_still_recorded(backend, tmp_path):
    r, marker = attempt(backend, tmp_path, """
        import subprocess
        try:
            subprocess.run(TOUCH)
        except PermissionError:
            pass
    """)
    after = blocked(r, marker)       # exit 0, nothing printed: only the record tells
    assert r.out == "" and r.err == ""
    assert after[0].syscall == "vfork"


# --- no false positives --------------------------------------------------------
def test_no_false_positives_under_small(backend, tmp_path):
    r, _ = attempt(backend, tmp_path, f"""
        import concurrent.futures as cf, socket, threading, time
        ts = [threading.Thread(target=time.sleep, args=(0.001,)) for _ in range(10)]
        [t.start() for t in ts]; [t.join() for t in ts]
        with cf.ThreadPoolExecutor(4) as ex:
            total = sum(ex.map(lambda x: x * x, range(50)))
        path = os.path.join({str(tmp_path)!r}, "data.txt")
        with open(path, "w") as f:
            f.write("x" * 10000)
        with open(path) as f:
            size = len(f.read())
        os.unlink(path)
        a, b = socket.socketpair()
        a.sendall(b"ping"); got = b.recv(4); a.close(); b.close()
        time.sleep(0.01)
        print(total, size, got.decode())
    """)
    assert r.rc == 0, r.err
    assert r.out.split() == ["40425", "10000", "ping"]
    assert r.denied() == []
    assert syscalls(r.events) == [("execve", "allow")]     # threads never reach the supervisor

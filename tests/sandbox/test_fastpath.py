"""The supervisor's two hot paths give the same Events: the C one
(isod.sandbox._notif) and its pure-Python twin (used when the extension is not
built, or with ISOD_NO_C=1).

Each scenario runs once per path on the real kernel and the Events are
compared field by field (pids by their role: the first pid seen is 1, the
next new one 2, ...; times left out). Each also checks what the Events must
say, so that both paths being wrong the same way fails too. Without the
extension only the Python path runs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sysconfig
import textwrap
from pathlib import Path

import pytest
from harness.sandbox import SMALL, Run, run_in, run_py
from isod.policy import IDLE
from isod.sandbox import seccomp_backend
from isod.sandbox.events import Event
from isod.sandbox.seccomp_backend import SeccompBackend

pytestmark = pytest.mark.medium   # these tests start sandboxed processes

C_DIR = Path(__file__).parent / "c"
TIMES = ("t_ns", "latency_ns")
IDS = ("pid", "tid", "ppid")
CLONE_VM, CLONE_VFORK, CLONE_THREAD = 0x100, 0x4000, 0x10000
AT_EMPTY_PATH = 0x1000


@pytest.fixture(scope="module")
def paths():
    """{"c": backend on the C path, "py": backend on the Python path} (no "c"
    when the extension is not built)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ISOD_NO_C", "1")
        py = SeccompBackend()
        assert not py.fast_path
    out = {"py": py}
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("ISOD_NO_C", raising=False)
        c = SeccompBackend()
    if c.fast_path:
        out["c"] = c
    else:
        assert seccomp_backend._notif is None
        c.close()
    yield out
    for b in out.values():
        b.close()


def on_both(paths, run) -> dict[str, Run]:
    """run(backend) -> Run on each path; asserts the Events agree; returns the Runs."""
    runs = {name: run(b) for name, b in paths.items()}
    if "c" in runs:
        c, py = (normalized(runs[k].events) for k in ("c", "py"))
        assert len(c) == len(py), (runs["c"].events, runs["py"].events)
        for i, (a, b) in enumerate(zip(c, py)):
            assert a == b, f"event {i} differs:\n  C:      {a}\n  Python: {b}"
    return runs


def normalized(events: list[Event]) -> list[dict]:
    roles: dict[int, int] = {0: 0}
    out = []
    for ev in events:
        d = {k: v for k, v in ev.to_dict().items() if k not in TIMES}
        for k in IDS:
            d[k] = roles.setdefault(d[k], len(roles))
        out.append(d)
    return out


def py_in(tmp_path: Path, code: str, rule=SMALL):
    code = textwrap.dedent(code)
    return lambda backend: run_py(backend, code, rule, cwd=tmp_path)


# --- execve / execveat: argv as read out of the caller ------------------------
def test_execve_argv_long_many_and_undecodable(paths, tmp_path):
    runs = on_both(paths, py_in(tmp_path, """
        import os
        LONG, EXACT = "x" * 5000, "y" * 4096
        MANY = [str(i) for i in range(300)]
        for path, argv in [
            ("/bin/true", ["/bin/true", "a b", "\\u00fc", LONG, ""]),
            ("/bin/true", ["/bin/true", EXACT]),
            ("/bin/true", ["/bin/true", *MANY]),
            ("/bin/true", ["t", *[str(i) for i in range(255)]]),
            (b"/bin/true", [b"/bin/true", b"\\xff\\xfe", b"ok"]),
            ("/nonexistent/" + "p" * 5000, ["p"]),
        ]:
            try:
                os.execv(path, argv)
            except OSError as e:
                print(e.errno, flush=True)
    """))
    for r in runs.values():
        assert r.rc == 0, r.err
        assert r.out.split() == ["1"] * 6          # every exec denied (EPERM), the process went on
        launch, *execs = r.of("execve")
        assert launch.decision == "allow" and launch.argv_complete
        assert [e.decision for e in execs] == ["deny"] * 6
        first, exact, many, fits, raw, long_path = execs
        assert first.argv == ["/bin/true", "a b", "\u00fc", "x" * 4096, ""]
        assert not first.argv_complete                          # a string was cut at 4096 bytes
        assert exact.argv == ["/bin/true", "y" * 4096] and exact.argv_complete
        assert many.argv == ["/bin/true", *[str(i) for i in range(255)]]
        assert len(many.argv) == 256 and not many.argv_complete  # argv was cut at 256 entries
        assert len(fits.argv) == 256 and fits.argv_complete
        assert raw.path == "/bin/true" and raw.argv == ["/bin/true", "\udcff\udcfe", "ok"]   # as os.fsdecode
        assert long_path.path == "/nonexistent/" + "p" * (4096 - 13) and not long_path.argv_complete
        for e in execs:
            assert e.cwd == str(tmp_path)
            assert (e.pid, e.tid, e.ppid) == (launch.pid, launch.pid, launch.ppid)


def test_execveat_and_exec_from_a_thread(paths, tmp_path):
    runs = on_both(paths, py_in(tmp_path, """
        import os, threading
        fd = os.open("/bin/true", os.O_RDONLY)
        try:
            os.execve(fd, ["true", "by-fd"], {})     # fexecve: execveat(fd, "", ..., AT_EMPTY_PATH)
        except OSError as e:
            print(e.errno, flush=True)
        def go():
            try:
                os.execv("/bin/true", ["true", "from-thread"])
            except OSError as e:
                print(e.errno, threading.get_native_id(), flush=True)
        t = threading.Thread(target=go)
        t.start(); t.join()
    """))
    for r in runs.values():
        assert r.rc == 0, r.err
        (at,) = r.of("execveat")
        launch, from_thread = r.of("execve")
        assert (at.decision, at.path, at.argv, at.clone_flags) == ("deny", "", ["true", "by-fd"], AT_EMPTY_PATH)
        tid = int(r.out.split()[2])
        assert from_thread.argv == ["true", "from-thread"] and from_thread.decision == "deny"
        assert from_thread.tid == tid != from_thread.pid == launch.pid      # tgid of a non-leader thread
        assert from_thread.ppid == launch.ppid
        assert not r.of("clone3"), "a thread's clone3 is answered ENOSYS without a record"


@pytest.fixture(scope="module")
def abi_escape(tmp_path_factory) -> str:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed: cannot build the int 0x80 test program")
    exe = tmp_path_factory.mktemp("c") / "abi_escape"
    subprocess.run([gcc, "-O1", "-Wall", "-Werror", "-o", str(exe), str(C_DIR / "abi_escape.c")], check=True)
    return str(exe)


@pytest.mark.parametrize("call", ["execve", "execveat"])
def test_i386_exec_argv_of_32_bit_pointers(paths, tmp_path, abi_escape, call):
    marker = tmp_path / "ran"
    runs = on_both(paths, lambda b: run_in(b, [abi_escape, "i386", call, str(marker)], SMALL, cwd=tmp_path))
    for r in runs.values():
        assert r.out.split() == [call, "-1"]
        (ev,) = r.of(call) if call == "execveat" else r.of(call)[1:]
        assert (ev.abi, ev.decision) == ("i386", "deny")
        assert ev.path == "/usr/bin/touch" and ev.argv == ["/usr/bin/touch", str(marker)] and ev.argv_complete
        assert ev.cwd == str(tmp_path)
    assert not marker.exists()


# --- clone3 and the vfork family -------------------------------------------------
def test_raw_clone3_flags_above_32_bits(paths, tmp_path):
    runs = on_both(paths, py_in(tmp_path, """
        import ctypes, signal
        libc = ctypes.CDLL(None, use_errno=True)
        args = (ctypes.c_uint64 * 11)()          # struct clone_args
        args[0] = (1 << 32) | 0x200               # CLONE_CLEAR_SIGHAND | CLONE_FS
        args[4] = signal.SIGCHLD
        r = libc.syscall(435, ctypes.byref(args), ctypes.sizeof(args))
        print(r, ctypes.get_errno(), flush=True)
    """, IDLE))
    for r in runs.values():
        assert r.out.split() == ["-1", "38"]                  # ENOSYS, whatever the rule
        (ev,) = r.of("clone3")
        assert (ev.decision, ev.clone_flags) == ("enosys", (1 << 32) | 0x200)
        assert ev.path == "" and ev.argv == [] and ev.cwd == "" and ev.argv_complete


def test_vfork_child_exec_and_posix_spawn(paths, tmp_path):
    runs = on_both(paths, py_in(tmp_path, """
        import os, subprocess
        subprocess.run(["/bin/true", "via-vfork"], check=True)
        pid = os.posix_spawn("/bin/true", ["/bin/true", "via-posix-spawn"], {})
        os.waitpid(pid, 0)
        print(os.getpid(), flush=True)
    """, IDLE))
    for r in runs.values():
        assert r.rc == 0, r.err
        launch, sub_exec, spawn_exec = r.of("execve")
        me = int(r.out.strip())
        assert launch.pid == me
        (vfork,) = r.of("vfork")
        assert (vfork.pid, vfork.decision) == (me, "allow")
        # the vfork child's exec arrives under the child's pid while the parent is held
        assert sub_exec.argv == ["/bin/true", "via-vfork"] and sub_exec.decision == "allow"
        assert sub_exec.pid == sub_exec.tid != me and sub_exec.ppid == me
        (c3,) = r.of("clone3")                # posix_spawn: clone3 first, ENOSYS, then clone
        assert c3.decision == "enosys" and c3.clone_flags & (CLONE_VM | CLONE_VFORK) == CLONE_VM | CLONE_VFORK
        (clone,) = r.of("clone")
        assert clone.decision == "allow" and clone.clone_flags & CLONE_VFORK and not clone.clone_flags & CLONE_THREAD
        assert spawn_exec.argv == ["/bin/true", "via-posix-spawn"] and spawn_exec.ppid == me
        assert all(e.cwd == str(tmp_path) for e in (sub_exec, spawn_exec))
        assert all(e.argv_complete for e in r.events)


def test_a_denied_fork_records_the_caller(paths, tmp_path):
    runs = on_both(paths, py_in(tmp_path, """
        import os
        try:
            os.fork()
        except OSError as e:
            print(e.errno, os.getpid(), os.getppid(), flush=True)
    """))
    for r in runs.values():
        err, me, parent = map(int, r.out.split())
        assert err == 1
        (ev,) = r.denied()
        assert (ev.syscall, ev.pid, ev.tid, ev.ppid) == ("clone", me, me, parent)
        assert ev.clone_flags & signal.SIGCHLD and ev.cwd == "" and ev.argv == []


def test_pidfds_kept_for_a_tree_are_closed_with_it(paths, tmp_path):
    """The C path keeps pidfds of recent callers (their tgid/ppid in <1 us);
    they go when the tree is released."""
    b = paths.get("c")
    if b is None:
        pytest.skip("the _notif extension is not built")
    before = len(os.listdir("/proc/self/fd"))
    r = run_in(b, ["sh", "-c", "for i in 1 2 3 4 5; do /bin/true; done"], IDLE, cwd=tmp_path)
    assert r.rc == 0 and len(r.of("execve")) == 6
    assert len(os.listdir("/proc/self/fd")) == before


def test_the_extension_is_built_where_it_can_be():
    """`pip install` builds it as optional: a compile error would only show as
    every Event coming from the Python path. Fail loudly where it can build."""
    if shutil.which("gcc") is None or not Path(sysconfig.get_paths()["include"], "Python.h").exists():
        pytest.skip("no gcc or no Python headers: the Python path is all there is")
    assert seccomp_backend._notif is not None, "isod.sandbox._notif is not built: `make install` (pip install -e .)"

"""What is specific to the ptrace backend, on the real kernel: tracees dying
inside a trapped call, closing with a tree running, signals and group-stops,
no stray stopped or traced process, the plain-events mode, the auto probe and
isod nested in isod. The generic behaviour runs on both backends elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pyseccomp
import pytest
from harness.sandbox import MEDIUM, SMALL, run_in, run_py
from isod.sandbox import bpf, open_backend
from isod.sandbox.ptrace_backend import PtraceBackend

pytestmark = pytest.mark.medium   # these tests start sandboxed processes

DEADLINE = 10.0
PY_ENV = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")


@pytest.fixture(scope="module")
def ptrace():
    b = PtraceBackend(seccomp=True)
    yield b
    b.close()


@pytest.fixture(scope="module")
def events():
    b = PtraceBackend(seccomp=False)
    yield b
    b.close()


def _sentinel(p: psutil.Process) -> bool:
    try:
        return p.ppid() == os.getpid() and p.cmdline()[1:] == ["1000000000"]
    except psutil.Error:
        return False


def strays() -> list[str]:
    """Descendants of this process left stopped, or traced (backends' sentinels aside)."""
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            status = p.status()
            with open(f"/proc/{p.pid}/status") as f:
                traced = any(line.startswith("TracerPid:") and line.split()[1] != "0" for line in f)
        except (psutil.Error, OSError):
            continue
        if status in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP) or (traced and not _sentinel(p)):
            out.append(f"{p.pid} {status} {p.cmdline()}")
    return out


@pytest.fixture(autouse=True)
def no_strays():
    yield
    end = time.monotonic() + DEADLINE
    while (left := strays()) and time.monotonic() < end:
        time.sleep(0.02)
    assert not left, f"stray stopped or traced processes: {left}"


def _wait_for(cond, what: str) -> None:
    end = time.monotonic() + DEADLINE
    while not cond():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.005)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# --- dying and closing -----------------------------------------------------------
def test_tracee_killed_inside_a_trapped_call(ptrace):
    """SIGKILL lands while the tracer holds the caller's fork: no hang, no stray,
    the attempt is still recorded, and the backend goes on working."""
    box = ptrace.spawn([sys.executable, "-c", "import os, time\ntime.sleep(0.1)\nos.fork()\nprint('forked')"],
                       stdout=subprocess.PIPE, env=PY_ENV)

    judge = box.rule_for

    def kill_the_caller(tid, name):
        if box.launch_rule is None:           # past the launch: this is the fork
            os.kill(box.pid, signal.SIGKILL)
            time.sleep(0.05)                   # the kill lands while the call is held
        return judge(tid, name)

    box.rule_for = kill_the_caller             # the tracer asks it right before deciding
    out, _ = box.popen.communicate(timeout=DEADLINE)
    assert box.popen.returncode == -signal.SIGKILL and out == b""
    assert box.released.wait(DEADLINE)
    ev = box.take_events()[-1]
    assert ev.syscall == "clone" and ev.tid == box.pid
    assert run_in(ptrace, ["echo", "still working"]).out == "still working\n"


@pytest.mark.parametrize("delay", [0.05, 0.2, 0.5])
def test_tree_killed_in_the_middle_of_a_fork_exec_storm(ptrace, delay):
    box = ptrace.spawn(["sh", "-c", "while :; do /bin/true; sh -c 'true | true' & wait; done"],
                       start_new_session=True)
    time.sleep(delay)
    os.killpg(box.pid, signal.SIGKILL)
    assert box.popen.wait(DEADLINE) == -signal.SIGKILL
    assert box.released.wait(DEADLINE), "the tracer still holds part of the tree"


def test_close_while_the_tree_runs_kills_it_and_reaps_everything():
    b = PtraceBackend(seccomp=True)
    box = b.spawn(["sh", "-c", "sleep 30 & sleep 30 & exec sleep 30"], stdout=subprocess.DEVNULL)
    _wait_for(lambda: len(psutil.Process(box.pid).children()) == 2 and _cmd(box.pid) == ["sleep", "30"],
              "the tree to start")
    tree = [box.pid] + [p.pid for p in psutil.Process(box.pid).children()]
    t = time.monotonic()
    b.close()
    assert time.monotonic() - t < 5
    assert box.popen.wait(1) == -signal.SIGKILL
    assert box.released.is_set()
    assert not b._thread.is_alive()
    assert not [pid for pid in tree if _alive(pid)]
    with pytest.raises(Exception, match="closed"):
        b.spawn(["true"])


def _cmd(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return []


def test_close_with_a_tracee_in_group_stop():
    b = PtraceBackend(seccomp=True)
    box = b.spawn([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSTOP)"], env=PY_ENV)
    _wait_for(lambda: psutil.Process(box.pid).status() in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP),
              "the group-stop")
    b.close()
    assert box.popen.wait(1) == -signal.SIGKILL


# --- signals, stops, threads -------------------------------------------------------
def test_signals_are_delivered_to_the_tracee(ptrace):
    code = ("import signal, time\n"
            "got = []\n"
            "signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))\n"
            "print('ready', flush=True)\n"
            "while not got:\n"
            "    time.sleep(0.001)\n"
            "print('got', *got)\n")
    box = ptrace.spawn([sys.executable, "-c", code], stdout=subprocess.PIPE, env=PY_ENV)
    assert box.popen.stdout.readline() == b"ready\n"
    os.kill(box.pid, signal.SIGUSR1)
    assert box.popen.stdout.read() == f"got {int(signal.SIGUSR1)}\n".encode()
    assert box.popen.wait(DEADLINE) == 0
    box2 = ptrace.spawn(["sleep", "30"])
    os.kill(box2.pid, signal.SIGTERM)
    assert box2.popen.wait(DEADLINE) == -signal.SIGTERM


def test_group_stop_holds_until_sigcont(ptrace):
    box = ptrace.spawn(["sh", "-c", "kill -STOP $$; echo resumed"], stdout=subprocess.PIPE)
    _wait_for(lambda: psutil.Process(box.pid).status() in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP),
              "the group-stop")
    time.sleep(0.1)
    assert box.popen.poll() is None            # still stopped: not resumed by the tracer
    os.kill(box.pid, signal.SIGCONT)
    assert box.popen.communicate(timeout=DEADLINE)[0] == b"resumed\n"
    assert box.popen.returncode == 0


def test_exec_from_a_non_main_thread_changes_the_tid(ptrace):
    code = ("import os, threading, time\n"
            "def go():\n"
            "    os.execv('/bin/echo', ['echo', 'replaced', str(threading.get_native_id())])\n"
            "threading.Thread(target=go).start()\n"
            "time.sleep(30)\n")
    r = run_py(ptrace, code, MEDIUM)
    word, tid = r.out.split()
    assert r.rc == 0 and word == "replaced"
    (ev,) = [e for e in r.of("execve") if e.argv[:2] == ["echo", "replaced"]]
    assert ev.tid == int(tid) != ev.pid and ev.decision == "allow"


def test_wait_statuses_of_the_daemons_other_children_are_not_stolen(ptrace):
    """The tracer waits with __WNOTHREAD: a plain subprocess of another thread
    keeps its exit status while trees are traced."""
    box = ptrace.spawn(["sh", "-c", "for i in $(seq 200); do /bin/true; done; exit 7"])
    codes = [subprocess.run(["sh", "-c", "exit 3"], check=False).returncode for _ in range(30)]
    assert codes == [3] * 30
    assert box.popen.wait(DEADLINE) == 7


def test_many_trees_at_once(ptrace):
    results = []

    def one(i):
        results.append(run_in(ptrace, ["sh", "-c", f"echo {i} | cat; exit {i % 5}"]))

    ts = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    [t.start() for t in ts]
    [t.join(30) for t in ts]
    assert sorted((r.out, r.rc) for r in results) == sorted((f"{i}\n", i % 5) for i in range(8))
    assert all([e.argv for e in r.of("execve")][1:] == [["cat"]] for r in results)


def test_a_nested_user_notif_listener_is_refused(ptrace):
    """A user-notif filter stacked by the tracee would outrank SECCOMP_RET_TRACE
    and let it answer its own spawns: seccomp(NEW_LISTENER) gets EBUSY, as it
    does under the seccomp backend."""
    code = ("from isod.sandbox import seccomp\n"
            "seccomp.set_no_new_privs()\n"
            "try:\n"
            f"    seccomp.install_filter(bytes.fromhex('{bpf.program().hex()}'),\n"
            "                           seccomp.SECCOMP_FILTER_FLAG_NEW_LISTENER)\n"
            "except OSError as e:\n"
            "    print('refused', e.errno)\n")
    r = run_py(ptrace, code, SMALL)
    assert r.out.strip() == "refused 16", r.err     # EBUSY
    assert r.denied() == []


def test_the_tracees_own_ret_trace_filter_is_let_through(ptrace):
    """A SECCOMP_RET_TRACE of a filter the tracee installed stops it too: for a
    syscall isod does not trap, the tracer lets it run, unrecorded."""
    f = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    f.add_rule(pyseccomp.TRACE(7), "getppid")
    with tempfile.TemporaryFile() as tmp:
        f.export_bpf(tmp)
        tmp.seek(0)
        prog = tmp.read().hex()
    code = ("import os\nfrom isod.sandbox import seccomp\nseccomp.set_no_new_privs()\n"
            f"seccomp.install_filter(bytes.fromhex('{prog}'), 0)\nprint(os.getppid() == {os.getpid()})\n")
    r = run_py(ptrace, code, SMALL)
    assert r.out.strip() == "True", r.err
    assert [e.syscall for e in r.events] == ["execve"]


def test_clone_untraced_children_are_followed_anyway(ptrace):
    code = ("import ctypes, os, signal\n"
            "libc = ctypes.CDLL(None, use_errno=True)\nlibc.syscall.restype = ctypes.c_long\n"
            "pid = libc.syscall(56, 0x00800000 | signal.SIGCHLD, 0, 0, 0, 0)   # CLONE_UNTRACED\n"
            "if pid == 0:\n    os.execv('/bin/echo', ['echo', 'child ran'])\n"
            "print(os.waitpid(pid, 0)[1])\n")
    r = run_py(ptrace, code, MEDIUM)
    assert r.out.split() == ["child", "ran", "0"], r.err
    clone, execve = r.events[1:]
    assert clone.syscall == "clone" and clone.clone_flags & 0x00800000       # recorded as asked
    assert execve.argv == ["echo", "child ran"] and execve.decision == "allow"


def test_without_ptrace_get_syscall_info_int80_is_still_i386(tmp_path):
    """Kernels before 5.3: the registers, where `int 0x80` from 64-bit code is
    told by its instruction (cd 80), not by the code segment."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    exe = tmp_path / "abi_escape"
    subprocess.run([gcc, "-O1", "-o", str(exe), str(Path(__file__).parent / "c" / "abi_escape.c")], check=True)
    b = PtraceBackend(seccomp=True)
    b._info._have_info = False
    try:
        for call in ("fork", "execve"):
            marker = tmp_path / call
            r = run_in(b, [str(exe), "i386", call, str(marker)], SMALL)
            assert r.out.split() == [call, "-1"] and not marker.exists()
            (ev,) = r.events[1:]
            assert (ev.syscall, ev.abi, ev.decision) == (call, "i386", "deny")
    finally:
        b.close()


# --- the same Events as the seccomp backend --------------------------------------
PARITY = {
    "argv_cut_and_undecodable": ("""
import os
for path, argv in [("/bin/true", ["/bin/true", "a b", "\\u00fc", "x" * 5000, ""]),
                   ("/bin/true", ["/bin/true", *[str(i) for i in range(300)]]),
                   (b"/bin/true", [b"/bin/true", b"\\xff", b"ok"]),
                   ("/nonexistent/" + "p" * 5000, ["p"])]:
    try:
        os.execv(path, argv)
    except OSError as e:
        print(e.errno, flush=True)
""", SMALL),
    "spawns_denied": ("""
import os, subprocess, threading
print(os.system("true"))
try:
    subprocess.run(["true"])
except PermissionError as e:
    print(e.errno)
t = threading.Thread(target=lambda: os.system("true")); t.start(); t.join()
""", SMALL),
    "spawns_allowed": ("""
import os, subprocess
subprocess.run(["echo", "a"], check=True)
os.system("echo b")
fd = os.open("/bin/true", os.O_RDONLY)
if os.fork() == 0:
    os.execve(fd, ["true", "by-fd"], {})
os.wait()
""", MEDIUM),
}


def _normalized(events) -> list[dict]:
    roles: dict[int, int] = {0: 0}
    out = []
    for ev in events:
        d = {k: v for k, v in ev.to_dict().items() if k not in ("t_ns", "latency_ns")}
        for k in ("pid", "tid", "ppid"):
            d[k] = roles.setdefault(d[k], len(roles))
        out.append(d)
    return out


@pytest.mark.parametrize("case", sorted(PARITY))
def test_events_match_the_seccomp_backend(ptrace, tmp_path, case):
    code, rule = PARITY[case]
    seccomp = open_backend("seccomp")
    try:
        want = run_py(seccomp, code, rule, cwd=tmp_path)
    finally:
        seccomp.close()
    got = run_py(ptrace, code, rule, cwd=tmp_path)
    assert (got.rc, got.out) == (want.rc, want.out), got.err
    assert _normalized(got.events) == _normalized(want.events)


# --- plain events (no seccomp) -------------------------------------------------
def test_events_mode_records_a_pipeline(events):
    r = run_in(events, ["sh", "-c", "ls / | wc -l"])
    assert r.rc == 0 and int(r.out) > 0
    execs = r.of("execve")
    assert execs[0].argv == ["sh", "-c", "ls / | wc -l"]
    assert sorted(e.argv for e in execs[1:]) == [["ls", "/"], ["wc", "-l"]]
    assert all(e.ppid == execs[0].pid for e in execs[1:])
    assert {e.syscall for e in r.events} == {"execve", "clone"}
    assert all(e.decision == "allow" for e in r.events)


def test_events_mode_small_kills_what_a_denied_spawn_made(events, tmp_path):
    marker = tmp_path / "ran"
    r = run_py(events, f"import os\nprint(os.system('touch {marker}') != 0)", SMALL)
    assert r.rc == 0 and r.out.strip() == "True"
    assert not marker.exists()
    # glibc's posix_spawn, judged after the fact; under load the child's exec may
    # be reported (and denied) too before the kill lands: it never runs either way
    denied = [e.syscall for e in r.denied()]
    assert "clone3" in denied and set(denied) <= {"clone3", "execve"}, denied
    r = run_py(events, f"import os\nos.execv('/usr/bin/touch', ['touch', '{marker}'])", SMALL)
    assert r.rc == -signal.SIGKILL                            # a denied exec takes the process with it
    assert not marker.exists()
    (ev,) = r.denied()
    assert ev.syscall == "execve" and ev.argv == ["touch", str(marker)]


def test_events_mode_threads_are_not_recorded(events):
    r = run_py(events, "import threading\nts = [threading.Thread(target=len, args=('',)) for _ in range(20)]\n"
                       "[t.start() for t in ts]; [t.join() for t in ts]", SMALL)
    assert r.rc == 0 and [e.syscall for e in r.events] == ["execve"]


# --- choosing the backend ------------------------------------------------------
def test_auto_picks_seccomp_where_user_notification_works():
    b = open_backend("auto")
    try:
        assert b.name == "seccomp"
        assert b.reason == "seccomp user notification available"
    finally:
        b.close()


def test_auto_inside_a_seccomp_sandbox_falls_back_to_ptrace_events():
    seccomp = open_backend("seccomp")
    try:
        r = run_py(seccomp, "from isod.sandbox import open_backend\n"
                            "b = open_backend('auto')\nprint(b.name, b.mode)\nprint(b.reason)\n"
                            "box = b.spawn(['true'])\nprint(box.wait())\nb.close()\n", MEDIUM)
    finally:
        seccomp.close()
    assert r.rc == 0, r.err
    name_mode, reason, rc = r.out.splitlines()
    assert name_mode == "ptrace events" and rc == "0"
    assert reason.startswith("user notification unavailable: EBUSY (nested in another user-notif sandbox")


def test_isod_backend_env_selects_ptrace(tmp_path):
    # shell builtins only: under --size small (the only rule that reaches a backend) nothing may spawn
    script = 'while read -r k v; do [ "$k" = TracerPid: ] && echo "$k" "$v"; done < /proc/self/status; exit 0'
    for name, traced in (("ptrace", True), ("seccomp", False)):
        p = subprocess.run([sys.executable, "-m", "isod", "trace", "-o", os.devnull, "--size", "small",
                            "--", "sh", "-c", script],
                           capture_output=True, text=True, env=dict(PY_ENV, ISOD_BACKEND=name), timeout=60,
                           check=False)
        assert p.returncode == 0, p.stderr
        assert (p.stdout.split()[1] != "0") == traced, (name, p.stdout)


def test_isod_trace_nested_in_isod_trace(tmp_path):
    """Without --size the outer trace traps nothing, so the inner one (as in a
    medium test that runs isod) has the kernel's user notification to itself."""
    outer, inner = tmp_path / "outer.jsonl", tmp_path / "inner.jsonl"
    isod = [sys.executable, "-m", "isod", "trace", "--backend", "auto", "--json", "-o"]
    p = subprocess.run([*isod, str(outer), "--", *isod, str(inner), "--size", "small", "--", "sh", "-c", "echo nested"],
                       capture_output=True, text=True, env=PY_ENV, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "nested\n"
    inner_ev = [json.loads(line) for line in inner.read_text().splitlines()]
    assert any(e.get("syscall") == "execve" and e["argv"] == ["sh", "-c", "echo nested"] for e in inner_ev)
    outer_ev = [json.loads(line) for line in outer.read_text().splitlines()]
    assert any(e.get("syscall") == "execve" and e["argv"][-3:] == ["sh", "-c", "echo nested"] for e in outer_ev)


def test_isod_nested_in_a_small_sandbox_fails_clearly():
    """Under --size small the inner isod cannot even start its launcher."""
    isod = [sys.executable, "-m", "isod", "trace", "-o", os.devnull]
    outer = [*isod, "--backend", "ptrace", "--size", "small", "--"]
    p = subprocess.run([*outer, *isod, "--backend", "auto", "--", "true"],
                       capture_output=True, text=True, env=PY_ENV, timeout=60, check=False)
    assert p.returncode == 125, p.stderr
    assert "cannot start the sandbox launcher: Operation not permitted" in p.stderr

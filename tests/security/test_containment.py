"""What a small test cannot reach beyond process creation (docs/threat-model.md): ptrace,
io_uring, the daemon's memory, and the daemon's own socket. Real daemon, real
`pytest -p isod_client` runs."""

from __future__ import annotations

import subprocess
import sys

import pytest
from harness.daemon import FIND_CHANNEL, run_pytest

pytestmark = pytest.mark.large

# --- the daemon is not dumpable ----------------------------------------------
# As root, CAP_SYS_PTRACE overrides "not dumpable". The probe clears that one
# capability from its *effective* set only: PTRACE_ATTACH still passes the
# capability-subset check (it uses the permitted set) against a root target, so
# the one thing left that can refuse it is the target's dumpable flag — the
# same check a same-uid unprivileged test meets. A dumpable `sleep` is the control.
PROBE = r'''
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
class Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
class Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]
CAP_SYS_PTRACE, PTRACE_SEIZE = 19, 0x4206
if os.geteuid() == 0:
    hdr, data = Header(0x20080522, 0), (Data * 2)()
    assert libc.capget(ctypes.byref(hdr), data) == 0
    data[0].effective &= ~(1 << CAP_SYS_PTRACE)
    assert libc.capset(ctypes.byref(hdr), data) == 0, os.strerror(ctypes.get_errno())
for pid in map(int, sys.argv[1:]):
    r = libc.ptrace(PTRACE_SEIZE, pid, 0, 0)
    print(pid, "attached" if r == 0 else os.strerror(ctypes.get_errno()))
'''


def test_the_daemon_is_not_dumpable(serve):
    control = subprocess.Popen(["sleep", "30"])
    try:
        out = subprocess.run([sys.executable, "-c", PROBE, str(control.pid), str(serve.pid)],
                             check=False, capture_output=True, text=True, timeout=30)
    finally:
        control.kill()
        control.wait()
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    assert lines[str(control.pid)] == "attached", lines              # a dumpable peer can be traced
    assert lines[str(serve.pid)] == "Operation not permitted", lines  # the daemon cannot


PTRACE = '''
import ctypes, os, pytest
libc = ctypes.CDLL(None, use_errno=True)
PTRACE_TRACEME, PTRACE_ATTACH = 0, 16

def ptrace(req, pid):
    r = libc.ptrace(req, pid, 0, 0)
    return r, ctypes.get_errno()

@pytest.mark.small
def test_traceme():
    assert ptrace(PTRACE_TRACEME, 0) == (-1, 1)        # EPERM from isod, before the kernel

@pytest.mark.small
def test_attach_to_the_daemon():
    assert ptrace(PTRACE_ATTACH, os.getppid()) == (-1, 1)

@pytest.mark.small
def test_io_uring_setup():
    # ENOSYS from the filter itself: event loops fall back to plain syscalls
    params = ctypes.create_string_buffer(120)
    assert libc.syscall(425, 4, params) == -1 and ctypes.get_errno() == 38

@pytest.mark.medium
def test_medium_may_use_io_uring():
    params = ctypes.create_string_buffer(120)
    fd = libc.syscall(425, 4, params)
    assert fd >= 0, os.strerror(ctypes.get_errno())
    os.close(fd)
'''


def test_small_tests_cannot_ptrace_or_use_io_uring_and_are_reported(tmp_path, serve):
    r = run_pytest(tmp_path, {"test_p.py": PTRACE}, "-q", target=serve.target)
    assert r.report is not None, r.out
    for name in ("test_traceme", "test_attach_to_the_daemon"):
        t = r.test(name)
        assert t["outcome"] == "failed", (name, r.out[-3000:])
        denied = [c for c in t["commands"] if c["decision"] == "deny"]
        assert [c["syscall"] for c in denied] == ["ptrace"], t["commands"]
        block = r.failure_block(name)
        assert "Attempted ptrace" in block, block
    # a ring cannot create a process: ENOSYS, no violation, nothing recorded
    ring = r.test("test_io_uring_setup")
    assert ring["outcome"] == "passed" and ring["commands"] == [], (ring, r.out[-3000:])
    med = r.test("test_medium_may_use_io_uring")
    assert med["outcome"] == "passed", r.out        # natively: medium workers have no filter


MEMORY = '''
import os, pytest

def ancestors():
    # the worker's parent (the zygote, or the daemon for a fresh worker) up to the daemon
    pid, out = os.getpid(), []
    while True:
        with open(f"/proc/{pid}/stat", "rb") as f:
            pid = int(f.read().rpartition(b")")[2].split()[1])
        if pid <= 1:
            return out
        out.append(pid)
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"serve" in f.read().split(b"\\0"):
                return out

@pytest.mark.small
def test_read_the_daemons_memory():
    found = ancestors()
    assert len(found) == 2, found      # the zygote, then the daemon
    for pid in found:
        with pytest.raises(PermissionError):
            open(f"/proc/{pid}/mem", "rb")
'''


def test_a_small_test_cannot_open_the_daemons_memory(tmp_path, serve):
    r = run_pytest(tmp_path, {"test_m.py": MEMORY}, "-q", target=serve.target)
    assert r.test("test_read_the_daemons_memory")["outcome"] == "passed", r.out


# --- the daemon's socket -----------------------------------------------------
# A small test cannot create a process, but it can ask the daemon to: the
# socket is reachable by any process of the daemon's uid, workers included
# (its 0700 directory keeps *other* users out), its path is listed in
# /proc/net/unix, and a session's medium test may spawn.
ASK_THE_DAEMON = '''
import os, sys, pytest
import grpc

from isod.v1 import isod_pb2 as pb, isod_pb2_grpc as pb_grpc

@pytest.mark.small
def test_asks_the_daemon_to_spawn():
    path = os.environ["VICTIM_SOCKET"]
    with open("/proc/net/unix") as f:
        listed = ["/" + line.split()[-1].lstrip("/") for line in f if line.rstrip().endswith("isod.sock")]
    assert path in listed                       # found without being told, too
    inner = os.path.join(os.getcwd(), "inner")
    os.makedirs(inner, exist_ok=True)
    with open(os.path.join(inner, "test_inner.py"), "w") as f:
        f.write("import subprocess\\ndef test_spawn():\\n    subprocess.run(['touch', %r])\\n"
                % os.path.join(os.getcwd(), "MARKER"))
    msgs = [pb.ClientMessage(open=pb.SessionOpen(python=sys.executable, cwd=inner, env=dict(os.environ),
                                                 pytest_args=["-p", "no:cacheprovider"], workers=1)),
            pb.ClientMessage(run=pb.RunTests(items=[pb.TestItem(nodeid="inner/test_inner.py::test_spawn",
                                                                size=pb.MEDIUM, timeout_s=20)])),
            pb.ClientMessage(finish=pb.Finish())]
    with grpc.insecure_channel("unix://" + path) as ch:
        for reply in pb_grpc.IsodStub(ch).Session(iter(msgs), timeout=20):
            if reply.WhichOneof("kind") == "end":
                break
'''


def test_a_small_test_cannot_have_the_daemon_spawn_for_it(tmp_path, serve):
    files = {"test_ask.py": ASK_THE_DAEMON, "pytest.ini": "[pytest]\nisod_timeout_small = 30\n"}
    r = run_pytest(tmp_path, files, "-q", target=serve.target,
                   env={"VICTIM_SOCKET": serve.target.removeprefix("unix://")})
    assert r.report is not None, r.out
    spawned = (tmp_path / "MARKER").exists()
    outcome = r.test("test_asks_the_daemon_to_spawn")["outcome"]
    assert not spawned and outcome != "passed", (
        f"escape: the daemon ran a command for a small test (marker created: {spawned}, "
        f"outcome {outcome})\n{r.out[-2000:]}")
    # refused in the daemon (PERMISSION_DENIED) and reported as the test's violation
    assert "Attempted to have the isod daemon run tests for it" in r.out, r.out[-3000:]
    assert "refused a session from inside a sandbox" in serve.log_text()


# --- the worker's channel ----------------------------------------------------
# The test runs in the worker process, which holds the channel the daemon reads
# test boundaries from: the test can write to it. Announcing "finished" for
# itself and "started" for a medium test already queued on the same worker
# would move the daemon's decision window to the medium rule while the small
# test is still running (docs/threat-model.md N2). pytest always reports
# teardown before the worker says "finished", so a bare forged "finished" is
# refused at once; a forger that also forges the reports is caught only when
# the real worker's messages arrive.
FORGE = FIND_CHANNEL + '''
import json, os, socket, subprocess, time, pytest
from isod import channel
from isod.v1 import isod_pb2 as pb

def forge(**kind):
    chan = channel.Channel(worker_channel())
    chan.send(pb.WorkerEvent(**kind).SerializeToString())

@pytest.mark.small
def test_forges_its_way_out():
    me = os.environ["PYTEST_CURRENT_TEST"].split(" ")[0]
    reports = []
    if os.environ.get("FORGE_REPORTS"):
        for when in ("call", "teardown"):
            reports.append(pb.PhaseReport(when=when, t_ns=time.monotonic_ns(), report_json=json.dumps({
                "$report_type": "TestReport", "nodeid": me, "when": when, "outcome": "passed",
                "location": ["test_forge.py", 8, me], "keywords": {}, "longrepr": None,
                "sections": [], "duration": 0.0, "user_properties": []}).encode()))
    forge(finished=pb.TestFinished(nodeid=me, reports=reports))
    forge(started=pb.TestStarted(nodeid="test_forge.py::test_medium_next", t_ns=time.monotonic_ns()))
    time.sleep(0.05)
    subprocess.run(["touch", "ESCAPED"])

@pytest.mark.medium
def test_medium_next():
    pass
'''


def test_a_forged_finished_is_refused_and_fails_the_forger(tmp_path, serve):
    r = run_pytest(tmp_path, {"test_forge.py": FORGE}, "-q", "--isod-workers=1", target=serve.target)
    assert not (tmp_path / "ESCAPED").exists(), r.out
    assert r.test("test_forges_its_way_out")["outcome"] == "failed", r.out
    assert "while test_forge.py::test_forges_its_way_out ran: test code wrote on the isod worker channel" in r.out
    assert "without its teardown report" in r.out, r.out
    assert r.test("test_medium_next")["outcome"] == "passed", r.out   # on a fresh worker
    assert "protocol violation" in serve.log_text()


def test_a_full_forgery_fails_the_run(tmp_path, serve):
    """Forged reports and `finished` are taken for real, but the forged
    `started` names a test this worker was never sent: the run fails."""
    r = run_pytest(tmp_path, {"test_forge.py": FORGE}, "-q", "--isod-workers=1", target=serve.target,
                   env={"FORGE_REPORTS": "1"})
    assert r.rc != 0, r.out
    assert "test code wrote on the isod worker channel" in r.out, r.out
    assert "`started test_forge.py::test_medium_next` out of order" in r.out, r.out


def test_a_small_test_cannot_forge_its_way_to_a_medium_rule(tmp_path, serve):
    """A small worker's rule never changes after collection, and medium tests
    run in other workers: forged boundaries move no rule (threat model N2)."""
    r = run_pytest(tmp_path, {"test_forge.py": FORGE}, "-q", "--isod-workers=1", target=serve.target,
                   env={"FORGE_REPORTS": "1"})
    assert not (tmp_path / "ESCAPED").exists()
    assert r.rc != 0, r.out

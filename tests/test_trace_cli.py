"""`isod trace` end to end, run as a user runs it: a separate process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest
from isod.sandbox.backends import BACKENDS
from isod.sandbox.proc_connector import open_connector

pytestmark = pytest.mark.medium   # these tests start processes

# `<relative seconds> <pid> what...`, as strace -f prints it
LINE = re.compile(r"^\s*(?P<t>\d+\.\d{6})\s+(?P<pid>\d+)(?:/\d+)?\s+(?P<what>.*)$")
TRAP_FIELDS = {"type", "t_ns", "pid", "tid", "ppid", "syscall", "abi", "decision", "latency_ns",
               "path", "argv", "cwd", "clone_flags"}


def _have_connector() -> bool:
    c = open_connector()
    if c is None:
        return False
    c.sock.close()
    os.close(c._stop_r)
    os.close(c._stop_w)
    return True


HAVE_CONNECTOR = _have_connector()


def isod_trace(*args: str, timeout: float = 30, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    env = dict(env or os.environ, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-m", "isod", "trace", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False, **kw)


def parse(trace: str) -> list[tuple[float, int, str]]:
    """The event lines (time, pid, rest); the `---` summary lines are left out."""
    out = []
    for line in trace.splitlines():
        if line.startswith("---"):
            continue
        m = LINE.match(line)
        assert m, f"unexpected trace line: {line!r}"
        out.append((float(m["t"]), int(m["pid"]), m["what"]))
    return out


@pytest.fixture(params=BACKENDS)
def backend_name(request) -> str:
    return request.param


def test_shell_pipeline_shows_forks_and_execs_with_times():
    """Without --size nothing is trapped (the native backend): forks, execs
    and exits come from the kernel's process events, with child pids."""
    if not HAVE_CONNECTOR:
        pytest.skip("no process events connector (needs CAP_NET_ADMIN): fork lines carry no child pid")
    # programs that live long enough for their command line to be read (best effort, docs)
    p = isod_trace("--", "sh", "-c", "sleep 0.2 | wc -l")
    assert p.returncode == 0, p.stderr
    assert int(p.stdout) == 0                          # the command's stdout is untouched
    events = parse(p.stderr)
    assert all(t >= 0 for t, _, _ in events)
    times = [t for t, _, _ in events]
    assert times == sorted(times), p.stderr              # in time order, whichever thread saw it first
    (sh,) = [pid for _, pid, what in events if what.startswith("execve sh -c 'sleep 0.2 | wc -l'")]
    children = [int(m[1]) for _, pid, what in events if pid == sh and (m := re.fullmatch(r"fork -> (\d+)", what))]
    assert len(children) == 2, p.stderr
    execs = {pid: what for _, pid, what in events if what.startswith("execve ")}
    assert sorted(execs.get(c, "").split("   ")[0] for c in children) == ["execve sleep 0.2", "execve wc -l"]
    for pid in (sh, *children):
        assert any(pid == ev_pid and what.startswith("+++ exited with 0 +++") for _, ev_pid, what in events), pid
    assert "--- 3 exec(s), 0 denied, exit status 0" in p.stderr


def test_a_path_search_shows_only_the_exec_that_ran(tmp_path):
    """Natively, an exec that misses along PATH never reaches the kernel's
    process events: one exec line, counted once."""
    if not HAVE_CONNECTOR:
        pytest.skip("no process events connector (needs CAP_NET_ADMIN)")
    (tmp_path / "nowhere").mkdir()          # a PATH directory without the command
    env = dict(os.environ, PATH=f"{tmp_path / 'nowhere'}:/usr/bin:/bin")
    p = isod_trace("--", "sh", "-c", "exec sleep 0.1 >/dev/null", env=env)
    assert p.returncode == 0, p.stderr
    execs = [what.split("   [")[0] for _, _, what in parse(p.stderr) if what.startswith("execve ")]
    # the root's own exec is named as launched even when it exec'd again
    # before /proc could be read (CI saw `sleep` twice)
    assert execs == ["execve sh -c 'exec sleep 0.1 >/dev/null'", "execve sleep 0.1"], p.stderr
    assert "execve sleep 0.1   [/usr/bin/sleep]" in p.stderr
    assert "--- 2 exec(s), 0 denied, exit status 0" in p.stderr   # sh and sleep


def test_small_size_shows_the_denied_call_and_exits_nonzero(backend_name):
    p = isod_trace("--backend", backend_name, "--size", "small", "--",
                   sys.executable, "-c", "import os; print(os.system('true'))")
    assert p.returncode != 0
    assert int(p.stdout) != 0                          # os.system returned failure, did not raise
    denied = [what for _, _, what in parse(p.stderr) if "= -1 EPERM (Operation not permitted)" in what]
    assert denied and all(w.startswith("clone(") and "[small]" in w for w in denied), p.stderr
    assert all(f"in: {sys.executable} -c " in w for w in denied), p.stderr   # which program tried
    assert "--- 1 exec(s), 1 denied" in p.stderr
    assert re.search(r"^--- denied clone\(flags=0x[0-9a-f]+\)  \(pid \d+, parent \d+\)$", p.stderr, re.MULTILINE)


def test_denial_keeps_the_commands_own_nonzero_status():
    p = isod_trace("--size", "small", "--", sys.executable, "-c", "import os, sys; os.system('true'); sys.exit(5)")
    assert p.returncode == 5


def test_json_lines_have_stable_fields(tmp_path, backend_name):
    out = tmp_path / "trace.jsonl"
    p = isod_trace("--backend", backend_name, "--json", "--size", "small", "-o", str(out), "--",
                   "sh", "-c", "echo hi; exec /bin/true")
    assert p.returncode == 126                         # sh: `exec /bin/true` was denied (EPERM)
    assert p.stdout == "hi\n" and "Operation not permitted" in p.stderr
    objs = [json.loads(line) for line in out.read_text().splitlines()]   # one object per line
    traps = [o for o in objs if o["type"] == "trap"]
    assert traps
    for o in traps:
        assert TRAP_FIELDS <= o.keys(), o
        assert isinstance(o["t_ns"], int) and isinstance(o["latency_ns"], int) and o["latency_ns"] > 0
        assert all(isinstance(o[k], int) for k in ("pid", "tid", "ppid", "clone_flags"))
        assert all(isinstance(o[k], str) for k in ("syscall", "abi", "decision", "path", "cwd"))
        assert isinstance(o["argv"], list) and all(isinstance(a, str) for a in o["argv"])
        assert o["abi"] == "x86_64" and o["decision"] in ("allow", "deny", "enosys")
    launch, denied = traps
    assert (launch["syscall"], launch["decision"], launch["argv"]) == \
        ("execve", "allow", ["sh", "-c", "echo hi; exec /bin/true"])
    assert launch["path"].endswith("/sh") and launch["cwd"] == os.getcwd()
    assert (denied["syscall"], denied["decision"], denied["path"], denied["argv"]) == \
        ("execve", "deny", "/bin/true", ["/bin/true"])
    assert denied["pid"] == launch["pid"]
    assert objs[-1]["type"] == "summary"
    assert objs[-1]["exit_status"] == 126 and objs[-1]["denied"] == 1 and objs[-1]["execs"] == 1


def test_json_to_stderr_is_one_object_per_line():
    # programs that live long enough for their command line to be read (best effort, docs)
    p = isod_trace("--json", "--", "sh", "-c", "sleep 0.05; sleep 0.05")
    assert p.returncode == 0, p.stderr
    objs = [json.loads(line) for line in p.stderr.splitlines()]
    assert {o["type"] for o in objs} >= {"trap", "exit", "summary"}
    execs = [o["argv"] for o in objs if o["type"] == "trap" and o["syscall"] == "execve"]
    assert execs == [["sh", "-c", "sleep 0.05; sleep 0.05"], ["sleep", "0.05"], ["sleep", "0.05"]]


def test_output_file(tmp_path):
    out = tmp_path / "trace.txt"
    p = isod_trace("-o", str(out), "--", "sh", "-c", "echo to-stdout; echo to-stderr >&2")
    assert p.returncode == 0
    assert p.stdout == "to-stdout\n" and p.stderr == "to-stderr\n"   # only the command's own output
    text = out.read_text()
    assert "execve sh -c 'echo to-stdout; echo to-stderr >&2'" in text
    assert "--- 1 exec(s), 0 denied, exit status 0" in text


@pytest.mark.parametrize(("script", "status"), [
    ("exit 3", 3),
    ("kill -TERM $$", 128 + signal.SIGTERM),
    ("kill -KILL $$", 128 + signal.SIGKILL),
])
def test_exit_status_is_propagated(script, status):
    p = isod_trace("--", "sh", "-c", script)
    assert p.returncode == status, p.stderr
    assert f"exit status {status}" in p.stderr


@pytest.mark.parametrize("args", [[], ["--"], ["--size", "small", "--"]])
def test_no_command_is_a_usage_error(args):
    p = isod_trace(*args)
    assert p.returncode == 2
    assert "isod trace: no command given" in p.stderr and "usage" in p.stderr


def test_command_not_found():
    p = isod_trace("--", "no-such-command-isod-test")
    assert p.returncode == 127
    assert "isod: no-such-command-isod-test: command not found" in p.stderr

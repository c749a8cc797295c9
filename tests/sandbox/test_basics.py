"""Core behaviour of the sandbox on the real kernel: allow + record, deny + record."""

from __future__ import annotations

import pytest
from harness.sandbox import MEDIUM, SMALL, run_in, run_py

pytestmark = pytest.mark.medium   # these tests start sandboxed processes


def test_shell_pipeline_is_recorded_with_argv_and_parents(backend):
    for _ in range(3):
        r = run_in(backend, ["sh", "-c", "ls / | wc -l"])
        # known limit (docs/threat-model.md): a SIGCHLD landing while a trapped
        # fork waits to be received fails that fork with EINTR ("Cannot fork")
        if "Cannot fork" not in r.err:
            break
    assert r.rc == 0 and int(r.out.strip()) > 0, r.err
    execs = r.of("execve")
    cmds = [e.argv for e in execs]
    assert cmds[0] == ["sh", "-c", "ls / | wc -l"]
    assert ["ls", "/"] in cmds and ["wc", "-l"] in cmds
    root = execs[0].pid
    children = [e for e in execs if e.argv in (["ls", "/"], ["wc", "-l"])]
    assert all(e.ppid == root for e in children)
    assert all(e.decision == "allow" for e in r.events)
    assert all(e.latency_ns > 0 and e.abi == "x86_64" for e in r.events)


def test_small_rule_denies_os_system_but_launch_is_allowed(backend):
    r = run_py(backend, "import os; print(os.system('echo hi'))", SMALL)
    assert r.out.strip() != "0" and "hi" not in r.out
    assert r.of("execve")[0].decision == "allow"          # the launch itself
    denied = r.denied()
    assert denied and all(e.syscall in ("clone", "fork", "vfork") for e in denied)


def test_medium_rule_allows_subprocess(backend):
    r = run_py(backend, "import subprocess; print(subprocess.run(['echo', 'hi'], capture_output=True).stdout)", MEDIUM)
    assert r.rc == 0 and "hi" in r.out
    assert any(e.argv == ["echo", "hi"] and e.decision == "allow" for e in r.of("execve"))


def test_small_subprocess_raises_permission_error(backend):
    code = (
        "import subprocess\n"
        "try:\n    subprocess.run(['echo', 'hi'])\nexcept PermissionError as e:\n    print('EPERM', e.errno)\n"
    )
    r = run_py(backend, code, SMALL)
    assert "EPERM 1" in r.out
    assert r.denied()


def test_execv_in_sandboxed_process_itself_is_denied(backend):
    r = run_py(backend, "import os\ntry: os.execv('/bin/echo', ['echo', 'replaced'])\n"
                        "except OSError as e: print('kept', e.errno)", SMALL)
    assert "kept 1" in r.out and "replaced" not in r.out
    (ev,) = [e for e in r.denied() if e.syscall == "execve"]
    assert ev.path == "/bin/echo" and ev.argv == ["echo", "replaced"]


def test_threads_are_not_trapped(backend):
    code = (
        "import threading, concurrent.futures as cf\n"
        "ts = [threading.Thread(target=lambda: None) for _ in range(20)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
        "with cf.ThreadPoolExecutor(4) as ex: print(sum(ex.map(lambda x: x, range(100))))\n"
    )
    r = run_py(backend, code, SMALL)
    assert r.rc == 0 and r.out.strip() == "4950"
    assert r.denied() == []
    assert [e.syscall for e in r.events] == ["execve"]     # the launch only


def test_missing_command_is_a_clear_error(backend):
    r = run_in(backend, ["definitely-not-a-command-isod"])
    assert r.rc == 127
    assert "command not found" in r.err

"""TC001 through a real daemon and real `pytest -p isod_client` runs: each
network route of a small test, medium tests' loopback-only rule, large tests'
anything goes, both verdicts in one test, warn/off, --isod-network off, and
`isod trace` showing network attempts."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap

import pytest
from harness.daemon import run_pytest

pytestmark = pytest.mark.large   # a real daemon, real workers, a real pytest run

FAR = "10.255.255.1"     # never reached: denied before any packet (the sandbox tests check the counters)

INT80_C = r"""
#define _GNU_SOURCE
#include <stdint.h>
#include <sys/mman.h>
/* socket(AF_INET, SOCK_STREAM) through the i386 socketcall multiplexer */
long socketcall_inet(void) {
    uint32_t *args = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    long ret;
    args[0] = 2; args[1] = 1; args[2] = 0;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(102L), "b"(1L), "c"((long)(uintptr_t)args)
                     : "memory", "cc", "r8", "r9", "r10", "r11");
    return ret;
}
"""

SMALL_ROUTES = '''
import asyncio, ctypes, os, socket, struct, urllib.request
import pytest

pytestmark = pytest.mark.small
FAR = "{far}"
INT80 = {int80!r}

def test_create_connection():
    try:
        socket.create_connection((FAR, 443), timeout=1)
    except OSError:
        pass                              # swallowed: the record decides

def test_errno_is_eperm():
    with pytest.raises(PermissionError):
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)

def test_getaddrinfo_of_a_name():
    try:
        socket.getaddrinfo("isod-tc001.example", 8443)
    except OSError:
        pass

def test_urlopen():
    try:
        urllib.request.urlopen(f"http://{{FAR}}:8080/x", timeout=1)
    except OSError:
        pass

def test_ctypes_socket_and_connect():
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.socket(2, 1, 0)
    libc.connect(fd, struct.pack("HH4s8x", 2, socket.htons(5432), socket.inet_aton(FAR)), 16)

def test_int80_socketcall():
    if not INT80:
        pytest.skip("no gcc")
    assert ctypes.CDLL(INT80).socketcall_inet() == -38     # ENOSYS: never run

def test_asyncio_open_connection():
    async def main():
        try:
            await asyncio.wait_for(asyncio.open_connection(FAR, 6379), 2)
        except OSError:
            pass
    asyncio.run(main())

def test_asyncio_open_connection_to_a_name():
    async def main():      # resolved in an executor thread: that thread's lookup names the socket
        try:
            await asyncio.wait_for(asyncio.open_connection("localhost", 6380), 2)
        except OSError:
            pass
    asyncio.run(main())
'''

EXPECT_SMALL = {
    "test_create_connection": f"Attempted network connection to {FAR}:443",
    "test_errno_is_eperm": "socket(AF_INET6, SOCK_DGRAM)",
    "test_urlopen": f"Attempted network connection to {FAR}:8080",
    "test_ctypes_socket_and_connect": "socket(AF_INET, SOCK_STREAM)",
    "test_int80_socketcall": "through i386 socketcall",
    # a numeric address: asyncio calls no getaddrinfo, so nothing names the denied socket()
    "test_asyncio_open_connection": "Attempted network access: socket(AF_INET, SOCK_STREAM)",
    "test_asyncio_open_connection_to_a_name": "Attempted network connection to localhost:6380",
}


@pytest.fixture(scope="module")
def int80(tmp_path_factory) -> str:
    gcc = shutil.which("gcc")
    if gcc is None:
        return ""
    d = tmp_path_factory.mktemp("int80")
    (d / "int80.c").write_text(INT80_C)
    subprocess.run([gcc, "-O1", "-Wall", "-Werror", "-shared", "-fPIC", "-o", str(d / "int80.so"),
                    str(d / "int80.c")], check=True)
    return str(d / "int80.so")


def _dns_lookups() -> bool:
    try:
        with open("/etc/nsswitch.conf") as f:
            return any(line.startswith("hosts:") and "dns" in line for line in f)
    except OSError:
        return False


def test_every_small_route_fails_with_tc001(tmp_path, daemon, int80):
    r = run_pytest(tmp_path, {"test_net.py": SMALL_ROUTES.format(far=FAR, int80=int80)}, "-q",
                   target=daemon.target)
    assert r.report is not None, r.out
    expect = dict(EXPECT_SMALL)
    if _dns_lookups():
        expect["test_getaddrinfo_of_a_name"] = "Attempted network connection to isod-tc001.example:8443"
    for name, needle in expect.items():
        if name == "test_int80_socketcall" and not int80:
            continue
        t = r.test(name)
        assert t["outcome"] == "failed", (name, r.out[-3000:])
        block = r.failure_block(name)
        assert "[TC001] Network Access Violation" in block, (name, block)
        assert "Category: SMALL" in block and "[TC003]" not in block, block
        assert needle in block, (name, needle, block)
        net = [c for c in t["commands"] if c["syscall"] in ("socket", "socketcall")]
        assert net and all(c["decision"] in ("deny", "enosys") for c in net), (name, t["commands"])
    assert "isod: tests that used the network beyond their size (TC001)" in r.out
    # the layout of pytest-test-categories
    block = r.failure_block("test_create_connection")
    for part in ("What happened:", "Why it matters:", "To fix this (choose one):", "• Mock the network call",
                 "(at test_net.py:"):
        assert part in block, block


NO_FALSE_POSITIVES = '''
import asyncio, concurrent.futures, os, socket, tempfile, threading, pytest
pytestmark = pytest.mark.small

def test_socketpair():
    a, b = socket.socketpair(); a.sendall(b"x"); assert b.recv(1) == b"x"

def test_unix_socket(tmp_path):
    srv = socket.socket(socket.AF_UNIX); srv.bind(str(tmp_path / "s")); srv.listen()
    c = socket.socket(socket.AF_UNIX); c.connect(str(tmp_path / "s")); c.sendall(b"y")
    conn, _ = srv.accept(); assert conn.recv(1) == b"y"

def test_asyncio_with_threads(tmp_path):
    async def main():
        async def echo(r, w):
            w.write(await r.read(4)); await w.drain(); w.close()
        srv = await asyncio.start_unix_server(echo, str(tmp_path / "a"))
        r, w = await asyncio.open_unix_connection(str(tmp_path / "a"))
        w.write(b"ping"); await w.drain()
        got = await r.read(4)
        loop = asyncio.get_running_loop()
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            total = sum(await asyncio.gather(*(loop.run_in_executor(ex, pow, i, 2) for i in range(10))))
        srv.close()
        return got, total
    assert asyncio.run(main()) == (b"ping", 285)

def test_localhost_name_and_interfaces():
    assert socket.getaddrinfo("localhost", 80, socket.AF_INET)[0][4][0] == "127.0.0.1"
    assert socket.if_nameindex()

def test_uvloop(tmp_path):
    uvloop = pytest.importorskip("uvloop")
    async def main():
        async def echo(r, w):
            w.write(await r.read(4)); await w.drain(); w.close()
        srv = await asyncio.start_unix_server(echo, str(tmp_path / "u"))
        r, w = await asyncio.open_unix_connection(str(tmp_path / "u"))
        w.write(b"uvuv"); await w.drain()
        got = await r.read(4)
        srv.close()
        return got
    assert uvloop.run(main()) == b"uvuv"
'''


def test_no_false_positives(tmp_path, daemon, hooks):
    env = {}
    uvl = os.environ.get("ISOD_TEST_UVLOOP_PATH")     # a directory with uvloop in it (pip install --target)
    if uvl:
        env["PYTHONPATH"] = uvl
    r = run_pytest(tmp_path, {"test_ok.py": NO_FALSE_POSITIVES}, "-q", "-rs", target=daemon.target, env=env)
    assert r.rc == 0, r.out[-3000:]
    assert "TC001" not in r.out
    assert all(not c for t in r.report["tests"] for c in t["commands"]), r.report["tests"]


def _own_address() -> str | None:
    """A non-loopback IPv4 address of this host (no packet is sent)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("192.0.2.254", 9))
        ip = s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()
    return None if ip.startswith("127.") or ip == "0.0.0.0" else ip


SIZES = '''
import socket, threading, pytest

def serve(family, host):
    srv = socket.socket(family); srv.bind((host, 0)); srv.listen()
    def loop():
        while True:
            c, _ = srv.accept(); c.sendall(c.recv(4)); c.close()
    threading.Thread(target=loop, daemon=True).start()
    return srv.getsockname()[1]

def echo(family, host, port):
    c = socket.create_connection((host, port), timeout=5)
    c.sendall(b"ping"); assert c.recv(4) == b"ping"; c.close()

@pytest.mark.medium
def test_medium_loopback_v4():
    echo(socket.AF_INET, "127.0.0.1", serve(socket.AF_INET, "127.0.0.1"))

@pytest.mark.medium
def test_medium_loopback_v6():
    echo(socket.AF_INET6, "::1", serve(socket.AF_INET6, "::1"))

@pytest.mark.medium
def test_medium_own_address():
    echo(socket.AF_INET, "{own}", serve(socket.AF_INET, "0.0.0.0"))

@pytest.mark.large
def test_large_own_address():
    echo(socket.AF_INET, "{own}", serve(socket.AF_INET, "0.0.0.0"))
'''


def test_medium_is_loopback_only_and_large_goes_anywhere(tmp_path, daemon, hooks):
    own = _own_address()
    if own is None:
        pytest.skip("this host has no non-loopback IPv4 address")
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    r = run_pytest(tmp_path, {"test_sizes.py": SIZES.format(own=own)}, "-q", target=daemon.target)
    assert r.report is not None, r.out
    for name in ("test_medium_loopback_v4", "test_medium_loopback_v6", "test_large_own_address"):
        assert r.test(name)["outcome"] == "passed", (name, r.out[-3000:])
    assert r.test("test_medium_own_address")["outcome"] == "failed"
    block = r.failure_block("test_medium_own_address")
    assert "[TC001] Network Access Violation" in block and "Category: MEDIUM" in block, block
    assert f"Attempted network connection to {own}:" in block
    assert "PermissionError: [Errno 1]" in r.out        # denied in the kernel: EPERM
    assert "• Run the service on localhost" in block


MIXED = '''
import socket, threading, pytest

srv = None
def port():
    global srv
    if srv is None:
        srv = socket.socket(); srv.bind(("0.0.0.0", 0)); srv.listen(512)
        def loop():
            while True:
                srv.accept()[0].close()
        threading.Thread(target=loop, daemon=True).start()
    return srv.getsockname()[1]

@pytest.fixture
def conn():
    """connects first thing in setup: judged by this test's size, not the last one's"""
    try:
        socket.create_connection(("{own}", port()), timeout=5).close()
    except OSError as e:
        pytest.fail(f"connect failed: {{e}}")

@pytest.mark.parametrize("i", range(15))
@pytest.mark.medium
def test_m(conn, i):
    pass

@pytest.mark.parametrize("i", range(15))
@pytest.mark.large
def test_l(conn, i):
    pass
'''


def test_medium_and_large_tests_alternating_on_one_worker(tmp_path, daemon, hooks):
    """One spawning worker runs both; each test's first connect (in setup) is
    judged by its own size: the worker writes the rule before setup."""
    own = _own_address()
    if own is None:
        pytest.skip("this host has no non-loopback IPv4 address")
    tests = "\n".join(f"@pytest.mark.{'medium' if i % 2 else 'large'}\ndef test_{i}(conn):\n    pass\n"
                      for i in range(40))
    body = MIXED.format(own=own).split("@pytest.mark.parametrize")[0] + tests
    r = run_pytest(tmp_path, {"test_mixed.py": body}, "-q", "--isod-workers=1", target=daemon.target)
    assert r.report is not None, r.out
    for i in range(40):
        t = r.test(f"test_{i}")
        if i % 2:
            assert t["outcome"] == "error", (i, r.out[-3000:])        # setup: the fixture's connect
            assert "[TC001]" in r.failure_block(f"test_{i}")
        else:
            assert t["outcome"] == "passed", (i, r.out[-3000:])


BOTH = '''
import socket, subprocess, pytest

@pytest.mark.small
def test_spawns_and_connects():
    try:
        subprocess.run(["echo", "hi"])
    except OSError:
        pass
    try:
        socket.create_connection(("{far}", 443), timeout=1)
    except OSError:
        pass
'''


def test_tc003_and_tc001_in_one_test_both_show(tmp_path, daemon):
    r = run_pytest(tmp_path, {"test_both.py": BOTH.format(far=FAR)}, "-q", target=daemon.target,
                   env={"COLUMNS": "400"})
    block = r.failure_block("test_spawns_and_connects")
    assert "[TC003] Subprocess Spawn Violation" in block and "Attempted subprocess.Popen: echo hi" in block, block
    assert "[TC001] Network Access Violation" in block and f"connection to {FAR}:443" in block, block
    assert "isod: small tests that tried to create processes" in r.out
    assert "isod: tests that used the network beyond their size (TC001)" in r.out
    short = [line for line in r.out.splitlines() if line.startswith("FAILED")]
    assert short and "[TC003]" in short[0] and "[TC001]" in short[0], short


def test_without_cgroup_hooks_python_connects_are_still_reported(tmp_path, monkeypatch):
    """An unprivileged daemon (here: the hooks turned off) cannot deny a
    medium test's connection; the audit hook's record still fails it."""
    own = _own_address()
    if own is None:
        pytest.skip("this host has no non-loopback IPv4 address")
    from harness.daemon import Daemon

    monkeypatch.setenv("ISOD_NO_NET_HOOKS", "1")
    d = Daemon()
    try:
        r = run_pytest(tmp_path, {"test_sizes.py": SIZES.format(own=own)}, "-q", target=d.target)
    finally:
        d.stop()
    assert r.test("test_medium_loopback_v4")["outcome"] == "passed", r.out[-3000:]
    assert r.test("test_large_own_address")["outcome"] == "passed", r.out[-3000:]
    block = r.failure_block("test_medium_own_address")
    assert f"Attempted network connection to {own}:" in block, block
    assert "seen by Python's audit hook only, not denied" in block
    assert "PermissionError" not in r.out          # the connection was made


WARN = '''
import socket, pytest

@pytest.mark.small
def test_small():
    try:
        socket.create_connection(("{far}", 443), timeout=0.2)
    except OSError:
        pass

@pytest.mark.medium
def test_medium():
    try:
        socket.create_connection(("{far}", 443), timeout=0.2)
    except OSError:
        pass
'''


def test_warn_warns_and_off_is_silent(tmp_path, daemon, hooks):
    files = {"test_w.py": WARN.format(far=FAR)}
    r = run_pytest(tmp_path, files, "-q", "--test-categories-enforcement=warn", target=daemon.target)
    assert r.rc == 0, r.out[-3000:]
    assert r.out.count("[TC001] Network Access Violation") == 2, r.out
    assert "IsodViolationWarning" in r.out
    assert "(warned)" in r.out
    r = run_pytest(tmp_path, files, "-q", "--test-categories-enforcement=off", target=daemon.target)
    assert r.rc == 0, r.out[-3000:]
    assert "[TC001] Network Access Violation" not in r.out and "Warning" not in r.out
    # recorded all the same
    assert any(c.get("host") == FAR for t in r.report["tests"] for c in t["commands"]), r.report


OFF = '''
import socket, pytest

@pytest.mark.small
def test_small_makes_a_socket():
    socket.socket(socket.AF_INET).close()
'''


def test_isod_network_off(tmp_path, daemon):
    r = run_pytest(tmp_path, {"test_o.py": OFF}, "-q", "--isod-network=off", target=daemon.target)
    assert r.rc == 0 and "TC001" not in r.out, r.out[-3000:]
    r = run_pytest(tmp_path, {"test_o.py": OFF, "pytest.ini": "[pytest]\nisod_network = off\n"}, "-q",
                   target=daemon.target)
    assert r.rc == 0 and "TC001" not in r.out, r.out[-3000:]
    r = run_pytest(tmp_path, {"test_o.py": OFF, "pytest.ini": "[pytest]\n"}, "-q", target=daemon.target)
    assert r.rc == 1 and "[TC001]" in r.out, r.out[-3000:]


CONNECT = f"""
import socket
try:
    socket.create_connection(("{FAR}", 443), timeout=1)
except OSError as e:
    print("errno", e.errno)
"""


def _trace(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "isod", "trace", *args, "--", sys.executable, "-c",
                           textwrap.dedent(CONNECT)], capture_output=True, text=True, timeout=60)


def test_isod_trace_shows_network_attempts(hooks):
    r = _trace("--size", "medium")
    assert r.stdout.strip() == "errno 1"
    assert f"connect {FAR}:443   = -1 EPERM (Operation not permitted)   [medium]" in r.stderr, r.stderr
    assert r.returncode == 1                               # something was denied
    r = _trace("--size", "small")
    assert r.stdout.strip() == "errno 1"
    assert "socket(AF_INET, SOCK_STREAM)   = -1 EPERM (Operation not permitted)   [small]" in r.stderr, r.stderr
    r = _trace("--size", "medium", "--json")
    events = [json.loads(line) for line in r.stderr.splitlines()]
    (net,) = [e for e in events if e.get("syscall") == "connect"]
    assert (net["host"], net["port"], net["family"], net["decision"]) == (FAR, 443, 2, "deny")

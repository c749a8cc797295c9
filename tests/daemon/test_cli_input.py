"""Every input of the `isod` command line that cannot work is refused the way
argparse refuses a bad option: one line on stderr naming the option, exit
status 2, nothing started, nothing deleted. Real `isod` processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

pytestmark = pytest.mark.medium   # each test starts `isod`


@pytest.fixture
def d():
    """A short private directory (Unix socket paths must stay under 108 bytes)."""
    path = tempfile.mkdtemp(prefix="isod-cli-")
    os.chmod(path, 0o700)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def isod(*args: str, env: dict | None = None, timeout: float = 20) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k not in ("ISOD_BACKEND", "ISOD_TARGET")}
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "isod", *args], capture_output=True, text=True,
                          timeout=timeout, env=e, stdin=subprocess.DEVNULL)


def refused(*args: str, env: dict | None = None) -> str:
    """`isod ARGS` must exit 2 at once with one line on stderr; that line."""
    try:
        r = isod(*args, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"isod {' '.join(args)} accepted its input and kept running")
    lines = r.stderr.splitlines()
    assert r.returncode == 2 and len(lines) == 1 and not r.stdout, (r.returncode, r.stdout, r.stderr)
    return lines[0]


def token(d: str, text: str = "0123456789abcdef0123", mode: int = 0o600, name: str = "token") -> str:
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def unix(d: str, name: str = "isod.sock") -> str:
    return f"unix://{d}/{name}"


# --- isod serve ----------------------------------------------------------------
@pytest.mark.parametrize(("args", "message"), [
    (["--workers", "-3"], "isod serve: --workers: -3 is not between 1 and 256"),
    (["--workers", "0"], "isod serve: --workers: 0 is not between 1 and 256"),
    (["--workers", "257"], "isod serve: --workers: 257 is not between 1 and 256"),
    (["--workers", "two"], "isod serve: argument --workers: 'two' is not a whole number"),
    (["--warm-zygotes", "-1"], "isod serve: --warm-zygotes: -1 is not between 0 and 64"),
    (["--warm-zygotes", "many"], "isod serve: argument --warm-zygotes: 'many' is not a whole number"),
    (["--grace", "-1"], "isod serve: --grace: -1 is not a number of seconds >= 0"),
    (["--grace", "nan"], "isod serve: --grace: nan is not a number of seconds >= 0"),
    (["--grace", "inf"], "isod serve: --grace: inf is not a number of seconds >= 0"),
    (["--grace", "soon"], "isod serve: argument --grace: 'soon' is not a number of seconds"),
    (["--limits", "huge.pids=3"], "isod serve: --limits: unknown test size 'huge'"),
    (["--limits", "medium.pids=inf"], "isod serve: --limits medium.pids=inf: an amount is not finite"),
    (["--limits", "medium.pids=-1"], "isod serve: --limits: bad amount '-1': must be positive"),
    (["--limits", "medium.memory=12Q"], "isod serve: --limits: bad amount '12Q'"),
    (["--limits", "medium=3"], "isod serve: --limits: bad limit 'medium=3'"),
    (["--backend", "bogus"], "isod serve: argument --backend: invalid choice: 'bogus'"),
    (["--exit-with-parent", "-1"], "isod serve: --exit-with-parent: -1 is not a process id"),
    (["--tls-cert", "/etc/hostname"], "isod serve: --tls-cert and --tls-key go together"),
    (["--tls-cert", "/nonexistent", "--tls-key", "/nonexistent"], "isod serve: cannot read --tls-cert /nonexistent"),
    (["--token-file", ""], "isod serve: argument --token-file: must not be empty"),
])
def test_serve_refuses_bad_options(d, args, message):
    assert refused("serve", "--listen", unix(d), *args).startswith(message)
    assert os.listdir(d) == []          # nothing was started there


def test_serve_refuses_an_unknown_backend_from_the_environment(d):
    line = refused("serve", "--listen", unix(d), env={"ISOD_BACKEND": "bogus"})
    assert line == "isod serve: ISOD_BACKEND='bogus': unknown backend (choose from auto, seccomp, ptrace)"


@pytest.mark.parametrize(("listen", "message"), [
    ("unix:///missing-dir-isod/isod.sock", "/missing-dir-isod is not a directory"),
    ("unix://relative.sock", "unix socket path must be absolute: 'unix://relative.sock'"),
    ("unix:/relative.sock", "bad address 'unix:/relative.sock': expected unix:///ABS/PATH or HOST:PORT"),
    ("unix:///" + "x" * 120, "unix socket path is longer than 107 bytes"),
    ("localhost:http", "bad address 'localhost:http'"),
    ("127.0.0.1:70000", "bad address '127.0.0.1:70000'"),
    ("127.0.0.1", "bad address '127.0.0.1'"),
    ("", "argument --listen: must not be empty"),
])
def test_serve_refuses_bad_addresses(d, listen, message):
    line = refused("serve", "--listen", listen, "--token-file", token(d))
    assert line.startswith("isod serve: ") and message in line, line


@pytest.mark.large     # a name lookup asks the DNS server
def test_serve_refuses_a_tcp_host_it_cannot_resolve_or_a_port_in_use(d):
    tok = token(d)
    line = refused("serve", "--listen", "no-such-host.invalid:0", "--token-file", tok)
    assert line.startswith("isod serve: --listen no-such-host.invalid:0: cannot resolve no-such-host.invalid"), line
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = refused("serve", "--listen", f"127.0.0.1:{port}", "--token-file", tok)
    assert line == f"isod serve: --listen 127.0.0.1:{port}: cannot listen there: Address already in use"


@pytest.mark.parametrize(("make", "message"), [
    (lambda d: "/nonexistent/token", "cannot read --token-file /nonexistent/token: No such file or directory"),
    (lambda d: token(d, mode=0o644), "must not be readable by group or others"),
    (lambda d: token(d, "short"), "is shorter than 16 bytes"),
    (lambda d: None, "listening on TCP needs --token-file"),
])
def test_serve_refuses_a_tcp_listener_without_a_usable_token(d, make, message):
    path = make(d)
    line = refused("serve", "--listen", "127.0.0.1:0", *(["--token-file", path] if path else []))
    assert line.startswith("isod serve: ") and message in line, line


def test_serve_refuses_a_certificate_that_is_not_pem(d):
    tok = token(d)
    notpem = token(d, "hello", name="notpem")
    line = refused("serve", "--listen", "127.0.0.1:0", "--token-file", tok, "--tls-cert", notpem, "--tls-key", notpem)
    assert line == f"isod serve: --tls-cert {notpem} is not a PEM file"


def test_serve_leaves_a_file_that_is_not_a_socket_alone(d):
    victim = token(d, "precious", name="notes.txt")
    assert refused("serve", "--listen", f"unix://{victim}") == (
        f"isod serve: --listen unix://{victim}: {victim} exists and is not a socket")
    with open(victim) as f:
        assert f.read() == "precious"


def test_serve_does_not_take_over_a_socket_someone_serves_on(d):
    path = os.path.join(d, "isod.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(path)
        live.listen()
        assert refused("serve", "--listen", f"unix://{path}") == (
            f"isod serve: --listen unix://{path}: something is already serving there (another isod serve?)")
        assert os.path.exists(path)


def test_serve_replaces_a_stale_socket_and_accepts_the_limits_of_each_option(d):
    """The other side: the extremes that are allowed still start a daemon."""
    path = os.path.join(d, "isod.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(path)                 # bound, never listening: what a killed daemon leaves
    log = open(os.path.join(d, "log"), "w+b")
    proc = subprocess.Popen([sys.executable, "-m", "isod", "serve", "--listen", f"unix://{path}", "--workers", "256",
                             "--grace", "0", "--limits", "medium.pids=256,small.memory=off,xlarge.memory=1.5G"],
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while b"serving on" not in (text := open(log.name, "rb").read()):
            assert proc.poll() is None and time.monotonic() < deadline, text.decode(errors="replace")
            time.sleep(0.05)
        assert b"256 workers per session" in text
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        log.close()


# --- isod status ---------------------------------------------------------------
def test_status_refuses_a_bad_address():
    assert refused("status", "--target", "garbage") == (
        "isod status: --target: bad address 'garbage': expected unix:///ABS/PATH or HOST:PORT (port 0-65535)")
    assert refused("status", env={"ISOD_TARGET": "unix://relative.sock"}) == (
        "isod status: ISOD_TARGET: unix socket path must be absolute: 'unix://relative.sock' (unix:///ABS/PATH)")


# --- isod trace ----------------------------------------------------------------
def test_trace_refuses_an_output_file_it_cannot_write():
    assert refused("trace", "-o", "/nonexistent/trace.txt", "--", "true") == (
        "isod trace: -o /nonexistent/trace.txt: No such file or directory")


def test_trace_refuses_an_unknown_backend_or_size():
    assert refused("trace", "--", "true", env={"ISOD_BACKEND": "bogus"}) == (
        "isod trace: ISOD_BACKEND='bogus': unknown backend (choose from auto, seccomp, ptrace)")
    assert refused("trace", "--size", "huge", "--", "true").startswith(
        "isod trace: argument --size: invalid choice: 'huge'")


# --- isod ----------------------------------------------------------------------
@pytest.mark.parametrize(("args", "line"), [
    ([], "isod: the following arguments are required: command"),
    (["nope"], "isod: argument command: invalid choice: 'nope' (choose from 'trace', 'serve', 'status', 'suggest')"),
    (["serve", "--bogus"], "isod: unrecognized arguments: --bogus"),
])
def test_a_bad_command_is_one_line(args, line):
    assert refused(*args) == line

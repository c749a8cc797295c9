"""`isod serve`: its options, its address, its backends, then the gRPC server (grpc_server.py).

gRPC is imported only once an embedded daemon's zygote has started (its
import is a tenth of a second on the path to the first test).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import stat
import sys
import tempfile
import threading
import time

from ..contract import EMBEDDED_DIR_PREFIX, Size
from ..sandbox import SandboxError, open_backend
from ..sandbox.watch import WatchBackend
from .limits import LimitsConfig
from .options import UsageError
from .prestart import start_zygote
from .session import default_workers
from .strays import remove_stale_cgroups

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
MAX_WORKERS = 256          # what a session may ask for (service.py)
SUN_PATH_MAX = 107         # bytes of a Unix socket path (sockaddr_un.sun_path, less the NUL)


def log(msg: str) -> None:
    sys.stderr.write(f"isod[{os.getpid()}] {time.strftime('%H:%M:%S')} {msg}\n")
    sys.stderr.flush()


def default_listen() -> str:
    """A Unix socket in a 0700 directory of this user's."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    d = os.path.join(base, f"isod-{os.getuid()}")
    try:
        os.makedirs(d, mode=0o700, exist_ok=True)
        st = os.stat(d)
    except OSError as e:
        raise UsageError(f"cannot make the default socket directory {d}: {e.strerror} (give an address)") from None
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise UsageError(f"{d} must be owned by uid {os.getuid()} with mode 0700")
    return "unix://" + os.path.join(d, "isod.sock")


def unix_path(listen: str) -> str | None:
    return listen[len("unix://"):] if listen.startswith("unix://") else None


def address_problem(address: str) -> str | None:
    """What is wrong with the form of a daemon address, or None: the forms
    isod takes are unix:///ABS/PATH and HOST:PORT (IPv6 as [ADDR]:PORT)."""
    path = unix_path(address)
    if path is not None:
        if not path.startswith("/"):
            return f"unix socket path must be absolute: {address!r} (unix:///ABS/PATH)"
        if len(os.fsencode(path)) > SUN_PATH_MAX:
            return f"unix socket path is longer than {SUN_PATH_MAX} bytes: {address!r}"
        return None
    host, colon, port = address.rpartition(":")
    if not colon or not host or "/" in address or not port.isdigit() or int(port) > 65535:
        return f"bad address {address!r}: expected unix:///ABS/PATH or HOST:PORT (port 0-65535)"
    return None


def check_listen(listen: str) -> str | None:
    """The socket path of a listen address (None: TCP), or UsageError when
    the daemon could not listen there. An existing socket is replaced only if
    nothing answers on it; any other file at the path is left alone."""
    if problem := address_problem(listen):
        raise UsageError(f"--listen: {problem}")
    path = unix_path(listen)
    if path is None:
        _check_tcp(listen)
        return None
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise UsageError(f"--listen {listen}: {parent} is not a directory (make it first, mode 0700)")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return path
    except OSError as e:
        raise UsageError(f"--listen {listen}: {e.strerror}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise UsageError(f"--listen {listen}: {path} exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2)
        try:
            probe.connect(path)
        except OSError:
            pass                    # a stale socket of a daemon that died: replaced below
        else:
            raise UsageError(f"--listen {listen}: something is already serving there (another isod serve?)")
    return path


def _check_tcp(listen: str) -> None:
    """UsageError unless HOST resolves and PORT can be bound on at least one
    of its addresses (as gRPC needs), said in one line before gRPC tries and
    logs its own."""
    host, _, port = listen.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        addresses = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise UsageError(f"--listen {listen}: cannot resolve {host}: {e.strerror}") from None
    error = ""
    for family, kind, proto, _, sockaddr in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(sockaddr)
                return
            except OSError as e:
                error = error or e.strerror
    raise UsageError(f"--listen {listen}: cannot listen there: {error}")


def kernel_features() -> dict[str, bool]:
    from ..sandbox.seccomp import SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV  # noqa: F401

    actions = ""
    try:
        with open("/proc/sys/kernel/seccomp/actions_avail") as f:
            actions = f.read()
    except OSError:
        pass
    release = tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2] if x.isdigit())
    return {
        "seccomp_user_notif": "user_notif" in actions,
        "seccomp_ret_trace": "trace" in actions,
        "wait_killable_recv": release >= (5, 19),
        "pidfd": release >= (5, 3),
    }


WARM_ZYGOTES = 4     # collected zygotes `isod serve` keeps for the next runs (zygote_pool.py)


def serve(listen: str | None, workers: int | None, backend_name: str, token_file: str | None,
          exit_with_parent: int | None = None, grace: float = 10.0,
          tls_cert: str | None = None, tls_key: str | None = None, limits: str = "",
          warm_zygotes: int = WARM_ZYGOTES, prestart: str | None = None) -> int:
    """Serve until SIGTERM/SIGINT; UsageError (nothing started) for an option that cannot work."""
    if exit_with_parent is not None and exit_with_parent <= 0:
        raise UsageError(f"--exit-with-parent: {exit_with_parent} is not a process id")
    # from the start: a SIGTERM (the client's death, PDEATHSIG) while starting
    # stops the daemon the same way as later, through its cleanup
    stopping = threading.Event()

    def on_signal(signum, _frame):
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        if not 0 <= warm_zygotes <= 64:
            raise UsageError(f"--warm-zygotes: {warm_zygotes} is not between 0 and 64")
        # an embedded daemon serves one run: nothing to keep warm for
        return _serve(listen, workers, backend_name, token_file, exit_with_parent, grace, tls_cert, tls_key,
                      limits, stopping, 0 if exit_with_parent else warm_zygotes, prestart)
    finally:
        if exit_with_parent and os.getppid() != exit_with_parent:
            _remove_embedded_dir(listen or "")


def _remove_embedded_dir(listen: str) -> None:
    """An embedded daemon whose client died (SIGKILL): the client cannot
    remove the private directory it made for us any more."""
    if not listen.startswith("unix://"):
        return
    parent = os.path.dirname(listen[len("unix://"):])
    if os.path.basename(parent).startswith(EMBEDDED_DIR_PREFIX):
        shutil.rmtree(parent, ignore_errors=True)


def _serve(listen, workers, backend_name, token_file, exit_with_parent, grace, tls_cert, tls_key, limits,
           stopping: threading.Event, warm_zygotes: int = 0, prestart: str | None = None) -> int:
    if exit_with_parent:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != exit_with_parent:
            return 0   # the parent is already gone
    # a same-uid test must not ptrace the daemon or read its memory
    ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)

    if workers is not None and not 1 <= workers <= MAX_WORKERS:
        raise UsageError(f"--workers: {workers} is not between 1 and {MAX_WORKERS}")
    if not grace >= 0 or grace == float("inf"):     # NaN fails the first test
        raise UsageError(f"--grace: {grace:g} is not a number of seconds >= 0")
    listen = listen or default_listen()
    path = check_listen(listen)
    try:
        token = tls = None
        if token_file or tls_cert or tls_key:
            from .auth import read_token, tls_credentials  # gRPC's: only when asked (see below)

            token = read_token(token_file) if token_file else None
            tls = tls_credentials(tls_cert, tls_key)
    except SystemExit as e:       # auth.py's refusals, one line each naming the option
        raise UsageError(str(e.code).removeprefix("isod serve: ")) from None
    if path is None and token is None:
        raise UsageError("listening on TCP needs --token-file (anyone could run commands otherwise)")
    try:
        limits_config = LimitsConfig.parse(limits)
    except ValueError as e:
        raise UsageError(f"--limits: {e}") from None
    except OverflowError:
        raise UsageError(f"--limits {limits}: an amount is not finite") from None
    if unknown := sorted(set(limits_config.sizes) - {s.value for s in Size}):
        raise UsageError(f"--limits: unknown test size {unknown[0]!r} "
                         f"(known sizes: {', '.join(s.value for s in Size)})")
    if path is not None:
        parent = os.path.dirname(path)
        if os.stat(parent).st_mode & 0o077:
            log(f"warning: {parent} is accessible to other users; prefer a 0700 directory")
        try:
            os.unlink(path)       # check_listen found nothing serving there
        except FileNotFoundError:
            pass
        except OSError as e:
            raise UsageError(f"--listen {listen}: cannot remove the stale socket: {e.strerror}") from None

    for pid, cmd in remove_stale_cgroups():
        log(f"killed {pid} ({cmd}), left in the cgroup of a daemon that died")
    native = WatchBackend()
    nworkers = workers or default_workers()
    # an embedded daemon's session: its zygote (an interpreter, pytest, the
    # collection) starts first, before the trap backend's probe and before
    # gRPC is imported and the server built; a tracer (ptrace) must be its
    # workers' parent, so there it has no zygote
    early = start_zygote(prestart, native, nworkers, limits_config, log) \
        if prestart and backend_name != "ptrace" else None
    try:
        backend = open_backend(backend_name)
    except SandboxError as e:
        if early is not None:
            early.kill()
        raise UsageError(f"--backend {backend_name}: {e}") from None
    if early is not None and not hasattr(backend, "adopt"):     # auto fell back to ptrace
        early.kill()
        early = None
    from .grpc_server import serve_grpc
    from .service import IsodService

    service = IsodService(backend, log, nworkers, listen, kernel_features(), limits_config, native=native,
                          warm_zygotes=warm_zygotes)
    if early is not None:
        service.zygotes.prestart(early)
    return serve_grpc(service, listen, path, tls, token, grace, stopping, log)

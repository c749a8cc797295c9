"""The zygote: one pytest process per session that collects once, then forks workers.

Starting a worker used to cost a Python start, a pytest import and a whole
collection, per worker. The zygote does that once, unfiltered; the daemon
then asks it for workers (``ForkWorker``) and each forked child becomes a
worker of its class: a session of its own, its own output pipes, channel and
phase word (passed with the request), the class's seccomp filter installed
by itself while it is the only thread of its process, and pytest's per-worker
state made anew (worker id, basetemp, log file). The zygote reaps its
children and reports their exit status, since the daemon is not their parent.

Forking copies a process, not its threads: with more than one thread, a lock
another thread held stays locked forever in the child. The zygote refuses to
fork then (``ForkRefused``, the daemon starts fresh workers and says why), and
also when code read the worker id while collecting (a conftest that derives a
port or a database name from ``PYTEST_XDIST_WORKER`` at import would see one
id in every worker) or when pytest-cov measures (it starts per process).
"""

from __future__ import annotations

import ctypes
import gc
import os
import select
import signal
import stat
import sys
from pathlib import Path

import pytest

from isod import channel, phase_word
from isod import watched as watched_inputs
from isod.v1 import isod_pb2 as pb

from . import xdist_compat

ENV_FD = "ISOD_ZYGOTE_FD"
WORKER_FD = "ISOD_WORKER_FD"
WORKER_ID_VARS = frozenset({"PYTEST_XDIST_WORKER", "ISOD_WORKER_ID"})
_FORK_FDS = 4        # channel, stdout, stderr, phase word


class WorkerIdReads:
    """Notices code reading the worker id before the fork (its value then is
    the zygote's, not the worker's): the environment variables and
    ``config.workerinput["workerid"]``."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._environ_getitem = None
        self._getpid = None

    def start(self, config: pytest.Config) -> None:
        for var in WORKER_ID_VARS:      # each worker gets its own after the fork
            os.environ.pop(var, None)
        self._watch_getpid()
        env_class = type(os.environ)
        original = env_class.__getitem__
        seen = self.seen

        def getitem(environ, key):
            # the zygote has no id in its environment (start() took it out):
            # a copy of the environment reads only what is there, so a read
            # of one of these is code that asked for the worker id
            if key in WORKER_ID_VARS and len(seen) < 3:
                seen.append(f"os.environ[{key!r}]")
            return original(environ, key)

        self._environ_getitem = original
        env_class.__getitem__ = getitem
        if hasattr(config, "workerinput"):
            config.workerinput = _WatchedInput(config.workerinput, seen)

    def _watch_getpid(self) -> None:
        """A test module or conftest that keeps os.getpid() at import (a
        unique file name, a lock) would keep the zygote's in every worker."""
        real, seen = os.getpid, self.seen
        self._getpid = real

        def getpid() -> int:
            if self._getpid is not None and len(seen) < 3:
                code = sys._getframe(1).f_code
                if _project_code(code.co_filename):
                    seen.append(f"os.getpid() at {os.path.basename(code.co_filename)}:{sys._getframe(1).f_lineno}")
            return real()

        os.getpid = getpid

    def unwatched_env(self, key: str) -> str | None:
        try:
            return (self._environ_getitem or type(os.environ).__getitem__)(os.environ, key)
        except KeyError:
            return None

    def stop(self) -> None:
        if self._getpid is not None:
            os.getpid, self._getpid = self._getpid, None    # a reference kept to ours stays correct
        if self._environ_getitem is not None:
            type(os.environ).__getitem__ = self._environ_getitem
            self._environ_getitem = None


class _WatchedInput(dict):
    def __init__(self, data: dict, seen: list[str]) -> None:
        super().__init__(data)
        self._seen = seen

    def _note(self, key) -> None:
        if key == "workerid" and self._seen is not None and len(self._seen) < 3:
            self._seen.append("config.workerinput['workerid']")

    def __getitem__(self, key):
        self._note(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self._note(key)
        return super().get(key, default)

    def stop(self) -> None:
        self._seen = None


READS = WorkerIdReads()     # started before the conftests load (plugin.py)
_STDLIB = os.path.dirname(os.__file__)
_ISOD = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _project_code(filename: str) -> bool:
    """Code of the project under test: not the stdlib, an installed package or isod."""
    return not (filename.startswith((_STDLIB, _ISOD, "<")) or "site-packages" in filename)


PR_SET_DUMPABLE = 4


def _set_dumpable(on: bool) -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, int(on), 0, 0, 0)


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def _identity(fd: int) -> tuple[int, int] | None:
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class Zygote:
    def __init__(self, config: pytest.Config, ctl: channel.Channel) -> None:
        self.config = config
        self.ctl = ctl
        os.set_inheritable(ctl.fileno(), False)
        self.reads = READS
        self.children: set[int] = set()

    def send(self, **kind) -> None:
        self.ctl.send(pb.ZygoteEvent(**kind).SerializeToString())

    def refusal(self) -> str:
        """Why forking a worker is unsafe now ('' when it is safe)."""
        n = _threads()
        if n > 1:
            return (f"the collecting process runs {n} threads (a fork copies none of them, and a lock one of "
                    "them held would stay locked in the worker)")
        if self.reads.seen:
            return (f"code read the worker id or the process id while collecting ({', '.join(self.reads.seen)}): "
                    "each worker must collect with its own")
        cov = self.config.pluginmanager.get_plugin("_cov")
        if cov is not None and getattr(cov, "options", None) is not None and getattr(cov.options, "no_cov", True) \
                is False and getattr(cov, "cov_controller", None) is not None:
            return "pytest-cov measures from each worker's start"
        return ""

    def serve(self) -> channel.Channel:
        """Fork workers until the daemon kills it (or goes away). Returns
        only in a forked child: its channel to the daemon."""
        _flush_stdio()
        outputs = (_identity(1), _identity(2))
        # its workers must not reach into it (/proc/PID/mem, ptrace): it forks
        # unfiltered. Each worker is made dumpable again (the daemon reads it).
        _set_dumpable(False)
        # what it collected lives as long as its workers: out of the garbage
        # collector's sight (gc.freeze), a worker's collections neither scan
        # it nor write its object headers (which would copy every page the
        # fork shares: measured, a worker's last collection cost 11% of its time)
        gc.collect()
        gc.freeze()
        wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        old_wakeup = signal.set_wakeup_fd(wake_w)
        old_chld = signal.signal(signal.SIGCHLD, lambda *_: None)
        poller = select.poll()
        poller.register(self.ctl.fileno(), select.POLLIN)
        poller.register(wake_r, select.POLLIN)
        while True:
            for fd, _ev in poller.poll():
                if fd == wake_r:
                    while True:
                        try:
                            if not os.read(wake_r, 256):
                                break
                        except BlockingIOError:
                            break
                    self._reap()
                    continue
                try:
                    raw, fds = self.ctl.recv_fds(_FORK_FDS)
                except (EOFError, OSError):
                    self._orphaned()
                cmd = pb.ZygoteCommand.FromString(raw)
                why = self.refusal() if len(fds) == _FORK_FDS else f"{len(fds)} fds came with the request"
                if why:
                    for x in fds:
                        os.close(x)
                    self.send(refused=pb.ForkRefused(reason=why))
                    continue
                pid = os.fork()
                if pid == 0:
                    signal.set_wakeup_fd(old_wakeup)
                    signal.signal(signal.SIGCHLD, old_chld)
                    os.close(wake_r)
                    os.close(wake_w)
                    return self._become_worker(cmd.fork, fds, outputs)
                for x in fds:
                    os.close(x)
                self.children.add(pid)
                self.send(forked=pb.WorkerSpawned(name=cmd.fork.name, pid=pid))
            self._reap()

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self.send(exited=pb.WorkerExited(pid=pid, status=os.waitstatus_to_exitcode(status)))

    def _orphaned(self) -> None:
        """The daemon is gone: no worker outlives it."""
        for pid in self.children:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        self._exit(70)

    def _exit(self, code: int) -> None:
        # no session finish here: the zygote ran no test, its workers report
        _flush_stdio()
        os._exit(code)

    # --- in the forked child ----------------------------------------------
    def _become_worker(self, fork: pb.ForkWorker, fds: list[int], outputs) -> channel.Channel:
        chan_fd, out_fd, err_fd, phase_fd = fds
        os.setsid()                     # its own group: the daemon kills the worker's group
        _set_dumpable(True)
        self.ctl.close()
        _redirect(outputs, out_fd, err_fd)
        os.close(out_fd)
        os.close(err_fd)
        _restart_capture(self.config)
        self.reads.stop()
        wi = getattr(self.config, "workerinput", None)
        if isinstance(wi, _WatchedInput):
            wi.stop()
        env = dict(fork.env)
        env[phase_word.ENV_FD] = str(phase_fd)
        env[WORKER_FD] = str(chan_fd)
        os.environ.update(env)
        chan = channel.from_fd(chan_fd)
        os.set_inheritable(chan_fd, False)
        if wi is not None:
            wi.update(xdist_compat.workerinput(os.environ))
        _per_worker_places(self.config, fork.name)
        listener = None
        if fork.filter:
            from isod.sandbox.launcher import install
            from isod.sandbox.seccomp import SECCOMP_FILTER_FLAG_NEW_LISTENER

            listener = install(fork.filter, SECCOMP_FILTER_FLAG_NEW_LISTENER)
        msg = pb.WorkerEvent(forked=pb.Forked(pid=os.getpid())).SerializeToString()
        if listener is not None:
            chan.send_fds(msg, [listener])
            os.close(listener)
        else:
            chan.send(msg)
        return chan


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def _redirect(outputs, out_fd: int, err_fd: int) -> None:
    """Every fd of the zygote's stdout or stderr (fds 1 and 2, and the copies
    pytest's capture and faulthandler keep of them) now writes to this
    worker's own pipes: its output and a crash's traceback are its own."""
    out_id, err_id = outputs
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd in (out_fd, err_fd):
            continue
        ident = _identity(fd)
        if ident is None:
            continue
        if ident == out_id:
            os.dup2(out_fd, fd, inheritable=fd <= 2)
        elif ident == err_id:
            os.dup2(err_fd, fd, inheritable=fd <= 2)


class OpenedFiles:
    """Files the zygote opened while it started and collected (the audit
    hook's ``open`` events: imported modules, data files a test module reads
    at import, ini files), and the directories it listed (``os.scandir``,
    ``os.listdir``: a test file added or removed). A warm zygote
    (server/zygote_pool.py) is reused only while none of them changed."""

    MAX = 20000
    _LISTED = ("os.scandir", "os.listdir")

    def __init__(self) -> None:
        self.paths: set[str] = set()
        self.recording = False

    def start(self) -> None:
        self.recording = True
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple) -> None:
        if not self.recording or len(self.paths) >= self.MAX:
            return
        if event == "open":
            path, mode, flags = args[0], args[1], args[2]
            # what it reads, not what it writes (a log, a file of results)
            if mode is not None and any(c in str(mode) for c in "wax+"):
                return
            if mode is None and isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR):
                return
        elif event in self._LISTED:
            path = args[0] if args[0] is not None else "."
            if isinstance(path, int):     # scandir(fd)
                return
        else:
            return
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if isinstance(path, str):
            self.paths.add(os.path.abspath(path))


OPENED = OpenedFiles()


def watched(config: pytest.Config) -> tuple[list[str], list[int], list[str], list[int]]:
    """What the collection depends on (isod.watched): the modules loaded
    (pytest and its plugins, the project's code) and every file opened while
    collecting, with their mtimes; every directory listed, with a digest of
    the names in it."""
    OPENED.recording = False
    paths = set(OPENED.paths)
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str):
            paths.add(path)
    if config.inipath:
        paths.add(str(config.inipath))
    # pytest's cache is the client's to write after every run (lastfailed,
    # nodeids): a collection that selected from it is never reused
    # (Collected.cache_selects); what another one reads of it is not collection
    cache = getattr(config, "cache", None)
    cache_dir = str(getattr(cache, "_cachedir", "")) if cache is not None else None
    files, mtimes, dirs, digests = [], [], [], []
    for path in sorted(paths):
        if path.endswith(".pyc") or not os.path.isabs(path) or (
                cache_dir and (path == cache_dir or path.startswith(cache_dir + os.sep))):
            continue
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            files.append(path)
            mtimes.append(st.st_mtime_ns)
        elif stat.S_ISDIR(st.st_mode):
            digest = watched_inputs.listing_digest(path)
            if digest is not None:
                dirs.append(path)
                digests.append(digest)
    return files, mtimes, dirs, digests


def _restart_capture(config: pytest.Config) -> None:
    """pytest's fd capture writes to a temporary file opened before the fork:
    shared with the zygote and every other worker (one file offset), two
    workers would read and truncate each other's captured output. Each
    worker captures into files of its own."""
    capman = config.pluginmanager.get_plugin("capturemanager")
    if capman is None or getattr(capman, "_global_capturing", None) is None:
        return
    capman.stop_global_capturing()
    capman.start_global_capturing()


def _per_worker_places(config: pytest.Config, name: str) -> None:
    """What the zygote made for itself that a worker must have of its own
    (the zygote used ``<basetemp>/zygote`` and no log file)."""
    factory = getattr(config, "_tmp_path_factory", None)
    # this session's (a warm zygote collected for an earlier one), else the one it was started with
    base = os.environ.get(BASETEMP_ENV) or config.stash.get(BASETEMP_KEY, None)
    if factory is not None:
        if base:
            factory._given_basetemp = Path(os.path.abspath(os.path.join(base, name)))
            config.option.basetemp = str(factory._given_basetemp)
        factory._basetemp = None      # made on first use, by this worker
    # `random` and tempfile's names reseed themselves after a fork; numpy's
    # global generator does not: workers would draw the same numbers
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        try:
            numpy.random.seed()
        except Exception:  # noqa: BLE001, S110 (a numpy without the legacy global generator)
            pass
    log_file = config.stash.get(LOG_FILE_KEY, None)
    logging_plugin = config.pluginmanager.get_plugin("logging-plugin")
    if log_file and logging_plugin is not None:
        logging_plugin.set_log_path(f"{log_file}.{name}")


BASETEMP_KEY = pytest.StashKey[str]()    # the client's --basetemp
BASETEMP_ENV = "ISOD_BASETEMP"
LOG_FILE_KEY = pytest.StashKey[str]()    # the client's log file

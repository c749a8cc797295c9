"""The worker side: a pytest plugin loaded into each sandboxed worker process.

The daemon starts ``python -m pytest -p isod.worker.plugin <client args>`` in
the client's interpreter, cwd and environment, with ISOD_WORKER_FD naming the
inherited channel. The worker collects (the client does not: collection.py),
sends its collection, then runs what it is sent one item at a time —
pipelined like pytest-xdist, so that each item runs with its real
``nextitem`` and module/session fixtures are torn down where pytest would
tear them down.

Order on the channel matters: ``started`` goes out before setup, so that the
daemon knows which test runs (its time limit, who a crash belongs to); the
setup, call and teardown reports travel in ``finished``, with their end
times, which tell the daemon the phase of each recorded call. Where the test
is meanwhile, the daemon reads from the phase word (worker/phases.py).
"""

from __future__ import annotations

import errno
import json
import os
import sys
import threading
import time
from _thread import get_native_id
from collections import deque

import pytest
from _pytest.reports import TestReport

from isod import channel, contract, phase_word, wire
from isod.v1 import isod_pb2 as pb

from . import collection, phases, xdist_compat, zygote

ENV_FD = "ISOD_WORKER_FD"

# sys.audit events that name a command about to be run (what a denied vfork
# cannot tell the daemon by itself).
_AUDITED = {
    "subprocess.Popen": lambda a: _popen_argv(a[0], a[1]),
    "os.system": lambda a: ["sh", "-c", os.fsdecode(a[0])],
    "os.posix_spawn": lambda a: [os.fsdecode(x) for x in a[1]],
    "os.exec": lambda a: [os.fsdecode(x) for x in a[1]],
    "os.spawn": lambda a: [os.fsdecode(x) for x in a[2]],
    "os.fork": lambda a: [],
    "os.forkpty": lambda a: [],
    "pty.spawn": lambda a: [os.fsdecode(x) for x in (a[0] if isinstance(a[0], (list, tuple)) else [a[0]])],
    # a C function looked up through ctypes (libc.system): names a spawn that
    # no Python-level event announces. Best effort: ctypes caches lookups.
    "ctypes.dlsym": lambda a: [a[1] if isinstance(a[1], str) else repr(a[1])],
}


def _inet(address) -> list[str] | None:
    """[host, port] of an inet socket address; None for AF_UNIX (a path) and others."""
    if isinstance(address, tuple) and len(address) >= 2 and isinstance(address[0], str):
        return [address[0], str(address[1])]
    return None


# sys.audit events that name a network destination (TC001): the kernel record
# of a denied socket() has no address, and a connect's address is a number
# where the test named a host. Recorded only in tests, at most
# MAX_NET_INTENTS per test (a medium test may connect to localhost in a loop).
_NET_AUDITED = {
    "socket.connect": lambda a: _inet(a[1]),
    "socket.sendto": lambda a: _inet(a[1]),
    "socket.sendmsg": lambda a: _inet(a[1]),
    "socket.getaddrinfo": lambda a: [os.fsdecode(a[0]) if a[0] is not None else "", str(a[1] or "")],
    "socket.gethostbyname": lambda a: [os.fsdecode(a[0])],
    "socket.gethostbyname_ex": lambda a: [os.fsdecode(a[0])],
    "socket.gethostbyaddr": lambda a: [os.fsdecode(a[0])],
}
MAX_NET_INTENTS = 256


def _popen_argv(executable, args) -> list[str]:
    """The program Popen runs and its arguments: `executable=` runs another
    program than argv[0] names."""
    argv = [os.fsdecode(x) for x in (args if isinstance(args, (list, tuple)) else [args])]
    if executable is not None and argv:
        argv[0] = os.fsdecode(executable)
    return argv


_STDLIB = os.path.dirname(os.__file__)
_PTY = os.path.join(_STDLIB, "pty.py")
# taken at import: a test or plugin may patch the os module's (a blocking-call
# checker makes os.getcwd raise) while the audit hook runs inside its code
_getcwd = os.getcwd
_monotonic_ns = time.monotonic_ns


def _user_code(name: str) -> bool:
    return not name.startswith(_STDLIB) and "site-packages" not in name and not name.startswith("<")


def _call_site(frame) -> str:
    """file:line of the first caller outside the stdlib and installed packages."""
    while frame is not None:
        name = frame.f_code.co_filename
        if _user_code(name):
            cwd = _getcwd()
            shown = os.path.relpath(name, cwd) if name.startswith(cwd + os.sep) else name
            return f"{shown}:{frame.f_lineno}"
        frame = frame.f_back
    return ""


def _forking_caller(frame, event: str) -> tuple[list[str], str]:
    """os.fork and os.forkpty name no command; the stdlib code that forks in
    Python knows it: os.spawnv and friends (os._spawnvef), pty.spawn (which
    forks through pty.fork: os.forkpty, then os.fork)."""
    while frame is not None:
        code = frame.f_code
        if code.co_name == "_spawnvef" and code.co_filename in ("<frozen os>", os.__file__):
            return [os.fsdecode(a) for a in frame.f_locals.get("args", ())], "os.spawn"
        if code.co_name == "spawn" and code.co_filename == _PTY:
            argv = frame.f_locals.get("argv", ())
            return [os.fsdecode(a) for a in (argv if isinstance(argv, (list, tuple)) else [argv])], "pty.spawn"
        frame = frame.f_back
    return [], event


class Intents:
    """Collects the audited intents of the running test (from any thread)."""

    def __init__(self) -> None:
        self.items: list[pb.Intent] = []
        self.t0_ns = time.monotonic_ns()
        self.active = False
        self.net_left = MAX_NET_INTENTS
        # (worker pid, writer): an exec of the worker itself, told to the
        # daemon through shared memory (the process image is about to go)
        self.own_exec: tuple[int, object] | None = None

    def start(self) -> int:
        self.items = []
        self.net_left = MAX_NET_INTENTS
        self.t0_ns = time.monotonic_ns()
        self.active = True
        return self.t0_ns

    def take(self) -> list[pb.Intent]:
        self.active = False
        out, self.items = self.items, []
        return out

    def hook(self, event: str, args: tuple) -> None:
        if event == "os.exec" and self.own_exec is not None and os.getpid() == self.own_exec[0]:
            try:
                self.own_exec[1](_AUDITED[event](args))
            except Exception:  # noqa: BLE001, S110 (never fail the exec itself)
                pass
        if event in _AUDITED and self.active:
            # an exception here would propagate into the audited call: never raise
            try:
                self._record(event, args, sys._getframe(1))
            except Exception:  # noqa: BLE001, S110
                pass
        elif event in _NET_AUDITED and self.active and self.net_left > 0:
            try:
                self._record_net(event, args, sys._getframe(1))
            except Exception:  # noqa: BLE001, S110
                pass

    def _record_net(self, event: str, args: tuple, frame) -> None:
        """A network destination the test named (host and port as given)."""
        t_ns = _monotonic_ns()
        where = _NET_AUDITED[event](args)
        if where is None:
            return
        self.net_left -= 1
        intent = pb.Intent(event=event, argv=wire.utf8_safe_list(where), tid=get_native_id(),
                           offset_s=(t_ns - self.t0_ns) / 1e9)
        self.items.append(intent)
        intent.site = wire.utf8_safe(_call_site(frame))

    def _record(self, event: str, args: tuple, frame) -> None:
        """The command is recorded first and on its own: nothing that may
        fail later (the call site needs the cwd: deleted, or os.getcwd made
        to raise by another plugin) can cost it, or let the fork be named by
        an older, unrelated intent of the thread."""
        t_ns = _monotonic_ns()
        try:
            argv = wire.utf8_safe_list(_AUDITED[event](args))
        except Exception:  # noqa: BLE001 (odd arguments: their repr is the command then)
            argv = [_repr(args)]
        if event in ("os.fork", "os.forkpty") and not argv:
            try:
                argv, event = _forking_caller(frame, event)
                argv = wire.utf8_safe_list(argv)
            except Exception:  # noqa: BLE001
                argv = []
        intent = pb.Intent(event=event, argv=argv, tid=get_native_id(), offset_s=(t_ns - self.t0_ns) / 1e9)
        self.items.append(intent)
        try:
            intent.site = wire.utf8_safe(_call_site(frame))
        except Exception:  # noqa: BLE001, S110 (no site: the command is what matters)
            pass


def _repr(args) -> str:
    try:
        return wire.utf8_safe(repr(args)[:500])
    except Exception:  # noqa: BLE001 (a broken __repr__)
        return "?"


class WorkerPlugin:
    def __init__(self, config: pytest.Config, chan: channel.Channel | None,
                 forks: zygote.Zygote | None = None) -> None:
        self.config = config
        self.chan = chan            # None in the zygote until it forks this worker
        self.zygote = forks
        self.intents = Intents()
        self.warnings: list[pb.RecordedWarning] = []
        self.reports: list[pb.PhaseReport] = []      # the running test's reports
        self.done: pb.WorkerEvent | None = None      # the last test's `finished`, not sent yet
        self.keywords: dict = {}                     # the running test's, from its reports
        self.plain_reports = False                   # decided once collection loaded every conftest
        sys.addaudithook(self.intents.hook)

    def send(self, **kind) -> None:
        self.chan.send(pb.WorkerEvent(**kind).SerializeToString())

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_collection(self, session: pytest.Session):
        """Sent once collection is over, warnings included (pytest's warnings
        plugin records them as its own wrapper of this hook ends, inside
        this one); when it raised, the client raises the same."""
        recorder = collection.CollectionRecorder(self.config)
        self.config.pluginmanager.register(recorder, "isod-collection")
        try:
            result = yield
            collected = recorder.collection(session)    # a size marker used wrong is a usage error
        except BaseException as e:
            self._send_collected(pb.Collected(collection=recorder.failed(e), errors=recorder.errors))
            raise
        finally:
            self.config.pluginmanager.unregister(recorder)
        # reports travel as fields unless a plugin (not pytest's own; a
        # subdirectory's conftest too) serializes them its own way
        self.plain_reports = all(
            str(getattr(impl.plugin, "__name__", "")).startswith("_pytest.")
            for impl in self.config.pluginmanager.hook.pytest_report_to_serializable.get_hookimpls())
        self._send_collected(pb.Collected(nodeids=[t.nodeid for t in collected.tests], errors=recorder.errors,
                                          collection=collected,
                                          cache_selects=collection.selects_from_cache(self.config)))
        return result

    def _send_collected(self, collected: pb.Collected) -> None:
        if self.zygote is not None:
            files, mtimes, dirs, digests = zygote.watched(self.config)
            collected.watched.extend(wire.utf8_safe_list(files))
            collected.watched_mtime_ns.extend(mtimes)
            collected.watched_dirs.extend(wire.utf8_safe_list(dirs))
            collected.watched_dir_digests.extend(digests)
            self.zygote.send(collected=collected)
        else:
            self.send(collected=collected)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        if self.zygote is not None:
            # the zygote forks workers here; only a forked worker comes back
            self.chan = self.zygote.serve()
            self.zygote = None
            _start_worker(self.config, self.chan)
        by_id = {item.nodeid: item for item in session.items}
        pending: deque = deque()
        held = None            # sent with hold: the next test, not to start before `release`
        finished = False
        while True:
            # wait until two are known (the next one is this one's nextitem)
            # and the first is not held, then take everything already sent: a
            # `stop` queued behind items (-x, --maxfail) drops them before the
            # next test starts
            while True:
                waiting = bool(pending) and pending[0] is held
                block = waiting or (not finished and len(pending) < 2)
                if block:
                    self._flush()          # the daemon must not wait for a result while we wait for it
                raw = self.chan.recv(block=block)
                if raw is None:
                    break
                cmd = pb.WorkerCommand.FromString(raw)
                kind = cmd.WhichOneof("kind")
                if kind == "run":
                    pending.append(by_id[cmd.run.nodeid])
                    if cmd.run.hold:
                        held = pending[-1]
                elif kind == "release":
                    held = None
                elif kind == "finish":
                    finished = True
                else:                      # stop (also after a finish)
                    finished = True
                    held = None
                    pending.clear()
            if not pending:
                self._flush()
                return True
            item = pending.popleft()
            nextitem = pending[0] if pending else None
            self.run(item, nextitem)

    def run(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        """One message per test: the previous test's `finished` (with its
        reports) and this one's `started` in one frame before setup. A
        message per phase cost more than a trivial test."""
        t0_ns = self.intents.start()
        self.warnings = []
        self.reports = []
        self.keywords = {}
        started = pb.WorkerEvent(started=pb.TestStarted(nodeid=item.nodeid, t_ns=t0_ns))
        if self.done is not None:
            self.chan.send(pb.WorkerEvent(batch=pb.WorkerEvents(events=[self.done, started])).SerializeToString())
            self.done = None
        else:
            self.chan.send(started.SerializeToString())
        try:
            item.config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
        except (pytest.exit.Exception, KeyboardInterrupt) as e:
            # pytest ends the session here: the client does the same
            is_exit = isinstance(e, pytest.exit.Exception)
            self.send(finished=self._finished(item, pb.SessionExit(
                reason=wire.utf8_safe(str(e.msg if is_exit else e) or type(e).__name__),
                returncode=e.returncode if is_exit and e.returncode is not None else -1,
                keyboard_interrupt=not is_exit)))
            raise
        self.done = pb.WorkerEvent(finished=self._finished(item))

    def _finished(self, item: pytest.Item, exit: pb.SessionExit | None = None) -> pb.TestFinished:
        return pb.TestFinished(nodeid=item.nodeid, intents=self.intents.take(), warnings=self.warnings,
                               reports=self.reports, exit=exit, keywords=list(self.keywords))

    def _flush(self) -> None:
        """Send the last test's `finished` now (no next test starts yet)."""
        if self.done is not None:
            self.chan.send(self.done.SerializeToString())
            self.done = None

    def pytest_warning_recorded(self, warning_message, when, nodeid, location) -> None:
        if when == "runtest":    # collection's travel with the collection (collection.py)
            self.warnings.append(collection.recorded_warning(warning_message, when))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_logreport(self, report):
        """Sent once every plugin has seen the report (what a hook spawned
        belongs to that phase). A hook that tried to create a process (a
        conftest that runs a screenshot tool on failure) gets the kernel's
        EPERM as PermissionError: that must not end the worker with an
        INTERNALERROR and lose the test's report; the daemon's record of the
        attempt fails the test (TC003)."""
        mark = len(self.intents.items)
        try:
            result = yield
        except Exception as e:
            if len(self.intents.items) == mark or not _denied(e):
                raise
            self._hook_denied("pytest_runtest_logreport", e)
            result = []
        self._send_report(report)
        return result

    def _hook_denied(self, hook: str, e: BaseException) -> None:
        """Said in the warnings summary: the hook's own error is not lost either."""
        filename, lineno = _user_frame(e.__traceback__)
        self.warnings.append(pb.RecordedWarning(
            message=wire.utf8_safe(f"isod: a {hook} hook tried to create a process and got {type(e).__name__}: {e}; "
                              "the test's report is kept"),
            category="pytest:PytestWarning", filename=wire.utf8_safe(filename), lineno=lineno, when="runtest"))

    def _send_report(self, report) -> None:
        if report.when == "call":
            # what the terminal reporter would ask here: plugins that keep state
            # in this process settle the outcome now (a test whose subtests
            # failed is failed: pytest counts those in this worker's stash)
            self.config.hook.pytest_report_teststatus(report=report, config=self.config)
        t_ns = time.monotonic_ns()
        if self.plain_reports and plain_report(report):
            try:
                self.reports.append(pb.PhaseReport(
                    when=report.when, t_ns=t_ns, outcome=report.outcome, duration=report.duration,
                    start=report.start, stop=report.stop,
                    sections=[pb.ReportSection(title=title, content=content) for title, content in report.sections]))
                self.keywords = report.keywords
                return
            except (ValueError, TypeError):     # text protobuf cannot carry (a lone surrogate): as JSON
                pass
        data = wire.report_dict(self.config, report)
        payload = json.dumps(data, default=repr).encode()
        if len(payload) > REPORT_MAX:
            payload = _shrink_to_fit(data)
        # all three travel in `finished` (one message per test); the phase
        # word tells the daemon how setup went if the test is killed later
        self.reports.append(pb.PhaseReport(when=report.when, report_json=payload, t_ns=t_ns))


# what pytest's own TestReport holds (its node id as `_id` since pytest 9):
# a report with more (xfail's wasxfail, a plugin's attribute) or a failure
# travels as pytest serializes it
_PLAIN_REPORT = frozenset({"nodeid", "_id", "location", "keywords", "outcome", "longrepr", "when",
                           "user_properties", "sections", "duration", "start", "stop"})


def plain_report(report) -> bool:
    """A report its fields carry whole (PhaseReport.outcome, times, sections)."""
    return (type(report) is TestReport and report.longrepr is None and not report.user_properties
            and report.__dict__.keys() <= _PLAIN_REPORT)


def _denied(e: BaseException) -> bool:
    """EPERM somewhere in the chain: how a spawn the kernel denied surfaces."""
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, PermissionError) and e.errno == errno.EPERM:
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


def _user_frame(tb) -> tuple[str, int]:
    """The innermost frame outside the stdlib and installed packages."""
    where = ("", 0)
    while tb is not None:
        if _user_code(tb.tb_frame.f_code.co_filename):
            where = (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
        tb = tb.tb_next
    return where


REPORT_MAX = 16 << 20    # bytes of one phase report on the wire (gRPC caps a message at 256 MB)


def _cut(text: str, keep: int) -> str:
    if len(text) <= keep:
        return text
    half = keep // 2
    return f"{text[:half]}\n[... isod cut {len(text) - 2 * half} characters here ...]\n{text[-half:]}"


def _shrink_to_fit(data: dict) -> bytes:
    """A report too big to send (a test that printed hundreds of MB): its
    captured sections, then its failure text, keep their head and tail."""
    sections = data.get("sections") or []
    keep = REPORT_MAX // (2 * max(1, len(sections)))
    data["sections"] = [(title, _cut(str(content), keep)) for title, content in sections]
    payload = json.dumps(data, default=repr).encode()
    if len(payload) > REPORT_MAX and data.get("longrepr") is not None:
        text = data["longrepr"] if isinstance(data["longrepr"], str) else json.dumps(data["longrepr"], default=repr)
        data["longrepr"] = _cut(text, REPORT_MAX // 2)
        payload = json.dumps(data, default=repr).encode()
    return payload


# What only the client does, whether it came from the command line or from
# ini addopts / PYTEST_ADDOPTS: debugging, stopping early, report files. The
# cache's selection (--lf, --ff, --nf, --sw) is the collecting process's now
# (the client collects nothing); the client writes the cache at the end.
_CLIENT_ONLY = {"usepdb": False, "usepdb_cls": None, "trace": False, "maxfail": 0,   # -x is maxfail=1
                "xmlpath": None, "htmlpath": None, "durations": None,
                # pytest-xdist: the tests are already in a worker (its remote.setup_config)
                "numprocesses": None, "maxprocesses": None, "dist": "no", "distload": False, "looponfail": False}


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config: pytest.Config):
    """config.workerinput / workeroutput as pytest-xdist's workers have them,
    before any plugin's pytest_configure or sessionstart looks."""
    if os.environ.get(ENV_FD) is not None and os.environ.get("ISOD_WORKER_ID") is not None:
        xdist_compat.install(early_config)
        xdist_compat.keep_coverage_data(early_config)
        if os.environ.get(zygote.ENV_FD) is not None:
            zygote.READS.start(early_config)     # from here on a read of the worker id is the zygote's
            zygote.OPENED.start()                # what its collection reads: a warm zygote's validity
    return (yield)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """Before any plugin's pytest_configure reads the options."""
    in_zygote = os.environ.get(zygote.ENV_FD) is not None
    worker = zygote.READS.unwatched_env("ISOD_WORKER_ID")    # ours: not a conftest's read (None in the zygote)
    if os.environ.get(ENV_FD) is None or (worker is None and not in_zygote):
        return
    for line in contract.MARKERS:
        config.addinivalue_line("markers", line)
    opt = config.option
    for name, value in _CLIENT_ONLY.items():
        if hasattr(opt, name):
            setattr(opt, name, value)
    # per-worker places, as pytest-xdist does: the workers of one session must
    # not wipe each other's basetemp or write over each other's log file
    if getattr(opt, "basetemp", None):
        os.makedirs(opt.basetemp, exist_ok=True)     # the client made it; a daemon elsewhere may not have
        config.stash[zygote.BASETEMP_KEY] = str(opt.basetemp)
        opt.basetemp = os.path.join(str(opt.basetemp), "zygote" if in_zygote else worker)
    log_file = getattr(opt, "log_file", None) or config.getini("log_file")
    if log_file:
        config.stash[zygote.LOG_FILE_KEY] = log_file
        opt.log_file = os.devnull if in_zygote else f"{log_file}.{worker}"    # a forked worker opens its own


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    fd = os.environ.get(ENV_FD)
    if fd is None:
        return
    # the client prints the session: the worker's terminal reporter stays (plugins
    # and --setup-show expect one) but writes nowhere
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        _silence(config, reporter)
    zfd = os.environ.get(zygote.ENV_FD)
    if zfd is not None:
        # the zygote: collects, then forks the workers (worker/zygote.py)
        worker = WorkerPlugin(config, None, zygote.Zygote(config, channel.from_fd(int(zfd))))
    else:
        chan = channel.from_fd(int(fd))
        worker = WorkerPlugin(config, chan)
    config.pluginmanager.register(worker, "isod-worker")
    if hasattr(config, "workeroutput"):
        config.pluginmanager.register(xdist_compat.NodeDown(config, worker.send), "isod-xdist-node")
        xdist_compat.register_fixtures(config)
    if zfd is None:
        _start_worker(config, chan)


def _start_worker(config: pytest.Config, chan: channel.Channel) -> None:
    """What each worker has of its own, started or forked."""
    # a test that execs (or spawns, when its size allows) must not inherit it
    os.set_inheritable(chan.fileno(), False)
    word = phases.register(config)
    # read: a test's own `pytest -p isod_client` (isod's tests, a plugin's
    # tests) must not take itself for a worker of ours
    for var in (ENV_FD, zygote.ENV_FD, phase_word.ENV_FD, "ISOD_WORKER_CLASS"):
        os.environ.pop(var, None)
    worker = config.pluginmanager.get_plugin("isod-worker")
    if word is not None and worker is not None:
        worker.intents.own_exec = (os.getpid(), word.write_exec)
    _watch_daemon(chan)


# The reporter's per-test work (progress, stats) and its end of session
# (every plugin's pytest_terminal_summary) are the client's; in the worker
# they cost ~80 us per report, and up to 0.15 s at the end (a plugin that
# imports its library to summarize), for output nobody sees.
_REPORTER_PER_TEST = ("pytest_runtest_logstart", "pytest_runtest_logreport", "pytest_runtest_logfinish",
                      "pytest_sessionfinish")


def _silence(config: pytest.Config, reporter) -> None:
    from _pytest._io import TerminalWriter

    reporter._tw = TerminalWriter(open(os.devnull, "w"))  # noqa: SIM115 (lives as long as the worker)
    name = config.pluginmanager.get_name(reporter)
    config.pluginmanager.unregister(reporter)
    for hook in _REPORTER_PER_TEST:
        setattr(reporter, hook, _nothing)
    config.pluginmanager.register(reporter, name)


def _nothing(**_kwargs) -> None:
    return None


def no_debugger(*_args, **_kwargs) -> None:
    """breakpoint() in a worker (PYTHONBREAKPOINT): there is no terminal to debug in."""
    raise RuntimeError("breakpoint(): this test runs in an isod worker, which has no terminal; "
                       "run it without -p isod_client to debug it")


def _watch_daemon(chan: channel.Channel) -> None:
    """Exit at once if the daemon goes away, even mid-test (no orphans)."""
    import select

    def watch() -> None:
        p = select.poll()
        p.register(chan.fileno(), select.POLLRDHUP | select.POLLHUP)
        while True:
            for _fd, ev in p.poll():
                if ev & (select.POLLRDHUP | select.POLLHUP | select.POLLERR | select.POLLNVAL):
                    os._exit(70)

    threading.Thread(target=watch, name="isod-daemon-watch", daemon=True).start()

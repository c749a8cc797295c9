"""`isod trace -- CMD`: run CMD in the sandbox and show the process tree it makes.

Lines read like `strace -f -e trace=process`: a relative time, the pid, then
what happened. Output goes to stderr (or -o FILE) so CMD's own stdout stays
clean; `--json` prints one object per event with the wire field names.
"""

from __future__ import annotations

import heapq
import os
import shlex
import signal
import sys
import threading
import time
from typing import TextIO

from . import contract, policy
from .contract import network_text
from .sandbox import Box, Event, ProcEvent, SandboxError, open_backend
from .sandbox.proc_connector import open_connector
from .sandbox.watch import WatchBackend

EXIT_DENIED = 1
HOLD_NS = 150_000_000   # longer than the supervisors' STALE_NS (seccomp 100 ms, ptrace 20 ms)
_EVENT_FIELDS = Event.__dataclass_fields__.keys()   # in declaration order, as asdict gives them


class TreePrinter:
    """Formats events as they arrive (from the supervisor and connector threads)."""

    def __init__(self, out: TextIO, as_json: bool, t0_ns: int, have_forks: bool, rule_name: str) -> None:
        self.rule_name = rule_name
        self.out = out
        self.as_json = as_json
        self.t0 = t0_ns
        self.have_forks = have_forks   # the connector reports forks with child pids
        self.lock = threading.Lock()
        self.born: dict[int, int] = {}
        self.commands: dict[int, str] = {}     # pid -> what it last exec'd (it may be gone when a line is made)
        self.denied: list[Event] = []
        self.execs = 0
        self.procs = 1
        self.root = 0      # the launched command's pid, once known
        # Traps reach us late (the supervisor delivers them between traps, up
        # to its STALE_NS later) and forks/exits from another thread, at once:
        # lines wait HOLD_NS here and come out in time order.
        self._held: list[tuple[int, int, str]] = []
        self._seq = 0
        self._wake = threading.Condition(self.lock)
        self._closed = False
        if as_json:
            import json  # only here: the import is a fixed cost of every `isod trace`
            self._dumps = json.dumps
        self._flusher = threading.Thread(target=self._flush_loop, name="isod-trace-out", daemon=True)
        self._flusher.start()

    def _rel(self, t_ns: int) -> str:
        return f"{(t_ns - self.t0) / 1e9:9.6f}"

    def _emit(self, obj: dict | None, line: str | None, t_ns: int | None = None) -> None:
        if self.as_json:
            text = self._dumps(obj, separators=(",", ":"))
        elif line is not None:
            text = line
        else:
            return
        with self.lock:
            if t_ns is None:          # the summary: after everything
                self._write_until(None)
                self.out.write(text + "\n")
                self.out.flush()
                return
            self._seq += 1
            heapq.heappush(self._held, (t_ns, self._seq, text))
            if len(self._held) == 1:
                self._wake.notify()

    def _write_until(self, limit_ns: int | None) -> None:
        held = self._held
        wrote = False
        while held and (limit_ns is None or held[0][0] <= limit_ns):
            self.out.write(heapq.heappop(held)[2] + "\n")
            wrote = True
        if wrote:
            self.out.flush()

    def _flush_loop(self) -> None:
        with self.lock:
            while not self._closed:
                if not self._held:
                    self._wake.wait()
                    continue
                self._write_until(time.monotonic_ns() - HOLD_NS)
                self._wake.wait(HOLD_NS / 4e9)

    def close(self) -> None:
        with self.lock:
            self._write_until(None)
            self._closed = True
            self._wake.notify()

    def trap(self, _box: Box, ev: Event) -> None:
        if ev.decision == "deny" or (ev.syscall == "socketcall" and ev.decision == "enosys"):
            self.denied.append(ev)
        if ev.syscall in ("execve", "execveat") and ev.decision == "allow":
            self.execs += 1
            self.born.setdefault(ev.pid, ev.t_ns)
            if ev.argv:
                cmd = shlex.join(ev.argv)
                self.commands[ev.pid] = cmd if len(cmd) <= 200 else cmd[:200] + "..."
        if self.as_json:
            # what {"type": "trap", **ev.to_dict()} gives, without asdict's deep copy (~15 us)
            obj = {"type": "trap"}
            for name in _EVENT_FIELDS:
                obj[name] = getattr(ev, name)
            self._emit(obj, None, ev.t_ns)
        else:
            line = self._trap_line(ev)
            if line is not None:
                self._emit(None, line, ev.t_ns)

    def _trap_line(self, ev: Event) -> str | None:
        head = f"{self._rel(ev.t_ns)} {ev.pid:>7}"
        if ev.tid != ev.pid:
            head += f"/{ev.tid}"
        # strace's forms where it has one; the tree and timing columns are ours
        mark = "" if ev.decision == "allow" else f"   = -1 EPERM (Operation not permitted)   [{self.rule_name}]"
        if ev.syscall in contract.NETWORK_CALLS and (ev.family or ev.syscall != "connect"):
            # socket(AF_INET, SOCK_STREAM); connect 10.0.0.1:443 (the cgroup hooks')
            if ev.syscall == "socketcall":
                mark = f"   = -1 ENOSYS (Function not implemented: i386 socketcall)   [{self.rule_name}]"
            elif ev.decision == "allow" and ev.syscall != "socket":
                mark = f"   (recorded, not denied) [{self.rule_name}]"
            return f"{head} {network_text(ev)}{mark}"
        if ev.syscall in ("execve", "execveat"):
            cmd = shlex.join(ev.argv) if ev.argv else ev.path
            extra = f"   [{ev.path}]" if ev.argv and ev.path != ev.argv[0] else ""
            return f"{head} {ev.syscall} {cmd}{extra}{mark}"
        if ev.syscall == "clone3":
            if self.have_forks and ev.decision == "enosys":
                return None   # libc retries with clone: that line follows
            return (f"{head} clone3(flags={ev.clone_flags:#x}) = -1 ENOSYS (Function not implemented: "
                    "libc falls back to clone)")
        if ev.syscall in ("fork", "vfork", "clone"):
            if ev.decision == "allow" and self.have_forks:
                return None   # the connector's line carries the child pid
            what = ev.syscall if ev.syscall != "clone" else f"clone(flags={ev.clone_flags:#x})"
            if ev.decision != "allow":
                # a fork has no command line of its own: say which program tried
                mark += f"   in: {self.commands.get(ev.pid) or _cmdline(ev.pid)}"
            return f"{head} {what}{' = ?' if ev.decision == 'allow' else ''}{mark}"
        return f"{head} {ev.syscall}{mark}"

    def proc(self, ev: ProcEvent) -> None:
        if ev.kind == "exec":
            return        # the native backend's exec Event carries it (trap)
        if ev.kind == "fork":
            with self.lock:
                self.procs += 1
            self.born[ev.pid] = ev.t_ns
            line = f"{self._rel(ev.t_ns)} {ev.ppid:>7} fork -> {ev.pid}"
        else:
            life = ""
            # the root's pid is the launcher's, which exec'd CMD: born at the start
            born = self.born.get(ev.pid, self.t0 if ev.pid == self.root else None)
            if born is not None:
                life = f"   (lived {(ev.t_ns - born) / 1e6:.3f} ms)"
            status = (f"+++ exited with {ev.exit_code} +++" if ev.exit_signal is None
                      else f"+++ killed by {signal_name(ev.exit_signal)} +++")
            line = f"{self._rel(ev.t_ns)} {ev.pid:>7} {status}{life}"
        self._emit({"type": ev.kind, **ev.to_dict()} if self.as_json else None, line, ev.t_ns)

    def summary(self, rc: int, wall_ns: int) -> None:
        if self.as_json:
            self._emit({"type": "summary", "exit_status": rc, "wall_ns": wall_ns,
                        "execs": self.execs, "processes": self.procs, "denied": len(self.denied)}, None)
            return
        line = f"--- {self.execs} exec(s), {len(self.denied)} denied, exit status {rc}, {wall_ns / 1e9:.3f} s"
        self._emit({}, line)
        for ev in self.denied:
            self._emit({}, f"--- denied {ev.describe()}  (pid {ev.pid}, parent {ev.ppid})")


def _cmdline(pid: int) -> str:
    """The command line of a process, shell-quoted; "?" once it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [os.fsdecode(a) for a in f.read().split(b"\0")[:-1]]
    except OSError:
        return "?"
    cmd = shlex.join(argv) if argv else "?"
    return cmd if len(cmd) <= 200 else cmd[:200] + "..."


def signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _wait_exits(connector, root: int, timeout: float) -> None:
    """Until the connector has seen every process of the tree exit (it prints
    them), at most timeout seconds: the last exit notifications may still be
    on their way when the tree is gone. Usually at once."""
    deadline = time.monotonic() + timeout
    while connector.tree_size(root) and time.monotonic() < deadline:
        connector.sync()
        time.sleep(0.0005)


# As in the daemon: a thread running Python (the connector's, the printer's)
# holds the GIL for up to the switch interval while a trapped caller waits for
# the supervisor to get it back.
SWITCH_INTERVAL_S = 0.0005


def run(cmd: list[str], size: str | None, as_json: bool, out: TextIO, backend_name: str = "seccomp") -> int:
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    rule = policy.rule_for(contract.Size.parse(size) if size else None)
    connector = open_connector()
    # a rule that allows every spawn traps nothing: an allowed call routed
    # through the supervisor could fail with EINTR (docs/kernel-notes.md)
    native = rule.spawn and rule.ptrace
    backend = WatchBackend(connector) if native else open_backend(backend_name)
    t0 = time.monotonic_ns()
    printer = TreePrinter(out, as_json, t0, have_forks=connector is not None, rule_name=rule.name)
    try:
        if native:
            box = backend.spawn(cmd, rule=rule, on_event=printer.trap, on_proc=printer.proc)
        else:
            box = backend.spawn(cmd, rule=rule, on_event=printer.trap)
    except SandboxError:
        if connector and not native:
            connector.close()
        backend.close()
        raise
    printer.root = box.pid
    if connector is not None and not native:
        connector.follow(box.pid, printer.proc)
    stop = {"sig": None}

    def forward(signum, _frame):
        stop["sig"] = signum
        try:
            os.kill(box.pid, signum)
        except ProcessLookupError:
            pass

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        status = box.popen.wait()
        box.released.wait()          # every process of the tree is gone
        wall = time.monotonic_ns() - t0
        box.settle()                 # what the network hooks recorded last
        box.release()
        if connector is not None:
            _wait_exits(connector, box.pid, 0.02)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if connector is not None and not native:
            connector.close()
        backend.close()
    if connector is None:
        printer.proc(ProcEvent(t_ns=time.monotonic_ns(), kind="exit", pid=box.pid,
                               exit_code=status if status >= 0 else None,
                               exit_signal=-status if status < 0 else None))
    rc = status if status >= 0 else 128 - status
    printer.summary(rc, wall)
    printer.close()
    if printer.denied and rc == 0:
        rc = EXIT_DENIED
    return rc

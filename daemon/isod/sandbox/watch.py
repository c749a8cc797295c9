"""The native backend: run a tree with no filter and record its processes.

For trees whose rule allows every spawn (workers of medium, large and xlarge
tests; `isod trace` without --size small). Trapping a call that will be
allowed only adds a way for it to fail (an interrupted trap returns EINTR,
docs/kernel-notes.md), so nothing is trapped: forks and execs run exactly as
without isod, and the kernel's process events connector reports them, each
turned into the same ``Event`` a trap would give (decision "allow"). The
command of an exec is read from /proc right after it (best effort: a program
that exits within microseconds may leave only its pid).
"""

from __future__ import annotations

import os
import shutil
import time

from ..policy import IDLE, Rule
from . import netguard
from .box import Box, EventSink
from .events import ALLOW, Event, ProcEvent
from .proc_connector import ProcConnector, open_connector
from .spawn import LauncherProcess


class WatchBackend:
    """Spawns unfiltered trees; one process-events connector for all of them."""

    name = "native"

    def __init__(self, connector: ProcConnector | None = None) -> None:
        self.connector = connector if connector is not None else open_connector()
        self.records = self.connector is not None
        self.reason = ("no filter; processes recorded from the kernel's process events" if self.records else
                       "no filter; processes NOT recorded (the process events connector needs CAP_NET_ADMIN)")

    def spawn(self, argv: list[str], *, rule: Rule = IDLE, on_event: EventSink | None = None,
              on_proc=None, **popen_kwargs) -> Box:
        """Start argv; returns once the tree is followed (before it can fork).
        ``on_proc`` also gets the raw fork/exec/exit events.

        Network (env ISOD_NETWORK, ISOD_ENFORCEMENT): where the kernel allows
        it, the tree is in a cgroup with isod's socket hooks before it runs
        its first instruction; its mode follows the running test's size
        (netguard.py, docs/kernel-notes.md, network)."""
        guard, net, _why = netguard.prepare(popen_kwargs, None if rule is IDLE else rule.name)
        try:
            launch = LauncherProcess(argv, "none", b"", **popen_kwargs)
            launch.ready()
        except BaseException:
            if guard is not None:
                guard.close()
            raise
        box = Box(launch.popen, rule, on_event)
        box.launch_rule = None
        box.rule = rule
        root = launch.popen.pid
        if self.connector is not None:
            # the launcher's own start is not part of the tree's record
            go_ns = time.monotonic_ns()
            launched = {"argv": list(argv)}     # the root's first exec: we know what it runs

            def sink(ev: ProcEvent) -> None:
                if ev.t_ns < go_ns:
                    return
                if ev.kind == "exec" and ev.pid == root and launched:
                    # /proc is read when the event is handled: a root that
                    # exec'd again at once (`sh -c 'exec CMD'`) shows CMD there
                    if ev.argv != launched["argv"]:
                        ev.argv, ev.argv_complete = launched["argv"], True
                        ev.path = _resolve(argv[0], popen_kwargs.get("env"), popen_kwargs.get("cwd"))
                    launched.clear()
                _record(box, ev, on_proc)

            self.connector.follow(root, sink)
            box.flush = self.connector.sync
            box.on_release = box.unfollow = lambda: self.connector.unfollow(root)
        netguard.attach_tree(guard, net, box, None if rule is IDLE else rule.name)
        launch.go()
        box.released.set()       # no supervisor holds anything of this tree
        return box

    def adopt(self, popen, *, rule: Rule = IDLE, env: dict | None = None, on_event: EventSink | None = None,
              on_proc=None) -> Box:
        """Follow a process that is not our child (a worker forked by the
        zygote) and everything it starts; it must not have forked yet."""
        guard, net, _why = netguard.prepare({"env": env}, None if rule is IDLE else rule.name)
        box = Box(popen, rule, on_event)
        box.launch_rule, box.rule = None, rule
        if self.connector is not None:
            root = popen.pid
            self.connector.follow(root, lambda ev: _record(box, ev, on_proc))
            box.flush = self.connector.sync
            box.on_release = box.unfollow = lambda: self.connector.unfollow(root)
        netguard.attach_tree(guard, net, box, None if rule is IDLE else rule.name)
        box.released.set()
        return box

    def close(self) -> None:
        if self.connector is not None:
            self.connector.close()


def _resolve(program: str, env: dict | None, cwd: str | None) -> str:
    """The file an exec of ``program`` runs, found as execvp finds it."""
    if "/" in program:
        return os.path.realpath(os.path.join(cwd or os.getcwd(), program))
    found = shutil.which(program, path=(env if env is not None else os.environ).get("PATH", os.defpath))
    return os.path.realpath(found) if found else program


def _record(box: Box, ev: ProcEvent, on_proc) -> None:
    """A process event of the tree as the Event a trap would have given."""
    if on_proc is not None:
        on_proc(ev)
    if ev.kind == "fork":
        box.record(Event(ev.t_ns, ev.ppid, ev.ppid, 0, "fork", "", ALLOW, 0, child=ev.pid))
    elif ev.kind == "exit":
        box.exited(ev.pid)
    elif ev.kind == "exec":
        box.record(Event(ev.t_ns, ev.pid, ev.pid, ev.ppid, "execve", "", ALLOW, 0, ev.path, ev.argv,
                         ev.cwd, 0, ev.argv_complete))

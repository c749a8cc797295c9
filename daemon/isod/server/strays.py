"""What a test left running: killing it without hitting a reused pid, and
clearing what daemons that died left in their cgroups.

A stray is killed through a pidfd, after checking that the process it pins
is still one of ours: a pid number reused since the listing is never hit.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import psutil

from ..sandbox import cgroupfs


def sweep(find: Callable[[], set[int]], still_ours: Callable[[int], bool],
          timeout: float = 5.0) -> list[tuple[int, str]]:
    """Kill what find() lists until it lists nothing (or timeout); (pid, command) of each."""
    killed: dict[int, str] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        strays = find()
        if not strays:
            break
        for pid in strays:
            if pid not in killed:
                killed[pid] = command(pid)
            kill(pid, still_ours)
        time.sleep(0.005)   # a fork bomb's children appear between two rounds
    return sorted(killed.items())


def remove_stale_cgroups() -> list[tuple[int, str]]:
    """At daemon start: kill what is left in the cgroups of daemons that died
    without closing them (SIGKILL, OOM), and remove those cgroups. (pid, command)
    of each process killed. Only cgroups next to this daemon's own are looked at,
    named by a daemon pid that no longer runs (a daemon in another pid namespace
    sharing this cgroup would look dead: do not share one)."""
    v1_dirs, v2_dir = cgroupfs.own_dirs()
    parents = {d for c, d in v1_dirs.items() if c in ("pids", "memory")}
    if v2_dir is not None:
        parents.add(v2_dir)
    killed: dict[int, str] = {}
    for parent in parents:
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in names:
            prefix, _, rest = name.partition("-")
            owner = rest.partition("-")[0]
            if prefix != "isod" or not owner.isdigit() or psutil.pid_exists(int(owner)):
                continue
            path = os.path.join(parent, name)
            for _ in range(50):
                procs = {p for p in cgroupfs.procs(path) if not is_zombie(p)}
                if not procs:
                    break
                for pid in procs:
                    killed.setdefault(pid, command(pid))
                    kill(pid, lambda _pid: True)
                time.sleep(0.01)
            cgroupfs.remove_tree(path)
    return sorted(killed.items())


def is_zombie(pid: int) -> bool:
    """Dead and waiting for its parent to reap it (a killed child of a live worker): nothing to kill."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2][1:2] in (b"Z", b"X")
    except OSError:
        return True


def command(pid: int) -> str:
    try:
        p = psutil.Process(pid)
        return " ".join(p.cmdline()) or p.name()
    except psutil.Error:
        return "?"


def kill(pid: int, still_ours: Callable[[int], bool]) -> None:
    """SIGKILL through a pidfd, after checking the pinned process is still ours:
    a pid number reused since the listing is never hit."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        if still_ours(pid):
            signal.pidfd_send_signal(fd, signal.SIGKILL)
    except OSError:
        pass
    finally:
        os.close(fd)

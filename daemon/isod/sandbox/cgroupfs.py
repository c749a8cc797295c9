"""The cgroup filesystem: where it is mounted, which cgroups this process is
in, the processes of a cgroup, and removing a cgroup whatever is left in it.

Shared by what makes cgroups of its own: the network guard
(sandbox/netguard.py) and the per-tree limits (server/limits.py).

A cgroup can only be removed once it has no processes and no child cgroups.
Children appear when isod runs inside one of its own workers (a medium test
that starts `isod serve` or `isod trace` makes its cgroups inside the
worker's), and a daemon that was killed never removed its own: an rmdir of
the parent then fails with EBUSY forever. So: deepest first, each
directory's processes moved to the top's parent, then removed.
"""

from __future__ import annotations

import os
import time

ROOT = "/sys/fs/cgroup"
TRIES = 20     # an exiting task still counts for a moment


def v2_root() -> str | None:
    """The v2 hierarchy (the directory with a cgroup.controllers file):
    /sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host; None without."""
    for candidate in (ROOT, os.path.join(ROOT, "unified")):
        if os.path.exists(os.path.join(candidate, "cgroup.controllers")):
            return candidate
    return None


def own_dirs() -> tuple[dict[str, str], str | None]:
    """(v1 controller -> this process's cgroup directory, its v2 directory),
    from /proc/self/cgroup; the v2 one is None without a v2 hierarchy."""
    v1: dict[str, str] = {}
    v2 = None
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                hid, controllers, path = line.rstrip("\n").split(":", 2)
                if hid == "0" and controllers == "":
                    v2 = path
                for c in controllers.split(","):
                    if c:
                        v1[c] = os.path.join(ROOT, c, path.lstrip("/"))
    except OSError:
        pass
    root2 = v2_root()
    return v1, (os.path.join(root2, v2.lstrip("/")) if root2 is not None and v2 is not None else None)


def procs(path: str) -> set[int]:
    """The processes in the cgroup at path (none if it cannot be read)."""
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            return {int(x) for x in f.read().split()}
    except (OSError, ValueError):
        return set()


def add(path: str, pid: int) -> None:
    """Move pid into the cgroup at path (raises OSError)."""
    with open(os.path.join(path, "cgroup.procs"), "w") as f:
        f.write(str(pid))


def remove_tree(path: str) -> bool:
    """True once path is gone."""
    parent = os.path.dirname(path)
    try:
        dirs = [root for root, _subdirs, _files in os.walk(path, topdown=False)]
    except OSError:
        return not os.path.exists(path)
    for d in dirs:
        for _ in range(TRIES):
            _move_procs(d, parent)
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.01)
    return not os.path.exists(path)


def _move_procs(src: str, dst: str) -> None:
    for pid in procs(src):
        try:
            add(dst, pid)
        except OSError:
            pass

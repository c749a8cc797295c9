"""A worker tree's own cgroups, for its limits: v2 where the daemon's cgroup
delegates the controller, else v1 at /sys/fs/cgroup/<controller>.

Made next to the daemon's own cgroup (cgroupfs.own_dirs), named
``isod-<daemon pid>-w<worker pid>`` by TreeLimits, so that a later daemon
can tell the ones a dead daemon left (strays.remove_stale_cgroups).
``pids.max`` caps the tasks (processes *and threads*) of the whole tree,
``memory.max`` (v2) / ``memory.limit_in_bytes`` (v1) its memory: when the
tree hits it, the kernel OOM-kills the largest process in the tree, normally
the one that allocated; nothing outside the tree is touched.
"""

from __future__ import annotations

import errno
import os

from ..sandbox import cgroupfs

# the memory controller's files by version: (limit, its "no limit", OOM kill counts)
_MEMORY = {2: ("memory.max", "max", "memory.events"), 1: ("memory.limit_in_bytes", "-1", "memory.oom_control")}


class Cgroup:
    """One cgroup directory of one controller (v1) or of several (v2)."""

    def __init__(self, path: str, version: int) -> None:
        self.path = path
        self.version = version

    def write(self, name: str, value: str) -> None:
        with open(os.path.join(self.path, name), "w") as f:
            f.write(value)

    def read(self, name: str) -> str:
        with open(os.path.join(self.path, name)) as f:
            return f.read().strip()

    def procs(self) -> set[int]:
        return cgroupfs.procs(self.path)

    def add(self, pid: int) -> None:
        cgroupfs.add(self.path, pid)

    def remove(self) -> None:
        """Move any process left to the parent, then delete the directory
        (and what a nested isod left inside it)."""
        cgroupfs.remove_tree(self.path)

    def limit_tasks(self, n: int | None) -> None:
        self.write("pids.max", "max" if n is None else str(n))

    def limit_memory(self, n: int | None) -> str | None:
        """Set the tree's memory limit; a note if it could not be (raises OSError otherwise)."""
        name, unlimited, _events = _MEMORY[self.version]
        try:
            self.write(name, unlimited if n is None else str(n))
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
            # v1: the tree already uses more than the new limit and could not be reclaimed
            return f"memory limit {n} not applied: the tree already uses {self.read('memory.usage_in_bytes')}"
        return None

    def oom_kills(self) -> int:
        """Processes of the tree the kernel killed for the memory limit so far."""
        try:
            text = self.read(_MEMORY[self.version][2])
        except OSError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0


def make(name: str, wanted: set[str]) -> dict[str, Cgroup]:
    """controller -> a fresh cgroup holding nothing yet, for each controller we can get."""
    v1_dirs, v2_dir = cgroupfs.own_dirs()
    out: dict[str, Cgroup] = {}
    if v2_dir is not None:
        try:
            with open(os.path.join(v2_dir, "cgroup.subtree_control")) as f:
                enabled = set(f.read().split())
        except OSError:
            enabled = set()
        usable = wanted & enabled
        if usable:
            path = os.path.join(v2_dir, name)
            try:
                os.mkdir(path, 0o755)
                cg = Cgroup(path, 2)
                out.update({c: cg for c in usable})
            except OSError:
                pass
    for controller in sorted(wanted - set(out)):
        if controller not in v1_dirs or not os.path.exists(os.path.join(cgroupfs.ROOT, controller, "cgroup.procs")):
            continue
        path = os.path.join(v1_dirs[controller], name)
        try:
            os.mkdir(path, 0o755)
        except OSError:
            continue
        out[controller] = Cgroup(path, 1)
    return out

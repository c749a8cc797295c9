"""Removing a cgroup directory, whatever is left in it.

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

TRIES = 20     # an exiting task still counts for a moment


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
    try:
        with open(os.path.join(src, "cgroup.procs")) as f:
            pids = f.read().split()
    except OSError:
        return
    for pid in pids:
        try:
            with open(os.path.join(dst, "cgroup.procs"), "w") as f:
                f.write(pid)
        except OSError:
            pass

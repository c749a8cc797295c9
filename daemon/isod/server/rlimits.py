"""Soft rlimits on a worker, inherited by what it spawns: the limits where
no cgroup can be had.

RLIMIT_AS is per process: an allocation past it fails with ENOMEM
(MemoryError in Python). RLIMIT_NPROC is counted per real uid over the whole
machine, not per tree, so the limit is set to N above what the uid already
runs; and root, or anything with CAP_SYS_RESOURCE/CAP_SYS_ADMIN, ignores it.
Only soft limits are changed: a test may raise them back up to the hard
limit, these are guard rails against accidents, not a boundary.
"""

from __future__ import annotations

import resource

import psutil


def limit_tasks(pid: int, n: int | None) -> str | None:
    """RLIMIT_NPROC for pid: n processes more than its uid runs now; a note if it failed."""
    if n is None:
        return set_soft(pid, resource.RLIMIT_NPROC, None)
    try:   # RLIMIT_NPROC counts every process of the uid: give the tree n more
        uid = psutil.Process(pid).uids().real
        running = sum(1 for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == uid)
    except psutil.Error:
        running = 0
    return set_soft(pid, resource.RLIMIT_NPROC, running + n)


def limit_memory(pid: int, n: int | None) -> str | None:
    """RLIMIT_AS for pid (per process); a note if it failed."""
    return set_soft(pid, resource.RLIMIT_AS, n)


def set_soft(pid: int, which: int, soft: int | None) -> str | None:
    """Set the soft limit (None: unlimited), capped at the hard one; a note if it failed."""
    try:
        _cur, hard = resource.prlimit(pid, which)
        new = resource.RLIM_INFINITY if soft is None else soft
        if hard != resource.RLIM_INFINITY and (new == resource.RLIM_INFINITY or new > hard):
            new = hard
        resource.prlimit(pid, which, (new, hard))
    except (ProcessLookupError, PermissionError, ValueError) as e:
        return f"prlimit({which}) on {pid} failed: {e}"
    return None

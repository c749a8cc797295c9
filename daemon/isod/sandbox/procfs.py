"""A thread's ids from /proc: its thread group and its parent.

Both backends record (tgid, ppid) with every trapped call and read them while
the caller is still held: once answered it may exit, and /proc/TID with it.
The ptrace backend also needs the tgid to kill a thread's process and to
place a new tracee in its tree. The C fast path has its twin (_notif.c
ids_proc, or a pidfd where the kernel has PIDFD_GET_INFO).
"""

from __future__ import annotations

import os


def ids(tid: int) -> tuple[int, int]:
    """(thread group id, parent pid) of a thread, from /proc; (tid, 0) if gone.
    os.open/os.read: a third of the cost of open() and a buffered read."""
    try:
        fd = os.open(f"/proc/{tid}/status", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return tid, 0
    try:
        text = os.read(fd, 1024)      # Name, Umask, State, Tgid, Ngid, Pid, PPid come first
    except OSError:
        return tid, 0
    finally:
        os.close(fd)
    tgid = ppid = 0
    for line in text.split(b"\n"):
        if line.startswith(b"Tgid:"):
            tgid = int(line[5:])
        elif line.startswith(b"PPid:"):
            ppid = int(line[5:])
            break
    return tgid or tid, ppid

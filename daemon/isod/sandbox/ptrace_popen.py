"""Popen of a traced root: its exit status comes from the tracer, not waitpid.

The launcher is this process's child *and* traced by one of its threads. The
kernel then lets any thread of the process consume the child's ptrace stops and
its exit: a plain ``Popen.wait()`` in the owner's thread would steal stops from
the tracer (leaving the tree stuck) or find the child already reaped by it (and
report status 0). So the root's Popen is re-classed to wait on the status the
tracer hands over; once the tracer lets go (``disown``), plain waitpid again.
"""

from __future__ import annotations

import os
import subprocess
import threading


class TracedPopen(subprocess.Popen):
    """Never constructed: :func:`adopt` re-classes an existing Popen."""

    _isod_done: threading.Event
    _isod_status: int | None
    _isod_traced: bool

    def _isod_waitpid(self, pid: int, flags: int) -> tuple[int, int]:
        if self._isod_traced:
            if flags & os.WNOHANG:
                if not self._isod_done.is_set():
                    return 0, 0
            else:
                self._isod_done.wait()
            if self._isod_status is not None:
                return pid, self._isod_status
        return os.waitpid(pid, flags)

    def _try_wait(self, wait_flags):
        try:
            return self._isod_waitpid(self.pid, wait_flags)
        except ChildProcessError:
            return self.pid, 0

    def _internal_poll(self, _deadstate=None, **_kw):
        return super()._internal_poll(_deadstate, _waitpid=self._isod_waitpid)


def adopt(popen: subprocess.Popen) -> None:
    popen._isod_done = threading.Event()
    popen._isod_status = None
    popen._isod_traced = True
    popen.__class__ = TracedPopen


def deliver(popen: subprocess.Popen, status: int) -> None:
    """The tracer reaped the root: this is its wait status."""
    popen._isod_status = status
    popen._isod_done.set()


def disown(popen: subprocess.Popen) -> None:
    """The tracer no longer reaps the root: waitpid works again."""
    if popen._isod_status is None:
        popen._isod_traced = False
    popen._isod_done.set()

"""A process that is not our child, handled like a ``subprocess.Popen``.

A worker forked by the zygote (worker/zygote.py) is the zygote's child: only
the zygote can reap it, and it reports the status. The daemon holds a pidfd
on it, so a signal never reaches another process that reused the pid, and
the pidfd says when the process is gone even if the zygote died before it
could report (the status is then unknown: shown as SIGKILL, the only way a
worker outlives its zygote's report).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import threading
from typing import IO

UNKNOWN_STATUS = -signal.SIGKILL


class AdoptedProcess:
    def __init__(self, pid: int, stdout: IO[bytes] | None = None, stderr: IO[bytes] | None = None) -> None:
        self.pid = pid
        self.stdout, self.stderr = stdout, stderr
        self.returncode: int | None = None
        self._status = threading.Event()
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except OSError:                  # already gone and reaped
            self._pidfd = None

    def set_status(self, status: int) -> None:
        """The zygote reaped it: ``status`` as Popen.returncode (-N: signal N)."""
        if self.returncode is None:
            self.returncode = status
        self._status.set()

    def _gone(self, timeout: float | None) -> bool:
        if self._pidfd is None:
            return True
        p = select.poll()
        p.register(self._pidfd, select.POLLIN)
        return bool(p.poll(None if timeout is None else max(0, timeout) * 1000))

    def poll(self) -> int | None:
        if self.returncode is None and self._gone(0):
            # gone: the zygote's report is on its way (or will never come)
            self._status.wait(1.0)
            if self.returncode is None:
                self.returncode = UNKNOWN_STATUS
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is not None:
            return self.returncode
        if not self._gone(timeout):
            raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
        return self.poll()

    def send_signal(self, sig: int) -> None:
        fd = self._pidfd        # close() may run meanwhile on the worker's reader thread
        if fd is not None and self.returncode is None:
            try:
                signal.pidfd_send_signal(fd, sig)
            except (ProcessLookupError, OSError):      # gone, or its pidfd closed: it has exited
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def close(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

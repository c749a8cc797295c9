"""The private `isod serve` of a run with no --isod-target.

Started as early as the session is known (the plugin's pytest_configure),
before the client imports gRPC: the daemon, and the zygote it starts at once
with the session it is given (--prestart), start while the client does.
No gRPC here.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

from isod.contract import EMBEDDED_DIR_PREFIX
from isod.v1 import isod_pb2 as pb

WATCH_PERIOD_S = 0.5      # how often the client looks whether its embedded daemon was stopped


class EmbeddedDaemon:
    """A private `isod serve` on a temporary Unix socket, for this run only."""

    def __init__(self, backend: str | None, workers: int | None) -> None:
        self.dir = tempfile.mkdtemp(prefix=EMBEDDED_DIR_PREFIX)
        os.chmod(self.dir, 0o700)
        self.target = "unix://" + os.path.join(self.dir, "isod.sock")
        self.log_path = os.path.join(self.dir, "daemon.log")
        self.backend, self.workers = backend, workers
        self.proc: subprocess.Popen | None = None
        self.resumed = 0            # times something stopped the daemon and the watchdog continued it
        self._stopping = threading.Event()

    def start(self, session: pb.SessionOpen) -> None:
        """Start it with the session it will serve: it starts that session's
        zygote (imports pytest, collects) while it starts its own server."""
        prestart = os.path.join(self.dir, "session.pb")
        with open(prestart, "wb") as f:     # its env has no ISOD_TOKEN (session_open.worker_env)
            f.write(session.SerializeToString())
        argv = [sys.executable, "-m", "isod", "serve", "--listen", self.target, "--exit-with-parent", str(os.getpid()),
                "--prestart", prestart]
        if self.backend:
            argv += ["--backend", self.backend]
        if self.workers:
            argv += ["--workers", str(self.workers)]
        env = dict(os.environ)
        env.pop("ISOD_TARGET", None)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, env=env)
        threading.Thread(target=self._watch, name="isod-embedded-watch", daemon=True).start()

    def _watch(self) -> None:
        """A test can SIGSTOP its worker's parent, the daemon (same uid): the
        session would then wait forever. Ours, we continue it."""
        stat = f"/proc/{self.proc.pid}/stat"
        while not self._stopping.wait(WATCH_PERIOD_S):
            try:
                with open(stat, "rb") as f:
                    state = f.read().rpartition(b")")[2].split()[0]
            except (OSError, IndexError):
                return
            if state in (b"T", b"t"):
                self.resumed += 1
                try:
                    os.kill(self.proc.pid, signal.SIGCONT)
                except ProcessLookupError:
                    return

    def log_tail(self, n: int = 2000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace").strip()
        except OSError:
            return ""

    def stop(self, graceful: bool = True) -> None:
        """SIGTERM (its workers get the grace period), or SIGKILL when the
        session already ended and no worker is left to look after."""
        self._stopping.set()
        if self.proc is None:           # never started (the session did not open)
            shutil.rmtree(self.dir, ignore_errors=True)
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

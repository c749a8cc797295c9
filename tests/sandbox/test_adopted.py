"""A process the daemon took over but is not the parent of (a forked worker)."""

from __future__ import annotations

import os
import subprocess

import pytest
from isod.sandbox.adopted import AdoptedProcess

pytestmark = pytest.mark.medium


def test_a_kill_racing_the_close_of_its_pidfd_does_not_raise():
    """The session kills its workers from the gRPC thread while a worker's
    reader thread closes the pidfd of one that exited: an error there once
    kept the session from ending (no `end`, a blocked stream)."""
    child = subprocess.Popen(["sleep", "30"])
    try:
        proc = AdoptedProcess(child.pid)
        stale = os.dup(proc._pidfd)
        os.close(stale)                 # a number that no longer names a pidfd
        proc.close()
        proc._pidfd = stale             # what the killing thread read before the close
        proc.kill()                     # EBADF: the process is gone as far as we know
        proc._pidfd = None
        proc.kill()                     # closed: nothing to do
        assert child.poll() is None     # neither call reached the real process
    finally:
        child.kill()
        child.wait()

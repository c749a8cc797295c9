"""A cgroup that a killed nested isod left a child cgroup in is still removed
(an rmdir of the parent alone fails with EBUSY, and every later daemon start
would spin on it)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from isod.sandbox import cgroupfs, netguard

pytestmark = pytest.mark.medium


def test_a_cgroup_with_a_child_and_a_process_is_removed(tmp_path):
    parent = netguard.own_v2_dir()
    if parent is None or not os.access(parent, os.W_OK):
        pytest.skip("no writable cgroup v2 directory here")
    top = os.path.join(parent, f"isod-test-{os.getpid()}")
    child = os.path.join(top, "isod-nested")
    os.makedirs(child)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with open(os.path.join(child, "cgroup.procs"), "w") as f:
            f.write(str(sleeper.pid))
        with pytest.raises(OSError):
            os.rmdir(top)                         # what the old removal tried, and failed with
        assert cgroupfs.remove_tree(top)
        assert not os.path.exists(top)
        assert sleeper.poll() is None             # its process was moved out, not killed
    finally:
        sleeper.kill()
        sleeper.wait()
        cgroupfs.remove_tree(top)

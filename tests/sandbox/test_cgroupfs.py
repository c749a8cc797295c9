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


def test_own_dirs_follow_proc_self_cgroup():
    v1, v2 = cgroupfs.own_dirs()
    with open("/proc/self/cgroup") as f:
        lines = [line.rstrip("\n").split(":", 2) for line in f]
    for _hid, controllers, path in lines:
        for c in filter(None, controllers.split(",")):
            assert v1[c] == os.path.join(cgroupfs.ROOT, c, path.lstrip("/"))
    root2 = cgroupfs.v2_root()
    unified = [path for hid, controllers, path in lines if hid == "0" and controllers == ""]
    assert v2 == (os.path.join(root2, unified[0].lstrip("/")) if root2 and unified else None)


def test_procs_and_add(tmp_path):
    parent = netguard.own_v2_dir()
    if parent is None or not os.access(parent, os.W_OK):
        pytest.skip("no writable cgroup v2 directory here")
    top = os.path.join(parent, f"isod-test-{os.getpid()}-procs")
    os.makedirs(top)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert cgroupfs.procs(top) == set()
        cgroupfs.add(top, sleeper.pid)
        assert cgroupfs.procs(top) == {sleeper.pid}
        assert cgroupfs.procs(str(tmp_path / "not-a-cgroup")) == set()
    finally:
        sleeper.kill()
        sleeper.wait()
        assert cgroupfs.remove_tree(top)

"""Nothing of the daemon runs on the supervisor's path: a trapped call is
answered while the daemon's reader thread is busy with slow work (cgroup
writes, process-tree scans) for the same worker."""

from __future__ import annotations

import pytest
from harness.daemon import Daemon, run_pytest

pytestmark = pytest.mark.large

SLOW_LIMITS = '''
import os, time
from isod.server import limits
_apply = limits.TreeLimits.apply
def slow_apply(self, *a, **kw):
    open(os.environ["SLOW_MARK"], "a").close()
    time.sleep(1.5)               # a cgroup write stuck behind memory reclaim
    return _apply(self, *a, **kw)
limits.TreeLimits.apply = slow_apply
'''

SPAWNER = '''
import os, time, pytest

@pytest.mark.small
def test_denied_at_once(tmp_path):
    t = time.monotonic()
    status = os.system("true")
    elapsed = time.monotonic() - t
    print("ELAPSED", elapsed)
    assert status != 0 and elapsed < 1.0, elapsed     # the cgroup step takes 1.5 s
'''


def test_a_trapped_call_is_answered_while_the_daemon_is_busy(tmp_path):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SLOW_LIMITS)
    mark = tmp_path / "slow-apply-ran"
    d = Daemon(workers=1, env={"PYTHONPATH": str(hooks), "SLOW_MARK": str(mark)})
    try:
        proj = tmp_path / "proj"
        proj.mkdir()
        r = run_pytest(proj, {"test_s.py": SPAWNER}, "-q", "-rA", target=d.target)
        t = r.test("test_denied_at_once")
        # denied in the kernel (TC003 from the record), and quickly: the assertion
        # inside the test passed, so only isod's verdict failed it
        assert t["outcome"] == "failed" and "[TC003]" in r.out, r.out[-2000:]
        assert "AssertionError" not in r.failure_block("test_denied_at_once"), r.out[-2000:]
        assert mark.exists()          # the daemon really was busy at the test's start
    finally:
        d.stop()

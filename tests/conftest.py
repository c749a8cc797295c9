"""Shared fixtures: real sandbox backends on the real kernel, and a temp
directory of the run's own that must be left empty of isod's directories."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from isod.sandbox import netguard, open_backend
from isod.sandbox.backends import BACKENDS


@pytest.fixture(scope="session", autouse=True)
def own_temp_dir(tmp_path_factory):
    """The run's temp directory: TMPDIR (for the daemons, clients and workers
    the tests start) and `tempfile` (for the tests) point into a directory
    made for this run, so whatever appears there is the suite's own, even
    with other runs sharing /tmp. At the end, any isod-* directory left in it
    fails the run (the test that made it should have removed it); the
    directory is then removed in any case. pytest's own basetemp stays where
    it was."""
    tmp_path_factory.getbasetemp()
    root = tempfile.mkdtemp(prefix="isod-suite-")
    saved = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = tempfile.tempdir = root
    try:
        yield root
    finally:
        if saved[0] is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved[0]
        tempfile.tempdir = saved[1]
        left = sorted(n for n in os.listdir(root) if n.startswith("isod-"))
        shutil.rmtree(root, ignore_errors=True)
    if left:
        pytest.fail(f"tests left {len(left)} isod temp directories behind (removed now): {', '.join(left)}",
                    pytrace=False)


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request):
    b = open_backend(request.param)
    yield b
    b.close()


@pytest.fixture(scope="module")
def hooks():
    """The kernel's cgroup socket hooks (network rules of medium workers), or a skip saying why not."""
    ok, why = netguard.probe()
    if not ok:
        pytest.skip(why)

"""Fixtures for the reliability tests: a real daemon per module (its process
tree and resource use are checked, so it is not shared with other folders)."""

from __future__ import annotations

import shutil

import pytest
from reliability.isod_rpc import Serve


@pytest.fixture(scope="module")
def serve():
    d = Serve(workers=1)
    yield d
    d.stop()
    shutil.rmtree(d.dir, ignore_errors=True)    # its socket directory and log

"""Fixtures for the security tests: one real daemon on a Unix socket for the module."""

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

"""Fixtures for the security tests: one real daemon on a Unix socket for the module."""

from __future__ import annotations

import pytest
from reliability.isod_rpc import Serve


@pytest.fixture(scope="module")
def serve():
    d = Serve(workers=1)
    yield d
    d.stop()

"""Fixtures for the plugin tests: one real daemon shared by the session."""

from __future__ import annotations

import pytest
from harness.daemon import Daemon


@pytest.fixture(scope="session")
def daemon():
    d = Daemon()
    yield d
    d.stop()

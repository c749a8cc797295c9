"""Shared fixtures: real sandbox backends on the real kernel."""

from __future__ import annotations

import pytest
from isod.sandbox import open_backend
from isod.sandbox.backends import BACKENDS


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request):
    b = open_backend(request.param)
    yield b
    b.close()

"""pytest-xdist's ``worker_id`` and ``testrun_uid`` fixtures, for workers
where pytest-xdist is not installed (registered by xdist_compat only then:
xdist's own read the same ``config.workerinput``)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def worker_id(request: pytest.FixtureRequest) -> str:
    """This worker's id: gw0, gw1, ... (as under pytest-xdist)."""
    return request.config.workerinput["workerid"]


@pytest.fixture(scope="session")
def testrun_uid(request: pytest.FixtureRequest) -> str:
    """One id for the whole run, the same in every worker."""
    return request.config.workerinput["testrunuid"]

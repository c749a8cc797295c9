"""Time limits time the test's call, as pytest-test-categories does; setup
and teardown (fixtures) have a limit of their own, and a TC006 shows in the
phase where it happened."""

from __future__ import annotations

import pytest
from harness.daemon import run_pytest

pytestmark = pytest.mark.large

SUITE = '''
import time, pytest

@pytest.fixture(scope="session")
def slow_session():
    time.sleep(1.3)
    yield

@pytest.fixture
def slow_function():
    time.sleep(0.7)
    yield
    time.sleep(0.4)

@pytest.mark.small
def test_slow_session_fixture(slow_session):
    pass

@pytest.mark.small
def test_slow_function_fixture(slow_session, slow_function):
    time.sleep(0.01)

@pytest.mark.small(timeout=0.3)
def test_call_too_slow():
    time.sleep(5)

@pytest.fixture
def hangs_in_teardown():
    yield
    time.sleep(100)

@pytest.mark.small
def test_teardown_hangs(hangs_in_teardown):
    assert 1 == 2

@pytest.fixture
def hangs_in_setup():
    time.sleep(100)

@pytest.mark.small
def test_setup_hangs(hangs_in_setup):
    pass

@pytest.mark.small
def test_after_them():
    pass
'''


def test_the_call_is_timed_and_fixtures_have_their_own_limit(tmp_path, daemon):
    files = {"test_t.py": SUITE, "pytest.ini": "[pytest]\nisod_timeout_fixtures = 2.5\n"}
    r = run_pytest(tmp_path, files, "-q", "--isod-workers=1", target=daemon.target)
    out = {t["nodeid"].split("::")[1]: t["outcome"] for t in r.report["tests"]}
    assert out == {"test_slow_session_fixture": "passed", "test_slow_function_fixture": "passed",
                   "test_call_too_slow": "failed", "test_teardown_hangs": "failed",
                   "test_setup_hangs": "error", "test_after_them": "passed"}, r.out[-3000:]
    assert "[TC006] Timeout: test_t.py::test_call_too_slow (small) ran 0." in r.out
    assert "past its limit of 0.3 s" in r.out
    # killed in teardown: the call's own failure is kept, the teardown errors
    assert "ERROR test_t.py::test_teardown_hangs - [TC006] Timeout: the teardown of" in r.out, r.out[-3000:]
    assert "the call failed; its report was lost" in r.out
    assert "[TC006] Timeout: the setup of test_t.py::test_setup_hangs (small) (its fixtures) ran 2." in r.out

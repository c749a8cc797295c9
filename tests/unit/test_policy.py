"""The size policy is plain data: checked without a kernel."""

import pytest
from isod import contract, policy
from isod.contract import Size
from isod.policy import IDLE, RULES

pytestmark = pytest.mark.small


@pytest.mark.parametrize("syscall", sorted(contract.PROCESS_CREATION) + ["ptrace"])
def test_small_denies_every_process_creation_and_escape_hatch(syscall):
    assert policy.decide(RULES[Size.SMALL], syscall) is False
    assert contract.is_violation(syscall)


def test_only_small_workers_trap_spawns():
    assert policy.traps_spawns(contract.SMALL_CLASS)
    assert not policy.traps_spawns(contract.MEDIUM_CLASS) and not policy.traps_spawns(contract.LARGE_CLASS)
    # warn/off deny nothing: no call needs a supervisor...
    assert not policy.traps_spawns(contract.SMALL_CLASS, enforcing=False)
    # ... unless only a trap can record (no process events connector): warn needs the record
    assert policy.traps_spawns(contract.SMALL_CLASS, enforcing=False, native_records=False)


@pytest.mark.parametrize("size", [Size.MEDIUM, Size.LARGE, Size.XLARGE])
def test_bigger_sizes_allow_spawns(size):
    assert all(policy.decide(RULES[size], s) for s in contract.PROCESS_CREATION)


def test_idle_allows_everything():
    assert all(policy.decide(IDLE, s) for s in list(contract.PROCESS_CREATION) + ["ptrace", "io_uring_setup"])
    assert policy.rule_for(None) is IDLE


def test_unknown_syscalls_are_allowed_and_no_violation():
    assert policy.decide(RULES[Size.SMALL], "openat")
    assert not contract.is_violation("openat")


def test_every_size_has_a_rule():
    assert set(RULES) == set(Size)

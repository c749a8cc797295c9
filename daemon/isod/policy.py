"""Test sizes and what each may do: plain data and pure functions.

Each worker runs tests of one *class* (``worker_class``): its kernel filter is
chosen at launch and never changes. A small worker traps process creation;
the supervisor asks ``decide(rule, syscall)`` for every trapped call, with
``IDLE`` until the worker has collected (spawns at import time are allowed and
recorded) and the small rule from then on, between tests and at session
teardown included. A worker of the spawning class traps nothing: what its
rule allows runs natively (an allowed call routed through a supervisor can
fail with EINTR, docs/kernel-notes.md) and its processes are recorded from
the kernel's process events.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Size(enum.Enum):
    SMALL = "small"
    MEDIUM = "medium"
    LARGE = "large"
    XLARGE = "xlarge"

    @classmethod
    def parse(cls, text: str) -> Size:
        try:
            return cls(text.strip().lower())
        except ValueError:
            known = ", ".join(s.value for s in cls)
            raise ValueError(f"unknown test size {text!r} (known sizes: {known})") from None


# The size markers as pytest's `markers` ini lines: registered by the client
# and by every worker (--strict-markers, -W error must accept them in both).
MARKERS = tuple(f"{s.value}(timeout=None): isod test size {s.value}" for s in Size)


# Seconds; pytest-test-categories' defaults (design §6).
DEFAULT_TIMEOUTS = {Size.SMALL: 1.0, Size.MEDIUM: 300.0, Size.LARGE: 900.0, Size.XLARGE: 900.0}

# Which trapped syscalls create a process or run a program.
PROCESS_CREATION = frozenset({"fork", "vfork", "clone", "clone3", "execve", "execveat"})


@dataclass(frozen=True)
class Rule:
    """What a running test of one size may do. Everything is recorded anyway."""

    name: str
    spawn: bool        # fork / vfork / clone (not threads) / clone3 / execve / execveat
    ptrace: bool       # ptrace(2) on anything
    io_uring: bool     # io_uring_setup: its ops bypass seccomp


IDLE = Rule("idle", spawn=True, ptrace=True, io_uring=True)
RULES = {
    Size.SMALL: Rule("small", spawn=False, ptrace=False, io_uring=False),
    Size.MEDIUM: Rule("medium", spawn=True, ptrace=True, io_uring=True),
    Size.LARGE: Rule("large", spawn=True, ptrace=True, io_uring=True),
    Size.XLARGE: Rule("xlarge", spawn=True, ptrace=True, io_uring=True),
}


# Worker classes: the tests a worker may run, named by what its filter does.
SMALL_CLASS = "small"        # traps fork/vfork/clone/clone3/exec/ptrace and denies them in tests
SPAWNING_CLASS = "spawning"  # no filter: medium, large and xlarge tests spawn natively
CLASSES = (SMALL_CLASS, SPAWNING_CLASS)


def worker_class(size: Size | None, enforcing: bool = True) -> str:
    """The class of worker a test of this size runs in. Unenforced runs (warn,
    off) deny nothing, so no call needs a supervisor: every test runs in a
    spawning-class worker, recorded from the process events."""
    if enforcing and size is Size.SMALL:
        return SMALL_CLASS
    return SPAWNING_CLASS


def rule_for(size: Size | None) -> Rule:
    return IDLE if size is None else RULES[size]


def decide(rule: Rule, syscall: str) -> bool:
    """True to let the call proceed, False to fail it with EPERM."""
    if syscall in PROCESS_CREATION:
        return rule.spawn
    if syscall == "ptrace":
        return rule.ptrace
    if syscall == "io_uring_setup":
        return rule.io_uring
    return True


def is_violation(syscall: str) -> bool:
    """Whether an attempt of this syscall breaks the small-test contract
    ("connect": asking the daemon itself to run something)."""
    return syscall in PROCESS_CREATION or syscall in ("ptrace", "connect")

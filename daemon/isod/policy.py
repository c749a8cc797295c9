"""Test sizes and what each may do: plain data and pure functions.

The supervisor asks ``decide(rule, syscall)`` for every trapped call. A rule is
chosen per worker by the daemon from the size of the test it is running (design
§1); ``IDLE`` applies while no test runs (launch, collection, teardown of the
session), and everything is allowed and recorded then.
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
    return syscall in PROCESS_CREATION or syscall in ("ptrace", "io_uring_setup", "connect")

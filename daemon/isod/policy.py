"""What a test of each size may do, as the daemon enforces it: plain data and
pure functions. The sizes, worker classes and what counts as a violation are
the contract's, shared with the client (contract.py).

Each worker runs tests of one *class* (``contract.worker_class``): its
kernel filter is chosen at launch and never changes. A small worker traps
process creation; the supervisor asks ``decide(rule, syscall)`` for every
trapped call, with ``IDLE`` until the worker has collected (spawns at import
time are allowed and recorded) and the small rule from then on, between
tests and at session teardown included. Medium and large workers trap nothing: what their rule
allows runs natively (an allowed call routed through a supervisor can fail
with EINTR, docs/kernel-notes.md) and their processes are recorded from the
kernel's process events.

Network (TC001): a small test may use no network at all, a medium test only
loopback, large and xlarge anything (``Rule.network``). Small workers' filter
traps socket() of network families (``LOCAL_FAMILIES`` are not), which
``decide`` denies; medium workers get the kernel's cgroup socket hooks in
loopback mode, a mode only the daemon writes (sandbox/netguard.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from .contract import PROCESS_CREATION, SMALL_CLASS, Size

# What a size may do on the network (pytest-test-categories' TC001 rule).
NET_NONE = "none"            # small: no inet socket at all
NET_LOOPBACK = "loopback"    # medium: connections to 127.0.0.0/8, ::1 (and AF_UNIX) only
NET_ANY = "any"              # large, xlarge


@dataclass(frozen=True)
class Rule:
    """What a running test of one size may do. Everything is recorded anyway."""

    name: str
    spawn: bool        # fork / vfork / clone (not threads) / clone3 / execve / execveat
    ptrace: bool       # ptrace(2) on anything
    io_uring: bool     # io_uring_setup: its ops bypass seccomp
    network: str = NET_ANY


IDLE = Rule("idle", spawn=True, ptrace=True, io_uring=True)
RULES = {
    Size.SMALL: Rule("small", spawn=False, ptrace=False, io_uring=False, network=NET_NONE),
    Size.MEDIUM: Rule("medium", spawn=True, ptrace=True, io_uring=True, network=NET_LOOPBACK),
    Size.LARGE: Rule("large", spawn=True, ptrace=True, io_uring=True),
    Size.XLARGE: Rule("xlarge", spawn=True, ptrace=True, io_uring=True),
}

# Socket families that stay on this host (kernel interfaces, not networks):
# AF_UNSPEC, AF_UNIX, AF_KEY, AF_NETLINK (routing tables, interface lists:
# glibc's getaddrinfo with AI_ADDRCONFIG, getifaddrs), AF_ALG (crypto). Every
# other family reaches a network (AF_INET, AF_INET6, AF_PACKET, AF_VSOCK,
# AF_BLUETOOTH, AF_CAN, ...) and counts as network use for a small test.
LOCAL_FAMILIES = frozenset({0, 1, 15, 16, 38})
SYS_SOCKET = 1     # socketcall's call number of socket()


def traps_spawns(cls: str, enforcing: bool = True, native_records: bool = True) -> bool:
    """Whether a worker of this class needs the trapping backend. Only small
    workers deny spawns, and only under strict: warn and off deny nothing, so
    their spawns run natively, recorded from the process events, unless the
    daemon cannot read those (no CAP_NET_ADMIN): then a trap that allows and
    records keeps warn's record."""
    return cls == SMALL_CLASS and (enforcing or not native_records)


def rule_for(size: Size | None) -> Rule:
    return IDLE if size is None else RULES[size]


def decide(rule: Rule, syscall: str, family: int | None = None) -> bool:
    """True to let the call proceed, False to fail it with EPERM. ``family``:
    socket()'s first argument (a register), for "socket"."""
    if syscall in PROCESS_CREATION:
        return rule.spawn
    if syscall == "ptrace":
        return rule.ptrace
    if syscall == "io_uring_setup":
        return rule.io_uring
    if syscall == "socket":
        return rule.network == NET_ANY or not is_network_family(family or 0)
    return True


def is_network_family(family: int) -> bool:
    return (family & 0xFFFFFFFF) not in LOCAL_FAMILIES

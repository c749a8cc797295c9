"""Test sizes and what each may do: plain data and pure functions.

Each worker runs tests of one *class* (``worker_class``): its kernel filter is
chosen at launch and never changes. A small worker traps process creation;
the supervisor asks ``decide(rule, syscall)`` for every trapped call, with
``IDLE`` until the worker has collected (spawns at import time are allowed and
recorded) and the small rule from then on, between tests and at session
teardown included. Medium and large workers trap nothing: what their rule
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


# Seconds; pytest-test-categories' defaults.
DEFAULT_TIMEOUTS = {Size.SMALL: 1.0, Size.MEDIUM: 300.0, Size.LARGE: 900.0, Size.XLARGE: 900.0}

# Which trapped syscalls create a process or run a program.
PROCESS_CREATION = frozenset({"fork", "vfork", "clone", "clone3", "execve", "execveat"})


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
# The calls the sandbox records as network use: socket creation (small
# workers' filter; the cgroup hook), the i386 socketcall multiplexer, and the
# cgroup hooks' connect and UDP sendmsg (docs/kernel-notes.md, network).
NETWORK_CALLS = frozenset({"socket", "socketcall", "connect", "sendmsg"})
SYS_SOCKET = 1     # socketcall's call number of socket()


# Worker classes: the tests a worker runs, one rule each, fixed at its launch
# (its seccomp filter, its cgroup's socket hooks): nothing a test writes can
# move a rule, and no call a rule allows goes through a supervisor.
SMALL_CLASS = "small"        # no process, no network (trapped and denied after collection)
MEDIUM_CLASS = "medium"      # processes natively, network to loopback only (cgroup hooks)
LARGE_CLASS = "large"        # large and xlarge: anything, natively
CLASSES = (SMALL_CLASS, MEDIUM_CLASS, LARGE_CLASS)


def worker_class(size: Size | None) -> str:
    """The class of worker a test of this size runs in."""
    if size is Size.SMALL:
        return SMALL_CLASS
    if size is Size.MEDIUM:
        return MEDIUM_CLASS
    return LARGE_CLASS


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


def is_violation(syscall: str) -> bool:
    """Whether an attempt of this syscall breaks the small-test contract of
    one process ("connect": asking the daemon itself to run something; a
    network call has a family, see is_network)."""
    return syscall in PROCESS_CREATION or syscall in ("ptrace", "connect")


def is_network(ev) -> bool:
    """Whether a recorded call (an Event or its wire form) is network use
    (TC001), not a process creation (TC003): the daemon's own record of a
    small test connecting to its socket is a "connect" without a family."""
    return ev.syscall in NETWORK_CALLS and (ev.syscall != "connect" or ev.family != 0)


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1, their IPv4-mapped forms, and the unspecified
    addresses (Linux connects those to the local host): what a medium test
    may connect to. Names are not resolved ("localhost" is not an address)."""
    import ipaddress

    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified

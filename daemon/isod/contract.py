"""What isod's client and daemon agree on beyond the protobuf messages.

The messages themselves are generated (isod.v1, from proto/isod/v1/isod.proto);
this is the hand-written rest of that contract, which the client plugin imports
with them (and with the size advisor, advice.py, which needs only this):

- the test sizes, their pytest markers and default time limits, and a size's
  number on the wire (``size_to_pb``, ``size_from_pb``);
- the worker class a size runs in (the client hints the classes it expects);
- what counts as a violation: the daemon marks each recorded call it sends
  (``SpawnEvent.violation``), and the client's TC003 and TC001 read that mark;
- how a recorded network call is written in text;
- pytest-xdist's workerinput and workeroutput as they travel between the
  client and its workers;
- the prefix of an embedded daemon's directory.

Plain data and pure functions; the daemon's own rules build on them (policy.py).
The sandbox and `isod trace` import this module: it imports no more than
enum when loaded, and the generated code, json and base64 when a function
needs them.
"""

from __future__ import annotations

import enum

# The client's private directory for an embedded daemon (the socket, its log);
# the daemon removes it itself when its client died.
EMBEDDED_DIR_PREFIX = "isod-embedded-"


# --- sizes --------------------------------------------------------------------
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


def size_to_pb(size: Size) -> int:
    """The wire's isod.v1.Size of a size (its members bear the same names)."""
    from .v1 import isod_pb2 as pb

    return pb.Size.Value(size.name)


def size_from_pb(number: int) -> Size | None:
    """The size of a wire isod.v1.Size; None for SIZE_UNSPECIFIED or a number
    this side does not know."""
    from .v1 import isod_pb2 as pb

    try:
        return Size[pb.Size.Name(number)]
    except (KeyError, ValueError):
        return None


# --- worker classes -------------------------------------------------------------
# The tests a worker runs, one rule each, fixed at its launch (its seccomp
# filter, its cgroup's socket hooks): nothing a test writes can move a rule,
# and no call a rule allows goes through a supervisor. The client names the
# classes it expects (SessionOpen.class_hint) so that they start while it collects.
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


# --- what counts as a violation ---------------------------------------------------
# Which trapped syscalls create a process or run a program.
PROCESS_CREATION = frozenset({"fork", "vfork", "clone", "clone3", "execve", "execveat"})
# The calls the sandbox records as network use: socket creation (small
# workers' filter; the cgroup hook), the i386 socketcall multiplexer, and the
# cgroup hooks' connect and UDP sendmsg (docs/kernel-notes.md, network).
NETWORK_CALLS = frozenset({"socket", "socketcall", "connect", "sendmsg"})


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


def violation(ev) -> int:
    """The wire's SpawnEvent.Violation of a recorded call (an Event or its
    wire form): which sizes' rule it breaks, whatever the size of the test
    that made it. The daemon sends every event marked with it."""
    from .v1 import isod_pb2 as pb

    if is_network(ev):
        if ev.syscall in ("connect", "sendmsg") and not is_loopback(ev.host):
            return pb.SpawnEvent.REMOTE_NETWORK
        return pb.SpawnEvent.NETWORK
    return pb.SpawnEvent.PROCESS if is_violation(ev.syscall) else pb.SpawnEvent.NO_VIOLATION


# --- network calls in text ----------------------------------------------------------
FAMILIES = {2: "AF_INET", 10: "AF_INET6", 17: "AF_PACKET", 16: "AF_NETLINK", 1: "AF_UNIX", 40: "AF_VSOCK"}
SOCK_TYPES = {1: "SOCK_STREAM", 2: "SOCK_DGRAM", 3: "SOCK_RAW", 5: "SOCK_SEQPACKET"}


def family_name(family: int) -> str:
    return FAMILIES.get(family, f"family {family}")


def address_text(host: str, port: int) -> str:
    """10.0.0.1:443, [::1]:80"""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def network_text(ev) -> str:
    """`connect 10.0.0.1:443`, `socket(AF_INET, SOCK_STREAM)`: what the call asked for
    (an Event or its wire form, which have the same field names)."""
    if ev.syscall in ("connect", "sendmsg") and ev.host:
        return f"{ev.syscall} {address_text(ev.host, ev.port)}"
    kind = SOCK_TYPES.get(ev.sock_type, str(ev.sock_type))
    return f"{ev.syscall}({family_name(ev.family)}, {kind})"


# --- pytest-xdist's workerinput and workeroutput ---------------------------------------
# The client's sys.argv and what its plugins added to a node's workerinput in
# pytest_configure_node reach every worker in these environment variables
# (isod/worker/xdist_compat.py reads them); a worker's workeroutput comes
# back in NodeDown.workeroutput_json.
ENV_MAINARGV = "ISOD_MAINARGV"          # JSON: the client's sys.argv
ENV_WORKERINPUT = "ISOD_WORKERINPUT"    # xdist_dumps: what the client's pytest_configure_node added

# xdist sends them through execnet, which keeps bytes, tuples and sets
# (pytest-cov puts a worker's coverage data there as bytes when it is not
# collocated). JSON has none of those: they travel tagged, and come back as they were.
_TAG = "__isod__"


def xdist_dumps(obj) -> bytes:
    import json

    return json.dumps(_enc(obj)).encode()


def xdist_loads(data: bytes):
    import json

    return json.loads(data, object_hook=_dec)


def _enc(o):
    if o is None or isinstance(o, (bool, int, float, str)):
        return o
    if isinstance(o, (bytes, bytearray)):
        import base64

        return {_TAG: "bytes", "v": base64.b64encode(bytes(o)).decode()}
    if isinstance(o, list):
        return [_enc(x) for x in o]
    if isinstance(o, (tuple, set, frozenset)):
        return {_TAG: type(o).__name__ if type(o) in (tuple, set, frozenset) else "tuple", "v": [_enc(x) for x in o]}
    if isinstance(o, dict):
        if _TAG not in o and all(isinstance(k, str) for k in o):
            return {k: _enc(v) for k, v in o.items()}
        return {_TAG: "dict", "v": [[_enc(k), _enc(v)] for k, v in o.items()]}
    return repr(o)    # execnet would refuse it: the client gets its text


def _bytes(v: str) -> bytes:
    import base64

    return base64.b64decode(v)


_DECODE = {
    "bytes": _bytes,
    "tuple": tuple,
    "set": set,
    "frozenset": frozenset,
    "dict": lambda v: {k: x for k, x in v},
}


def _dec(d: dict):
    kind = d.get(_TAG)
    if kind in _DECODE and len(d) == 2 and "v" in d:
        return _DECODE[kind](d["v"])
    return d


# a serialized report's key: its longrepr string was a TerminalRepr without a
# crash line (isod.wire.report_dict; the client restores one)
TEXT_LONGREPR = "isod_text_longrepr"

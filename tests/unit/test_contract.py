"""What the client and the daemon agree on (isod.contract): checked without a kernel."""

import ast
from pathlib import Path

import pytest
from isod import contract
from isod.contract import Size
from isod.sandbox.events import Event
from isod.v1 import isod_pb2 as pb
from isod.wire import event_to_pb

pytestmark = pytest.mark.small

V = pb.SpawnEvent


def test_size_to_the_wire_and_back_is_total_and_inverse():
    numbers = [contract.size_to_pb(s) for s in Size]
    assert numbers == [pb.SMALL, pb.MEDIUM, pb.LARGE, pb.XLARGE]
    assert [contract.size_from_pb(n) for n in numbers] == list(Size)
    # every size the wire can name, and only those
    assert {n for n in pb.Size.values() if n != pb.SIZE_UNSPECIFIED} == set(numbers)


@pytest.mark.parametrize("number", [pb.SIZE_UNSPECIFIED, 99, -1])
def test_a_wire_size_this_side_does_not_know_is_none(number):
    assert contract.size_from_pb(number) is None


def test_size_parse():
    assert Size.parse(" Medium ") is Size.MEDIUM
    with pytest.raises(ValueError, match="unknown test size 'huge' .*small, medium, large, xlarge"):
        Size.parse("huge")


def test_every_size_has_a_marker():
    assert [m.split("(")[0] for m in contract.MARKERS] == ["small", "medium", "large", "xlarge"]


def test_default_time_limits_match_pytest_test_categories():
    assert contract.DEFAULT_TIMEOUTS == {Size.SMALL: 1.0, Size.MEDIUM: 300.0, Size.LARGE: 900.0, Size.XLARGE: 900.0}


def test_each_size_has_its_worker_class():
    assert [contract.worker_class(s) for s in Size] == ["small", "medium", "large", "large"]
    assert contract.worker_class(None) == contract.LARGE_CLASS
    assert set(map(contract.worker_class, Size)) == set(contract.CLASSES)


def test_an_io_uring_ring_is_no_violation():
    """Answered ENOSYS by the small filter itself: a ring creates no process."""
    assert not contract.is_violation("io_uring_setup")
    assert contract.violation(pb.SpawnEvent(syscall="io_uring_setup", decision="enosys")) == V.NO_VIOLATION


@pytest.mark.parametrize(("fields", "expected"), [
    (dict(syscall="execve"), V.PROCESS),
    (dict(syscall="clone3", decision="enosys"), V.PROCESS),
    (dict(syscall="vfork"), V.PROCESS),
    (dict(syscall="ptrace"), V.PROCESS),
    (dict(syscall="connect", path="unix:///run/isod.sock"), V.PROCESS),   # the daemon's socket: no family
    (dict(syscall="openat"), V.NO_VIOLATION),
    (dict(syscall="socket", family=2, sock_type=1), V.NETWORK),
    (dict(syscall="socketcall", family=10, sock_type=2), V.NETWORK),
    (dict(syscall="connect", family=2, host="127.0.0.1", port=80), V.NETWORK),
    (dict(syscall="connect", family=10, host="::ffff:127.0.0.1", port=80), V.NETWORK),
    (dict(syscall="sendmsg", family=10, host="::1", port=53), V.NETWORK),
    (dict(syscall="connect", family=2, host="0.0.0.0", port=80), V.NETWORK),
    (dict(syscall="connect", family=2, host="10.0.0.1", port=443), V.REMOTE_NETWORK),
    (dict(syscall="sendmsg", family=2, host="8.8.8.8", port=53), V.REMOTE_NETWORK),
    (dict(syscall="connect", family=2), V.REMOTE_NETWORK),               # no address: not known to stay here
])
def test_violation_says_which_sizes_rule_a_call_breaks(fields, expected):
    assert contract.violation(pb.SpawnEvent(**fields)) == expected


def test_the_daemon_sends_every_event_marked():
    def event(syscall, **kw):
        return Event(t_ns=1, pid=2, tid=2, ppid=1, syscall=syscall, abi="x86_64", decision="deny", latency_ns=1, **kw)

    assert event_to_pb(event("execve", path="/bin/ls", argv=["ls"])).violation == V.PROCESS
    assert event_to_pb(event("socket", family=2, sock_type=1)).violation == V.NETWORK
    assert event_to_pb(event("connect", family=2, host="192.0.2.1", port=443)).violation == V.REMOTE_NETWORK
    assert event_to_pb(event("io_uring_setup")).violation == V.NO_VIOLATION


def test_network_calls_in_text():
    assert contract.network_text(pb.SpawnEvent(syscall="connect", host="10.0.0.1", port=443)) == "connect 10.0.0.1:443"
    assert contract.network_text(pb.SpawnEvent(syscall="sendmsg", host="::1", port=53)) == "sendmsg [::1]:53"
    assert contract.network_text(pb.SpawnEvent(syscall="socket", family=10, sock_type=2)) == \
        "socket(AF_INET6, SOCK_DGRAM)"
    assert contract.network_text(pb.SpawnEvent(syscall="socket", family=99, sock_type=9)) == "socket(family 99, 9)"


def test_loading_the_contract_loads_no_generated_code():
    """The sandbox and `isod trace` import the contract and start without
    protobuf (~25 ms) or json: the wire's enums and the xdist codec's modules
    are imported when a function asks."""
    tree = ast.parse(Path(contract.__file__).read_text())
    modules = {a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module for n in tree.body if isinstance(n, ast.ImportFrom)}
    assert modules <= {"__future__", "enum"}

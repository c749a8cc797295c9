"""TC001: network use a test's size forbids, from the daemon's record.

pytest-test-categories' rule: a small test may not use the network at all, a
medium test may connect only to this host (127.0.0.0/8, ::1, Unix sockets),
large and xlarge tests anywhere. isod enforces it in the kernel
(docs/kernel-notes.md, network): a small worker's seccomp filter denies
socket() of every network family, the cgroup socket hooks deny a medium
test's connect/sendmsg beyond loopback. The verdict comes from that record,
never from an exception reaching pytest (a test may swallow the
PermissionError, or a library may retry). The destination shown is the
kernel's for a connect; a denied socket() has none yet, so the test's own
words name it: the last connect/getaddrinfo its thread made before (the
worker's audit hook), or any thread's (asyncio resolves in an executor).
"""

from __future__ import annotations

import ipaddress
import textwrap

from _pytest._code.code import ReprFileLocation, TerminalRepr
from isod.contract import SOCK_TYPES, address_text, family_name, is_loopback, network_text
from isod.v1 import isod_pb2 as pb

from . import tc003

RULE = "=" * 70
WHY = {
    pb.SMALL: ("Small tests must be hermetic and cannot access the network. Network calls introduce "
               "non-determinism, external dependencies, and flaky failures from network latency or outages."),
    pb.MEDIUM: ("Medium tests may use the network only on this machine (localhost). A connection beyond it "
                "depends on an outside service being up, reachable and fast: the test can fail for reasons "
                "outside the code under test."),
}
FIXES = {
    pb.SMALL: (
        "Mock the network call (e.g. responses, respx, or a fake transport)",
        "Use dependency injection to provide a fake client",
        "Change test category to @pytest.mark.medium (if a server on localhost is required)",
    ),
    pb.MEDIUM: (
        "Run the service on localhost (a local server or container listening on 127.0.0.1)",
        "Mock the external service call",
        "Change test category to @pytest.mark.large (if the external network is required)",
    ),
}
SIZE_NAME = {pb.SMALL: "SMALL", pb.MEDIUM: "MEDIUM", pb.LARGE: "LARGE", pb.XLARGE: "XLARGE"}
HOW = {pb.SMALL: "seccomp denies socket() of network families",
       pb.MEDIUM: "cgroup socket hooks deny connections beyond loopback"}

# audit events that name a destination (isod/worker/plugin.py _NET_AUDITED)
_CONNECTS = ("socket.connect", "socket.sendto", "socket.sendmsg")
_LOOKUPS = ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr")
ANY_THREAD_WINDOW_S = 2.0   # another thread's lookup names a socket() only if it came shortly before


# network use as the daemon marked it (SpawnEvent.violation): a small test
# may use none, a medium test none beyond loopback
_NETWORK = (pb.SpawnEvent.NETWORK, pb.SpawnEvent.REMOTE_NETWORK)
_FORBIDDEN = {pb.SMALL: _NETWORK, pb.MEDIUM: (pb.SpawnEvent.REMOTE_NETWORK,)}


def violations(result: pb.TestResult) -> list[pb.SpawnEvent]:
    """The recorded network calls the test's size forbids."""
    forbidden = _FORBIDDEN.get(result.size, ())
    return [e for e in result.events if e.violation in forbidden]


def _numeric(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        return True
    except ValueError:
        return False


def unseen_intents(result: pb.TestResult) -> list[pb.Intent]:
    """Connections the audit hook saw and the kernel did not: where the cgroup
    hooks are unavailable (an unprivileged daemon), or on a socket made
    outside the tree's cgroup. Not denied; reported from Python's record.
    Numeric addresses only: a name ("localhost", "db") is not judged."""
    if result.size not in (pb.SMALL, pb.MEDIUM):
        return []
    kernel = [e for e in result.events if e.violation in _NETWORK]
    out = []
    for it in result.intents:
        if it.event not in _CONNECTS or len(it.argv) < 2 or not _numeric(it.argv[0]):
            continue
        if result.size == pb.MEDIUM and is_loopback(it.argv[0]):
            continue
        seen = any(e.tid == it.tid and 0 <= e.offset_s - it.offset_s < 1.0 for e in kernel)
        if not seen:
            out.append(it)
    return out


def _naming_intent(ev: pb.SpawnEvent, intents) -> pb.Intent | None:
    """The destination the test named before this call: its thread's last
    connect or lookup, else the last one of any thread shortly before."""
    same = other = None
    for it in intents:
        if it.event not in _CONNECTS and it.event not in _LOOKUPS:
            continue
        if it.offset_s > ev.offset_s:
            continue
        if it.tid == ev.tid:
            same = it
        elif ev.offset_s - it.offset_s <= ANY_THREAD_WINDOW_S:
            other = it
    return same or other


def _named(it: pb.Intent) -> str:
    host = it.argv[0] if it.argv else "?"
    port = it.argv[1] if len(it.argv) > 1 else ""
    return address_text(host, port) if port else host


def attempts(result: pb.TestResult) -> list[tuple[str, list[pb.SpawnEvent], pb.Intent | None]]:
    """(destination, its recorded calls, the intent that named it), in order;
    one per destination."""
    out: dict[str, tuple[str, list, pb.Intent | None]] = {}
    for ev in violations(result):
        it = _naming_intent(ev, result.intents)
        if ev.syscall in ("connect", "sendmsg") and ev.host:
            dest = address_text(ev.host, ev.port)
            if it is not None and it.event in _LOOKUPS and it.argv and not _numeric(it.argv[0]):
                dest = f"{dest} ({it.argv[0]})"     # the name the test asked for
        elif it is not None:
            dest = _named(it)
        else:
            dest = ""
        key = dest or network_text(ev)
        out.setdefault(key, (dest, [], it))[1].append(ev)
    return list(out.values())


def attempt_lines(result: pb.TestResult) -> list[str]:
    """One line per destination: 'Attempted network connection to 10.0.0.1:443'."""
    lines = []
    for dest, events, it in attempts(result):
        first = events[0]
        what = network_text(first)
        if first.syscall == "socketcall":
            what = f"socket({family_name(first.family)}, {_type(first)}) through i386 socketcall"
        if dest:
            line = f"Attempted network connection to {dest}"
            if first.syscall in ("socket", "socketcall"):
                lookup = it is not None and it.event in _LOOKUPS and it.argv and not _numeric(it.argv[0])
                line += f"   [{'name lookup: ' if lookup else ''}{what} {_verb(first)}]"
        else:
            line = (f"Attempted network access: {what} from pid {first.pid} (no address: {_verb(first)} before "
                    "any connection)")
        if it is not None and it.site:
            line += f"   (at {it.site})"
        lines.append(line)
    for it in unseen_intents(result):
        line = f"Attempted network connection to {_named(it)}   [{it.event}: seen by Python's audit hook only, " \
               "not denied]"
        if it.site:
            line += f"   (at {it.site})"
        if line not in lines:
            lines.append(line)
    return lines


def _type(ev: pb.SpawnEvent) -> str:
    return SOCK_TYPES.get(ev.sock_type, str(ev.sock_type))


def _verb(ev: pb.SpawnEvent) -> str:
    return {"deny": "denied", "enosys": "refused (ENOSYS)"}.get(ev.decision, "recorded, not denied")


def where(result: pb.TestResult) -> str:
    vs = violations(result)
    if not vs:
        return ""
    first = vs[0]
    n = len(vs)
    denied = sum(1 for e in vs if e.decision in ("deny", "enosys"))
    return (f"  ({n} network call{'s' if n != 1 else ''} recorded, {denied} denied in the kernel; first in "
            f"{first.phase or 'test'} at +{first.offset_s * 1000:.1f} ms, pid {first.pid})")


def message(result: pb.TestResult) -> str:
    size = result.size if result.size in WHY else pb.SMALL
    body = [RULE, "[TC001] Network Access Violation", RULE, f"Test: {result.nodeid}",
            f"Category: {SIZE_NAME.get(result.size, 'SMALL')}", "", "What happened:"]
    body += [f"  {line}" for line in attempt_lines(result)]
    detail = where(result)
    if detail:
        body.append(detail)
    body += ["", "Why it matters:"]
    body += textwrap.wrap(WHY[size], 72, initial_indent="  ", subsequent_indent="  ")
    body += ["", "To fix this (choose one):"]
    body += [f"  • {fix}" for fix in FIXES[size]]
    name = "small" if size == pb.SMALL else "medium"
    body += ["", f"Enforced in the kernel by isod ({HOW[size]}); see `isod trace --size {name} -- CMD`.", RULE]
    return "\n".join(body)


def first_phase(result: pb.TestResult) -> str:
    """The phase of the first violation, TC003's or TC001's."""
    firsts = [vs[0] for vs in (tc003.violations(result) if result.size == pb.SMALL else [], violations(result))
              if vs]
    if not firsts:
        return "call"     # only what the audit hook saw: it has no phase
    return min(firsts, key=lambda e: e.offset_s).phase or "call"


class ViolationRepr(TerminalRepr):
    """The TC003 and TC001 blocks as one failure representation."""

    def __init__(self, text: str, headline: str, location: tuple) -> None:
        self.text = text
        self.reprcrash = ReprFileLocation(str(location[0]), (location[1] or 0) + 1, headline)

    def toterminal(self, tw) -> None:
        for line in self.text.splitlines():
            loud = line.startswith(("[TC003]", "[TC001]"))
            tw.line(line, red=loud, bold=loud)

    def __str__(self) -> str:
        return self.text


def longrepr(result: pb.TestResult, location: tuple, previous: str | None = None,
             network: bool = True) -> TerminalRepr:
    """TC003 (a small test's processes) and TC001 (network) for one test, both
    when it did both; then what failed in the test itself."""
    spawn = tc003.attempt_lines(result) if result.size == pb.SMALL else []
    net = attempt_lines(result) if network else []
    blocks = ([tc003.message(result)] if spawn else []) + ([message(result)] if net else [])
    if previous:
        blocks.append(previous)
    headlines = [f"[TC003] {spawn[0]}"] if spawn else []
    if net:
        headlines.append(f"[TC001] {net[0]}")
    more = len(spawn) + len(net) - len(headlines)
    headline = " / ".join(headlines) + (f" (+{more} more)" if more > 0 else "")
    return ViolationRepr("\n\n".join(blocks), headline, location)


def enabled(config) -> bool:
    """--isod-network on|off (ini isod_network), default on."""
    value = config.getoption("isod_network", None) or config.getini("isod_network") or "on"
    value = str(value).strip().lower()
    if value not in ("on", "off"):
        import pytest

        raise pytest.UsageError(f"isod_network must be on or off, got {value!r}")
    return value == "on"


def session_env(env: dict[str, str], network: bool, enforcement: str) -> dict[str, str]:
    """What the daemon reads when it starts this session's workers (their
    environment is the client's): the network rule on or off, and whether
    violations are denied (strict) or only recorded (warn, off)."""
    out = dict(env)
    out["ISOD_NETWORK"] = "on" if network else "off"
    out["ISOD_ENFORCEMENT"] = enforcement
    return out


def summary(terminalreporter, violators: list[tuple[str, list[str]]], verb: str) -> None:
    if not violators:
        return
    terminalreporter.section("isod: tests that used the network beyond their size (TC001)", sep="-", yellow=True)
    for nodeid, lines in violators:
        terminalreporter.write_line(f"{nodeid} ({verb})")
        for line in lines[:5]:
            terminalreporter.write_line(f"    {line}")
        if len(lines) > 5:
            terminalreporter.write_line(f"    ... and {len(lines) - 5} more")

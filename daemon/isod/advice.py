"""The size advisor's rule: the smallest size a test would pass under, from
what isod recorded while it ran. Pure functions over the entries of
`--isod-report` (plain dicts), shared by `pytest -p isod_client
--isod-suggest-sizes` and `isod suggest REPORT.json`.

The rule, once:

- small: no process created, no network, and the call phase (what a size's
  time limit covers) under half of the small limit (a test at 0.95 s of 1 s
  would be flaky);
- medium: processes or loopback network (a Unix socket counts as loopback)
  and under half of the medium limit;
- large: network beyond loopback, or too slow for medium, and under half of
  the large limit;
- xlarge: anything else.

A test that failed, errored or was skipped gets no suggestion, unless isod
itself stopped it (a spawn denied under strict, a time limit): what it did up
to then is known, so its suggestion is a lower bound, said in its reasons.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .contract import DEFAULT_TIMEOUTS, PROCESS_CREATION, Size, is_violation

ORDER = (Size.SMALL, Size.MEDIUM, Size.LARGE, Size.XLARGE)
MARGIN = 0.5          # a size fits a test that takes at most this share of its limit
NETWORK_SYSCALLS = ("connect", "sendto", "sendmsg", "socket", "socketcall")
# families by name or number (socket.h): Unix sockets are loopback; netlink
# talks to the kernel, not to a host; a packet socket reaches the wire
FAMILY_NAMES = {1: "af_unix", 2: "af_inet", 10: "af_inet6", 16: "af_netlink", 17: "af_packet"}
LOCAL_FAMILIES = ("af_unix", "unix", "af_local", "local")
NOT_NETWORK_FAMILIES = ("af_netlink", "netlink")
WIRE_FAMILIES = ("af_packet", "packet")


@dataclass(frozen=True)
class Suggestion:
    size: Size | None                  # None: no suggestion (failed, skipped, crashed)
    reasons: tuple[str, ...] = ()      # why not smaller (or why none)


@dataclass(frozen=True)
class NetworkUse:
    remote: bool       # beyond loopback: needs large
    text: str          # "connected to 10.0.0.1:443"


# --- reading the record ---------------------------------------------------
def _get(ev, name: str, default=None):
    """A field of an event: a report's dict or a protobuf SpawnEvent alike."""
    if isinstance(ev, Mapping):
        return ev.get(name, default)
    return getattr(ev, name, default)


def network_use(ev) -> NetworkUse | None:
    """What one recorded event says about the network, or None if it is not a
    network call. All knowledge of how network events look is here: a
    syscall in NETWORK_SYSCALLS; the destination as `address` (text
    "HOST:PORT", "[V6]:PORT", a Unix path, or a mapping with host/port), or
    as `host` and `port` fields, or failing those as `path`; an optional
    `family` (name or number). No such events: no network."""
    syscall = _get(ev, "syscall", "")
    if syscall not in NETWORK_SYSCALLS:
        return None
    family = _get(ev, "family", "") or ""
    family = FAMILY_NAMES.get(family, f"family {family}") if isinstance(family, int) else str(family).lower()
    if family in NOT_NETWORK_FAMILIES:
        return None
    address = _get(ev, "address") or ""
    if not address and _get(ev, "host"):
        address = _join(str(_get(ev, "host")), _get(ev, "port"))
    address = address or _get(ev, "path") or ""
    creates = syscall in ("socket", "socketcall")
    verb = "connected to" if syscall == "connect" else "opened a socket" if creates else "sent to"
    if isinstance(address, Mapping):
        host = address.get("host") or address.get("ip") or address.get("addr") or ""
        port = address.get("port")
        address = _join(str(host), port) if host else (address.get("path") or "")
    address = str(address)
    if family in WIRE_FAMILIES:
        return NetworkUse(True, f"{verb} (a packet socket)" if not creates else "opened a packet socket")
    if not address:
        if family in LOCAL_FAMILIES:
            return NetworkUse(False, "opened a Unix socket" if creates else f"{verb} a Unix socket")
        shown = f" ({family.upper()})" if family else ""
        return NetworkUse(False, f"opened a socket{shown}" if creates else f"{syscall} (no address recorded)")
    if creates:
        verb = "opened a socket for"
    if family in LOCAL_FAMILIES or address.startswith(("/", "@", "unix:")):
        return NetworkUse(False, f"{verb} Unix socket {address}")
    host = _host(address)
    if host is None:           # not an address (a description): local, said as recorded
        return NetworkUse(False, address if syscall == "connect" and " " in address else f"{verb} {address}")
    if _is_loopback(host):
        return NetworkUse(False, f"{verb} {address} (loopback)")
    return NetworkUse(True, f"{verb} {address}")


def _join(host: str, port) -> str:
    if port in (None, ""):
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _host(address: str) -> str | None:
    """The host of "HOST:PORT", "[V6]:PORT", a bare IP or host name; None for
    text that is no address."""
    if address.startswith("["):
        end = address.find("]")
        return address[1:end] if end > 0 else None
    try:
        ipaddress.ip_address(address)        # a bare IPv4 or IPv6 address
        return address
    except ValueError:
        pass
    host, sep, port = address.rpartition(":")
    if sep and port.isdigit() and host and " " not in host:
        return host
    if " " not in address and "." in address:
        return address                        # a bare host name
    return None


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost") or host.lower().endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    return ip.is_loopback or ip.is_unspecified    # connect(0.0.0.0) reaches this host


_EXECS = ("execve", "execveat")


def processes(entry: Mapping) -> list[str]:
    """The commands a test ran or tried to run, one phrase per command:
    "spawned CMD" (an exec's argv; for a fork with no exec, the command of
    the Python-level intent) or "tried to spawn CMD (denied)"."""
    commands = entry.get("commands") or ()
    execs = [c for c in commands if c.get("syscall") in _EXECS]
    forks = [c for c in commands if c.get("syscall") in PROCESS_CREATION and c.get("syscall") not in _EXECS
             and c.get("decision") != "enosys"]          # clone3's ENOSYS is retried as clone: one attempt
    out: list[str] = []
    for c in execs:
        argv = c.get("argv") or ([c["path"]] if c.get("path") else [])
        out.append(_spawned(_shown(shlex.join(argv)) if argv else "a program", c.get("decision") == "deny"))
    if not execs and forks:
        intent = _intent_before(forks[0], entry.get("intents") or ())
        what = _shown(shlex.join(intent["argv"])) if intent else "a fork with no command"
        out.append(_spawned(what, _denied(forks)))
    return list(dict.fromkeys(out))


def _intent_before(ev: Mapping, intents) -> Mapping | None:
    """The Python-level spawn (with a command) on the event's thread just before it, else the first one."""
    with_argv = [i for i in intents if i.get("argv")]
    before = [i for i in with_argv if i.get("tid") == ev.get("tid") and i.get("offset_s", 0) <= ev.get("offset_s", 0)]
    return (before or with_argv or [None])[-1 if before else 0]


def _spawned(what: str, denied: bool) -> str:
    return f"tried to spawn {what} (denied)" if denied else f"spawned {what}"


def _denied(events) -> bool:
    return any(e.get("decision") == "deny" for e in events)


def _shown(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def took(entry: Mapping) -> float:
    """Seconds of the test's call phase (the phase a size's time limit
    covers), or the elapsed time isod stopped it at, whichever is more."""
    durations = entry.get("durations") or {}
    call = durations.get("call")
    call = float(call) if isinstance(call, int | float) else 0.0
    elapsed = float(entry.get("elapsed_s") or 0.0) if entry.get("interruption_kind") == "timeout" else 0.0
    return max(call, elapsed)


def stopped_by_isod(entry: Mapping) -> str | None:
    """Why isod stopped this test, if it did: "TC003" (a spawn denied under
    strict) or "TC006" (its time limit). Its own outcome is unknown then."""
    if entry.get("interruption_kind") == "timeout" or str(entry.get("interruption") or "").startswith("[TC006]"):
        return "TC006"
    if any(c.get("decision") == "deny" and is_violation(c.get("syscall", "")) for c in entry.get("commands") or ()):
        return "TC003"
    return None


def limits_of(report_limits: Mapping | None) -> dict[Size, float]:
    """{Size: seconds} from a report's "limits" (names to seconds), defaults where absent."""
    out = dict(DEFAULT_TIMEOUTS)
    for name, value in (report_limits or {}).items():
        try:
            out[Size.parse(name) if isinstance(name, str) else name] = float(value)
        except (TypeError, ValueError):
            continue
    return out


# Python-level network intents (the worker's audit hook) as the calls they
# announce: a medium worker's hooks record no loopback connection, its intent
# still says the test needs the network (loopback: medium).
_CONNECTING_INTENTS = {"socket.connect": "connect", "socket.sendto": "sendmsg", "socket.sendmsg": "sendmsg"}


def _intended_connections(intents) -> list[dict]:
    out = []
    for i in intents:
        syscall = _CONNECTING_INTENTS.get(_get(i, "event", ""))
        argv = list(_get(i, "argv", None) or ())
        # an inet address is (host, port); a Unix socket's is one path: not network
        if syscall and len(argv) >= 2 and not str(argv[0]).startswith(("/", "@", "\0")):
            out.append({"syscall": syscall, "host": argv[0], "port": argv[1]})
    return out


# --- the rule -------------------------------------------------------------
def _needs(commands, intents) -> tuple[Size, list[str]]:
    """The size these recorded calls need, by what they did (not by time), and why."""
    spawned = processes({"commands": commands, "intents": intents})
    net = [u for u in (network_use(c) for c in (*commands, *_intended_connections(intents))) if u is not None]
    remote = [u.text for u in net if u.remote]
    local = [u.text for u in net if not u.remote]
    if remote:
        return Size.LARGE, _listed(remote, "connections")
    if spawned or local:
        return Size.MEDIUM, _listed(spawned, "commands") + _listed(local, "connections")
    return Size.SMALL, []


def suggest(entry: Mapping, limits: Mapping[Size, float] | None = None,
            inherited: Iterable[tuple[Size, str]] = ()) -> Suggestion:
    """The smallest size this test would pass under (module docstring).
    `inherited`: floors from shared fixtures (shared_fixture_floors)."""
    table = dict(DEFAULT_TIMEOUTS) | dict(limits or {})
    stopped = stopped_by_isod(entry)
    outcome = entry.get("outcome", "passed")
    if stopped is None:
        if entry.get("interruption_kind") or entry.get("interruption"):
            return Suggestion(None, (f"no suggestion: {_first_line(entry.get('interruption')) or 'interrupted'}",))
        if outcome != "passed":
            return Suggestion(None, (f"no suggestion: {outcome}",))
    floor, reasons = _needs(entry.get("commands") or [], entry.get("intents") or [])
    for size, why in inherited:
        if ORDER.index(size) >= ORDER.index(floor):
            floor = size
            reasons.append(why)
    if stopped == "TC006":            # it did not fit its size, whatever the record says
        current = _size_or_none(entry.get("size"))
        if current is not None and current is not Size.XLARGE and ORDER.index(floor) <= ORDER.index(current):
            floor = ORDER[ORDER.index(current) + 1]
            reasons.append(f"killed at {current.value}'s limit of {_secs(table[current])}"
                           + (f" after {_secs(took(entry))}" if took(entry) else ""))
    seconds = took(entry)
    size = next((s for s in ORDER[ORDER.index(floor):] if seconds <= MARGIN * table[s]), Size.XLARGE)
    if size is not floor:
        reasons.append(f"call took {_secs(seconds)} of {floor.value}'s {_secs(table[floor])} "
                       f"(needs under {MARGIN:.0%} of the limit)")
    if stopped is not None:
        reasons.append(f"at least {size.value}: isod stopped the test ({stopped}); "
                       "--test-categories-enforcement=off shows all it does")
    return Suggestion(size, tuple(reasons))


def suggest_all(entries: Iterable[Mapping], limits: Mapping[Size, float] | None = None) -> list[Suggestion]:
    """suggest() for each entry of a run, with what shared fixtures need."""
    entries = list(entries)
    floors = shared_fixture_floors(entries)
    return [suggest(e, limits, floors.get(e.get("nodeid"), ())) for e in entries]


# --- shared fixtures ------------------------------------------------------
# A session, package, module or class fixture is set up once per worker (per
# scope node) and its setup's calls are charged to the first test that asked
# for it; under strict, the tests that share it and run in a small worker
# would set it up there and fail. So when every setup (or every teardown) of
# such a fixture recorded a spawn or a connection, every test using it needs
# what that fixture needs. Entries carry "fixtures" ({name: scope}) and
# "worker", and are in each worker's running order (as --isod-report writes
# them).
SHARED_SCOPES = ("session", "package", "module", "class")


def _scope_key(nodeid: str, scope: str) -> str:
    path, _, rest = nodeid.partition("::")
    if scope == "session":
        return ""
    if scope == "package":
        return path.rpartition("/")[0]
    if scope == "module":
        return path
    return path + "::" + "::".join(rest.split("::")[:-1])      # class


def shared_fixture_floors(entries: list[Mapping]) -> dict[str, list[tuple[Size, str]]]:
    """node id -> [(size, reason)] for the tests that use a shared fixture whose
    setups (or teardowns) all spawned or connected, other than where it did."""
    needs: dict[tuple[str, str], tuple[Size, list[str]]] = {}    # (nodeid, phase) -> its fixture calls' needs
    fixtures: dict[str, dict[str, str]] = {}
    for e in entries:
        nid = e.get("nodeid")
        fixtures[nid] = {n: s for n, s in (e.get("fixtures") or {}).items() if isinstance(s, str)}
        for phase in ("setup", "teardown"):
            calls = [c for c in e.get("commands") or () if c.get("phase") == phase]
            needs[nid, phase] = _needs(calls, e.get("intents") or []) if calls else (Size.SMALL, [])
    if not any(s in SHARED_SCOPES for f in fixtures.values() for s in f.values()):
        return {}

    def needed(nid: str, phase: str) -> bool:
        return needs[nid, phase][0] is not Size.SMALL

    users: dict[tuple[str, str], list[str]] = {}           # (fixture, scope) -> node ids
    for nid, fx in fixtures.items():
        for name, scope in fx.items():
            users.setdefault((name, scope), []).append(nid)

    always: dict[tuple[str, str], bool] = {}                 # (function fixture, phase) -> all its users called

    def explained(nid: str, phase: str) -> bool:
        """A function-scoped fixture of this test that made the same kind of
        call in every test using it (two or more) accounts for its calls."""
        for name, scope in fixtures[nid].items():
            if scope == "function" and len(users[name, scope]) > 1:
                if (name, phase) not in always:
                    always[name, phase] = all(needed(u, phase) for u in users[name, scope])
                if always[name, phase]:
                    return True
        return False

    # where each shared fixture was set up and torn down, per worker in running order
    happened: dict[tuple[str, str], dict[str, list[str]]] = {}
    by_worker: dict[str, list[str]] = {}
    for e in entries:
        by_worker.setdefault(str(e.get("worker", "")), []).append(e.get("nodeid"))
    for tests in by_worker.values():
        alive: dict[tuple[str, str], str] = {}
        prev = None
        for nid in tests:
            for (name, scope), key in list(alive.items()):
                if scope != "session" and _scope_key(nid, scope) != key:
                    happened[name, scope]["teardown"].append(prev)
                    del alive[name, scope]
            for name, scope in fixtures[nid].items():
                if scope in SHARED_SCOPES and (name, scope) not in alive:
                    happened.setdefault((name, scope), {"setup": [], "teardown": []})["setup"].append(nid)
                    alive[name, scope] = _scope_key(nid, scope)
            prev = nid
        for fixture in alive:
            happened[fixture]["teardown"].append(prev)

    out: dict[str, list[tuple[Size, str]]] = {}
    for (name, scope), where in happened.items():
        for phase, at in where.items():
            if not at or not all(needed(nid, phase) and not explained(nid, phase) for nid in at):
                continue
            size = max((needs[nid, phase][0] for nid in at), key=ORDER.index)
            what = needs[at[0], phase][1][0] if needs[at[0], phase][1] else "needs more than small"
            why = f"uses {scope} fixture {name}, whose {phase} {what} (in {at[0]})"
            there = set(at)
            for nid in users[name, scope]:
                if nid not in there:
                    out.setdefault(nid, []).append((size, why))
    return out


def _size_or_none(name) -> Size | None:
    try:
        return Size.parse(str(name))
    except ValueError:
        return None


def _listed(texts: list[str], what: str, shown: int = 3) -> list[str]:
    out = list(dict.fromkeys(texts))
    return out[:shown] + ([f"and {len(out) - shown} more {what}"] if len(out) > shown else [])


def _first_line(text) -> str:
    return str(text or "").strip().splitlines()[0] if str(text or "").strip() else ""


def _secs(s: float) -> str:
    return f"{s:.3g} s" if s < 10 else f"{s:.0f} s"


# --- the summary ----------------------------------------------------------
def annotate(entries: Iterable[dict], limits: Mapping[Size, float] | None = None) -> list[dict]:
    """Set suggested_size and suggestion_reasons on each report entry."""
    entries = list(entries)
    out = []
    for e, s in zip(entries, suggest_all(entries, limits)):
        e["suggested_size"] = s.size.value if s.size else None
        e["suggestion_reasons"] = list(s.reasons)
        out.append(e)
    return out


def summary_lines(entries: Iterable[Mapping], limits: Mapping[Size, float] | None = None,
                  listed: int = 20, suggestions: list[Suggestion] | None = None) -> list[str]:
    """Per current size: how many tests could be smaller, which are too small
    (and why); then the totals. Entries need nodeid, size, and optionally
    marked (absent: counted as marked). `suggestions`: suggest_all's, if
    already made."""
    by_size: dict[Size, list[tuple[Mapping, Suggestion]]] = {s: [] for s in ORDER}
    none: list[tuple[Mapping, Suggestion]] = []
    entries = list(entries)
    for e, s in zip(entries, suggestions if suggestions is not None else suggest_all(entries, limits)):
        try:
            current = Size.parse(str(e.get("size", "")))
        except ValueError:
            continue
        by_size[current].append((e, s))
        if s.size is None:
            none.append((e, s))
    lines: list[str] = []
    smaller = bigger = fit = 0
    counts = {s: 0 for s in ORDER}
    for current, tests in by_size.items():
        if not tests:
            continue
        rank = ORDER.index(current)
        down = [(e, s) for e, s in tests if s.size is not None and ORDER.index(s.size) < rank]
        up = [(e, s) for e, s in tests if s.size is not None and ORDER.index(s.size) > rank]
        unmarked = sum(1 for e, _ in tests if e.get("marked") is False)
        smaller += len(down)
        bigger += len(up)
        fit += sum(1 for _, s in tests if s.size is current)
        for _, s in tests:
            if s.size is not None:
                counts[s.size] += 1
        head = f"{current.value}: {_n(len(tests), 'test')}"
        if unmarked:
            head += f" ({unmarked} unmarked)"
        parts = []
        if down:
            into = {s.size: 0 for _, s in down}
            for _, s in down:
                into[s.size] += 1
            parts.append(f"{len(down)} could be smaller ("
                         + ", ".join(f"{n} {size.value}" for size, n in sorted(into.items(),
                                                                            key=lambda kv: ORDER.index(kv[0])))
                         + ")")
        if up:
            parts.append(f"{len(up)} too small")
        lines.append(head + (": " + ", ".join(parts) if parts else ": all fit"))
        for e, s in up[:listed]:
            tag = "" if e.get("marked", True) else " (unmarked)"
            lines.append(f"    {e.get('nodeid')}{tag} -> {s.size.value}: {'; '.join(s.reasons)}")
        if len(up) > listed:
            lines.append(f"    ... and {len(up) - listed} more (--isod-report has them all)")
    if none:
        outcomes: dict[str, int] = {}
        for e, _ in none:
            outcomes[str(e.get("outcome"))] = outcomes.get(str(e.get("outcome")), 0) + 1
        lines.append(f"no suggestion for {_n(len(none), 'test')} ("
                     + ", ".join(f"{n} {o}" for o, n in outcomes.items()) + "):")
        failed = [(e, s) for e, s in none if e.get("outcome") != "skipped"]     # skipped ones: counted only
        for e, s in failed[:listed]:
            lines.append(f"    {e.get('nodeid')}: {s.reasons[0].removeprefix('no suggestion: ') if s.reasons else ''}")
        if len(failed) > listed:
            lines.append(f"    ... and {len(failed) - listed} more")
    total = sum(len(t) for t in by_size.values())
    lines.append(f"total: {_n(total, 'test')}: {smaller} could be smaller, {bigger} too small, {fit} fit their size"
                 + (f", {len(none)} without a suggestion" if none else "")
                 + "; suggested " + ", ".join(f"{counts[s]} {s.value}" for s in ORDER))
    return lines


def _n(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"

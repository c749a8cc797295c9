"""Verdicts from the daemon's record, and the TC003 block that reports them.

The verdict never depends on an exception reaching pytest (os.system returns
32512 when denied; a test may swallow PermissionError): a small test fails if
the kernel recorded any process-creation attempt while it ran. The command
shown is the exec's own argv, or for a denied fork/vfork/clone (which has no
command yet) the Python-level intent recorded just before it on that thread.
"""

from __future__ import annotations

import bisect
import shlex
import textwrap

from _pytest._code.code import ReprFileLocation, TerminalRepr
from isod.v1 import isod_pb2 as pb

RULE = "=" * 70
WHY = ("Small tests should run in a single process without spawning subprocesses. "
       "Subprocess spawning introduces non-determinism from external process behavior, "
       "I/O overhead from process creation, and timing variability that causes flaky tests.")
FIXES = (
    "Mock the process execution layer (e.g. mocker.patch of subprocess.run)",
    "Use dependency injection to provide a fake command executor",
    "Test the logic that prepares the command, not the spawn itself",
    "Change test category to @pytest.mark.medium (if subprocess is required)",
)
# clone3 and the clone libc retries with are one attempt: one label
_LABEL = {"clone": "clone (fork)", "clone3": "clone (fork)", "vfork": "vfork", "fork": "fork"}


def violations(result: pb.TestResult) -> list[pb.SpawnEvent]:
    """Process creations, as the daemon marked them (network calls are TC001's: tc001.py)."""
    return [e for e in result.events if e.violation == pb.SpawnEvent.PROCESS]


CTYPES_WINDOW_S = 1.0   # a ctypes lookup names the spawn only if it came shortly before


def _intent_for(ev: pb.SpawnEvent, intents) -> pb.Intent | None:
    best = None
    for it in intents:
        if it.tid == ev.tid and it.offset_s <= ev.offset_s:   # the audit hook runs before the syscall
            best = it
    if best is not None and best.event == "ctypes.dlsym" and ev.offset_s - best.offset_s > CTYPES_WINDOW_S:
        return None
    return best


_FORKS = ("fork", "vfork", "clone", "clone3")
_EXECS = ("execve", "execveat")


def attempts(result: pb.TestResult) -> list[list[pb.SpawnEvent]]:
    """The recorded calls grouped by the command they attempted, in order.

    One command costs several calls: the clone libc retries with after clone3
    got ENOSYS; the fork CPython falls back to when vfork is denied; a fork
    and the exec of its child; one argv tried along PATH. A new intent (a
    Python-level spawn) on the thread starts a new command, so two denied
    Popens are two commands."""
    groups: list[list[pb.SpawnEvent]] = []
    last_on_tid: dict[int, list[pb.SpawnEvent]] = {}
    last_exec: dict[int, list[pb.SpawnEvent]] = {}         # pid -> the group of its last exec
    awaiting_exec: dict[int, list[list[pb.SpawnEvent]]] = {}  # parent pid -> allowed forks, no child exec yet
    pids: set[int] = set()
    intents: dict[int, list[float]] = {}                      # tid -> offsets of its intents
    for it in result.intents:
        intents.setdefault(it.tid, []).append(it.offset_s)
    for offsets in intents.values():
        offsets.sort()
    for ev in violations(result):
        group = None
        prev = last_on_tid.get(ev.tid)
        if ev.syscall in _FORKS and prev and _retry_of(prev[-1], ev) and \
                not _intent_between(intents.get(ev.tid, []), prev[-1].offset_s, ev.offset_s):
            group = prev
        elif ev.syscall in _EXECS:
            before = last_exec.get(ev.pid)
            if before and before[-1].argv == ev.argv and before[-1].path != ev.path:
                group = before                                    # the next directory of PATH
            elif ev.pid not in pids and awaiting_exec.get(ev.ppid):
                group = awaiting_exec[ev.ppid].pop(0)             # the child of an allowed fork
        if group is None:
            group = []
            groups.append(group)
        group.append(ev)
        pids.add(ev.pid)
        last_on_tid[ev.tid] = group
        if ev.syscall in _EXECS:
            last_exec[ev.pid] = group
        elif ev.syscall in _FORKS and ev.decision == "allow":
            awaiting_exec.setdefault(ev.pid, []).append(group)
    return groups


def _retry_of(prev: pb.SpawnEvent, ev: pb.SpawnEvent) -> bool:
    """ev is libc's or CPython's second try at the fork prev failed to make."""
    if prev.syscall == "clone3" and prev.decision == "enosys":
        return ev.syscall == "clone"
    return prev.syscall == "vfork" and prev.decision != "allow" and ev.syscall in ("clone", "fork")


def _intent_between(offsets: list[float], start: float, end: float) -> bool:
    i = bisect.bisect_right(offsets, start)
    return i < len(offsets) and offsets[i] <= end


def attempt_lines(result: pb.TestResult) -> list[str]:
    """One line per distinct attempted command, in order: 'Attempted execve: ls -la'."""
    lines: list[str] = []
    for group in attempts(result):
        line = _attempt_line(group, result.intents)
        if line not in lines:
            lines.append(line)
    return lines


def _attempt_line(group: list[pb.SpawnEvent], intents) -> str:
    first = group[0]
    execs = [e for e in group if e.syscall in _EXECS]
    exe = execs[-1] if execs else None      # along PATH: the last directory tried
    if first.syscall in _LABEL:
        intent = _intent_for(first, intents)
        if intent is None:
            if exe is not None:
                return _exec_line(exe)
            return f"Attempted {_LABEL[first.syscall]} from pid {first.pid} (no command: blocked before any exec)"
        if intent.event == "ctypes.dlsym":
            line = (f"Attempted {_LABEL[first.syscall]} from C code "
                    f"(last function looked up through ctypes: {intent.argv[0] if intent.argv else '?'})")
        else:
            line = f"Attempted {intent.event}"
            if intent.argv:
                line += f": {_shown(shlex.join(intent.argv))}"
        if exe is not None and exe.path and exe.path != (intent.argv[0] if intent.argv else ""):
            line += f"   [{exe.path}]"            # the program the kernel was asked to run
        if intent.site:
            line += f"   (at {intent.site})"
        return line
    if exe is not None:
        return _exec_line(exe)
    if first.syscall == "connect":
        return f"Attempted to have the isod daemon run tests for it: {first.path}"
    return f"Attempted {first.syscall}"


def _exec_line(ev: pb.SpawnEvent) -> str:
    line = f"Attempted {ev.syscall}: {_exec_command(ev)}"
    if ev.argv and ev.path and ev.path != ev.argv[0]:
        line += f"   [{ev.path}]"
    return line


SHOWN_CHARS = 400


def _exec_command(ev: pb.SpawnEvent) -> str:
    return _shown(shlex.join(ev.argv) if ev.argv else ev.path)


def _shown(cmd: str) -> str:
    """A command line as TC003 prints it: a 1 MB argv is cut."""
    return cmd if len(cmd) <= SHOWN_CHARS else f"{cmd[:SHOWN_CHARS]}... ({len(cmd)} characters)"


def where(result: pb.TestResult) -> str:
    """How many commands, how many denied, and where the first one was.
    Commands, not syscalls: one denied Popen is one command (vfork + fork)."""
    vs = violations(result)
    if not vs:
        return ""
    first = vs[0]
    groups = attempts(result)
    denied = sum(1 for g in groups if any(e.decision == "deny" for e in g))
    counted = f"{len(groups)} command{'s' if len(groups) != 1 else ''} attempted"
    more = f" and {result.events_dropped} more trapped calls not kept" if result.events_dropped else ""
    return (f"  ({counted}{more}, {denied} denied in the kernel; first in {first.phase or 'test'} "
            f"at +{first.offset_s * 1000:.1f} ms, pid {first.pid}, parent {first.ppid})")


def message(result: pb.TestResult) -> str:
    body = [RULE, "[TC003] Subprocess Spawn Violation", RULE, f"Test: {result.nodeid}", "Category: SMALL", "",
            "What happened:"]
    body += [f"  {line}" for line in attempt_lines(result)]
    detail = where(result)
    if detail:
        body.append(detail)
    body += ["", "Why it matters:"]
    body += textwrap.wrap(WHY, 72, initial_indent="  ", subsequent_indent="  ")
    body += ["", "To fix this (choose one):"]
    body += [f"  • {fix}" for fix in FIXES]
    body += ["", "Enforced in the kernel by isod (seccomp); see `isod trace --size small -- CMD`.", RULE]
    return "\n".join(body)


def first_phase(result: pb.TestResult) -> str:
    vs = violations(result)
    return (vs[0].phase or "call") if vs else "call"


class TC003Repr(TerminalRepr):
    """The TC003 block as a failure representation: printed whole in the
    failure section, and summarized by its first attempt in `-r` lines."""

    def __init__(self, text: str, headline: str, location: tuple) -> None:
        self.text = text
        self.reprcrash = ReprFileLocation(str(location[0]), (location[1] or 0) + 1, headline)

    def toterminal(self, tw) -> None:
        for line in self.text.splitlines():
            tw.line(line, red=line.startswith("[TC003]"), bold=line.startswith("[TC003]"))

    def __str__(self) -> str:
        return self.text


def longrepr(result: pb.TestResult, location: tuple, previous: str | None = None) -> TC003Repr:
    text = message(result)
    if previous:
        text = f"{text}\n\n{previous}"
    lines = attempt_lines(result)
    headline = f"[TC003] {lines[0]}" + (f" (+{len(lines) - 1} more)" if len(lines) > 1 else "")
    return TC003Repr(text, headline, location)


def outside_lines(outside: list[pb.OutsideTests]) -> list[str]:
    """Process creations while no test ran, after collection: between tests
    and after a worker's last test (session-finish hooks, atexit, finalizers).
    Collection-time spawns (a conftest running git) are only in the report file.
    Repeats (an exec retried along PATH) are shown once, with a count."""
    counts: dict[str, int] = {}
    for o in outside:
        for ev in o.events:
            if ev.phase == "collection" or ev.violation != pb.SpawnEvent.PROCESS:
                continue
            what = (f"{ev.syscall}: {_exec_command(ev)}" if ev.syscall in ("execve", "execveat")
                    else f"{ev.syscall} by pid {ev.pid}")
            when = f"after its last test ({o.last_test})" if ev.phase == "after the last test" else ev.phase
            line = f"worker {o.worker} {when}: {what} [{ev.decision}]"
            counts[line] = counts.get(line, 0) + 1
    return [line if n == 1 else f"{line} (x{n})" for line, n in counts.items()]

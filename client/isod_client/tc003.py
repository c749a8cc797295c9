"""Verdicts from the daemon's record, and the TC003 block that reports them.

The verdict never depends on an exception reaching pytest (os.system returns
32512 when denied; a test may swallow PermissionError): a small test fails if
the kernel recorded any process-creation attempt while it ran. The command
shown is the exec's own argv, or for a denied fork/vfork/clone (which has no
command yet) the Python-level intent recorded just before it on that thread.
"""

from __future__ import annotations

import shlex
import textwrap

from _pytest._code.code import ReprFileLocation, TerminalRepr
from isod.policy import is_violation
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
    return [e for e in result.events if is_violation(e.syscall)]


CTYPES_WINDOW_S = 1.0   # a ctypes lookup names the spawn only if it came shortly before


def _intent_for(ev: pb.SpawnEvent, intents) -> pb.Intent | None:
    best = None
    for it in intents:
        if it.tid == ev.tid and it.offset_s <= ev.offset_s:   # the audit hook runs before the syscall
            best = it
    if best is not None and best.event == "ctypes.dlsym" and ev.offset_s - best.offset_s > CTYPES_WINDOW_S:
        return None
    return best


def attempt_lines(result: pb.TestResult) -> list[str]:
    """One line per distinct attempt, in order: 'Attempted execve: ls -la'."""
    lines: list[str] = []
    seen: set[str] = set()
    for ev in violations(result):
        if ev.syscall in ("execve", "execveat"):
            cmd = _exec_command(ev)
            line = f"Attempted {ev.syscall}: {cmd}"
            if ev.argv and ev.path and ev.path != ev.argv[0]:
                line += f"   [{ev.path}]"
        elif ev.syscall in _LABEL:
            intent = _intent_for(ev, result.intents)
            if intent is not None:
                if intent.event == "ctypes.dlsym":
                    line = (f"Attempted {_LABEL[ev.syscall]} from C code "
                            f"(last function looked up through ctypes: {intent.argv[0] if intent.argv else '?'})")
                else:
                    line = f"Attempted {intent.event}"
                    if intent.argv:
                        line += f": {_shown(shlex.join(intent.argv))}"
                if intent.site:
                    line += f"   (at {intent.site})"
            else:
                line = f"Attempted {_LABEL[ev.syscall]} from pid {ev.pid} (no command: blocked before any exec)"
        elif ev.syscall == "connect":
            line = f"Attempted to have the isod daemon run tests for it: {ev.path}"
        else:
            line = f"Attempted {ev.syscall}"
        if line not in seen:
            seen.add(line)
            lines.append(line)
    return lines


SHOWN_CHARS = 400


def _exec_command(ev: pb.SpawnEvent) -> str:
    return _shown(shlex.join(ev.argv) if ev.argv else ev.path)


def _shown(cmd: str) -> str:
    """A command line as TC003 prints it: a 1 MB argv is cut."""
    return cmd if len(cmd) <= SHOWN_CHARS else f"{cmd[:SHOWN_CHARS]}... ({len(cmd)} characters)"


def where(result: pb.TestResult) -> str:
    vs = violations(result)
    if not vs:
        return ""
    first = vs[0]
    denied = sum(1 for e in vs if e.decision == "deny")
    more = f" and {result.events_dropped} more not kept" if result.events_dropped else ""
    return (f"  ({len(vs)} trapped call(s){more}, {denied} denied in the kernel; first in {first.phase or 'test'} "
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
            if ev.phase == "collection" or not is_violation(ev.syscall):
                continue
            what = (f"{ev.syscall}: {_exec_command(ev)}" if ev.syscall in ("execve", "execveat")
                    else f"{ev.syscall} by pid {ev.pid}")
            when = f"after its last test ({o.last_test})" if ev.phase == "after the last test" else ev.phase
            line = f"worker {o.worker} {when}: {what} [{ev.decision}]"
            counts[line] = counts.get(line, 0) + 1
    return [line if n == 1 else f"{line} (x{n})" for line, n in counts.items()]

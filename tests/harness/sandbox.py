"""Running commands in a real sandbox and collecting what it recorded."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

from isod.contract import Size
from isod.policy import IDLE, RULES, Rule
from isod.sandbox import Event

SMALL = RULES[Size.SMALL]
MEDIUM = RULES[Size.MEDIUM]


@dataclass
class Run:
    rc: int
    out: str
    err: str
    events: list[Event]

    def of(self, *syscalls: str) -> list[Event]:
        return [e for e in self.events if e.syscall in syscalls]

    def denied(self) -> list[Event]:
        return [e for e in self.events if e.decision == "deny"]


def run_in(backend, argv: list[str], rule: Rule = IDLE, timeout: float = 30, **kw) -> Run:
    """Run argv in a sandbox until every process of it is gone; collect events."""
    box = backend.spawn(argv, rule=rule, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    try:
        out, err = box.popen.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        box.kill()
        raise
    assert box.released.wait(timeout), "sandboxed tree still alive after its root exited"
    return Run(box.popen.returncode, out.decode(errors="replace"), err.decode(errors="replace"), box.take_events())


def run_py(backend, code: str, rule: Rule = IDLE, **kw) -> Run:
    """Run Python code (this interpreter, -c) in a sandbox with the given rule."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    return run_in(backend, [sys.executable, "-c", code], rule, env=env, **kw)

"""Which phase a worker's test is in, without a message per phase.

The daemon times the call phase by the size's limit and setup/teardown by a
limit of their own, so it must know when the call ended. A channel message
per phase costs more than a trivial test; instead the daemon shares one
memfd page with each worker (inherited fd, ``ISOD_PHASE_FD``), the worker
writes (phase, CLOCK_MONOTONIC ns, call outcome) at each phase start, and
the daemon reads it when a deadline comes or the worker dies. It also holds
the outcomes of setup and call once known: a test's reports travel in one
message when it ends, so a test killed in call or teardown has lost them,
and the page says how the phases before went. A test can write the page
too: it could only move its own deadline (docs/threat-model.md N2).
"""

from __future__ import annotations

import mmap
import os
import struct

ENV_FD = "ISOD_PHASE_FD"
IDLE, SETUP, CALL, TEARDOWN = 0, 1, 2, 3
NAMES = {SETUP: "setup", CALL: "call", TEARDOWN: "teardown"}
OUTCOMES = {0: "", 1: "passed", 2: "failed", 3: "skipped"}
CODES = {v: k for k, v in OUTCOMES.items()}
_WORD = struct.Struct("=QqQQ")     # phase, t_ns, call outcome, setup outcome
# The worker's own exec (a test that replaced the worker process): its argv,
# written by the audit hook before the exec, since the program may be gone
# before the daemon can read /proc (echo, true).
_EXEC_AT, _EXEC_LEN = 64, struct.Struct("=I")
PAGE = 4096


class PhaseWord:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.map = mmap.mmap(fd, PAGE)

    @classmethod
    def create(cls) -> PhaseWord:
        fd = os.memfd_create("isod-phase", os.MFD_CLOEXEC)
        os.ftruncate(fd, PAGE)
        return cls(fd)

    def write(self, phase: int, t_ns: int, call_outcome: str = "", setup_outcome: str = "") -> None:
        self.map[: _WORD.size] = _WORD.pack(phase, t_ns, CODES.get(call_outcome, 0), CODES.get(setup_outcome, 0))

    def read(self) -> tuple[int, int, str, str]:
        """(phase, its start in monotonic ns, call outcome, setup outcome)"""
        phase, t_ns, call, setup = _WORD.unpack(self.map[: _WORD.size])
        return phase, t_ns, OUTCOMES.get(call, ""), OUTCOMES.get(setup, "")

    def write_exec(self, argv: list[str]) -> None:
        data = b"\0".join(os.fsencode(a) for a in argv)[: PAGE - _EXEC_AT - _EXEC_LEN.size]
        start = _EXEC_AT + _EXEC_LEN.size
        self.map[start:start + len(data)] = data
        self.map[_EXEC_AT:start] = _EXEC_LEN.pack(len(data))

    def read_exec(self) -> list[str]:
        """The argv the worker last said it execs itself with ([] if none)."""
        (n,) = _EXEC_LEN.unpack(self.map[_EXEC_AT:_EXEC_AT + _EXEC_LEN.size])
        start = _EXEC_AT + _EXEC_LEN.size
        raw = self.map[start:start + min(n, PAGE - start)]
        return [os.fsdecode(a) for a in raw.split(b"\0")] if raw else []

    def close(self) -> None:
        self.map.close()
        os.close(self.fd)

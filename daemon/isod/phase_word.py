"""Which phase a worker's test is in, without a message per phase.

The daemon times the call phase by the size's limit and setup/teardown by a
limit of their own, so it must know when the call ended. A channel message
per phase costs more than a trivial test; instead the daemon shares one
memfd page with each worker (inherited fd, ``ISOD_PHASE_FD``), the worker
writes (phase, CLOCK_MONOTONIC ns, call outcome) at each phase start, and
the daemon reads it when a deadline comes. A test can write the page too: it
could only move its own deadline (docs/threat-model.md N2).
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
_WORD = struct.Struct("=QqQ")     # phase, t_ns, call outcome


class PhaseWord:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.map = mmap.mmap(fd, _WORD.size)

    @classmethod
    def create(cls) -> PhaseWord:
        fd = os.memfd_create("isod-phase", os.MFD_CLOEXEC)
        os.ftruncate(fd, _WORD.size)
        return cls(fd)

    def write(self, phase: int, t_ns: int, call_outcome: str = "") -> None:
        self.map[: _WORD.size] = _WORD.pack(phase, t_ns, CODES.get(call_outcome, 0))

    def read(self) -> tuple[int, int, str]:
        phase, t_ns, outcome = _WORD.unpack(self.map[: _WORD.size])
        return phase, t_ns, OUTCOMES.get(outcome, "")

    def close(self) -> None:
        self.map.close()
        os.close(self.fd)

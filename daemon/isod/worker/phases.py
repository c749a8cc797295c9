"""The worker side of the phase word (isod/phase_word.py): each phase's start,
so that the daemon times the call by the size's limit and fixtures apart."""

from __future__ import annotations

import os
import time

import pytest

from isod.phase_word import CALL, ENV_FD, IDLE, SETUP, TEARDOWN, PhaseWord


class PhaseReporter:
    def __init__(self, word: PhaseWord) -> None:
        self.word = word
        self.call_outcome = ""
        self.setup_outcome = ""

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item) -> None:
        self.call_outcome = self.setup_outcome = ""
        self.word.write(SETUP, time.monotonic_ns())

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_call(self, item) -> None:
        self.word.write(CALL, time.monotonic_ns(), "", self.setup_outcome)

    def pytest_runtest_logreport(self, report) -> None:
        if report.when == "call":
            self.call_outcome = report.outcome
        elif report.when == "setup":
            self.setup_outcome = report.outcome

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_teardown(self, item, nextitem) -> None:
        self.word.write(TEARDOWN, time.monotonic_ns(), self.call_outcome, self.setup_outcome)

    def pytest_runtest_logfinish(self, nodeid, location) -> None:
        self.word.write(IDLE, time.monotonic_ns())


def register(config: pytest.Config) -> PhaseWord | None:
    fd = os.environ.get(ENV_FD)
    if fd is None:
        return None
    word = PhaseWord(int(fd))
    os.set_inheritable(word.fd, False)     # a test's child must not inherit it
    config.pluginmanager.register(PhaseReporter(word), "isod-phases")
    return word

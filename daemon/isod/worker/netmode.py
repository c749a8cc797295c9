"""The worker side of the network rule (isod/sandbox/netguard.py): before
each test's setup the worker writes the mode of the test's size into the word
its cgroup's socket hooks read. The daemon learns of a test's start only
later (its ``started`` message is read after setup has begun), so a word the
daemon wrote would judge the first instants of a test by the rule of the one
before: a large test's first connect could be denied by a medium test's rule.

The size is the client's: the same markers and ``isod_default_size`` the
client read (isod_client.sizes), in the same configuration.
"""

from __future__ import annotations

import pytest

from isod.sandbox.netguard import WorkerWord


class NetMode:
    def __init__(self, word: WorkerWord, default: str) -> None:
        self.word = word
        self.default = default

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item, nextitem) -> None:
        self.word.set_size(self._size(item))

    def _size(self, item) -> str | None:
        try:
            from isod_client.sizes import size_mark
        except ImportError:
            return self.default
        try:
            mark = size_mark(item)
        except Exception:   # noqa: BLE001 (two sizes at one level: the client refused the run already)
            return self.default
        return mark.name if mark is not None else self.default


def register(config: pytest.Config) -> None:
    word = WorkerWord.from_env()
    if word is None:
        return
    try:
        default = config.getoption("isod_default_size", None) or config.getini("isod_default_size") or "small"
    except (ValueError, KeyError):
        default = "small"
    config.pluginmanager.register(NetMode(word, str(default).strip().lower()), "isod-netmode")

"""Warm zygotes: a collected zygote kept by `isod serve` for the next run.

A developer runs the same suite again and again; its zygote has already
started Python, imported pytest and collected. When a session ends cleanly
its zygote is parked here under its key (worker_start.zygote_key: the
interpreter, directory, arguments and environment); a session with the same
key takes it, if every file its collection depended on is unchanged (their
mtimes), and forks its workers at once. At most ``size`` are kept, each for
at most ``idle_s``; an embedded daemon (one run) keeps none.
"""

from __future__ import annotations

import threading
import time

from .zygote_handle import ZygoteHandle

IDLE_S = 600.0


class ZygotePool:
    def __init__(self, size: int, idle_s: float = IDLE_S) -> None:
        self.size = size
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._parked: list[tuple[float, ZygoteHandle]] = []     # oldest first

    def take(self, key: str) -> ZygoteHandle | None:
        """A warm zygote for this key whose collection still holds, or None."""
        stale, found = [], None
        with self._lock:
            now = time.monotonic()
            keep = []
            for parked_at, z in self._parked:
                if now - parked_at > self.idle_s or z.exited:
                    stale.append(z)
                elif found is None and z.key == key:
                    found = z
                else:
                    keep.append((parked_at, z))
            self._parked = keep
        for z in stale:
            z.kill()
        if found is not None and found.collected and not found.unchanged():
            found.kill()        # a file it collected changed: collect again
            return None
        return found

    def give(self, z: ZygoteHandle) -> bool:
        """Keep it for a later session (False: not kept, the caller kills it)."""
        if self.size <= 0 or not z.usable or z.collection is None or z.collection.cache_selects:
            return False        # --lf, --sw and the like choose from a cache the client writes
        z.on_output = lambda data, is_err: None
        z.on_log = lambda msg: None
        z.on_refused = lambda why: None
        z.on_exit = self._forget
        with self._lock:
            self._parked.append((time.monotonic(), z))
            evicted = self._parked[:-self.size] if len(self._parked) > self.size else []
            self._parked = self._parked[len(evicted):]
        for _, old in evicted:
            old.kill()
        return True

    def prestart(self, z: ZygoteHandle) -> None:
        """A zygote started ahead of its session (an embedded daemon's): kept
        whatever the pool's size, until that session takes it."""
        z.on_exit = self._forget
        with self._lock:
            self._parked.append((time.monotonic(), z))

    def _forget(self, z: ZygoteHandle) -> None:
        with self._lock:
            self._parked = [(t, p) for t, p in self._parked if p is not z]

    def __len__(self) -> int:
        with self._lock:
            return len(self._parked)

    def close(self) -> None:
        with self._lock:
            parked, self._parked = self._parked, []
        for _, z in parked:
            z.kill()

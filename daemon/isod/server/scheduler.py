"""Which worker runs which test: pure bookkeeping, no processes (unit-tested).

A worker runs the tests of one class (``contract.worker_class``): its kernel
filter is fixed at launch. The session asks this scheduler what to start,
what to send to whom and whom to finish; it does the I/O.

Two modes, as pytest-xdist's ``load`` and its one-worker case:

- **parallel** (two or more workers): one queue per class, in collection
  order. Worker slots are shared out by the number of tests of each class
  (each class with tests gets at least one while slots allow); a worker keeps
  at least two items (the running one and its ``nextitem``) and up to
  MAX_IN_FLIGHT while its queue is long; a worker whose queue is empty is
  finished, and a slot it frees goes to a class with enough tests left.
- **ordered** (one worker): collection order across classes. Each run of
  consecutive same-class tests goes to that class's worker; that worker also
  gets, *held*, the next test of its class further on, so that pytest tears
  down what the held test does not need (its real ``nextitem``) and keeps the
  rest (module and session fixtures) while the other class runs. One worker
  per class present lives; one runs at a time.

Workers are seen through a small view (``WorkerView``): name, class, the
items sent and not finished, the held item, and whether it is ready.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from ..contract import CLASSES, SMALL_CLASS

MAX_IN_FLIGHT = 32
MIN_TESTS_FOR_ANOTHER_WORKER = 8   # a worker costs a fork and an exit: not for a few trivial tests


class WorkerView(Protocol):
    name: str
    cls: str
    assigned: deque          # items sent and not finished, the running one first
    held: object | None      # ordered mode: the item sent with hold=True
    ready: bool              # collected, not finished, not dead
    retiring: bool           # told to finish early (ran nothing): serves no class, holds no slot


@dataclass
class Dispatch:
    """What to send one worker now, in this order."""

    release: bool = False                       # its held item may start
    items: list = field(default_factory=list)   # to run (pipelined)
    hold: object | None = None                  # sent with hold=True after them
    finish: bool = False                        # nothing more will come

    def __bool__(self) -> bool:
        return self.release or bool(self.items) or self.hold is not None or self.finish


class Scheduler:
    def __init__(self, nworkers: int, min_tests_each: int = MIN_TESTS_FOR_ANOTHER_WORKER) -> None:
        """``min_tests_each``: tests per worker before a class gets another
        one (1 when the client asked for its number of workers, as -n does)."""
        self.min_tests_each = min_tests_each
        self.ordered = nworkers <= 1
        # ordered mode keeps one worker per class (only one runs): ids gw0, gw1
        self.slots = len(CLASSES) if self.ordered else nworkers
        self.queues: dict[str, deque] = {c: deque() for c in CLASSES}
        self.order: deque = deque()       # ordered: (class, item) not yet sent (a held one included)
        self.active: str | None = None    # ordered: the worker running the current run
        self.outstanding = 0              # ordered: items of the current run not finished
        self.loaded = False
        self.stopped = False

    # --- what the session asks ------------------------------------------
    def load(self, items: list[tuple[str, object]]) -> None:
        """The client's tests, in collection order, each with its class."""
        self.loaded = True
        for cls, item in items:
            if self.ordered:
                self.order.append((cls, item))
            else:
                self.queues[cls].append(item)

    def stop(self) -> None:
        """-x / maxfail / an error: nothing more is sent."""
        self.stopped = True
        self.order.clear()
        for q in self.queues.values():
            q.clear()

    def remove(self, cls: str | None, nodeids: set[str]) -> list:
        """Take out the pending tests of a class (of every class: None) with
        these node ids (a worker of that class did not collect them, or the
        zygote did not); returns them."""
        if self.ordered:
            out = [i for c, i in self.order if cls in (None, c) and i.nodeid in nodeids]
            self.order = deque((c, i) for c, i in self.order if not (cls in (None, c) and i.nodeid in nodeids))
            return out
        out = []
        for c, q in self.queues.items():
            if cls in (None, c):
                taken = [i for i in q if i.nodeid in nodeids]
                if taken:
                    self.queues[c] = deque(i for i in q if i.nodeid not in nodeids)
                    out += taken
        return out

    def pending(self, cls: str | None = None) -> int:
        """Tests not yet sent (of one class, or of all)."""
        if self.ordered:
            return sum(1 for c, _ in self.order if cls is None or c == cls)
        if cls is None:
            return sum(len(q) for q in self.queues.values())
        return len(self.queues[cls])

    def classes_to_start(self, workers: list[WorkerView], hint: list[str],
                         expected: dict[str, int] | None = None) -> list[str]:
        """Classes of the workers to start now, one entry per worker, within
        the free slots. Before the tests are sent, the tests per class of the
        session's collection (``expected``), else the client's hint."""
        # a retiring worker ran nothing and only finishes: its slot is free already
        serving = [w for w in workers if not w.retiring]
        free = self.slots - len(serving)
        if free <= 0:
            return []
        have = _count(w.cls for w in serving)
        if not self.loaded and expected is None:
            want = [c for c in dict.fromkeys(hint or [SMALL_CLASS]) if c in CLASSES]
            if self.ordered:
                return [c for c in want if not have.get(c)][:free]
            return _share(free, {c: 1 for c in want}, have, self.slots)
        counts = {c: self.pending(c) for c in CLASSES} if self.loaded else {c: expected.get(c, 0) for c in CLASSES}
        if self.ordered:
            return [c for c in CLASSES if counts[c] and not have.get(c)][:free]
        # a class with tests and no worker first, then big queues (a worker
        # for a handful of tests costs more than it saves)
        out = [c for c in CLASSES if counts[c] and not have.get(c)][:free]
        for c in CLASSES:
            have[c] = have.get(c, 0) + out.count(c)
        while len(out) < free:
            c = max(CLASSES, key=lambda k: counts[k] / (have.get(k, 0) + 1))
            if counts[c] / (have.get(c, 0) + 1) < self.min_tests_each:
                break
            out.append(c)
            have[c] = have.get(c, 0) + 1
        return out

    def to_retire(self, workers: list[WorkerView]) -> list[WorkerView]:
        """Ready workers with nothing to do now that the tests are known
        (started on a wrong hint), or whose slot a class without a worker
        needs more."""
        if not self.loaded:
            return []
        out = []
        for w in workers:
            if w.ready and not w.assigned and self.pending(w.cls) == 0:
                out.append(w)
        if self.ordered or len([w for w in workers if not w.retiring]) - len(out) < self.slots:
            return out
        have = _count(w.cls for w in workers if w not in out and not w.retiring)
        starved = [c for c in CLASSES if self.pending(c) and not have.get(c)]
        for _ in starved:
            # the idlest worker of the class with the most workers
            rich = max(have, key=lambda k: have[k])
            if have[rich] <= 1:
                break
            idle = [w for w in workers if w.cls == rich and w.ready and not w.assigned and w not in out]
            if not idle:
                break
            out.append(idle[0])
            have[rich] -= 1
        return out

    def dispatch(self, w: WorkerView, workers: list[WorkerView]) -> Dispatch:
        """What worker w gets now (it is ready, or just finished a test)."""
        if not w.ready:
            return Dispatch()
        if self.stopped:
            return Dispatch(finish=True)
        if self.ordered:
            return self._dispatch_ordered(w)
        q = self.queues[w.cls]
        ready = sum(1 for x in workers if x.cls == w.cls and x.ready) or 1
        # Keep enough in flight that the worker never waits for us (a round
        # trip per test idles it), but leave the tail of the queue to share.
        depth = max(2, min(MAX_IN_FLIGHT, len(q) // (2 * ready)))
        d = Dispatch()
        while len(w.assigned) + len(d.items) < depth and q:
            d.items.append(q.popleft())
        d.finish = not q
        return d

    def finished(self, w: WorkerView) -> None:
        """A test of w ended (result in)."""
        if self.ordered and w.name == self.active and self.outstanding:
            self.outstanding -= 1

    def lost(self, w: WorkerView, unstarted: list) -> None:
        """w died: put back what it was sent and never started."""
        if self.stopped:
            return
        held = w.held
        back = [i for i in unstarted if i is not held]
        if self.ordered:
            self.order.extendleft((w.cls, i) for i in reversed(back))
            if w.name == self.active:
                self.active, self.outstanding = None, 0
        else:
            self.queues[w.cls].extendleft(reversed(back))

    # --- ordered mode -----------------------------------------------------
    def _dispatch_ordered(self, w: WorkerView) -> Dispatch:
        running = w.name == self.active and self.outstanding
        if not running and w.held is None and not any(c == w.cls for c, _ in self.order):
            return Dispatch(finish=True)           # its class has nothing left
        if self.outstanding or not self.order:     # a run is going on
            return Dispatch()
        cls = self.order[0][0]
        if cls != w.cls:
            return Dispatch()                      # not its turn
        d = Dispatch()
        while self.order and self.order[0][0] == cls:
            item = self.order.popleft()[1]
            if item is w.held:
                d.release = True          # the session's send_release clears w.held
            else:
                d.items.append(item)
        self.active = w.name
        self.outstanding = len(d.items) + (1 if d.release else 0)
        d.hold = next((i for c, i in self.order if c == cls), None)
        d.finish = d.hold is None
        return d


def _count(classes) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in classes:
        out[c] = out.get(c, 0) + 1
    return out


def _share(free: int, weights: dict[str, int], have: dict[str, int], slots: int) -> list[str]:
    """``free`` slots shared by weight; each weighted class gets one first."""
    classes = [c for c in CLASSES if weights.get(c)]
    if not classes:
        return []
    out = [c for c in classes if not have.get(c)][:free]
    total = sum(weights[c] for c in classes)
    have = {c: have.get(c, 0) + out.count(c) for c in classes}
    while len(out) < free:
        c = max(classes, key=lambda k: weights[k] * slots / total - have[k])
        out.append(c)
        have[c] += 1
    return out

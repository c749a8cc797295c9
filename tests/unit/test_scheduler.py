"""The scheduler without processes: which worker runs which test."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import pytest
from isod.contract import MEDIUM_CLASS, SMALL_CLASS
from isod.server.scheduler import Scheduler

pytestmark = pytest.mark.small

S, P = SMALL_CLASS, MEDIUM_CLASS


@dataclass(eq=False)
class W:
    name: str
    cls: str
    assigned: deque = field(default_factory=deque)
    held: object | None = None
    ready: bool = True
    retiring: bool = False

    def take(self, d) -> None:
        """What the session does with a Dispatch."""
        self.assigned.extend(d.items)
        if d.hold is not None:
            self.assigned.append(d.hold)
            self.held = d.hold

    def run_one(self, sched: Scheduler) -> object:
        item = self.assigned.popleft()
        sched.finished(self)
        return item


def test_before_the_tests_are_known_the_hint_decides():
    sched = Scheduler(2)
    assert sched.classes_to_start([], [S]) == [S, S]
    assert sorted(sched.classes_to_start([], [S, P])) == sorted([S, P])
    assert sched.classes_to_start([], []) == [S, S]          # no hint: small


def test_the_collection_decides_before_the_tests_are_sent():
    sched = Scheduler(2)
    assert sched.classes_to_start([], [S], expected={S: 1}) == [S]          # one test: one worker
    assert sched.classes_to_start([], [S], expected={P: 40}) == [P, P]      # not the hint's class
    assert sorted(sched.classes_to_start([], [], expected={S: 3, P: 3})) == [P, S]


def test_workers_asked_for_by_number_each_take_a_test():
    """--isod-workers=N is -n N: no minimum of tests per worker."""
    assert Scheduler(2, min_tests_each=1).classes_to_start([], [], expected={S: 5}) == [S, S]
    assert Scheduler(2).classes_to_start([], [], expected={S: 5}) == [S]


def test_slots_are_shared_by_the_number_of_tests_of_each_class():
    sched = Scheduler(4)
    sched.load([(S, i) for i in range(30)] + [(P, i) for i in range(10)])
    assert sorted(sched.classes_to_start([], [])) == sorted([S, S, S, P])


def test_a_session_of_small_tests_starts_no_spawning_worker():
    sched = Scheduler(2)
    sched.load([(S, i) for i in range(5)])
    assert sched.classes_to_start([], [S]) == [S]         # a second worker for 5 tests costs more than it saves
    sched = Scheduler(2)
    sched.load([(S, i) for i in range(50)])
    assert sched.classes_to_start([], [S]) == [S, S]


def test_a_worker_started_on_a_wrong_guess_is_retired_for_a_class_without_one():
    sched = Scheduler(2)
    a, b = W("gw0", S), W("gw1", S)
    sched.load([(S, 1), (P, 2)])
    retired = sched.to_retire([a, b])
    assert len(retired) == 1
    retired[0].retiring = True
    # it ran nothing and only finishes: its slot goes to the class without a worker at once
    assert sched.classes_to_start([a, b], []) == [P]


def test_a_worker_only_gets_tests_of_its_class_and_finishes_when_they_run_out():
    sched = Scheduler(2)
    sched.load([(S, "s1"), (P, "p1"), (S, "s2"), (P, "p2")])
    small, spawning = W("gw0", S), W("gw1", P)
    d = sched.dispatch(small, [small, spawning])
    assert d.items == ["s1", "s2"] and d.finish
    d = sched.dispatch(spawning, [small, spawning])
    assert d.items == ["p1", "p2"] and d.finish


def test_a_crashed_workers_unstarted_tests_go_back_to_the_front():
    sched = Scheduler(2)
    sched.load([(S, i) for i in range(100)])
    w = W("gw0", S)
    w.take(sched.dispatch(w, [w]))
    w.run_one(sched)
    unstarted = list(w.assigned)
    sched.lost(w, unstarted)
    other = W("gw1", S)
    assert sched.dispatch(other, [other]).items[: len(unstarted)] == unstarted


def test_ordered_mode_keeps_collection_order_across_classes_and_holds_the_next_test():
    """One worker: runs of same-class tests take turns; each worker gets its
    class's next test held, so its fixtures stay up while the other runs."""
    sched = Scheduler(1)
    order = [(S, "s1"), (S, "s2"), (P, "p1"), (S, "s3"), (P, "p2")]
    sched.load(order)
    assert sched.classes_to_start([], []) == [S, P]
    small, spawning = W("gw0", S), W("gw1", P)
    workers = [small, spawning]
    ran = []

    def step():
        for w in workers:
            d = sched.dispatch(w, workers)
            if d.release:
                w.held = None
            w.take(d)
        active = [w for w in workers if w.assigned and w.assigned[0] is not w.held]
        assert len(active) <= 1, "two workers run at once"
        for w in active:
            ran.append(w.run_one(sched))

    # the spawning worker waits while the small run goes on
    assert not sched.dispatch(spawning, workers)
    for _ in range(10):
        step()
    assert ran == ["s1", "s2", "p1", "s3", "p2"]


def test_a_stop_sends_nothing_more():
    sched = Scheduler(2)
    sched.load([(S, i) for i in range(10)])
    sched.stop()
    w = W("gw0", S)
    d = sched.dispatch(w, [w])
    assert d.items == [] and d.finish and sched.pending() == 0

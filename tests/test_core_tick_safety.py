"""A dispatcher tick is safe against every inbox state (issue 9, first defect).

Pure logic against ``zenmon._core.Core``. A garbage collection can run Python code
(``gc.callbacks``, finalisers) at any allocation inside a tick, and that code may
exit or demonitor anything: it stands in for another thread switching in. Whatever
it does, the tick must not raise, and no DOWN of a *surviving* monitor may be lost
or duplicated: one watcher's exit must never cost another watcher its DOWNs.
"""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

import zenmon
from zenmon._core import Core

BUDGET = 65536


def make_core() -> Core:
    return Core(zenmon.Down, zenmon.DownBatch)


def spawn(core: Core, bulk: bool = False) -> tuple[int, deque]:
    inbox: deque = deque()
    pid_id = core.process_new(inbox, owner=inbox)
    if bulk:
        core.set_bulk(pid_id, True)
    return pid_id, inbox


def refs_in(inbox: deque) -> list[int]:
    out = []
    for message in inbox:
        if type(message) is zenmon.DownBatch:
            out.extend(d.ref for d in message.downs)
        else:
            out.append(message.ref)
    return out


@contextmanager
def on_every_collection(action: Callable[[], None]) -> Iterator[None]:
    """Run `action` at every cyclic-GC collection, collecting on every allocation."""
    def callback(phase: str, info: dict) -> None:
        if phase == "start":
            action()

    old = gc.get_threshold()
    gc.callbacks.append(callback)
    gc.set_threshold(1, 1, 1)
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.callbacks.remove(callback)


@pytest.mark.parametrize("backlog", [0, 4096])
def test_a_bulk_watcher_exiting_mid_tick_costs_no_other_watcher_its_downs(backlog):
    core = make_core()
    watchers = [spawn(core, bulk=True) for _ in range(8)]
    owed: dict[int, list[int]] = {w: [] for w, _ in watchers}
    targets = [spawn(core)[0] for _ in range(200)]
    for t in targets:
        for w, _ in watchers:
            owed[w].append(core.monitor(w, 0, t, False))
    for t in targets:
        core.process_exit(t, (t, "storm", None), "storm")

    doomed = [w for w, _ in watchers[::2]]       # every other watcher dies mid-tick

    def exit_one() -> None:
        if doomed:
            w = doomed.pop()
            core.process_exit(w, (w, "gone", None), "gone")

    with on_every_collection(exit_one):
        core.dispatch(BUDGET, backlog)           # must not raise
    while core.pending():
        core.dispatch(BUDGET, backlog)
    dead = {w for w, _ in watchers[::2]}
    for w, inbox in watchers:
        if w in dead:
            continue
        assert sorted(refs_in(inbox)) == sorted(owed[w])
    assert core.sizes()["references"] == 0


@pytest.mark.parametrize("bulk", [False, True])
def test_demonitor_during_a_tick_is_never_followed_by_its_down(bulk):
    core = make_core()
    watcher, inbox = spawn(core, bulk=bulk)
    targets = [spawn(core)[0] for _ in range(300)]
    refs = [core.monitor(watcher, 0, t, False) for t in targets]
    for t in targets:
        core.process_exit(t, (t, "storm", None), "storm")
    removed: list[int] = []        # demonitor returned True: no DOWN may follow
    missed: list[int] = []         # returned False: its DOWN was already delivered

    def demonitor_the_rest() -> None:
        # once some DOWNs are out, cancel every ref at once: the one being handed
        # over right now (if any) is among them
        if len(inbox) >= 3 and not removed and not missed:
            for ref in refs:
                (removed if core.demonitor(watcher, ref) else missed).append(ref)

    with on_every_collection(demonitor_the_rest):
        while core.pending():
            core.dispatch(7, 0)
    delivered = refs_in(inbox)
    assert len(delivered) == len(set(delivered))
    assert removed, "the collection hook never ran: the test shows nothing"
    assert not set(removed) & set(delivered)
    assert set(missed) <= set(delivered)
    assert set(delivered) | set(removed) == set(refs)
    assert core.sizes()["references"] == 0


def test_an_inbox_gone_mid_tick_is_counted_and_dropped_not_raised():
    """A process slot that lost its inbox between look and append: no exception."""
    core = make_core()
    a, inbox_a = spawn(core)
    b, inbox_b = spawn(core)
    targets = [spawn(core)[0] for _ in range(50)]
    refs_b = []
    for t in targets:
        core.monitor(a, 0, t, False)
        refs_b.append(core.monitor(b, 0, t, False))
    for t in targets:
        core.process_exit(t, (t, "x", None), "x")
    done = []

    def exit_a() -> None:
        if not done:
            done.append(1)
            core.process_exit(a, (a, "gone", None), "gone")

    with on_every_collection(exit_a):
        while core.pending():
            core.dispatch(BUDGET, 0)
    assert sorted(refs_in(inbox_b)) == sorted(refs_b)

"""Adaptive pacing in the core: DOWNs for a full inbox are parked, not re-scanned.

Pure logic against ``zenmon._core.Core`` (no node, no threads): a dispatch call
with ``max_backlog`` must cost what it delivers, keep each inbox's DOWNs in order,
never block one watcher behind another's full inbox, and free parked entries when
their watcher dies or demonitors.
"""

from __future__ import annotations

from collections import deque

import pytest

import zenmon
from zenmon._core import Core

BUDGET = 65536
LOOK_LIMIT = 8192          # PARK_LOOK_LIMIT in _core.pxd


def make_core() -> Core:
    return Core(zenmon.Down, zenmon.DownBatch)


def spawn(core: Core) -> tuple[int, deque]:
    inbox: deque = deque()
    pid_id = core.process_new(inbox, owner=inbox)
    return pid_id, inbox


def storm(core: Core, watcher: int, n: int, reason: str = "storm") -> list[int]:
    """n local targets each monitored once by `watcher`, killed in order. -> refs."""
    targets = [spawn(core)[0] for _ in range(n)]
    refs = [core.monitor(watcher, 0, t, False) for t in targets]
    for t in targets:
        assert core.process_exit(t, (t, reason, None), reason) == 1
    return refs


def drain(core: Core, inbox: deque, backlog: int) -> list[int]:
    """Read `inbox` empty, dispatching with `backlog` until nothing is pending."""
    got = []
    while core.pending() or inbox:
        core.dispatch(BUDGET, backlog)
        while inbox:
            got.append(inbox.popleft().ref)
    return got


def test_full_inbox_parks_and_keeps_order() -> None:
    core = make_core()
    watcher, inbox = spawn(core)
    refs = storm(core, watcher, 1000)
    core.dispatch(BUDGET, 16)
    assert [d.ref for d in inbox] == refs[:16]
    assert len(core.downs) == 0                 # the rest moved to the parked queue
    assert core.pending() == 1000 - 16
    assert core.sizes()["downs_queued"] == 1000 - 16
    assert core.dispatch(BUDGET, 16) == []      # still full: nothing, and no rescan
    got = [inbox.popleft().ref for _ in range(16)]
    got += drain(core, inbox, 16)
    assert got == refs                          # each once, in death order
    assert core.pending() == 0
    assert core.sizes()["references"] == 0


def test_one_full_inbox_does_not_hold_back_another() -> None:
    core = make_core()
    slow, slow_inbox = spawn(core)
    fast, fast_inbox = spawn(core)
    slow_refs = storm(core, slow, 5000)
    fast_refs = storm(core, fast, 10)           # queued behind all of slow's
    core.dispatch(BUDGET, 8)
    assert len(slow_inbox) == 8
    assert [d.ref for d in fast_inbox] == fast_refs[:8]
    fast_inbox.clear()
    core.dispatch(BUDGET, 8)
    assert [d.ref for d in fast_inbox] == fast_refs[8:]
    assert len(slow_inbox) == 8                 # nobody read it: still capped
    got = [slow_inbox.popleft().ref for _ in range(8)] + drain(core, slow_inbox, 8)
    assert got == slow_refs


def test_one_call_looks_at_a_bounded_part_of_the_shared_queue() -> None:
    core = make_core()
    watcher, inbox = spawn(core)
    n = 3 * LOOK_LIMIT
    storm(core, watcher, n)
    core.dispatch(BUDGET, 4)
    assert len(inbox) == 4
    assert len(core.downs) == n - LOOK_LIMIT    # the rest is looked at by later calls
    assert core.pending() == n - 4
    while len(core.downs):
        core.dispatch(BUDGET, 4)
    assert len(inbox) == 4 and core.pending() == n - 4


def test_watcher_death_frees_its_parked_downs() -> None:
    core = make_core()
    watcher, inbox = spawn(core)
    other, other_inbox = spawn(core)
    storm(core, watcher, 500)
    other_refs = storm(core, other, 3)
    core.dispatch(BUDGET, 4)
    assert core.pending() == 500 - 4
    before = core.counters()["delivered"]
    core.process_exit(watcher, (watcher, "gone", None), "gone")
    assert core.pending() == 0
    assert core.counters()["delivered"] == before + 496     # accounted as dropped
    # its slot is reused by a new process, which must not inherit anything
    newcomer, new_inbox = spawn(core)
    assert newcomer & 0xFFFFFFFF == watcher & 0xFFFFFFFF
    assert core.dispatch(BUDGET, 4) == []
    assert not new_inbox
    assert [d.ref for d in other_inbox] == other_refs
    assert core.sizes() == {
        "references": 0, "targets": 0, "processes": 2, "subscribers": 0,
        "downs_queued": 0, "connector_queued": 0, "connectors_open": 0, "batcher_queued": 0,
    }


def test_demonitor_of_a_parked_down_drops_it() -> None:
    core = make_core()
    watcher, inbox = spawn(core)
    refs = storm(core, watcher, 20)
    core.dispatch(BUDGET, 4)
    for ref in refs[4:10]:
        core.demonitor(watcher, ref)
    assert drain(core, inbox, 4)[4:] == refs[10:]
    assert core.pending() == 0
    assert core.sizes()["references"] == 0


@pytest.mark.parametrize("backlog_after", [0, 4])
def test_parked_downs_survive_a_mode_change(backlog_after: int) -> None:
    """Parked entries are served first by the token bucket or unlimited mode too."""
    core = make_core()
    watcher, inbox = spawn(core)
    refs = storm(core, watcher, 100)
    core.dispatch(BUDGET, 4)
    inbox.clear()
    late = storm(core, watcher, 5)             # in the shared queue, after the parked
    core.dispatch(10, backlog_after)            # a token-bucket budget of 10
    assert [d.ref for d in inbox] == refs[4:4 + min(10, backlog_after or 10)]
    got = [d.ref for d in inbox]
    inbox.clear()
    got += drain(core, inbox, backlog_after)
    assert got == refs[4:] + late


def test_bulk_watcher_holds_one_batch_at_a_time() -> None:
    """Adaptive and bulk: one batch of at most the backlog in the inbox at a time."""
    core = make_core()
    watcher, inbox = spawn(core)
    core.set_bulk(watcher, True)
    refs = storm(core, watcher, 50)
    core.dispatch(BUDGET, 8)
    assert len(inbox) == 1
    assert [d.ref for d in inbox[0].downs] == refs[:8]
    inbox.append(("work", 1))                   # a work message after the batch
    core.dispatch(BUDGET, 8)
    assert len(inbox) == 2                      # the batch is not taken yet: no more
    got = [d.ref for d in inbox.popleft().downs]
    core.dispatch(BUDGET, 8)                    # taken: the next one comes
    assert inbox[0] == ("work", 1) and len(inbox[1].downs) == 8
    inbox.popleft()
    while core.pending() or inbox:
        core.dispatch(BUDGET, 8)
        while inbox:
            batch = inbox.popleft()
            assert isinstance(batch, zenmon.DownBatch) and len(batch.downs) <= 8
            got.extend(d.ref for d in batch.downs)
    assert got == refs
    core.process_exit(watcher, (watcher, "gone", None), "gone")
    assert core.sizes()["processes"] == 0


# ------------------------------------------ a receiver refills its own inbox


def test_refill_moves_parked_downs_in_order_up_to_the_backlog() -> None:
    core = make_core()
    watcher, inbox = spawn(core)
    refs = storm(core, watcher, 100)
    core.dispatch(BUDGET, 16)                   # 16 in the inbox, 84 parked
    got = [inbox.popleft().ref for _ in range(10)]
    assert core.refill(watcher, 16) is True     # topped up to 16: more stay parked
    assert len(inbox) == 16
    while True:
        while inbox:
            got.append(inbox.popleft().ref)
        if not core.refill(watcher, 16):
            break
    got += [d.ref for d in inbox]
    inbox.clear()
    assert got == refs                          # each once, in death order
    assert core.pending() == 0 and core.sizes()["references"] == 0
    core.check_invariants()


def test_refill_skips_demonitored_entries_and_leaves_the_queue_to_the_dispatcher() -> None:
    core = make_core()
    watcher, inbox = spawn(core)
    refs = storm(core, watcher, 40)
    core.dispatch(BUDGET, 8)
    for ref in refs[8:20]:                      # parked, then demonitored
        assert core.demonitor(watcher, ref)
    inbox.clear()
    assert core.refill(watcher, 8) is True
    assert [d.ref for d in inbox] == refs[20:28]
    inbox.clear()
    assert core.refill(watcher, 8) is True
    assert [d.ref for d in inbox] == refs[28:36]
    inbox.clear()
    assert core.refill(watcher, 8) is False     # the last 4: none stay parked
    assert [d.ref for d in inbox] == refs[36:]
    more = storm(core, watcher, 3)              # on the shared queue, not parked
    inbox.clear()
    assert core.refill(watcher, 8) is False and not inbox
    core.dispatch(BUDGET, 8)
    assert [d.ref for d in inbox] == more
    core.check_invariants()


def test_refill_leaves_bulk_watchers_and_the_dead_alone() -> None:
    core = make_core()
    bulk, bulk_inbox = spawn(core)
    core.set_bulk(bulk, True)
    storm(core, bulk, 50)
    core.dispatch(BUDGET, 8)
    assert core.refill(bulk, 8) is False        # its batches are the dispatcher's
    assert len(bulk_inbox) == 1
    watcher, inbox = spawn(core)
    storm(core, watcher, 50)
    core.dispatch(BUDGET, 8)
    core.process_exit(watcher, (watcher, "gone", None), "gone")
    assert core.refill(watcher, 8) is False     # a dead watcher's parked DOWNs dropped
    assert core.refill(12345, 8) is False       # no such process
    core.check_invariants()

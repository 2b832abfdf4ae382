"""The core's table invariants hold through random churn (``Core.check_invariants``).

Pure logic against ``zenmon._core.Core``: processes come and go, monitor each
other, demonitor, go bulk, get flushed and dispatched to, in a seeded random
order; after every step the tables must agree with their lists and free lists.
In a ZENMON_DEBUG=1 build the same checks also run inside every dispatch tick.
"""

from __future__ import annotations

import os
import random
from collections import deque

import pytest

import zenmon
import zenmon._core as core_module
from zenmon._core import Core


@pytest.mark.parametrize("seed", range(6))
def test_random_churn_keeps_every_table_invariant(seed):
    rng = random.Random(seed)
    core = Core(zenmon.Down, zenmon.DownBatch)
    inboxes: dict[int, deque] = {}
    refs: dict[int, list[int]] = {}
    for _step in range(3000):
        op = rng.random()
        live = list(inboxes)
        if op < 0.2 or len(live) < 4:
            inbox: deque = deque()
            pid_id = core.process_new(inbox, owner=inbox)
            inboxes[pid_id] = inbox
            refs[pid_id] = []
            if rng.random() < 0.3:
                core.set_bulk(pid_id, True)
        elif op < 0.55:
            watcher, target = rng.choice(live), rng.choice(live)
            ref = core.monitor(watcher, 0, target, False)
            if ref > 1:
                refs[watcher].append(ref)
        elif op < 0.65:
            watcher = rng.choice(live)
            if refs[watcher]:
                core.demonitor(watcher, refs[watcher].pop(rng.randrange(len(refs[watcher]))))
        elif op < 0.8:
            victim = rng.choice(live)
            core.process_exit(victim, (victim, "churn", None), "churn")
            del inboxes[victim], refs[victim]
        elif op < 0.9:
            core.dispatch(rng.choice([1, 7, 100, 65536]), rng.choice([0, 0, 4, 64]))
        else:
            watcher = rng.choice(live)
            if refs[watcher]:
                core.flush(inboxes[watcher], rng.choice(refs[watcher]))
            inboxes[watcher].clear()
        core.check_invariants()
    for pid_id in list(inboxes):
        core.process_exit(pid_id, (pid_id, "end", None), "end")
    while core.pending():
        core.dispatch(65536, 0)
    core.check_invariants()
    sizes = core.sizes()
    assert sizes["references"] == sizes["targets"] == sizes["processes"] == 0
    assert sizes["downs_queued"] == 0


def test_the_debug_build_is_what_ci_asked_for():
    """ci/debug-build.sh sets ZENMON_EXPECT_DEBUG=1: then this must be that build."""
    expected = os.environ.get("ZENMON_EXPECT_DEBUG")
    if expected is None:
        assert core_module.DEBUG_BUILD in (True, False)
    else:
        assert core_module.DEBUG_BUILD is (expected == "1")

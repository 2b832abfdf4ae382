"""The dispatcher: DOWNs leave the queue at a steady, bounded rate.

Rates are checked from arrival times on the receiving side. Each check is
paired with a way it would fail: the window check is shown to trip on an
unthrottled stream, and the "demonitored entries don't eat the budget" check
uses intervals long enough that eating the budget would take several times
the allowed time.
"""

from __future__ import annotations

import time

import pytest

import zenmon
from helpers import (
    max_in_window,
    metric,
    metrics_of,
    receive_all,
    receive_timed,
    receive_until_sentinel,
    wait_dispatcher_idle,
    wait_for,
    wait_for_metrics,
)

DELIVERED = "zenmon.local.dispatcher.events.delivered"
PROCESSED = "zenmon.local.dispatcher.events.processed"
QUEUE_LEN = "zenmon.local.dispatcher.queue_len"


def test_max_in_window():
    assert max_in_window([], 1.0) == 0
    assert max_in_window([0.0], 1.0) == 1
    assert max_in_window([0.0, 0.5, 0.99, 1.0, 1.5], 1.0) == 3
    assert max_in_window([0.0, 1.0, 2.0], 1.0) == 1
    assert max_in_window([0.0] * 10 + [5.0], 0.05) == 10


def kill_many_watched_once(node, count, reason="gone"):
    """``count`` targets, each watched once by one watcher, all killed: (watcher, refs)."""
    watcher = node.process()
    targets = [node.process() for _ in range(count)]
    refs = [watcher.monitor(t.pid) for t in targets]
    for target in targets:
        target.exit(reason)
    return watcher, refs


@pytest.mark.timeout(60)
def test_token_bucket_never_exceeds_maximum_rate(node):
    demand_amount, demand_interval = 100, 50
    node.configure(demand_amount=demand_amount, demand_interval=demand_interval)
    assert node.maximum_mps == 2000
    watcher, refs = kill_many_watched_once(node, 1000)
    downs, arrivals = receive_timed(watcher, 1000, timeout=30)
    assert sorted(d.ref for d in downs) == sorted(refs), "a DOWN was lost or duplicated"
    window = demand_interval / 1000
    busiest = max_in_window(arrivals, window)
    assert busiest <= 2 * demand_amount, (
        f"{busiest} DOWNs arrived within {demand_interval} ms (budget {demand_amount})"
    )
    span = arrivals[-1] - arrivals[0]
    minimum = (1000 / demand_amount - 2) * window
    assert span >= minimum, (
        f"1000 DOWNs in {span:.3f}s, throttle allows no less than {minimum:.3f}s"
    )


@pytest.mark.timeout(60)
def test_window_check_trips_on_unthrottled_delivery(node):
    """The check above can fail: without throttling the same stream is caught."""
    node.configure(dispatch_mode="unlimited")
    watcher, target = node.process(), node.process()
    refs = [watcher.monitor(target.pid) for _ in range(5000)]
    target.exit("gone")
    downs, arrivals = receive_timed(watcher, 5000, timeout=30)
    assert sorted(d.ref for d in downs) == sorted(refs)
    assert max_in_window(arrivals, 0.05) > 2 * 100


@pytest.mark.timeout(60)
def test_rate_is_node_wide_across_watchers(node):
    demand_amount, demand_interval = 50, 50
    node.configure(demand_amount=demand_amount, demand_interval=demand_interval)
    target = node.process()
    watchers = [node.process() for _ in range(4)]
    for watcher in watchers:
        for _ in range(200):
            watcher.monitor(target.pid)
    start = time.monotonic()
    target.exit("gone")
    for watcher in watchers:
        receive_all(watcher, 200, timeout=30)
    elapsed = time.monotonic() - start
    # 800 DOWNs at 50 per 50 ms: at least 14 intervals even with a double first burst.
    minimum = (800 / demand_amount - 2) * demand_interval / 1000
    assert elapsed >= minimum, f"800 DOWNs in {elapsed:.3f}s, at most {node.maximum_mps}/s allowed"


@pytest.mark.timeout(60)
def test_demonitored_entries_do_not_eat_the_budget(node):
    demand_amount, demand_interval = 100, 500
    node.configure(demand_amount=demand_amount, demand_interval=demand_interval)
    watcher, refs = kill_many_watched_once(node, 1000)
    assert metric(node, QUEUE_LEN) > 0, "DOWNs should still be queued at 100 per 500 ms"
    cancelled, live = refs[:900], set(refs[900:])  # live ones at the tail of the queue
    for ref in cancelled:
        assert watcher.demonitor(ref, flush=True) is True
    start = time.monotonic()
    downs = receive_all(watcher, 100, timeout=30)
    elapsed = time.monotonic() - start
    assert {d.ref for d in downs} == live
    # If the 900 cancelled entries used up budget, the live tail would need
    # 8-9 more intervals (4-4.5 s); filtering them costs nothing, so one or two.
    limit = 5 * demand_interval / 1000
    assert elapsed < limit, (
        f"100 live DOWNs took {elapsed:.3f}s behind 900 demonitored ones (limit {limit}s)"
    )
    wait_dispatcher_idle(node)
    assert receive_until_sentinel(watcher) == []


def test_delivered_and_processed_counters(node):
    before = metrics_of(node, [DELIVERED, PROCESSED])
    watcher, target = node.process(), node.process()
    for _ in range(300):
        watcher.monitor(target.pid)
    target.exit("gone")
    receive_all(watcher, 300)
    wait_for_metrics(node, {DELIVERED: before[DELIVERED] + 300, PROCESSED: before[PROCESSED] + 300})


@pytest.mark.timeout(60)
def test_processed_counts_only_downs_handed_to_inboxes(node):
    node.configure(demand_amount=10, demand_interval=500)
    before = metrics_of(node, [DELIVERED, PROCESSED])
    watcher, refs = kill_many_watched_once(node, 200)
    for ref in refs[:150]:
        watcher.demonitor(ref, flush=True)
    node.configure(dispatch_mode="unlimited")
    downs = receive_all(watcher, 50, timeout=20)
    assert {d.ref for d in downs} == set(refs[150:])
    wait_dispatcher_idle(node)
    after = metrics_of(node, [DELIVERED, PROCESSED])
    processed = after[PROCESSED] - before[PROCESSED]
    delivered = after[DELIVERED] - before[DELIVERED]
    # The first bursts may reach the inbox before their demonitor (then flushed).
    assert 50 <= processed <= 50 + 2 * 10 + 10, processed
    assert processed <= delivered <= 200, (processed, delivered)


@pytest.mark.timeout(60)
def test_work_message_interleaves_with_a_down_storm(node):
    node.configure(demand_amount=100, demand_interval=20)
    storm = 2000
    watcher, refs = kill_many_watched_once(node, storm)
    first = watcher.receive(timeout=5)
    assert isinstance(first, zenmon.Down)
    watcher.send("work")
    rest = receive_all(watcher, storm, timeout=30)
    assert rest.count("work") == 1
    position = rest.index("work")
    assert position < storm // 4, f"the work message waited behind {position} of {storm} DOWNs"
    assert {first.ref} | {d.ref for d in rest if d != "work"} == set(refs)


@pytest.mark.timeout(120)
def test_unlimited_mode_delivers_a_large_storm(node):
    node.configure(dispatch_mode="unlimited")
    assert node.config.dispatch_mode == "unlimited"
    base = metric(node, "zenmon.local.references.size")
    watcher, target = node.process(), node.process()
    refs = [watcher.monitor(target.pid) for _ in range(100_000)]
    target.exit("gone")
    downs = receive_all(watcher, 100_000, timeout=60)
    seen = {d.ref for d in downs}
    assert len(seen) == 100_000 and seen == set(refs)
    assert all(d.reason == "gone" and d.pid == target.pid for d in downs)
    wait_for(lambda: metric(node, QUEUE_LEN) == 0)
    wait_for_metrics(node, {"zenmon.local.references.size": base})

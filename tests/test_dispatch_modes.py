"""Adaptive pacing and bulk delivery (DownBatch): exactly once, and bounded backlogs."""

from __future__ import annotations

import threading
import time

import pytest

import zenmon
from helpers import wait_for


def _storm(node, watcher, n):
    """n targets each monitored once by `watcher`, all killed. -> {ref: pid}."""
    targets = [node.process() for _ in range(n)]
    refs = {watcher.monitor(t.pid): t.pid for t in targets}
    for target in targets:
        target.exit("storm")
    return refs


def test_bulk_delivery_groups_downs_exactly_once(node):
    node.configure(demand_amount=500, demand_interval=20)
    watcher = node.process(bulk=True)
    refs = _storm(node, watcher, 2000)
    seen = {}
    messages = 0
    while len(seen) < len(refs):
        message = watcher.receive(timeout=10)
        messages += 1
        assert isinstance(message, zenmon.DownBatch)
        assert len(message.downs) <= 500          # one tick's worth at most
        for down in message.downs:
            assert down.ref not in seen, "a DOWN arrived twice"
            seen[down.ref] = down
    assert set(seen) == set(refs)
    assert all(d.reason == "storm" and d.pid == refs[d.ref] for d in seen.values())
    assert messages < len(refs) / 10               # far fewer inbox messages than DOWNs
    with pytest.raises(TimeoutError):
        watcher.receive(timeout=0.05)


def test_bulk_flush_removes_a_ref_from_a_queued_batch(node):
    node.configure(dispatch_mode="unlimited")
    watcher = node.process(bulk=True)
    refs = list(_storm(node, watcher, 10))
    wait_for(lambda: node.metrics()["zenmon.local.dispatcher.queue_len"] == 0)
    wait_for(lambda: len(watcher._messages) > 0)
    assert watcher.demonitor(refs[0], flush=True)
    got = []
    while len(got) < 9:
        got.extend(d.ref for d in watcher.receive(timeout=5).downs)
    assert sorted(got) == sorted(refs[1:])


def test_adaptive_keeps_each_inbox_backlog_bounded(node):
    backlog = 64
    node.configure(dispatch_mode="adaptive", adaptive_backlog=backlog)
    watcher = node.process()
    n = 3000
    refs = _storm(node, watcher, n)
    # nobody reads: the dispatcher tops the inbox up to `backlog` and no further
    wait_for(lambda: len(watcher._messages) == backlog)
    queued = node.metrics()["zenmon.local.dispatcher.queue_len"]
    assert queued == n - backlog
    deadline = time.monotonic() + 0.1
    while time.monotonic() < deadline:            # still bounded a hundred ticks later
        assert len(watcher._messages) <= backlog
    seen = set()
    while len(seen) < n:
        down = watcher.receive(timeout=10)
        assert down.ref not in seen
        seen.add(down.ref)
    assert seen == set(refs)


def test_adaptive_interleaves_work_with_a_storm(node):
    node.configure(dispatch_mode="adaptive", adaptive_backlog=32)
    watcher = node.process()
    refs = _storm(node, watcher, 5000)
    stop = threading.Event()

    def send_work():
        while not stop.is_set():
            watcher.send(("work", time.monotonic()))
            time.sleep(0.001)   # the work cadence of the scenario, not synchronisation

    sender = threading.Thread(target=send_work)
    sender.start()
    try:
        downs, waits = set(), []
        while len(downs) < len(refs):
            message = watcher.receive(timeout=10)
            if isinstance(message, zenmon.Down):
                assert message.ref not in downs
                downs.add(message.ref)
            else:
                waits.append(time.monotonic() - message[1])
    finally:
        stop.set()
        sender.join()
    assert downs == set(refs)
    assert waits, "work messages interleave with the storm instead of waiting it out"


def test_no_wakeup_is_lost_between_producers_and_blocked_receivers(node):
    """Producers look for waiters without the inbox lock; receivers re-check after
    registering. Hammer that window: every message must be received, none stuck."""
    inbox = node.process()
    n, senders = 20_000, 2
    got, errors = [], []

    def consume():
        try:
            while True:
                message = inbox.receive(timeout=10)   # a lost wake-up: TimeoutError
                if message is None:
                    return
                got.append(message)
        except Exception as exc:   # reported by the assertion below
            errors.append(exc)

    def produce(offset):
        for i in range(n // senders):
            inbox.send(offset + i)

    consumers = [threading.Thread(target=consume) for _ in range(3)]
    producers = [threading.Thread(target=produce, args=(k * n,)) for k in range(senders)]
    for thread in consumers + producers:
        thread.start()
    for thread in producers:
        thread.join()
    wait_for(lambda: len(got) == n, timeout=30)
    for _ in consumers:
        inbox.send(None)
    for thread in consumers:
        thread.join(timeout=10)
    assert sorted(got) == sorted(k * n + i for k in range(senders) for i in range(n // senders))
    assert not errors
    assert not any(thread.is_alive() for thread in consumers)

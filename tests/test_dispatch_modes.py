"""Adaptive pacing and bulk delivery (DownBatch): exactly once, and bounded backlogs."""

from __future__ import annotations

import sys
import threading
import time

import pytest

import zenmon
from helpers import wait_for
from zenmon.dispatcher import Dispatcher


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


def _most_downs_ahead_of_work(node, backlog: int) -> int:
    """A storm of 4,000 DOWNs read with a work message sent every 200 DOWNs.

    -> the most DOWNs found ahead of one work message. The reader, and nobody
    else, sends each work message to itself, after giving the dispatcher time to
    fill the inbox past `backlog` if its mode would, and counts the DOWNs it
    receives before that message: exactly the DOWNs that were ahead of it.
    """
    watcher = node.process()
    refs = _storm(node, watcher, 4000)
    downs, most_ahead = set(), 0
    while len(downs) < len(refs):
        if len(downs) % 200 == 0:
            # time for an unpaced dispatcher to overfill the inbox: a bounded wait
            # that ends early once it has (the condition under test), not a sync
            deadline = time.monotonic() + 0.05
            while len(watcher._messages) <= backlog and time.monotonic() < deadline:
                time.sleep(0.001)
            watcher.send("work")
            ahead = 0
            while (message := watcher.receive(timeout=10)) != "work":
                assert message.ref not in downs
                downs.add(message.ref)
                ahead += 1
            most_ahead = max(most_ahead, ahead)
            continue
        message = watcher.receive(timeout=10)
        assert isinstance(message, zenmon.Down) and message.ref not in downs
        downs.add(message.ref)
    assert downs == set(refs)
    return most_ahead


def test_adaptive_interleaves_work_with_a_storm(node):
    """No more than adaptive_backlog DOWNs are ever ahead of a work message."""
    node.configure(dispatch_mode="adaptive", adaptive_backlog=32)
    assert 0 < _most_downs_ahead_of_work(node, 32) <= 32


def test_the_interleaving_check_fails_without_adaptive_pacing(node):
    """Control for the test above: an unpaced storm does put more than that ahead."""
    node.configure(dispatch_mode="token_bucket", demand_amount=4000, demand_interval=100)
    assert _most_downs_ahead_of_work(node, 32) > 32


def test_an_adaptive_receiver_refills_its_own_inbox(node, monkeypatch):
    """A receiver that has read half its backlog moves the DOWNs parked for it into
    its inbox itself: the I/O thread is asked to tick only when none stay parked
    (it used to be asked once per half backlog, a thread hand-over each time)."""
    backlog, n = 32, 3000
    node.configure(dispatch_mode="adaptive", adaptive_backlog=backlog)
    asked = []
    ask = Dispatcher.refill
    monkeypatch.setattr(Dispatcher, "refill", lambda self: (asked.append(1), ask(self))[1])
    watcher = node.process()
    refs = _storm(node, watcher, n)
    wait_for(lambda: node.metrics()["zenmon.local.dispatcher.queue_len"] == n - backlog
             and len(watcher._messages) == backlog)     # the rest parked
    got = []
    while len(got) < n:
        got.append(watcher.receive(timeout=10).ref)
        assert len(watcher._messages) <= backlog
    assert sorted(got) == sorted(refs) and len(set(got)) == n
    assert len(asked) <= 2, len(asked)          # n / (backlog / 2) = 187 before


def test_no_wakeup_is_lost_between_producers_and_blocked_receivers(node):
    """Producers look for waiters without the inbox lock; receivers re-check after
    registering. Hammer that window with a ping-pong: the receiver waits without a
    timeout, so a lost wake-up leaves it blocked with a message in its inbox and
    the sender's bounded wait for its answer fails."""
    inbox = node.process()
    rounds = 5000
    answered = threading.Event()
    got, errors = [], []
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)

    def consume():
        try:
            for _ in range(rounds):
                got.append(inbox.receive())      # no timeout: nothing masks a lost wake-up
                answered.set()
        except Exception as exc:   # reported by the assertion below
            errors.append(exc)
            answered.set()

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    try:
        for i in range(rounds):
            answered.clear()
            inbox.send(i)
            assert answered.wait(10), f"wake-up lost in round {i}: {len(inbox._messages)} queued"
    finally:
        sys.setswitchinterval(old)
        if consumer.is_alive():
            inbox.exit("test over")     # a blocked receive raises ProcessExited
        consumer.join(10)
    assert got == list(range(rounds))
    assert not errors

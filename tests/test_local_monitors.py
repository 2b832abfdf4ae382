"""Monitors on local targets (watcher and target on the same node): what only one node shows.

The brief's semantics that hold for every kind of target (DOWN per live monitor
with the truncated reason, several monitors all firing, "noproc", names,
demonitor with and without flush, a watcher's exit dropping its monitors) are
written once in ``test_monitor_semantics.py`` and run here and across the wire.
This file keeps what needs the target in reach: counters, refs of other
processes, a queue held back by the dispatcher, mutual monitors, bad arguments,
and churn of a whole node's tables.

"No DOWN" is checked by ordering, not by waiting: DOWNs go through the
dispatcher queue in order, so once a later DOWN (or a sentinel sent after the
dispatcher went idle) has arrived, an earlier one that was due would have too.
"""

from __future__ import annotations

import pytest

import zenmon
from helpers import (
    assert_down,
    metric,
    metrics_of,
    receive_all,
    receive_until_sentinel,
    wait_dispatcher_idle,
    wait_for,
    wait_for_metrics,
)

PROCESSED = "zenmon.local.dispatcher.events.processed"
REFERENCES = "zenmon.local.references.size"


@pytest.fixture(params=["default", "fast"])
def node(request, node):
    """Every behaviour here holds with default settings and with 10 ms ticks and sweeps."""
    if request.param == "fast":
        return request.getfixturevalue("fast_node")
    return node


def wait_processed(node, count, timeout=5.0):
    """Wait until the dispatcher has handed ``count`` DOWNs to inboxes in total."""
    wait_for(
        lambda: metric(node, PROCESSED) >= count,
        timeout=timeout,
        message=lambda: f"{PROCESSED} >= {count}, now {metric(node, PROCESSED)}",
    )


def assert_nothing_more(node, proc):
    """After the dispatcher is idle, ``proc``'s inbox holds nothing else."""
    wait_dispatcher_idle(node)
    leftover = receive_until_sentinel(proc)
    assert leftover == [], f"unexpected messages: {leftover[:5]!r}"


# --------------------------------------------------------------------------- refs


def test_monitor_counter(node):
    watcher, target = node.process(), node.process()
    before = metric(node, "zenmon.local.monitor")
    for _ in range(25):
        watcher.monitor(target.pid)
    assert metric(node, "zenmon.local.monitor") == before + 25
    assert metric(node, REFERENCES) >= 25


# --------------------------------------------------------------------------- noproc


def test_monitor_pid_of_a_newer_incarnation_yields_noproc(node):
    """On its own node a pid of any other incarnation is unknown (an older one is
    held for every kind of target in test_monitor_semantics.py)."""
    watcher, live = node.process(), node.process()
    other = zenmon.Pid(node.address, node.incarnation + 1, live.pid.id)
    ref = watcher.monitor(other)
    assert_down(watcher.receive(timeout=5), ref, other, "noproc")
    assert live.alive


# --------------------------------------------------------------------------- demonitor


def test_demonitor_is_idempotent_and_tolerates_unknown_refs(node):
    watcher, target = node.process(), node.process()
    ref = watcher.monitor(target.pid)
    assert watcher.demonitor(ref) is True
    assert watcher.demonitor(ref) is True
    assert watcher.demonitor(ref, flush=True) is True
    assert watcher.demonitor(10**12) is True
    assert watcher.demonitor(10**12, flush=True) is True


def test_demonitor_of_another_process_ref_does_not_cancel_it(node):
    owner, stranger, target = node.process(), node.process(), node.process()
    ref = owner.monitor(target.pid)
    assert stranger.demonitor(ref) is True
    target.exit("still watched")
    assert_down(owner.receive(timeout=5), ref, target.pid, "still watched")


def test_demonitor_flush_before_delivery_means_no_down(node):
    node.configure(demand_amount=1, demand_interval=1000)
    watcher, blocker, target = node.process(), node.process(), node.process()
    blocker_refs = [watcher.monitor(blocker.pid) for _ in range(3)]
    ref = watcher.monitor(target.pid)
    blocker.exit("first")
    target.exit("queued")
    assert watcher.demonitor(ref, flush=True) is True
    node.configure(dispatch_mode="unlimited")
    downs = receive_all(watcher, 3, timeout=10)
    assert sorted(d.ref for d in downs) == sorted(blocker_refs)
    assert_nothing_more(node, watcher)


# --------------------------------------------------------------------------- watcher exit


def test_target_exit_while_its_watcher_exits_leaks_nothing(node):
    base = metrics_of(node)
    pairs = [(node.process(), node.process()) for _ in range(200)]
    for watcher, target in pairs:
        watcher.monitor(target.pid)
        target.monitor(watcher.pid)  # and the other way round
    for watcher, target in pairs:
        watcher.exit()
        target.exit()
    wait_for_metrics(node, base)


# --------------------------------------------------------------------------- ordering


def test_downs_and_work_messages_keep_arrival_order(node):
    watcher, first, second = node.process(), node.process(), node.process()
    ref_first = watcher.monitor(first.pid)
    ref_second = watcher.monitor(second.pid)
    processed = metric(node, PROCESSED)
    watcher.send("a")
    first.exit("one")
    wait_processed(node, processed + 1)
    node.send(watcher.pid, "b")
    second.exit("two")
    wait_processed(node, processed + 2)
    watcher.send("c")
    messages = receive_all(watcher, 5)
    assert messages[0] == "a"
    assert_down(messages[1], ref_first, first.pid, "one")
    assert messages[2] == "b"
    assert_down(messages[3], ref_second, second.pid, "two")
    assert messages[4] == "c"


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("target", [3.5, None, object(), 42, b"x"])
def test_monitor_wrong_type_raises_type_error(node, target):
    watcher = node.process()
    base = metric(node, REFERENCES)
    with pytest.raises(TypeError):
        watcher.monitor(target)
    assert metric(node, REFERENCES) == base


def test_monitor_from_dead_process_raises(node):
    watcher, target = node.process(), node.process()
    watcher.exit()
    with pytest.raises(zenmon.ProcessExited):
        watcher.monitor(target.pid)
    with pytest.raises(zenmon.ProcessExited):
        watcher.monitor("x")

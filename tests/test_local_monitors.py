"""Monitors on local targets (watcher and target on the same node): what only one node shows.

The brief's semantics that hold for every kind of target (DOWN per live monitor
with the truncated reason, several monitors all firing, "noproc", names,
demonitor with and without flush, a watcher's exit dropping its monitors) are
written once in ``test_monitor_semantics.py`` and run here and across the wire.
This file keeps what needs the target in reach: the monitor counter, a pid
of a newer incarnation of this very node, a DOWN held back in the dispatcher's
queue, mutual monitors, and bad arguments.

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

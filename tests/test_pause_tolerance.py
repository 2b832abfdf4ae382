"""Failure detection that tolerates Python (BRIEF, "The contract grows").

A node whose process and network are alive but whose Python threads are stalled
(here: a C call holding the GIL, ``ctypes.PyDLL(None).usleep``, while libzmq's own
threads keep answering ZMTP heartbeats) is not declared down before
``pause_timeout``; crashes and frozen processes are still detected within
``heartbeat_timeout``.
"""

from __future__ import annotations

import ctypes

import pytest

import zenmon
from helpers import assert_down, receive_all, wait_for
from remote import REMOTE_SETTINGS, wait_subscribed

PAUSE = {**REMOTE_SETTINGS, "pause_timeout": 20_000}      # heartbeat_timeout 500 ms
HOLD = 2.0        # seconds of GIL hold: four heartbeat_timeouts
MARGIN = 3.0


def test_gil_hold_on_the_watched_node_is_not_nodedown(node_factory, remote_node):
    local = node_factory(**PAUSE)
    remote = remote_node(settings=PAUSE)
    watcher = local.process()
    pids = remote.spawn(20)
    refs = {watcher.monitor(pid): pid for pid in pids}
    wait_subscribed(remote, 20)
    remote.hold_gil(HOLD)
    with pytest.raises(TimeoutError):       # nothing fires while it is paused, nor after
        watcher.receive(timeout=HOLD + 1.0)
    assert local.compatibility_for_node(remote.address) == "compatible"
    remote.exit(pids, "after the pause")
    downs = receive_all(watcher, 20, timeout=10)
    assert {d.ref: d.reason for d in downs} == dict.fromkeys(refs, "after the pause")


def test_gil_hold_on_the_watching_node_keeps_its_subscriptions(node_factory, remote_node):
    local = node_factory(**PAUSE)
    remote = remote_node(settings=PAUSE)
    targets = [local.process() for _ in range(10)]
    refs = remote.monitor(0, [t.pid for t in targets])
    wait_for(lambda: local.metrics()["zenmon.proxy.subscribers.size"] == 10, timeout=10)
    remote.hold_gil(HOLD)
    remote.call("ping", timeout=HOLD + 10)         # answered once the hold is over
    for target in targets:
        target.exit("after the watcher's pause")
    wait_for(lambda: remote.downs_count() == 10, timeout=10)
    assert sorted(remote.downs()) == sorted(
        (0, ref, t.pid, "after the watcher's pause") for ref, t in zip(refs, targets))


def test_gil_hold_in_this_process_is_not_nodedown(node_factory, remote_node):
    """This node's own I/O thread stalls: its peers' silence meanwhile is not theirs."""
    local = node_factory(**PAUSE)
    remote = remote_node(settings=PAUSE)
    watcher = local.process()
    pids = remote.spawn(5)
    refs = {watcher.monitor(pid): pid for pid in pids}
    wait_subscribed(remote, 5)
    ctypes.PyDLL(None).usleep(int(HOLD * 1e6))
    with pytest.raises(TimeoutError):
        watcher.receive(timeout=1.0)
    remote.exit(pids, "after our own pause")
    downs = receive_all(watcher, 5, timeout=10)
    assert {d.ref: d.reason for d in downs} == dict.fromkeys(refs, "after our own pause")


def test_pause_longer_than_pause_timeout_is_nodedown(node_factory, remote_node):
    settings = {**REMOTE_SETTINGS, "pause_timeout": 1000}
    local = node_factory(**settings)
    remote = remote_node(settings=settings)
    watcher = local.process()
    pids = remote.spawn(5)
    refs = {watcher.monitor(pid): pid for pid in pids}
    wait_subscribed(remote, 5)
    remote.hold_gil(3.0)
    downs = receive_all(watcher, 5, timeout=1.0 + MARGIN)
    assert {d.ref: d.reason for d in downs} == dict.fromkeys(refs, "nodedown")
    # it answers again afterwards: a new monitor works
    remote.call("ping", timeout=10)
    (fresh,) = remote.spawn(1)
    ref = watcher.monitor(fresh)
    wait_subscribed(remote, 1)
    remote.exit([fresh], "back")
    assert_down(watcher.receive(timeout=10), ref, fresh, "back")


def test_frozen_process_is_still_detected_within_heartbeat_timeout(node_factory,
                                                                   remote_node):
    """SIGSTOP stops libzmq's threads too: the connection dies, so heartbeat_timeout."""
    local = node_factory(**PAUSE)
    remote = remote_node(settings=PAUSE)
    watcher = local.process()
    listener = local.process()
    listener.monitor_nodes(True)
    pids = remote.spawn(5)
    refs = {watcher.monitor(pid): pid for pid in pids}
    wait_subscribed(remote, 5)
    assert listener.receive(timeout=5) == zenmon.NodeUp(remote.address)
    remote.freeze()
    try:
        downs = receive_all(watcher, 5, timeout=PAUSE["heartbeat_timeout"] / 1000 + MARGIN)
        assert {d.ref: d.reason for d in downs} == dict.fromkeys(refs, "nodedown")
        event = listener.receive(timeout=5)
        assert event[:2] == (None, remote.address)
        assert event.reason in ("heartbeat timeout", "connection lost")
    finally:
        remote.thaw()


def test_sigkill_is_detected_by_the_refused_reconnect(node_factory, remote_node):
    local = node_factory(**PAUSE)
    remote = remote_node(settings=PAUSE)
    listener = local.process()
    listener.monitor_nodes(True)
    watcher = local.process()
    pids = remote.spawn(5)
    for pid in pids:
        watcher.monitor(pid)
    wait_subscribed(remote, 5)
    assert listener.receive(timeout=5) == zenmon.NodeUp(remote.address)
    remote.kill()
    assert listener.receive(timeout=PAUSE["heartbeat_timeout"] / 1000 + MARGIN) == \
        zenmon.NodeDown(None, remote.address, "connection lost")
    assert len(receive_all(watcher, 5, timeout=MARGIN)) == 5

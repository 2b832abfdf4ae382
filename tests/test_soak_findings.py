"""Defects the soak (``zenmon soak``) found, each reproduced on its own.

- A monitor by name made after a target node died and came back on the same port,
  before this node had talked to the new incarnation, landed on the old
  incarnation's connector and got a false ``"nodedown"`` when the new incarnation
  answered: monitors by name that never reached a dead incarnation now move to the
  connector of the new one (refs kept).
- Every peer restart left the retired connector's core queues behind (about 760
  bytes per restart on the watching node): a retired connector that holds nothing
  now frees them (``zenmon.local.connectors.open``), and a monitor that races onto
  it after that is sent to the current connector (``CONNECTOR_CLOSED``).
"""

from __future__ import annotations

from collections import deque

import pytest

import zenmon
import zenmon._core as core_module
from helpers import receive_all, wait_for
from remote import REMOTE_SETTINGS, free_port, wait_remote
from zenmon._core import CONNECTOR_CLOSED, NAME_KEY_FLAG, Core


def _restart(remote_node, old):
    """Kill `old` and start a new incarnation on its port."""
    port = old.bound_port
    old.kill()
    new = remote_node(port=port)
    assert new.address == old.address
    return new


def test_name_monitor_after_a_restart_gets_the_process_reason(node_factory, remote_node):
    local = node_factory(**REMOTE_SETTINGS)
    old = remote_node(port=free_port())
    watcher = local.process()
    pid = old.spawn(1)[0]
    watcher.monitor(pid)          # the connector now belongs to the old incarnation
    port = old.bound_port
    old.kill()
    (down,) = receive_all(watcher, 1, timeout=10)
    assert down.reason == "nodedown"
    new = remote_node(port=port)  # back on the same port, a new incarnation
    assert new.address == old.address

    new.spawn(1, name="guild")
    ref = watcher.monitor(("guild", new.address))
    wait_remote(new, "zenmon.proxy.name_subscribers.size", lambda v: v == 1, timeout=10)
    new.exit("all", "killed")
    (down,) = receive_all(watcher, 1, timeout=10)
    assert down.ref == ref
    assert down.reason == "killed", down


def test_stale_pid_and_name_on_one_connector_split_at_the_restart(node_factory,
                                                                  remote_node):
    """A pid of the dead incarnation gets nodedown, the name of the new one its
    process's reason, though both were made on the same (old) connector."""
    local = node_factory(**REMOTE_SETTINGS)
    old = remote_node(port=free_port())
    watcher = local.process()
    stale = old.spawn(1)[0]
    local.connect(old.address)    # the connector has talked to the old incarnation
    new = _restart(remote_node, old)
    new.spawn(1, name="guild")
    ref_pid = watcher.monitor(stale)
    ref_name = watcher.monitor(("guild", new.address))
    wait_remote(new, "zenmon.proxy.name_subscribers.size", lambda v: v == 1, timeout=10)
    new.exit("all", "killed")
    downs = {d.ref: d for d in receive_all(watcher, 2, timeout=10)}
    assert downs[ref_pid].reason in ("nodedown", "noproc")
    assert downs[ref_name].reason == "killed"


@pytest.mark.timeout(120)
def test_restarts_free_the_retired_connectors(node_factory, remote_node):
    local = node_factory(**REMOTE_SETTINGS)
    target = remote_node(port=free_port())
    watcher = local.process()
    for round_no in range(4):
        pids = target.spawn(3)
        target.spawn(1, name=f"guild{round_no}")
        refs = {watcher.monitor(p) for p in pids}
        refs.add(watcher.monitor((f"guild{round_no}", target.address)))
        wait_remote(target, "zenmon.proxy.subscribers.size", lambda v: v == 4, timeout=10)
        target = _restart(remote_node, target)
        downs = receive_all(watcher, 4, timeout=10)
        assert {d.ref for d in downs} == refs
        assert {d.reason for d in downs} == {"nodedown"}
    # every retired connector closes once it holds nothing; the current one stays
    wait_for(lambda: local.metrics()["zenmon.local.connectors.open"] <= 1, timeout=10)
    metrics = local.metrics()
    assert metrics["zenmon.local.connectors.size"] <= 1
    assert metrics["zenmon.local.targets.size"] == 0
    assert metrics["zenmon.local.connector.queue_len"] == 0
    # and monitoring the new incarnation still works
    pid = target.spawn(1)[0]
    ref = watcher.monitor(pid)
    wait_remote(target, "zenmon.proxy.subscribers.size", lambda v: v == 1, timeout=10)
    target.exit([pid], "bye")
    (down,) = receive_all(watcher, 1, timeout=10)
    assert (down.ref, down.reason) == (ref, "bye")


# ------------------------------------------------------------ the core's side


def _core_with_watcher():
    core = Core(zenmon.Down, zenmon.DownBatch)
    inbox: deque = deque()
    return core, inbox, core.process_new(inbox, owner=inbox)


def test_a_connector_closes_only_when_it_holds_nothing():
    core, _inbox, watcher = _core_with_watcher()
    conn = core.connector_new()
    ref = core.monitor(watcher, conn, 42, False)
    assert not core.connector_close(conn)            # a target
    core.demonitor(watcher, ref)
    assert not core.connector_close(conn)            # its unsubscribe is queued
    assert core.connector_take(conn, 100)
    assert core.sizes()["connectors_open"] == 1
    assert core.connector_close(conn)
    assert core.connector_close(conn)                # idempotent
    assert core.sizes()["connectors_open"] == 0
    assert core.monitor(watcher, conn, 43, False) == CONNECTOR_CLOSED
    assert core.connector_take(conn, 100) == b""
    assert core.connector_pending(conn) == 0
    assert core.fire_connector(conn, "tcp://x:1", 1, {}, "nodedown") == (0, -1)
    core.check_invariants()


def test_moved_name_monitors_keep_their_refs_and_merge():
    core, inbox, watcher = _core_with_watcher()
    old, new = core.connector_new(), core.connector_new()
    a, b = NAME_KEY_FLAG | 1, NAME_KEY_FLAG | 2
    ref_a1 = core.monitor(watcher, old, a, True)
    ref_a2 = core.monitor(watcher, old, a, True)
    ref_b = core.monitor(watcher, old, b, True)
    ref_pid = core.monitor(watcher, old, 7, False)
    ref_there = core.monitor(watcher, new, NAME_KEY_FLAG | 9, True)
    core.connector_take(old, 100)
    core.connector_take(new, 100)
    # name a becomes key 9 on `new` (already watched there), name b key 10
    assert core.connector_move_names(old, new, {a: NAME_KEY_FLAG | 9,
                                                b: NAME_KEY_FLAG | 10}) == 2
    core.check_invariants()
    assert core.connector_targets(old) == 1          # only the pid stays
    assert core.connector_targets(new) == 2
    queued = memoryview(core.connector_take(new, 100)).cast("Q").tolist()
    assert queued == [NAME_KEY_FLAG | 10]            # a merged: no second subscribe
    assert core.demonitor(watcher, ref_a2)
    names = {NAME_KEY_FLAG | 9: ("a", "tcp://x:1"), NAME_KEY_FLAG | 10: ("b", "tcp://x:1")}
    fired, _ = core.fire_connector(new, "tcp://x:1", 1, names, "nodedown")
    assert fired == 3
    core.dispatch(100)
    got = {down.ref: down.pid for down in inbox}
    assert got == {ref_a1: ("a", "tcp://x:1"), ref_there: ("a", "tcp://x:1"),
                   ref_b: ("b", "tcp://x:1")}
    core.fire_connector(old, "tcp://x:1", 1, {}, "nodedown")
    core.dispatch(100)
    assert ref_pid in {down.ref for down in inbox}
    core.check_invariants()


def test_subscribe_runs_no_code_that_lets_another_thread_in(monkeypatch):
    """The soak's segfault: the first subscribe of a node seeded its hash with
    os.urandom, which releases the GIL; a thread exiting the subscribed process in
    that window left the subscription linked to a freed slot (the free list then
    handed out a subscription index as a process slot, and a later exit walked
    garbage). Seeding happens when the core is made, never inside an operation."""
    core, _inbox, pid = _core_with_watcher()
    core.batcher_new()
    calls = []

    class ExitingOs:            # what another thread could do while the GIL was free
        @staticmethod
        def urandom(n):
            calls.append(n)
            core.process_exit(pid, (pid, "killed", None), "killed")
            return bytes(n)

    monkeypatch.setattr(core_module, "os", ExitingOs)
    core.subscribe(0, 5, pid)
    assert calls == []
    core.check_invariants()
    core.process_exit(pid, (pid, "killed", None), "killed")
    core.check_invariants()

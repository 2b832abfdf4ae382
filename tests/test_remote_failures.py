"""Remote monitors through node failures: crash, stop, restart, freeze, dead watchers.

Every target node is a real OS process (``tests/nodeproc.py``) that the test kills,
stops or freezes by its own pid. What must hold (brief, semantics 5, 7 and 10):
every monitor yields exactly one DOWN (``"nodedown"`` when its node is lost,
the real reason when the node comes back in time), a restarted node is a new
incarnation, and a node whose watching peer went away drops its subscriptions.
"""

from __future__ import annotations

import time

import pytest

import zenmon
from helpers import (
    TABLE_GAUGES,
    assert_down,
    metric,
    metrics_of,
    receive_all,
    receive_until_sentinel,
    wait_dispatcher_idle,
    wait_for,
    wait_for_metrics,
)
from remote import (
    BULK_SETTINGS,
    REMOTE_SETTINGS,
    assert_nothing_more_remote,
    free_port,
    wait_subscribed,
)

SUBSCRIBERS = "zenmon.proxy.subscribers.size"
MARGIN = 3.0   # seconds on top of heartbeat_timeout for detection plus delivery





def assert_nothing_more(node, *watchers):
    """With the peer gone nothing else can arrive: idle dispatcher, then empty inboxes."""
    wait_dispatcher_idle(node)
    for watcher in watchers:
        leftover = receive_until_sentinel(watcher)
        assert leftover == [], f"unexpected messages: {leftover[:5]!r}"


def watch_many(local, remote, watchers=3, targets=200, name="named"):
    """Several watchers each monitoring every target (plus one by name). -> refs, pids."""
    pids = remote.spawn(targets)
    remote.spawn(1, name=name)
    procs = [local.process() for _ in range(watchers)]
    refs = {}
    for proc in procs:
        for pid in pids:
            refs[proc.monitor(pid)] = (proc, pid)
        refs[proc.monitor((name, remote.address))] = (proc, (name, remote.address))
    wait_subscribed(remote, targets + 1)
    return procs, refs


def collect_downs(procs, refs, timeout):
    """Receive one DOWN per ref (each from its own watcher) -> {ref: Down}."""
    downs = {}
    per_proc: dict[int, int] = {}
    for proc, _ in refs.values():
        per_proc[id(proc)] = per_proc.get(id(proc), 0) + 1
    for proc in procs:
        for down in receive_all(proc, per_proc.get(id(proc), 0), timeout=timeout):
            assert down.ref not in downs, f"second DOWN for ref {down.ref}: {down!r}"
            assert refs[down.ref][0] is proc
            downs[down.ref] = down
    assert set(downs) == set(refs)
    return downs


# --------------------------------------------------------------------------- node death


def test_node_sigkill_fires_nodedown_for_every_monitor(local, remote):
    base = metrics_of(local, TABLE_GAUGES)
    procs, refs = watch_many(local, remote)
    killed = time.monotonic()
    remote.kill()
    timeout = REMOTE_SETTINGS["heartbeat_timeout"] / 1000 + MARGIN
    downs = collect_downs(procs, refs, timeout=timeout + 5)
    elapsed = time.monotonic() - killed
    assert elapsed < timeout, f"nodedown took {elapsed:.2f}s"
    for ref, down in downs.items():
        assert_down(down, ref, refs[ref][1], "nodedown")
    assert local.compatibility_for_node(remote.address) == "incompatible"
    assert_nothing_more(local, *procs)
    for proc in procs:
        proc.exit()
    wait_for_metrics(local, base)


def test_monitor_after_sigkill_yields_nodedown(local, remote):
    watcher = local.process()
    (target,) = remote.spawn(1)
    first = watcher.monitor(target)
    wait_subscribed(remote, 1)
    remote.kill()
    assert_down(watcher.receive(timeout=10), first, target, "nodedown")
    started = time.monotonic()
    again = watcher.monitor(target)
    by_name = watcher.monitor(("anything", remote.address))
    assert time.monotonic() - started < 0.2, "monitor waited on the network"
    downs = {d.ref: d for d in receive_all(watcher, 2, timeout=10)}
    assert_down(downs[again], again, target, "nodedown")
    assert_down(downs[by_name], by_name, ("anything", remote.address), "nodedown")


def test_node_stop_fires_nodedown_for_every_monitor(local, remote):
    procs, refs = watch_many(local, remote, watchers=2, targets=50)
    remote.stop()
    downs = collect_downs(procs, refs,
                          timeout=REMOTE_SETTINGS["heartbeat_timeout"] / 1000 + MARGIN)
    for ref, down in downs.items():
        assert_down(down, ref, refs[ref][1], "nodedown")
    assert_nothing_more(local, *procs)


def test_one_node_dying_leaves_monitors_on_another_node_alone(local, remote_node):
    dying, surviving = remote_node(), remote_node()
    watcher = local.process()
    dying_pids, surviving_pids = dying.spawn(20), surviving.spawn(20)
    dying_refs = {watcher.monitor(p) for p in dying_pids}
    surviving_refs = {watcher.monitor(p): p for p in surviving_pids}
    wait_subscribed(dying, 20)
    wait_subscribed(surviving, 20)
    dying.kill()
    downs = receive_all(watcher, 20, timeout=10)
    assert {d.ref for d in downs} == dying_refs
    assert all(d.reason == "nodedown" for d in downs)
    assert local.compatibility_for_node(surviving.address) == "compatible"
    surviving.exit(surviving_pids, "still here")
    downs = receive_all(watcher, 20, timeout=10)
    assert {d.ref for d in downs} == set(surviving_refs)
    assert all(d.reason == "still here" for d in downs)
    assert_nothing_more_remote(local, surviving, watcher)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_100k_remote_monitors_fire_exactly_once_on_node_death(node_factory, remote_node):
    local = node_factory(**BULK_SETTINGS)
    remote = remote_node(settings=BULK_SETTINGS)
    started = time.monotonic()
    pids = remote.spawn(100_000)
    procs = [local.process() for _ in range(10)]
    refs = {}
    for i, pid in enumerate(pids):
        proc = procs[i % 10]
        refs[proc.monitor(pid)] = (proc, pid)
    assert len(refs) == 100_000
    wait_subscribed(remote, 100_000, timeout=30)
    remote.kill()
    downs = collect_downs(procs, refs, timeout=30)
    assert all(d.reason == "nodedown" and d.pid == refs[r][1] for r, d in downs.items())
    assert_nothing_more(local, *procs)
    assert time.monotonic() - started < 30, "100k remote monitors took too long"
    for proc in procs:
        proc.exit()
    wait_for_metrics(local, {"zenmon.local.references.size": 0,
                             "zenmon.local.targets.size": 0})


# --------------------------------------------------------------------------- restart


@pytest.mark.parametrize("heartbeat_timeout", [500, 5000], ids=["fast-hb", "slow-hb"])
def test_node_restart_on_the_same_port(node_factory, remote_node, heartbeat_timeout):
    """Old-incarnation monitors fire nodedown (not waiting for the heartbeat timeout)."""
    settings = {**REMOTE_SETTINGS, "heartbeat_timeout": heartbeat_timeout}
    local = node_factory(**settings)
    port = free_port()
    old = remote_node(port=port, settings=settings)
    watcher = local.process()
    old_pids = old.spawn(50)
    old_refs = {watcher.monitor(p): p for p in old_pids}
    wait_subscribed(old, 50)

    old.kill()
    restarted = time.monotonic()
    new = remote_node(port=port, settings=settings)
    assert new.address == old.address
    assert new.incarnation > old.incarnation
    new_pids = new.spawn(10)
    # traffic to the new incarnation reveals the restart
    new_refs = {watcher.monitor(p): p for p in new_pids}
    downs = receive_all(watcher, 50, timeout=heartbeat_timeout / 1000 + MARGIN)
    elapsed = time.monotonic() - restarted
    assert {d.ref for d in downs} == set(old_refs)
    for down in downs:
        assert_down(down, down.ref, old_refs[down.ref], "nodedown")
    if heartbeat_timeout >= 5000:
        assert elapsed < heartbeat_timeout / 1000, f"restart noticed after {elapsed:.2f}s"

    wait_subscribed(new, 10)
    new.exit(new_pids, "new incarnation exit")
    downs = receive_all(watcher, 10, timeout=10)
    assert {d.ref for d in downs} == set(new_refs)
    assert all(d.reason == "new incarnation exit" for d in downs)

    # an old-incarnation pid, monitored once the restart is known
    stale = watcher.monitor(old_pids[0])
    down = watcher.receive(timeout=10)
    assert down.ref == stale and down.pid == old_pids[0]
    assert down.reason in ("noproc", "nodedown"), down
    assert local.compatibility_for_node(new.address) == "compatible"
    assert_nothing_more_remote(local, new, watcher)


def test_pids_of_a_restarted_node_take_the_monitor_fast_path(node_factory, remote_node):
    """The connector made for a new incarnation (seen from one of its pids) is routed:
    further monitors of its pids are placed by ``Core.monitor_pid`` in one C call, as
    before the restart (it used to send each of them through the Python slow path)."""
    local = node_factory(**REMOTE_SETTINGS)
    port = free_port()
    old = remote_node(port=port)
    watcher = local.process()
    (old_pid,) = old.spawn(1)
    old_ref = watcher.monitor(old_pid)
    old.kill()
    new = remote_node(port=port)
    new_pids = new.spawn(2)
    first = watcher.monitor(new_pids[0])     # the restart, seen from a pid
    placed = local._core.monitor_pid(watcher.pid.id, new_pids[1])
    assert placed, "the new incarnation's connector is not routed"
    wait_subscribed(new, 2)
    new.exit(new_pids, "gone")
    downs = {d.ref: d for d in receive_all(watcher, 3, timeout=10)}
    assert set(downs) == {old_ref, first, placed}
    assert downs[old_ref].reason == "nodedown"
    assert downs[first].reason == downs[placed].reason == "gone"


def test_restart_noticed_by_heartbeats_alone(node_factory, remote_node):
    """No new monitors after the restart: the old ones still fire nodedown."""
    local = node_factory(**REMOTE_SETTINGS)
    port = free_port()
    old = remote_node(port=port)
    watcher = local.process()
    pids = old.spawn(20)
    refs = {watcher.monitor(p) for p in pids}
    wait_subscribed(old, 20)
    old.kill()
    new = remote_node(port=port)
    downs = receive_all(watcher, 20,
                        timeout=REMOTE_SETTINGS["heartbeat_timeout"] / 1000 + MARGIN)
    assert {d.ref for d in downs} == refs
    assert all(d.reason == "nodedown" for d in downs)
    # and the new incarnation is served
    (fresh,) = new.spawn(1)
    ref = watcher.monitor(fresh)
    wait_subscribed(new, 1)
    new.exit([fresh], "fresh")
    assert_down(watcher.receive(timeout=10), ref, fresh, "fresh")
    # the old incarnation's proxy table is gone with it; the new one holds nothing stale
    wait_subscribed(new, 0)


# --------------------------------------------------------------------------- freeze


def test_long_freeze_fires_each_monitor_once_and_the_link_recovers(local, remote):
    watcher = local.process()
    pids = remote.spawn(100)
    refs = {watcher.monitor(p): p for p in pids}
    wait_subscribed(remote, 100)
    remote.freeze()
    try:
        downs = receive_all(watcher, 100,
                            timeout=REMOTE_SETTINGS["heartbeat_timeout"] / 1000 + MARGIN)
    finally:
        remote.thaw()
    assert {d.ref for d in downs} == set(refs)
    for down in downs:
        assert_down(down, down.ref, refs[down.ref], "nodedown")
    # the thawed node drops the silent session's subscriptions...
    wait_subscribed(remote, 0)
    # ...its processes die later: no second DOWN for the fired refs
    remote.exit(pids, "after thaw")
    # the link recovers: new monitors on the same (still live) node work
    (fresh,) = remote.spawn(1)
    ref = watcher.monitor(fresh)
    wait_subscribed(remote, 1)
    remote.exit([fresh], "recovered")
    assert_down(watcher.receive(timeout=10), ref, fresh, "recovered")
    assert local.compatibility_for_node(remote.address) == "compatible"
    assert_nothing_more_remote(local, remote, watcher)


def test_monitor_on_a_frozen_node_returns_at_once(node_factory, remote_node):
    settings = {**REMOTE_SETTINGS, "connect_timeout": 2000}
    local = node_factory(**settings)
    remote = remote_node(settings=settings)
    pids = remote.spawn(100)
    watcher = local.process()
    remote.freeze()
    try:
        started = time.monotonic()
        refs = [watcher.monitor(p) for p in pids]
        elapsed = time.monotonic() - started
        assert elapsed < 0.5, f"100 monitors on a frozen node took {elapsed:.2f}s"
        downs = receive_all(watcher, 100, timeout=2 + MARGIN)
    finally:
        remote.thaw()
    assert {d.ref for d in downs} == set(refs)
    assert all(d.reason == "nodedown" for d in downs)


def test_short_freeze_loses_nothing(node_factory, remote_node):
    settings = {**REMOTE_SETTINGS, "heartbeat_timeout": 3000, "connect_timeout": 3000}
    local = node_factory(**settings)
    remote = remote_node(settings=settings)
    watcher = local.process()
    pids = remote.spawn(100)
    before = {watcher.monitor(p): p for p in pids[:50]}
    wait_subscribed(remote, 50)
    remote.freeze()
    try:
        # monitors made during the freeze are queued, not lost
        during = {watcher.monitor(p): p for p in pids[50:]}
        time.sleep(0.5)   # the freeze itself (well under heartbeat_timeout), not a sync
    finally:
        remote.thaw()
    wait_subscribed(remote, 100)
    remote.exit(pids, "real reason")
    downs = receive_all(watcher, 100, timeout=10)
    expected = {**before, **during}
    assert {d.ref for d in downs} == set(expected)
    for down in downs:
        assert_down(down, down.ref, expected[down.ref], "real reason")
    assert_nothing_more_remote(local, remote, watcher)


def test_freeze_of_the_watching_node_drops_then_restores(node_factory, remote_node):
    """The watcher's node freezes: the proxy here drops it; after the thaw its monitors
    fired nodedown (never a stale DOWN twice) and new ones work."""
    local = node_factory(**REMOTE_SETTINGS)
    watching = remote_node()
    targets = [local.process() for _ in range(20)]
    refs = watching.monitor(0, [t.pid for t in targets])
    wait_for_metrics(local, {SUBSCRIBERS: 20})
    watching.freeze()
    try:
        wait_for_metrics(local, {SUBSCRIBERS: 0},
                         timeout=REMOTE_SETTINGS["heartbeat_timeout"] / 1000 + MARGIN)
    finally:
        watching.thaw()
    wait_for(lambda: watching.downs_count() >= 20, timeout=10, interval=0.02)
    downs = watching.downs()
    assert sorted(r for _, r, _, _ in downs) == sorted(refs)
    assert all(reason == "nodedown" for _, _, _, reason in downs)
    for target in targets:
        target.exit("after thaw")
    fresh = local.process()
    (ref,) = watching.monitor(1, [fresh.pid])
    wait_for_metrics(local, {SUBSCRIBERS: 1})
    fresh.exit("fresh")
    wait_for(lambda: watching.downs_count() >= 21, timeout=10, interval=0.02)
    downs = watching.downs()
    assert len(downs) == 21, downs[20:]
    assert downs[-1][1:] == (ref, fresh.pid, "fresh")


# --------------------------------------------------------------------------- dead watcher


def test_dead_watcher_node_drops_its_subscriptions_here(local, remote):
    base = metrics_of(local, [SUBSCRIBERS, "zenmon.proxy.batcher.queue_len"])
    targets = [local.process() for _ in range(500)]
    remote.monitor(0, [t.pid for t in targets], repeat=2)
    remote.monitor(1, [t.pid for t in targets[:100]])
    wait_for_metrics(local, {SUBSCRIBERS: base[SUBSCRIBERS] + 500})
    remote.kill()
    wait_for_metrics(local, base,
                     timeout=REMOTE_SETTINGS["heartbeat_timeout"] / 1000 + MARGIN)
    wait_for_metrics(local, {"zenmon.proxy.peers.size": 0})
    # exits after the peer went: nothing queued for it, nothing leaks
    for target in targets:
        target.exit("nobody left")
    wait_for_metrics(local, {**base, "zenmon.proxy.batcher.queue_len": 0})


def test_stopped_watcher_node_drops_its_subscriptions_here(local, remote):
    targets = [local.process() for _ in range(50)]
    remote.monitor(0, [t.pid for t in targets])
    wait_for_metrics(local, {SUBSCRIBERS: 50})
    remote.stop()
    wait_for_metrics(local, {SUBSCRIBERS: 0},
                     timeout=REMOTE_SETTINGS["heartbeat_timeout"] / 1000 + MARGIN)


def test_dead_watcher_node_does_not_disturb_other_watchers(local, remote_node):
    dying, staying = remote_node(), remote_node()
    target = local.process()
    dying.monitor(0, [target.pid])
    (ref,) = staying.monitor(0, [target.pid])
    wait_for_metrics(local, {SUBSCRIBERS: 2})
    dying.kill()
    wait_for_metrics(local, {SUBSCRIBERS: 1},
                     timeout=REMOTE_SETTINGS["heartbeat_timeout"] / 1000 + MARGIN)
    target.exit("one left")
    wait_for(lambda: staying.downs_count() >= 1, timeout=10, interval=0.02)
    assert [d[1:] for d in staying.downs()] == [(ref, target.pid, "one left")]
    wait_for_metrics(local, {SUBSCRIBERS: 0})


# --------------------------------------------------------------------------- unreachable


def test_address_where_nothing_listens(local, remote):
    address = f"tcp://127.0.0.1:{free_port()}"
    started = time.monotonic()
    assert local.connect(address) == "incompatible"
    assert time.monotonic() - started < local.config.connect_timeout / 1000 + 1.5
    assert local.compatibility_for_node(address) == "incompatible"
    watcher = local.process()
    ghost = zenmon.Pid(address, 1, 1)
    started = time.monotonic()
    by_pid = watcher.monitor(ghost)
    by_name = watcher.monitor(("ghost", address))
    assert time.monotonic() - started < 0.2, "monitor waited on the network"
    downs = {d.ref: d for d in receive_all(watcher, 2, timeout=MARGIN + 2)}
    assert_down(downs[by_pid], by_pid, ghost, "nodedown")
    assert_down(downs[by_name], by_name, ("ghost", address), "nodedown")
    assert local.compatibility(ghost) == "incompatible"

    # the node keeps serving: local monitors...
    target = local.process()
    ref = watcher.monitor(target.pid)
    target.exit("local")
    assert_down(watcher.receive(timeout=5), ref, target.pid, "local")
    # ...and remote ones
    (pid,) = remote.spawn(1)
    ref = watcher.monitor(pid)
    wait_subscribed(remote, 1)
    remote.exit([pid], "remote")
    assert_down(watcher.receive(timeout=5), ref, pid, "remote")


def test_unavailable_node_is_tried_again_when_it_comes_up(local, remote_node):
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    assert local.connect(address) == "incompatible"
    watcher = local.process()
    ref = watcher.monitor(("late", address))
    assert_down(watcher.receive(timeout=5), ref, ("late", address), "nodedown")
    late = remote_node(port=port)
    (pid,) = late.spawn(1, name="late")
    assert late.address == address

    def compatible_now():
        return local.connect(address, timeout=1.0) == "compatible"

    wait_for(compatible_now, timeout=10, interval=0.05)
    ref = watcher.monitor(("late", address))
    wait_subscribed(late, 1)
    late.exit([pid], "came up")
    assert_down(watcher.receive(timeout=5), ref, ("late", address), "came up")


# --------------------------------------------------------------------------- broken links
# The watching node dials the remote through a TCP relay that the test can reset or
# blackhole; pids are addressed through the relay. What must hold (semantic 10):
# each monitor yields exactly one DOWN, the real reason or "nodedown", never none.


def check_exactly_once(downs, refs, allowed):
    """Each ref in `refs` ({ref: pid}) got one DOWN whose reason is in allowed(pid)."""
    seen = {}
    for down in downs:
        assert down.ref not in seen, f"second DOWN for {down.ref}: {down!r}"
        assert down.ref in refs, f"DOWN for an unknown ref: {down!r}"
        assert down.pid == refs[down.ref]
        assert down.reason in allowed(down.pid), down
        seen[down.ref] = down
    assert set(seen) == set(refs)
    return seen


def relayed_remote(remote_node, tcp_relay, settings=None):
    """A remote node behind a TCP relay, advertising the relay's address (its identity:
    a node reached under another address is refused)."""
    port = free_port()
    relay = tcp_relay(port)
    return remote_node(port=port, settings=settings, advertise=relay.address), relay


def test_link_reset_loses_no_monitor(local, remote_node, tcp_relay):
    remote, relay = relayed_remote(remote_node, tcp_relay)
    watcher = local.process()
    pids = remote.spawn(200)
    through = remote.pids_via(relay.address, pids)
    refs = {watcher.monitor(p): p for p in through[:100]}
    wait_subscribed(remote, 100)
    relay.cut()
    refs.update({watcher.monitor(p): p for p in through[100:]})   # while reconnecting
    remote.exit(pids[:50], "during the cut")
    relay.cut()
    remote.exit(pids[50:], "after")
    early = set(through[:50])
    downs = receive_all(watcher, 200, timeout=REMOTE_SETTINGS["heartbeat_timeout"] / 1000
                        + MARGIN + 5)
    seen = check_exactly_once(downs, refs, lambda pid: (
        {"during the cut", "nodedown"} if pid in early
        else {"after", "nodedown", "noproc"}))
    assert all(seen[r].reason != "noproc" for r, p in refs.items() if p in through[:100])
    assert_nothing_more_remote(local, remote, watcher, via=relay.address)
    # the link works again
    (fresh,) = remote.spawn(1)
    (fresh_via,) = remote.pids_via(relay.address, [fresh])
    ref = watcher.monitor(fresh_via)
    wait_subscribed(remote, 1)
    remote.exit([fresh], "recovered")
    assert_down(watcher.receive(timeout=10), ref, fresh_via, "recovered")


def test_long_partition_fires_nodedown_once_and_heals(local, remote_node, tcp_relay):
    remote, relay = relayed_remote(remote_node, tcp_relay)
    watcher = local.process()
    pids = remote.spawn(50)
    through = remote.pids_via(relay.address, pids)
    refs = {watcher.monitor(p): p for p in through}
    wait_subscribed(remote, 50)
    relay.blackhole(True)
    try:
        downs = receive_all(watcher, 50,
                            timeout=REMOTE_SETTINGS["heartbeat_timeout"] / 1000 + MARGIN)
        check_exactly_once(downs, refs, lambda pid: {"nodedown"})
        # the far side drops the silent peer too
        wait_subscribed(remote, 0)
    finally:
        relay.blackhole(False)
    remote.exit(pids, "after the partition")   # the fired refs stay quiet
    (fresh,) = remote.spawn(1)
    (fresh_via,) = remote.pids_via(relay.address, [fresh])
    ref = watcher.monitor(fresh_via)

    def healed():
        return remote.metric(SUBSCRIBERS) == 1

    wait_for(healed, timeout=10, interval=0.02, message="no subscription after healing")
    remote.exit([fresh], "healed")
    assert_down(watcher.receive(timeout=10), ref, fresh_via, "healed")
    assert_nothing_more_remote(local, remote, watcher, via=relay.address)


def test_short_partition_with_lost_bytes_loses_no_monitor(node_factory, remote_node,
                                                          tcp_relay):
    """Bytes dropped mid-stream (monitors and deaths in between): never a lost DOWN."""
    settings = {**REMOTE_SETTINGS, "heartbeat_timeout": 3000, "connect_timeout": 3000}
    local = node_factory(**settings)
    remote, relay = relayed_remote(remote_node, tcp_relay, settings)
    watcher = local.process()
    pids = remote.spawn(300)
    through = remote.pids_via(relay.address, pids)
    refs = {watcher.monitor(p): p for p in through[:100]}
    wait_subscribed(remote, 100)
    relay.blackhole(True)
    try:
        refs.update({watcher.monitor(p): p for p in through[100:200]})
        remote.exit(pids[:50], "in the partition")
        time.sleep(0.3)   # the partition itself (under heartbeat_timeout), not a sync
    finally:
        relay.blackhole(False)
    refs.update({watcher.monitor(p): p for p in through[200:]})

    # settle: either the link resynchronised (all 250 live targets subscribed) or
    # it was declared down (monitors beyond the 50 dead ones fired)
    def settled():
        return (remote.metric(SUBSCRIBERS) == 250
                or metric(local, "zenmon.local.references.size") < 250)

    wait_for(settled, timeout=settings["heartbeat_timeout"] / 1000 + MARGIN, interval=0.02,
             message=lambda: f"subscribers {remote.metric(SUBSCRIBERS)}, references "
                             f"{metric(local, 'zenmon.local.references.size')}")
    remote.exit(pids[50:], "after the partition")
    dead_in_partition = set(through[:50])
    downs = receive_all(watcher, 300, timeout=settings["heartbeat_timeout"] / 1000 + MARGIN + 5)
    check_exactly_once(downs, refs, lambda pid: (
        {"in the partition", "nodedown"} if pid in dead_in_partition
        else {"after the partition", "nodedown"}))
    assert_nothing_more_remote(local, remote, watcher, via=relay.address)

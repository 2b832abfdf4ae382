"""Monitors on remote targets: what only the wire shows.

The brief's semantics that hold for every kind of target are written once in
``test_monitor_semantics.py`` and run across the wire as well as on one node.
This file keeps what needs two OS processes: one target watched from two
nodes, batches of names, subscriptions and death certificates crossing the
wire in batches, and the other direction, a subprocess watching processes of
the node here. A node in this test process watches processes of a node in a subprocess
(``tests/nodeproc.py``); both ends run the fast settings of
``remote.REMOTE_SETTINGS``.

"No DOWN" is checked by ordering, not by waiting: :func:`remote.remote_barrier`
sends a later death through the same ordered stream of dead summaries, so once
its DOWN has arrived an earlier one that was due would have too.
"""

from __future__ import annotations

import pytest

from helpers import (
    assert_down,
    metric,
    receive_all,
    wait_for,
    wait_for_metrics,
)
from remote import (
    BULK_SETTINGS,
    REMOTE_SETTINGS,
    wait_subscribed,
)

SUBSCRIBERS = "zenmon.proxy.subscribers.size"
SENT = "zenmon.wire.messages.sent"
BYTES_SENT = "zenmon.wire.bytes.sent"


@pytest.fixture
def bulk_local(node_factory):
    """A watching node that delivers DOWNs unthrottled."""
    return node_factory(**BULK_SETTINGS)


# --------------------------------------------------------------------------- DOWN


def test_remote_target_watched_from_two_nodes_fires_on_both(node_factory, remote):
    nodes = [node_factory(**REMOTE_SETTINGS) for _ in range(2)]
    watchers = [n.process() for n in nodes]
    (target,) = remote.spawn(1)
    refs = [w.monitor(target) for w in watchers]
    wait_subscribed(remote, 2)  # one (target, peer) pair per watching node
    remote.exit([target], "both nodes")
    for watcher, ref in zip(watchers, refs):
        assert_down(watcher.receive(timeout=5), ref, target, "both nodes")
    wait_subscribed(remote, 0)


# --------------------------------------------------------------------------- names


def test_remote_several_names_in_one_batch(local, remote):
    watcher = local.process()
    names = [f"session-{i}" for i in range(50)]
    for name in names:
        remote.spawn(1, name=name)
    refs = {watcher.monitor((name, remote.address)): name for name in names}
    refs[watcher.monitor(("ghost", remote.address))] = "ghost"
    wait_subscribed(remote, 50)
    remote.exit("all", "named batch")
    downs = receive_all(watcher, 51)
    for down in downs:
        name = refs.pop(down.ref)
        expected = "noproc" if name == "ghost" else "named batch"
        assert_down(down, down.ref, (name, remote.address), expected)
    assert refs == {}


# --------------------------------------------------------------------------- batching


def test_remote_subscriptions_cross_the_wire_in_batches(bulk_local, remote):
    local = bulk_local
    watcher = local.process()
    targets = remote.spawn(10_000)
    assert local.connect(remote.address) == "compatible"
    sent, bytes_sent = metric(local, SENT), metric(local, BYTES_SENT)
    refs = [watcher.monitor(t) for t in targets]
    wait_subscribed(remote, 10_000, timeout=20)
    messages = metric(local, SENT) - sent
    per_monitor = (metric(local, BYTES_SENT) - bytes_sent) / len(refs)
    assert messages < 50, f"10,000 subscriptions took {messages} messages"
    assert per_monitor < 16, f"{per_monitor:.1f} bytes on the wire per subscription"

    sent = metric(local, SENT)
    for ref in refs:
        watcher.demonitor(ref)
    wait_subscribed(remote, 0, timeout=20)
    messages = metric(local, SENT) - sent
    assert messages < 50, f"10,000 unsubscriptions took {messages} messages"


def test_remote_death_certificates_cross_the_wire_in_batches(bulk_local, remote):
    local = bulk_local
    watcher = local.process()
    targets = remote.spawn(10_000)
    refs = {watcher.monitor(t) for t in targets}
    wait_subscribed(remote, 10_000, timeout=20)
    sent = remote.metric(SENT)
    remote.exit(targets, "mass exit")
    downs = receive_all(watcher, 10_000, timeout=30)
    assert {d.ref for d in downs} == refs
    assert all(d.reason == "mass exit" for d in downs)
    messages = remote.metric(SENT) - sent
    assert messages < 50, f"10,000 death certificates took {messages} messages"


# --------------------------------------------------------------------------- reverse


@pytest.fixture
def target_node(node_factory):
    """The node hosting the targets, in this process; the watcher is a subprocess."""
    return node_factory(**REMOTE_SETTINGS)


def remote_downs(watching, count, timeout=10.0):
    """Wait until the subprocess's watchers got `count` DOWNs -> them."""
    wait_for(lambda: watching.downs_count() >= count, timeout=timeout, interval=0.02,
             message=lambda: f"{count} DOWNs in the subprocess, got {watching.downs_count()}")
    return watching.downs()


def test_remote_watcher_gets_down_with_reason(target_node, remote):
    targets = [target_node.process() for _ in range(3)]
    refs = remote.monitor(0, [t.pid for t in targets])
    wait_for_metrics(target_node, {SUBSCRIBERS: 3})
    targets[0].exit("x" * 5000)
    targets[1].exit(("error", [1, 2]))
    targets[2].exit(RuntimeError("boom"))
    downs = {ref: (pid, reason) for _, ref, pid, reason in remote_downs(remote, 3)}
    assert downs[refs[0]] == (targets[0].pid, "x" * 1021 + "...")
    assert downs[refs[1]] == (targets[1].pid, ("error", [1, 2]))
    assert downs[refs[2]][0] == targets[2].pid
    assert downs[refs[2]][1][:3] == ("exception", "RuntimeError", "boom")
    wait_for_metrics(target_node, {SUBSCRIBERS: 0})


def test_remote_watcher_noproc_and_names(target_node, remote):
    dead = target_node.process()
    dead.exit()
    named = target_node.process(name="guild")
    refs = remote.monitor(0, [dead.pid, ("guild", target_node.address),
                              ("nobody", target_node.address)])
    wait_for_metrics(target_node, {SUBSCRIBERS: 1})
    named.exit("named")
    downs = {ref: (pid, reason) for _, ref, pid, reason in remote_downs(remote, 3)}
    assert downs[refs[0]] == (dead.pid, "noproc")
    assert downs[refs[1]] == (("guild", target_node.address), "named")
    assert downs[refs[2]] == (("nobody", target_node.address), "noproc")


def test_remote_watcher_exit_drops_subscriptions_here(target_node, remote):
    base = metric(target_node, SUBSCRIBERS)
    targets = [target_node.process() for _ in range(100)]
    remote.monitor(0, [t.pid for t in targets], repeat=3)
    remote.monitor(1, [t.pid for t in targets[:10]])
    wait_for_metrics(target_node, {SUBSCRIBERS: base + 100})
    remote.watcher_exit(0)
    wait_for_metrics(target_node, {SUBSCRIBERS: base + 10})
    remote.watcher_exit(1)
    wait_for_metrics(target_node, {SUBSCRIBERS: base})
    for target in targets:
        target.exit("nobody watching")
    # a later monitor still works, and nothing was delivered for the dropped ones
    (ref,) = remote.monitor(2, [targets[0].pid])
    downs = remote_downs(remote, 1)
    assert [(w, r, reason) for w, r, _, reason in downs] == [(2, ref, "noproc")]


def test_two_watching_nodes_share_one_target(target_node, remote_node):
    watching = [remote_node() for _ in range(2)]
    target = target_node.process()
    refs = [w.monitor(0, [target.pid], repeat=3) for w in watching]
    # at most one subscription per (target, watching node)
    wait_for_metrics(target_node, {SUBSCRIBERS: 2})
    target.exit("fan out")
    for w, wrefs in zip(watching, refs):
        downs = remote_downs(w, 3)
        assert sorted(r for _, r, _, _ in downs) == sorted(wrefs)
        assert all(reason == "fan out" and pid == target.pid for _, _, pid, reason in downs)
    wait_for_metrics(target_node, {SUBSCRIBERS: 0})

"""Monitors on remote targets: the watcher and its target in different OS processes.

The numbered semantics of the brief, held across the wire: a node in this test
process watches processes of a node in a subprocess (``tests/nodeproc.py``) and,
for the other direction, a subprocess watches processes of the node here. Both
ends run the fast settings of ``remote.REMOTE_SETTINGS``.

"No DOWN" is checked by ordering, not by waiting: :func:`remote.remote_barrier`
sends a later death through the same ordered stream of dead summaries, so once
its DOWN has arrived an earlier one that was due would have too.
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
    wait_for,
    wait_for_metrics,
)
from remote import (
    BULK_SETTINGS,
    REMOTE_SETTINGS,
    assert_nothing_more_remote,
    wait_remote,
    wait_subscribed,
)

SUBSCRIBERS = "zenmon.proxy.subscribers.size"
REFERENCES = "zenmon.local.references.size"
PROCESSED = "zenmon.local.dispatcher.events.processed"
SENT = "zenmon.wire.messages.sent"
BYTES_SENT = "zenmon.wire.bytes.sent"



@pytest.fixture
def bulk_local(node_factory):
    """A watching node that delivers DOWNs unthrottled."""
    return node_factory(**BULK_SETTINGS)




# --------------------------------------------------------------------------- refs


def test_remote_monitor_returns_unique_refs_without_waiting(local, remote):
    watchers = [local.process() for _ in range(4)]
    targets = remote.spawn(10)
    started = time.monotonic()
    refs = [w.monitor(t) for w in watchers for t in targets for _ in range(50)]
    elapsed = time.monotonic() - started
    assert all(type(ref) is int and ref > 0 for ref in refs)
    assert len(set(refs)) == len(refs) == 2000
    # the first monitor of a never contacted node must not wait for the handshake
    assert elapsed < local.config.connect_timeout / 1000, elapsed
    wait_subscribed(remote, 10)
    assert local.compatibility(targets[0]) == "compatible"
    assert local.compatibility_for_node(remote.address) == "compatible"


# --------------------------------------------------------------------------- DOWN


def test_remote_exit_yields_one_down_with_ref_pid_and_reason(local, remote):
    watcher = local.process()
    (target,) = remote.spawn(1)
    ref = watcher.monitor(target)
    wait_subscribed(remote, 1)
    remote.exit([target], "shutdown")
    down = watcher.receive(timeout=5)
    assert type(down) is zenmon.Down
    assert_down(down, ref, target, "shutdown")
    assert_nothing_more_remote(local, remote, watcher)


def test_remote_exit_before_subscription_arrives_still_fires(local, remote):
    """The target may die while the subscribe is still queued: the DOWN still comes."""
    watcher = local.process()
    targets = remote.spawn(20)
    refs = {watcher.monitor(t): t for t in targets}
    remote.exit(targets, "raced")  # no wait for the subscription
    downs = receive_all(watcher, 20, timeout=10)
    assert {d.ref for d in downs} == set(refs)
    for down in downs:
        assert down.pid == refs[down.ref]
        assert down.reason in ("raced", "noproc"), down
    assert_nothing_more_remote(local, remote, watcher)


def test_remote_long_string_reason_is_truncated(local, remote):
    watcher = local.process()
    (target,) = remote.spawn(1)
    ref = watcher.monitor(target)
    wait_subscribed(remote, 1)
    reason = "".join(chr(ord("a") + i % 26) for i in range(5000))
    remote.exit([target], reason)
    down = watcher.receive(timeout=5)
    assert down.ref == ref and down.pid == target
    assert isinstance(down.reason, str)
    assert len(down.reason) == 1024
    assert down.reason.endswith("...")
    assert down.reason[:1021] == reason[:1021]


def test_remote_long_bytes_reason_is_truncated(local, remote):
    watcher = local.process()
    (target,) = remote.spawn(1)
    ref = watcher.monitor(target)
    wait_subscribed(remote, 1)
    remote.exit([target], b"z" * 5000)
    assert_down(watcher.receive(timeout=5), ref, target, b"z" * 1021 + b"...")


def test_remote_truncation_happens_once_for_every_watcher(local, remote):
    """A big reason reaches every monitor (on two nodes), each cut the same way."""
    watchers = [local.process() for _ in range(3)]
    (target,) = remote.spawn(1)
    refs = {w.monitor(target): w for w in watchers for _ in range(2)}
    wait_subscribed(remote, 1)
    remote.exit([target], "r" * 100_000)
    for watcher in watchers:
        for down in receive_all(watcher, 2):
            assert refs[down.ref] is watcher
            assert down.reason == "r" * 1021 + "..."


@pytest.mark.parametrize(
    "reason, expected",
    [
        ("x" * 1024, "x" * 1024),
        (("error", 1, 2.5, None), ("error", 1, 2.5, None)),
        ([1, 2, 3, 4], [1, 2, 3, 4]),
        ({"a": 1, "b": [2]}, {"a": 1, "b": [2]}),
        (42, 42),
        (None, None),
        ([1, 2, 3, 4, 5], zenmon.TRUNCATED),
        ((1, 2, 3, 4, 5), zenmon.TRUNCATED),
        ({str(i): i for i in range(5)}, zenmon.TRUNCATED),
        ([[["x"]]], [[[zenmon.TRUNCATED]]]),
        (("err", ["y" * 2000]), ("err", ["y" * 1021 + "..."])),
    ],
    ids=["str-1024", "tuple-4", "list-4", "dict", "int", "none", "list-5", "tuple-5",
         "dict-5", "depth-3", "nested-long-str"],
)
def test_remote_reasons_arrive_truncated_with_their_types(local, remote, reason, expected):
    watcher = local.process()
    (target,) = remote.spawn(1)
    ref = watcher.monitor(target)
    wait_subscribed(remote, 1)
    remote.exit([target], reason)
    assert_down(watcher.receive(timeout=5), ref, target, expected)


def test_remote_exception_reason_arrives_as_exit_exception(local, remote):
    watcher = local.process()
    (target,) = remote.spawn(1)
    ref = watcher.monitor(target)
    wait_subscribed(remote, 1)
    remote.exit([target], "state dump " + "s" * 5000, exception=True)
    down = watcher.receive(timeout=5)
    assert down.ref == ref and down.pid == target
    reason = down.reason
    assert isinstance(reason, zenmon.ExitException), reason
    assert reason.type_name == "RuntimeError"
    assert reason.message.startswith("state dump s")
    assert len(reason.message) <= 1024
    assert isinstance(reason.traceback, (str, type(None)))


def test_remote_several_monitors_on_one_target_each_fire_once(local, remote):
    first, second = local.process(), local.process()
    (target,) = remote.spawn(1)
    refs_first = [first.monitor(target) for _ in range(5)]
    refs_second = [second.monitor(target) for _ in range(3)]
    # one subscription on the remote however many local monitors
    wait_subscribed(remote, 1)
    remote.exit([target], "bye")
    downs_first = receive_all(first, 5)
    downs_second = receive_all(second, 3)
    assert sorted(d.ref for d in downs_first) == sorted(refs_first)
    assert sorted(d.ref for d in downs_second) == sorted(refs_second)
    for down in downs_first + downs_second:
        assert_down(down, down.ref, target, "bye")
    assert_nothing_more_remote(local, remote, first, second)


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


def test_remote_downs_arrive_in_exit_order(local, remote):
    watcher = local.process()
    targets = remote.spawn(50)
    refs = [watcher.monitor(t) for t in targets]
    wait_subscribed(remote, 50)
    for i, target in enumerate(targets):
        remote.exit([target], i)
    downs = receive_all(watcher, 50)
    assert [d.ref for d in downs] == refs
    assert [d.reason for d in downs] == list(range(50))


# --------------------------------------------------------------------------- noproc


def test_remote_monitor_dead_pid_yields_noproc(local, remote):
    watcher = local.process()
    (target,) = remote.spawn(1)
    remote.exit([target], "gone long ago")
    ref = watcher.monitor(target)
    assert_down(watcher.receive(timeout=5), ref, target, "noproc")
    assert_nothing_more_remote(local, remote, watcher)


def test_remote_monitor_never_existing_pid_yields_noproc(local, remote):
    watcher = local.process()
    ghost = zenmon.Pid(remote.address, remote.incarnation, 999_999)
    ref = watcher.monitor(ghost)
    assert_down(watcher.receive(timeout=5), ref, ghost, "noproc")


def test_remote_monitor_pid_of_an_older_incarnation_yields_noproc(local, remote):
    watcher = local.process()
    (live,) = remote.spawn(1)
    assert local.connect(remote.address) == "compatible"
    older = zenmon.Pid(remote.address, remote.incarnation - 1, live.id)
    ref = watcher.monitor(older)
    assert_down(watcher.receive(timeout=5), ref, older, "noproc")
    # the live node and its live process are unaffected
    live_ref = watcher.monitor(live)
    wait_subscribed(remote, 1)
    remote.exit([live], "still there")
    assert_down(watcher.receive(timeout=5), live_ref, live, "still there")


def test_remote_monitor_unknown_name_yields_noproc(local, remote):
    watcher = local.process()
    ref = watcher.monitor(("nobody", remote.address))
    assert_down(watcher.receive(timeout=5), ref, ("nobody", remote.address), "noproc")


def test_remote_monitor_name_of_exited_process_yields_noproc(local, remote):
    watcher = local.process()
    (named,) = remote.spawn(1, name="x")
    remote.exit([named])
    ref = watcher.monitor(("x", remote.address))
    assert_down(watcher.receive(timeout=5), ref, ("x", remote.address), "noproc")


def test_remote_noproc_monitors_leave_no_reference(local, remote):
    watcher = local.process()
    base = metrics_of(local, TABLE_GAUGES)
    (dead,) = remote.spawn(1)
    remote.exit([dead])
    for _ in range(100):
        watcher.monitor(dead)
        watcher.monitor(("nobody", remote.address))
    downs = receive_all(watcher, 200)
    assert all(d.reason == "noproc" for d in downs)
    wait_for_metrics(local, base)
    wait_subscribed(remote, 0)


# --------------------------------------------------------------------------- names


def test_remote_monitor_by_name_and_node_address(local, remote):
    watcher = local.process()
    remote.spawn(1, name="guild")
    ref = watcher.monitor(("guild", remote.address))
    wait_subscribed(remote, 1)
    remote.exit("all", "named exit")
    assert_down(watcher.receive(timeout=5), ref, ("guild", remote.address), "named exit")


def test_remote_monitor_by_name_and_by_pid_fire_separately(local, remote):
    watcher = local.process()
    (target,) = remote.spawn(1, name="x")
    by_name = watcher.monitor(("x", remote.address))
    by_pid = watcher.monitor(target)
    wait_subscribed(remote, 2)
    remote.exit([target], "both")
    downs = {d.ref: d for d in receive_all(watcher, 2)}
    assert_down(downs[by_name], by_name, ("x", remote.address), "both")
    assert_down(downs[by_pid], by_pid, target, "both")
    assert_nothing_more_remote(local, remote, watcher)


def test_remote_monitor_by_name_follows_the_process_not_the_name(local, remote):
    watcher = local.process()
    (first,) = remote.spawn(1, name="x")
    ref = watcher.monitor(("x", remote.address))
    wait_subscribed(remote, 1)
    remote.exit([first], "first gone")
    assert_down(watcher.receive(timeout=5), ref, ("x", remote.address), "first gone")
    (second,) = remote.spawn(1, name="x")
    remote.exit([second], "second gone")
    assert_nothing_more_remote(local, remote, watcher)


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


# --------------------------------------------------------------------------- demonitor


def test_remote_demonitor_before_death_means_no_down(local, remote):
    watcher = local.process()
    cancelled_target, later_target = remote.spawn(2)
    cancelled = watcher.monitor(cancelled_target)
    kept = watcher.monitor(later_target)
    wait_subscribed(remote, 2)
    assert watcher.demonitor(cancelled) is True
    remote.exit([cancelled_target], "should not be seen")
    remote.exit([later_target], "seen")  # queued after the cancelled one would have been
    assert_down(watcher.receive(timeout=5), kept, later_target, "seen")
    assert_nothing_more_remote(local, remote, watcher)


def test_remote_demonitor_right_after_monitor_means_no_down(local, remote):
    """Demonitor while the subscribe may still be queued: still no DOWN."""
    watcher = local.process()
    targets = remote.spawn(100)
    for target in targets:
        watcher.demonitor(watcher.monitor(target))
    remote.exit(targets, "should not be seen")
    assert_nothing_more_remote(local, remote, watcher)
    wait_subscribed(remote, 0)


def test_remote_demonitor_leaves_other_refs_on_the_same_target(local, remote):
    watcher = local.process()
    (target,) = remote.spawn(1)
    refs = [watcher.monitor(target) for _ in range(10)]
    wait_subscribed(remote, 1)
    for ref in refs[::2]:
        assert watcher.demonitor(ref) is True
    remote.exit([target], "half")
    downs = receive_all(watcher, 5)
    assert sorted(d.ref for d in downs) == sorted(refs[1::2])
    assert_nothing_more_remote(local, remote, watcher)


def test_remote_demonitor_of_the_last_monitor_unsubscribes(local, remote):
    watcher = local.process()
    targets = remote.spawn(100)
    refs = [watcher.monitor(t) for t in targets for _ in range(2)]
    wait_subscribed(remote, 100)
    base = metric(local, REFERENCES)
    for ref in refs[::2]:
        watcher.demonitor(ref)
    wait_for_metrics(local, {REFERENCES: base - 100})
    assert remote.metric(SUBSCRIBERS) == 100   # each target still has one monitor
    for ref in refs[1::2]:
        watcher.demonitor(ref)
    wait_subscribed(remote, 0)
    wait_for_metrics(local, {REFERENCES: base - 200, "zenmon.local.targets.size": 0})


def test_remote_demonitor_flush_removes_a_delivered_down(local, remote):
    watcher = local.process()
    target, other = remote.spawn(2)
    ref = watcher.monitor(target)
    other_ref = watcher.monitor(other)
    wait_subscribed(remote, 2)
    processed = metric(local, PROCESSED)
    watcher.send("work before")
    remote.exit([target], "flushed")
    wait_for(lambda: metric(local, PROCESSED) >= processed + 1)  # DOWN is in the inbox
    watcher.send("work after")
    remote.exit([other], "kept")
    wait_for(lambda: metric(local, PROCESSED) >= processed + 2)
    assert watcher.demonitor(ref, flush=True) is True
    remaining = receive_until_sentinel(watcher)
    assert remaining[:2] == ["work before", "work after"]
    assert len(remaining) == 3, remaining
    assert_down(remaining[2], other_ref, other, "kept")


def test_remote_demonitor_without_flush_leaves_a_delivered_down(local, remote):
    watcher = local.process()
    (target,) = remote.spawn(1)
    ref = watcher.monitor(target)
    wait_subscribed(remote, 1)
    processed = metric(local, PROCESSED)
    remote.exit([target], "already here")
    wait_for(lambda: metric(local, PROCESSED) >= processed + 1)
    assert watcher.demonitor(ref) is True
    assert_down(watcher.receive(timeout=5), ref, target, "already here")
    assert_nothing_more_remote(local, remote, watcher)


# --------------------------------------------------------------------------- watcher exit


def test_remote_watcher_exit_drops_its_remote_subscriptions(local, remote):
    base = metrics_of(local, TABLE_GAUGES)
    watcher, bystander = local.process(), local.process()
    targets = remote.spawn(100)
    for target in targets:
        watcher.monitor(target)
    bystander_ref = bystander.monitor(targets[-1])
    wait_subscribed(remote, 100)
    watcher.exit("watcher gone")
    wait_subscribed(remote, 1)       # the bystander's target only
    remote.exit(targets, "later")
    assert_down(bystander.receive(timeout=5), bystander_ref, targets[-1], "later")
    with pytest.raises(zenmon.ProcessExited):
        watcher.receive(timeout=0.1)
    wait_subscribed(remote, 0)
    bystander.exit()
    wait_for_metrics(local, base)


def test_remote_watcher_exit_while_targets_exit_leaks_nothing(local, remote):
    base = metrics_of(local, TABLE_GAUGES)
    watchers = [local.process() for _ in range(50)]
    targets = remote.spawn(50)
    for watcher, target in zip(watchers, targets):
        watcher.monitor(target)
    for watcher in watchers:
        watcher.exit()
    remote.exit(targets, "both going")
    wait_for_metrics(local, base)
    wait_subscribed(remote, 0)
    wait_remote(remote, "zenmon.proxy.batcher.queue_len", lambda v: v == 0, what="== 0")


# --------------------------------------------------------------------------- churn


@pytest.mark.timeout(120)
def test_remote_churn_returns_tables_to_baseline(bulk_local, remote):
    local = bulk_local
    base = metrics_of(local, TABLE_GAUGES)
    remote_base = remote.metrics()
    watchers = [local.process() for _ in range(20)]
    targets = remote.spawn(200)
    refs = {}  # ref -> (watcher index, target)
    for wi, watcher in enumerate(watchers):
        for target in targets:
            refs[watcher.monitor(target)] = (wi, target)
    assert len(refs) == 4000
    wait_subscribed(remote, 200)
    cancelled = set(list(refs)[::2])
    for ref in cancelled:
        watchers[refs[ref][0]].demonitor(ref)
    for watcher in watchers[1::2]:
        watcher.exit("watcher churn")
    remote.exit(targets, "target churn")

    expected: dict[int, set[int]] = {}
    for ref, (wi, _target) in refs.items():
        if ref not in cancelled and wi % 2 == 0:
            expected.setdefault(wi, set()).add(ref)
    for wi, wanted in expected.items():
        downs = receive_all(watchers[wi], len(wanted), timeout=30)
        assert {d.ref for d in downs} == wanted
        assert all(d.reason == "target churn" for d in downs)

    # short-lived remote processes, some dead before they are watched
    observer = local.process()
    batch = remote.spawn(300)
    remote.exit(batch[0::3], "early")
    for pid in batch:
        observer.monitor(pid)
    for pid in batch[2::3]:
        observer.demonitor(observer.monitor(pid))
    wait_subscribed(remote, 200)   # the 200 live ones (one subscription each)
    remote.exit(batch, "short")
    downs = receive_all(observer, 300, timeout=30)
    by_pid = {}
    for down in downs:
        by_pid.setdefault(down.pid, []).append(down.reason)
    assert all(by_pid[pid] == ["noproc"] for pid in batch[0::3])
    assert all(by_pid[pid] == ["short"] for pid in batch[1::3] + batch[2::3])
    assert_nothing_more_remote(local, remote, observer, *watchers[::2])

    for watcher in watchers[::2]:
        watcher.exit()
    observer.exit()
    wait_for_metrics(local, base)
    wait_subscribed(remote, remote_base[SUBSCRIBERS])
    wait_remote(remote, "zenmon.proxy.batcher.queue_len", lambda v: v == 0, what="== 0")
    assert remote.metric("zenmon.local.processes.size") == remote_base[
        "zenmon.local.processes.size"]


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

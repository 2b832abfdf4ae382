"""The brief's monitor semantics, written once and held for every kind of target.

Each test runs in every world of ``tests/worlds.py`` (the ``world`` fixture):
watcher and target on one node in this process, with default settings and with
10 ms ticks and sweeps, and a watcher here with its targets on a node in a
subprocess. What is particular to one side (the bare-name form on one node, the
proxy's subscription count across the wire) is a verb of the world, so each
assertion below holds, and can fail, for each kind.

"No DOWN" is checked by ordering, not by waiting (``World.assert_nothing_more``):
DOWNs go through the dispatcher queue in order, and across the wire through one
ordered stream of dead summaries, so once a later DOWN (or a sentinel sent after
the dispatcher went idle) has arrived, an earlier one that was due would have too.

Tests that only make sense for one kind stay in ``test_local_monitors.py`` and
``test_remote_monitors.py``.
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

PROCESSED = "zenmon.local.dispatcher.events.processed"
REFERENCES = "zenmon.local.references.size"
TARGETS = "zenmon.local.targets.size"
DEMONITOR = "zenmon.local.demonitor"
PROCESSES = "zenmon.local.processes.size"
SUBSCRIBERS = "zenmon.proxy.subscribers.size"


def wait_processed(node, count, timeout=5.0):
    """Wait until the dispatcher has handed ``count`` DOWNs to inboxes in total."""
    wait_for(
        lambda: metric(node, PROCESSED) >= count,
        timeout=timeout,
        message=lambda: f"{PROCESSED} >= {count}, now {metric(node, PROCESSED)}",
    )


# --------------------------------------------------------------------------- refs (1)


def test_monitor_returns_unique_refs_without_waiting(world):
    watchers = [world.process() for _ in range(4)]
    targets = world.spawn(10)
    started = time.monotonic()
    refs = [w.monitor(t) for w in watchers for t in targets for _ in range(50)]
    elapsed = time.monotonic() - started
    # the first monitor of a never contacted node must not wait for the handshake
    assert elapsed < world.node.config.connect_timeout / 1000, elapsed
    refs += [w.monitor(t) for w in watchers for t in targets for _ in range(200)]
    assert all(type(ref) is int and ref > 0 for ref in refs)
    assert len(set(refs)) == len(refs) == 10_000
    world.wait_subscribed(10)
    assert world.node.compatibility(targets[0]) == "compatible"
    assert world.node.compatibility_for_node(world.address) == "compatible"


# --------------------------------------------------------------------------- DOWN (2, 3)


def test_exit_yields_one_down_with_ref_pid_and_reason(world):
    watcher = world.process()
    (target,) = world.spawn(1)
    ref = watcher.monitor(target)
    world.wait_subscribed(1)
    assert world.exit([target], "shutdown") == 1
    down = watcher.receive(timeout=5)
    assert type(down) is zenmon.Down
    assert_down(down, ref, target, "shutdown")
    world.assert_nothing_more(watcher)


def test_exit_default_reason_is_normal(world):
    watcher = world.process()
    (target,) = world.spawn(1)
    ref = watcher.monitor(target)
    world.wait_subscribed(1)
    world.exit([target])
    assert_down(watcher.receive(timeout=5), ref, target, "normal")


def test_second_exit_does_not_fire_again(world):
    watcher = world.process()
    (target,) = world.spawn(1)
    ref = watcher.monitor(target)
    world.wait_subscribed(1)
    assert world.exit([target], "first") == 1
    assert world.exit([target], "second") == 0
    assert_down(watcher.receive(timeout=5), ref, target, "first")
    world.assert_nothing_more(watcher)


def test_exit_right_after_monitor_still_fires(world):
    """The target may die while the subscribe is still queued: the DOWN still comes."""
    watcher = world.process()
    targets = world.spawn(20)
    refs = {watcher.monitor(t): t for t in targets}
    world.exit(targets, "raced")  # no wait for the subscription
    downs = receive_all(watcher, 20, timeout=10)
    assert {d.ref for d in downs} == set(refs)
    for down in downs:
        assert down.pid == refs[down.ref]
        assert down.reason in ("raced", "noproc"), down
    world.assert_nothing_more(watcher)


def test_long_string_reason_is_truncated(world):
    watcher = world.process()
    (target,) = world.spawn(1)
    ref = watcher.monitor(target)
    world.wait_subscribed(1)
    reason = "".join(chr(ord("a") + i % 26) for i in range(5000))
    world.exit([target], reason)
    down = watcher.receive(timeout=5)
    assert down.ref == ref and down.pid == target
    assert isinstance(down.reason, str)
    assert len(down.reason) == 1024
    assert down.reason.endswith("...")
    assert down.reason[:1021] == reason[:1021]


def test_long_bytes_reason_is_truncated(world):
    watcher = world.process()
    (target,) = world.spawn(1)
    ref = watcher.monitor(target)
    world.wait_subscribed(1)
    world.exit([target], b"z" * 5000)
    down = watcher.receive(timeout=5)
    assert isinstance(down.reason, bytes)
    assert_down(down, ref, target, b"z" * 1021 + b"...")


def test_truncation_happens_once_for_every_watcher(world):
    """A big reason reaches every monitor, each cut the same way."""
    watchers = [world.process() for _ in range(3)]
    (target,) = world.spawn(1)
    refs = {w.monitor(target): w for w in watchers for _ in range(2)}
    world.wait_subscribed(1)
    world.exit([target], "r" * 100_000)
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
        ({i: i for i in range(5)}, zenmon.TRUNCATED),
        ([[["x"]]], [[[zenmon.TRUNCATED]]]),
        (("err", ["y" * 2000]), ("err", ["y" * 1021 + "..."])),
    ],
    ids=["str-1024", "tuple-4", "list-4", "dict", "int", "none", "list-5", "tuple-5",
         "dict-5", "depth-3", "nested-long-str"],
)
def test_reasons_arrive_truncated_with_their_types(world, reason, expected):
    assert zenmon.TRUNCATED == "truncated"
    assert zenmon.truncate(reason) == expected
    watcher = world.process()
    (target,) = world.spawn(1)
    ref = watcher.monitor(target)
    world.wait_subscribed(1)
    world.exit([target], reason)
    assert_down(watcher.receive(timeout=5), ref, target, expected)


def test_reason_truncation_follows_configured_max_binary_size(world):
    """The target side's setting cuts the reason (on one node it is the watcher's too)."""
    watcher = world.process()
    (target,) = world.spawn(1)
    ref = watcher.monitor(target)
    world.wait_subscribed(1)
    world.configure_target_side(max_binary_size=16)
    world.exit([target], "q" * 100)
    assert_down(watcher.receive(timeout=5), ref, target, "q" * 13 + "...")


def test_exception_reason_arrives_as_exit_exception(world):
    watcher = world.process()
    (target,) = world.spawn(1)
    ref = watcher.monitor(target)
    world.wait_subscribed(1)
    world.exit([target], "state dump " + "s" * 5000, exception=True)
    down = watcher.receive(timeout=5)
    assert down.ref == ref and down.pid == target
    reason = down.reason
    assert isinstance(reason, zenmon.ExitException), reason
    assert reason.type_name == "RuntimeError"
    assert reason.message.startswith("state dump s")
    assert len(reason.message) <= 1024
    assert isinstance(reason.traceback, (str, type(None)))


def test_several_monitors_on_one_target_each_fire_once(world):
    first, second = world.process(), world.process()
    (target,) = world.spawn(1)
    refs_first = [first.monitor(target) for _ in range(5)]
    refs_second = [second.monitor(target) for _ in range(3)]
    # one subscription on the target side however many monitors here
    world.wait_subscribed(1)
    world.exit([target], "bye")
    downs_first = receive_all(first, 5)
    downs_second = receive_all(second, 3)
    assert sorted(d.ref for d in downs_first) == sorted(refs_first)
    assert sorted(d.ref for d in downs_second) == sorted(refs_second)
    for down in downs_first + downs_second:
        assert_down(down, down.ref, target, "bye")
    world.assert_nothing_more(first, second)


def test_downs_arrive_in_exit_order(world):
    watcher = world.process()
    targets = world.spawn(50)
    refs = [watcher.monitor(t) for t in targets]
    world.wait_subscribed(50)
    for i, target in enumerate(targets):
        world.exit([target], i)
    downs = receive_all(watcher, 50)
    assert [d.ref for d in downs] == refs
    assert [d.reason for d in downs] == list(range(50))


# --------------------------------------------------------------------------- noproc (4)


def test_monitor_dead_pid_yields_noproc(world):
    watcher = world.process()
    (target,) = world.spawn(1)
    assert world.exit([target], "gone long ago") == 1
    ref = watcher.monitor(target)
    assert type(ref) is int and ref > 0  # returned before the DOWN
    assert_down(watcher.receive(timeout=5), ref, target, "noproc")
    world.assert_nothing_more(watcher)


def test_monitor_never_existing_pid_yields_noproc(world):
    watcher = world.process()
    ghost = zenmon.Pid(world.address, world.incarnation, 999_999)
    ref = watcher.monitor(ghost)
    assert_down(watcher.receive(timeout=5), ref, ghost, "noproc")


def test_monitor_pid_of_an_older_incarnation_yields_noproc(world):
    watcher = world.process()
    (live,) = world.spawn(1)
    assert world.node.connect(world.address) == "compatible"
    other = zenmon.Pid(world.address, world.incarnation - 1, live.id)
    ref = watcher.monitor(other)
    assert_down(watcher.receive(timeout=5), ref, other, "noproc")
    # the live node and its live process are unaffected
    live_ref = watcher.monitor(live)
    world.wait_subscribed(1)
    assert world.exit([live], "still there") == 1
    assert_down(watcher.receive(timeout=5), live_ref, live, "still there")


def test_monitor_unknown_name_yields_noproc(world):
    watcher = world.process()
    for form in world.name_forms("nobody"):
        ref = watcher.monitor(form)
        assert_down(watcher.receive(timeout=5), ref, world.named("nobody"), "noproc")


def test_monitor_name_of_exited_process_yields_noproc(world):
    watcher = world.process()
    (named,) = world.spawn(1, name="x")
    assert world.exit([named]) == 1
    for form in world.name_forms("x"):
        ref = watcher.monitor(form)
        assert_down(watcher.receive(timeout=5), ref, world.named("x"), "noproc")


def test_noproc_monitors_leave_no_reference(world):
    watcher = world.process()
    base = metrics_of(world.node, TABLE_GAUGES)
    (dead,) = world.spawn(1)
    world.exit([dead])
    forms = world.name_forms("nobody")
    for i in range(100):
        watcher.monitor(dead)
        watcher.monitor(forms[i % len(forms)])
    downs = receive_all(watcher, 200)
    assert all(d.reason == "noproc" for d in downs)
    wait_for_metrics(world.node, base)
    world.wait_subscribed(0)


# --------------------------------------------------------------------------- names


def test_monitor_by_name_in_every_form(world):
    watcher = world.process()
    world.spawn(1, name="guild")
    refs = [watcher.monitor(form) for form in world.name_forms("guild")]
    world.wait_subscribed(1)
    world.exit("all", "named exit")
    downs = {d.ref: d for d in receive_all(watcher, len(refs))}
    for ref in refs:
        assert_down(downs[ref], ref, world.named("guild"), "named exit")
    world.assert_nothing_more(watcher)


def test_monitor_by_name_and_by_pid_fire_separately(world):
    watcher = world.process()
    (target,) = world.spawn(1, name="x")
    by_name = watcher.monitor(world.named("x"))
    by_pid = watcher.monitor(target)
    world.wait_subscribed(2)   # a name and a pid are two subscriptions across the wire
    world.exit([target], "both")
    downs = {d.ref: d for d in receive_all(watcher, 2)}
    assert_down(downs[by_name], by_name, world.named("x"), "both")
    assert_down(downs[by_pid], by_pid, target, "both")
    world.assert_nothing_more(watcher)


def test_monitor_by_name_follows_the_process_not_the_name(world):
    """The name is resolved when the monitor is made (as Erlang does)."""
    watcher = world.process()
    (first,) = world.spawn(1, name="x")
    refs = [watcher.monitor(form) for form in world.name_forms("x")]
    world.wait_subscribed(1)
    world.exit([first], "first gone")
    downs = {d.ref: d for d in receive_all(watcher, len(refs))}
    for ref in refs:
        assert_down(downs[ref], ref, world.named("x"), "first gone")
    (second,) = world.spawn(1, name="x")
    world.exit([second], "second gone")
    world.assert_nothing_more(watcher)


# --------------------------------------------------------------------------- demonitor (6)


def test_demonitor_before_death_means_no_down(world):
    watcher = world.process()
    cancelled_target, later_target = world.spawn(2)
    cancelled = watcher.monitor(cancelled_target)
    kept = watcher.monitor(later_target)
    world.wait_subscribed(2)
    assert watcher.demonitor(cancelled) is True
    world.exit([cancelled_target], "should not be seen")
    world.exit([later_target], "seen")  # queued after the cancelled one would have been
    assert_down(watcher.receive(timeout=5), kept, later_target, "seen")
    world.assert_nothing_more(watcher)


def test_demonitor_right_after_monitor_means_no_down(world):
    """Demonitor while the subscribe may still be queued: still no DOWN."""
    watcher = world.process()
    targets = world.spawn(100)
    for target in targets:
        assert watcher.demonitor(watcher.monitor(target)) is True
    world.exit(targets, "should not be seen")
    world.assert_nothing_more(watcher)
    world.wait_subscribed(0)


def test_demonitor_leaves_other_refs_on_the_same_target(world):
    watcher = world.process()
    (target,) = world.spawn(1)
    refs = [watcher.monitor(target) for _ in range(10)]
    world.wait_subscribed(1)
    for ref in refs[::2]:
        assert watcher.demonitor(ref) is True
    world.exit([target], "half")
    downs = receive_all(watcher, 5)
    assert sorted(d.ref for d in downs) == sorted(refs[1::2])
    world.assert_nothing_more(watcher)


def test_demonitor_is_idempotent_and_tolerates_unknown_refs(world):
    watcher = world.process()
    (target,) = world.spawn(1)
    ref = watcher.monitor(target)
    assert watcher.demonitor(ref) is True
    assert watcher.demonitor(ref) is True
    assert watcher.demonitor(ref, flush=True) is True
    assert watcher.demonitor(10**12) is True
    assert watcher.demonitor(10**12, flush=True) is True


def test_demonitor_of_another_process_ref_does_not_cancel_it(world):
    owner, stranger = world.process(), world.process()
    (target,) = world.spawn(1)
    ref = owner.monitor(target)
    assert stranger.demonitor(ref) is True
    world.wait_subscribed(1)
    world.exit([target], "still watched")
    assert_down(owner.receive(timeout=5), ref, target, "still watched")


def test_demonitor_of_the_last_monitor_drops_the_reference(world):
    node = world.node
    watcher = world.process()
    targets = world.spawn(100)
    base = metrics_of(node, [REFERENCES, TARGETS])
    demonitors = metric(node, DEMONITOR)
    refs = [watcher.monitor(t) for t in targets for _ in range(2)]
    assert metric(node, REFERENCES) == base[REFERENCES] + 200
    world.wait_subscribed(100)
    for ref in refs[::2]:
        assert watcher.demonitor(ref) is True
    wait_for_metrics(node, {REFERENCES: base[REFERENCES] + 100})
    world.wait_subscribed(100)   # each target still has one monitor
    for ref in refs[1::2]:
        assert watcher.demonitor(ref) is True
    world.wait_subscribed(0)
    wait_for_metrics(node, base)
    assert metric(node, DEMONITOR) >= demonitors + 200


def test_demonitor_flush_removes_a_delivered_down(world):
    node = world.node
    watcher = world.process()
    target, other = world.spawn(2)
    ref = watcher.monitor(target)
    other_ref = watcher.monitor(other)
    world.wait_subscribed(2)
    processed = metric(node, PROCESSED)
    watcher.send("work before")
    world.exit([target], "flushed")
    wait_processed(node, processed + 1)  # the DOWN for ref is in the inbox now
    watcher.send("work after")
    world.exit([other], "kept")
    wait_processed(node, processed + 2)
    assert watcher.demonitor(ref, flush=True) is True
    remaining = receive_until_sentinel(watcher)
    assert remaining[:2] == ["work before", "work after"]
    assert len(remaining) == 3, remaining
    assert_down(remaining[2], other_ref, other, "kept")


def test_demonitor_without_flush_leaves_a_delivered_down(world):
    node = world.node
    watcher = world.process()
    (target,) = world.spawn(1)
    ref = watcher.monitor(target)
    world.wait_subscribed(1)
    processed = metric(node, PROCESSED)
    world.exit([target], "already here")
    wait_processed(node, processed + 1)
    assert watcher.demonitor(ref) is True
    assert_down(watcher.receive(timeout=5), ref, target, "already here")
    world.assert_nothing_more(watcher)


def test_downs_and_work_messages_keep_arrival_order(world):
    node = world.node
    watcher = world.process()
    first, second = world.spawn(2)
    ref_first = watcher.monitor(first)
    ref_second = watcher.monitor(second)
    world.wait_subscribed(2)
    processed = metric(node, PROCESSED)
    watcher.send("a")
    world.exit([first], "one")
    wait_processed(node, processed + 1)
    node.send(watcher.pid, "b")
    world.exit([second], "two")
    wait_processed(node, processed + 2)
    watcher.send("c")
    messages = receive_all(watcher, 5)
    assert messages[0] == "a"
    assert_down(messages[1], ref_first, first, "one")
    assert messages[2] == "b"
    assert_down(messages[3], ref_second, second, "two")
    assert messages[4] == "c"


# --------------------------------------------------------------------------- watcher exit (7)


def test_watcher_exit_drops_its_monitors(world):
    node = world.node
    base = metrics_of(node, TABLE_GAUGES)
    watcher, bystander = world.process(), world.process()
    targets = world.spawn(100)
    for target in targets:
        watcher.monitor(target)
    last = targets[-1]
    bystander_ref = bystander.monitor(last)
    assert metric(node, REFERENCES) == base[REFERENCES] + 101
    world.wait_subscribed(100)
    watcher.exit("watcher gone")
    wait_for_metrics(node, {REFERENCES: base[REFERENCES] + 1})
    world.wait_subscribed(1)       # the bystander's target only
    processed = metric(node, PROCESSED)
    world.exit(targets, "later")
    assert_down(bystander.receive(timeout=5), bystander_ref, last, "later")
    wait_dispatcher_idle(node)
    assert metric(node, PROCESSED) == processed + 1, "DOWNs were dispatched to a dead watcher"
    with pytest.raises(zenmon.ProcessExited):
        watcher.receive(timeout=0.1)
    world.wait_subscribed(0)
    wait_for_metrics(node, {REFERENCES: base[REFERENCES]})
    bystander.exit()
    wait_for_metrics(node, base)


def test_watchers_exiting_before_their_targets_leak_nothing(world):
    base = metrics_of(world.node, TABLE_GAUGES)
    watchers = [world.process() for _ in range(50)]
    targets = world.spawn(50)
    for watcher, target in zip(watchers, targets):
        watcher.monitor(target)
    for watcher in watchers:
        watcher.exit()
    world.exit(targets, "both going")
    wait_for_metrics(world.node, base)
    world.wait_subscribed(0)
    world.wait_target_metric("zenmon.proxy.batcher.queue_len", 0)


# --------------------------------------------------------------------------- churn (7, 10)


@pytest.mark.timeout(120)
def test_churn_returns_tables_to_baseline(world):
    node = world.node
    base = metrics_of(node, TABLE_GAUGES)
    target_base = {key: world.target_metric(key) for key in (SUBSCRIBERS, PROCESSES)}
    watchers = [world.process() for _ in range(100)]
    targets = world.spawn(100)
    refs = {}  # ref -> (watcher index, target)
    for wi, watcher in enumerate(watchers):
        for target in targets:
            refs[watcher.monitor(target)] = (wi, target)
    assert len(refs) == 10_000
    assert metric(node, REFERENCES) == base[REFERENCES] + 10_000
    assert metric(node, TARGETS) == base[TARGETS] + 100
    # the watchers, and the targets too when they live on this node
    assert metric(node, PROCESSES) == base[PROCESSES] + (200 if world.one_node else 100)
    world.wait_subscribed(100)

    cancelled = set(list(refs)[::2])
    for ref in cancelled:
        assert watchers[refs[ref][0]].demonitor(ref) is True
    wait_for_metrics(node, {REFERENCES: base[REFERENCES] + 5_000})
    for watcher in watchers[1::2]:
        watcher.exit("watcher churn")
    world.exit(targets, "target churn")

    expected: dict[int, set[int]] = {}  # live watcher index -> refs it must get
    for ref, (wi, _target) in refs.items():
        if ref not in cancelled and wi % 2 == 0:
            expected.setdefault(wi, set()).add(ref)
    for wi, wanted in expected.items():
        downs = receive_all(watchers[wi], len(wanted), timeout=30)
        assert {d.ref for d in downs} == wanted
        assert all(d.reason == "target churn" for d in downs)
    world.assert_nothing_more(*(watchers[wi] for wi in expected))

    # Short-lived processes, each watched once, some already dead when watched.
    observer = world.process()
    batch = world.spawn(2_000)
    world.exit(batch[0::3], "early")
    for pid in batch:
        observer.monitor(pid)
    for pid in batch[2::3]:
        observer.demonitor(observer.monitor(pid))
    world.wait_subscribed(2_000 - 667)   # the live ones (one subscription each)
    world.exit(batch, "short")
    downs = receive_all(observer, 2_000, timeout=30)
    assert sum(d.reason == "noproc" for d in downs) == 667
    by_pid: dict[zenmon.Pid, list[object]] = {}
    for down in downs:
        by_pid.setdefault(down.pid, []).append(down.reason)
    assert all(by_pid[pid] == ["noproc"] for pid in batch[0::3])
    assert all(by_pid[pid] == ["short"] for pid in batch[1::3] + batch[2::3])
    world.assert_nothing_more(observer, *watchers[::2])

    for watcher in watchers[::2]:
        watcher.exit()
    observer.exit()
    wait_for_metrics(node, base, timeout=10)
    world.wait_target_metric(SUBSCRIBERS, target_base[SUBSCRIBERS])
    world.wait_target_metric("zenmon.proxy.batcher.queue_len", 0)
    assert world.target_metric(PROCESSES) == target_base[PROCESSES]

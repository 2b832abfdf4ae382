"""Monitors on local targets (watcher and target on the same node).

The numbered semantics of the brief, held for targets on this node: DOWN per
live monitor with the truncated reason, several monitors all firing, "noproc"
for dead and unknown targets, demonitor (with and without flush), a watcher's
exit dropping its monitors, and tables returning to their baseline.

"No DOWN" is checked by ordering, not by waiting: DOWNs go through the
dispatcher queue in order, so once a later DOWN (or a sentinel sent after the
dispatcher went idle) has arrived, an earlier one that was due would have too.
"""

from __future__ import annotations

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


def test_monitor_returns_unique_positive_int_refs(node):
    watchers = [node.process() for _ in range(4)]
    target = node.process()
    refs = [w.monitor(target.pid) for w in watchers for _ in range(2500)]
    assert all(type(ref) is int and ref > 0 for ref in refs)
    assert len(set(refs)) == len(refs) == 10_000


def test_monitor_of_dead_target_returns_before_the_down(node):
    watcher, target = node.process(), node.process()
    target.exit()
    ref = watcher.monitor(target.pid)
    assert type(ref) is int and ref > 0
    assert_down(watcher.receive(timeout=5), ref, target.pid, "noproc")


def test_monitor_counter(node):
    watcher, target = node.process(), node.process()
    before = metric(node, "zenmon.local.monitor")
    for _ in range(25):
        watcher.monitor(target.pid)
    assert metric(node, "zenmon.local.monitor") == before + 25
    assert metric(node, REFERENCES) >= 25


# --------------------------------------------------------------------------- DOWN


def test_exit_yields_one_down_with_ref_pid_and_reason(node):
    watcher, target = node.process(), node.process()
    ref = watcher.monitor(target.pid)
    target.exit("shutdown")
    down = watcher.receive(timeout=5)
    assert type(down) is zenmon.Down
    assert_down(down, ref, target.pid, "shutdown")
    assert_nothing_more(node, watcher)


def test_long_string_reason_is_truncated(node):
    watcher, target = node.process(), node.process()
    ref = watcher.monitor(target.pid)
    reason = "".join(chr(ord("a") + i % 26) for i in range(5000))
    target.exit(reason)
    down = watcher.receive(timeout=5)
    assert down.ref == ref and down.pid == target.pid
    assert isinstance(down.reason, str)
    assert len(down.reason) == 1024
    assert down.reason.endswith("...")
    assert down.reason[:1021] == reason[:1021]


def test_long_bytes_reason_is_truncated(node):
    watcher, target = node.process(), node.process()
    ref = watcher.monitor(target.pid)
    target.exit(b"z" * 5000)
    down = watcher.receive(timeout=5)
    assert down.ref == ref
    assert isinstance(down.reason, bytes)
    assert down.reason == b"z" * 1021 + b"..."


def test_small_reasons_pass_through(node):
    watcher = node.process()
    reasons = ["x" * 1024, ("error", 1, 2.5, None), [1, 2, 3, 4], {"a": 1, "b": [2]}, 42, None]
    expected = {}
    for reason in reasons:
        target = node.process()
        expected[watcher.monitor(target.pid)] = (target.pid, reason)
        target.exit(reason)
    for down in receive_all(watcher, len(reasons)):
        pid, reason = expected.pop(down.ref)
        assert_down(down, down.ref, pid, reason)


@pytest.mark.parametrize(
    "reason, expected",
    [
        ([1, 2, 3, 4, 5], zenmon.TRUNCATED),
        ((1, 2, 3, 4, 5), zenmon.TRUNCATED),
        ({i: i for i in range(5)}, zenmon.TRUNCATED),
        ([[["x"]]], [[[zenmon.TRUNCATED]]]),
        (("err", ["y" * 2000]), ("err", ["y" * 1021 + "..."])),
    ],
)
def test_structured_reasons_are_truncated(node, reason, expected):
    assert zenmon.TRUNCATED == "truncated"
    watcher, target = node.process(), node.process()
    ref = watcher.monitor(target.pid)
    target.exit(reason)
    assert_down(watcher.receive(timeout=5), ref, target.pid, expected)
    assert zenmon.truncate(reason) == expected


def test_reason_truncation_follows_configured_max_binary_size(node):
    node.configure(max_binary_size=16)
    watcher, target = node.process(), node.process()
    ref = watcher.monitor(target.pid)
    target.exit("q" * 100)
    assert_down(watcher.receive(timeout=5), ref, target.pid, "q" * 13 + "...")


def test_exception_reason_arrives_as_exit_exception(node):
    watcher, target = node.process(), node.process()
    ref = watcher.monitor(target.pid)
    target.exit(RuntimeError("state dump " + "s" * 5000))
    down = watcher.receive(timeout=5)
    assert down.ref == ref and down.pid == target.pid
    reason = down.reason
    assert isinstance(reason, zenmon.ExitException), reason
    assert reason.type_name == "RuntimeError"
    assert reason.message.startswith("state dump s")
    assert len(reason.message) <= 1024
    assert isinstance(reason.traceback, (str, type(None)))


def test_several_monitors_on_one_target_each_fire_once(node):
    first, second = node.process(), node.process()
    target = node.process()
    refs_first = [first.monitor(target.pid) for _ in range(5)]
    refs_second = [second.monitor(target.pid) for _ in range(3)]
    target.exit("bye")
    downs_first = receive_all(first, 5)
    downs_second = receive_all(second, 3)
    assert sorted(d.ref for d in downs_first) == sorted(refs_first)
    assert sorted(d.ref for d in downs_second) == sorted(refs_second)
    for down in downs_first + downs_second:
        assert_down(down, down.ref, target.pid, "bye")
    assert_nothing_more(node, first)
    assert_nothing_more(node, second)


# --------------------------------------------------------------------------- noproc


def test_monitor_dead_pid_yields_noproc(node):
    watcher, target = node.process(), node.process()
    target.exit("gone long ago")
    ref = watcher.monitor(target.pid)
    assert_down(watcher.receive(timeout=5), ref, target.pid, "noproc")
    assert_nothing_more(node, watcher)


def test_monitor_never_existing_pid_yields_noproc(node):
    watcher = node.process()
    ghost = zenmon.Pid(node.address, node.incarnation, 999_999)
    ref = watcher.monitor(ghost)
    assert_down(watcher.receive(timeout=5), ref, ghost, "noproc")


@pytest.mark.parametrize("delta", [-1, 1])
def test_monitor_pid_of_another_incarnation_yields_noproc(node, delta):
    watcher, live = node.process(), node.process()
    other = zenmon.Pid(node.address, node.incarnation + delta, live.pid.id)
    ref = watcher.monitor(other)
    assert_down(watcher.receive(timeout=5), ref, other, "noproc")
    assert live.alive


def test_monitor_unknown_name_yields_noproc(node):
    watcher = node.process()
    ref = watcher.monitor("nobody")
    assert_down(watcher.receive(timeout=5), ref, ("nobody", node.address), "noproc")
    ref = watcher.monitor(("nobody", node.address))
    assert_down(watcher.receive(timeout=5), ref, ("nobody", node.address), "noproc")


def test_monitor_name_of_exited_process_yields_noproc(node):
    watcher = node.process()
    node.process(name="x").exit()
    ref = watcher.monitor("x")
    assert_down(watcher.receive(timeout=5), ref, ("x", node.address), "noproc")


def test_noproc_monitors_leave_no_reference(node):
    watcher = node.process()
    base = metric(node, REFERENCES)
    dead = node.process()
    dead.exit()
    for _ in range(100):
        watcher.monitor(dead.pid)
        watcher.monitor("nobody")
    receive_all(watcher, 200)
    wait_for_metrics(node, {REFERENCES: base})


# --------------------------------------------------------------------------- names


def test_monitor_by_name(node):
    watcher, target = node.process(), node.process(name="x")
    ref = watcher.monitor("x")
    target.exit("named exit")
    assert_down(watcher.receive(timeout=5), ref, ("x", node.address), "named exit")


def test_monitor_by_name_and_node_address(node):
    watcher, target = node.process(), node.process(name="x")
    ref = watcher.monitor(("x", node.address))
    target.exit("named exit")
    assert_down(watcher.receive(timeout=5), ref, ("x", node.address), "named exit")


def test_monitor_by_name_and_by_pid_fire_separately(node):
    watcher, target = node.process(), node.process(name="x")
    by_name = watcher.monitor("x")
    by_pid = watcher.monitor(target.pid)
    target.exit("both")
    downs = {d.ref: d for d in receive_all(watcher, 2)}
    assert_down(downs[by_name], by_name, ("x", node.address), "both")
    assert_down(downs[by_pid], by_pid, target.pid, "both")


def test_monitor_by_name_follows_the_process_not_the_name(node):
    """The name is resolved when the monitor is made (as Erlang does)."""
    watcher, first = node.process(), node.process(name="x")
    ref = watcher.monitor("x")
    first.exit("first gone")
    assert_down(watcher.receive(timeout=5), ref, ("x", node.address), "first gone")
    second = node.process(name="x")
    second.exit("second gone")
    assert_nothing_more(node, watcher)


# --------------------------------------------------------------------------- demonitor


def test_demonitor_before_death_means_no_down(node):
    watcher = node.process()
    cancelled_target, later_target = node.process(), node.process()
    cancelled = watcher.monitor(cancelled_target.pid)
    kept = watcher.monitor(later_target.pid)
    assert watcher.demonitor(cancelled) is True
    cancelled_target.exit("should not be seen")
    later_target.exit("seen")  # queued after the cancelled one would have been
    assert_down(watcher.receive(timeout=5), kept, later_target.pid, "seen")
    assert_nothing_more(node, watcher)


def test_demonitor_leaves_other_refs_on_the_same_target(node):
    watcher, target = node.process(), node.process()
    refs = [watcher.monitor(target.pid) for _ in range(10)]
    for ref in refs[::2]:
        assert watcher.demonitor(ref) is True
    target.exit("half")
    downs = receive_all(watcher, 5)
    assert sorted(d.ref for d in downs) == sorted(refs[1::2])
    assert_nothing_more(node, watcher)


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


def test_demonitor_drops_the_reference(node):
    watcher, target = node.process(), node.process()
    base = metric(node, REFERENCES)
    refs = [watcher.monitor(target.pid) for _ in range(100)]
    assert metric(node, REFERENCES) == base + 100
    demonitors = metric(node, "zenmon.local.demonitor")
    for ref in refs:
        watcher.demonitor(ref)
    wait_for_metrics(node, {REFERENCES: base})
    assert metric(node, "zenmon.local.demonitor") >= demonitors + 100


def test_demonitor_flush_removes_a_delivered_down(node):
    watcher, target, other = node.process(), node.process(), node.process()
    ref = watcher.monitor(target.pid)
    other_ref = watcher.monitor(other.pid)
    processed = metric(node, PROCESSED)
    watcher.send("work before")
    target.exit("flushed")
    wait_processed(node, processed + 1)  # the DOWN for ref is in the inbox now
    watcher.send("work after")
    other.exit("kept")
    wait_processed(node, processed + 2)
    assert watcher.demonitor(ref, flush=True) is True
    remaining = receive_until_sentinel(watcher)
    assert remaining[0] == "work before"
    assert remaining[1] == "work after"
    assert len(remaining) == 3, remaining
    assert_down(remaining[2], other_ref, other.pid, "kept")


def test_demonitor_without_flush_leaves_a_delivered_down(node):
    watcher, target = node.process(), node.process()
    ref = watcher.monitor(target.pid)
    processed = metric(node, PROCESSED)
    target.exit("already here")
    wait_processed(node, processed + 1)
    assert watcher.demonitor(ref) is True
    assert_down(watcher.receive(timeout=5), ref, target.pid, "already here")
    assert_nothing_more(node, watcher)


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


def test_watcher_exit_drops_its_monitors(node):
    base = metric(node, REFERENCES)
    watcher, bystander = node.process(), node.process()
    targets = [node.process() for _ in range(100)]
    for target in targets:
        watcher.monitor(target.pid)
    last = targets[-1]
    bystander_ref = bystander.monitor(last.pid)
    assert metric(node, REFERENCES) == base + 101
    watcher.exit("watcher gone")
    wait_for_metrics(node, {REFERENCES: base + 1})
    processed = metric(node, PROCESSED)
    for target in targets:
        target.exit("later")
    assert_down(bystander.receive(timeout=5), bystander_ref, last.pid, "later")
    wait_dispatcher_idle(node)
    assert metric(node, PROCESSED) == processed + 1, "DOWNs were dispatched to a dead watcher"
    with pytest.raises(zenmon.ProcessExited):
        watcher.receive(timeout=0.1)
    wait_for_metrics(node, {REFERENCES: base})


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


def test_downs_arrive_in_exit_order(node):
    watcher = node.process()
    targets = [node.process() for _ in range(50)]
    refs = [watcher.monitor(t.pid) for t in targets]
    for i, target in enumerate(targets):
        target.exit(i)
    downs = receive_all(watcher, 50)
    assert [d.ref for d in downs] == refs
    assert [d.reason for d in downs] == list(range(50))


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


# --------------------------------------------------------------------------- churn


@pytest.mark.timeout(120)
def test_churn_returns_tables_to_baseline(node):
    base = metrics_of(node, TABLE_GAUGES)
    watchers = [node.process() for _ in range(100)]
    targets = [node.process() for _ in range(100)]
    refs = {}  # ref -> (watcher index, target)
    for wi, watcher in enumerate(watchers):
        for target in targets:
            refs[watcher.monitor(target.pid)] = (wi, target)
    assert len(refs) == 10_000
    assert metric(node, REFERENCES) == base[REFERENCES] + 10_000
    assert metric(node, "zenmon.local.targets.size") == base["zenmon.local.targets.size"] + 100
    assert metric(node, "zenmon.local.processes.size") == base["zenmon.local.processes.size"] + 200

    cancelled = set(list(refs)[::2])
    for ref in cancelled:
        assert watchers[refs[ref][0]].demonitor(ref) is True
    wait_for_metrics(node, {REFERENCES: base[REFERENCES] + 5_000})
    for watcher in watchers[1::2]:
        watcher.exit("watcher churn")
    for target in targets:
        target.exit("target churn")

    expected = {}  # live watcher index -> refs it must get
    for ref, (wi, _target) in refs.items():
        if ref not in cancelled and wi % 2 == 0:
            expected.setdefault(wi, set()).add(ref)
    for wi, wanted in expected.items():
        downs = receive_all(watchers[wi], len(wanted), timeout=30)
        assert {d.ref for d in downs} == wanted
        assert all(d.reason == "target churn" for d in downs)
    wait_dispatcher_idle(node)
    for wi in expected:
        assert receive_until_sentinel(watchers[wi]) == []

    # Short-lived processes, each watched once, some already dead when watched.
    observer = node.process()
    for i in range(2_000):
        p = node.process()
        if i % 3 == 0:
            p.exit()
        observer.monitor(p.pid)
        if i % 3 == 1:
            p.exit("short")
        elif i % 3 == 2:
            observer.demonitor(observer.monitor(p.pid))
            p.exit("short")
    downs = receive_all(observer, 2_000, timeout=30)
    assert sum(d.reason == "noproc" for d in downs) == 667
    for watcher in watchers[::2]:
        watcher.exit()
    observer.exit()
    wait_for_metrics(node, base, timeout=10)

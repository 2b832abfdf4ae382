"""Links (Erlang's link/spawn_link/trap_exit), on one node and across nodes.

Remote tests run the other end in a node subprocess (tests/nodeproc.py) and read
its processes' state and inboxes through its commands.
"""

from __future__ import annotations

import random
import sys
import threading

import pytest

import zenmon
from helpers import (
    assert_down,
    max_in_window,
    metric,
    receive_all,
    receive_timed,
    receive_until_sentinel,
    wait_for,
)

FAST = {"demand_interval": 10, "connector_sweep_interval": 10, "batcher_sweep_interval": 10}


def signals(node):
    return metric(node, "zenmon.local.link.signals")


def assert_exit(message, pid, reason):
    assert isinstance(message, zenmon.Exit), f"expected an Exit, got {message!r}"
    assert message.pid == pid, message
    assert message.reason == reason, message


# ------------------------------------------------------------------ local links


def test_exit_kills_a_linked_process_with_the_same_reason(node_factory):
    node = node_factory(**FAST)
    watcher = node.process()
    a, b = node.process(), node.process()
    a.link(b.pid)
    ref = watcher.monitor(a.pid)
    b.exit("boom")
    assert_down(watcher.receive(timeout=5), ref, a.pid, "boom")
    assert a.alive is False


def test_links_join_both_ways(node_factory):
    node = node_factory(**FAST)
    watcher = node.process()
    a, b = node.process(), node.process()
    a.link(b.pid)
    ref = watcher.monitor(b.pid)
    a.exit(("crash", 1))
    assert_down(watcher.receive(timeout=5), ref, b.pid, ("crash", 1))


def test_a_trapping_process_gets_exit_and_lives(node_factory):
    node = node_factory(**FAST)
    a, b = node.process(), node.process()
    a.trap_exits = True
    assert a.trap_exits is True
    a.link(b.pid)
    b.exit("boom")
    assert_exit(a.receive(timeout=5), b.pid, "boom")
    assert a.alive
    assert receive_until_sentinel(a) == []


def test_normal_exit_is_ignored_by_a_non_trapping_process(node_factory):
    node = node_factory(**FAST)
    a, b = node.process(), node.process()
    a.link(b.pid)
    before = signals(node)
    b.exit("normal")
    wait_for(lambda: signals(node) > before, timeout=5)
    assert a.alive
    assert receive_until_sentinel(a) == []


def test_a_trapping_process_gets_normal_exits_too(node_factory):
    node = node_factory(**FAST)
    a, b = node.process(), node.process()
    a.trap_exits = True
    a.link(b.pid)
    b.exit()
    assert_exit(a.receive(timeout=5), b.pid, "normal")


def test_signals_travel_along_chains(node_factory):
    node = node_factory(**FAST)
    watcher = node.process()
    chain = [node.process() for _ in range(6)]
    for left, right in zip(chain, chain[1:]):
        left.link(right.pid)
    refs = {watcher.monitor(p.pid): p.pid for p in chain[:-1]}
    chain[-1].exit("cascade")
    downs = receive_all(watcher, len(refs), timeout=10)
    assert {d.ref for d in downs} == set(refs)
    assert all(d.reason == "cascade" and d.pid == refs[d.ref] for d in downs)
    assert not any(p.alive for p in chain)


def test_a_trapping_process_stops_a_chain(node_factory):
    node = node_factory(**FAST)
    a, b, c = node.process(), node.process(), node.process()
    b.trap_exits = True
    a.link(b.pid)
    b.link(c.pid)
    c.exit("stop here")
    assert_exit(b.receive(timeout=5), c.pid, "stop here")
    assert a.alive and b.alive
    b.exit("then me")
    wait_for(lambda: not a.alive, timeout=5)


def test_link_to_a_dead_or_unknown_pid_signals_noproc(node_factory):
    node = node_factory(**FAST)
    a = node.process()
    a.trap_exits = True
    dead = node.process()
    dead.exit()
    unknown = zenmon.Pid(node.address, node.incarnation + 1, 5)
    a.link(dead.pid)
    a.link(unknown)
    got = receive_all(a, 2, timeout=5)
    assert_exit(got[0], dead.pid, "noproc")
    assert_exit(got[1], unknown, "noproc")


def test_link_to_a_dead_pid_kills_a_non_trapping_process(node_factory):
    node = node_factory(**FAST)
    watcher = node.process()
    a, dead = node.process(), node.process()
    dead.exit()
    ref = watcher.monitor(a.pid)
    a.link(dead.pid)
    assert_down(watcher.receive(timeout=5), ref, a.pid, "noproc")


def test_one_signal_per_link_however_often_it_is_made(node_factory):
    node = node_factory(**FAST)
    a, b = node.process(), node.process()
    a.trap_exits = True
    a.link(b.pid)
    a.link(b.pid)
    b.link(a.pid)
    a.link(a.pid)                     # to itself: nothing
    assert metric(node, "zenmon.local.links.size") == 2
    b.exit("once")
    assert_exit(a.receive(timeout=5), b.pid, "once")
    wait_for(lambda: metric(node, "zenmon.local.links.size") == 0, timeout=5)
    assert receive_until_sentinel(a) == []


def test_unlink_from_either_side_means_no_signal(node_factory):
    node = node_factory(**FAST)
    a, b, c = node.process(), node.process(), node.process()
    for p in (a, b, c):
        p.trap_exits = True
    a.link(b.pid)
    a.unlink(b.pid)
    b.link(c.pid)
    c.unlink(b.pid)                   # from the other end
    assert metric(node, "zenmon.local.links.size") == 0
    before = signals(node)
    b.exit("boom")
    c.exit("boom")
    wait_for(lambda: metric(node, "zenmon.local.dispatcher.queue_len") == 0, timeout=5)
    assert receive_until_sentinel(a) == []
    assert signals(node) == before
    a.unlink(b.pid)                   # unknown link, dead pid: no-op


def test_unlink_drops_a_signal_already_queued(node_factory):
    node = node_factory(demand_interval=5000, demand_amount=1)    # no token for 5 s
    a, b = node.process(), node.process()
    a.trap_exits = True
    a.link(b.pid)
    b.exit("queued")
    assert metric(node, "zenmon.local.dispatcher.queue_len") == 1
    a.unlink(b.pid)
    node.configure(demand_interval=10, demand_amount=1000)
    wait_for(lambda: metric(node, "zenmon.local.dispatcher.queue_len") == 0, timeout=5)
    assert receive_until_sentinel(a) == []


def test_exit_signal_interrupts_a_spawned_thread(node_factory):
    node = node_factory(**FAST)
    outcome = {}
    started = threading.Event()

    def worker(p):
        started.set()
        try:
            p.receive(timeout=30)
        except zenmon.ProcessExited as exc:
            outcome["error"] = exc

    a = node.spawn(worker)
    b = node.process()
    assert started.wait(5)
    a.link(b.pid)
    b.exit("go away")
    a.join(timeout=5)
    wait_for(lambda: "error" in outcome, timeout=5)


def test_link_by_a_dead_process_or_to_a_non_pid_raises(node):
    a, b = node.process(), node.process()
    with pytest.raises(TypeError):
        a.link("name")
    with pytest.raises(TypeError):
        a.unlink(("name", node.address))
    a.exit()
    with pytest.raises(zenmon.ProcessExited):
        a.link(b.pid)
    with pytest.raises(zenmon.ProcessExited):
        a.trap_exits = True


# ------------------------------------------------------- spawn_link / spawn_monitor


def test_spawn_link_child_crash_kills_the_parent(node_factory):
    node = node_factory(**FAST)
    watcher = node.process()
    parent = node.process()
    ref = watcher.monitor(parent.pid)
    child = parent.spawn_link(lambda p: (_ for _ in ()).throw(ValueError("child died")))
    down = watcher.receive(timeout=5)
    assert down.ref == ref and down.pid == parent.pid
    assert isinstance(down.reason, zenmon.ExitException)
    assert down.reason.type_name == "ValueError"
    assert child.alive is False


def test_spawn_link_trapping_parent_sees_the_child_even_if_it_dies_at_once(node_factory):
    node = node_factory(**FAST)
    parent = node.process()
    parent.trap_exits = True
    children = [parent.spawn_link(lambda p: None) for _ in range(20)]
    got = receive_all(parent, 20, timeout=10)
    assert sorted(e.pid for e in got) == sorted(c.pid for c in children)
    assert all(isinstance(e, zenmon.Exit) and e.reason == "normal" for e in got)


def test_spawn_link_parent_death_kills_the_child(node_factory):
    node = node_factory(**FAST)
    parent = node.process()
    outcome = {}

    def child_fn(p):
        try:
            p.receive(timeout=30)
        except zenmon.ProcessExited:
            outcome["killed"] = True

    child = parent.spawn_link(child_fn)
    parent.exit("parent gone")
    child.join(timeout=5)
    wait_for(lambda: outcome.get("killed"), timeout=5)


def test_spawn_link_coroutine(node_factory):
    node = node_factory(**FAST)

    async def main():
        import asyncio

        parent = node.process()
        parent.trap_exits = True

        async def child_fn(p):
            await asyncio.sleep(0)
            raise RuntimeError("async child")

        child = parent.spawn_link(child_fn)
        message = await parent.areceive(timeout=5)
        assert isinstance(message, zenmon.Exit) and message.pid == child.pid
        assert message.reason.type_name == "RuntimeError"

    import asyncio

    asyncio.run(main())


def test_spawn_monitor_never_noproc(node_factory):
    node = node_factory(**FAST)
    parent = node.process()
    pairs = [parent.spawn_monitor(lambda p: None) for _ in range(20)]
    downs = receive_all(parent, 20, timeout=10)
    by_ref = {d.ref: d for d in downs}
    for child, ref in pairs:
        assert_down(by_ref[ref], ref, child.pid, "normal")


def test_spawn_link_by_a_dead_process_creates_nothing(node):
    parent = node.process()
    parent.exit()
    before = metric(node, "zenmon.local.processes.size")
    with pytest.raises(zenmon.ProcessExited):
        parent.spawn_link(lambda p: None)
    with pytest.raises(zenmon.ProcessExited):
        parent.spawn_monitor(lambda p: None)
    assert metric(node, "zenmon.local.processes.size") == before


# -------------------------------------------------------------- tables, stress


def test_local_link_churn_leaves_tables_at_baseline(node_factory):
    node = node_factory(dispatch_mode="unlimited", demand_interval=10)
    keeper = node.process()
    keeper.trap_exits = True
    keys = ("zenmon.local.links.size", "zenmon.local.references.size",
            "zenmon.local.targets.size", "zenmon.local.processes.size",
            "zenmon.local.dispatcher.queue_len")
    baseline = {k: metric(node, k) for k in keys}
    for _ in range(5):
        procs = [node.process() for _ in range(200)]
        for i, p in enumerate(procs):
            keeper.link(p.pid)
            if i % 3 == 0:
                keeper.unlink(p.pid)
            if i % 3 == 1:
                p.link(procs[i - 1].pid)
        for p in procs:
            p.exit(random.choice(["normal", "boom"]))
        wait_for(lambda: metric(node, "zenmon.local.dispatcher.queue_len") == 0, timeout=10)
        while True:
            try:
                keeper.receive(timeout=0)
            except TimeoutError:
                break
    wait_for(lambda: {k: metric(node, k) for k in keys} == baseline, timeout=10,
             message=lambda: f"{ {k: metric(node, k) for k in keys} } != {baseline}")


def test_concurrent_links_and_exits_signal_exactly_once(node_factory):
    node = node_factory(dispatch_mode="unlimited")
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    try:
        watchers = [node.process() for _ in range(4)]
        for w in watchers:
            w.trap_exits = True
        targets = [node.process() for _ in range(400)]
        made = [[] for _ in watchers]

        def linker(i):
            for t in targets:
                watchers[i].link(t.pid)
                made[i].append(t.pid)

        def killer():
            for t in targets:
                t.exit("racing")

        threads = [threading.Thread(target=linker, args=(i,)) for i in range(4)]
        threads.append(threading.Thread(target=killer))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        for i, w in enumerate(watchers):
            got = receive_all(w, len(made[i]), timeout=20)
            assert sorted(e.pid for e in got) == sorted(made[i])
            assert all(e.reason in ("racing", "noproc") for e in got)
            assert receive_until_sentinel(w) == []
    finally:
        sys.setswitchinterval(old)
    wait_for(lambda: metric(node, "zenmon.local.links.size") == 0, timeout=5)


def test_link_signals_are_throttled_like_downs(node_factory):
    demand_interval, demand_amount = 50, 100
    node = node_factory(demand_interval=demand_interval, demand_amount=demand_amount)
    a = node.process()
    a.trap_exits = True
    targets = [node.process() for _ in range(1000)]
    for t in targets:
        a.link(t.pid)
    for t in targets:
        t.exit("storm")
    got, arrivals = receive_timed(a, 1000, timeout=30)
    assert sorted(e.pid for e in got) == sorted(t.pid for t in targets)
    window = demand_interval / 1000
    busiest = max_in_window(arrivals, window)
    assert busiest <= 2 * demand_amount, busiest
    span = arrivals[-1] - arrivals[0]
    assert span >= (1000 / demand_amount - 2) * window, span

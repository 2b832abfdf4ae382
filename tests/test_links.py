"""Links (Erlang's link/spawn_link/trap_exit), on one node and across nodes.

Remote tests run the other end in a node subprocess (tests/nodeproc.py) and read
its processes' state and inboxes through its commands.
"""

from __future__ import annotations

import random
import sys
import threading
import time

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
    node._core.check_invariants()


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
    node._core.check_invariants()


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


# ----------------------------------------------------------------- remote links


def remote_links(remote):
    return remote.metric("zenmon.local.links.size")


def test_remote_exit_kills_a_local_linked_process(local, remote):
    watcher = local.process()
    a = local.process()
    (r,) = remote.spawn()
    a.link(r)
    ref = watcher.monitor(a.pid)
    wait_for(lambda: remote_links(remote) == 1, timeout=10)
    remote.exit([r], "remote boom")
    assert_down(watcher.receive(timeout=10), ref, a.pid, "remote boom")


def test_remote_exit_reaches_a_trapping_local_process(local, remote):
    a = local.process()
    a.trap_exits = True
    r1, r2 = remote.spawn(2)
    a.link(r1)
    a.link(r2)
    wait_for(lambda: remote_links(remote) == 2, timeout=10)
    remote.exit([r1], ("tuple", 1))
    remote.exit([r2], "normal")
    got = receive_all(a, 2, timeout=10)
    assert {(e.pid, e.reason) for e in got} == {(r1, ("tuple", 1)), (r2, "normal")}
    assert all(isinstance(e, zenmon.Exit) for e in got)
    wait_for(lambda: metric(local, "zenmon.local.links.size") == 0, timeout=5)


def test_local_exit_kills_the_remote_end_even_right_after_linking(local, remote):
    watcher = local.process()
    r1, r2 = remote.spawn(2)
    refs = {watcher.monitor(r1): r1, watcher.monitor(r2): r2}
    a, b = local.process(), local.process()
    a.link(r1)
    b.link(r2)
    a.exit("local crash")             # at once: the EXIT op follows the LINK op
    b.exit("normal")                  # a normal exit does not kill r2
    down = watcher.receive(timeout=10)
    assert down.ref in refs and down.pid == r1 and down.reason == "local crash"
    wait_for(lambda: remote_links(remote) == 0, timeout=10)
    assert remote.alive([r1, r2]) == [False, True]


def test_local_exit_reaches_a_trapping_remote_process(local, remote):
    (r,) = remote.spawn(trap=True)
    a = local.process()
    a.link(r)
    a.exit(("why", b"bytes"))
    wait_for(lambda: remote_links(remote) == 0, timeout=10)
    got = []
    wait_for(lambda: got.extend(remote.inbox(r)) or got, timeout=10)
    assert got == [("exit", a.pid, ("why", b"bytes"))]
    assert remote.alive([r]) == [True]


def test_remote_link_to_a_dead_pid_signals_noproc(local, remote):
    (r,) = remote.spawn()
    remote.exit([r])
    a = local.process()
    a.trap_exits = True
    a.link(r)
    assert_exit(a.receive(timeout=10), r, "noproc")
    older = zenmon.Pid(r.node, r.incarnation - 1, r.id)
    a.link(older)
    assert_exit(a.receive(timeout=10), older, "noproc")


def test_remote_node_death_signals_nodedown(local, remote):
    a = local.process()
    a.trap_exits = True
    watcher = local.process()
    b = local.process()
    rs = remote.spawn(3)
    for r in rs:
        a.link(r)
    b.link(rs[0])
    ref = watcher.monitor(b.pid)
    wait_for(lambda: remote_links(remote) == 4, timeout=10)
    remote.kill()
    got = receive_all(a, 3, timeout=15)
    assert sorted(e.pid for e in got) == sorted(rs)
    assert all(e.reason == "nodedown" for e in got)
    assert_down(watcher.receive(timeout=15), ref, b.pid, "nodedown")
    wait_for(lambda: metric(local, "zenmon.local.links.size") == 0, timeout=5)


def test_local_node_loss_signals_nodedown_to_the_remote_end(node_factory, remote):
    from remote import REMOTE_SETTINGS

    gone = node_factory(**REMOTE_SETTINGS)
    (r,) = remote.spawn(trap=True)
    a = gone.process()
    a.link(r)
    wait_for(lambda: remote_links(remote) == 1, timeout=10)
    gone.stop()                       # its EXIT op never leaves: the peer is lost
    got = []
    wait_for(lambda: got.extend(remote.inbox(r)) or got, timeout=15)
    assert got == [("exit", a.pid, "nodedown")]
    wait_for(lambda: remote_links(remote) == 0, timeout=5)


def test_remote_unlink_from_the_local_side(local, remote):
    a = local.process()
    a.trap_exits = True
    (r,) = remote.spawn(trap=True)
    a.link(r)
    wait_for(lambda: remote_links(remote) == 1, timeout=10)
    a.unlink(r)
    assert metric(local, "zenmon.local.links.size") == 0
    wait_for(lambda: remote_links(remote) == 0, timeout=10)
    a.exit("after unlink")
    wait_for(lambda: remote.metric("zenmon.proxy.subscribers.size") == 0, timeout=10)
    assert remote.inbox(r) == [] and remote.alive([r]) == [True]
    b = local.process()
    b.trap_exits = True
    b.link(r)
    wait_for(lambda: remote_links(remote) == 1, timeout=10)
    b.unlink(r)
    remote.exit([r], "after unlink too")
    watcher = local.process()
    ref = watcher.monitor(r)
    down = watcher.receive(timeout=10)
    # noproc, or the real reason when our old subscription was still there
    assert down.ref == ref and down.reason in ("noproc", "after unlink too"), down
    assert receive_until_sentinel(b) == []


def test_remote_unlink_from_the_remote_side(local, remote):
    a = local.process()
    a.trap_exits = True
    watcher = local.process()
    (r,) = remote.spawn()
    a.link(r)
    wait_for(lambda: remote_links(remote) == 1, timeout=10)
    remote.unlink(r, [a.pid])
    assert remote_links(remote) == 0
    wait_for(lambda: metric(local, "zenmon.local.links.size") == 0, timeout=10)
    ref = watcher.monitor(r)
    # its subscribe out and applied (else r's exit could come first: "noproc")
    wait_for(lambda: metric(local, "zenmon.local.connector.queue_len") == 0
             and remote.metric("zenmon.proxy.subscribers.size") == 1, timeout=10)
    remote.exit([r], "unlinked before")
    assert_down(watcher.receive(timeout=10), ref, r, "unlinked before")
    assert receive_until_sentinel(a) == []


def test_remote_side_links_to_a_local_process(local, remote):
    a = local.process()
    a.trap_exits = True
    (r,) = remote.spawn()
    remote.link(r, [a.pid])
    wait_for(lambda: metric(local, "zenmon.local.links.size") == 1, timeout=10)
    remote.exit([r], "from there")
    assert_exit(a.receive(timeout=10), r, "from there")
    (r2,) = remote.spawn(trap=True)
    remote.link(r2, [a.pid])
    wait_for(lambda: metric(local, "zenmon.local.links.size") == 1, timeout=10)
    a.exit("from here")
    got = []
    wait_for(lambda: got.extend(remote.inbox(r2)) or got, timeout=10)
    assert got == [("exit", a.pid, "from here")]


def test_a_link_made_from_both_sides_signals_once(local, remote):
    a = local.process()
    a.trap_exits = True
    (r,) = remote.spawn(trap=True)
    a.link(r)
    remote.link(r, [a.pid])           # both sides: still one link
    a.link(r)
    # both subscriptions are in place (each side watches the other's end)
    wait_for(lambda: remote.metric("zenmon.proxy.subscribers.size") == 1
             and metric(local, "zenmon.proxy.subscribers.size") == 1, timeout=10)
    wait_for(lambda: remote.metric("zenmon.local.connector.queue_len") == 0
             and remote.metric("zenmon.local.link_ops.queue_len") == 0
             and metric(local, "zenmon.local.link_ops.queue_len") == 0, timeout=10)
    remote.exit([r], "once")
    assert_exit(a.receive(timeout=10), r, "once")
    wait_for(lambda: metric(local, "zenmon.local.links.size") == 0, timeout=10)
    wait_for(lambda: remote_links(remote) == 0, timeout=10)
    assert receive_until_sentinel(a) == []


def test_remote_link_churn_leaves_both_sides_at_baseline(local, remote):
    keys = ("zenmon.local.links.size", "zenmon.local.references.size",
            "zenmon.local.targets.size", "zenmon.local.link_ops.queue_len")
    a = local.process()
    a.trap_exits = True
    baseline = {k: metric(local, k) for k in keys}
    remote_keys = keys + ("zenmon.proxy.subscribers.size",)
    remote_baseline = {k: remote.metric(k) for k in remote_keys}
    for _ in range(3):
        rs = remote.spawn(300)
        locals_ = [local.process() for _ in range(100)]
        for i, r in enumerate(rs):
            a.link(r)
            if i % 3 == 0:
                a.unlink(r)
            if i % 3 == 1:
                locals_[i // 3].link(r)
        remote.exit(rs[:150], "half")
        for p in locals_[:50]:
            p.exit("some of ours")
        for p in locals_[50:]:
            for r in rs[150:]:
                p.unlink(r)
            p.exit("normal")
        remote.exit(rs[150:], "rest")
        wait_for(lambda: remote_links(remote) == 0, timeout=15)
    wait_for(lambda: {k: metric(local, k) for k in keys} == baseline, timeout=15,
             message=lambda: f"{ {k: metric(local, k) for k in keys} } != {baseline}")
    wait_for(lambda: {k: remote.metric(k) for k in remote_keys} == remote_baseline,
             timeout=15)
    local._core.check_invariants()


def test_link_ops_ride_the_subscribe_batches(local, remote):
    a = local.process()
    a.trap_exits = True
    rs = remote.spawn(2000)
    local.configure(connector_sweep_interval=200)
    sent = metric(local, "zenmon.wire.messages.sent")
    sweeps = metric(local, "zenmon.local.connector.sweep")
    for r in rs:
        a.link(r)
    wait_for(lambda: remote_links(remote) == 2000, timeout=15)
    # a few sweeps carry 2000 subscribes and 2000 LINK ops (plus heartbeats)
    assert metric(local, "zenmon.local.connector.sweep") - sweeps <= 3
    assert metric(local, "zenmon.wire.messages.sent") - sent < 60


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["token_bucket", "adaptive"])
def test_100k_remote_links_fire_exactly_once_on_node_death(node_factory, remote_node, mode):
    from remote import REMOTE_SETTINGS

    n = 100_000
    settings = {**REMOTE_SETTINGS, "connector_chunk_size": 20_000}
    if mode == "token_bucket":
        settings.update(demand_interval=10, demand_amount=500)      # 50,000 per second
    else:
        settings.update(dispatch_mode="adaptive")
    local = node_factory(**settings)
    remote = remote_node()
    rs = remote.spawn(n)
    a = local.process()
    a.trap_exits = True
    for r in rs:
        a.link(r)
    wait_for(lambda: remote_links(remote) == n, timeout=60)
    assert metric(local, "zenmon.local.links.size") == n
    remote.kill()
    deadline = time.monotonic() + 120
    got, arrivals, backlog = [], [], 0
    while len(got) < n and time.monotonic() < deadline:
        backlog = max(backlog, len(a._messages))
        try:
            got.append(a.receive(timeout=1))
        except TimeoutError:
            continue
        arrivals.append(time.monotonic())
    assert len(got) == n, f"{len(got)} of {n} exit signals"
    assert all(type(e) is zenmon.Exit and e.reason == "nodedown" for e in got)
    assert len({e.pid for e in got}) == n                       # each link once
    assert receive_until_sentinel(a) == []                      # and no more
    if mode == "token_bucket":
        # throttled like DOWNs: no faster than maximum_mps (a slow reader only
        # stretches this span; it can never shorten it)
        span = arrivals[-1] - arrivals[0]
        assert span >= (n - 2 * 500) / local.maximum_mps, span
    else:
        assert backlog <= local.config.adaptive_backlog + 1      # paced per inbox
    wait_for(lambda: metric(local, "zenmon.local.links.size") == 0, timeout=10)
    assert metric(local, "zenmon.local.targets.size") == 0

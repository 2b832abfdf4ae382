"""Node events and graceful stop (BRIEF "Node events", "Process life": node.stop()).

``p.monitor_node(address)`` yields exactly one ``NodeDown(ref, address, reason)``
when that node goes down, stops, restarts or cannot be reached;
``p.monitor_nodes(True)`` yields ``NodeUp(address)`` / ``NodeDown(None, address,
reason)`` for every peer session. A node that stops tells its peers, so their
monitors fire ``"nodedown"`` within a sweep plus delivery, not after a timeout.
"""

from __future__ import annotations

import pytest

import zenmon
from helpers import metric, receive_all, wait_for
from remote import REMOTE_SETTINGS, free_port, wait_subscribed

#: Timeouts far longer than any wait below: a DOWN or NodeDown seen within those
#: waits came from FAREWELL / GOODBYE, not from a heartbeat timeout.
PATIENT = {**REMOTE_SETTINGS, "heartbeat_timeout": 60_000, "pause_timeout": 60_000,
           "connect_timeout": 2000}
WITHIN = 10.0     # seconds: well under PATIENT's heartbeat_timeout


def test_stop_fires_remote_monitors_nodedown_at_once(node_factory, remote_node):
    local = node_factory(**PATIENT)
    remote = remote_node(settings=PATIENT)
    watcher = local.process()
    pids = remote.spawn(20)
    refs = {watcher.monitor(pid): pid for pid in pids}
    wait_subscribed(remote, 20)
    remote.stop()
    downs = receive_all(watcher, 20, timeout=WITHIN)
    assert {d.ref for d in downs} == set(refs)
    assert all(d.reason == "nodedown" and d.pid == refs[d.ref] for d in downs)
    with pytest.raises(TimeoutError):
        watcher.receive(timeout=0.3)


def test_stopping_watcher_node_says_goodbye_to_the_proxy(node_factory, remote_node):
    remote = remote_node(settings=PATIENT)
    local = node_factory(**PATIENT)
    watcher = local.process()
    for pid in remote.spawn(10):
        watcher.monitor(pid)
    wait_subscribed(remote, 10)
    local.stop()
    wait_subscribed(remote, 0, timeout=WITHIN)
    wait_for(lambda: remote.metric("zenmon.proxy.peers.size") == 0, timeout=WITHIN)


def test_monitor_node_fires_once_when_the_node_stops(node_factory, remote_node):
    local = node_factory(**PATIENT)
    remote = remote_node(settings=PATIENT)
    watcher = local.process()
    ref = watcher.monitor_node(remote.address)
    other = watcher.monitor_node(remote.address)
    assert ref != other and ref >= 2**64
    wait_for(lambda: local.compatibility_for_node(remote.address) == "compatible",
             timeout=WITHIN)
    assert watcher.demonitor(other) is True
    remote.stop()
    message = watcher.receive(timeout=WITHIN)
    assert message == zenmon.NodeDown(ref, remote.address, "stopped")
    with pytest.raises(TimeoutError):
        watcher.receive(timeout=0.3)


def test_monitor_node_of_an_unreachable_node_fires_unavailable(node_factory):
    local = node_factory(**{**REMOTE_SETTINGS, "connect_timeout": 300})
    watcher = local.process()
    address = f"tcp://127.0.0.1:{free_port()}"
    ref = watcher.monitor_node(address)
    message = watcher.receive(timeout=WITHIN)
    assert isinstance(message, zenmon.NodeDown)
    assert (message.ref, message.address) == (ref, address)
    assert message.reason in ("unavailable", "connection lost")
    with pytest.raises(TimeoutError):
        watcher.receive(timeout=0.3)


def test_monitor_node_fires_when_the_node_is_killed(node_factory, remote_node):
    local = node_factory(**REMOTE_SETTINGS)
    remote = remote_node()
    watcher = local.process()
    ref = watcher.monitor_node(remote.address)
    wait_for(lambda: local.compatibility_for_node(remote.address) == "compatible",
             timeout=WITHIN)
    remote.kill()
    message = watcher.receive(timeout=WITHIN)
    assert isinstance(message, zenmon.NodeDown) and message.ref == ref
    assert message.reason in ("connection lost", "heartbeat timeout")


def test_demonitor_flush_removes_a_delivered_node_down(node_factory):
    local = node_factory(**{**REMOTE_SETTINGS, "connect_timeout": 200})
    watcher = local.process()
    ref = watcher.monitor_node(f"tcp://127.0.0.1:{free_port()}")
    wait_for(lambda: len(watcher._messages) == 1, timeout=WITHIN)
    watcher.demonitor(ref, flush=True)
    with pytest.raises(TimeoutError):
        watcher.receive(timeout=0.1)


def test_monitor_nodes_reports_up_and_down(node_factory, remote_node):
    local = node_factory(**PATIENT)
    remote = remote_node(settings=PATIENT)
    listener = local.process()
    listener.monitor_nodes(True)
    assert local.connect(remote.address) == "compatible"
    assert listener.receive(timeout=WITHIN) == zenmon.NodeUp(remote.address)
    remote.stop()
    assert listener.receive(timeout=WITHIN) == zenmon.NodeDown(None, remote.address,
                                                               "stopped")
    listener.monitor_nodes(False)
    unreachable = f"tcp://127.0.0.1:{free_port()}"
    assert local.connect(unreachable, timeout=0.2) == "incompatible"
    with pytest.raises(TimeoutError):
        listener.receive(timeout=0.3)


def test_node_monitors_of_an_exited_process_are_dropped(node_factory):
    local = node_factory(**{**REMOTE_SETTINGS, "connect_timeout": 60_000})
    watcher = local.process()
    listener = local.process()
    listener.monitor_nodes(True)
    for _ in range(3):
        watcher.monitor_node(f"tcp://127.0.0.1:{free_port()}")
    assert local._ctx.node_monitors.sizes() == (3, 1)
    watcher.exit()
    listener.exit()
    assert local._ctx.node_monitors.sizes() == (0, 0)
    with pytest.raises(zenmon.ProcessExited):
        watcher.monitor_node("tcp://127.0.0.1:1")


def test_monitor_node_rejects_bad_addresses_at_once(node):
    watcher = node.process()
    with pytest.raises(TypeError):
        watcher.monitor_node(42)
    with pytest.raises(ValueError):
        watcher.monitor_node("not an address")
    with pytest.raises(ValueError):
        watcher.monitor_node(node.address)


def test_remote_monitor_node_sees_the_watched_node_stop(node_factory, remote_node):
    """A node in another OS process watches this one and sees its graceful stop."""
    local = node_factory(**PATIENT)
    remote = remote_node(settings=PATIENT)
    target = local.process()
    remote.monitor_nodes(0)
    ref = remote.monitor_node(0, local.address)
    (watched,) = remote.monitor(0, [target.pid])
    wait_for(lambda: metric(local, "zenmon.proxy.subscribers.size") == 1, timeout=WITHIN)
    local.stop()

    def seen():
        return len(remote.node_events()) == 3 and remote.downs_count() == 1

    wait_for(seen, timeout=WITHIN)
    events = sorted((e[:5] for e in remote.node_events()), key=lambda e: (e[1], str(e[2])))
    assert events == sorted([[0, "up", None, local.address, None],
                             [0, "down", None, local.address, "stopped"],
                             [0, "down", ref, local.address, "stopped"]],
                            key=lambda e: (e[1], str(e[2])))
    assert remote.downs() == [(0, watched, target.pid, "nodedown")]


def test_demonitor_racing_node_down_leaves_no_stray_message(node_factory):
    """demonitor(ref, flush=True) from other threads while the I/O thread fires the
    same node monitors: a demonitored ref's NodeDown is never in the inbox afterwards,
    every other ref gets exactly one."""
    import random
    import sys
    import threading
    import time

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    try:
        local = node_factory(**{**REMOTE_SETTINGS, "connect_timeout": 30,
                                "connector_sweep_interval": 5})
        address = f"tcp://127.0.0.1:{free_port()}"
        rng = random.Random(5)
        for _ in range(30):
            watcher = local.process()
            refs = [watcher.monitor_node(address) for _ in range(40)]
            dropped = set(rng.sample(refs, 20))

            def drop(chunk: list[int], delay: float, watcher=watcher) -> None:
                time.sleep(delay)      # jitter: land before, during or after the firing
                for ref in chunk:
                    watcher.demonitor(ref, flush=True)

            ordered = sorted(dropped)
            threads = [threading.Thread(target=drop, args=(ordered[i::2], rng.uniform(0, 0.08)))
                       for i in (0, 1)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(10)
            kept = set(refs) - dropped
            got = [m.ref for m in receive_all(watcher, len(kept), timeout=WITHIN)]
            assert sorted(got) == sorted(kept)
            assert not any(getattr(m, "ref", None) in dropped for m in watcher._messages)
            watcher.exit()
        assert local._ctx.node_monitors.sizes() == (0, 0)
    finally:
        sys.setswitchinterval(interval)

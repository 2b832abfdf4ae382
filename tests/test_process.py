"""Processes, pids, inboxes, spawn and node settings on one node."""

from __future__ import annotations

import asyncio
import dataclasses
import pickle
import threading
import time

import pytest

import zenmon
from helpers import (
    assert_down,
    metric,
    receive_all,
    receive_until_sentinel,
    wait_for,
)

DEFAULTS = {
    "connector_sweep_interval": 100,
    "connector_chunk_size": 5000,
    "batcher_sweep_interval": 100,
    "batcher_chunk_size": 5000,
    "demand_interval": 100,
    "demand_amount": 1000,
    "max_binary_size": 1024,
    "truncation_depth": 3,
    "heartbeat_interval": 200,
    "heartbeat_timeout": 1000,
    "connect_timeout": 1000,
    "dispatch_mode": "token_bucket",
}

METRIC_KEYS = [
    "zenmon.local.monitor",
    "zenmon.local.demonitor",
    "zenmon.local.enqueue",
    "zenmon.local.batch_length",
    "zenmon.local.references.size",
    "zenmon.local.message_queue_len",
    "zenmon.local.connector.enqueue",
    "zenmon.local.connector.sweep",
    "zenmon.local.dispatcher.events.delivered",
    "zenmon.local.dispatcher.events.processed",
    "zenmon.local.dispatcher.queue_len",
    "zenmon.proxy.subscribers.size",
    "zenmon.proxy.batcher.enqueue",
    "zenmon.proxy.batcher.sweep",
    "zenmon.proxy.message_queue_len",
    "zenmon.wire.messages.sent",
    "zenmon.wire.messages.received",
    "zenmon.wire.bytes.sent",
    "zenmon.wire.bytes.received",
    "zenmon.wire.frames.dropped",
    "zenmon.local.processes.size",
    "zenmon.local.targets.size",
]


def config_snapshot(node):
    return dataclasses.asdict(node.config)


# --------------------------------------------------------------------------- node


def test_node_binds_a_real_loopback_port(node):
    assert node.address.startswith("tcp://127.0.0.1:")
    port = int(node.address.rsplit(":", 1)[1])
    assert 0 < port < 65536


def test_node_as_context_manager():
    with zenmon.Node(listen="tcp://127.0.0.1:0") as node:
        assert int(node.address.rsplit(":", 1)[1]) > 0
        p = node.process()
        assert p.alive


def test_incarnation_is_new_and_increasing_per_node(node_factory):
    first = node_factory()
    second = node_factory()
    assert isinstance(first.incarnation, int)
    assert second.incarnation > first.incarnation


def test_metrics_has_every_documented_key_as_int(node):
    metrics = node.metrics()
    missing = [key for key in METRIC_KEYS if key not in metrics]
    assert not missing, f"missing metrics: {missing}"
    for key in METRIC_KEYS:
        assert isinstance(metrics[key], int) and not isinstance(metrics[key], bool), key


def test_processes_size_counts_live_processes(node):
    base = metric(node, "zenmon.local.processes.size")
    procs = [node.process() for _ in range(10)]
    assert metric(node, "zenmon.local.processes.size") == base + 10
    for p in procs[:4]:
        p.exit()
    assert metric(node, "zenmon.local.processes.size") == base + 6
    for p in procs[4:]:
        p.exit()
    assert metric(node, "zenmon.local.processes.size") == base


# --------------------------------------------------------------------------- pids


def test_pid_belongs_to_this_node(node):
    p = node.process()
    assert isinstance(p.pid, zenmon.Pid)
    assert p.pid.node == node.address
    assert p.pid.incarnation == node.incarnation
    assert isinstance(p.pid.id, int)


def test_pids_are_unique(node):
    pids = [node.process().pid for _ in range(1000)]
    assert len(set(pids)) == 1000


def test_pid_str_and_parse_round_trip(node):
    pid = node.process().pid
    text = str(pid)
    assert text == f"<{pid.id}.{pid.incarnation}@{node.address}>"
    assert zenmon.Pid.parse(text) == pid


@pytest.mark.parametrize(
    "address",
    ["tcp://127.0.0.1:40213", "tcp://10.0.0.5:7001?key=rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"],
)
def test_pid_parse_round_trip_for_any_address(address):
    pid = zenmon.Pid(address, 1_700_000_000_123, 42)
    assert zenmon.Pid.parse(str(pid)) == pid
    assert zenmon.Pid.parse(str(pid)).node == address


def test_pid_is_hashable_ordered_and_picklable(node):
    pid = node.process().pid
    twin = zenmon.Pid(pid.node, pid.incarnation, pid.id)
    assert twin == pid and hash(twin) == hash(pid)
    assert {pid: 1}[twin] == 1
    clone = pickle.loads(pickle.dumps(pid))
    assert clone == pid and hash(clone) == hash(pid)
    assert isinstance(clone, zenmon.Pid)
    low = zenmon.Pid(pid.node, pid.incarnation, 1)
    high = zenmon.Pid(pid.node, pid.incarnation, 2)
    assert low < high and sorted([high, low]) == [low, high]
    assert zenmon.Pid(pid.node, pid.incarnation, 1) != zenmon.Pid(pid.node, pid.incarnation + 1, 1)


def test_down_is_a_named_tuple(node):
    pid = node.process().pid
    down = zenmon.Down(7, pid, "normal")
    assert down == (7, pid, "normal")
    assert (down.ref, down.pid, down.reason) == (7, pid, "normal")
    assert pickle.loads(pickle.dumps(down)) == down


# --------------------------------------------------------------------------- names


def test_process_name_and_node(node):
    named = node.process(name="worker")
    anonymous = node.process()
    assert named.name == "worker"
    assert anonymous.name is None
    assert named.node is node


def test_whereis(node):
    p = node.process(name="x")
    assert node.whereis("x") == p.pid
    assert node.whereis("nobody") is None
    p.exit()
    assert node.whereis("x") is None


def test_name_taken(node):
    node.process(name="x")
    with pytest.raises(zenmon.NameTaken):
        node.process(name="x")
    assert issubclass(zenmon.NameTaken, zenmon.ZenmonError)
    assert issubclass(zenmon.NameTaken, ValueError)


def test_name_is_free_again_after_exit(node):
    first = node.process(name="x")
    first.exit()
    second = node.process(name="x")
    assert node.whereis("x") == second.pid != first.pid


# --------------------------------------------------------------------------- send / receive


def test_send_and_receive_in_order(node):
    p = node.process()
    for i in range(100):
        p.send(i)
    assert receive_all(p, 100) == list(range(100))


def test_node_send_by_pid(node):
    p = node.process()
    payload = {"any": ["object", 1]}
    node.send(p.pid, payload)
    assert p.receive(timeout=5) is payload


def test_node_send_and_process_send_share_arrival_order(node):
    p = node.process()
    p.send("a")
    node.send(p.pid, "b")
    p.send("c")
    assert receive_all(p, 3) == ["a", "b", "c"]


def test_receive_timeout_raises_builtin_timeout_error(node):
    p = node.process()
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        p.receive(timeout=0.1)
    elapsed = time.monotonic() - start
    assert 0.08 <= elapsed < 3.0


def test_receive_zero_timeout_on_empty_inbox(node):
    p = node.process()
    with pytest.raises(TimeoutError):
        p.receive(timeout=0)
    p.send("x")
    assert p.receive(timeout=0) == "x"


def test_blocked_receive_wakes_on_send_from_another_thread(node):
    p = node.process()
    sender = threading.Thread(target=p.send, args=("hello",))
    result = {}

    def reader():
        result["message"] = p.receive(timeout=5)

    reading = threading.Thread(target=reader)
    reading.start()
    sender.start()
    sender.join(5)
    reading.join(5)
    assert not reading.is_alive()
    assert result["message"] == "hello"


def test_receive_from_several_threads_gets_each_message_once(node):
    p = node.process()
    n_threads, n_messages = 4, 10_000
    stop = "stop"
    got: list[list[int]] = [[] for _ in range(n_threads)]
    errors: list[BaseException] = []

    def reader(bucket):
        try:
            while True:
                message = p.receive(timeout=10)
                if message == stop:
                    return
                bucket.append(message)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(got[i],)) for i in range(n_threads)]
    for thread in threads:
        thread.start()
    for i in range(n_messages):
        p.send(i)
    for _ in range(n_threads):
        p.send(stop)
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert not errors, errors
    everything = [m for bucket in got for m in bucket]
    assert len(everything) == n_messages, "a message was lost or received twice"
    assert sorted(everything) == list(range(n_messages))
    for bucket in got:  # each reader still sees arrival order
        assert bucket == sorted(bucket)


def test_areceive(node):
    async def main():
        p = node.process()
        p.send("ready")
        assert await p.areceive(timeout=5) == "ready"
        # Woken through the awaiting loop by a send from another thread.
        loop = asyncio.get_running_loop()
        sender = threading.Thread(target=p.send, args=("later",))
        loop.call_later(0.02, sender.start)
        assert await p.areceive(timeout=5) == "later"
        sender.join(5)

    asyncio.run(main())


def test_areceive_times_out(node):
    async def main():
        p = node.process()
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            await p.areceive(timeout=0.1)
        return time.monotonic() - start

    elapsed = asyncio.run(main())
    assert 0.08 <= elapsed < 3.0


def test_areceive_does_not_block_the_loop(node):
    async def main():
        p = node.process()
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        task = asyncio.create_task(ticker())
        with pytest.raises(TimeoutError):
            await p.areceive(timeout=0.2)
        task.cancel()
        return ticks

    assert asyncio.run(main()) >= 5


# --------------------------------------------------------------------------- exit


def test_exit_is_synchronous(node):
    p = node.process()
    assert p.alive and node.is_alive(p.pid)
    p.exit()
    assert p.alive is False
    assert node.is_alive(p.pid) is False


def test_is_alive_of_unknown_pid(node):
    assert node.is_alive(zenmon.Pid(node.address, node.incarnation, 999_999)) is False


def test_dead_process_cannot_monitor(node):
    p, target = node.process(), node.process()
    p.exit()
    with pytest.raises(zenmon.ProcessExited):
        p.monitor(target.pid)
    assert issubclass(zenmon.ProcessExited, zenmon.ZenmonError)


def test_dead_process_cannot_send_to_itself(node):
    p = node.process()
    p.exit()
    with pytest.raises(zenmon.ProcessExited):
        p.send("x")


def test_receive_on_dead_process_drains_then_raises(node):
    p = node.process()
    p.send(1)
    p.send(2)
    p.exit()
    assert p.receive(timeout=5) == 1
    assert p.receive() == 2
    with pytest.raises(zenmon.ProcessExited):
        p.receive()  # no timeout: must not block forever


def test_exit_wakes_a_blocked_receive(node):
    p = node.process()
    outcome = {}
    started = threading.Event()

    def reader():
        started.set()
        try:
            outcome["message"] = p.receive(timeout=10)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=reader)
    thread.start()
    started.wait(5)
    p.exit("stopped")
    thread.join(5)
    assert not thread.is_alive(), "receive still blocked after the process exited"
    assert isinstance(outcome.get("error"), zenmon.ProcessExited), outcome


def test_with_process_exits_normal(node):
    watcher = node.process()
    with node.process() as p:
        ref = watcher.monitor(p.pid)
        assert p.alive
    assert p.alive is False
    assert node.is_alive(p.pid) is False
    assert_down(watcher.receive(timeout=5), ref, p.pid, "normal")


# --------------------------------------------------------------------------- spawn


def test_spawn_thread_returning_exits_normal(node):
    watcher = node.process()
    seen = {}

    def worker(proc, a, b):
        seen["message"] = proc.receive(timeout=5)
        seen["args"] = (a, b)
        seen["thread"] = threading.get_ident()

    proc = node.spawn(worker, 1, 2)
    assert isinstance(proc.pid, zenmon.Pid)
    ref = watcher.monitor(proc.pid)
    proc.send("go")
    assert_down(watcher.receive(timeout=5), ref, proc.pid, "normal")
    assert seen["message"] == "go"
    assert seen["args"] == (1, 2)
    assert seen["thread"] != threading.get_ident()
    assert proc.alive is False


def test_spawn_thread_raising_exits_with_exit_exception(node):
    watcher = node.process()

    def worker(proc):
        proc.receive(timeout=5)
        raise ValueError("boom")

    proc = node.spawn(worker)
    ref = watcher.monitor(proc.pid)
    proc.send("go")
    down = watcher.receive(timeout=5)
    assert isinstance(down, zenmon.Down) and down.ref == ref and down.pid == proc.pid
    reason = down.reason
    assert isinstance(reason, zenmon.ExitException), reason
    assert reason.type_name == "ValueError"
    assert "boom" in reason.message
    assert isinstance(reason.traceback, str)
    assert len(reason.traceback) <= 1024


def test_spawn_thread_that_exits_itself_keeps_its_reason(node):
    watcher = node.process()

    def worker(proc):
        proc.receive(timeout=5)
        proc.exit("done early")

    proc = node.spawn(worker)
    ref = watcher.monitor(proc.pid)
    proc.send("go")
    assert_down(watcher.receive(timeout=5), ref, proc.pid, "done early")
    assert receive_until_sentinel(watcher) == []


def test_spawn_killed_from_outside_keeps_the_exit_reason(node):
    watcher = node.process()
    started = threading.Event()

    def worker(proc):
        started.set()
        while True:
            proc.receive(timeout=10)  # raises ProcessExited once killed

    proc = node.spawn(worker)
    ref = watcher.monitor(proc.pid)
    assert started.wait(5)
    proc.exit("killed")
    assert_down(watcher.receive(timeout=5), ref, proc.pid, "killed")
    assert receive_until_sentinel(watcher) == []


def test_spawn_coroutine_runs_as_task_on_the_running_loop(node):
    async def main():
        loop = asyncio.get_running_loop()
        seen = {}

        async def worker(proc, tag):
            seen["loop"] = asyncio.get_running_loop()
            seen["thread"] = threading.get_ident()
            seen["task"] = asyncio.current_task()
            seen["message"] = (await proc.areceive(timeout=5), tag)

        watcher = node.process()
        proc = node.spawn(worker, "tag")
        ref = watcher.monitor(proc.pid)
        proc.send("go")
        down = await watcher.areceive(timeout=5)
        return loop, ref, proc, down, seen

    loop, ref, proc, down, seen = asyncio.run(main())
    assert_down(down, ref, proc.pid, "normal")
    assert seen["loop"] is loop
    assert seen["thread"] == threading.get_ident()
    assert seen["task"] is not None
    assert seen["message"] == ("go", "tag")


def test_spawn_coroutine_raising_exits_with_exit_exception(node):
    async def main():
        async def worker(proc):
            await proc.areceive(timeout=5)
            raise KeyError("missing")

        watcher = node.process()
        proc = node.spawn(worker)
        ref = watcher.monitor(proc.pid)
        proc.send("go")
        return ref, proc, await watcher.areceive(timeout=5)

    ref, proc, down = asyncio.run(main())
    assert down.ref == ref and down.pid == proc.pid
    assert isinstance(down.reason, zenmon.ExitException)
    assert down.reason.type_name == "KeyError"
    assert "missing" in down.reason.message


# --------------------------------------------------------------------------- settings


def test_config_defaults(node):
    assert dataclasses.is_dataclass(node.config)
    config = config_snapshot(node)
    for key, value in DEFAULTS.items():
        assert config[key] == value, key


def test_maximum_mps(node):
    assert node.maximum_mps == 1000 * 1000 / 100
    node.configure(demand_amount=100, demand_interval=50)
    assert node.maximum_mps == 100 * 1000 / 50
    node.configure(demand_amount=7, demand_interval=3)
    assert node.maximum_mps == pytest.approx(7 * 1000 / 3)


def test_configure_changes_config_at_run_time(node):
    node.configure(demand_amount=10, demand_interval=20, connector_sweep_interval=30)
    config = config_snapshot(node)
    assert (config["demand_amount"], config["demand_interval"]) == (10, 20)
    assert config["connector_sweep_interval"] == 30
    node.configure(dispatch_mode="unlimited")
    assert node.config.dispatch_mode == "unlimited"
    node.configure(dispatch_mode="token_bucket")
    assert node.config.dispatch_mode == "token_bucket"


def test_settings_at_construction(node_factory):
    by_keyword = node_factory(demand_amount=5, batcher_chunk_size=10)
    assert by_keyword.config.demand_amount == 5
    assert by_keyword.config.batcher_chunk_size == 10
    by_config = node_factory(config=zenmon.Config(demand_interval=40))
    assert by_config.config.demand_interval == 40
    assert by_config.maximum_mps == 1000 * 1000 / 40


@pytest.mark.parametrize(
    "settings",
    [
        {"demand_amount": 0},
        {"demand_amount": -1},
        {"demand_interval": 0},
        {"demand_interval": -100},
        {"connector_sweep_interval": -1},
        {"batcher_sweep_interval": -1},
        {"connector_chunk_size": 0},
        {"batcher_chunk_size": -5},
        {"heartbeat_interval": -1},
        {"connect_timeout": -1},
        {"max_binary_size": -1},
        {"truncation_depth": -1},
        {"dispatch_mode": "bogus"},
        {"no_such_setting": 1},
        {"demand_amount": 5, "demand_interval": -1},  # all or nothing
    ],
)
def test_bad_settings_raise_value_error_and_leave_config_unchanged(node, settings):
    before = config_snapshot(node)
    mps = node.maximum_mps
    with pytest.raises(ValueError):
        node.configure(**settings)
    assert config_snapshot(node) == before
    assert node.maximum_mps == mps


def test_bad_setting_at_construction_raises_value_error():
    with pytest.raises(ValueError):
        zenmon.Node(listen="tcp://127.0.0.1:0", demand_amount=0)
    with pytest.raises(ValueError):
        zenmon.Node(listen="tcp://127.0.0.1:0", no_such_setting=1)


def test_setting_of_wrong_type_is_rejected(node):
    before = config_snapshot(node)
    with pytest.raises((TypeError, ValueError)):
        node.configure(demand_amount="10")
    assert config_snapshot(node) == before


def test_configured_rate_applies_to_later_deliveries(node):
    """A run-time configure reaches the running dispatcher, not only node.config."""
    node.configure(demand_amount=10, demand_interval=100)  # 100 per second
    watcher, target = node.process(), node.process()
    refs = {watcher.monitor(target.pid) for _ in range(50)}
    start = time.monotonic()
    target.exit()
    downs = receive_all(watcher, 50, timeout=20)
    elapsed = time.monotonic() - start
    assert {d.ref for d in downs} == refs
    # 50 DOWNs at 10 per 100 ms need at least 3 more ticks after the first bursts.
    assert elapsed >= 0.25, f"50 DOWNs in {elapsed:.3f}s: the new rate was not applied"
    wait_for(lambda: metric(node, "zenmon.local.dispatcher.queue_len") == 0)

"""Typed use of zenmon's public API, for mypy only (tests/test__sourcecode.py).

Nothing here is collected by pytest or meant to run. mypy checks the bodies below
against zenmon's annotations and its ``_core.pyi`` stub; ``assert_type`` pins the
types docs/api.md promises, so a public name that loses its annotation (and so
reads as ``Any``) fails the check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import zenmon

if TYPE_CHECKING:
    from typing_extensions import assert_type
else:

    def assert_type(value: Any, _type: Any) -> Any:
        return value


def monitors_on_one_node() -> None:
    with zenmon.Node(listen="tcp://127.0.0.1:0", demand_amount=500) as node:
        assert_type(node, zenmon.Node)
        assert_type(node.address, str)
        assert_type(node.incarnation, int)

        watcher = node.process()
        target = node.process(name="session")
        assert_type(target.pid, zenmon.Pid)
        assert_type(target.alive, bool)
        name: str | None = target.name

        ref = watcher.monitor(target.pid)
        assert_type(ref, int)
        watcher.monitor("session")
        watcher.monitor(("session", node.address))
        target.exit(reason={"error": "gone"})

        message = watcher.receive(timeout=1.0)
        if isinstance(message, zenmon.Down):
            assert_type(message.ref, int)
            pid: zenmon.Pid | tuple[str, str] = message.pid
            print(pid, message.reason, name)

        removed: bool = watcher.demonitor(ref, flush=True)
        assert removed
        watcher.send("work")
        node.send(watcher.pid, ("work", 1))
        assert_type(node.is_alive(watcher.pid), bool)
        assert_type(node.whereis("session"), zenmon.Pid | None)
        watcher.exit()


def pids_and_reasons(pid: zenmon.Pid) -> None:
    assert_type(zenmon.Pid.parse(str(pid)), zenmon.Pid)
    again = zenmon.Pid(pid.node, pid.incarnation, pid.id)
    ordered: bool = again <= pid
    marker: str = zenmon.TRUNCATED
    small = zenmon.truncate(["x" * 5000], max_binary_size=1024, truncation_depth=3)
    down = zenmon.Down(1, pid, small)
    ref, who, reason = down
    assert_type(ref, int)
    failure = zenmon.ExitException("KeyError", "'k'", "Traceback ...")
    text: str = failure.type_name + failure.message + failure.traceback
    print(ordered, marker, who, reason, text)


def remote_and_settings(node: zenmon.Node, remote_address: str) -> None:
    status: str = node.connect(remote_address, timeout=2.0)
    cached: str = node.compatibility(("guild", remote_address))
    by_node: str = node.compatibility_for_node(remote_address)
    node.configure(demand_amount=2000, demand_interval=100)
    config = node.config
    assert_type(config, zenmon.Config)
    interval: int = config.connector_sweep_interval
    assert_type(node.maximum_mps, float)
    metrics = node.metrics()
    assert_type(metrics, dict[str, int])
    delivered: int = metrics["zenmon.local.dispatcher.events.delivered"]
    print(status, cached, by_node, interval, delivered)
    node.stop(timeout=5.0)


def spawned(proc: zenmon.Process, count: int) -> None:
    for _ in range(count):
        proc.receive(timeout=0.1)


async def spawned_async(proc: zenmon.Process) -> None:
    message = await proc.areceive(timeout=0.5)
    print(message)


def spawning(node: zenmon.Node) -> None:
    worker = node.spawn(spawned, 3)
    assert_type(worker, zenmon.Process)
    node.spawn(spawned_async)
    with node.process() as scoped:
        assert_type(scoped, zenmon.Process)
        scoped.monitor(worker.pid)


def errors(proc: zenmon.Process) -> None:
    try:
        proc.monitor("nobody")
    except zenmon.ProcessExited as exc:
        base: zenmon.ZenmonError = exc
        print(base)
    try:
        proc.node.process(name="taken")
    except zenmon.NameTaken as exc:
        value_error: ValueError = exc
        print(value_error)


def configured_node() -> zenmon.Node:
    config = zenmon.Config(demand_amount=100, demand_interval=50)
    return zenmon.Node(listen="tcp://127.0.0.1:0", config=config)

"""Worlds: one watching node here and a target side, local or remote.

The behaviour suite (``tests/test_monitor_semantics.py``) is written once and
run against every kind of target, as uvloop runs each behaviour mixin against
its own loop and stock asyncio. A world gives a test the same verbs whatever
the kind:

- ``node``: the watching node, in this test process; watchers are its processes
  (:meth:`World.process`), and its metrics are the watching side's tables;
- :meth:`World.spawn` / :meth:`World.exit`: make and end target processes on the
  target side (with a reason, or a ``RuntimeError`` of it);
- ``address`` / ``incarnation``: the target node;
- :meth:`World.wait_subscribed`: once it returns, the target side holds exactly
  that many subscriptions for the watching node (a remote node's proxy table; on
  one node a monitor is in place when ``monitor`` returns, so nothing to wait for);
- :meth:`World.assert_nothing_more`: "no more DOWN", checked by ordering, never
  by waiting: on one node the dispatcher going idle, across the wire a later
  death through the same ordered stream of dead summaries (``remote_barrier``).

Kinds: ``local`` (default settings) and ``local-fast`` (10 ms ticks and sweeps)
are one node in this process; ``remote`` watches a node in a subprocess (both
ends with ``remote.REMOTE_SETTINGS``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import zenmon
from helpers import metric, receive_until_sentinel, wait_dispatcher_idle, wait_for_metrics

#: Every kind of world the behaviour suite runs against.
KINDS = ("local", "local-fast", "remote")


class World:
    """The verbs a behaviour test uses; see the module docstring."""

    kind: str
    node: Any
    address: str
    incarnation: int
    #: True when the targets live on the watching node itself (its tables hold both sides).
    one_node: bool

    def process(self) -> Any:
        """A new watcher process on the watching node."""
        return self.node.process()

    def spawn(self, n: int = 1, name: str | None = None) -> list[zenmon.Pid]:
        """Make ``n`` target processes (registered as ``name``) -> their pids."""
        raise NotImplementedError

    def exit(self, pids: Iterable[zenmon.Pid] | str, reason: Any = "normal",
             exception: bool = False) -> int:
        """End targets (or ``"all"``) with ``reason`` (``RuntimeError(reason)`` if
        ``exception``) -> how many of them were alive."""
        raise NotImplementedError

    def named(self, name: str) -> tuple[str, str]:
        """The ``(name, node address)`` form of a registered name on the target side."""
        return (name, self.address)

    def name_forms(self, name: str) -> list[Any]:
        """Every way a watcher here can name ``name`` on the target side."""
        return [self.named(name)]

    def wait_subscribed(self, count: int, timeout: float = 10.0) -> None:
        """Return once the target side holds ``count`` subscriptions from here."""

    def assert_nothing_more(self, *watchers: Any) -> None:
        """Nothing else can arrive for ``watchers``: and their inboxes are empty."""
        raise NotImplementedError

    def configure_target_side(self, **settings: Any) -> None:
        """Change settings of the node the targets live on (here too, on one node)."""
        raise NotImplementedError

    def wait_target_metric(self, key: str, value: int, timeout: float = 10.0) -> None:
        """Wait until the target node's metric ``key`` equals ``value``."""
        raise NotImplementedError

    def target_metric(self, key: str) -> int:
        """The target node's metric ``key`` now."""
        raise NotImplementedError


class LocalWorld(World):
    """Watchers and targets on one node in this process."""

    one_node = True

    def __init__(self, kind: str, node: Any) -> None:
        self.kind = kind
        self.node = node
        self.address = node.address
        self.incarnation = node.incarnation
        self._targets: dict[zenmon.Pid, Any] = {}

    def spawn(self, n: int = 1, name: str | None = None) -> list[zenmon.Pid]:
        procs = [self.node.process(name=name) for _ in range(n)]
        for proc in procs:
            self._targets[proc.pid] = proc
        return [proc.pid for proc in procs]

    def exit(self, pids: Iterable[zenmon.Pid] | str, reason: Any = "normal",
             exception: bool = False) -> int:
        chosen = list(self._targets) if pids == "all" else list(pids)
        alive = 0
        for pid in chosen:
            proc = self._targets[pid]
            alive += proc.alive
            try:  # a second exit is a no-op, or raises ProcessExited: both are fine
                proc.exit(RuntimeError(reason) if exception else reason)
            except zenmon.ProcessExited:
                pass
        return alive

    def name_forms(self, name: str) -> list[Any]:
        return [name, self.named(name)]

    def assert_nothing_more(self, *watchers: Any) -> None:
        wait_dispatcher_idle(self.node)
        for watcher in watchers:
            leftover = receive_until_sentinel(watcher)
            assert leftover == [], f"unexpected messages for {watcher}: {leftover[:5]!r}"

    def configure_target_side(self, **settings: Any) -> None:
        self.node.configure(**settings)

    def wait_target_metric(self, key: str, value: int, timeout: float = 10.0) -> None:
        wait_for_metrics(self.node, {key: value}, timeout=timeout)

    def target_metric(self, key: str) -> int:
        return int(metric(self.node, key))


class RemoteWorld(World):
    """Watchers here, targets on a node in a subprocess (``tests/remote.py``)."""

    kind = "remote"
    one_node = False

    def __init__(self, node: Any, target_node: Any) -> None:
        self.node = node
        self.target_node = target_node
        self.address = target_node.address
        self.incarnation = target_node.incarnation

    def spawn(self, n: int = 1, name: str | None = None) -> list[zenmon.Pid]:
        return self.target_node.spawn(n, name=name)

    def exit(self, pids: Iterable[zenmon.Pid] | str, reason: Any = "normal",
             exception: bool = False) -> int:
        return self.target_node.exit(pids, reason, exception=exception)

    def wait_subscribed(self, count: int, timeout: float = 10.0) -> None:
        from remote import wait_subscribed

        wait_subscribed(self.target_node, count, timeout=timeout)

    def assert_nothing_more(self, *watchers: Any) -> None:
        from remote import assert_nothing_more_remote

        assert_nothing_more_remote(self.node, self.target_node, *watchers)

    def configure_target_side(self, **settings: Any) -> None:
        self.target_node.call("configure", settings=settings)

    def wait_target_metric(self, key: str, value: int, timeout: float = 10.0) -> None:
        from remote import wait_remote

        wait_remote(self.target_node, key, lambda v: v == value, timeout=timeout,
                    what=f"== {value}")

    def target_metric(self, key: str) -> int:
        return self.target_node.metric(key)

"""The naive pure-Python baseline that ``zenmon bench`` and ``bench/`` compare against.

This is what a Python engineer writes on a first day for *local* monitors: the
same shape of API as zenmon (``NaiveNode.process()``; ``NaiveProcess.monitor(pid)
-> ref``, ``demonitor(ref)``, ``exit(reason)``, ``receive()``), with

- the references table as a dict of tuples, ``{(subscriber, ref): target}``
  (ZenMonitor's ETS table written in Python),
- a reverse index ``{target: {ref: subscriber}}`` so that an exit finds its
  monitors without a scan,
- inboxes as :class:`queue.Queue`,
- one DOWN put in the subscriber's inbox per monitor, at once, inside ``exit()``
  (no dispatcher, no throttle, no batching).

It is thread-safe the plain way (one lock around the tables), because zenmon's
``monitor``/``demonitor``/``exit`` may be called from any thread too and a
baseline without that guarantee would not be doing the same job.

It is not a reference implementation of zenmon's semantics: a subscriber that
exits while still holding monitors drops them with a scan of the references
table (the naive choice: no per-subscriber index, so no extra bytes per
monitor), and there are no names, no remote nodes and no truncation.
"""

from __future__ import annotations

import itertools
import queue
import threading
from typing import Any, NamedTuple

__all__ = ["NaiveDown", "NaiveNode", "NaiveProcess"]


class NaiveDown(NamedTuple):
    """``(ref, pid, reason)``: the naive baseline's DOWN message."""

    ref: int
    pid: int
    reason: Any


class NaiveProcess:
    """A local process of :class:`NaiveNode`: a pid and a :class:`queue.Queue` inbox."""

    __slots__ = ("node", "pid", "alive", "inbox", "monitor_count")

    def __init__(self, node: NaiveNode, pid: int) -> None:
        self.node = node
        self.pid = pid
        self.alive = True
        self.inbox: queue.Queue[Any] = queue.Queue()
        # How many monitors this process holds: lets exit() skip the scan of the
        # references table when there is nothing to drop (the common case).
        self.monitor_count = 0

    def monitor(self, target: int) -> int:
        """Monitor the local process ``target`` (a pid); returns a new ref."""
        node = self.node
        ref = next(node._refs)
        with node._lock:
            if not self.alive:
                raise RuntimeError("a dead process cannot monitor")
            if target in node.processes:
                node.references[(self, ref)] = target
                watchers = node.monitors.get(target)
                if watchers is None:
                    node.monitors[target] = {ref: self}
                else:
                    watchers[ref] = self
                self.monitor_count += 1
                return ref
        self.inbox.put(NaiveDown(ref, target, "noproc"))
        return ref

    def demonitor(self, ref: int, flush: bool = False) -> bool:
        """Drop the monitor ``ref``; unknown or repeated refs are a no-op."""
        node = self.node
        with node._lock:
            target = node.references.pop((self, ref), None)
            if target is not None:
                watchers = node.monitors[target]
                del watchers[ref]
                if not watchers:
                    del node.monitors[target]
                self.monitor_count -= 1
        if flush:
            kept = []
            while True:
                try:
                    message = self.inbox.get_nowait()
                except queue.Empty:
                    break
                if not (isinstance(message, NaiveDown) and message.ref == ref):
                    kept.append(message)
            for message in kept:
                self.inbox.put(message)
        return True

    def exit(self, reason: Any = "normal") -> None:
        """Die: every monitor on this process fires at once with ``reason``."""
        node = self.node
        with node._lock:
            if not self.alive:
                return
            self.alive = False
            del node.processes[self.pid]
            watchers = node.monitors.pop(self.pid, None)
            if self.monitor_count:
                # No per-subscriber index: find our own monitors by a scan.
                mine = [key for key in node.references if key[0] is self]
                for key in mine:
                    target = node.references.pop(key)
                    others = node.monitors.get(target)
                    if others is not None:
                        others.pop(key[1], None)
                        if not others:
                            del node.monitors[target]
                self.monitor_count = 0
            if watchers is None:
                return
            references = node.references
            deliver = []
            for ref, subscriber in watchers.items():
                if subscriber is self:
                    continue  # its own monitors went with the scan above
                del references[(subscriber, ref)]
                subscriber.monitor_count -= 1
                deliver.append((ref, subscriber))
        pid = self.pid
        for ref, subscriber in deliver:
            subscriber.inbox.put(NaiveDown(ref, pid, reason))

    def receive(self, timeout: float | None = None) -> Any:
        """Next message in arrival order; :class:`TimeoutError` on timeout."""
        try:
            return self.inbox.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError("no message") from None

    def send(self, obj: Any) -> None:
        """Put ``obj`` in this process's inbox."""
        self.inbox.put(obj)


class NaiveNode:
    """A registry of :class:`NaiveProcess` objects and their monitors.

    ``start``/``stop``/``configure`` exist so the benchmark drives both
    implementations with the same code; they do nothing here.
    """

    def __init__(self, **_settings: Any) -> None:
        self.processes: dict[int, NaiveProcess] = {}
        self.references: dict[tuple[NaiveProcess, int], int] = {}
        self.monitors: dict[int, dict[int, NaiveProcess]] = {}
        self._pids = itertools.count(1)
        self._refs = itertools.count(1)
        self._lock = threading.Lock()

    def process(self, name: str | None = None) -> NaiveProcess:
        """A new local process (names are not supported by the baseline)."""
        proc = NaiveProcess(self, next(self._pids))
        with self._lock:
            self.processes[proc.pid] = proc
        return proc

    def start(self) -> None:
        """Nothing to start: no I/O thread, no dispatcher."""

    def stop(self, timeout: float = 5.0) -> None:
        """Nothing to stop."""

    def configure(self, **_settings: Any) -> None:
        """Settings are accepted and ignored (the baseline has no throttle)."""

    def metrics(self) -> dict[str, int]:
        """Table sizes, under zenmon's metric names where one applies."""
        return {
            "zenmon.local.references.size": len(self.references),
            "zenmon.local.targets.size": len(self.monitors),
            "zenmon.local.processes.size": len(self.processes),
        }

    def __enter__(self) -> NaiveNode:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

"""The Dispatcher: delivers queued DOWNs to inboxes at a steady rate.

Token bucket (default, ZenMonitor's behaviour): every ``demand_interval`` ms at
most ``demand_amount`` DOWNs are handed to inboxes, node-wide, so the rate never
exceeds ``maximum_mps``. Entries whose monitor was demonitored meanwhile are
dropped in the core without using the budget. ``unlimited`` lifts the throttle
(deliver as fast as the I/O thread can, in chunks so sockets stay served).
``adaptive`` paces each inbox on its own backlog: every ``adaptive_interval`` ms
each inbox is topped up to ``adaptive_backlog`` messages, so a storm drains as fast
as its watchers read while a work message waits behind at most that many DOWNs.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .node import Node

UNLIMITED_CHUNK = 65536


class Dispatcher:
    """Runs on the node's I/O thread; `tick` is called when `due` says so."""

    __slots__ = ("_node", "_core", "next_tick")

    def __init__(self, node: Node) -> None:
        self._node = node
        self._core = node._core
        self.next_tick = time.monotonic()

    def deadline(self) -> float:
        """Monotonic time of the next delivery (now when unlimited work is queued)."""
        config = self._node._config
        if config.dispatch_mode != "token_bucket":
            return self.next_tick if len(self._core.downs) else float("inf")
        return self.next_tick

    def tick(self, now: float) -> None:
        """Deliver one budget's worth of DOWNs and wake each touched inbox once."""
        config = self._node._config
        backlog = 0
        if config.dispatch_mode == "unlimited":
            budget = UNLIMITED_CHUNK
            self.next_tick = now
        elif config.dispatch_mode == "adaptive":
            budget = UNLIMITED_CHUNK
            backlog = config.adaptive_backlog
            self.next_tick = now + config.adaptive_interval / 1000
        else:
            budget = config.demand_amount
            interval = config.demand_interval / 1000
            self.next_tick += interval
            if self.next_tick <= now:     # fell behind: never burst to catch up
                self.next_tick = now + interval
        if not len(self._core.downs):
            return
        touched = self._core.dispatch(budget, backlog)
        processes = self._node._slots
        for slot in touched:
            process = processes[slot]
            if process is not None:
                process._wake()

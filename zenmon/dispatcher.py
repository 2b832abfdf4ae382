"""The Dispatcher: delivers queued DOWNs to inboxes at a steady rate.

Token bucket (default, ZenMonitor's behaviour): every ``demand_interval`` ms at
most ``demand_amount`` DOWNs are handed to inboxes, node-wide, so the rate never
exceeds ``maximum_mps``. Entries whose monitor was demonitored meanwhile are
dropped in the core without using the budget. ``unlimited`` lifts the throttle
(deliver as fast as the I/O thread can, in chunks so sockets stay served).
``adaptive`` paces each inbox on its own backlog: every ``adaptive_interval`` ms,
and as soon as a watcher has read half of it, each inbox is topped up to
``adaptive_backlog`` messages, so a storm drains as fast as its watchers read while
a work message waits behind at most that many DOWNs. DOWNs for a full inbox are
parked in the core on a queue of their own, so a tick costs what it delivers, not
what is queued; a receiver that has read half its backlog moves its parked DOWNs in
itself (``Core.refill``, from ``receive``), with no hand-over to this thread, and
asks for a tick only once none stay parked.

The core's ``dispatch`` returns the processes whose inboxes got DOWNs; each is told
once per tick (``Process._delivered``: wake its receivers, and in adaptive mode the
inbox length at which to ask for more). A process asks with ``refill``; anyone who
queued DOWNs calls ``downs_queued``, which wakes the I/O thread only while the
dispatcher sleeps.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ._core import take_link_kills

if TYPE_CHECKING:
    from .context import NodeContext

UNLIMITED_CHUNK = 2048
SUBTICKS = 10      # the token bucket refills in tenths of demand_interval


class Dispatcher:
    """Runs on the node's I/O thread; `tick` is called when `deadline` says so.

    Token bucket: tokens accrue at demand_amount per demand_interval and are spent
    every tenth of the interval, the bucket holding at most a tenth's worth. So the
    rate never exceeds ``maximum_mps`` (any window of one interval sees at most 1.1 x
    demand_amount), and DOWNs arrive in small bursts that a work message in the same
    inbox does not wait long behind. Only DOWNs handed to inboxes spend tokens.
    """

    __slots__ = ("_ctx", "_core", "next_tick", "tokens", "last_refill", "sleeping")

    def __init__(self, ctx: NodeContext) -> None:
        self._ctx = ctx
        self._core = ctx.core
        self.next_tick = time.monotonic()
        self.last_refill = self.next_tick
        self.tokens = 0.0
        self.sleeping = True     # read by other threads: wake the I/O thread only then

    def downs_queued(self) -> None:
        """DOWNs (or exit signals) were queued in the core (any thread)."""
        # the dispatcher sleeps while its queue is empty: wake it then, and only then
        if self.sleeping:
            self._ctx.io.wake()

    def refill(self) -> None:
        """Tick at once (any thread): an adaptive inbox has drained to half its backlog
        while DOWNs wait for it."""
        self.next_tick = 0.0
        self._ctx.io.wake()

    def deadline(self) -> float:
        """Monotonic time of the next delivery; never while nothing is queued."""
        self.sleeping = True           # set before looking, so no enqueue goes unseen
        if self._core.pending():
            self.sleeping = False
            return self.next_tick
        return float("inf")

    def tick(self, now: float) -> None:
        """Deliver what the mode allows now and wake each touched inbox once."""
        config = self._ctx.config
        core = self._core
        backlog = 0
        bucket = False
        if config.dispatch_mode == "unlimited":
            budget = UNLIMITED_CHUNK
            self.next_tick = now
        elif config.dispatch_mode == "adaptive":
            budget = UNLIMITED_CHUNK
            backlog = config.adaptive_backlog
            self.next_tick = now + config.adaptive_interval / 1000
        else:
            interval = config.demand_interval / 1000
            step = max(interval / SUBTICKS, 0.001)
            # one step's worth: a late tick loses tokens rather than bursting past
            # maximum_mps (a loaded machine delivers a few percent under the ceiling)
            capacity = max(1.0, config.demand_amount * step / interval)
            elapsed = max(0.0, now - self.last_refill)
            self.tokens = min(capacity, self.tokens + elapsed * config.demand_amount / interval)
            self.last_refill = now
            self.next_tick = now + step
            budget = int(self.tokens)
            bucket = True
        if not budget or not core.pending():
            return
        handed = core.n_processed
        touched = core.dispatch(budget, backlog)
        if bucket:
            self.tokens -= core.n_processed - handed
        if backlog and len(core.downs):
            self.next_tick = now     # the shared queue was not looked through: go on soon
        refill_at = backlog // 2 + 1 if backlog and core.pending() else 0
        for process in touched:
            if process is not None:
                process._delivered(refill_at)
        for process, reason in take_link_kills(core):
            if process is not None:    # a link signal kills it (and so on along its links)
                process.exit(reason)

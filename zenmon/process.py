"""Processes: anything with an identity that can die, with an inbox.

An inbox is a deque plus a list of waiters. Producers append first and wake
second (under the inbox lock), consumers register as waiters under the same lock
after a last look at the deque, so no wake-up is ever missed. Waking happens once
per batch of messages, not once per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from ._core import Pid as _Pid
from .errors import ProcessExited
from .messages import NodeDown as _NodeDown

if TYPE_CHECKING:
    from ._core import Pid
    from .node import Node


class Process:
    """A local process: a pid, an inbox, monitors. Made by ``node.process()``.

    Usable from any thread and from asyncio. ``with node.process() as p:`` exits
    the process with reason ``"normal"`` when the block ends.
    """

    __slots__ = ("_node", "pid", "name", "_id", "_messages", "_waiters", "_lock",
                 "_alive", "_task", "_core", "_refill_at", "__weakref__")

    def __init__(self, node: Node, pid: Pid, name: str | None, messages: deque[Any]) -> None:
        self._node = node
        self.pid = pid
        self.name = name
        self._id = pid.id
        self._messages = messages
        self._core = node._core     # no bound methods kept: fewer GC-tracked objects
        self._refill_at = 0         # adaptive mode: ask for more below this inbox length
        self._waiters: list[Any] | None = None   # made on first wait (GC-light)
        self._lock = threading.Lock()
        self._alive = True

    def __repr__(self) -> str:
        name = f" {self.name!r}" if self.name else ""
        state = "alive" if self._alive else "dead"
        return f"<zenmon.Process {self.pid}{name} {state}>"

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.exit("normal")

    @property
    def node(self) -> Node:
        """The node this process lives on."""
        return self._node

    @property
    def alive(self) -> bool:
        """True until the process exits."""
        return self._alive

    def monitor(self, target: Any) -> int:
        """Monitor `target` (a Pid, a local name, or ``(name, node_address)``). -> ref.

        Returns at once; exactly one :class:`zenmon.Down` for the ref arrives in this
        inbox when the target dies (``"noproc"`` if it is already dead or unknown,
        ``"nodedown"`` if its node is down, unreachable or incompatible), unless the
        ref is demonitored first.
        """
        if type(target) is _Pid:
            ref = self._core.monitor_pid(self._id, target)
            if ref:
                return ref
        return self._node._local.monitor(self._id, target)

    def demonitor(self, ref: int, flush: bool = False) -> bool:
        """Cancel monitor `ref`: no DOWN for it is delivered afterwards. Always True.

        With ``flush=True`` a DOWN for `ref` already in the inbox is removed too.
        Unknown, foreign or repeated refs are a no-op.
        """
        if type(ref) is not int:
            raise TypeError(f"ref must be an int, not {type(ref).__name__}")
        if 0 < ref < 18446744073709551616:
            self._core.demonitor(self._id, ref)
        elif ref >= 18446744073709551616:
            self._node._node_monitors.demonitor(self, ref)
        if flush:
            if ref < 18446744073709551616:
                # in C, in place: atomic against every appender, order kept
                self._core.flush(self._messages, ref)
            else:
                # a node monitor's NodeDown: list() and remove() are single C calls
                for message in list(self._messages):
                    if type(message) is _NodeDown and message.ref == ref:
                        self._messages.remove(message)
                        break
        return True

    def monitor_node(self, address: str) -> int:
        """Watch the node at `address`. -> ref (returns at once).

        Exactly one :class:`zenmon.NodeDown` ``(ref, address, reason)`` arrives in this
        inbox when that node goes down, stops, restarts or cannot be reached (within
        ``connect_timeout`` plus a sweep), unless ``demonitor(ref)`` comes first. While
        the ref is held this node keeps a session with that node.
        """
        return self._node._monitor_node(self, address)

    def monitor_nodes(self, enabled: bool = True) -> None:
        """Receive :class:`zenmon.NodeUp` ``(address)`` for every peer session of this
        node that comes up and ``NodeDown(None, address, reason)`` for every one that
        goes down (Erlang's ``net_kernel:monitor_nodes``); ``False`` stops them."""
        if not self._alive:
            raise ProcessExited(f"{self.pid} has exited")
        self._node._node_monitors.subscribe(self, bool(enabled))

    def _deliver(self, message: Any) -> None:
        # zenmon's own messages (node events): dropped once the process is dead
        if self._alive:
            self._messages.append(message)
            self._wake()

    def set_bulk(self, enabled: bool = True) -> None:
        """Receive the DOWNs of each dispatcher tick as one :class:`zenmon.DownBatch`.

        Saves a receive per DOWN when a storm comes; each DOWN still arrives exactly
        once, and ``demonitor(ref, flush=True)`` also removes it from a queued batch.
        """
        self._core.set_bulk(self._id, bool(enabled))

    def send(self, message: Any) -> None:
        """Put `message` in this process's inbox (work messages, replies...)."""
        if not self._alive:
            raise ProcessExited(f"{self.pid} has exited")
        self._messages.append(message)
        self._wake()

    def exit(self, reason: Any = "normal") -> None:
        """Kill this process with `reason`; returns once its DOWNs are queued.

        Every monitor on it fires with the truncated reason; every monitor it holds
        is dropped (and unsubscribed remotely). Exiting twice is a no-op.
        """
        self._node._exit_process(self, reason)

    def receive(self, timeout: float | None = None) -> Any:
        """Next inbox message in arrival order; waits up to `timeout` seconds.

        Raises the built-in TimeoutError on timeout, and ProcessExited when the
        process is dead and its inbox is empty. `timeout` is None or a finite
        number >= 0 (NaN or negative: ValueError, as ``queue.Queue.get``); ``inf``
        (or anything past ``threading.TIMEOUT_MAX``) means no timeout.
        """
        timeout = _check_timeout(timeout)
        messages = self._messages
        try:
            message = messages.popleft()
        except IndexError:
            pass
        else:
            if self._refill_at and len(messages) < self._refill_at:
                self._refill()
            return message
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            waiter = threading.Lock()
            waiter.acquire()
            with self._lock:
                if messages:
                    return self._take()
                if not self._alive:
                    raise ProcessExited(f"{self.pid} has exited")
                if self._waiters is None:
                    self._waiters = []
                self._waiters.append(waiter.release)
            if messages or not self._alive:
                # a producer appends, then looks for waiters without our lock: look
                # again now that we are registered, or its wake-up could be missed
                with contextlib.suppress(RuntimeError):
                    waiter.release()
            if deadline is None:
                waiter.acquire()
            else:
                waiter.acquire(timeout=max(0.0, deadline - time.monotonic()))
            try:
                return self._take()
            except IndexError:
                pass
            with self._lock:
                if self._waiters and waiter.release in self._waiters:
                    self._waiters.remove(waiter.release)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"no message for {self.pid} within {timeout} s")

    async def areceive(self, timeout: float | None = None) -> Any:
        """``receive`` for asyncio: awaits the next message on the running loop."""
        timeout = _check_timeout(timeout)
        messages = self._messages
        try:
            message = messages.popleft()
        except IndexError:
            pass
        else:
            if self._refill_at and len(messages) < self._refill_at:
                self._refill()
            return message
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            future = loop.create_future()

            def wake(future: asyncio.Future[None] = future) -> None:
                loop.call_soon_threadsafe(_resolve, future)

            with self._lock:
                if messages:
                    return self._take()
                if not self._alive:
                    raise ProcessExited(f"{self.pid} has exited")
                if self._waiters is None:
                    self._waiters = []
                self._waiters.append(wake)
            if messages or not self._alive:   # see receive: a wake-up in between
                _resolve(future)
            try:
                if deadline is None:
                    await future
                else:
                    await asyncio.wait_for(future, max(0.0, deadline - loop.time()))
            except (asyncio.TimeoutError, TimeoutError):
                pass
            finally:
                with self._lock:
                    if self._waiters and wake in self._waiters:
                        self._waiters.remove(wake)
            try:
                return self._take()
            except IndexError:
                pass
            if deadline is not None and loop.time() >= deadline:
                raise TimeoutError(f"no message for {self.pid} within {timeout} s")

    def _take(self) -> Any:
        message = self._messages.popleft()
        if self._refill_at and len(self._messages) < self._refill_at:
            self._refill()
        return message

    def _refill(self) -> None:
        # adaptive pacing: the inbox has drained to half its backlog and DOWNs are
        # waiting for it: have the dispatcher top it up now, not at its next tick
        self._refill_at = 0
        self._node._dispatcher.next_tick = 0.0
        self._node._wake_io()

    def _wake(self) -> None:
        if self._waiters:
            with self._lock:
                waiters = self._waiters or []
                self._waiters = None
            for wake in waiters:
                try:
                    wake()
                except (RuntimeError, ValueError):  # a waiter's event loop has closed
                    pass


#: Waits longer than this are waits without a deadline (threading's own ceiling).
_LONGEST_WAIT = threading.TIMEOUT_MAX


def _check_timeout(timeout: float | None) -> float | None:
    """A receive timeout in seconds: None or finite and >= 0 (inf means None)."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, not "
                        f"{type(timeout).__name__}")
    if timeout != timeout:
        raise ValueError("timeout must not be NaN")
    if timeout < 0:
        raise ValueError("timeout must be a non-negative number")
    if timeout >= _LONGEST_WAIT:
        return None
    return float(timeout)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


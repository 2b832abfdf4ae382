"""The I/O thread of a node: its ZeroMQ context, poller, wake-up pipe and timers.

One thread owns every socket of the node and runs every timed step:

- the proxy's ROUTER and each connector's DEALER and socket monitor are polled, each
  with the handler it was registered with (``watch``);
- commands posted from other threads (``call``) run in the order posted, once per turn;
- the dispatcher ticks when its deadline comes (it sleeps while nothing is queued:
  ``wake`` it), connectors are swept every ``connector_sweep_interval`` and the proxy's
  batchers at the pace its peers asked for.

The thread runs Python in slices: once it has been busy for ``GIL_SLICE`` without
waiting, it sleeps briefly before its next step (``zenmon.node.gil_yields``), so
threads woken during a storm (receivers, the service's own) get the GIL and a CPU
within a slice, not after CPython's 5 ms switch interval. A step that raises is
logged and counted in ``zenmon.node.internal_errors``, never fatal. Other threads
reach this thread only through ``call`` and ``wake`` (an ``os.pipe()`` polled next
to the sockets); everything else here runs on it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import zmq

if TYPE_CHECKING:
    from .connector import Connectors
    from .context import NodeContext
    from .dispatcher import Dispatcher
    from .proxy import Proxy

_log = logging.getLogger("zenmon")

#: Seconds of Python the I/O thread runs before it lets other threads take the GIL
#: (a socket handler, too, stops reading frames once it has used a slice).
#: CPython hands the GIL to a waiting thread only after its switch interval (5 ms),
#: and not at all while the holder drops and retakes it in short C calls (every
#: poll does): a receiver woken during a storm could wait for the whole storm.
GIL_SLICE = 0.0002
#: How long the hand-over sleeps (~25 us with the thread's timer slack at 1 us): a
#: real sleep, so the thread leaves its CPU too. A woken thread is often queued on
#: its waker's CPU and the kernel may leave it there for milliseconds while the
#: other CPU idles; a sleep too short to deschedule (1 us) hands over neither.
GIL_YIELD = 20e-6
PR_SET_TIMERSLACK = 29       # linux/prctl.h


def precise_sleeps() -> None:
    """Give the calling thread a 1 us timer slack (Linux; elsewhere nothing), so its
    short hand-over sleeps take ~20 us, not the default slack's ~80 us."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class IOThread:
    """The node's I/O thread (made by ``Node.start``, ended by ``Node.stop``)."""

    def __init__(self, ctx: NodeContext) -> None:
        self._ctx = ctx
        self.context: zmq.Context[Any] | None = None     # made by open()
        self.running = False
        self._thread: threading.Thread | None = None
        self._poller = zmq.Poller()
        self._handlers: dict[Any, Callable[[], None]] = {}
        self._commands: deque[Callable[[], None]] = deque()
        self._wake_r = self._wake_w = -1       # the wake pipe: made by start()
        self._wake_lock = threading.Lock()     # no write races the pipe's close
        self._wake_pending = False

    @property
    def wake_fd(self) -> int:
        """The wake pipe's write end (-1 before start and after close)."""
        return self._wake_w

    # ---------------------------------------------------------- any thread

    def wake(self) -> None:
        """Make the I/O thread run a turn now (cheap when a wake-up is already pending)."""
        if not self._wake_pending:
            self._wake_pending = True
            with self._wake_lock:
                if self._wake_w < 0:          # not started, or stopped: nothing to wake
                    return
                try:
                    os.write(self._wake_w, b"!")
                except OSError:
                    pass

    def call(self, command: Callable[[], None]) -> None:
        """Run `command()` on the I/O thread, at its next turn."""
        self._commands.append(command)
        self.wake()

    # ------------------------------------------------------------ life cycle

    def open(self) -> None:
        """Make the ZeroMQ context (before the proxy binds its ROUTER)."""
        self.context = zmq.Context()

    def start(self, name: str, dispatcher: Dispatcher, connectors: Connectors,
              proxy: Proxy) -> None:
        """Open the wake pipe and start the thread (the proxy's ROUTER is bound)."""
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self.running = True
        self._thread = threading.Thread(target=self._run, args=(dispatcher, connectors, proxy),
                                        name=name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """End the loop and wait up to `timeout` s for the thread (it closes the sockets)."""
        self.running = False
        self.wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def close(self) -> None:
        """Destroy the ZeroMQ context and close the wake pipe (after ``stop``)."""
        if self.context is not None:
            self.context.destroy(linger=0)
            self.context = None
        with self._wake_lock:             # a late wake() must not write to a reused fd
            fds = (self._wake_r, self._wake_w)
            self._wake_r = self._wake_w = -1
        for fd in fds:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass

    # ----------------------------------------------------------- I/O thread

    def socket(self, kind: int) -> zmq.Socket[Any]:
        """A new socket of this node's ZeroMQ context."""
        assert self.context is not None
        return self.context.socket(kind)

    def watch(self, socket: Any, handler: Callable[[], None]) -> None:
        """Poll `socket`; call `handler()` when it is readable."""
        self._poller.register(socket, zmq.POLLIN)
        self._handlers[socket] = handler

    def unwatch(self, socket: Any) -> None:
        """Stop polling `socket` (unknown sockets are ignored)."""
        self._handlers.pop(socket, None)
        try:
            self._poller.unregister(socket)
        except KeyError:
            pass

    def _run(self, dispatcher: Dispatcher, connectors: Connectors, proxy: Proxy) -> None:
        ctx = self._ctx
        poller = self._poller
        poller.register(self._wake_r, zmq.POLLIN)
        self.watch(proxy.socket, proxy.on_readable)
        handlers = self._handlers
        wire = ctx.wire
        next_connector_sweep = next_batcher_sweep = time.monotonic()
        precise_sleeps()
        slice_start = time.monotonic()
        while self.running:
            now = time.monotonic()
            if now - slice_start > GIL_SLICE:
                # busy since the last real wait: hand the GIL (and this CPU) to whoever
                # waits for it, before the next step
                time.sleep(GIL_YIELD)
                wire.gil_yields += 1
                now = slice_start = time.monotonic()
            deadline = min(dispatcher.deadline(), next_connector_sweep, next_batcher_sweep)
            timeout = int(max(0.0, deadline - now) * 1000 + 0.999)
            ready = poller.poll(timeout)
            if timeout and time.monotonic() - now > GIL_SLICE / 4:
                slice_start = time.monotonic()        # the poll waited: a new slice
            for socket, _ in ready:
                if socket == self._wake_r:
                    self._drain_wake()
                else:
                    handler = handlers.get(socket)
                    if handler is not None:
                        self._guarded(handler)
            for _ in range(len(self._commands)):   # what was posted so far: a command
                self._guarded(self._commands.popleft())   # that re-posts runs next turn
            now = time.monotonic()
            if now >= dispatcher.deadline():
                self._guarded(dispatcher.tick, now)
            if now >= next_connector_sweep:
                next_connector_sweep = now + ctx.config.connector_sweep_interval / 1000
                connectors.sweep(now, self._guarded)
            if now >= next_batcher_sweep:
                next_batcher_sweep = now + proxy.sweep_interval() / 1000
                self._guarded(proxy.sweep, now)
        connectors.close_all()
        proxy.close()
        if ctx.curve is not None:
            ctx.curve.stop()

    def _guarded(self, step: Callable[..., None], *args: Any) -> None:
        """Run one I/O-thread step; a bug in it is logged and counted, never fatal."""
        try:
            step(*args)
        except Exception:
            self._ctx.wire.internal_errors += 1
            _log.exception("zenmon I/O thread step %r failed", step)

    def _drain_wake(self) -> None:
        self._wake_pending = False
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

"""The node: lifecycle, the name registry and the settings; it wires the components.

``Node`` makes one :class:`zenmon.context.NodeContext` and the components around it:
Local, Links, the Dispatcher, the Connectors, the Proxy and the I/O thread
(``zenmon.iothread``). Each gets the context, never the node.

Threads: the I/O thread owns every ZeroMQ socket and every sweep timer.
``monitor``, ``demonitor``, ``exit`` and ``send`` may be called from any thread;
they touch only the core tables (each core call is atomic: a critical section)
and inboxes. Work that needs a socket (``connect``) is posted to the I/O thread
(``ctx.io.call``) and wakes it through a pipe.

Each operation takes one short path and enters the core at one place:

- ``p.monitor(pid)``: Process -> ``Core.monitor_pid`` (one C call). Refused (no
  route to that node yet, dead target, old incarnation): Process -> Local ->
  ``Connector.bind`` (binds and routes the connector) -> ``Core.monitor_pid``
  again, or ``Core.monitor_fired`` for a ``noproc``.
- ``p.monitor(name)``: Process -> Local -> ``Core.monitor``; a remote name:
  Process -> Local -> Connector -> ``Core.monitor``.
- ``p.demonitor(ref)``: Process -> ``Core.demonitor``.
- ``p.link(pid)``: Process -> Links -> ``link_local`` or, after ``Connector.bind``,
  ``link_remote``.
- ``p.exit(reason)``: Process -> ``Core.process_exit``, then the name and the node
  monitors go and the dispatcher is woken if DOWNs were queued.
- delivery: I/O thread -> ``Dispatcher.tick`` -> ``Core.dispatch`` -> each
  touched ``Process`` (``_delivered``).
- the wire: a SUBSCRIBE batch: Proxy -> ``Core.subscribe_many``; a dead summary:
  Connector -> ``Core.fire_dead_summary``; a lost node: Connector ->
  ``Core.fire_connector``.
"""

from __future__ import annotations

import concurrent.futures
import errno
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import zmq

from . import _core
from . import metrics as _metrics
from ._core import Core, Pid
from .address import split_endpoint
from .config import Config
from .connector import Connectors
from .context import NodeContext
from .curve import Curve
from .dispatcher import Dispatcher
from .errors import NameTaken, ZenmonError
from .iothread import IOThread
from .links import Links
from .local import Local
from .messages import Down, DownBatch, Exit
from .node_events import NodeMonitors
from .process import Names, Process, exit_processes, spawn
from .protocol import check_address
from .proxy import Proxy

_log_node = logging.getLogger("zenmon.node")
#: bind failures that are about the machine (address in use, not ours...), not the text
_OS_BIND_ERRORS = {errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES, errno.EPERM}
_last_incarnation = 0
_incarnation_lock = threading.Lock()


def _new_incarnation() -> int:
    """Time based and strictly increasing in this OS process: a restart is newer."""
    global _last_incarnation
    with _incarnation_lock:
        _last_incarnation = max(time.time_ns(), _last_incarnation + 1)
        return _last_incarnation


class Node:
    """A zenmon node: local processes, their monitors, and the link to other nodes.

    ``Node(listen="tcp://127.0.0.1:0", config=None, curve=None, advertise=None,
    **settings)``; call ``start()`` (or use ``with``) before making processes.

    ``listen`` is the endpoint the node binds (``tcp://0.0.0.0:7001``,
    ``tcp://[::1]:0``...); ``advertise`` is the address peers dial and every pid
    carries (``tcp://sessions-3.internal:7001``; port 0 stands for the bound port).
    ``address`` is that advertised identity. Without ``advertise`` it is the listen
    host as written (not resolved) with the bound port, and a wildcard host
    advertises ``socket.gethostname()``. A restarted node gets a new ``incarnation``.
    Settings (keyword arguments or a :class:`zenmon.Config`) are integers in
    milliseconds; method timeouts (``stop``, ``connect``) are seconds.
    """

    def __init__(self, listen: str = "tcp://127.0.0.1:0", config: Config | None = None,
                 curve: Curve | None = None, advertise: str | None = None,
                 **settings: Any) -> None:
        if not isinstance(listen, str):
            raise TypeError("listen must be a ZeroMQ endpoint string")
        split_endpoint(listen)
        if advertise is not None:
            split_endpoint(advertise)
        self._listen = listen
        self._advertise = advertise
        self.address = ""
        self.incarnation = 0
        self._core = Core(Down, DownBatch)
        _core.set_exit_type(self._core, Exit)
        self._names = Names()
        self._lock = threading.RLock()         # configure
        self._started = False
        ctx = self._ctx = NodeContext(
            self._core,
            (config or Config()).replace(**settings) if settings else (config or Config()),
            _metrics.WireCounters(), curve, NodeMonitors(), self._names.whereis,
            self.process, self._names.unregister)
        ctx.io = self._io = IOThread(ctx)
        ctx.connectors = Connectors(ctx)

    # ------------------------------------------------------------ life cycle

    def __enter__(self) -> Node:
        if not self._ctx.running:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<zenmon.Node {self.address or self._listen}>"

    def start(self) -> Node:
        """Bind the node's ROUTER, start its I/O thread. -> self."""
        ctx = self._ctx
        if ctx.running:
            raise ZenmonError("node already started")
        if self._started:
            raise ZenmonError("a stopped node cannot be restarted: make a new Node")
        self.incarnation = ctx.incarnation = _new_incarnation()
        ctx.io.open()
        proxy = ctx.proxy = Proxy(ctx)
        try:
            self.address = ctx.address = proxy.bind(self._listen, self._advertise)
        except zmq.ZMQError as exc:
            self._release_start()
            message = f"cannot listen on {self._listen!r}: {exc.strerror}"
            if exc.errno in _OS_BIND_ERRORS:
                raise OSError(exc.errno, message) from exc
            raise ValueError(message) from exc
        except BaseException:
            self._release_start()
            raise
        self._core.set_identity(self.address, self.incarnation)
        ctx.local = Local(ctx)
        ctx.links = Links(ctx)
        ctx.dispatcher = Dispatcher(ctx)
        self._started = True
        ctx.io.start(f"zenmon-io {self.address}", ctx.dispatcher, ctx.connectors, proxy)
        _log_node.info("node %s started (listening on %s)", self.address, self._listen)
        return self

    def _release_start(self) -> None:
        """Undo a start that failed: close the ROUTER, stop ZAP, destroy the context."""
        ctx = self._ctx
        if ctx.proxy is not None:
            ctx.proxy.close()
        if ctx.curve is not None:
            ctx.curve.stop()
        ctx.io.close()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the I/O thread and close every socket. Every process of the node is
        dead afterwards (reason ``"shutdown"``: spawned tasks are cancelled, blocked
        receives raise ProcessExited).

        `timeout` is how long, in seconds, to wait for the I/O thread to finish.

        Peers are told (a FAREWELL to every connector that watches this node, a
        GOODBYE to every proxy this node watches): their monitors on this node's
        processes fire ``"nodedown"`` within a sweep plus delivery, not after a timeout.
        """
        io = self._io
        if not io.running:
            return
        io.stop(timeout)
        self._exit_all("shutdown")
        io.close()

    def _exit_all(self, reason: Any) -> None:
        """Kill every live process of this node with `reason`."""
        exit_processes(self._ctx, _core.live_owners(self._core), reason)

    def _require_started(self) -> None:
        if not self._io.running:       # (process() is hot: one attribute, no calls)
            self._ctx.require_started()

    # ------------------------------------------------------------- processes

    def process(self, name: str | None = None, bulk: bool = False) -> Process:
        """Make a local process with an inbox, registered as `name` if given.

        With ``bulk=True`` the DOWNs of one dispatcher tick arrive as one
        :class:`zenmon.DownBatch` message (see ``Process.set_bulk``).
        """
        self._require_started()
        if name is not None and not isinstance(name, str):
            raise TypeError("a process name must be a str")
        names = self._names
        with names.lock:
            if name is not None and name in names:
                raise NameTaken(f"{name!r} is already registered on {self.address}")
            messages: deque[Any] = deque()
            pid_id = self._core.process_new(messages)
            process = Process(self._ctx, self, Pid(self.address, self.incarnation, pid_id),
                              name, messages)
            self._core.set_owner(pid_id, process)
            if name is not None:
                names.add(name, process)
        if bulk:
            process.set_bulk(True)
        return process

    def spawn(self, fn: Callable[..., Any], *args: Any, name: str | None = None) -> Process:
        """Run ``fn(process, *args)`` as a new process. -> the Process.

        A plain function runs on its own thread; a coroutine function runs as a task
        on the caller's running event loop (RuntimeError, and no process made, when
        none runs). A plain function that returns an awaitable (a lambda returning a
        coroutine) has it run as a task on the loop that was running when spawn was
        called; with no loop then, the process exits with a TypeError instead (the
        awaitable is closed, never left unawaited). The process exits ``"normal"``
        when fn returns, or with the exception (made transportable) when it raises.
        With `name`, the process is registered under that name on this node
        (:class:`zenmon.NameTaken` if the name is in use).
        """
        return spawn(self.process, fn, args, name, None)

    def whereis(self, name: str) -> Pid | None:
        """The pid registered as `name` on this node, or None."""
        return self._names.whereis(name)

    def is_alive(self, pid: Pid) -> bool:
        """True if `pid` is a live process of this node (incarnation included)."""
        if not isinstance(pid, Pid):
            raise TypeError("is_alive takes a zenmon.Pid")
        return (pid.node == self.address and pid.incarnation == self.incarnation
                and self._core.is_alive(pid.id))

    def send(self, pid: Pid, message: Any) -> None:
        """Put `message` in the inbox of local process `pid`. Dead pids: dropped."""
        if not isinstance(pid, Pid):
            raise TypeError("send takes a zenmon.Pid")
        if pid.node != self.address or pid.incarnation != self.incarnation:
            raise ValueError(f"{pid} is not a process of this node")
        process: Process | None = self._core.owner_of(pid.id)
        if process is not None:
            process.send(message)

    def exit_many(self, pids: Iterable[Pid], reason: Any = "normal") -> int:
        """Exit each live process of this node among `pids` with `reason`, as
        ``Process.exit`` does for one (its DOWNs queued when this returns). -> how many
        exited; dead pids are skipped.

        For a service shutting down thousands of sessions at once: the reason is
        truncated once and the dispatcher woken once. Every pid is checked before any
        process exits (TypeError for a non-Pid, ValueError for a pid of another node).
        """
        pids = list(pids)
        address, incarnation = self.address, self.incarnation
        for pid in pids:
            if type(pid) is not Pid:
                raise TypeError(f"exit_many takes zenmon.Pids, not {type(pid).__name__}")
            if pid.node != address or pid.incarnation != incarnation:
                raise ValueError(f"{pid} is not a process of this node")
        owner_of = self._core.owner_of
        return exit_processes(self._ctx, [owner_of(pid.id) for pid in pids], reason)

    # ---------------------------------------------------------------- remote

    def connect(self, address: str, timeout: float | None = None) -> str:
        """Ping the node at `address` now. -> "compatible" | "incompatible" (cached).

        Waits at most `timeout` seconds (default: the ``connect_timeout`` setting).
        """
        check_address(address)          # TypeError / ValueError here, not on the I/O thread
        self._require_started()
        if address == self.address:
            return "compatible"
        if timeout is None:
            timeout = self._ctx.config.connect_timeout / 1000
        future: concurrent.futures.Future[str] = concurrent.futures.Future()
        connectors = self._ctx.connectors
        self._ctx.io.call(lambda: connectors.current(address).connect_now(future, timeout))
        try:
            return future.result(timeout + 1.0)
        except concurrent.futures.TimeoutError:
            return "incompatible"

    def compatibility(self, target: Any) -> str:
        """Cached compatibility of a Pid's or ("name", address)'s node; no network."""
        if isinstance(target, Pid):
            if target.node == self.address:
                return "compatible"
            connector = self._ctx.connectors.get(target.node)
            if connector is None or connector.incarnation not in (0, target.incarnation):
                return "incompatible"
            return connector.compatibility()
        if type(target) is tuple and len(target) == 2 and isinstance(target[1], str):
            return self.compatibility_for_node(target[1])
        raise TypeError("compatibility takes a zenmon.Pid or (name, node_address)")

    def compatibility_for_node(self, address: str) -> str:
        """Cached compatibility of the node at `address`; no network."""
        if address == self.address:
            return "compatible"
        connector = self._ctx.connectors.get(address)
        return "incompatible" if connector is None else connector.compatibility()

    # -------------------------------------------------------------- settings

    @property
    def config(self) -> Config:
        """The current settings (a frozen snapshot)."""
        return self._ctx.config

    def configure(self, **settings: Any) -> Config:
        """Change settings at run time; unknown names or bad values raise ValueError."""
        ctx = self._ctx
        with self._lock:
            ctx.config = ctx.config.replace(**settings)
        ctx.io.wake()
        return ctx.config

    @property
    def maximum_mps(self) -> float:
        """demand_amount * 1000 / demand_interval: the dispatcher's DOWNs per second."""
        return self._ctx.config.maximum_mps

    def metrics(self) -> dict[str, int]:
        """The counters and gauges of this node, by full name (``zenmon.local.monitor``...)."""
        return _metrics.collect(self._ctx)

"""The node: wires Local, Dispatcher, Connectors and the Proxy around one I/O thread.

Threads: the I/O thread owns every ZeroMQ socket and every sweep timer.
``monitor``, ``demonitor``, ``exit`` and ``send`` may be called from any thread;
they touch only the core tables (each core call is atomic: a critical section)
and inboxes. Work that needs a socket (``connect``) is posted to the I/O thread
through a command queue and a wake-up pipe.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import inspect
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq

from . import metrics as _metrics
from ._core import Core, Pid
from .address import split_endpoint
from .config import Config
from .connector import Connector
from .curve import Curve
from .dispatcher import Dispatcher
from .errors import NameTaken, NotStarted, ZenmonError
from .local import Local
from .messages import Down, DownBatch
from .node_events import NodeMonitors
from .process import Process
from .proxy import Proxy
from .truncator import truncate

_log = logging.getLogger("zenmon")
_log_node = logging.getLogger("zenmon.node")
#: bind failures that are about the machine (address in use, not ours...), not the text
_OS_BIND_ERRORS = {errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES, errno.EPERM}
_last_incarnation = 0
#: What a connector's socket monitor reports (see Connector.on_transport_event).
TRANSPORT_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
                    | zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
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
        self._config = (config or Config()).replace(**settings) if settings else (
            config or Config())
        self._curve = curve
        self.address = ""
        self.incarnation = 0
        self._core = Core(Down, DownBatch)
        self._names: dict[str, Process] = {}
        self._lock = threading.RLock()
        self._connectors: dict[str, Connector] = {}
        self._all_connectors: list[Connector] = []
        self._commands: deque[Callable[[], None]] = deque()
        self._thread: threading.Thread | None = None
        self._running = False
        self._context: zmq.Context[Any] | None = None
        self._wire = _metrics.WireCounters()
        self._node_monitors = NodeMonitors()
        self._wake_r = self._wake_w = -1       # the wake pipe: made by start()
        self._wake_lock = threading.Lock()     # no write races the pipe's close
        self._wake_pending = False
        self._poller = zmq.Poller()
        self._handlers: dict[Any, Callable[[], None]] = {}
        self._local: Local
        self._dispatcher: Dispatcher
        self._proxy: Proxy

    # ------------------------------------------------------------ life cycle

    def __enter__(self) -> Node:
        if not self._running:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<zenmon.Node {self.address or self._listen}>"

    def start(self) -> Node:
        """Bind the node's ROUTER, start its I/O thread. -> self."""
        if self._running:
            raise ZenmonError("node already started")
        if self._thread is not None:
            raise ZenmonError("a stopped node cannot be restarted: make a new Node")
        self.incarnation = _new_incarnation()
        self._context = zmq.Context()
        self._proxy = Proxy(self)
        try:
            self.address = self._proxy.bind(self._listen, self._advertise)
        except zmq.ZMQError as exc:
            self._release_start()
            message = f"cannot listen on {self._listen!r}: {exc.strerror}"
            if exc.errno in _OS_BIND_ERRORS:
                raise OSError(exc.errno, message) from exc
            raise ValueError(message) from exc
        except BaseException:
            self._release_start()
            raise
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._core.set_identity(self.address, self.incarnation)
        self._local = Local(self)
        self._dispatcher = Dispatcher(self)
        self._running = True
        self._thread = threading.Thread(target=self._run, name=f"zenmon-io {self.address}",
                                        daemon=True)
        self._thread.start()
        _log_node.info("node %s started (listening on %s)", self.address, self._listen)
        return self

    def _release_start(self) -> None:
        """Undo a start that failed: close the ROUTER, stop ZAP, destroy the context."""
        self._proxy.close()
        if self._curve is not None:
            self._curve.stop()
        if self._context is not None:
            self._context.destroy(linger=0)
            self._context = None

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the I/O thread and close every socket.

        Peers are told (a FAREWELL to every connector that watches this node, a
        GOODBYE to every proxy this node watches): their monitors on this node's
        processes fire ``"nodedown"`` within a sweep plus delivery, not after a timeout.
        """
        if not self._running:
            return
        self._running = False
        self._wake_io()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if self._context is not None:
            self._context.destroy(linger=0)
        with self._wake_lock:             # a late _wake_io must not write to a reused fd
            fds = (self._wake_r, self._wake_w)
            self._wake_r = self._wake_w = -1
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass

    def _require_started(self) -> None:
        if not self._running:
            raise NotStarted("start the node first (node.start() or `with Node(...)`)")

    # ------------------------------------------------------------- processes

    def process(self, name: str | None = None, bulk: bool = False) -> Process:
        """Make a local process with an inbox, registered as `name` if given.

        With ``bulk=True`` the DOWNs of one dispatcher tick arrive as one
        :class:`zenmon.DownBatch` message (see ``Process.set_bulk``).
        """
        self._require_started()
        if name is not None and not isinstance(name, str):
            raise TypeError("a process name must be a str")
        with self._lock:
            if name is not None and name in self._names:
                raise NameTaken(f"{name!r} is already registered on {self.address}")
            messages: deque[Any] = deque()
            pid_id = self._core.process_new(messages)
            process = Process(self, Pid(self.address, self.incarnation, pid_id), name,
                              messages)
            self._core.set_owner(pid_id, process)
            if name is not None:
                self._names[name] = process
        if bulk:
            process.set_bulk(True)
        return process

    def spawn(self, fn: Callable[..., Any], *args: Any, name: str | None = None) -> Process:
        """Run ``fn(process, *args)`` as a new process. -> the Process.

        A plain function runs on its own thread; a coroutine function runs as a
        task on the caller's running event loop. The process exits ``"normal"`` when
        fn returns, or with the exception (made transportable) when it raises.
        """
        process = self.process(name)
        if inspect.iscoroutinefunction(fn):
            loop = asyncio.get_running_loop()

            async def run_task() -> None:
                try:
                    await fn(process, *args)
                except BaseException as exc:  # the exit reason, as in Erlang
                    process.exit(exc)
                    if not isinstance(exc, Exception):
                        raise
                else:
                    process.exit("normal")

            task = loop.create_task(run_task())
            process._task = task  # type: ignore[attr-defined]
            return process

        def run_thread() -> None:
            try:
                fn(process, *args)
            except BaseException as exc:
                process.exit(exc)
            else:
                process.exit("normal")

        threading.Thread(target=run_thread, name=f"zenmon {process.pid}", daemon=True).start()
        return process

    def whereis(self, name: str) -> Pid | None:
        """The pid registered as `name` on this node, or None."""
        process = self._names.get(name)
        return process.pid if process is not None and process._alive else None

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
        process = self._process_of(pid.id)
        if process is not None:
            process.send(message)

    def _process_of(self, pid_id: int) -> Process | None:
        process: Process | None = self._core.owner_of(pid_id)
        return process

    def _exit_process(self, process: Process, reason: Any) -> None:
        config = self._config
        if type(reason) is not str or len(reason) > config.max_binary_size:
            reason = truncate(reason, config.max_binary_size, config.truncation_depth)
        name = process.name
        name_pid = None if name is None else (name, self.address)
        # one atomic core call: monitors fired, own monitors dropped, remote peers told,
        # slot freed (so no lock here: a new process may take the slot at once)
        queued = self._core.process_exit(process._id, (process.pid, reason, name_pid), reason)
        if queued < 0:
            return
        if name is not None:
            with self._lock:
                if self._names.get(name) is process:
                    del self._names[name]
        self._node_monitors.process_exited(process)
        # no lock: a receiver registering meanwhile looks at _alive again (receive)
        process._alive = False
        if process._waiters:
            process._wake()
        if queued:
            self._downs_queued()

    def _downs_queued(self) -> None:
        # the dispatcher sleeps while its queue is empty: wake it then, and only then
        if self._dispatcher.sleeping:
            self._wake_io()

    # ---------------------------------------------------------------- remote

    def _connector(self, address: str, incarnation: int = 0) -> Connector:
        """The current connector for the node at `address` (made on first use)."""
        connector = self._connectors.get(address)
        if connector is not None and not connector.retired:
            return connector
        self._require_started()
        if address == self.address:
            raise ValueError("that address is this node's own")
        with self._lock:
            connector = self._connectors.get(address)
            if connector is None or connector.retired:
                connector = Connector(self, address, incarnation)
                self._connectors[address] = connector
                self._all_connectors.append(connector)
                self._wake_io()
            return connector

    def _monitor_node(self, process: Process, address: str) -> int:
        """``process.monitor_node(address)``: a node monitor on `address`'s connector."""
        if not isinstance(address, str):
            raise TypeError("monitor_node takes a node address string")
        split_endpoint(address.partition("?")[0])
        if not process._alive:
            from .errors import ProcessExited
            raise ProcessExited(f"{process.pid} has exited")
        if address == self.address:
            raise ValueError("that address is this node's own")
        while True:
            connector = self._connector(address)
            ref = self._node_monitors.monitor(process, connector)
            if ref is not None:
                self._wake_io()
                return ref

    def connect(self, address: str, timeout: float | None = None) -> str:
        """Ping the node at `address` now. -> "compatible" | "incompatible" (cached)."""
        if not isinstance(address, str):
            raise TypeError("connect takes a node address string")
        self._require_started()
        if address == self.address:
            return "compatible"
        if timeout is None:
            timeout = self._config.connect_timeout / 1000
        future: concurrent.futures.Future[str] = concurrent.futures.Future()
        self._call_in_io(lambda: self._connector(address).connect_now(future, timeout))
        try:
            return future.result(timeout + 1.0)
        except concurrent.futures.TimeoutError:
            return "incompatible"

    def compatibility(self, target: Any) -> str:
        """Cached compatibility of a Pid's or ("name", address)'s node; no network."""
        if isinstance(target, Pid):
            if target.node == self.address:
                return "compatible"
            connector = self._connectors.get(target.node)
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
        connector = self._connectors.get(address)
        return "incompatible" if connector is None else connector.compatibility()

    # -------------------------------------------------------------- settings

    @property
    def config(self) -> Config:
        """The current settings (a frozen snapshot)."""
        return self._config

    def configure(self, **settings: Any) -> Config:
        """Change settings at run time; unknown names or bad values raise ValueError."""
        with self._lock:
            self._config = self._config.replace(**settings)
        self._wake_io()
        return self._config

    @property
    def maximum_mps(self) -> float:
        """demand_amount * 1000 / demand_interval: the dispatcher's DOWNs per second."""
        return self._config.maximum_mps

    def metrics(self) -> dict[str, int]:
        """The counters and gauges of this node, by full name (``zenmon.local.monitor``...)."""
        return _metrics.collect(self)

    # ------------------------------------------------------------- I/O thread

    def _wake_io(self) -> None:
        if not self._wake_pending:
            self._wake_pending = True
            with self._wake_lock:
                if self._wake_w < 0:          # not started, or stopped: nothing to wake
                    return
                try:
                    os.write(self._wake_w, b"!")
                except OSError:
                    pass

    def _call_in_io(self, command: Callable[[], None]) -> None:
        self._commands.append(command)
        self._wake_io()

    def _open_dealer(self, connector: Connector) -> tuple[zmq.Socket[Any], zmq.Socket[Any]]:
        """A DEALER to `connector`'s node and its socket monitor, both registered with
        the I/O poller. -> (dealer, monitor)."""
        assert self._context is not None
        config = self._config
        socket = self._context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.IPV6, 1)
        # ZMTP heartbeats run in libzmq's I/O thread, without the GIL: a dead or cut
        # link is noticed (DISCONNECTED) even while the peer's Python is stalled
        socket.setsockopt(zmq.HEARTBEAT_IVL, config.heartbeat_interval)
        socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, max(
            config.heartbeat_interval, config.heartbeat_timeout - config.heartbeat_interval))
        socket.setsockopt(zmq.HEARTBEAT_TTL, min(config.heartbeat_timeout, 6_553_599))
        # after a cut, try a fresh TCP connect every heartbeat_interval instead of
        # waiting on the kernel's SYN backoff (1 s, 3 s...): a healed partition is
        # reconnected in time for the session to go on
        connect_probe = max(100, config.heartbeat_interval)
        socket.setsockopt(zmq.CONNECT_TIMEOUT, connect_probe)
        connector.connect_probe = connect_probe / 1000
        # the same routing id across reconnects: the proxy keeps the session (ROUTER
        # handover) and the sequence numbers repair what the reconnect lost
        socket.setsockopt(zmq.ROUTING_ID, connector.routing_id)
        # bounds on what one peer can queue here (docs/protocol.md, "Limits")
        socket.setsockopt(zmq.SNDHWM, config.sndhwm)
        socket.setsockopt(zmq.RCVHWM, config.rcvhwm)
        socket.setsockopt(zmq.MAXMSGSIZE, config.max_frame_size)
        socket.setsockopt(zmq.RECONNECT_IVL, 50)
        socket.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        if connector.server_key is not None:
            if self._curve is None:
                # no key pair of our own: dial with a throwaway one (the peer's
                # allow-list decides), so the link is still encrypted
                secret, public = Curve.generate()
                Curve(secret, public).dial(socket, connector.server_key)
            else:
                self._curve.dial(socket, connector.server_key)
        monitor = socket.get_monitor_socket(TRANSPORT_EVENTS)
        socket.connect(connector.endpoint)
        self._poller.register(socket, zmq.POLLIN)
        self._handlers[socket] = connector.on_readable
        self._poller.register(monitor, zmq.POLLIN)
        self._handlers[monitor] = connector.on_transport_event
        return socket, monitor

    def _close_socket(self, socket: zmq.Socket[Any]) -> None:
        self._handlers.pop(socket, None)
        try:
            self._poller.unregister(socket)
        except KeyError:
            pass
        socket.close(linger=0)

    def _close_dealer(self, socket: zmq.Socket[Any], monitor: zmq.Socket[Any],
                      linger: int = 0) -> None:
        """Close a connector's DEALER (after `linger` ms for a last frame) and its monitor."""
        for closing in (monitor, socket):
            self._handlers.pop(closing, None)
            try:
                self._poller.unregister(closing)
            except KeyError:
                pass
        try:
            socket.disable_monitor()
        except zmq.ZMQError:
            pass
        monitor.close(linger=0)
        socket.close(linger=linger)

    def _run(self) -> None:
        poller = self._poller
        poller.register(self._wake_r, zmq.POLLIN)
        self._proxy.register(poller)
        handlers = self._handlers
        handlers[self._proxy.socket] = self._proxy.on_readable
        next_connector_sweep = next_batcher_sweep = time.monotonic()
        dispatcher = self._dispatcher
        while self._running:
            now = time.monotonic()
            deadline = min(dispatcher.deadline(), next_connector_sweep, next_batcher_sweep)
            timeout = int(max(0.0, deadline - now) * 1000 + 0.999)
            for socket, _ in poller.poll(timeout):
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
                next_connector_sweep = now + self._config.connector_sweep_interval / 1000
                for connector in list(self._all_connectors):
                    self._guarded(connector.sweep, now)
                    if connector.closed:
                        self._all_connectors.remove(connector)
            if now >= next_batcher_sweep:
                next_batcher_sweep = now + self._proxy.sweep_interval() / 1000
                self._guarded(self._proxy.sweep, now)
        for connector in self._all_connectors:
            connector.close()
        self._proxy.close()
        if self._curve is not None:
            self._curve.stop()

    def _guarded(self, step: Callable[..., None], *args: Any) -> None:
        """Run one I/O-thread step; a bug in it is logged and counted, never fatal."""
        try:
            step(*args)
        except Exception:
            self._wire.internal_errors += 1
            _log.exception("zenmon I/O thread step %r failed", step)

    def _drain_wake(self) -> None:
        self._wake_pending = False
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

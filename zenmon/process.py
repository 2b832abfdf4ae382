"""Processes: anything with an identity that can die, with an inbox; and ``spawn``.

An inbox is a deque plus a list of waiters. Producers append first and wake
second (under the inbox lock), consumers register as waiters under the same lock
after a last look at the deque, so no wake-up is ever missed. Waking happens once
per batch of messages, not once per message.

A process works through its node's context (``zenmon.context``), never the node:

- ``monitor(pid)``: ``Core.monitor_pid``, one C call; when it refuses, Local says
  why (``Local.monitor_refused``). Names go to ``Local.monitor``.
- ``demonitor``: ``Core.demonitor`` (node monitors: NodeMonitors).
- ``link``/``unlink``: Links. ``monitor_node``: the connector of the address and
  NodeMonitors.
- ``exit``: ``Core.process_exit``, one call that fires the monitors on it, drops
  its own and frees its slot; then its name and node monitors go.
- the dispatcher hands it DOWNs and tells it when to ask for more (``_delivered``);
  it asks with ``Dispatcher.refill``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ._core import Pid as _Pid
from ._core import set_trap as _set_trap
from .address import split_endpoint
from .errors import ProcessExited
from .messages import NodeDown as _NodeDown
from .truncator import truncate

if TYPE_CHECKING:
    from ._core import Pid
    from .config import Config
    from .context import NodeContext
    from .node import Node


class Process:
    """A local process: a pid, an inbox, monitors. Made by ``node.process()``.

    Usable from any thread and from asyncio. ``with node.process() as p:`` exits
    the process when the block ends: with reason ``"normal"``, or with the exception
    that escapes the block (in the same transportable form as for ``spawn``).
    """

    __slots__ = ("_ctx", "_node", "pid", "name", "_id", "_messages", "_waiters", "_lock",
                 "_alive", "_task", "_cancel", "_exit_waiters", "_trap_exits", "_core",
                 "_refill_at", "__weakref__")

    def __init__(self, ctx: NodeContext, node: Node, pid: Pid, name: str | None,
                 messages: deque[Any]) -> None:
        self._ctx = ctx
        self._node = node           # only for the `node` property
        self.pid = pid
        self.name = name
        self._id = pid.id
        self._messages = messages
        self._core = ctx.core       # no bound methods kept: fewer GC-tracked objects
        self._refill_at = 0         # adaptive mode: ask for more below this inbox length
        self._waiters: list[Any] | None = None   # made on first wait (GC-light)
        self._lock = threading.Lock()
        self._alive = True
        self._task: Any = None                    # a spawned coroutine's task
        self._cancel: Callable[[], None] | None = None   # stops that task (any thread)
        self._exit_waiters: list[Callable[[], None]] | None = None   # join / wait
        self._trap_exits = False

    def __repr__(self) -> str:
        name = f" {self.name!r}" if self.name else ""
        state = "alive" if self._alive else "dead"
        return f"<zenmon.Process {self.pid}{name} {state}>"

    def __enter__(self) -> Process:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self.exit("normal" if exc is None else exc)

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
            return self._ctx.local.monitor_refused(self._id, target)
        return self._ctx.local.monitor(self._id, target)

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
            self._ctx.node_monitors.demonitor(self, ref)
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

    def link(self, pid: Pid) -> None:
        """Link this process and `pid` (local or remote): their fates are joined.

        When either exits with reason R, the other gets ``zenmon.Exit(pid, R)`` in its
        inbox if it traps exits, or else exits with R too (``"normal"`` is ignored).
        A dead or unknown `pid` signals ``"noproc"``; the loss of its node
        ``"nodedown"``. Exactly one signal per link. Returns at once; linking twice is
        one link; linking to itself is a no-op.
        """
        self._ctx.links.link(self._id, pid)

    def unlink(self, pid: Pid) -> None:
        """Remove the link to `pid`: no exit signal for it afterwards, on either side
        (one already queued for this process is dropped)."""
        self._ctx.links.unlink(self._id, pid)

    @property
    def trap_exits(self) -> bool:
        """Whether exit signals of links arrive as ``zenmon.Exit`` messages (True) or
        kill this process (False, the default)."""
        return self._trap_exits

    @trap_exits.setter
    def trap_exits(self, trap: bool) -> None:
        if _set_trap(self._core, self._id, bool(trap)):
            self._trap_exits = bool(trap)
        elif not self._alive:
            raise ProcessExited(f"{self.pid} has exited")

    def spawn_link(self, fn: Callable[..., Any], *args: Any, name: str | None = None) -> Process:
        """``node.spawn`` and ``link`` in one step: the child is linked before its code
        runs, so no exit of it goes unseen. -> the child Process."""
        if not self._alive:
            raise ProcessExited(f"{self.pid} has exited")
        return spawn(self._ctx.new_process, fn, args, name, self._link_child)

    def spawn_monitor(self, fn: Callable[..., Any], *args: Any,
                      name: str | None = None) -> tuple[Process, int]:
        """``node.spawn`` and ``monitor`` in one step: the monitor is in place before
        the child's code runs (so never ``"noproc"``). -> (child Process, ref)."""
        if not self._alive:
            raise ProcessExited(f"{self.pid} has exited")
        refs: list[int] = []
        child = spawn(self._ctx.new_process, fn, args, name,
                      lambda child: refs.append(self._watch_child(child)))
        return child, refs[0]

    def _link_child(self, child: Process) -> None:
        try:
            self.link(child.pid)
        except ProcessExited:
            child.exit("noproc")          # the parent died meanwhile: no orphan
            raise

    def _watch_child(self, child: Process) -> int:
        try:
            return self.monitor(child.pid)
        except ProcessExited:
            child.exit("noproc")
            raise

    def monitor_node(self, address: str) -> int:
        """Watch the node at `address`. -> ref (returns at once).

        Exactly one :class:`zenmon.NodeDown` ``(ref, address, reason)`` arrives in this
        inbox when that node goes down, stops, restarts or cannot be reached (within
        ``connect_timeout`` plus a sweep), unless ``demonitor(ref)`` comes first. While
        the ref is held this node keeps a session with that node.
        """
        if not isinstance(address, str):
            raise TypeError("monitor_node takes a node address string")
        split_endpoint(address.partition("?")[0])
        if not self._alive:
            raise ProcessExited(f"{self.pid} has exited")
        ctx = self._ctx
        if address == ctx.address:
            raise ValueError("that address is this node's own")
        while True:
            ref = ctx.node_monitors.monitor(self, ctx.connectors.current(address))
            if ref is not None:
                ctx.io.wake()
                return ref
            # that connector was retired or closed meanwhile: its successor

    def monitor_nodes(self, enabled: bool = True) -> None:
        """Receive :class:`zenmon.NodeUp` ``(address)`` for every peer session of this
        node that comes up and ``NodeDown(None, address, reason)`` for every one that
        goes down (Erlang's ``net_kernel:monitor_nodes``); ``False`` stops them."""
        if not self._alive:
            raise ProcessExited(f"{self.pid} has exited")
        self._ctx.node_monitors.subscribe(self, bool(enabled))

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
        ctx = self._ctx
        if type(reason) is not str or len(reason) > ctx.config.max_binary_size:
            reason = truncated(ctx.config, reason)     # (short strings pass as they are)
        dispatcher = ctx.dispatcher
        if self._exit(ctx, reason) and dispatcher.sleeping:
            dispatcher.downs_queued()

    def _exit(self, ctx: NodeContext, reason: Any) -> int:
        """Exit with a truncated `reason`. -> DOWNs queued (the caller wakes the
        dispatcher; ``Node.exit_many`` does it once for all)."""
        name = self.name
        # one atomic core call: monitors fired, own monitors dropped, remote peers told,
        # slot freed (so no lock here: a new process may take the slot at once)
        queued: int = self._core.process_exit(
            self._id, (self.pid, reason, None if name is None else (name, ctx.address)),
            reason)
        if queued < 0:
            return 0
        if name is not None:
            ctx.unregister(name, self)
        if ctx.node_monitors.in_use:
            ctx.node_monitors.process_exited(self)
        # no lock: a receiver registering meanwhile looks at _alive again (receive)
        self._alive = False
        if (self._exit_waiters is not None or self._waiters
                or self._cancel is not None):
            self._died()                # someone to wake or a runner to stop
        return queued

    def join(self, timeout: float | None = None) -> None:
        """Wait until this process is dead; TimeoutError after `timeout` seconds."""
        if not self._alive:
            return
        done = threading.Event()
        if not self._add_exit_waiter(done.set):
            return
        if not done.wait(timeout):
            self._remove_exit_waiter(done.set)
            if self._alive:
                raise TimeoutError(f"{self.pid} still alive after {timeout} s")

    async def wait(self) -> None:
        """Wait (on the running event loop) until this process is dead."""
        if not self._alive:
            return
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def wake() -> None:
            loop.call_soon_threadsafe(_resolve, future)

        if not self._add_exit_waiter(wake):
            return
        try:
            await future
        finally:
            self._remove_exit_waiter(wake)

    def _add_exit_waiter(self, wake: Callable[[], None]) -> bool:
        # _died clears _alive, then takes the lock only if it sees a waiter list: a
        # waiter added after that look sees _alive cleared when it checks again
        with self._lock:
            if not self._alive:
                return False
            if self._exit_waiters is None:
                self._exit_waiters = []
            self._exit_waiters.append(wake)
        if not self._alive:
            self._remove_exit_waiter(wake)
            return False
        return True

    def _remove_exit_waiter(self, wake: Callable[[], None]) -> None:
        with self._lock:
            if self._exit_waiters and wake in self._exit_waiters:
                self._exit_waiters.remove(wake)

    def _died(self) -> None:
        """Called once by exit, after the process died (``_alive`` cleared): wake and
        stop its runner."""
        exit_waiters = None
        if self._exit_waiters is not None:  # (a waiter adding itself now sees _alive)
            with self._lock:
                exit_waiters, self._exit_waiters = self._exit_waiters, None
        if self._waiters:
            self._wake()
        for wake in exit_waiters or ():
            try:
                wake()
            except RuntimeError:           # a waiter's event loop has closed
                pass
        cancel = self._cancel
        if cancel is not None:
            self._cancel = None
            cancel()

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
        """``receive`` for asyncio: awaits the next message on the running loop.

        Waits up to `timeout` seconds (None: forever), then raises TimeoutError.
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
        # waiting for it. Those parked for it are moved in here, by the receiving
        # thread (no hand-over to the I/O thread and back); once none stay parked,
        # the dispatcher is asked to tick now for what is still on its queue
        self._refill_at = 0
        ctx = self._ctx
        backlog = ctx.config.adaptive_backlog
        if self._core.refill(self._id, backlog):
            self._refill_at = backlog // 2 + 1
            if self._waiters:          # another thread waits on this inbox too
                self._wake()
        else:
            ctx.dispatcher.refill()

    def _delivered(self, refill_at: int) -> None:
        """The dispatcher put DOWNs in this inbox: wake the receivers. Adaptive mode:
        below `refill_at` messages (0: never) ask the dispatcher for more."""
        self._refill_at = refill_at
        if self._waiters:          # (as _wake: no second call when nobody waits)
            self._wake()

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



def truncated(config: Config, reason: Any) -> Any:
    """`reason` as exits carry it: short strings as they are, anything else truncated
    (``max_binary_size``, ``truncation_depth``)."""
    if type(reason) is str and len(reason) <= config.max_binary_size:
        return reason
    return truncate(reason, config.max_binary_size, config.truncation_depth)


def exit_processes(ctx: NodeContext, processes: Iterable[Process | None],
                   reason: Any) -> int:
    """Exit each live one of `processes` with `reason` (truncated once), waking the
    dispatcher once. -> how many exited (None entries and dead processes are
    skipped)."""
    reason = truncated(ctx.config, reason)
    exited = queued = 0
    for process in processes:
        if process is not None and process._alive:
            queued += process._exit(ctx, reason)
            exited += 1
    if queued:
        ctx.dispatcher.downs_queued()
    return exited

class Names:
    """A node's name registry: name -> its live Process. ``lock`` guards a look-then-add
    (``Node.process``); ``whereis`` and ``unregister`` may be called from any thread."""

    __slots__ = ("lock", "_processes")

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._processes: dict[str, Process] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._processes

    def add(self, name: str, process: Process) -> None:
        """Register `process` as `name` (hold ``lock``, having checked the name is free)."""
        self._processes[name] = process

    def whereis(self, name: str) -> Pid | None:
        """The pid registered as `name`, or None (also while its process is exiting)."""
        process = self._processes.get(name)
        return process.pid if process is not None and process._alive else None

    def unregister(self, name: str, process: Process) -> None:
        """`process` has exited: free `name` if it still stands for it."""
        with self.lock:
            if self._processes.get(name) is process:
                del self._processes[name]


def spawn(new_process: Callable[[str | None], Process], fn: Callable[..., Any],
          args: tuple[Any, ...], name: str | None,
          before_start: Callable[[Process], None] | None) -> Process:
    """Run ``fn(process, *args)`` as a new process made by ``new_process(name)``
    (``node.process``). -> the Process. ``Node.spawn`` documents the rules.

    `before_start(process)` runs after the process exists and before its code does
    (spawn_link / spawn_monitor: no window in which it dies unseen).
    """
    if _is_coroutine_function(fn):
        loop = asyncio.get_running_loop()      # before anything is made
        process = new_process(name)
        if before_start is not None:
            before_start(process)
        _run_as_task(process, loop, fn(process, *args))
        return process
    try:
        caller_loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        caller_loop = None
    process = new_process(name)
    if before_start is not None:
        before_start(process)

    def run_thread() -> None:
        try:
            result = fn(process, *args)
            if inspect.isawaitable(result):
                if caller_loop is not None and not caller_loop.is_closed():
                    caller_loop.call_soon_threadsafe(
                        _run_as_task, process, caller_loop, result)
                    return
                close = getattr(result, "close", None)
                if close is not None:
                    close()
                raise TypeError(
                    f"{_name_of(fn)} returned an awaitable but no event loop was "
                    "running when spawn was called: spawn it from a running loop "
                    "(or pass a coroutine function)")
        except BaseException as exc:
            process.exit(exc)
        else:
            process.exit("normal")

    threading.Thread(target=run_thread, name=f"zenmon {process.pid}", daemon=True).start()
    return process


def _run_as_task(process: Process, loop: asyncio.AbstractEventLoop, awaitable: Any) -> None:
    """Run `awaitable` as `process`'s task on `loop` (called on that loop's thread)."""
    async def run_task() -> None:
        try:
            await awaitable
        except BaseException as exc:  # the exit reason, as in Erlang
            process.exit(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            process.exit("normal")

    task = loop.create_task(run_task())
    process._task = task

    def cancel() -> None:
        # exit() from inside the task itself is a cooperative return, not a cancel
        try:
            if asyncio.current_task() is task:
                return
        except RuntimeError:           # no running loop in this thread
            pass
        try:
            loop.call_soon_threadsafe(task.cancel)
        except RuntimeError:           # the loop has closed: nothing left to stop
            pass

    process._cancel = cancel
    if not process._alive:             # killed before its task existed
        process._cancel = None
        cancel()


def _is_coroutine_function(fn: Any) -> bool:
    """True for an ``async def`` function, a partial of one, or an object whose
    ``__call__`` is one."""
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 (a callable's own __call__)
    return call is not None and inspect.iscoroutinefunction(call)


def _name_of(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


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


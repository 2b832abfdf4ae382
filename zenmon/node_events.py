"""Node events: Erlang's ``monitor_node`` and ``net_kernel:monitor_nodes``.

``NodeMonitors`` holds, for one node, the node monitors its processes made
(``p.monitor_node(address)``: exactly one :class:`zenmon.NodeDown` per ref) and the
processes that asked for every peer session's ups and downs
(``p.monitor_nodes(True)``: :class:`zenmon.NodeUp` / ``NodeDown(None, ...)``).

Node monitors hang on the Connector of their address: when that connector's
session fails (or it cannot get one) they all fire, and while any is held the
connector keeps (or tries to get) a session, so an unreachable node yields its
NodeDown within ``connect_timeout`` plus a sweep. Node events are few (one per
peer session), so they go straight to inboxes, not through the dispatcher.

Refs of node monitors are ints from 2**64 up: they never collide with the core's
monitor refs (which are below 2**64). Every method may be called from any
thread; one lock guards the tables.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from typing import TYPE_CHECKING, Any

from .errors import ProcessExited
from .messages import NodeDown, NodeUp

if TYPE_CHECKING:
    from .process import Process

#: The first ref a node monitor gets; core monitor refs are all below it.
FIRST_NODE_REF = 1 << 64


class NodeMonitors:
    """Node monitors and node-event subscribers of one node."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refs = itertools.count(FIRST_NODE_REF)
        self._by_ref: dict[int, tuple[Process, Any]] = {}     # ref -> (process, connector)
        self._by_connector: dict[Any, dict[int, Process]] = {}
        self._by_process: dict[int, set[int]] = {}              # pid id -> refs
        self._subscribers: dict[int, Process] = {}              # pid id -> process
        # some process holds a node monitor or subscribes: an exit must look (read
        # without the lock; set under it after each change)
        self.in_use = False

    # ---------------------------------------------------------- any thread

    def monitor(self, process: Process, connector: Any) -> int | None:
        """Watch `connector`'s node for `process`. -> ref, or None when the connector
        is retired or closed (ask the node for its successor and try again)."""
        with self._lock:
            if connector.retired or connector.closed:
                return None
            ref = next(self._refs)
            self._by_ref[ref] = (process, connector)
            self._by_connector.setdefault(connector, {})[ref] = process
            self._by_process.setdefault(process.pid.id, set()).add(ref)
            self.in_use = True
            return ref

    def demonitor(self, process: Process, ref: int) -> bool:
        """Cancel node monitor `ref` of `process`. -> True if it was live."""
        with self._lock:
            entry = self._by_ref.get(ref)
            if entry is None or entry[0] is not process:
                return False
            self._forget(ref, process, entry[1])
            return True

    def subscribe(self, process: Process, on: bool) -> None:
        """Start (or stop) sending `process` every NodeUp / NodeDown."""
        with self._lock:
            if on:
                self._subscribers[process.pid.id] = process
            else:
                self._subscribers.pop(process.pid.id, None)
            self._note_use()

    def process_exited(self, process: Process) -> None:
        """Drop everything `process` held (it has exited)."""
        pid_id = process.pid.id
        if pid_id not in self._by_process and pid_id not in self._subscribers:
            return
        with self._lock:
            self._subscribers.pop(pid_id, None)
            for ref in list(self._by_process.get(pid_id, ())):
                self._forget(ref, process, self._by_ref[ref][1])
            self._note_use()

    def watching(self, connector: Any) -> bool:
        """True while some process holds a node monitor on `connector`."""
        return connector in self._by_connector

    def sizes(self) -> tuple[int, int]:
        """(node monitors held, monitor_nodes subscribers)."""
        return len(self._by_ref), len(self._subscribers)

    # ---------------------------------------------------------- I/O thread

    def session_up(self, address: str) -> None:
        """A session with `address` came up: NodeUp to every subscriber."""
        if self._subscribers:
            self._deliver([(p, NodeUp(address)) for p in self._subscriber_list()])

    def session_down(self, connector: Any, address: str, reason: str, was_up: bool) -> None:
        """`connector`'s node is down (or unreachable): fire its node monitors, and tell
        the subscribers if a session had come up."""
        if connector in self._by_connector:
            # delivered under the lock: once demonitor(ref) returns, its NodeDown is
            # either in the inbox already (flush removes it) or never comes
            with self._lock:
                held = self._by_connector.pop(connector, {})
                for ref, process in held.items():
                    del self._by_ref[ref]
                    refs = self._by_process.get(process.pid.id)
                    if refs is not None:
                        refs.discard(ref)
                        if not refs:
                            del self._by_process[process.pid.id]
                    _deliver(process, NodeDown(ref, address, reason))
                self._note_use()
        if was_up and self._subscribers:
            self._deliver([(p, NodeDown(None, address, reason))
                           for p in self._subscriber_list()])

    # ------------------------------------------------------------- private

    def _subscriber_list(self) -> list[Process]:
        with self._lock:
            return list(self._subscribers.values())

    def _forget(self, ref: int, process: Process, connector: Any) -> None:
        del self._by_ref[ref]
        held = self._by_connector.get(connector)
        if held is not None:
            held.pop(ref, None)
            if not held:
                del self._by_connector[connector]
        refs = self._by_process.get(process.pid.id)
        if refs is not None:
            refs.discard(ref)
            if not refs:
                del self._by_process[process.pid.id]
        self._note_use()

    def _note_use(self) -> None:
        # under the lock, after each change: does an exit have to look here?
        self.in_use = bool(self._by_process or self._subscribers)

    @staticmethod
    def _deliver(messages: list[tuple[Process, Any]]) -> None:
        for process, message in messages:
            _deliver(process, message)


def _deliver(process: Process, message: Any) -> None:
    """Put a node event in `process`'s inbox; dropped once the process is dead."""
    with contextlib.suppress(ProcessExited):
        process.send(message)

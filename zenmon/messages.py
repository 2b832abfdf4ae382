"""Messages zenmon puts in inboxes."""

from __future__ import annotations

from typing import Any, NamedTuple


class Down(NamedTuple):
    """A monitored process is gone: the monitor `ref` fired for `pid` with `reason`.

    `pid` is the target's :class:`zenmon.Pid`, or ``(name, node_address)`` for a
    monitor made by registered name. `reason` is the (truncated) exit reason,
    ``"noproc"`` or ``"nodedown"``.
    """

    ref: int
    pid: Any
    reason: Any


class DownBatch(NamedTuple):
    """Several DOWNs delivered as one inbox message (bulk delivery mode)."""

    downs: tuple[Down, ...]


class NodeUp(NamedTuple):
    """A session with the node at `address` came up (``monitor_nodes(True)``)."""

    address: str


class NodeDown(NamedTuple):
    """The node at `address` went down, stopped, restarted or is unreachable.

    `ref` is the ref ``monitor_node`` returned, or None for a ``monitor_nodes(True)``
    event. `reason` says why: ``"unavailable"``, ``"heartbeat timeout"``,
    ``"pause timeout"``, ``"connection lost"``, ``"stopped"``, ``"restart"``,
    ``"incompatible"``, ``"identity mismatch"``, ``"reset by peer"``...
    """

    ref: int | None
    address: str
    reason: str

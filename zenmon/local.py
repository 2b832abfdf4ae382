"""The local side's front door: turns ``monitor``/``demonitor`` into core table calls.

ZenMonitor's *Local*: it records ``(subscriber, ref) -> target`` (in the core's
references table) and hands remote targets to the Connector of their node. It
never waits on the network: a remote monitor is a table entry plus, for the first
monitor of a target, one queued subscribe instruction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._core import TARGET_DEAD, Pid
from .errors import ProcessExited
from .protocol import MAX_NAME, check_address

if TYPE_CHECKING:
    from .node import Node


class Local:
    """Resolves monitor targets (pid, name, (name, node)) for one node."""

    __slots__ = ("_node", "_core", "_monitor", "address", "incarnation")

    def __init__(self, node: Node) -> None:
        self._node = node
        self._core = node._core
        self._monitor = node._core.monitor
        self.address = node.address
        self.incarnation = node.incarnation

    def monitor(self, subscriber: int, target: Any) -> int:
        """Monitor `target` on behalf of process id `subscriber`. -> ref."""
        if type(target) is Pid:
            if target.node == self.address:
                if target.incarnation == self.incarnation:
                    ref = self._monitor(subscriber, 0, target.id, False)
                    if ref > TARGET_DEAD:
                        return ref
                    if not ref:
                        raise ProcessExited("a dead process cannot monitor")
                return self.fired(subscriber, (target, "noproc", None), False)
            check_address(target.node)
            return self._node._connector(target.node).monitor(subscriber, target)
        if isinstance(target, str):
            return self.monitor_name(subscriber, target)
        if (type(target) is tuple and len(target) == 2
                and isinstance(target[0], str) and isinstance(target[1], str)):
            name, address = target
            if address == self.address:
                return self.monitor_name(subscriber, name)
            check_address(address)
            check_remote_name(name)
            return self._node._connector(address).monitor_name(subscriber, name)
        raise TypeError(f"monitor target must be a zenmon.Pid, a name or (name, node), "
                        f"not {type(target).__name__}")

    def monitor_name(self, subscriber: int, name: str) -> int:
        """Monitor the process registered here as `name` (resolved now, as Erlang does)."""
        name_pid = (name, self.address)
        pid = self._node.whereis(name)
        if pid is not None:
            ref = self._monitor(subscriber, 0, pid.id, True)
            if ref > TARGET_DEAD:
                return ref
            if not ref:
                raise ProcessExited("a dead process cannot monitor")
        return self.fired(subscriber, (name_pid, "noproc", name_pid), True)

    def fired(self, subscriber: int, death: tuple[Any, Any, Any], by_name: bool) -> int:
        """A monitor whose DOWN is due at once (noproc, nodedown). -> ref."""
        ref = self._core.monitor_fired(subscriber, death, by_name)
        if not ref:
            raise ProcessExited("a dead process cannot monitor")
        self._node._downs_queued()
        return ref


def check_remote_name(name: str) -> None:
    """A name sent to another node: valid UTF-8 of at most MAX_NAME bytes (ValueError)."""
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("a remote process name must be valid UTF-8 text") from None
    if size > MAX_NAME:
        raise ValueError(f"a remote process name is at most {MAX_NAME} UTF-8 bytes, "
                         f"not {size}")

"""The local side's front door: turns ``monitor`` into core table calls.

ZenMonitor's *Local*: it records ``(subscriber, ref) -> target`` (in the core's
references table) and hands remote targets to the Connector of their node. It
never waits on the network: a remote monitor is a table entry plus, for the first
monitor of a target, one queued subscribe instruction.

One entry into the core per kind of target:

- a pid (local or remote): ``Core.monitor_pid``. ``Process.monitor`` calls it
  first, inline (the hot path is one C call); when it refuses, ``monitor_refused``
  finds out why: a dead target, or a local pid of another incarnation, is
  ``noproc``; a remote node not yet routed gets its connector bound and routed
  (``Connector.bind``), then ``Core.monitor_pid`` again.
- a name here: ``Core.monitor`` on the pid the name has now (Erlang resolves it at
  monitor time); a name on another node: ``Connector.monitor_name``.
- a DOWN that is due at once (``noproc``): ``Core.monitor_fired``.

``demonitor`` goes from ``Process`` to ``Core.demonitor`` directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._core import TARGET_DEAD, Pid
from .connector import BOUND, OLDER
from .errors import ProcessExited
from .protocol import MAX_NAME, check_address

if TYPE_CHECKING:
    from .context import NodeContext


class Local:
    """Resolves monitor targets (pid, name, (name, node)) for one node."""

    __slots__ = ("_ctx", "_core", "address", "incarnation")

    def __init__(self, ctx: NodeContext) -> None:
        self._ctx = ctx
        self._core = ctx.core
        self.address = ctx.address
        self.incarnation = ctx.incarnation

    def monitor(self, subscriber: int, target: Any) -> int:
        """Monitor `target` on behalf of process id `subscriber`. -> ref."""
        if type(target) is Pid:
            return (self._core.monitor_pid(subscriber, target)
                    or self.monitor_refused(subscriber, target))
        if isinstance(target, str):
            return self.monitor_name(subscriber, target)
        if (type(target) is tuple and len(target) == 2
                and isinstance(target[0], str) and isinstance(target[1], str)):
            name, address = target
            if address == self.address:
                return self.monitor_name(subscriber, name)
            check_address(address)
            check_remote_name(name)
            return self._ctx.connectors.current(address).monitor_name(subscriber, name)
        raise TypeError(f"monitor target must be a zenmon.Pid, a name or (name, node), "
                        f"not {type(target).__name__}")

    def monitor_refused(self, subscriber: int, pid: Pid) -> int:
        """``Core.monitor_pid(subscriber, pid)`` answered 0: find out why. -> ref.

        Here, the target is dead or of another incarnation: ``noproc`` (ProcessExited
        when the subscriber is the dead one). Elsewhere, the core has no route for
        the pid's node and incarnation yet (first pid of that node, or it restarted)
        or a route was lost to a race: the connector of that node is bound and
        routed, and the core asked again; a pid of an older incarnation is ``noproc``.
        """
        if pid.node == self.address:
            return self.fired(subscriber, (pid, "noproc", None), False)
        check_address(pid.node)
        core = self._core
        connectors = self._ctx.connectors
        while True:
            if not core.is_alive(subscriber):
                raise ProcessExited("a dead process cannot monitor")
            answer = connectors.current(pid.node, pid.incarnation).bind(pid.incarnation)
            if answer == OLDER:                        # an older incarnation: dead
                return self.fired(subscriber, (pid, "noproc", None), False)
            if answer == BOUND:
                ref = core.monitor_pid(subscriber, pid)
                if ref:
                    return ref
            # NEWER (that connector retired itself), or the route went meanwhile (a
            # restart seen by another thread): the current connector, again

    def monitor_name(self, subscriber: int, name: str) -> int:
        """Monitor the process registered here as `name` (resolved now, as Erlang does)."""
        name_pid = (name, self.address)
        pid = self._ctx.whereis(name)
        if pid is not None:
            ref = self._core.monitor(subscriber, 0, pid.id, True)
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
        self._ctx.dispatcher.downs_queued()
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

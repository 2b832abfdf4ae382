"""Links: turns ``link``/``unlink`` into core link records on the right connector.

A link joins two processes' fates both ways. Each end on this node is a link record
in the core (``_core``'s ``_cy/links.pxi``): it watches the other end like a monitor, and
when that end dies the dispatcher delivers an exit signal instead of a DOWN. The
other end is a process of this node, a remote process linked *from here* (through
the connector of its node: LINK, UNLINK and EXIT ops ride that connector's SUBSCRIBE
batches), or a remote process that linked *to us* (through a proxy peer). Like
``monitor``, ``link`` never waits on the network.

One entry into the core per operation, from here: ``link_local`` (a process of this
node), ``link_remote`` (on the connector that ``Connector.bind`` names for the pid's
incarnation), ``link_fired`` (a signal due at once) and ``unlink``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _core
from ._core import CONNECTOR_CLOSED, LINK_DONE, NO_SUBSCRIBER, TARGET_DEAD, Pid
from .connector import BOUND, OLDER
from .errors import ProcessExited

if TYPE_CHECKING:
    from .context import NodeContext

#: Target conns from this value up stand for links made by proxy peer (conn - it).
PEER_CONN = 0x80000000


class Links:
    """Resolves link and unlink targets for one node."""

    __slots__ = ("_ctx", "_core", "address", "incarnation")

    def __init__(self, ctx: NodeContext) -> None:
        self._ctx = ctx
        self._core = ctx.core
        self.address = ctx.address
        self.incarnation = ctx.incarnation

    def link(self, subscriber: int, target: Any) -> None:
        """Link process id `subscriber` and `target` (a Pid)."""
        if type(target) is not Pid:
            raise TypeError(f"link takes a zenmon.Pid, not {type(target).__name__}")
        if target.node == self.address:
            if target.incarnation == self.incarnation:
                status = _core.link_local(self._core, subscriber, target.id)
                if status == LINK_DONE:
                    return
                if status == NO_SUBSCRIBER:
                    raise ProcessExited("a dead process cannot link")
                assert status == TARGET_DEAD
            self.fired(subscriber, 0, target, "noproc")
            return
        others = self.peer_conns(target)
        connectors = self._ctx.connectors
        while True:
            connector = connectors.current(target.node, target.incarnation)
            answer = connector.bind(target.incarnation)
            if answer == OLDER:                        # an older incarnation: dead
                self.fired(subscriber, connector.index, target, "noproc")
                return
            if answer == BOUND:
                status = _core.link_remote(self._core, subscriber, connector.index,
                                           target.id, others)
                if status == NO_SUBSCRIBER:
                    raise ProcessExited("a dead process cannot link")
                if status != CONNECTOR_CLOSED:
                    return
            # NEWER (that connector retired itself), or it closed since we found it
            # (retired): the current connector, again

    def unlink(self, subscriber: int, target: Any) -> None:
        """Undo every link between process id `subscriber` and `target`."""
        if type(target) is not Pid:
            raise TypeError(f"unlink takes a zenmon.Pid, not {type(target).__name__}")
        if target.node == self.address:
            conns = [0]
        else:
            conns = self._ctx.connectors.indexes(target.node, target.incarnation)
            conns += self.peer_conns(target)
        _core.unlink(self._core, subscriber, target.id, conns)

    def peer_conns(self, target: Pid) -> list[int]:
        """The conns of links that `target`'s node made to us (one per live session)."""
        proxy = self._ctx.proxy
        if proxy is None:
            return []
        return [PEER_CONN | peer.index for peer in list(proxy.peers.values())
                if peer.address == target.node and peer.incarnation == target.incarnation]

    def fired(self, subscriber: int, conn: int, target: Pid, reason: str) -> None:
        """A link whose exit signal is due at once (noproc, nodedown)."""
        ref = _core.link_fired(self._core, subscriber, conn, target.id, (target, reason, None))
        if ref == NO_SUBSCRIBER:
            raise ProcessExited("a dead process cannot link")
        self._ctx.dispatcher.downs_queued()

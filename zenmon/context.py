"""The node context: what a node's components share, instead of the node itself.

``Node`` builds one :class:`NodeContext` and hands it to each component it makes
(Local, Links, Dispatcher, the Connectors, the Proxy, the I/O thread, every Process).
A component reads the context's public fields and calls their public methods; it
never sees ``Node``, and no module reads or writes another's underscore attributes
(``tests/test_layout.py`` checks both).

What is in it, and who fills it in:

- ``core``, ``wire``, ``curve``, ``config``, ``node_monitors``, ``io``,
  ``connectors``: made by ``Node.__init__``. ``config`` is the current settings
  snapshot, replaced (never mutated) by ``Node.configure``: read it at the moment of
  use, do not keep it. ``io`` is the I/O thread: any thread posts work to it
  (``call``, ``wake``); on it, components make and watch their sockets.
  ``connectors`` finds (or makes) the current connector for an address.
- ``address``, ``incarnation``, ``proxy``, ``local``, ``links``, ``dispatcher``: set by
  ``Node.start`` (the identity is known once the ROUTER is bound).
- Three lookups into the node's registry: ``whereis(name)``, ``new_process(name)``
  (``node.process``: what ``spawn_link`` needs) and ``unregister(name, process)`` (a
  dying process frees its name).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import NotStarted

if TYPE_CHECKING:
    from ._core import Core, Pid
    from .config import Config
    from .connector import Connectors
    from .curve import Curve
    from .dispatcher import Dispatcher
    from .iothread import IOThread
    from .links import Links
    from .local import Local
    from .metrics import WireCounters
    from .node_events import NodeMonitors
    from .process import Process
    from .proxy import Proxy


class NodeContext:
    """The shared state and services of one node's components (see the module doc)."""

    __slots__ = ("core", "wire", "curve", "config", "node_monitors", "whereis",
                 "new_process", "unregister", "address", "incarnation", "io", "local",
                 "links", "dispatcher", "connectors", "proxy")

    def __init__(self, core: Core, config: Config, wire: WireCounters, curve: Curve | None,
                 node_monitors: NodeMonitors, whereis: Callable[[str], Pid | None],
                 new_process: Callable[[str | None], Process],
                 unregister: Callable[[str, Any], None]) -> None:
        self.core = core
        self.config = config
        self.wire = wire
        self.curve = curve
        self.node_monitors = node_monitors
        self.whereis = whereis
        self.new_process = new_process
        self.unregister = unregister
        self.io: IOThread               # set by Node.__init__ (they need this context)
        self.connectors: Connectors
        # the running node's parts (Node.start)
        self.address = ""
        self.incarnation = 0
        self.proxy: Proxy | None = None
        self.local: Local
        self.links: Links
        self.dispatcher: Dispatcher

    @property
    def running(self) -> bool:
        """True from ``start`` until ``stop``."""
        return self.io.running

    def require_started(self) -> None:
        """NotStarted unless the node runs."""
        if not self.running:
            raise NotStarted("start the node first (node.start() or `with Node(...)`)")

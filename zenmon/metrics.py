"""Metrics: ZenMonitor's instrument list, live, by full name; Prometheus exposition.

``collect(ctx)`` reads a node's core counters and table sizes plus the wire counters
kept by the I/O thread (``node.metrics()`` calls it). ``PrometheusCollector(node)``
exposes the same values to ``prometheus_client`` (register it on a registry of your
choice).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import _core

if TYPE_CHECKING:
    from .context import NodeContext
    from .node import Node


class WireCounters:
    """Bytes and messages through this node's sockets (kept by the I/O thread)."""

    __slots__ = ("messages_sent", "messages_received", "bytes_sent", "bytes_received",
                 "frames_dropped", "frames_unsent", "internal_errors", "peers_dropped",
                 "peers_refused", "gil_yields")

    def __init__(self) -> None:
        self.messages_sent = self.messages_received = 0
        self.bytes_sent = self.bytes_received = 0
        self.frames_dropped = 0      # received frames thrown away (bad, stale, over a bound)
        self.frames_unsent = 0       # outbound frames ZeroMQ refused (peer gone, HWM full)
        self.internal_errors = 0
        self.peers_dropped = 0       # sessions ended because the peer went over a bound
        self.peers_refused = 0       # CURVE handshakes that failed before ZAP (see Proxy)
        self.gil_yields = 0          # the I/O thread, busy for a GIL slice, let others in


# counters only ever grow; the rest are gauges
COUNTERS = frozenset({
    "zenmon.local.monitor", "zenmon.local.demonitor", "zenmon.local.enqueue",
    "zenmon.local.connector.enqueue", "zenmon.local.connector.sweep",
    "zenmon.local.dispatcher.events.delivered", "zenmon.local.dispatcher.events.processed",
    "zenmon.proxy.batcher.enqueue", "zenmon.proxy.batcher.sweep",
    "zenmon.wire.messages.sent", "zenmon.wire.messages.received", "zenmon.wire.bytes.sent",
    "zenmon.wire.bytes.received", "zenmon.wire.frames.dropped", "zenmon.wire.peers.refused",
    "zenmon.wire.frames.unsent", "zenmon.wire.peers.dropped",
    "zenmon.node.internal_errors", "zenmon.node.gil_yields",
    "zenmon.local.link", "zenmon.local.unlink", "zenmon.local.link.signals",
})


def collect(ctx: NodeContext) -> dict[str, int]:
    """Every metric of the node of `ctx` -> {full name: value}."""
    core = ctx.core
    counters = core.counters()
    sizes = core.sizes()
    wire = ctx.wire
    proxy = ctx.proxy
    curve = ctx.curve
    connectors = list(ctx.connectors.open)
    inbox_total = core.inbox_total()
    link_sizes = _core.link_sizes(core)
    link_counters = _core.link_counters(core)
    return {
        "zenmon.local.monitor": counters["monitor"],
        "zenmon.local.demonitor": counters["demonitor"],
        "zenmon.local.enqueue": counters["enqueue"],
        "zenmon.local.batch_length": counters["batch_length"],
        "zenmon.local.references.size": sizes["references"],
        "zenmon.local.targets.size": sizes["targets"],
        "zenmon.local.processes.size": sizes["processes"],
        "zenmon.local.message_queue_len": inbox_total,
        "zenmon.local.connector.enqueue": counters["connector_enqueue"],
        "zenmon.local.connector.sweep": sum(c.sweeps for c in connectors),
        "zenmon.local.connector.queue_len": sizes["connector_queued"],
        "zenmon.local.connectors.size": len(connectors),
        # connectors whose queues the core still holds (a closed one keeps 4 words)
        "zenmon.local.connectors.open": sizes["connectors_open"],
        "zenmon.local.connector.names.size": sum(
            len(c.names) for c in connectors),
        "zenmon.local.dispatcher.events.delivered": counters["delivered"],
        "zenmon.local.dispatcher.events.processed": counters["processed"],
        "zenmon.local.dispatcher.queue_len": sizes["downs_queued"],
        "zenmon.proxy.subscribers.size": sizes["subscribers"],
        "zenmon.proxy.peers.size": len(proxy.peers) if proxy is not None else 0,
        "zenmon.proxy.name_subscribers.size": core.name_subscribers(),
        "zenmon.proxy.batcher.enqueue": counters["batcher_enqueue"]
        + (proxy.noproc_enqueued if proxy is not None else 0),
        "zenmon.proxy.batcher.sweep": proxy.sweeps if proxy is not None else 0,
        "zenmon.proxy.batcher.queue_len": sizes["batcher_queued"],
        # dead summaries sent and not yet acknowledged by their connectors (kept for
        # resending): what the proxy has in flight, not what its batchers still hold
        "zenmon.proxy.message_queue_len": sum(
            len(peer.unacked) for peer in list(proxy.peers.values()))
        if proxy is not None else 0,
        "zenmon.wire.messages.sent": wire.messages_sent,
        "zenmon.wire.messages.received": wire.messages_received,
        "zenmon.wire.bytes.sent": wire.bytes_sent,
        "zenmon.wire.bytes.received": wire.bytes_received,
        "zenmon.wire.frames.dropped": wire.frames_dropped,
        "zenmon.wire.frames.unsent": wire.frames_unsent,
        "zenmon.wire.peers.dropped": wire.peers_dropped,
        "zenmon.node.internal_errors": wire.internal_errors,
        "zenmon.node.gil_yields": wire.gil_yields,
        "zenmon.wire.peers.refused": wire.peers_refused
        + (curve.refused if curve is not None else 0),
        "zenmon.memory.core_bytes": core.memory_bytes(),
        # links: link records here (a local link has one per end), ops to send
        "zenmon.local.links.size": link_sizes["links"],
        "zenmon.local.link_ops.queue_len": link_sizes["link_ops_queued"],
        "zenmon.local.link": link_counters["link"],
        "zenmon.local.unlink": link_counters["unlink"],
        "zenmon.local.link.signals": link_counters["link_signal"],
    }


def _prometheus_core() -> Any:
    """``prometheus_client.core``, imported on first use (it is an optional extra)."""
    try:
        from prometheus_client import core
    except ImportError as exc:
        raise ImportError(
            "zenmon.PrometheusCollector needs the prometheus-client package: "
            "pip install 'zenmon[prometheus]'") from exc
    return core


class PrometheusCollector:
    """A ``prometheus_client`` collector for the nodes of one process.

    ``registry.register(PrometheusCollector(node_a, node_b))``; nodes made later join
    with ``add(node)`` (and leave with ``remove(node)``). A registry refuses two
    collectors exporting the same names, so use one collector per process. Names
    are the metric names with dots as underscores; every series carries the label
    ``node="<address>"``. Counters are typed as counters
    (``zenmon_local_monitor_total``...), everything else as gauges; ``describe()``
    lists the families without reading values.
    """

    def __init__(self, *nodes: Node) -> None:
        _prometheus_core()   # fail here, with the fix in the message, not at scrape time
        self._nodes: list[Node] = list(nodes)

    def add(self, node: Node) -> None:
        """Export `node`'s metrics too."""
        if node not in self._nodes:
            self._nodes.append(node)

    def remove(self, node: Node) -> None:
        """Stop exporting `node`'s metrics."""
        if node in self._nodes:
            self._nodes.remove(node)

    def describe(self) -> Iterator[Any]:
        """The metric families without samples (a registry checks names with it)."""
        names = list(self._nodes[0].metrics()) if self._nodes else []
        return iter(self._families(names, {}))

    def collect(self) -> Iterator[Any]:
        """Yield one metric family per zenmon metric, one sample per node."""
        values = {node.address or repr(node): node.metrics() for node in list(self._nodes)}
        names = list(dict.fromkeys(name for metrics in values.values() for name in metrics))
        return iter(self._families(names, values))

    @staticmethod
    def _families(names: list[str], values: dict[str, dict[str, int]]) -> list[Any]:
        core = _prometheus_core()
        CounterMetricFamily, GaugeMetricFamily = core.CounterMetricFamily, core.GaugeMetricFamily

        families = []
        for name in names:
            flat = name.replace(".", "_")
            family: Any
            if name in COUNTERS:
                family = CounterMetricFamily(flat, f"zenmon counter {name}", labels=["node"])
            else:
                family = GaugeMetricFamily(flat, f"zenmon gauge {name}", labels=["node"])
            for address, metrics in values.items():
                if name in metrics:
                    family.add_metric([address], metrics[name])
            families.append(family)
        return families

"""Metrics: ZenMonitor's instrument list, live, by full name; Prometheus exposition.

``collect(node)`` reads the core's counters and table sizes plus the wire counters
kept by the I/O thread. ``PrometheusCollector(node)`` exposes the same values to
``prometheus_client`` (register it on a registry of your choice).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import _core

if TYPE_CHECKING:
    from .node import Node


class WireCounters:
    """Bytes and messages through this node's sockets (kept by the I/O thread)."""

    __slots__ = ("messages_sent", "messages_received", "bytes_sent", "bytes_received",
                 "frames_dropped", "internal_errors")

    def __init__(self) -> None:
        self.messages_sent = self.messages_received = 0
        self.bytes_sent = self.bytes_received = 0
        self.frames_dropped = 0
        self.internal_errors = 0


# counters only ever grow; the rest are gauges
COUNTERS = frozenset({
    "zenmon.local.monitor", "zenmon.local.demonitor", "zenmon.local.enqueue",
    "zenmon.local.connector.enqueue", "zenmon.local.connector.sweep",
    "zenmon.local.dispatcher.events.delivered", "zenmon.local.dispatcher.events.processed",
    "zenmon.proxy.batcher.enqueue", "zenmon.proxy.batcher.sweep",
    "zenmon.wire.messages.sent", "zenmon.wire.messages.received", "zenmon.wire.bytes.sent",
    "zenmon.wire.bytes.received", "zenmon.wire.frames.dropped", "zenmon.wire.peers.refused",
    "zenmon.local.link", "zenmon.local.unlink", "zenmon.local.link.signals",
})


def collect(node: Node) -> dict[str, int]:
    """Every metric of `node` -> {full name: value}."""
    core = node._core
    counters = core.counters()
    sizes = core.sizes()
    wire = node._wire
    proxy = getattr(node, "_proxy", None)
    curve = node._curve
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
        "zenmon.local.connector.sweep": sum(c.sweeps for c in list(node._all_connectors)),
        "zenmon.local.connector.queue_len": sizes["connector_queued"],
        "zenmon.local.connectors.size": len(node._all_connectors),
        "zenmon.local.dispatcher.events.delivered": counters["delivered"],
        "zenmon.local.dispatcher.events.processed": counters["processed"],
        "zenmon.local.dispatcher.queue_len": sizes["downs_queued"],
        "zenmon.proxy.subscribers.size": sizes["subscribers"],
        "zenmon.proxy.peers.size": len(proxy.peers) if proxy is not None else 0,
        "zenmon.proxy.batcher.enqueue": counters["batcher_enqueue"]
        + (proxy.noproc_enqueued if proxy is not None else 0),
        "zenmon.proxy.batcher.sweep": proxy.sweeps if proxy is not None else 0,
        "zenmon.proxy.batcher.queue_len": sizes["batcher_queued"],
        "zenmon.proxy.message_queue_len": sizes["batcher_queued"],
        "zenmon.wire.messages.sent": wire.messages_sent,
        "zenmon.wire.messages.received": wire.messages_received,
        "zenmon.wire.bytes.sent": wire.bytes_sent,
        "zenmon.wire.bytes.received": wire.bytes_received,
        "zenmon.wire.frames.dropped": wire.frames_dropped,
        "zenmon.node.internal_errors": wire.internal_errors,
        "zenmon.wire.peers.refused": curve.refused if curve is not None else 0,
        "zenmon.memory.core_bytes": core.memory_bytes(),
        # links: link records here (a local link has one per end), ops to send
        "zenmon.local.links.size": link_sizes["links"],
        "zenmon.local.link_ops.queue_len": link_sizes["link_ops_queued"],
        "zenmon.local.link": link_counters["link"],
        "zenmon.local.unlink": link_counters["unlink"],
        "zenmon.local.link.signals": link_counters["link_signal"],
    }


class PrometheusCollector:
    """A ``prometheus_client`` collector for one node's metrics.

    ``prometheus_client.REGISTRY.register(PrometheusCollector(node))``; names are the
    metric names with dots as underscores (``zenmon_local_monitor_total``...).
    """

    def __init__(self, node: Node) -> None:
        self._node = node

    def collect(self) -> Iterator[Any]:
        """Yield one metric family per zenmon metric."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        for name, value in collect(self._node).items():
            flat = name.replace(".", "_")
            if name in COUNTERS:
                yield CounterMetricFamily(flat, f"zenmon counter {name}", value=value)
            else:
                yield GaugeMetricFamily(flat, f"zenmon gauge {name}", value=value)

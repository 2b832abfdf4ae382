"""The dead-summary pace a connector asks for in its HELLO (adaptive dispatch mode).

A node in ``adaptive`` mode paces its own inboxes, so it asks the nodes it watches
for dead summaries of ``adaptive_summary_size`` certificates every
``adaptive_summary_interval`` ms instead of their batcher defaults. Checked on the
wire format (pure logic), against a node in a subprocess (real sockets), and with
hostile HELLO options from a raw DEALER.
"""

from __future__ import annotations

import time

import pytest
import zmq

import zenmon
from helpers import metric, receive_all, wait_for
from remote import wait_subscribed
from zenmon import protocol as p

SWEEPS = "zenmon.proxy.batcher.sweep"
DROPPED = "zenmon.wire.frames.dropped"


# ------------------------------------------------------------------ wire format


def test_hello_options_round_trip() -> None:
    frame = p.pack(p.HELLO, 1, 0, 7, p.hello_body("tcp://127.0.0.1:5000", 1000, 5))
    assert p.unpack_hello(frame) == ("tcp://127.0.0.1:5000", 1000, 5)
    plain = p.pack(p.HELLO, 1, 0, 7, p.hello_body("tcp://127.0.0.1:5000"))
    assert p.unpack_hello(plain) == ("tcp://127.0.0.1:5000", 0, 0)


def test_a_bare_address_hello_asks_for_nothing() -> None:
    frame = p.pack(p.HELLO, 1, 0, 7, b"tcp://rogue")
    assert p.unpack_hello(frame) == ("tcp://rogue", 0, 0)


@pytest.mark.parametrize("body", [
    b"tcp://x\0",                                            # options cut short
    b"tcp://x\0" + b"\1" * 9,                                # one byte too many
    b"tcp://x\0" + p.HELLO_OPTIONS.pack(p.MAX_SUMMARY_SIZE + 1, 5),
    b"tcp://x\0" + p.HELLO_OPTIONS.pack(10, p.MAX_SUMMARY_INTERVAL + 1),
    b"x" * (p.MAX_ADDRESS + 1),
])
def test_malformed_hello_options_are_a_protocol_error(body: bytes) -> None:
    with pytest.raises(p.ProtocolError):
        p.unpack_hello(p.pack(p.HELLO, 1, 0, 7, body))


def test_config_bounds_the_pace_it_asks_for() -> None:
    with pytest.raises(ValueError, match="adaptive_summary_size"):
        zenmon.Config(adaptive_summary_size=p.MAX_SUMMARY_SIZE + 1)
    with pytest.raises(ValueError):
        zenmon.Config(adaptive_summary_interval=0)


# ------------------------------------------------------------------ real nodes


def _storm_summaries(node_factory, remote_node, mode: str, n: int) -> tuple[int, float]:
    """A watcher here monitors n processes of a default-settings node in a subprocess,
    which all exit. -> (dead summaries that node sent, first -> last DOWN in s)."""
    local = node_factory(dispatch_mode=mode, adaptive_summary_size=300,
                         adaptive_summary_interval=50, connector_sweep_interval=10)
    remote = remote_node()                     # ZenMonitor's batcher: 5,000 per 100 ms
    watcher = local.process()
    targets = remote.spawn(n)
    refs = {watcher.monitor(t): t for t in targets}
    wait_subscribed(remote, n, timeout=20)
    sweeps = remote.metric(SWEEPS)
    remote.exit("all", "storm")
    first = watcher.receive(timeout=10)
    started = time.monotonic()
    rest = receive_all(watcher, n - 1, timeout=20)
    span = time.monotonic() - started
    downs = [first, *rest]
    assert {d.ref for d in downs} == set(refs)          # each exactly once
    assert all(d.pid == refs[d.ref] and d.reason == "storm" for d in downs)
    with pytest.raises(TimeoutError):
        watcher.receive(timeout=0.1)
    return remote.metric(SWEEPS) - sweeps, span


def test_an_adaptive_watcher_gets_summaries_at_the_pace_it_asked_for(
        node_factory, remote_node):
    n = 3000
    sweeps, span = _storm_summaries(node_factory, remote_node, "adaptive", n)
    assert sweeps >= n // 300                  # at most 300 certificates each
    # ... and no faster than one per 50 ms: 10 summaries span at least 9 intervals
    assert span >= 9 * 0.050 * 0.9, span


def test_a_token_bucket_watcher_keeps_the_proxys_batcher_settings(
        node_factory, remote_node):
    sweeps, _ = _storm_summaries(node_factory, remote_node, "token_bucket", 3000)
    assert sweeps <= 2                         # 5,000 per summary: one (two if split)


def test_a_hello_asking_for_too_much_is_dropped_unanswered(node):
    context = zmq.Context.instance()
    dealer = context.socket(zmq.DEALER)
    try:
        dealer.connect(node.address)
        dropped = metric(node, DROPPED)
        body = b"tcp://rogue\0" + p.HELLO_OPTIONS.pack(p.MAX_SUMMARY_SIZE + 1, 1)
        dealer.send(p.pack(p.HELLO, 42, 0, 9, body))
        wait_for(lambda: metric(node, DROPPED) == dropped + 1)
        assert not dealer.poll(200)            # no WELCOME, no session
        assert metric(node, "zenmon.proxy.peers.size") == 0
        dealer.send(p.pack(p.HELLO, 42, 0, 9, p.hello_body("tcp://rogue", 10, 1)))
        assert dealer.poll(5000), "a valid HELLO from the same dealer is welcomed"
        assert p.unpack_header(dealer.recv()).type == p.WELCOME
    finally:
        dealer.close(linger=0)

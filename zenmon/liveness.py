"""When a silent peer is down: the two-phase liveness rule, as pure functions.

Phase one is the connection. ZeroMQ's ZMTP heartbeats run in libzmq's I/O threads,
which need no GIL: a peer whose Python is stalled still answers them, a dead
process, a lost host or a partition does not. Every socket pings every
``ivl`` ms and drops its connection when ``timeout`` ms pass after a ping with
nothing received; the socket monitor reports that as a disconnect. A disconnect
read at time ``d`` therefore says the peer was last reachable no later than
``d - (timeout + ivl)`` (the ping that timed out went at most ``ivl`` after the last
traffic), which estimates the moment of the fault far better than the last
zenmon heartbeat heard (up to ``heartbeat_interval`` older).

Phase two is Python. A peer is declared down when its connection is gone and the
time since it was last reachable (that estimate, or the last frame heard, whichever
is later) reaches ``heartbeat_timeout`` less one sweep (the sweep that sees it
declares it, so detection stays within ``heartbeat_timeout``). A peer whose
connection is alive but whose Python is silent is down only after
``pause_timeout``. A connection cut by a partition shorter than that is re-dialled
with a fresh TCP connect every ``reconnect_ivl + connect_timeout`` ms (a fresh
connect is not slowed by the kernel's retransmission backoff on the old one) and
the session goes on; near ``heartbeat_timeout`` that re-dial is a race, measured
in the README.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import zmq

from .config import Config

#: libzmq takes ZMQ_HEARTBEAT_TTL in deciseconds and caps it at 6553.5 s
MAX_TTL_MS = 6_553_599


@dataclasses.dataclass(frozen=True)
class Zmtp:
    """The ZMTP and reconnect settings a node's sockets use (milliseconds)."""

    ivl: int              # ZMQ_HEARTBEAT_IVL: a PING this often
    timeout: int          # ZMQ_HEARTBEAT_TIMEOUT: drop the connection this long after a PING
    ttl: int              # ZMQ_HEARTBEAT_TTL: what the remote may wait without traffic
    connect_timeout: int  # ZMQ_CONNECT_TIMEOUT: one TCP connect attempt at most this long
    reconnect_ivl: int    # ZMQ_RECONNECT_IVL: between attempts (no backoff)

    @property
    def silence_before_drop(self) -> float:
        """Seconds a connection can have been silent when libzmq drops it."""
        return (self.timeout + self.ivl) / 1000


def zmtp_settings(config: Config) -> Zmtp:
    """ZMTP settings derived from the node's heartbeat settings.

    Pings at a quarter of ``heartbeat_interval`` and a drop after 40% of
    ``heartbeat_timeout`` leave the re-dial of a cut connection more than half of
    ``heartbeat_timeout`` to succeed before the peer is declared down.
    """
    ivl = max(10, config.heartbeat_interval // 4)
    timeout = max(2 * ivl, config.heartbeat_timeout * 2 // 5)
    return Zmtp(
        ivl=ivl, timeout=timeout, ttl=min(config.heartbeat_timeout, MAX_TTL_MS),
        connect_timeout=max(50, config.heartbeat_interval // 2),
        reconnect_ivl=max(10, ivl // 2))


def apply_heartbeats(socket: Any, zmtp: Zmtp, *, dialer: bool) -> None:
    """Set ZMTP heartbeats on `socket` (and, on a dialling socket, TTL and the
    reconnect pace)."""
    socket.setsockopt(zmq.HEARTBEAT_IVL, zmtp.ivl)
    socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, zmtp.timeout)
    if dialer:
        socket.setsockopt(zmq.HEARTBEAT_TTL, zmtp.ttl)
        socket.setsockopt(zmq.CONNECT_TIMEOUT, zmtp.connect_timeout)
        socket.setsockopt(zmq.RECONNECT_IVL, zmtp.reconnect_ivl)
        socket.setsockopt(zmq.RECONNECT_IVL_MAX, 0)     # no exponential backoff


def reachable_at(last_heard: float, transport_up: bool, transport_down_at: float,
                 zmtp: Zmtp, acked_at: float = 0.0, sampled_at: float = 0.0) -> float:
    """The latest moment the peer is known to have been reachable.

    `acked_at` / `sampled_at` (0.0: unknown): when the dropped connection's data was
    last seen acknowledged by the peer's kernel, and when it was last read
    (:class:`zenmon.tcpinfo.AckClock`). When it was read after the moment the drop
    dates the fault, the acknowledgements date it instead if they stopped earlier:
    that is a drop by the far side, whose FIN reaches us a retransmission timeout
    late when only what we send is lost (a one-way partition).
    """
    if transport_up or not transport_down_at:
        return last_heard
    dropped = transport_down_at - zmtp.silence_before_drop
    if acked_at and sampled_at > dropped:
        # like the drop's own date, the last moment traffic was seen to get through
        dropped = min(dropped, acked_at)
    return max(last_heard, dropped)


def down_deadline(last_heard: float, transport_up: bool, transport_down_at: float,
                  zmtp: Zmtp, config: Config, acked_at: float = 0.0,
                  sampled_at: float = 0.0) -> float:
    """When a peer whose connection stays gone is declared down (monotonic seconds).

    ``inf`` while the connection is up: then only ``pause_timeout`` of silence
    (:func:`paused_too_long`) ends it.
    """
    if transport_up:
        return float("inf")
    margin = config.connector_sweep_interval / 1000
    return (reachable_at(last_heard, transport_up, transport_down_at, zmtp,
                         acked_at, sampled_at)
            + max(0.0, config.heartbeat_timeout / 1000 - margin))


def paused_too_long(now: float, last_heard: float, config: Config) -> bool:
    """A peer with a live connection but a silent Python: down after pause_timeout."""
    return now - last_heard > max(config.pause_timeout, config.heartbeat_timeout) / 1000

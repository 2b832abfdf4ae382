"""What the kernel knows of one TCP connection: how much of our data the peer has
acknowledged (Linux ``TCP_INFO``).

libzmq owns its connections' file descriptors; its socket monitor names the one it
connected (``EVENT_CONNECTED``), so the I/O thread can read that connection's
counters without the GIL-free world noticing. The kernel acknowledges what a peer
receives even while the peer's Python is stalled, and stops the moment the path to
the peer is cut, in either direction (a lost segment and a lost ACK look alike from
here). So "our data was last acknowledged at t" dates a cut even when the far side's
libzmq is the one that drops the connection: its FIN then queues behind our lost
data and reaches us a retransmission timeout later (see ``zenmon.liveness``).

Elsewhere than Linux, :func:`read` answers None and liveness goes without it.
"""

from __future__ import annotations

import socket
import struct

_TCP_INFO: int | None = getattr(socket, "TCP_INFO", None) if hasattr(socket, "SOL_TCP") else None
#: struct tcp_info (linux/tcp.h): tcpi_unacked at offset 24, tcpi_bytes_acked at 120
_LAYOUT = struct.Struct("=24xI92xQ")


def read(fd: int, port: int) -> tuple[int, int] | None:
    """(segments in flight, bytes acknowledged so far) of the TCP connection on `fd`,
    or None: no such counters here, or `fd` is no longer a TCP connection to `port`
    (libzmq closed it, and maybe reused the number)."""
    if _TCP_INFO is None:
        return None
    try:
        sock = socket.socket(fileno=fd)     # wraps the fd; detached below, never closed
    except (OSError, ValueError):
        return None
    try:
        if sock.type != socket.SOCK_STREAM or sock.getpeername()[1] != port:
            return None
        raw = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _LAYOUT.size)
    except (OSError, IndexError, TypeError):
        return None
    finally:
        sock.detach()
    if len(raw) < _LAYOUT.size:
        return None              # a kernel older than tcpi_bytes_acked (Linux 4.1)
    unacked, acked = _LAYOUT.unpack(raw)
    return unacked, acked


class AckClock:
    """When one connection's data was last known to be acknowledged, from samples of
    :func:`read` taken every sweep (monotonic seconds; 0.0: no sample yet)."""

    __slots__ = ("fd", "port", "acked_bytes", "acked_at", "sampled_at")

    def __init__(self, fd: int, port: int) -> None:
        self.fd = fd
        self.port = port
        self.acked_bytes = -1
        self.acked_at = 0.0      # an ACK came in after this moment
        self.sampled_at = 0.0    # the last sample that could be read

    def sample(self, now: float) -> None:
        """Read the counters: an advance of the acknowledged bytes, or nothing in
        flight, means an ACK came in since the last sample. ``acked_at`` takes the
        earliest moment that says (the last sample before it), as
        ``zenmon.liveness`` dates a drop by the earliest moment it allows."""
        counters = read(self.fd, self.port)
        if counters is None:
            return
        unacked, acked = counters
        if self.sampled_at and (not unacked or acked != self.acked_bytes):
            self.acked_at = self.sampled_at
        self.acked_bytes = acked
        self.sampled_at = now

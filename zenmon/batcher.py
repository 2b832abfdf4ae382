"""The Batcher: a peer's death certificates, sent as one dead summary per sweep.

One per peer of the proxy. Its certificates queue in the core (a
``_core.CertificateQueue``: keys and reasons in C memory, filled by process exits);
the proxy's sweep paces it per peer and calls ``dead_summary_body`` here. A sweep
takes at most ``batcher_chunk_size`` of them: keys packed as little-endian uint64
straight from the queue, each distinct reason encoded once (msgpack, never pickle),
and a uint32 reason index per key only when there is more than one reason. A summary
is kept under the receiver's frame limit: when the reasons would not fit, the
largest are sent as ``TRUNCATED`` (each DOWN still arrives, exactly once, with a
shorter reason).
"""

from __future__ import annotations

import msgpack

from . import protocol
from ._core import CertificateQueue
from .codec import encode_reason, encode_reasons
from .truncator import TRUNCATED

_TRUNCATED = encode_reason(TRUNCATED)


def dead_summary_body(certificates: CertificateQueue, chunk_size: int, seq: int, ack: int,
                      max_bytes: int = protocol.MAX_FRAME) -> bytes:
    """Pop up to `chunk_size` certificates from a peer's queue into a DEAD_SUMMARY body
    of at most `max_bytes` (the largest reasons become TRUNCATED when needed)."""
    keys, reasons, indexes = certificates.take(chunk_size)
    if len(reasons) <= 1:
        indexes = b""
    encoded = encode_reasons(reasons)
    room = max_bytes - protocol.SEQ_ACK.size - protocol.COUNT.size - len(keys) - len(indexes)
    if len(encoded) > room:
        encoded = _fit(reasons, room)
    return protocol.pack_dead_summary(seq, ack, keys, indexes, encoded)


def _fit(reasons: list[object], room: int) -> bytes:
    """The reasons as one msgpack array of at most `room` bytes, largest cut first."""
    parts = [encode_reasons([reason])[1:] for reason in reasons]   # drop each array header
    total = sum(len(part) for part in parts) + 5
    for i in sorted(range(len(parts)), key=lambda i: -len(parts[i])):
        if total <= room:
            break
        total -= len(parts[i]) - len(_TRUNCATED)
        parts[i] = _TRUNCATED
    return bytes(msgpack.Packer().pack_array_header(len(parts))) + b"".join(parts)

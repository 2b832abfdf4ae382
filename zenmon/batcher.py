"""The Batcher: a peer's death certificates, sent as one dead summary per sweep.

The certificates queue in the core (``_core.Batcher``: keys and reasons in C
memory). A sweep takes at most ``batcher_chunk_size`` of them: keys packed as
little-endian uint64 straight from the queue, each distinct reason encoded once
(msgpack, never pickle), and a uint32 reason index per key only when there is
more than one reason.
"""

from __future__ import annotations

from . import protocol
from ._core import Batcher
from .codec import encode_reasons


def dead_summary_body(batcher: Batcher, chunk_size: int, seq: int, ack: int) -> bytes:
    """Pop up to `chunk_size` certificates from `batcher` into a DEAD_SUMMARY body."""
    keys, reasons, indexes = batcher.take(chunk_size)
    if len(reasons) <= 1:
        indexes = b""
    return protocol.pack_dead_summary(seq, ack, keys, indexes, encode_reasons(reasons))

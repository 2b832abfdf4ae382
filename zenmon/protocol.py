"""The wire: message types, the versioned header, and frame (de)composition.

Every message is one ZeroMQ frame: a 28-byte little-endian header then a body.
See ``docs/protocol.md`` for the state machines. Decoding never trusts input: any
short, oversized or inconsistent frame raises :class:`ProtocolError`, which the
node counts in ``zenmon.wire.frames.dropped`` and drops.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from typing import NamedTuple

import msgpack

MAGIC = b"ZM"
VERSION = 1
HEADER = struct.Struct("<2sBBQQQ")   # magic, version, type, sender inc, receiver inc, session
SEQ_ACK = struct.Struct("<QQ")       # sequence number, cumulative ack of the other stream
COUNT = struct.Struct("<Q")
MAX_FRAME = 64 * 1024 * 1024         # hard ceiling; Config.max_frame_size is the limit used
MAX_BATCH = 8 * 1024 * 1024          # hard ceiling; Config.max_batch is the limit used
MAX_NAME = 1024                      # utf-8 bytes of a registered name sent in a SUBSCRIBE
#: Optional tail of a HELLO, after a NUL: the most certificates per DEAD_SUMMARY and
#: the least milliseconds between two that the connector asks for (0: the proxy's own
#: batcher_chunk_size / batcher_sweep_interval).
HELLO_OPTIONS = struct.Struct("<II")
MAX_SUMMARY_SIZE = 100_000           # the most certificates a HELLO may ask per summary
MAX_SUMMARY_INTERVAL = 60_000        # ms
MAX_ADDRESS = 1024                   # bytes of a HELLO's address

# connector -> proxy
HELLO = 1            # body: the sender node's address (utf-8) [, NUL, HELLO_OPTIONS]
SUBSCRIBE = 2        # body: seq, ack, n, n packed instructions, msgpack {name key: name}
HEARTBEAT = 3        # body: seq (last SUBSCRIBE sent), ack (last DEAD_SUMMARY received)
NACK_DEADS = 4       # body: seq (first DEAD_SUMMARY missing), ack
GOODBYE = 5          # no body: the connector is closing its session
# proxy -> connector
WELCOME = 17         # body: the proxy node's address (its identity, utf-8); header
                     # carries the proxy incarnation
DEAD_SUMMARY = 18    # body: seq, ack, n, n packed keys, n packed uint32 reason idx, reasons
HEARTBEAT_ACK = 19   # body: seq (last DEAD_SUMMARY sent), ack (last SUBSCRIBE applied)
NACK_SUBSCRIBE = 20  # body: seq (first SUBSCRIBE missing), ack
RESET = 21           # no body: unknown session or wrong incarnation; start over
FAREWELL = 22        # no body: the proxy's node is stopping: all its processes are dead

TYPE_NAMES = {HELLO: "HELLO", SUBSCRIBE: "SUBSCRIBE", HEARTBEAT: "HEARTBEAT",
              NACK_DEADS: "NACK_DEADS", GOODBYE: "GOODBYE", WELCOME: "WELCOME",
              DEAD_SUMMARY: "DEAD_SUMMARY", HEARTBEAT_ACK: "HEARTBEAT_ACK",
              NACK_SUBSCRIBE: "NACK_SUBSCRIBE", RESET: "RESET"}
CONNECTOR_TYPES = frozenset({HELLO, SUBSCRIBE, HEARTBEAT, NACK_DEADS, GOODBYE})
PROXY_TYPES = frozenset({WELCOME, DEAD_SUMMARY, HEARTBEAT_ACK, NACK_SUBSCRIBE, RESET,
                         FAREWELL})


class ProtocolError(ValueError):
    """A frame that is not a valid zenmon message."""


class VersionMismatch(ProtocolError):
    """A zenmon frame of another protocol version: the peer is incompatible."""


class Header(NamedTuple):
    """The fields every message carries."""

    type: int
    sender: int      # sender node's incarnation
    receiver: int    # the incarnation the sender believes the receiver has (0: unknown)
    session: int     # connector session the message belongs to


def pack(kind: int, sender: int, receiver: int, session: int, body: bytes = b"") -> bytes:
    """One frame: header + body."""
    return HEADER.pack(MAGIC, VERSION, kind, sender, receiver, session) + body


def unpack_header(frame: bytes) -> Header:
    """Parse and check the header; raises ProtocolError / VersionMismatch."""
    if len(frame) < HEADER.size:
        raise ProtocolError(f"frame of {len(frame)} bytes is shorter than a header")
    if len(frame) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(frame)} bytes is over {MAX_FRAME}")
    magic, version, kind, sender, receiver, session = HEADER.unpack_from(frame)
    if magic != MAGIC:
        raise ProtocolError("not a zenmon frame (bad magic)")
    if version != VERSION:
        raise VersionMismatch(f"protocol version {version}, this node speaks {VERSION}")
    return Header(kind, sender, receiver, session)


def hello_body(address: str, summary_size: int = 0, summary_interval: int = 0) -> bytes:
    """Body of a HELLO: the connector's address, then the pace it asks for (0: default)."""
    return address.encode() + b"\0" + HELLO_OPTIONS.pack(summary_size, summary_interval)


def unpack_hello(frame: bytes) -> tuple[str, int, int]:
    """(address, summary size, summary interval ms) of a HELLO; 0 means the proxy's own.

    A bare address (no NUL) asks for nothing. Options out of range raise ProtocolError.
    """
    body = frame[HEADER.size:]
    address, nul, options = body.partition(b"\0")
    if len(address) > MAX_ADDRESS:
        raise ProtocolError(f"HELLO address of {len(address)} bytes is over {MAX_ADDRESS}")
    size = interval = 0
    if nul:
        if len(options) != HELLO_OPTIONS.size:
            raise ProtocolError("bad HELLO options length")
        size, interval = HELLO_OPTIONS.unpack(options)
        if size > MAX_SUMMARY_SIZE or interval > MAX_SUMMARY_INTERVAL:
            raise ProtocolError(f"HELLO asks for summaries of {size} every {interval} ms")
    return address.decode("utf-8", "replace"), size, interval


def unpack_welcome(frame: bytes) -> str:
    """The identity a WELCOME names (its proxy node's advertised address)."""
    body = frame[HEADER.size:]
    if len(body) > MAX_ADDRESS:
        raise ProtocolError(f"WELCOME address of {len(body)} bytes is over {MAX_ADDRESS}")
    return body.decode("utf-8", "replace")


def seq_ack(frame: bytes) -> tuple[int, int]:
    """(seq, ack) of a HEARTBEAT / HEARTBEAT_ACK / NACK body."""
    if len(frame) != HEADER.size + SEQ_ACK.size:
        raise ProtocolError("bad seq/ack body length")
    return SEQ_ACK.unpack_from(frame, HEADER.size)


def pack_seq_ack(seq: int, ack: int) -> bytes:
    """Body of HEARTBEAT / HEARTBEAT_ACK / NACK_*."""
    return SEQ_ACK.pack(seq, ack)


def pack_subscribe(seq: int, ack: int, instructions: bytes, names: dict[int, str]) -> bytes:
    """Body of SUBSCRIBE: instructions are packed uint64 (bit 63 = unsubscribe)."""
    tail = msgpack.packb(names) if names else b""
    return SEQ_ACK.pack(seq, ack) + COUNT.pack(len(instructions) // 8) + instructions + tail


def unpack_subscribe(frame: bytes, max_batch: int = MAX_BATCH,
                     ) -> tuple[int, int, memoryview, dict[int, str]]:
    """-> (seq, ack, packed instructions, names) of a SUBSCRIBE frame.

    At most `max_batch` instructions; the names map may hold no more entries than
    there are instructions (each is a name key's name), each name at most MAX_NAME
    bytes: decoding costs no more than the work the frame asks for.
    """
    offset = HEADER.size
    if len(frame) < offset + SEQ_ACK.size + COUNT.size:
        raise ProtocolError("SUBSCRIBE body too short")
    seq, ack = SEQ_ACK.unpack_from(frame, offset)
    (n,) = COUNT.unpack_from(frame, offset + SEQ_ACK.size)
    start = offset + SEQ_ACK.size + COUNT.size
    end = start + 8 * n
    if end > len(frame):
        raise ProtocolError("SUBSCRIBE instruction count exceeds the frame")
    if n > max_batch:
        raise ProtocolError(f"SUBSCRIBE of {n} instructions is over max_batch {max_batch}")
    names = _unpack_names(frame[end:], n) if end < len(frame) else {}
    return seq, ack, memoryview(frame)[start:end], names


def pack_dead_summary(seq: int, ack: int, keys: bytes, indexes: bytes,
                      reasons: bytes) -> bytes:
    """Body of DEAD_SUMMARY; `indexes` may be empty when every death has reason 0."""
    n = len(keys) // 8
    flag = 1 if indexes else 0
    return (SEQ_ACK.pack(seq, ack) + COUNT.pack(n | (flag << 63)) + keys + indexes
            + reasons)


def unpack_dead_summary(frame: bytes, max_batch: int = MAX_BATCH,
                        ) -> tuple[int, int, memoryview, memoryview, bytes]:
    """-> (seq, ack, keys, reason indexes (maybe empty), encoded reasons).

    At most `max_batch` certificates (ProtocolError otherwise).
    """
    offset = HEADER.size
    if len(frame) < offset + SEQ_ACK.size + COUNT.size:
        raise ProtocolError("DEAD_SUMMARY body too short")
    seq, ack = SEQ_ACK.unpack_from(frame, offset)
    (word,) = COUNT.unpack_from(frame, offset + SEQ_ACK.size)
    n, has_indexes = word & ((1 << 63) - 1), word >> 63
    start = offset + SEQ_ACK.size + COUNT.size
    keys_end = start + 8 * n
    index_end = keys_end + (4 * n if has_indexes else 0)
    if index_end > len(frame):
        raise ProtocolError("DEAD_SUMMARY key count exceeds the frame")
    if n > max_batch:
        raise ProtocolError(f"DEAD_SUMMARY of {n} certificates is over max_batch {max_batch}")
    view = memoryview(frame)
    return seq, ack, view[start:keys_end], view[keys_end:index_end], frame[index_end:]


def _unpack_names(data: bytes, max_entries: int) -> dict[int, str]:
    try:
        names = msgpack.unpackb(data, strict_map_key=False, max_str_len=MAX_NAME,
                                max_map_len=max_entries, max_array_len=0, max_bin_len=0,
                                max_ext_len=0)
    except Exception as exc:
        raise ProtocolError(f"bad names section: {exc}") from None
    if not isinstance(names, dict) or not all(
            type(k) is int and type(v) is str for k, v in names.items()):
        raise ProtocolError("names section is not {int: str}")
    return names


_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+(?:%[\w.-]+)?\]|[A-Za-z0-9_.-]+|\*)")


def check_address(address: object) -> str:
    """Check a node address: ``tcp://host:port`` with an optional ``?key=<40 z85>``;
    host a name, an IPv4 address or ``[IPv6]``, port 1..65535. -> the address.

    Raises TypeError for a non-str and ValueError for anything malformed, so a bad
    address is refused where it is given, never on the I/O thread.
    """
    if not isinstance(address, str):
        raise TypeError(f"a node address is a str, not {type(address).__name__}")
    endpoint, sep, query = address.partition("?")
    if sep and (not query.startswith("key=") or len(query) != 44):
        raise ValueError(f"malformed node address {address!r}: a CURVE key is "
                         "?key=<40 z85 chars>")
    if not endpoint.startswith("tcp://") or len(address) > MAX_ADDRESS:
        raise ValueError(f"malformed node address {address!r}: expected tcp://host:port")
    host, colon, port = endpoint[6:].rpartition(":")
    if (not colon or not _HOST.fullmatch(host) or not port.isascii() or not port.isdigit()
            or not 0 < int(port) < 65536):
        raise ValueError(f"malformed node address {address!r}: expected tcp://host:port "
                         "(IPv6 as [::1])")
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1].partition("%")[0])
        except ValueError:
            raise ValueError(f"malformed IPv6 address in {address!r}") from None
    return address

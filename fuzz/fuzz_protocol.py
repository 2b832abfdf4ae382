"""Fuzz the frame decoders of zenmon.protocol: only ProtocolError may come out.

Every decoder sees the raw input, and also the input behind a valid header (so
the body parsers are reached). A body that decodes must re-encode to a frame that
decodes to the same values. See fuzz/common.py for how to run it.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import Finding, run_atheris  # noqa: E402

from zenmon import protocol as p  # noqa: E402

_DECODERS = (p.unpack_hello, p.seq_ack, p.unpack_subscribe, p.unpack_dead_summary)


def _check_subscribe(frame: bytes) -> None:
    seq, ack, instructions, names = p.unpack_subscribe(frame)
    again = p.pack(p.SUBSCRIBE, 1, 2, 3, p.pack_subscribe(seq, ack, bytes(instructions),
                                                          names))
    if p.unpack_subscribe(again)[:2] != (seq, ack) or bytes(
            p.unpack_subscribe(again)[2]) != bytes(instructions) or (
            p.unpack_subscribe(again)[3] != names):
        raise Finding("SUBSCRIBE does not round-trip")


def _check_dead_summary(frame: bytes) -> None:
    seq, ack, keys, indexes, reasons = p.unpack_dead_summary(frame)
    if len(keys) % 8 or len(indexes) not in (0, len(keys) // 2):
        raise Finding(f"DEAD_SUMMARY decoded to {len(keys)} key bytes, "
                      f"{len(indexes)} index bytes")
    again = p.pack(p.DEAD_SUMMARY, 1, 2, 3, p.pack_dead_summary(
        seq, ack, bytes(keys), bytes(indexes), reasons))
    if len(keys) and p.unpack_dead_summary(again)[0:2] != (seq, ack):
        raise Finding("DEAD_SUMMARY does not round-trip")


def _check_hello(frame: bytes) -> None:
    address, size, interval = p.unpack_hello(frame)
    if not (0 <= size <= p.MAX_SUMMARY_SIZE and 0 <= interval <= p.MAX_SUMMARY_INTERVAL):
        raise Finding(f"HELLO options out of range: {size}, {interval}")


def _expect_protocol_error(fn, frame: bytes) -> None:  # type: ignore[no-untyped-def]
    try:
        fn(frame)
    except p.ProtocolError:
        pass


def test_one_input(data: bytes) -> None:
    """Decode `data` as a frame and as a body behind a valid header."""
    try:
        header = p.unpack_header(data)
    except p.ProtocolError:
        pass
    else:
        if not (0 <= header.type < 256):
            raise Finding(f"header type {header.type}")
    kind = data[0] if data else 0
    framed = p.pack(kind, 1, 2, 3, data[1:])
    for frame in (data, framed):
        _expect_protocol_error(_check_hello, frame)
        _expect_protocol_error(p.seq_ack, frame)
        if hasattr(p, "unpack_welcome"):
            _expect_protocol_error(p.unpack_welcome, frame)
        _expect_protocol_error(_check_subscribe, frame)
        _expect_protocol_error(_check_dead_summary, frame)


def seeds() -> list[bytes]:
    """One valid frame body of each kind (behind a kind byte), and a whole frame."""
    return [
        bytes([p.HELLO]) + p.hello_body("tcp://127.0.0.1:5555", 1000, 5),
        bytes([p.HEARTBEAT]) + p.pack_seq_ack(7, 3),
        bytes([p.SUBSCRIBE]) + p.pack_subscribe(1, 0, (5).to_bytes(8, "little")
                                                + (1 << 62 | 1).to_bytes(8, "little"),
                                                {1 << 62 | 1: "guild"}),
        bytes([p.DEAD_SUMMARY]) + p.pack_dead_summary(
            2, 1, (5).to_bytes(8, "little") * 2, (0).to_bytes(4, "little") * 2,
            b"\x92\xa6normal\xa7noproc"),
        p.pack(p.HEARTBEAT, 1, 2, 3, p.pack_seq_ack(1, 1)),
    ]


if __name__ == "__main__":
    run_atheris(test_one_input, seeds())

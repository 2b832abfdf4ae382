"""Fuzz the reason codec: decoding raises only CodecError, and what decodes re-encodes.

A decoded reason is what a node hands its processes, and a node may forward it
(encode_reason on it must succeed and decode to the same encoding). See
fuzz/common.py for how to run it.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import Finding, run_atheris  # noqa: E402

import zenmon  # noqa: E402
from zenmon import codec  # noqa: E402

_SMALL = codec.Limits(max_size=4096, max_str_len=256, max_bin_len=256, max_array_len=16,
                      max_map_len=8, max_depth=4)


def _round_trip(reason: object, limits: codec.Limits) -> None:
    try:
        encoded = codec.encode_reason(reason, limits)
    except codec.CodecError as exc:
        raise Finding(f"decoded {reason!r:.200} but cannot encode it: {exc}") from exc
    again = codec.decode_reason(encoded, limits)
    if codec.encode_reason(again, limits) != encoded:
        raise Finding(f"{reason!r:.200} does not round-trip")


def test_one_input(data: bytes) -> None:
    """Decode `data` as one reason and as a list of reasons, with two sets of limits."""
    selector = data[0] if data else 0
    limits = _SMALL if selector & 1 else codec.DEFAULT_LIMITS
    body = data[1:]
    try:
        reason = codec.decode_reason(body, limits)
    except codec.CodecError:
        pass
    else:
        _round_trip(reason, limits)
    try:
        reasons = codec.decode_reasons(body, limits)
    except codec.CodecError:
        pass
    else:
        if type(reasons) is not list:
            raise Finding("decode_reasons returned a non-list")
        for reason in reasons:
            _round_trip(reason, limits)
        # encode_reasons must accept what decode_reasons gave (it sends TRUNCATED
        # for what it refuses), and the result must decode again
        codec.decode_reasons(codec.encode_reasons(reasons, limits), limits)


def seeds() -> list[bytes]:
    """Encodings of every kind of reason the truncator makes."""
    pid = zenmon.Pid("tcp://127.0.0.1:5555", 123, 7)
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        exit_exception = zenmon.truncate(exc)
    reasons = ["normal", b"\x00\xff", 1 << 70, -(1 << 70), 3.5, None, True,
               (1, "a", pid), [1, [2, [3]]], {"k": (1, 2), 3: None}, exit_exception,
               "\ud800surrogate", zenmon.TRUNCATED]
    out = [b"\x00" + codec.encode_reason(r) for r in reasons]
    out.append(b"\x00" + codec.encode_reasons(reasons))
    return out


if __name__ == "__main__":
    run_atheris(test_one_input, seeds())

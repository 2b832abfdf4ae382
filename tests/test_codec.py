"""The reason codec: exact round trips, and hostile bytes that only ever raise CodecError."""

from __future__ import annotations

import contextlib
import math
import threading
import typing

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zenmon import codec
from zenmon.codec import (
    DEFAULT_LIMITS,
    MAX_BIG_INT_DIGITS,
    CodecError,
    Ext,
    Limits,
    decode_reason,
    decode_reasons,
    encode_reason,
    encode_reasons,
)
from zenmon.truncator import TRUNCATED, ExitException, truncate

FUZZ = settings(max_examples=200, deadline=None, database=None)


class FakePid:
    """Stands in for ``zenmon.Pid`` until the core is built: same fields, same marker."""

    __zenmon_pid__ = True

    def __init__(self, node: str, incarnation: int, id: int) -> None:
        self.node, self.incarnation, self.id = node, incarnation, id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FakePid) and (self.node, self.incarnation, self.id) == (
            other.node,
            other.incarnation,
            other.id,
        )

    def __hash__(self) -> int:
        return hash((self.node, self.incarnation, self.id))


@contextlib.contextmanager
def fake_pids() -> typing.Iterator[None]:
    """Make the decoder build FakePid where it would build ``zenmon._core.Pid``."""
    saved = codec._Pid
    codec._Pid = FakePid
    try:
        yield
    finally:
        codec._Pid = saved


@pytest.fixture
def real_pid() -> typing.Any:
    from zenmon import Pid  # the suite runs against the installed build

    return Pid


def same(a: object, b: object) -> bool:
    """Equal with the same types all the way down (NaN equals NaN, -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        assert isinstance(b, float)
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple))
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return a == b


def roundtrip(reason: object) -> object:
    return decode_reason(encode_reason(reason))


# Round trips

SCALARS = [
    None, True, False, 0, 1, -1, 2**31, 2**63 - 1, -(2**63), 2**63, 2**64 - 1,
    2**64, -(2**63) - 1, 10**100, -(10**100), int("9" * MAX_BIG_INT_DIGITS),
    0.0, -0.0, 1.5, -2.25e300, 5e-324, math.inf, -math.inf, math.nan,
    "", "normal", "é", "日本語", "\U0001f600", "\x00", "\ud800", "a\udfffb", TRUNCATED,
    b"", b"\x00\xff", bytes(range(256)),
]  # fmt: skip


@pytest.mark.parametrize("reason", SCALARS)
def test_scalars_roundtrip(reason: object) -> None:
    assert same(roundtrip(reason), reason)


@pytest.mark.parametrize(
    "reason",
    [
        [], (), {}, [1, "a"], (1, "a"), ((),), [()], ([],), ([(1,)], ((2,), [3])),
        {"k": (1, [2])}, {(1, 2): "tuple key", None: 0, b"b": 1, 2.5: 2, True: 3, -1: 4},
        {("nested", (1, (2,))): [{}]}, ("shutdown", {"reason": ("x", b"y")}),
        ExitException("ValueError", "bad", "Traceback ...\nValueError: bad\n"),
        [ExitException("", "", "")], {"e": ExitException("E", "\ud800", "")},
        {ExitException("K", "", ""): 1}, (10**30, [-(10**30)]),
    ],
)  # fmt: skip
def test_containers_roundtrip_with_their_types(reason: object) -> None:
    assert same(roundtrip(reason), reason)


def test_tuple_and_list_stay_distinct() -> None:
    assert type(roundtrip((1, 2))) is tuple
    assert type(roundtrip([1, 2])) is list
    assert roundtrip([(1,), [1]]) == [(1,), [1]]


def test_exit_exception_is_its_own_type() -> None:
    out = roundtrip(ExitException("a", "b", "c"))
    assert type(out) is ExitException and out == ("a", "b", "c")
    assert type(roundtrip(("a", "b", "c"))) is tuple


@fake_pids()
def test_fake_pid_roundtrip() -> None:
    pid = FakePid("tcp://127.0.0.1:7001?key=abc", 1_700_000_000_000, 2**64 - 1)
    out = roundtrip(pid)
    assert type(out) is FakePid and out == pid
    assert roundtrip({pid: (pid, [pid])}) == {pid: (pid, [pid])}
    assert decode_reasons(encode_reasons(["normal", pid])) == ["normal", pid]


def test_pid_roundtrip(real_pid: typing.Any) -> None:
    pid = real_pid("tcp://127.0.0.1:7001", 3, 42)
    out = roundtrip(pid)
    assert type(out) is real_pid and out == pid
    assert roundtrip(("down", {pid: [pid]})) == ("down", {pid: [pid]})
    assert truncate(pid) is pid


def test_pid_with_out_of_range_fields_is_refused(real_pid: typing.Any) -> None:
    payload = msgpack.packb(["tcp://h:1", -1, 0])
    with pytest.raises(CodecError):
        decode_reason(msgpack.packb(msgpack.ExtType(Ext.PID, payload)))


def test_pid_without_core_is_a_codec_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> typing.NoReturn:
        raise ImportError("no core")

    monkeypatch.setattr(codec, "_pid_type", missing)
    data = encode_reason(FakePid("tcp://h:1", 1, 2))
    with pytest.raises(CodecError):
        decode_reason(data)


def test_reasons_list_roundtrip() -> None:
    reasons = ["normal", "noproc", ("error", [1]), None, ExitException("E", "m", "t"), 2**70]
    assert same(decode_reasons(encode_reasons(reasons)), reasons)
    assert decode_reasons(encode_reasons([])) == []
    assert decode_reasons(encode_reasons(iter(("a", "b")))) == ["a", "b"]


def test_buffers_are_accepted() -> None:
    data = encode_reason(("a", b"b"))
    assert (
        roundtrip(("a", b"b")) == decode_reason(bytearray(data)) == decode_reason(memoryview(data))
    )


def test_short_strings_encode_small() -> None:
    assert encode_reason("normal") == b"\xa6normal"
    assert encode_reasons(["normal", "noproc"]) == b"\x92\xa6normal\xa6noproc"


_keys = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
_leaves = (
    _keys
    | st.floats()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.text()
    | st.builds(ExitException, st.text(max_size=10), st.text(max_size=10), st.text(max_size=10))
    | st.builds(FakePid, st.text(max_size=10), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
)
_values = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.lists(inner, max_size=5).map(tuple)
        | st.dictionaries(_keys | st.tuples(_keys, _keys), inner, max_size=5)
    ),
    max_leaves=30,
)


@FUZZ
@given(_values)
@fake_pids()
def test_any_value_roundtrips(reason: object) -> None:
    assert same(roundtrip(reason), reason)
    assert same(decode_reasons(encode_reasons([reason, reason])), [reason, reason])


_anything = st.recursive(
    st.none()
    | st.integers()
    | st.text(max_size=3000)
    | st.binary(max_size=3000)
    | st.builds(ValueError, st.text())
    | st.sets(st.integers(), max_size=3)
    | st.just(object()),
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.lists(inner, max_size=6).map(tuple)
        | st.dictionaries(st.text(max_size=5), inner, max_size=6)
    ),
    max_leaves=30,
)


@FUZZ
@given(_anything, st.integers(1, 2000), st.integers(0, 6))
def test_truncated_reasons_always_encode(reason: object, size: int, depth: int) -> None:
    truncated = truncate(reason, max_binary_size=size, truncation_depth=depth)
    assert decode_reason(encode_reason(truncated)) == truncated


# Encoding refusals


class Thing:
    pass


@pytest.mark.parametrize(
    "reason",
    [
        {1, 2}, frozenset(), Thing(), object(), bytearray(b"x"), memoryview(b"x"), 1j,
        [Thing()], ("ok", {"k": {2}}), {Thing(): 1}, msgpack.ExtType(1, b"\x90"),
        msgpack.Timestamp(0), ValueError("raw exceptions must be truncated first"),
        pytest.param(10**MAX_BIG_INT_DIGITS, id="int-too-long"), ExitException(1, "m", "t"),  # type: ignore[arg-type]
    ],
)  # fmt: skip
def test_encode_refuses_what_it_cannot_carry(reason: object) -> None:
    with pytest.raises(CodecError):
        encode_reason(reason)
    with pytest.raises(CodecError):
        encode_reasons(["normal", reason], strict=True)


@pytest.mark.parametrize("strict", [False, True])
def test_reasons_that_cannot_be_carried_are_sent_truncated(strict: bool) -> None:
    reasons = ["normal", {1, 2}, ("ok", 2**70), 10**MAX_BIG_INT_DIGITS, [Thing()], None]
    if strict:
        with pytest.raises(CodecError):
            encode_reasons(reasons, strict=True)
    else:
        decoded = decode_reasons(encode_reasons(reasons))
        assert decoded == ["normal", TRUNCATED, ("ok", 2**70), TRUNCATED, TRUNCATED, None]


def test_encode_refuses_bad_pid_fields() -> None:
    with pytest.raises(CodecError):
        encode_reason(FakePid(b"node", 1, 2))  # type: ignore[arg-type]
    with pytest.raises(CodecError):
        encode_reason(FakePid("node", -1, 2**64))  # outside uint64: msgpack overflows


def test_encode_refuses_too_deep() -> None:
    deep: object = "x"
    for _ in range(DEFAULT_LIMITS.max_depth):
        deep = [deep]
    assert roundtrip(deep) == deep
    with pytest.raises(CodecError):
        encode_reason([deep])
    with pytest.raises(CodecError):
        encode_reason(({"k": deep},))


def test_encode_refuses_self_reference() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(CodecError):
        encode_reason(loop)


def test_encode_refuses_what_the_limits_refuse() -> None:
    limits = Limits(
        max_size=100, max_str_len=40, max_bin_len=20, max_array_len=3, max_map_len=2, max_depth=2
    )
    for fits in ["é" * 20, "x" * 40, b"b" * 20, [1, 2, 3], {1: 1, 2: 2}, [[1]], ["y" * 30] * 3]:
        assert decode_reason(encode_reason(fits, limits), limits) == fits
    too_big = ["é" * 21, "x" * 41, b"b" * 21, [1, 2, 3, 4], (1, 2, 3, 4), {1: 1, 2: 2, 3: 3},
               [[[1]]], ["y" * 35] * 3, ExitException("e" * 41, "", "")]  # fmt: skip
    for reason in too_big:
        with pytest.raises(CodecError):
            encode_reason(reason, limits)
    with pytest.raises(CodecError):
        encode_reasons(["a", "b", "c", "d"], limits)
    with pytest.raises(CodecError):
        encode_reasons(["y" * 35] * 3, limits)
    out = decode_reasons(encode_reasons(["x" * 41, [[[1]]], "ok"], limits), limits)
    assert out == [TRUNCATED, TRUNCATED, "ok"]


@FUZZ
@given(_values, st.integers(0, 200), st.integers(0, 20), st.integers(0, 4), st.integers(0, 4))
@fake_pids()
def test_what_encodes_under_limits_decodes_under_them(
    reason: object, size: int, length: int, count: int, depth: int
) -> None:
    limits = Limits(size, length, length, count, count, depth)
    try:
        data = encode_reason(reason, limits)
    except CodecError:
        return
    assert same(decode_reason(data, limits), reason)


@FUZZ
@given(st.lists(_values, max_size=4), st.integers(0, 400), st.integers(9, 40), st.integers(0, 4))
@fake_pids()
def test_encoded_reasons_always_decode(
    reasons: list[object], size: int, length: int, depth: int
) -> None:
    limits = Limits(size, length, length, 4, 4, depth)
    try:
        data = encode_reasons(reasons, limits)
    except CodecError:  # only when the whole is too big
        parts = []
        for reason in reasons:
            try:
                parts.append(encode_reason(reason, limits))
            except CodecError:
                parts.append(encode_reason(TRUNCATED))
        assert 1 + len(b"".join(parts)) > limits.max_size
        return
    decoded = decode_reasons(data, limits)
    assert len(decoded) == len(reasons)
    for got, sent in zip(decoded, reasons):
        assert same(got, sent) or (got == TRUNCATED and not same(sent, TRUNCATED))


# Hostile input


def assert_allowed(obj: object) -> None:
    """A decoded value is built from the codec's types only."""
    kind = type(obj)
    if kind in (list, tuple):
        for item in obj:  # type: ignore[attr-defined]
            assert_allowed(item)
    elif kind is dict:
        for key, value in obj.items():  # type: ignore[attr-defined]
            assert_allowed(key)
            assert_allowed(value)
    elif kind is ExitException:
        assert all(type(field) is str for field in obj)  # type: ignore[attr-defined]
    else:
        assert obj is None or kind in (bool, int, float, str, bytes, FakePid), kind


def decode_or_codec_error(data: bytes) -> None:
    for decode in (decode_reason, decode_reasons):
        try:
            out = decode(data)
        except CodecError:
            continue
        assert_allowed(out)


@settings(max_examples=1000, deadline=None, database=None)
@given(st.binary(max_size=200))
@fake_pids()
def test_random_bytes_only_raise_codec_error(data: bytes) -> None:
    decode_or_codec_error(data)


_ext_codes = st.sampled_from([0, 5, 127, *map(int, Ext)])  # ExtType takes 0..127
_mp_value = st.recursive(
    st.none() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=5) | st.binary(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=3) | st.integers(-(2**63), 2**64 - 1), inner, max_size=3)
        | st.builds(
            lambda code, payload: msgpack.ExtType(code, msgpack.packb(payload)),
            _ext_codes,
            inner,
        )
        | st.builds(msgpack.ExtType, _ext_codes, st.binary(max_size=12))
    ),
    max_leaves=20,
)


@FUZZ
@given(_mp_value)
@fake_pids()
def test_crafted_msgpack_only_raises_codec_error(value: object) -> None:
    try:
        data = msgpack.packb(value)
    except (ValueError, OverflowError):
        return
    decode_or_codec_error(data)


@FUZZ
@given(_values, st.data())
@fake_pids()
def test_mutated_encodings_only_raise_codec_error(reason: object, data: st.DataObject) -> None:
    encoded = bytearray(encode_reason(reason))
    for _ in range(data.draw(st.integers(1, 4))):
        where = data.draw(st.integers(0, len(encoded)))
        action = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        byte = data.draw(st.integers(0, 255))
        if action == "insert" or where == len(encoded):
            encoded.insert(where, byte)
        elif action == "flip":
            encoded[where] ^= byte or 1
        else:
            del encoded[where]
    decode_or_codec_error(bytes(encoded))


@settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(_values)
@fake_pids()
def test_every_proper_prefix_is_refused(reason: object) -> None:
    encoded = encode_reason(reason)
    for end in range(len(encoded)):
        with pytest.raises(CodecError):
            decode_reason(encoded[:end])


def ext(code: int, payload: object) -> msgpack.ExtType:
    return msgpack.ExtType(code, payload if isinstance(payload, bytes) else msgpack.packb(payload))


@pytest.mark.parametrize(
    "data",
    [
        b"", b"\xc1", b"\xc0\xc0", b"\xa5abc", b"\x92\x01", b"\xdd\xff\xff\xff\xff",
        b"\xdf\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff",
        b"\x91" * 100_000 + b"\xc0", b"\x81" * 100_000 + b"\xc0",
        b"\xa2\xff\xfe",  # invalid UTF-8
        msgpack.packb(msgpack.Timestamp(0)), b"\xd6\xff" + b"\x00" * 4,  # msgpack's timestamp
        b"\xd7\xff" + b"\xff" * 8,  # malformed timestamp
        msgpack.packb({(1,): 1}, use_bin_type=True),  # a list as a map key
        b"\x81\x81\x01\x01\x01",  # a map as a map key
        msgpack.packb(ext(0, b"")), msgpack.packb(ext(5, [])), b"\xd4\x80x",
        msgpack.packb(ext(Ext.TUPLE, b"")), msgpack.packb(ext(Ext.TUPLE, 1)),
        msgpack.packb(ext(Ext.TUPLE, {"a": 1})), msgpack.packb(ext(Ext.TUPLE, b"\x90\xc0")),
        msgpack.packb(ext(Ext.EXIT_EXCEPTION, ["a", "b"])),
        msgpack.packb(ext(Ext.EXIT_EXCEPTION, ["a", "b", "c", "d"])),
        msgpack.packb(ext(Ext.EXIT_EXCEPTION, ["a", "b", 3])),
        msgpack.packb(ext(Ext.EXIT_EXCEPTION, ("a", "b", b"c"))),
        msgpack.packb(ext(Ext.PID, ["node", 1])), msgpack.packb(ext(Ext.PID, [b"node", 1, 2])),
        msgpack.packb(ext(Ext.PID, ["node", True, 2])), msgpack.packb(ext(Ext.PID, ["n", 1.0, 2])),
        msgpack.packb(ext(Ext.PID, "node")),
        *(msgpack.packb(ext(Ext.BIG_INT, text)) for text in [
            b"", b"-", b"+1", b" 1", b"1 ", b"1_000", b"0x10", b"1e5", b"1.0", b"--1",
            "١٢٣".encode(), b"1" * (MAX_BIG_INT_DIGITS + 1), b"\x001",
        ]),
        msgpack.packb({(): 1}),
    ],
)  # fmt: skip
@fake_pids()
def test_malformed_input_is_refused(data: bytes) -> None:
    for decode in (decode_reason, decode_reasons):
        with pytest.raises(CodecError):
            decode(data)


def test_unknown_extension_codes_are_refused() -> None:
    for code in range(-128, 128):
        if code not in set(Ext):
            for payload in (b"\x90", b"\x00" * 4, b"\x00" * 8):  # fixext 1, 4 and 8
                data = {1: b"\xd4", 4: b"\xd6", 8: b"\xd7"}[len(payload)]
                with pytest.raises(CodecError):
                    decode_reason(data + code.to_bytes(1, "big", signed=True) + payload)


def test_long_maps_are_refused_by_default() -> None:
    # Keys with colliding hashes make building a dict quadratic: maps stay short.
    data = msgpack.packb(dict.fromkeys(range(DEFAULT_LIMITS.max_map_len + 1), 0))
    with pytest.raises(CodecError):
        decode_reason(data)


def test_map_with_tuple_key_containing_a_list_is_refused() -> None:
    inner = ext(Ext.TUPLE, [[1]])
    data = b"\x81" + msgpack.packb(inner) + b"\x01"
    with pytest.raises(CodecError):
        decode_reason(data)


@pytest.mark.parametrize("data", [None, "text", 5, [1], object()])
def test_non_buffers_are_refused(data: object) -> None:
    with pytest.raises(CodecError):
        decode_reason(data)
    with pytest.raises(CodecError):
        decode_reasons(data)


def test_non_contiguous_buffer_is_refused() -> None:
    data = memoryview(b"\x92\x01\x02\x03")[::2]
    with pytest.raises(CodecError):
        decode_reason(data)


def test_decode_reasons_wants_an_array() -> None:
    for reason in ["normal", (1, 2), {"a": 1}, None]:
        with pytest.raises(CodecError):
            decode_reasons(encode_reason(reason))


def test_deep_extension_nesting_is_refused_without_crashing() -> None:
    value: object = ext(Ext.TUPLE, [])
    for _ in range(5000):
        value = ext(Ext.TUPLE, [value])
    with pytest.raises(CodecError):
        decode_reason(msgpack.packb(value))


def test_deep_array_nesting_is_refused() -> None:
    nested = b"\x91" * (DEFAULT_LIMITS.max_depth + 1) + b"\xc0"
    with pytest.raises(CodecError):
        decode_reason(nested)
    assert decode_reason(nested[1:]) is not None
    mixed: object = []  # lists inside tuples inside lists: the depth is counted across them
    for level in range(DEFAULT_LIMITS.max_depth + 1):
        mixed = ext(Ext.TUPLE, [mixed]) if level % 2 else [mixed]
    with pytest.raises(CodecError):
        decode_reason(msgpack.packb(mixed))


def test_max_depth_decodes_in_a_thread() -> None:
    value: object = "x"
    for _ in range(DEFAULT_LIMITS.max_depth):
        value = (value,)
    data = encode_reason(value)
    results: list[object] = []
    thread = threading.Thread(target=lambda: results.append(decode_reason(data)))
    thread.start()
    thread.join()
    assert results == [value]


def test_decode_limits() -> None:
    limits = Limits(
        max_size=100, max_str_len=10, max_bin_len=5, max_array_len=3, max_map_len=2, max_depth=2
    )
    fits = ["a" * 10, b"b" * 5, {1: (2,), 3: 4}][:2] + [{1: 2, 3: 4}]
    assert decode_reason(encode_reason(fits), limits) == fits
    too_big = ["a" * 11, b"b" * 6, [1, 2, 3, 4], (1, 2, 3, 4), {1: 1, 2: 2, 3: 3}, [[[1]]],
               ((((),),),), [[(1,)]], {1: {2: {3: 4}}}]  # fmt: skip
    for reason in too_big:
        with pytest.raises(CodecError):
            decode_reason(encode_reason(reason), limits)
    with pytest.raises(CodecError):  # 203 bytes, more than max_size
        decode_reason(encode_reason("x" * 200), limits._replace(max_str_len=1000))
    with pytest.raises(CodecError):
        decode_reasons(encode_reasons(["a", "b", "c", "d"]), limits)
    assert decode_reasons(encode_reasons(["a", [[1]], "c"]), limits) == ["a", [[1]], "c"]

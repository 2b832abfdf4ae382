"""The reason codec: a safe, self-describing encoding of exit reasons (msgpack, never pickle).

Reasons cross the wire after :func:`zenmon.truncate`, so the codec handles exactly the
types the truncator produces, and keeps each one's type on the way back:

- ``None``, ``bool``, ``int``, ``float`` (64-bit), ``str``, ``bytes``, ``list`` and ``dict``
  (keys of any of these types that Python can hash) as native msgpack values;
- ``tuple`` as extension type :attr:`Ext.TUPLE` (a msgpack array inside), so that a tuple
  stays a tuple and a list stays a list;
- :class:`~zenmon.truncator.ExitException` as :attr:`Ext.EXIT_EXCEPTION` (an array of its
  three strings);
- ``zenmon.Pid`` as :attr:`Ext.PID` (an array ``[node, incarnation, id]``);
- an ``int`` outside the 64-bit range (signed or unsigned) as :attr:`Ext.BIG_INT`, carrying
  its decimal text (at most :data:`MAX_BIG_INT_DIGITS` digits).

Strings containing lone surrogates round-trip (they are carried as ``surrogatepass`` UTF-8).
:func:`encode_reason` raises :class:`CodecError` for anything else (a ``set``, an
application object: truncate first) and for anything :func:`decode_reason` with the same
:class:`Limits` would refuse, so what a node sends its peer will accept;
:func:`encode_reasons` sends such a reason as ``TRUNCATED`` instead. Decoding treats its
input as hostile: sizes, lengths and nesting are bounded by :class:`Limits`, unknown
extension types (msgpack's own timestamp too) are refused, and every failure is a
:class:`CodecError`.

The functions share no mutable state (the lazily imported ``Pid`` class is an idempotent
cache), so they are safe to call from any thread without relying on the GIL.
"""

from __future__ import annotations

import enum
import re
import typing

import msgpack

from .truncator import TRUNCATED, ExitException

__all__ = [
    "DEFAULT_LIMITS",
    "MAX_BIG_INT_DIGITS",
    "CodecError",
    "Ext",
    "Limits",
    "decode_reason",
    "decode_reasons",
    "encode_reason",
    "encode_reasons",
]

MAX_BIG_INT_DIGITS = 1024
"""Most decimal digits in an :attr:`Ext.BIG_INT` (parsing decimal text costs quadratic time)."""


class CodecError(ValueError):
    """A reason that cannot be encoded, or bytes that are not a valid encoded reason."""


class Ext(enum.IntEnum):
    """The msgpack extension type codes of the reason codec (part of the wire protocol)."""

    TUPLE = 1
    EXIT_EXCEPTION = 2
    PID = 3
    BIG_INT = 4


class Limits(typing.NamedTuple):
    """Bounds on one encoded document; :data:`DEFAULT_LIMITS` unless a caller passes its own.

    ``max_str_len`` and ``max_bin_len`` are in encoded bytes, ``max_array_len`` and
    ``max_map_len`` in elements (pairs for a map) and apply to every nested container
    (the outer list of :func:`encode_reasons` too); maps are kept short because keys with
    colliding hashes make building a dict quadratic. ``max_depth`` bounds how deep
    lists, tuples and dicts nest inside one reason (``[[[x]]]`` is 3 deep); it also bounds
    the recursion of the decoder, each level of which uses some 40 KiB of C stack.
    """

    max_size: int = 64 * 1024 * 1024
    max_str_len: int = 16 * 1024 * 1024
    max_bin_len: int = 16 * 1024 * 1024
    max_array_len: int = 1024 * 1024
    max_map_len: int = 1024
    max_depth: int = 32


DEFAULT_LIMITS = Limits()
"""Generous bounds: a truncated reason is far smaller, a dead summary fits many thousands."""

_TUPLE, _EXIT_EXCEPTION, _PID, _BIG_INT = (int(code) for code in Ext)
_BIG_INT_TEXT = re.compile(rb"-?[0-9]{1,%d}" % MAX_BIG_INT_DIGITS)
_UINT64_MAX = 2**64 - 1
_UNICODE_ERRORS = "surrogatepass"
_TRUNCATED_ENCODED = msgpack.packb(TRUNCATED)
_Pid: typing.Any = None


def _pid_type() -> typing.Any:
    """Return ``zenmon._core.Pid``, imported on first use so this module needs no extension."""
    global _Pid
    if _Pid is None:
        from ._core import Pid

        _Pid = Pid
    return _Pid


def _is_pid(kind: type) -> bool:
    """Whether ``kind`` is zenmon's ``Pid`` class (it carries ``__zenmon_pid__ = True``)."""
    try:
        return getattr(kind, "__zenmon_pid__", False) is True
    except Exception:  # a metaclass with a hostile __getattr__
        return False


# Encoding


def encode_reason(reason: object, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Encode one (truncated) reason; raise :class:`CodecError` if it cannot be sent.

    :func:`~zenmon.truncate` output always encodes with :data:`DEFAULT_LIMITS` unless it
    holds an ``int`` of more than :data:`MAX_BIG_INT_DIGITS` digits or ``truncation_depth``
    exceeds ``max_depth``; a sender that must not fail can fall back to
    ``encode_reason(TRUNCATED)``, as :func:`encode_reasons` does.
    """
    if type(reason) is not str or len(reason) * 4 > limits.max_str_len:
        _check(reason, limits, encoding=True)
    return _pack(reason, limits)


def encode_reasons(
    reasons: typing.Iterable[object], limits: Limits = DEFAULT_LIMITS, *, strict: bool = False
) -> bytes:
    """Encode a sequence of reasons as one msgpack array (the reasons of a dead summary).

    A reason that cannot be encoded is sent as :data:`~zenmon.TRUNCATED`, so that one odd
    reason never costs the other death certificates their DOWNs; with ``strict=True`` it
    raises :class:`CodecError` instead. :class:`CodecError` is raised in any case when
    there are more than ``limits.max_array_len`` reasons or the whole document would
    exceed ``limits.max_size`` (send fewer per message).
    """
    reasons = list(reasons)
    if len(reasons) > limits.max_array_len:
        raise CodecError(f"{len(reasons)} reasons, more than max_array_len")
    try:
        for reason in reasons:
            if type(reason) is not str or len(reason) * 4 > limits.max_str_len:
                _check(reason, limits, encoding=True)
        return _pack(reasons, limits)
    except CodecError:
        if strict:
            raise
    # Slow path: an array is its header followed by its items, each encoded on its own.
    parts = [_encode_or_truncated(reason, limits) for reason in reasons]
    data: bytes = msgpack.Packer().pack_array_header(len(parts)) + b"".join(parts)
    if len(data) > limits.max_size:
        raise CodecError(f"encoded reasons are {len(data)} bytes, more than max_size")
    return data


def _encode_or_truncated(reason: object, limits: Limits) -> bytes:
    try:
        return encode_reason(reason, limits)
    except CodecError:
        return _TRUNCATED_ENCODED


def _pack(obj: object, limits: Limits) -> bytes:
    try:
        data = _packb(obj)
    except CodecError:
        raise
    except Exception as exc:  # TypeError, OverflowError, ValueError, RecursionError, ...
        raise CodecError(f"cannot encode reason: {exc!r}") from exc
    if len(data) > limits.max_size:
        raise CodecError(f"encoded reason is {len(data)} bytes, more than max_size")
    return data


def _packb(obj: object) -> bytes:
    data: bytes = msgpack.packb(
        obj,
        default=_default,
        use_bin_type=True,
        strict_types=True,  # tuples, ExitException and int subclasses reach _default
        unicode_errors=_UNICODE_ERRORS,
        datetime=False,
    )
    return data


def _default(obj: typing.Any) -> msgpack.ExtType:
    kind = type(obj)
    if kind is tuple:
        return msgpack.ExtType(_TUPLE, _packb(list(obj)))
    if kind is ExitException:
        return msgpack.ExtType(_EXIT_EXCEPTION, _packb(list(obj)))
    if _is_pid(kind):
        node, incarnation, id_ = obj.node, obj.incarnation, obj.id
        if (
            type(node) is not str
            or type(incarnation) is not int
            or type(id_) is not int
            or not (0 <= incarnation <= _UINT64_MAX and 0 <= id_ <= _UINT64_MAX)
        ):
            raise CodecError(f"pid with invalid fields: {obj!r}")
        return msgpack.ExtType(_PID, _packb([node, incarnation, id_]))
    if kind is int:  # only reached when outside the 64-bit range
        if obj.bit_length() > MAX_BIG_INT_DIGITS * 10 // 3 + 4:  # surely too many digits
            raise CodecError(f"integer with more than {MAX_BIG_INT_DIGITS} digits")
        text = str(obj)
        if len(text.lstrip("-")) > MAX_BIG_INT_DIGITS:
            raise CodecError(f"integer with more than {MAX_BIG_INT_DIGITS} digits")
        return msgpack.ExtType(_BIG_INT, text.encode("ascii"))
    raise CodecError(f"cannot encode an object of type {kind.__qualname__}")


# Decoding


def decode_reason(data: typing.Any, limits: Limits = DEFAULT_LIMITS) -> object:
    """Decode one reason made by :func:`encode_reason`; raise only :class:`CodecError`."""
    reason = _unpack(data, limits)
    if type(reason) is not str:
        _check(reason, limits)
    return reason


def decode_reasons(data: typing.Any, limits: Limits = DEFAULT_LIMITS) -> list[object]:
    """Decode the array made by :func:`encode_reasons`; raise only :class:`CodecError`."""
    reasons = _unpack(data, limits)
    if type(reasons) is not list:
        raise CodecError(f"expected an array of reasons, got {type(reasons).__qualname__}")
    for reason in reasons:
        if type(reason) is not str:
            _check(reason, limits)
    return reasons


def _unpack(data: typing.Any, limits: Limits) -> object:
    """Unpack one complete document with every msgpack limit set and our ext types only."""
    try:
        with memoryview(data) as view:
            if view.nbytes > limits.max_size:
                raise CodecError(f"{view.nbytes} bytes, more than max_size")
            return _Decoder(limits).unpack(view)
    except CodecError:
        raise
    except Exception as exc:  # msgpack's errors, TypeError for a non-buffer, MemoryError, ...
        raise CodecError(f"malformed reason: {exc!r}") from exc


class _Decoder:
    """One decoding: its ``ext_hook`` counts nested extension payloads to bound recursion.

    The fixed-size payloads of an ExitException or a pid are not held to ``max_array_len``.
    """

    __slots__ = ("limits", "depth")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.depth = 0

    def unpack(self, data: typing.Any, fields: int = 0) -> object:
        limits = self.limits
        return msgpack.unpackb(
            data,
            ext_hook=self.ext_hook,
            raw=False,
            use_list=True,
            strict_map_key=False,  # keys of any hashable type; an unhashable one fails
            unicode_errors=_UNICODE_ERRORS,
            max_str_len=limits.max_str_len,
            max_bin_len=limits.max_bin_len,
            max_array_len=max(limits.max_array_len, fields),
            max_map_len=limits.max_map_len,
            max_ext_len=limits.max_size,
        )

    def ext_hook(self, code: int, payload: bytes) -> object:
        # Tuples count towards max_depth; an ExitException or a pid is a leaf one level below.
        if self.depth > self.limits.max_depth:
            raise CodecError("extension types nested too deeply")
        self.depth += 1
        try:
            if code == _TUPLE:
                items = self.unpack(payload)
                if type(items) is not list:
                    raise CodecError("tuple payload is not an array")
                return tuple(items)
            if code == _EXIT_EXCEPTION:
                fields = self._fields(payload, (str, str, str))
                return ExitException(*fields)
            if code == _PID:
                fields = self._fields(payload, (str, int, int))
                return _pid_type()(*fields)
            if code == _BIG_INT:
                if _BIG_INT_TEXT.fullmatch(payload) is None:
                    raise CodecError("malformed big integer")
                return int(payload)
            raise CodecError(f"unknown extension type {code}")
        finally:
            self.depth -= 1

    def _fields(self, payload: bytes, kinds: tuple[type, ...]) -> list[typing.Any]:
        fields = self.unpack(payload, len(kinds))
        if (
            type(fields) is not list
            or len(fields) != len(kinds)
            or any(type(field) is not kind for field, kind in zip(fields, kinds))
        ):
            raise CodecError("malformed extension payload")
        return fields


# Validation


def _check(reason: object, limits: Limits, encoding: bool = False) -> None:
    """Check types and nesting depth of a reason (and, when encoding, the msgpack lengths).

    Iterative, so that a deep input cannot exhaust the stack here.
    """
    max_depth = limits.max_depth
    stack: list[tuple[typing.Any, int]] = [(reason, 0)]  # (object, containers around it)
    while stack:
        obj, depth = stack.pop()
        kind = type(obj)
        if kind is str:
            if encoding and len(obj) * 4 > limits.max_str_len:
                size = len(obj.encode("utf-8", _UNICODE_ERRORS))
                if size > limits.max_str_len:
                    raise CodecError(f"string of {size} bytes, more than max_str_len")
        elif obj is None or kind is int or kind is bool or kind is float:
            pass
        elif kind is list or kind is tuple or kind is dict:
            if depth >= max_depth:
                raise CodecError(f"reason nested deeper than max_depth ({max_depth})")
            if kind is dict:
                if encoding and len(obj) > limits.max_map_len:
                    raise CodecError("dict longer than max_map_len")
                for item in obj.items():
                    stack.extend((part, depth + 1) for part in item)
            else:
                if encoding and len(obj) > limits.max_array_len:
                    raise CodecError(f"{kind.__qualname__} longer than max_array_len")
                stack.extend((item, depth + 1) for item in obj)
        elif kind is bytes:
            if encoding and len(obj) > limits.max_bin_len:
                raise CodecError("bytes longer than max_bin_len")
        elif kind is ExitException:
            stack.extend((field, depth) for field in obj)
            if any(type(field) is not str for field in obj):
                raise CodecError("ExitException fields must be str")
        elif _is_pid(kind):
            if encoding:  # its node must fit max_str_len
                node = getattr(obj, "node", None)
                if type(node) is not str:
                    raise CodecError(f"pid with invalid fields: {obj!r}")
                stack.append((node, depth))
        else:
            raise CodecError(f"a reason cannot hold an object of type {kind.__qualname__}")

"""The truncator: make an exit reason small and transportable, once, before fan-out.

ZenMonitor copies a crash reason into the DOWN of every monitor of the dead process, so one
large reason (a stack trace, a state dump) multiplied by thousands of monitors exhausts
memory. The proxy therefore truncates each reason once, on the node where the process died,
before it enqueues the death certificates. The rules, with the defaults ``max_binary_size``
1024 and ``truncation_depth`` 3:

- A reason that is already small is returned as is.
- ``str`` and ``bytes`` longer than ``max_binary_size`` are cut to ``max_binary_size - 3``
  items followed by ``"..."`` (``b"..."`` for bytes). A ``str`` is measured in characters,
  ``bytes`` in bytes; a ``bytearray`` becomes ``bytes``.
- A tuple, list or dict with more than 4 elements becomes :data:`TRUNCATED`. A smaller one
  keeps its kind (tuple, list or dict; subclasses such as named tuples or ``OrderedDict``
  become the plain built-in type) and its elements, a dict's keys and values alike, are
  truncated one level deeper.
- The reason itself is level 0; anything at level ``truncation_depth`` or deeper becomes
  :data:`TRUNCATED` (with 3, ``[[[x]]]`` keeps its three lists and ``x`` becomes the marker).
- ``None``, ``bool``, ``int``, ``float`` and zenmon pids pass through. Subclasses of ``int``,
  ``float``, ``str`` and ``bytes`` (an ``IntEnum`` member, say) become the built-in value.
- An exception becomes an :class:`ExitException`: its type's qualified name, ``str(e)`` and
  the formatted traceback, each truncated like a string, except that the traceback keeps
  its *end* (``"..."`` then the last ``max_binary_size - 3`` characters), where the
  innermost frame and the exception line are. An :class:`ExitException` passes through with
  its three strings truncated again.
- Any other object (a set, an instance of an application class, ...) becomes its
  ``repr()``, truncated as a string; one whose ``repr()`` raises becomes :data:`TRUNCATED`.
- The marker itself is never cut, even when ``max_binary_size`` is shorter than it.

The output is built only from the types above, which is what :mod:`zenmon.codec` encodes,
and ``truncate(truncate(r)) == truncate(r)``. :func:`truncate` never raises an
``Exception``: whatever goes wrong while truncating a part makes that part (or, for a
failure outside any part, the whole reason) :data:`TRUNCATED`.
"""

from __future__ import annotations

import traceback as _traceback
import typing

__all__ = ["TRUNCATED", "ExitException", "truncate"]

TRUNCATED = "truncated"
"""The marker that replaces whatever the truncator removed."""

_MAX_ELEMENTS = 4


class ExitException(typing.NamedTuple):
    """The transportable form of a Python exception used as an exit reason.

    Plain strings only, so it holds no frames or objects alive and crosses the wire
    through the safe codec: ``type_name`` is the exception type's ``__qualname__``,
    ``message`` is ``str(exception)`` and ``traceback`` the text of
    :func:`traceback.format_exception`, each truncated.
    """

    type_name: str
    message: str
    traceback: str


def truncate(reason: object, max_binary_size: int = 1024, truncation_depth: int = 3) -> object:
    """Return ``reason`` made small and transportable by the truncator rules (module doc).

    ``truncate("normal")`` returns the very same object, quickly: that is the common case.
    """
    if type(reason) is str and len(reason) <= max_binary_size and truncation_depth > 0:
        return reason
    try:
        return _truncate(reason, truncation_depth, max_binary_size)
    except Exception:  # RecursionError, a container mutated meanwhile, hostile hooks, ...
        return TRUNCATED


def _truncate(obj: typing.Any, levels_left: int, size: int) -> object:
    """Truncate ``obj`` standing where ``levels_left`` more levels may still survive."""
    if levels_left <= 0:
        return TRUNCATED
    t = type(obj)
    if t is str:
        return _cut(obj, size)
    if obj is None or t is int or t is bool or t is float:
        return obj
    if t is tuple or t is list or t is dict:
        return _container(obj, t, levels_left - 1, size)
    if t is bytes:
        return obj if len(obj) <= size else _cut_bytes(obj, size)
    if t is ExitException:
        return _exit_exception(obj, size)
    if getattr(t, "__zenmon_pid__", False) is True:
        return obj
    if isinstance(obj, BaseException):
        return _from_exception(obj, size)
    if isinstance(obj, (bytes, bytearray)):
        with memoryview(obj) as view:
            return _cut_bytes(bytes(view[: size + 1]), size)
    if isinstance(obj, str):
        return _cut(str.__str__(obj), size)
    if isinstance(obj, int):  # bool cannot be subclassed
        return int.__int__(obj)
    if isinstance(obj, float):
        return float.__float__(obj)
    if isinstance(obj, ExitException):
        return _exit_exception(obj, size)
    if isinstance(obj, tuple):
        return _container(obj, tuple, levels_left - 1, size)
    if isinstance(obj, list):
        return _container(obj, list, levels_left - 1, size)
    if isinstance(obj, dict):
        return _container(obj, dict, levels_left - 1, size)
    return _text(obj, size)


def _container(obj: typing.Any, kind: type, levels_left: int, size: int) -> object:
    """Truncate a tuple, list or dict (or subclass) into the plain ``kind``."""
    if len(obj) > _MAX_ELEMENTS:
        return TRUNCATED
    if kind is dict:
        out: dict[object, object] = {}
        for key, value in list(dict.items(obj)):
            key, value = _truncate(key, levels_left, size), _truncate(value, levels_left, size)
            try:
                out[key] = value
            except TypeError:  # a hashable list subclass inside a key came out as a list
                out[TRUNCATED] = value
        return out
    items = [_truncate(item, levels_left, size) for item in list(obj)]
    return items if kind is list else tuple(items)


def _cut(text: str, size: int) -> str:
    """Keep the start of ``text``: at most ``size - 3`` characters, then ``"..."``."""
    if len(text) <= size or text == TRUNCATED:  # the marker is never cut itself
        return text
    return text[: max(size - 3, 0)] + "..."


def _cut_tail(text: str, size: int) -> str:
    """Keep the end of ``text``: ``"..."``, then at most ``size - 3`` characters."""
    if len(text) <= size or text == TRUNCATED:
        return text
    keep = max(size - 3, 0)
    return "..." + (text[-keep:] if keep else "")


def _cut_bytes(data: bytes, size: int) -> bytes:
    """Like :func:`_cut` for bytes."""
    return data if len(data) <= size else data[: max(size - 3, 0)] + b"..."


def _text(obj: object, size: int, tail: bool = False) -> str:
    """``obj`` as a truncated plain ``str``: itself if a ``str``, else its ``repr()``."""
    try:
        text = obj if isinstance(obj, str) else repr(obj)
        if type(text) is not str:
            text = str.__str__(text)  # a plain copy of a str subclass
    except Exception:
        return TRUNCATED
    return _cut_tail(text, size) if tail else _cut(text, size)


def _exit_exception(exit: ExitException, size: int) -> ExitException:
    """Re-truncate the strings of an :class:`ExitException`."""
    return ExitException(
        _text(exit.type_name, size), _text(exit.message, size), _text(exit.traceback, size, True)
    )


def _from_exception(exc: BaseException, size: int) -> ExitException:
    """Turn a live exception into an :class:`ExitException`."""
    try:
        message = str(exc)
    except Exception:
        message = f"<{type(exc).__qualname__} object: str() failed>"
    try:
        text = "".join(_traceback.format_exception(exc))
    except Exception:
        text = ""
    return ExitException(
        _text(type(exc).__qualname__, size), _text(message, size), _text(text, size, True)
    )

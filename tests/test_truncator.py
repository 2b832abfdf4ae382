"""The truncator: the BRIEF's rules, the odd inputs, and that it never raises."""

from __future__ import annotations

import collections
import enum
import math
import sys
import typing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zenmon.truncator import TRUNCATED, ExitException, truncate

T = TRUNCATED


class FakePid:
    """Stands in for ``zenmon.Pid``: the truncator only looks at the class marker."""

    __zenmon_pid__ = True

    def __init__(self, node: str, incarnation: int, id: int) -> None:
        self.node, self.incarnation, self.id = node, incarnation, id


class Color(enum.IntEnum):
    RED = 1


class Label(str):
    pass


class Point(typing.NamedTuple):
    x: int
    y: int


# Small reasons, scalars, pids


@pytest.mark.parametrize(
    "reason",
    ["normal", "", "x" * 1024, b"", b"y" * 1024, None, True, False, 0, -7, 2**200, 1.5,
     math.inf, (), [], {}, ("shutdown", "bye"), [1, [2, []]], {"a": 1, 2: (3,)}],
)  # fmt: skip
def test_small_reasons_are_kept(reason: object) -> None:
    assert truncate(reason) == reason
    assert type(truncate(reason)) is type(reason)


def test_short_str_is_returned_as_is() -> None:
    reason = "".join(["nor", "mal"])
    assert truncate(reason) is reason


def test_nan_passes_through() -> None:
    assert math.isnan(truncate(math.nan))  # type: ignore[arg-type]


def test_pids_pass_through_anywhere() -> None:
    pid = FakePid("tcp://127.0.0.1:1", 1, 2)
    assert truncate(pid) is pid
    assert truncate(["x", {"owner": pid}])[1]["owner"] is pid  # type: ignore[index]


def test_real_pid_passes_through() -> None:
    from zenmon import Pid  # the suite runs against the installed build

    pid = Pid("tcp://127.0.0.1:1", 1, 2)
    assert truncate(pid) is pid
    assert truncate((pid, "x")) == (pid, "x")


# Binaries


def test_long_str_is_cut_to_max_binary_size() -> None:
    reason = "a" * 1000 + "b" * 100
    out = truncate(reason)
    assert out == "a" * 1000 + "b" * 21 + "..."
    assert len(out) == 1024  # type: ignore[arg-type]
    assert truncate("x" * 1025) == "x" * 1021 + "..."


def test_str_is_measured_in_characters() -> None:
    assert truncate("é" * 1024) == "é" * 1024
    assert truncate("é" * 1025) == "é" * 1021 + "..."


def test_long_bytes_are_cut() -> None:
    assert truncate(b"z" * 5000) == b"z" * 1021 + b"..."
    assert truncate(b"z" * 1025, max_binary_size=10) == b"zzzzzzz..."


def test_bytearray_becomes_bytes() -> None:
    small = truncate(bytearray(b"abc"))
    assert small == b"abc" and type(small) is bytes
    big = truncate(bytearray(2000))
    assert big == bytes(1021) + b"..." and type(big) is bytes


def test_custom_max_binary_size() -> None:
    assert truncate("abcdefgh", max_binary_size=5) == "ab..."
    assert truncate("abcde", max_binary_size=5) == "abcde"
    assert truncate(["abcdefgh"], max_binary_size=5) == ["ab..."]


def test_tiny_max_binary_size_does_not_raise() -> None:
    assert truncate("abcdef", max_binary_size=2) == "..."
    assert truncate(b"abcdef", max_binary_size=0) == b"..."


def test_marker_is_never_cut() -> None:
    assert truncate(T, max_binary_size=3) == T
    assert truncate([[[["x"]]]], max_binary_size=3) == [[[T]]]


def test_long_strings_inside_containers_are_cut() -> None:
    out = truncate(("error", {"detail": "d" * 3000}))
    assert out == ("error", {"detail": "d" * 1021 + "..."})


# Containers


@pytest.mark.parametrize("kind", [tuple, list])
def test_sequences_keep_their_type_up_to_four_elements(kind: type) -> None:
    four = kind([1, 2, 3, 4])
    assert truncate(four) == four and type(truncate(four)) is kind
    assert truncate(kind([1, 2, 3, 4, 5])) == T


def test_dicts_up_to_four_items() -> None:
    four = {i: str(i) for i in range(4)}
    assert truncate(four) == four
    assert truncate({i: i for i in range(5)}) == T


def test_big_container_inside_small_one() -> None:
    assert truncate(("error", list(range(100)))) == ("error", T)


def test_container_subclasses_become_builtin() -> None:
    out = truncate(Point(1, 2))
    assert out == (1, 2) and type(out) is tuple
    ordered = truncate(collections.OrderedDict(a=1))
    assert ordered == {"a": 1} and type(ordered) is dict
    default = truncate(collections.defaultdict(list, {"k": [1]}))
    assert default == {"k": [1]} and type(default) is dict
    assert truncate(collections.Counter("abcdefg")) == T


def test_scalar_and_string_subclasses_become_builtin() -> None:
    out = truncate(Color.RED)
    assert out == 1 and type(out) is int
    label = truncate(Label("hello"))
    assert label == "hello" and type(label) is str
    long_label = truncate(Label("h" * 2000))
    assert long_label == "h" * 1021 + "..." and type(long_label) is str


# Depth


def test_brief_depth_example() -> None:
    assert truncate([[["x"]]]) == [[[T]]]
    assert truncate([[[]]]) == [[[]]]
    assert truncate([[[[]]]]) == [[[T]]]
    assert truncate(((("x",),),)) == (((T,),),)


def test_dict_keys_and_values_are_one_level_deeper() -> None:
    assert truncate({"a": {"b": {"c": 1}}}) == {"a": {"b": {T: T}}}
    assert truncate({("k", ("deep",)): 1}) == {("k", (T,)): 1}


def test_custom_depths() -> None:
    assert truncate("normal", truncation_depth=0) == T
    assert truncate(5, truncation_depth=0) == T
    assert truncate([1, "a"], truncation_depth=1) == [T, T]
    assert truncate([[[["x"]]]], truncation_depth=5) == [[[["x"]]]]


def test_self_referencing_containers() -> None:
    loop: list[object] = []
    loop.append(loop)
    assert truncate(loop) == [[[T]]]
    assert truncate(loop, truncation_depth=10**9) == T  # deeper than the stack allows
    table: dict[str, object] = {}
    table["me"] = table
    assert truncate(table) == {"me": {"me": {T: T}}}


# Exceptions


def _raise_value_error() -> None:
    raise ValueError("bad value")


def test_exception_becomes_exit_exception() -> None:
    try:
        _raise_value_error()
    except ValueError as exc:
        out = truncate(exc)
    assert isinstance(out, ExitException)
    assert out.type_name == "ValueError"
    assert out.message == "bad value"
    assert out.traceback.startswith("Traceback (most recent call last)")
    assert "_raise_value_error" in out.traceback
    assert out.traceback.rstrip().endswith("ValueError: bad value")


def test_exception_never_raised_has_no_frames() -> None:
    out = truncate(KeyError("k"))
    assert out == ExitException("KeyError", "'k'", "KeyError: 'k'\n")


def test_exception_type_name_is_qualified() -> None:
    class Outer:
        class Boom(Exception):
            pass

    out = truncate(Outer.Boom())
    assert out.type_name.endswith("Outer.Boom")  # type: ignore[union-attr]


def test_base_exceptions_are_converted() -> None:
    out = truncate(SystemExit(3))
    assert isinstance(out, ExitException) and out.type_name == "SystemExit"
    assert out.message == "3"


def test_exception_strings_are_truncated_traceback_keeps_its_end() -> None:
    def recurse(n: int) -> None:
        if n == 0:
            raise RuntimeError("m" * 5000)
        recurse(n - 1)

    try:
        recurse(50)
    except RuntimeError as exc:
        out = truncate(exc, max_binary_size=200)
    assert isinstance(out, ExitException)
    assert out.message == "m" * 197 + "..."
    assert len(out.traceback) == 200
    assert out.traceback.startswith("...")
    assert out.traceback.endswith("m" * 50 + "\n")


def test_exception_inside_container() -> None:
    out = truncate(("crashed", ValueError("v")))
    assert out == ("crashed", ExitException("ValueError", "v", "ValueError: v\n"))
    assert truncate([[[ValueError("v")]]]) == [[[T]]]


def test_exception_whose_str_raises() -> None:
    class Nasty(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str")

    out = truncate(Nasty())
    assert isinstance(out, ExitException) and out.type_name.endswith("Nasty")
    assert all(type(field) is str for field in out)


def test_exit_exception_passes_with_strings_retruncated() -> None:
    small = ExitException("E", "m", "tb")
    assert truncate(small) == small and type(truncate(small)) is ExitException
    big = truncate(ExitException("E" * 2000, "m" * 2000, "t" * 2000))
    assert big == ExitException("E" * 1021 + "...", "m" * 1021 + "...", "..." + "t" * 1021)


def test_exit_exception_with_non_str_fields() -> None:
    out = truncate(ExitException(1, None, [2]))  # type: ignore[arg-type]
    assert out == ExitException("1", "None", "[2]")


# Other objects


def test_other_objects_become_their_repr() -> None:
    assert truncate({1}) == "{1}"
    assert truncate(frozenset()) == "frozenset()"

    class Thing:
        def __repr__(self) -> str:
            return "<thing>"

    assert truncate(Thing()) == "<thing>"
    assert truncate([Thing()]) == ["<thing>"]
    assert truncate(ExitException) == repr(ExitException)


def test_long_repr_is_cut() -> None:
    out = truncate(set(range(2000)))
    assert isinstance(out, str) and len(out) == 1024 and out.endswith("...")


def test_repr_that_raises_becomes_marker() -> None:
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    assert truncate(Broken()) == T
    assert truncate(("x", Broken())) == ("x", T)


def test_hostile_objects_never_raise() -> None:
    class BadLen(list):  # type: ignore[type-arg]
        def __len__(self) -> int:
            raise RuntimeError("len")

    class BadItems(dict):  # type: ignore[type-arg]
        def __iter__(self) -> typing.Iterator[object]:
            raise RuntimeError("iter")

    class HashableList(list):  # type: ignore[type-arg]
        def __hash__(self) -> int:
            return 0

    class Meta(type):
        def __getattr__(cls, name: str) -> object:
            raise RuntimeError(name)

    class Weird(metaclass=Meta):
        pass

    assert truncate(BadLen()) == T
    assert truncate(BadItems(a=1)) == {"a": 1}  # read through dict.items
    assert truncate({HashableList([1]): "v"}) == {T: "v"}
    assert truncate(Weird()) == T
    assert truncate(memoryview(b"ab")).startswith("<memory at")  # type: ignore[union-attr]


def test_deep_nesting_beyond_recursion_limit() -> None:
    deep: list[object] = []
    for _ in range(sys.getrecursionlimit() * 3):
        deep = [deep]
    assert truncate(deep) == [[[T]]]
    assert truncate(deep, truncation_depth=10**9) == T


# Properties

_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.binary(max_size=40)
    | st.builds(ExitException, st.text(max_size=20), st.text(max_size=40), st.text(max_size=40))
    | st.builds(ValueError, st.text(max_size=20))
    | st.frozensets(st.integers(), max_size=3)
)
_keys = st.none() | st.booleans() | st.integers() | st.text(max_size=10) | st.binary(max_size=10)
_reasons = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.lists(inner, max_size=6).map(tuple)
        | st.dictionaries(_keys | st.tuples(_keys, _keys), inner, max_size=6)
    ),
    max_leaves=40,
)


def _assert_within_limits(out: object, level: int, size: int, depth: int) -> None:
    if level >= depth:
        assert out == T
        return
    kind = type(out)
    if kind in (str, bytes):
        assert out == T or len(out) <= max(size, 3)  # type: ignore[arg-type]
    elif kind in (list, tuple):
        assert len(out) <= 4  # type: ignore[arg-type]
        for item in out:  # type: ignore[attr-defined]
            _assert_within_limits(item, level + 1, size, depth)
    elif kind is dict:
        assert len(out) <= 4  # type: ignore[arg-type]
        for key, value in out.items():  # type: ignore[attr-defined]
            _assert_within_limits(key, level + 1, size, depth)
            _assert_within_limits(value, level + 1, size, depth)
    elif kind is ExitException:
        for field in out:  # type: ignore[attr-defined]
            assert type(field) is str and (field == T or len(field) <= max(size, 3))
    else:
        assert out is None or kind in (bool, int, float)


@settings(max_examples=150, deadline=None, database=None)
@given(_reasons, st.integers(1, 64), st.integers(0, 5))
def test_output_respects_the_rules(reason: object, size: int, depth: int) -> None:
    out = truncate(reason, max_binary_size=size, truncation_depth=depth)
    _assert_within_limits(out, 0, size, depth)


@settings(max_examples=150, deadline=None, database=None)
@given(_reasons, st.integers(3, 64), st.integers(0, 5))
def test_truncate_is_idempotent(reason: object, size: int, depth: int) -> None:
    once = truncate(reason, max_binary_size=size, truncation_depth=depth)
    assert truncate(once, max_binary_size=size, truncation_depth=depth) == once

"""Polling and inbox helpers shared by the test suites.

Tests never sleep to synchronise: they poll a condition against a deadline
(:func:`wait_for`) or read an inbox with a timeout (:func:`receive_all`), so a
slow machine makes a test slower, not wrong, and a hang becomes a failure with
a message instead of a stuck run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import zenmon

T = TypeVar("T")

#: Every table-size gauge that must return to its starting value (no leak).
TABLE_GAUGES = (
    "zenmon.local.references.size",
    "zenmon.local.targets.size",
    "zenmon.local.processes.size",
    "zenmon.local.dispatcher.queue_len",
)


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 5.0,
    interval: float = 0.005,
    message: str | Callable[[], str] | None = None,
) -> T:
    """Poll ``predicate()`` until it returns a truthy value; return that value.

    Raise ``AssertionError`` (naming the predicate, or ``message``) when it is
    still falsy after ``timeout`` seconds. The predicate is evaluated one last
    time at the deadline, so a condition that became true while we slept counts.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            value = predicate()
            if value:
                return value
            if callable(message):
                text = message()
            elif message is not None:
                text = message
            else:
                text = getattr(predicate, "__qualname__", repr(predicate))
            raise AssertionError(f"timed out after {timeout:.2f}s waiting for: {text}")
        time.sleep(interval)


def receive_all(proc: Any, n: int, timeout: float = 5.0) -> list[Any]:
    """Collect exactly ``n`` messages from ``proc``'s inbox, in arrival order.

    ``timeout`` bounds the whole collection, not each message. On timeout the
    ``AssertionError`` says how many arrived and shows the last few.
    """
    deadline = time.monotonic() + timeout
    messages: list[Any] = []
    while len(messages) < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            messages.append(proc.receive(timeout=remaining))
        except TimeoutError:
            break
    if len(messages) < n:
        raise AssertionError(
            f"received {len(messages)} of {n} messages within {timeout:.2f}s; "
            f"last ones: {messages[-3:]!r}"
        )
    return messages


def receive_timed(proc: Any, n: int, timeout: float = 10.0) -> tuple[list[Any], list[float]]:
    """Like :func:`receive_all`, also returning ``time.monotonic()`` after each receive."""
    deadline = time.monotonic() + timeout
    messages: list[Any] = []
    arrivals: list[float] = []
    while len(messages) < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            message = proc.receive(timeout=remaining)
        except TimeoutError:
            break
        arrivals.append(time.monotonic())
        messages.append(message)
    if len(messages) < n:
        raise AssertionError(f"received {len(messages)} of {n} messages within {timeout:.2f}s")
    return messages, arrivals


class Sentinel:
    """A unique work message; identity is what counts, the label is for failure output."""

    _count = 0

    def __init__(self, label: str = "sentinel") -> None:
        Sentinel._count += 1
        self.label = f"{label}#{Sentinel._count}"

    def __repr__(self) -> str:
        return f"<Sentinel {self.label}>"


def receive_until_sentinel(proc: Any, timeout: float = 5.0) -> list[Any]:
    """Send a fresh sentinel to ``proc`` and return everything received before it.

    Inbox order is arrival order, so this returns exactly what was in the inbox
    when the sentinel went in (plus anything that raced in before it).
    """
    sentinel = Sentinel()
    proc.send(sentinel)
    deadline = time.monotonic() + timeout
    before: list[Any] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(
                f"sentinel not received within {timeout:.2f}s; got {before[-3:]!r}"
            )
        try:
            message = proc.receive(timeout=remaining)
        except TimeoutError:
            continue
        if message is sentinel:
            return before
        before.append(message)


def metric(node: Any, key: str) -> int:
    """One value of ``node.metrics()``; a missing key is a test failure, not a KeyError."""
    metrics = node.metrics()
    assert key in metrics, f"metric {key!r} missing from node.metrics()"
    return metrics[key]


def metrics_of(node: Any, keys: Iterable[str] = TABLE_GAUGES) -> dict[str, int]:
    """A snapshot of some metrics."""
    metrics = node.metrics()
    missing = [key for key in keys if key not in metrics]
    assert not missing, f"metrics missing from node.metrics(): {missing}"
    return {key: metrics[key] for key in keys}


def wait_for_metrics(node: Any, expected: dict[str, int], timeout: float = 5.0) -> None:
    """Wait until every metric in ``expected`` has exactly its expected value."""

    def matches() -> bool:
        return metrics_of(node, expected) == expected

    wait_for(
        matches,
        timeout=timeout,
        message=lambda: f"metrics {expected}, now {metrics_of(node, expected)}",
    )


def wait_dispatcher_idle(node: Any, timeout: float = 10.0) -> None:
    """Wait until the dispatcher queue is empty (every queued DOWN handed over or dropped)."""
    wait_for_metrics(node, {"zenmon.local.dispatcher.queue_len": 0}, timeout=timeout)


def assert_down(message: Any, ref: int, pid: Any, reason: Any) -> None:
    """``message`` is exactly ``zenmon.Down(ref, pid, reason)``."""
    assert isinstance(message, zenmon.Down), f"expected a Down, got {message!r}"
    assert message.ref == ref, f"ref {message.ref!r} != {ref!r} in {message!r}"
    assert message.pid == pid, f"pid {message.pid!r} != {pid!r} in {message!r}"
    assert message.reason == reason, f"reason {message.reason!r} != {reason!r}"


def max_in_window(times: list[float], width: float) -> int:
    """The largest number of ``times`` (sorted) falling in any half-open window of ``width``."""
    best = 0
    start = 0
    for end, t in enumerate(times):
        while t - times[start] >= width:
            start += 1
        best = max(best, end - start + 1)
    return best

"""pytest-benchmark suites for REMOTE monitoring: zenmon against the naive remote baseline.

    pytest bench/test_bench_remote.py --benchmark-only -q

The node hosting the watched processes is a subprocess (``zenmon.tools.bench_remote``'s
child mode); the watching node is in the test process. N is 100,000 here
(``--bench-remote-n`` or ``ZENMON_BENCH_REMOTE_N`` overrides it; ``zenmon bench`` /
``python -m zenmon.tools.bench_remote`` run the 1M figures and the other remote
scenarios).

(a) subscribe: from the first ``monitor()`` of N remote pids until the remote node
    holds every subscription (zenmon's fast settings: sweeps every 10 ms, chunks
    of 100,000).
(b) remote DOWN fan-out: N remote deaths -> N DOWNs received from 1000 watchers'
    inboxes, throttle lifted, timed from the kill command to the last DOWN.

Each round builds a fresh pair of nodes, untimed (pedantic ``setup``).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import pytest

from zenmon.tools.bench_remote import (
    IMPLEMENTATIONS,
    FanoutResult,
    Remote,
    SubscribeResult,
    arm_subscribe,
    build_remote,
    remote_fanout,
    subscribe,
)

pytestmark = pytest.mark.timeout(1800)

Record = Callable[[str, str, str, float], None]

ROUNDS = 3


def n_label(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k"


def round_duration(benchmark: Any) -> float:
    stats = getattr(benchmark, "stats", None)
    return float("nan") if stats is None else float(stats.stats.median)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_remote_subscribe(benchmark: Any, impl: str, remote_n: int, record: Record) -> None:
    results: list[SubscribeResult] = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        remote = build_remote(impl, remote_n)
        gc.collect()
        arm_subscribe(remote, timeout=120.0)   # the remote starts polling its count
        return (remote,), {}

    def run(remote: Remote) -> None:
        results.append(subscribe(remote, timeout=120.0, armed=True))

    def teardown(remote: Remote) -> None:
        remote.close()

    benchmark.group = "remote a: first monitor() -> every subscription held by the remote node"
    benchmark.pedantic(run, setup=setup, teardown=teardown, rounds=ROUNDS)
    for result in results:
        assert result.subscribed == remote_n, f"{impl}: {result.subscribed} of {remote_n}"
    seconds = round_duration(benchmark)
    best = min(results, key=lambda r: r.total_s)
    benchmark.extra_info.update(n=remote_n, end_to_end_s=best.total_s,
                                monitor_calls_s=best.calls_s)
    label = n_label(remote_n)
    record("remote a: subscribe", f"{label} remote monitors subscribed, s", impl, seconds)
    record("remote a: subscribe", "subscribe, ns/monitor", impl, seconds * 1e9 / remote_n)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_remote_down_fanout(benchmark: Any, impl: str, remote_n: int, record: Record) -> None:
    results: list[FanoutResult] = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        remote = build_remote(impl, remote_n)
        subscribed = subscribe(remote, timeout=120.0).subscribed
        assert subscribed == remote_n, f"{impl}: {subscribed} of {remote_n} subscribed"
        gc.collect()
        return (remote,), {}

    def run(remote: Remote) -> None:
        results.append(remote_fanout(remote))

    def teardown(remote: Remote) -> None:
        remote.close()

    benchmark.group = "remote b: N remote deaths -> last DOWN received (unlimited)"
    benchmark.pedantic(run, setup=setup, teardown=teardown, rounds=ROUNDS)
    for result in results:
        assert result.ok, (f"{impl}: received {result.received} of {result.expected} DOWNs, "
                           f"{result.wrong} with a wrong reason")
    seconds = round_duration(benchmark)
    best = min(results, key=lambda r: r.total_s)
    benchmark.extra_info.update(n=remote_n, kill_to_last_down_s=best.total_s,
                                exit_loop_s=best.exit_loop_s)
    label = n_label(remote_n)
    record("remote b: DOWN fan-out", f"{label} remote deaths -> last DOWN received, s", impl,
           seconds)
    record("remote b: DOWN fan-out", "remote fan-out, ns/DOWN", impl, seconds * 1e9 / remote_n)

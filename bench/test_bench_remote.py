"""pytest-benchmark suites for REMOTE monitoring: zenmon against the naive remote baseline.

    pytest bench/test_bench_remote.py --benchmark-only -q

The node hosting the watched processes is a subprocess (``zenmon.tools.bench_remote``'s
child mode); the watching node is in the test process. N is 100,000 here
(``ZENMON_BENCH_REMOTE_N`` overrides it; ``zenmon bench`` / ``python -m
zenmon.tools.bench_remote`` run the 1M figures and the other remote scenarios).

(a) subscribe: from the first ``monitor()`` of N remote pids until the remote node
    holds every subscription (zenmon's fast settings: sweeps every 10 ms, chunks
    of 100,000).
(b) remote DOWN fan-out: N remote deaths -> N DOWNs received from 1000 watchers'
    inboxes, throttle lifted, timed from the kill command to the last DOWN.

Each round builds a fresh pair of nodes, untimed (pedantic ``setup``).
"""

from __future__ import annotations

import gc
import os
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

REMOTE_N = int(os.environ.get("ZENMON_BENCH_REMOTE_N", 100_000))
ROUNDS = 3


def n_label(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k"


def round_duration(benchmark: Any) -> float:
    stats = getattr(benchmark, "stats", None)
    return float("nan") if stats is None else float(stats.stats.median)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_remote_subscribe(benchmark: Any, impl: str, record: Record) -> None:
    results: list[SubscribeResult] = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        remote = build_remote(impl, REMOTE_N)
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
        assert result.subscribed == REMOTE_N, f"{impl}: {result.subscribed} of {REMOTE_N}"
    seconds = round_duration(benchmark)
    best = min(results, key=lambda r: r.total_s)
    benchmark.extra_info.update(n=REMOTE_N, end_to_end_s=best.total_s,
                                monitor_calls_s=best.calls_s)
    label = n_label(REMOTE_N)
    record("remote a: subscribe", f"{label} remote monitors subscribed, s", impl, seconds)
    record("remote a: subscribe", "subscribe, ns/monitor", impl, seconds * 1e9 / REMOTE_N)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_remote_down_fanout(benchmark: Any, impl: str, record: Record) -> None:
    results: list[FanoutResult] = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        remote = build_remote(impl, REMOTE_N)
        subscribed = subscribe(remote, timeout=120.0).subscribed
        assert subscribed == REMOTE_N, f"{impl}: {subscribed} of {REMOTE_N} subscribed"
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
    benchmark.extra_info.update(n=REMOTE_N, kill_to_last_down_s=best.total_s,
                                exit_loop_s=best.exit_loop_s)
    label = n_label(REMOTE_N)
    record("remote b: DOWN fan-out", f"{label} remote deaths -> last DOWN received, s", impl,
           seconds)
    record("remote b: DOWN fan-out", "remote fan-out, ns/DOWN", impl, seconds * 1e9 / REMOTE_N)

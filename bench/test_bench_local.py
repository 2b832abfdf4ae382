"""pytest-benchmark suites for LOCAL monitoring: zenmon against the naive baseline.

    pytest bench/ --benchmark-only -q [--bench-n 100000] [--bench-10m]

(a) ``monitor()``/``demonitor()`` per call with N monitors live: pedantic rounds
    of an inner loop of ``INNER`` calls; the per-call figure is the round's
    median divided by ``INNER`` (pytest-benchmark's own overhead, ~100 ns a call,
    stays out of it).
(b) bulk monitor of N targets (1000 watchers x N/1000), processes made untimed.
(c) DOWN fan-out: N local deaths -> N DOWNs in 1000 watchers' inboxes, throttle
    lifted, timed until the last DOWN is received.
(d) bytes per monitor at N (and 10M for zenmon with ``--bench-10m``), by RSS delta
    and by tracemalloc, each in a fresh subprocess.

The workloads are the ones ``zenmon bench`` runs (:mod:`zenmon.tools.bench_local`), so the
two report the same figures.
"""

from __future__ import annotations

import gc
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from zenmon.tools.bench_local import (
    IMPLEMENTATIONS,
    INNER,
    ROUNDS,
    TEN_M,
    Population,
    build_population,
    fanout,
    measure_memory,
    monitor_all,
)

pytestmark = pytest.mark.timeout(7200)  # 1M-scale setups outlast the default 120 s

Record = Callable[[str, str, str, float], None]


def per_call(benchmark: Any, inner: int) -> float:
    """The median round of the last pedantic run, in ns per inner call."""
    stats = getattr(benchmark, "stats", None)
    if stats is None:  # --benchmark-disable
        return float("nan")
    return float(stats.stats.median) * 1e9 / inner


def round_duration(benchmark: Any) -> float:
    stats = getattr(benchmark, "stats", None)
    return float("nan") if stats is None else float(stats.stats.median)


def n_label(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k"


# --------------------------------------------------------------------------
# (a) per call, table live
# --------------------------------------------------------------------------


class TestPerCall:
    """monitor()/demonitor() on a table that already holds N monitors."""

    @pytest.fixture(scope="class", params=IMPLEMENTATIONS)
    @classmethod
    def population(cls, request: pytest.FixtureRequest, bench_n: int) -> Iterator[Population]:
        pop = build_population(request.param, bench_n)
        monitor_all(pop)
        yield pop
        pop.close()

    @staticmethod
    def picks(pop: Population, rng: random.Random) -> tuple[Any, list[Any]]:
        watcher = pop.watchers[rng.randrange(len(pop.watchers))]
        pids = pop.target_pids
        return watcher, [pids[rng.randrange(len(pids))] for _ in range(INNER)]

    def test_monitor_demonitor(
        self, benchmark: Any, population: Population, record: Record
    ) -> None:
        rng = random.Random(1)

        def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
            watcher, picks = self.picks(population, rng)
            return (watcher.monitor, watcher.demonitor, picks), {}

        def pairs(monitor: Any, demonitor: Any, picks: list[Any]) -> None:
            for pid in picks:
                demonitor(monitor(pid))

        benchmark.group = "a: monitor+demonitor per call (inner loop)"
        benchmark.pedantic(pairs, setup=setup, rounds=ROUNDS, warmup_rounds=1)
        ns = per_call(benchmark, INNER)
        benchmark.extra_info.update(ns_per_call=ns, inner=INNER, live=population.n)
        record("a: per call", f"monitor()+demonitor() @{n_label(population.n)} live, ns",
               population.impl, ns)

    def test_monitor(self, benchmark: Any, population: Population, record: Record) -> None:
        rng = random.Random(2)

        def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
            watcher, picks = self.picks(population, rng)
            return (watcher, picks, []), {}

        def monitors(watcher: Any, picks: list[Any], refs: list[Any]) -> None:
            monitor = watcher.monitor
            refs.extend([monitor(pid) for pid in picks])

        def teardown(watcher: Any, picks: list[Any], refs: list[Any]) -> None:
            for ref in refs:
                watcher.demonitor(ref)

        benchmark.group = "a: monitor per call (inner loop)"
        benchmark.pedantic(monitors, setup=setup, teardown=teardown, rounds=ROUNDS,
                           warmup_rounds=1)
        ns = per_call(benchmark, INNER)
        benchmark.extra_info.update(ns_per_call=ns, inner=INNER, live=population.n)
        record("a: per call", f"monitor() @{n_label(population.n)} live, ns",
               population.impl, ns)

    def test_demonitor(self, benchmark: Any, population: Population, record: Record) -> None:
        rng = random.Random(3)

        def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
            watcher, picks = self.picks(population, rng)
            monitor = watcher.monitor
            return (watcher.demonitor, [monitor(pid) for pid in picks]), {}

        def demonitors(demonitor: Any, refs: list[Any]) -> None:
            for ref in refs:
                demonitor(ref)

        benchmark.group = "a: demonitor per call (inner loop)"
        benchmark.pedantic(demonitors, setup=setup, rounds=ROUNDS, warmup_rounds=1)
        ns = per_call(benchmark, INNER)
        benchmark.extra_info.update(ns_per_call=ns, inner=INNER, live=population.n)
        record("a: per call", f"demonitor() @{n_label(population.n)} live, ns",
               population.impl, ns)


# --------------------------------------------------------------------------
# (b) bulk monitor, (c) DOWN fan-out
# --------------------------------------------------------------------------


def big_rounds(n: int) -> int:
    return 1 if n >= 1_000_000 else 3


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_bulk_monitor(benchmark: Any, impl: str, bench_n: int, record: Record) -> None:
    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        pop = build_population(impl, bench_n)
        gc.collect()  # no pending collector work from the setup in the timing
        return (pop,), {}

    def teardown(pop: Population) -> None:
        pop.close()

    benchmark.group = "b: bulk monitor"
    benchmark.pedantic(monitor_all, setup=setup, teardown=teardown, rounds=big_rounds(bench_n))
    seconds = round_duration(benchmark)
    benchmark.extra_info.update(n=bench_n, ns_per_monitor=seconds * 1e9 / bench_n)
    record("b: bulk monitor", f"monitor {n_label(bench_n)} targets, s", impl, seconds)
    record("b: bulk monitor", "bulk monitor, ns/monitor", impl, seconds * 1e9 / bench_n)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_down_fanout(benchmark: Any, impl: str, bench_n: int, record: Record) -> None:
    results = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        pop = build_population(impl, bench_n)
        monitor_all(pop)
        gc.collect()
        return (pop,), {}

    def run(pop: Population) -> None:
        results.append(fanout(pop))

    def teardown(pop: Population) -> None:
        pop.close()

    benchmark.group = "c: DOWN fan-out (unlimited), until the last DOWN is received"
    benchmark.pedantic(run, setup=setup, teardown=teardown, rounds=big_rounds(bench_n))
    for result in results:
        assert result.ok, (
            f"{impl}: received {result.received} of {result.expected} DOWNs, "
            f"{result.wrong} with a wrong reason"
        )
    seconds = round_duration(benchmark)
    best = min(results, key=lambda r: r.total_s)
    benchmark.extra_info.update(
        n=bench_n, ns_per_down=seconds * 1e9 / bench_n,
        exit_phase_s=best.kill_s, drain_phase_s=best.drain_s,
    )
    label = n_label(bench_n)
    record("c: DOWN fan-out", f"{label} deaths -> last DOWN received, s", impl, seconds)
    record("c: DOWN fan-out", "fan-out, ns/DOWN", impl, seconds * 1e9 / bench_n)


# --------------------------------------------------------------------------
# (d) bytes per monitor
# --------------------------------------------------------------------------


def memory_cases() -> list[Any]:
    cases = []
    for mode in ("rss", "tracemalloc"):
        for impl in IMPLEMENTATIONS:
            cases.append(pytest.param(impl, "n", mode, id=f"{impl}-n-{mode}"))
        cases.append(pytest.param("zenmon", "10m", mode, id=f"zenmon-10m-{mode}"))
    return cases


@pytest.mark.parametrize(("impl", "size", "mode"), memory_cases())
def test_bytes_per_monitor(
    benchmark: Any, impl: str, size: str, mode: str, bench_n: int, ten_million: bool,
    record: Record,
) -> None:
    if size == "10m" and not ten_million:
        pytest.skip("10M monitors: run with --bench-10m or ZENMON_BENCH_10M=1")
    n = TEN_M if size == "10m" else bench_n
    figures: dict[str, Any] = {}

    def measure() -> None:
        figures.update(measure_memory(impl, n, mode))

    benchmark.group = f"d: bytes per monitor ({mode}, fresh subprocess; time is meaningless)"
    benchmark.pedantic(measure, rounds=1)
    benchmark.extra_info.update(figures)
    record("d: memory", f"@{n_label(n)} ({mode}), B/monitor", impl, figures["bytes_per_monitor"])
    if mode == "rss":
        record("d: memory", f"@{n_label(n)} process (rss), B/process", impl,
               figures["bytes_per_process"])

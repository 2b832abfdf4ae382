"""``zenmon bench``: zenmon's figures next to a naive baseline measured in the same run.

Usage::

    zenmon bench [--quick] [--json FILE] [--n N] [--10m] [--repeat K] [--defaults]
                 [--only NAME ...]
    python -m zenmon.tools.bench_local --quick

Every figure is *lower is better* (nanoseconds, seconds, bytes), so the ratio
column reads the same way everywhere: ``naive / zenmon``, how many times better
zenmon does. With ``--repeat K`` each figure is the median of K runs, printed next
to the worst of them (the JSON keeps every run's value too); a scenario's
``settings:`` line says what its node was given beyond Config's defaults, and N
(``--defaults``: nothing, so every scenario runs as a fresh ``zenmon.Node()``).

The naive baseline is :mod:`zenmon.tools.naive_local` (dicts of tuples,
``queue.Queue`` inboxes, DOWNs delivered inside ``exit()``).

Shape (pyzmq's ``perf/perf.py`` is the model): a scenario is a function
``scenario(ctx, impl) -> dict[str, float]`` that measures one implementation and
returns its figures by label; :data:`SCENARIOS` is the list the runner walks,
once per implementation, and the table pairs the two sides label by label. Remote
scenarios are added by appending functions (through :func:`scenario`) whose
``implementations`` may be ``("zenmon",)`` only; the table prints ``-`` where a
side has no figure.

The local scenarios share one population per implementation (N targets, watched
by ``WATCHERS`` watchers, N monitors) so that a 1M run builds it once: the bulk
scenario builds it, the per-call scenario reuses it, the fan-out scenario
consumes it. Only one implementation's population is alive at a time, so the
baseline's garbage does not slow zenmon's figures (or the other way round).
Memory figures are taken in a fresh subprocess per measurement, so that RSS
deltas are clean.

The garbage collector stays enabled, as in a real service.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from zenmon.tools import runner
from zenmon.tools.runner import (
    IMPLEMENTATIONS,
    Report,
    RunContext,
    Scenario,
    ScenarioFunction,
    Setup,
    format_table,
    json_safe,
)
from zenmon.tools.stats import environment, label_n, load_average, malloc_trim, rss_bytes

__all__ = [
    "SCENARIOS",
    "Context",
    "Scenario",
    "Population",
    "build_population",
    "fanout",
    "link_all",
    "link_unlink_round",
    "main",
    "measure_memory",
    "monitor_all",
    "monitor_demonitor_round",
    "scenario",
]

FULL_N = 1_000_000
QUICK_N = 100_000
TEN_M = 10_000_000
WATCHERS = 1000
INNER = 10_000            # calls per timed round of the per-call scenario
ROUNDS = 20
QUICK_ROUNDS = 7
QUICK_REPEAT = 3          # --quick: runs of each timing scenario (median and worst)
DRAIN_TIMEOUT = 60.0      # seconds to wait for one DOWN before declaring it lost
#: What the fan-outs configure before the timing (not with --defaults).
UNLIMITED: dict[str, Any] = {"dispatch_mode": "unlimited"}


# --------------------------------------------------------------------------
# Workloads shared by the CLI and bench/ (pytest-benchmark)
# --------------------------------------------------------------------------


def make_node(impl: str, **settings: Any) -> Any:
    """A started node of implementation ``impl`` ("zenmon" or "naive")."""
    node: Any
    if impl == "zenmon":
        import zenmon

        node = zenmon.Node(listen="tcp://127.0.0.1:0", **settings)
    elif impl == "naive":
        from zenmon.tools.naive_local import NaiveNode

        node = NaiveNode(**settings)
    else:
        raise ValueError(f"unknown implementation {impl!r}")
    node.start()
    return node


@dataclass
class Population:
    """N targets, a few watchers; watcher i monitors targets[i*per_watcher:(i+1)*per_watcher]."""

    impl: str
    node: Any
    watchers: list[Any]
    targets: list[Any]
    target_pids: list[Any]
    per_watcher: int
    monitored: bool = False

    @property
    def n(self) -> int:
        return len(self.targets)

    def close(self) -> None:
        """Stop the node and let the objects go."""
        node, self.node = self.node, None
        self.watchers = []
        self.targets = []
        self.target_pids = []
        if node is not None:
            node.stop()
        # Collect with no reference left here: the node and its processes form
        # cycles, and garbage left for a later automatic collection would be
        # traversed (1M objects) in the middle of the next timed section.
        del node
        gc.collect()


def build_population(impl: str, n: int, watchers: int = WATCHERS, **settings: Any) -> Population:
    """Make a node with ``n`` targets and ``watchers`` watchers (no monitors yet)."""
    watchers = max(1, min(watchers, n))
    per_watcher = n // watchers
    n = per_watcher * watchers
    node = make_node(impl, **settings)
    process = node.process
    watcher_list = [process() for _ in range(watchers)]
    targets = [process() for _ in range(n)]
    return Population(
        impl=impl,
        node=node,
        watchers=watcher_list,
        targets=targets,
        target_pids=[t.pid for t in targets],
        per_watcher=per_watcher,
    )


def monitor_all(pop: Population) -> None:
    """Make the population's N monitors (refs are not kept: they are the caller's cost)."""
    k = pop.per_watcher
    pids = pop.target_pids
    for i, watcher in enumerate(pop.watchers):
        monitor = watcher.monitor
        for pid in pids[i * k:(i + 1) * k]:
            monitor(pid)
    pop.monitored = True


def monitor_demonitor_round(
    pop: Population, inner: int, rng: random.Random
) -> tuple[int, int, int]:
    """One timed round on a live table: returns nanoseconds for ``inner`` calls of

    - ``demonitor(monitor(pid))`` interleaved (the per-call pair),
    - ``monitor(pid)`` alone, then ``demonitor(ref)`` alone for those refs.

    Targets are drawn at random from the whole population (tables with millions
    of entries are memory-bound: sequential keys would flatter both sides).
    """
    watcher = pop.watchers[rng.randrange(len(pop.watchers))]
    monitor = watcher.monitor
    demonitor = watcher.demonitor
    pids = pop.target_pids
    n = len(pids)
    picks = [pids[rng.randrange(n)] for _ in range(inner)]
    clock = time.perf_counter_ns
    t0 = clock()
    for pid in picks:
        demonitor(monitor(pid))
    t1 = clock()
    refs = [monitor(pid) for pid in picks]
    t2 = clock()
    for ref in refs:
        demonitor(ref)
    t3 = clock()
    return t1 - t0, t2 - t1, t3 - t2


def link_all(pop: Population) -> None:
    """Link each watcher to its share of the targets (N links, two records each)."""
    k = pop.per_watcher
    pids = pop.target_pids
    for i, watcher in enumerate(pop.watchers):
        link = watcher.link
        for pid in pids[i * k:(i + 1) * k]:
            link(pid)


def link_unlink_round(pop: Population, inner: int, rng: random.Random) -> tuple[int, int]:
    """One timed round on a live link table -> nanoseconds for ``inner`` ``link(pid)``
    calls to random targets, then for the ``unlink(pid)`` calls that undo them."""
    i = rng.randrange(len(pop.watchers))
    watcher = pop.watchers[i]
    link, unlink = watcher.link, watcher.unlink
    pids = pop.target_pids
    k = pop.per_watcher                      # not its own share: those are linked already
    picks = list({pids[((i + 1) * k + rng.randrange(len(pids) - k)) % len(pids)]
                  for _ in range(inner)})
    clock = time.perf_counter_ns
    t0 = clock()
    for pid in picks:
        link(pid)
    t1 = clock()
    for pid in picks:
        unlink(pid)
    t2 = clock()
    return (t1 - t0) * inner // len(picks), (t2 - t1) * inner // len(picks)


@dataclass
class FanoutResult:
    """Timings of one fan-out: exits, then draining every DOWN."""

    kill_s: float
    drain_s: float
    total_s: float
    received: int
    expected: int
    wrong: int

    @property
    def ok(self) -> bool:
        return self.received == self.expected and self.wrong == 0


def fanout(pop: Population, reason: Any = "killed", timeout: float = DRAIN_TIMEOUT,
           lift_throttle: bool = True) -> FanoutResult:
    """Kill every target of a monitored population and receive every DOWN.

    The throttle is lifted first (``dispatch_mode="unlimited"``) unless not
    ``lift_throttle``: this measures the machinery, not the configured rate. Timed
    from the first ``exit()`` to the last DOWN taken out of a watcher's inbox.
    """
    if not pop.monitored:
        raise ValueError("fanout needs a monitored population")
    if lift_throttle:
        pop.node.configure(**UNLIMITED)
    k = pop.per_watcher
    clock = time.perf_counter
    t0 = clock()
    for target in pop.targets:
        target.exit(reason)
    t1 = clock()
    received = wrong = 0
    try:
        for watcher in pop.watchers:
            receive = watcher.receive
            for _ in range(k):
                message = receive(timeout)
                received += 1
                if message[2] != reason:
                    wrong += 1
    except TimeoutError:
        pass
    t2 = clock()
    pop.monitored = False
    return FanoutResult(t1 - t0, t2 - t1, t2 - t0, received, pop.n, wrong)


# --------------------------------------------------------------------------
# Memory: one fresh subprocess per measurement
# --------------------------------------------------------------------------


def memory_child(impl: str, n: int, mode: str, what: str = "monitor") -> dict[str, Any]:
    """Runs in the subprocess: processes first, baseline, then N monitors (or links)."""
    import tracemalloc

    rss0 = rss_bytes()
    pop = build_population(impl, n)
    gc.collect()
    malloc_trim()
    time.sleep(0.2)       # let the node's I/O thread settle
    rss1 = rss_bytes()
    if mode == "tracemalloc":
        tracemalloc.start()
    if what == "link":
        link_all(pop)
    else:
        monitor_all(pop)
    gc.collect()
    if mode == "tracemalloc":
        traced, _peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        delta = traced
    else:
        time.sleep(0.2)
        delta = rss_bytes() - rss1
    figures: dict[str, Any] = {
        "impl": impl,
        "n": pop.n,
        "mode": mode,
        "bytes_per_monitor": delta / pop.n,
        "bytes_per_process": (rss1 - rss0) / (pop.n + len(pop.watchers)),
        "references": pop.node.metrics().get("zenmon.local.references.size"),
    }
    return figures


def measure_memory(impl: str, n: int, mode: str = "rss", timeout: float = 3600.0,
                   what: str = "monitor") -> dict[str, Any]:
    """Bytes per monitor for ``n`` monitors, measured in a fresh subprocess.

    ``mode`` is ``"rss"`` (delta of /proc/self/statm; sees every allocator) or
    ``"tracemalloc"`` (sees only Python's allocators: PyMem/PyObject, not C
    ``malloc`` or C++ ``new``). The process objects exist in the baseline, so
    they are not part of the per-monitor figure (``bytes_per_process`` reports
    them apart, by RSS).
    """
    if mode not in ("rss", "tracemalloc"):
        raise ValueError(f"unknown memory mode {mode!r}")
    # The child gets exactly our sys.path: running with -c would otherwise put
    # the working directory first, and a source tree there (no built _core)
    # would shadow the installed package.
    code = (
        "import json, sys\n"
        f"sys.path[:] = {[p for p in sys.path if p]!r}\n"
        "from zenmon.tools.bench_local import memory_child\n"
        f"print(json.dumps(memory_child({impl!r}, {n!r}, {mode!r}, {what!r})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"memory child ({impl}, {n}, {mode}) failed with {done.returncode}:\n"
            f"{done.stderr[-4000:]}"
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------


@dataclass
class Context(RunContext):
    """What one local run shares: its size, options and the current population."""

    ten_million: bool = False
    inner: int = INNER
    rounds: int = ROUNDS
    seed: int = 12345
    _population: Population | None = None

    def drop(self) -> None:
        """Stop and free the current population, if any."""
        if self._population is not None:
            self._population.close()
            self._population = None

    def keep(self, pop: Population) -> None:
        self.drop()
        self._population = pop

    def population(self, impl: str) -> Population:
        """The shared monitored population for ``impl`` (built if missing)."""
        pop = self._population
        if pop is None or pop.impl != impl or not pop.monitored:
            self.log(f"{impl}: building {self.n:,} targets and {self.n:,} monitors")
            self.drop()
            pop = build_population(impl, self.n)
            monitor_all(pop)
            self._population = pop
        return pop

    def take_population(self, impl: str) -> Population:
        """Like :meth:`population`, but the caller now owns (and closes) it."""
        pop = self.population(impl)
        self._population = None
        return pop


SCENARIOS: list[Scenario] = []


def scenario(
    name: str, implementations: Sequence[str] = IMPLEMENTATIONS, repeatable: bool = True,
    settings: Callable[[Context], dict[str, Any]] | None = None,
) -> Callable[[ScenarioFunction], ScenarioFunction]:
    """Register ``fn(ctx, impl) -> {label: figure}`` in :data:`SCENARIOS` under ``name``.

    ``settings(ctx)``: what the scenario's zenmon node is given (default: nothing,
    Config's defaults), for its settings record.
    """

    def setup(ctx: Context) -> Setup:
        given = settings(ctx) if settings is not None else {}
        watchers = max(1, min(WATCHERS, ctx.n))
        n = ctx.n // watchers * watchers
        return Setup(n, {"node": given}, {"watchers": watchers, "processes": n + watchers,
                                          "os_processes": 1})

    def register(fn: ScenarioFunction) -> ScenarioFunction:
        SCENARIOS.append(Scenario(name, fn, tuple(implementations), repeatable, setup))
        return fn

    return register


def fanout_settings(ctx: Context) -> dict[str, Any]:
    """The fan-outs lift the throttle, unless the run is with the library's defaults."""
    return {} if ctx.defaults else dict(UNLIMITED)


@scenario("bulk monitor")
def bulk_monitor(ctx: Context, impl: str) -> dict[str, float]:
    """(b) N fresh processes, then N monitors in one go (1000 watchers x N/1000)."""
    ctx.drop()
    gc.collect()
    ctx.log(f"{impl}: creating {ctx.n:,} processes")
    t0 = time.perf_counter()
    pop = build_population(impl, ctx.n)
    t1 = time.perf_counter()
    # Start from a collected heap: the baseline's 1M processes leave the
    # collector a random amount of pending work that would land in the timing.
    gc.collect()
    ctx.log(f"{impl}: monitoring {pop.n:,} targets")
    t2 = time.perf_counter()
    monitor_all(pop)
    t3 = time.perf_counter()
    ctx.keep(pop)
    n = pop.n
    return {
        f"monitor {label_n(n)} targets, s": t3 - t2,
        "bulk monitor, ns/monitor": (t3 - t2) * 1e9 / n,
        "process() create, ns/process": (t1 - t0) * 1e9 / (n + len(pop.watchers)),
    }


@scenario("monitor+demonitor, table live")
def monitor_demonitor(ctx: Context, impl: str) -> dict[str, float]:
    """(a) Per-call cost with N monitors live, rounds of ``inner`` calls."""
    pop = ctx.population(impl)
    ctx.log(f"{impl}: {ctx.rounds} rounds of {ctx.inner:,} monitor/demonitor calls")
    rng = random.Random(ctx.seed)
    monitor_demonitor_round(pop, min(ctx.inner, 1000), rng)  # warm-up
    pair, mon, demon = [], [], []
    for _ in range(ctx.rounds):
        a, b, c = monitor_demonitor_round(pop, ctx.inner, rng)
        pair.append(a / ctx.inner)
        mon.append(b / ctx.inner)
        demon.append(c / ctx.inner)
    live = label_n(pop.n)
    return {
        f"monitor()+demonitor() @{live} live, ns/call": statistics.median(pair),
        f"monitor() @{live} live, ns/call": statistics.median(mon),
        f"demonitor() @{live} live, ns/call": statistics.median(demon),
    }


@scenario("DOWN fan-out", settings=fanout_settings)
def down_fanout(ctx: Context, impl: str) -> dict[str, float]:
    """(c) N local deaths -> N DOWNs in the watchers' inboxes, throttle lifted (unless
    ``--defaults``)."""
    pop = ctx.take_population(impl)
    try:
        ctx.log(f"{impl}: killing {pop.n:,} targets, draining {len(pop.watchers)} inboxes")
        gc.collect()
        result = fanout(pop, lift_throttle=not ctx.defaults)
    finally:
        pop.close()
    if not result.ok:
        print(
            f"WARNING: {impl} fan-out received {result.received:,} of {result.expected:,} DOWNs"
            f" ({result.wrong} with a wrong reason)",
            file=sys.stderr,
        )
    n = label_n(result.expected)
    figures = {
        f"{n} deaths -> last DOWN received, s": result.total_s,
        "fan-out, ns/DOWN": result.total_s * 1e9 / result.expected,
        "exit() phase, s": result.kill_s,
        "drain phase, s": result.drain_s,
    }
    if not result.ok:
        figures["DOWNs missing"] = float(result.expected - result.received + result.wrong)
    return figures


@scenario("DOWN fan-out, bulk delivery", implementations=("zenmon",), settings=fanout_settings)
def down_fanout_bulk(ctx: Context, impl: str) -> dict[str, float]:
    """N local deaths -> N DOWNs, each watcher taking them as DownBatch messages."""
    ctx.drop()
    pop = build_population(impl, ctx.n)
    try:
        for watcher in pop.watchers:
            watcher.set_bulk(True)
        monitor_all(pop)
        if not ctx.defaults:
            pop.node.configure(**UNLIMITED)
        ctx.log(f"{impl}: killing {pop.n:,} targets, draining {len(pop.watchers)} bulk inboxes")
        gc.collect()
        clock = time.perf_counter
        t0 = clock()
        for target in pop.targets:
            target.exit("killed")
        t1 = clock()
        received = messages = 0
        try:
            for watcher in pop.watchers:
                got = 0
                while got < pop.per_watcher:
                    batch = watcher.receive(DRAIN_TIMEOUT)
                    messages += 1
                    got += len(batch.downs)
                received += got
        except TimeoutError:
            pass
        t2 = clock()
    finally:
        pop.close()
    n = label_n(pop.per_watcher * len(pop.watchers) if pop.watchers else ctx.n)
    figures = {
        f"{n} deaths -> last DOWN received, s": t2 - t0,
        "drain phase, s": t2 - t1,
        "inbox messages per 1k DOWNs": messages * 1000 / max(1, received),
    }
    if received != ctx.n:
        figures["DOWNs missing"] = float(ctx.n - received)
    return figures


class GilProbe:
    """A thread that sleeps 1 ms at a time and records how late it wakes: the GIL
    another thread held past its sleep (with a 0.1 ms switch interval, Python code
    yields within about that, so what is left is held by C code: zenmon's core calls,
    pyzmq, the interpreter's own work)."""

    def __init__(self) -> None:
        self.late: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gil-probe", daemon=True)

    def __enter__(self) -> GilProbe:
        self._old_interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-4)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        sys.setswitchinterval(self._old_interval)

    def _run(self) -> None:
        clock, sleep, late = time.perf_counter, time.sleep, self.late
        while not self._stop.is_set():
            t = clock()
            sleep(0.001)
            late.append(clock() - t - 0.001)


@scenario("GIL hold while N deaths are delivered", implementations=("zenmon",),
          settings=fanout_settings)
def gil_hold(ctx: Context, impl: str) -> dict[str, float]:
    """N local deaths delivered while a probe thread measures the longest time it
    waited for the GIL (issue 12's figure for zenmon's threads)."""
    pop = ctx.take_population(impl)
    try:
        gc.collect()
        with GilProbe() as probe:
            result = fanout(pop, lift_throttle=not ctx.defaults)
    finally:
        pop.close()
    late = sorted(probe.late) or [float("nan")]
    figures = {
        "longest GIL wait of a 1 ms probe, ms": late[-1] * 1e3,
        "p99 GIL wait of a 1 ms probe, ms": late[int(len(late) * 0.99)] * 1e3,
        f"{label_n(result.expected)} deaths -> last DOWN received, s": result.total_s,
    }
    if not result.ok:
        figures["DOWNs missing"] = float(result.expected - result.received + result.wrong)
    return figures


@scenario("memory per monitor", repeatable=False)
def memory(ctx: Context, impl: str) -> dict[str, float]:
    """(d) Bytes per monitor by RSS delta and tracemalloc, in fresh subprocesses."""
    ctx.drop()
    sizes = [ctx.n]
    if ctx.ten_million and impl == "zenmon":
        sizes.append(TEN_M)   # the baseline is only measured at N: 10M of it needs ~25 GB
    figures: dict[str, float] = {}
    for n in sizes:
        for mode in ("rss", "tracemalloc"):
            ctx.log(f"{impl}: bytes per monitor at {n:,} ({mode}, subprocess)")
            result = measure_memory(impl, n, mode)
            figures[f"@{label_n(n)} ({mode}), B/monitor"] = result["bytes_per_monitor"]
            if mode == "rss":
                figures[f"@{label_n(n)} process (rss), B/process"] = result["bytes_per_process"]
    return figures


@scenario("links", implementations=("zenmon",), repeatable=False)
def links(ctx: Context, impl: str) -> dict[str, float]:
    """link() cost, in bulk and per call at N live links, and bytes per link (the
    baseline has no links: zenmon's figures only, next to its monitor figures)."""
    ctx.drop()
    gc.collect()
    pop = build_population(impl, ctx.n)
    try:
        gc.collect()
        ctx.log(f"{impl}: linking {pop.n:,} targets")
        t0 = time.perf_counter()
        link_all(pop)
        t1 = time.perf_counter()
        rng = random.Random(ctx.seed)
        link_unlink_round(pop, min(ctx.inner, 1000), rng)       # warm-up
        linked, unlinked = [], []
        for _ in range(ctx.rounds):
            a, b = link_unlink_round(pop, ctx.inner, rng)
            linked.append(a / ctx.inner)
            unlinked.append(b / ctx.inner)
        n = pop.n
    finally:
        pop.close()
    live = label_n(n)
    figures = {
        "bulk link, ns/link": (t1 - t0) * 1e9 / n,
        f"link() @{live} live, ns/call": statistics.median(linked),
        f"unlink() @{live} live, ns/call": statistics.median(unlinked),
    }
    ctx.log(f"{impl}: bytes per link at {n:,} (rss, subprocess)")
    figures[f"@{live} (rss), B/link"] = measure_memory(impl, n, "rss", what="link")[
        "bytes_per_monitor"]
    return figures


def run(
    ctx: Context,
    scenarios: Sequence[Scenario] | None = None,
    implementations: Sequence[str] = IMPLEMENTATIONS,
    repeat: int = 1,
) -> Report:
    """:func:`zenmon.tools.runner.run` over ``scenarios`` (default: the local :data:`SCENARIOS`)."""
    return runner.run(ctx, SCENARIOS if scenarios is None else scenarios, implementations,
                      repeat)


REPEAT_HELP = (
    "run the timing scenarios K times, alternating which side goes first, and report "
    "each figure's median and worst of the K runs (JSON: also every run's value); "
    "memory figures are measured once. Default: {quick} with --quick, else 1")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``zenmon bench`` (the CLI calls ``zenmon.tools.bench_local.main(argv)``)."""
    parser = argparse.ArgumentParser(
        prog="zenmon bench",
        description="zenmon's figures against naive baselines measured in the same run: "
                    "local monitors (pure-Python dicts and queues), then remote monitors "
                    "(one network message per monitor and per death). Lower is better "
                    "(rates: higher); ratio = naive / zenmon. With --repeat K each figure "
                    "is the median of K runs, next to the worst. Under each scenario a "
                    "'settings:' line gives N and what its zenmon nodes were given that "
                    "differs from zenmon.Config's defaults; --json records the settings "
                    "in full, with the Python version, CPUs and load average. Remote "
                    "figures with --json go to FILE.remote.json.",
    )
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_N:,} monitors instead of {FULL_N:,} (well under 2 minutes)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    parser.add_argument("--n", type=int, default=None,
                        help="number of targets/monitors (overrides --quick)")
    parser.add_argument("--10m", dest="ten_million", action="store_true",
                        default=os.environ.get("ZENMON_BENCH_10M") == "1",
                        help="also measure zenmon's bytes per monitor at 10M "
                             "(needs several GB; also ZENMON_BENCH_10M=1)")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="run only scenarios whose name contains NAME (repeatable)")
    parser.add_argument("--impl", choices=IMPLEMENTATIONS, action="append",
                        help="run only this implementation (repeatable)")
    parser.add_argument("--repeat", type=int, default=None, metavar="K",
                        help=REPEAT_HELP.format(quick=QUICK_REPEAT)
                        + " (the remote scenarios: 1 unless --repeat is given)")
    parser.add_argument("--defaults", action="store_true",
                        help="run every scenario with zenmon's default settings (token "
                             "bucket at 10,000 DOWNs/s, 100 ms sweeps of 5000, 200/1000 ms "
                             "heartbeats) instead of the benchmark's fast ones; only what a "
                             "scenario is about (the storms' dispatch_mode) is kept. "
                             "Fan-outs then take N / 10,000 s")
    parser.add_argument("--storm-n", type=int, default=None, metavar="N",
                        help="DOWNs in each remote storm (default 100,000)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--local", action="store_true",
                        help="only the local scenarios (default: local, then remote)")
    parser.add_argument("--remote", action="store_true",
                        help="only the remote scenarios (zenmon.tools.bench_remote)")
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    repeat = args.repeat if args.repeat is not None else (QUICK_REPEAT if args.quick else 1)
    status = 0
    if not args.remote:
        status = _main_local(args, repeat)
    if not args.local:
        from zenmon.tools import bench_remote

        remote_argv = ["--quick"] if args.quick else []
        if args.n:
            remote_argv += ["--n", str(args.n)]
        if args.repeat is not None:
            remote_argv += ["--repeat", str(args.repeat)]
        if args.storm_n is not None:
            remote_argv += ["--storm-n", str(args.storm_n)]
        if args.defaults:
            remote_argv.append("--defaults")
        for word in args.only or ():
            remote_argv += ["--only", word]
        if args.json:
            remote_argv += ["--json", _remote_json_name(args.json)]
        if args.quiet:
            remote_argv.append("-q")
        print()
        status = bench_remote.main(remote_argv) or status
    return status


def _remote_json_name(path: str) -> str:
    stem, dot, suffix = path.rpartition(".")
    return f"{stem}.remote.{suffix}" if dot else f"{path}.remote"


def _main_local(args: argparse.Namespace, repeat: int) -> int:
    """The local scenarios of ``zenmon bench``."""

    n = args.n or (QUICK_N if args.quick else FULL_N)
    ctx = Context(
        n=n,
        quick=args.quick,
        ten_million=args.ten_million,
        rounds=QUICK_ROUNDS if args.quick else ROUNDS,
        verbose=not args.quiet,
        defaults=args.defaults,
    )
    scenarios = SCENARIOS
    if args.only:
        scenarios = [entry for entry in SCENARIOS
                     if any(word in entry.name for word in args.only)]
    implementations = tuple(args.impl) if args.impl else IMPLEMENTATIONS

    load_before = load_average()
    started = time.perf_counter()
    report = run(ctx, scenarios, implementations, repeat)
    elapsed = time.perf_counter() - started
    load_after = load_average()

    print(f"zenmon bench: n={n:,}, watchers={WATCHERS}, {_aggregate(repeat)}, "
          "lower is better, ratio = naive / zenmon (>1: zenmon better); "
          f"{elapsed:.1f} s, load average {load_before:.2f} -> {load_after:.2f} "
          f"on {os.cpu_count()} CPUs")
    print(format_table(report.table, report.settings))
    if args.json:
        document = {
            "n": n,
            "quick": args.quick,
            "library_defaults": args.defaults,
            "watchers": WATCHERS,
            "inner": ctx.inner,
            "rounds": ctx.rounds,
            "repeat": repeat,
            "aggregate": "median and worst of the runs; runs: every run's value",
            "elapsed_s": elapsed,
            "load_average": [load_before, load_after],
            "environment": environment(),
            "scenarios": report.scenarios(),
        }
        with open(args.json, "w") as out:
            json.dump(json_safe(document), out, indent=2)
            out.write("\n")
    return 1 if report.missing else 0


def _aggregate(repeat: int) -> str:
    """How the figures of ``repeat`` runs are reported (the title line)."""
    return "one run" if repeat == 1 else f"median and worst of {repeat} runs"


if __name__ == "__main__":
    sys.exit(main())

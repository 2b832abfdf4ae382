"""Remote scenarios of ``zenmon bench``: zenmon against a naive remote baseline, same run.

Usage::

    python -m zenmon.tools.bench_remote [--quick] [--json FILE] [--n N] [--repeat K]
                                        [--defaults] [--storm-n N] [--only NAME ...]
    zenmon bench --remote ...

The naive baseline is :mod:`zenmon.tools.naive_remote`: the same process model and
transport (a node per OS process, one I/O thread, ROUTER/DEALER over loopback
TCP) but one network message per monitor and per death, no batching, no
dispatcher. Every figure is *lower is better*; ratio = naive / zenmon.

The node hosting the watched processes (the "sessions" node) is always a
subprocess (``--serve`` child mode below: JSON lines over stdin/stdout, a free
loopback port, killed by its own pid); the watching node lives in the benchmark
process. Scenarios (N = 1,000,000, or 100,000 with ``--quick``):

(a) ``remote subscribe``: end to end, from the first ``monitor()`` call until the
    remote node holds every subscription (zenmon: its
    ``zenmon.proxy.subscribers.size``; naive: its subscription count), polled by
    the remote node itself every 0.5 ms and stamped with ``time.monotonic()``
    (system wide on Linux, so comparable across processes). Also (d): wire bytes
    and messages the watching node sent, per subscription.
(b) ``remote DOWN fan-out``: N remote deaths -> N DOWNs received from the watchers'
    inboxes (throttle lifted), from the kill command to the last DOWN. Also (d):
    wire bytes and messages the remote node sent, per death.
(c) ``remote node SIGKILL``: the remote node is SIGKILLed with N monitors on its
    processes; SIGKILL -> last ``nodedown`` DOWN received, SIGKILL -> detection
    (the first monitors fired: the watching node's references table starts to
    empty, polled every 0.5 ms) and from there to the last DOWN. Heartbeat 100 ms /
    timeout 500 ms on both sides, throttle lifted.
(e) ``remote memory``: bytes per monitor on the watching node and per
    subscription on the remote node at N, by RSS delta in fresh subprocesses
    (processes, watcher pids and pid objects exist before the baseline; freed heap
    is handed back with ``malloc_trim`` before both readings, so the figure is the
    memory the monitors *retain*).
(f) ``remote DOWN storm``: one watcher holds 100,000 monitors (``--storm-n``) on a
    remote node's processes, which all exit; a sender thread puts a work message carrying
    ``time.monotonic()`` in the watcher's inbox every 1 ms. Figures: each work
    message's wait (received - sent) p50/p99/max for those sent during the storm,
    and the storm duration (kill command -> last DOWN). zenmon with default settings
    (token bucket, 10,000 DOWNs/s) and with ``dispatch_mode="adaptive"``; the naive
    baseline is measured next to each.
(g) ``remote nodedown storm``: as (f), but the remote node is SIGKILLed (by its
    pid) and the watching node (heartbeat 100 ms / timeout 500 ms, otherwise
    default settings, ``dispatch_mode`` per scenario) fires the 100,000
    ``nodedown`` DOWNs; the watcher's receive loop runs in its own thread. Figures:
    the wait p50/p99/max of work messages sent between the first and the last DOWN
    received, that first -> last span, and the drain rate (DOWNs / span; also as a
    multiple of 10,000/s). The rate is *higher is better*, so its ratio reads the
    other way round.

zenmon's nodes get :data:`FAST` in (a), (b) and (e), :data:`FAST` and
:data:`HEARTBEAT` in (c), :data:`HEARTBEAT` in (g); with ``--defaults`` they get
nothing but the storms' ``dispatch_mode``, so the figures are those of
``zenmon.Node()`` as shipped. Each scenario's ``settings:`` line (and its JSON
record) says which.

Naive heartbeats share the stream with its MONITOR messages, so a PING behind a
million MONITORs is answered seconds late; the naive nodes therefore subscribe
with a 60 s heartbeat timeout and (c) shortens it to 500 ms once subscribed.
"""

from __future__ import annotations

import argparse
import array
import atexit
import base64
import gc
import json
import os
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from zenmon.tools import child as _child
from zenmon.tools.child import ChildError, die_with_parent, serve_commands
from zenmon.tools.runner import (
    IMPLEMENTATIONS,
    Report,
    RunContext,
    Scenario,
    Setup,
    format_table,
    json_safe,
)
from zenmon.tools.runner import run as run_scenarios
from zenmon.tools.stats import environment, label_n, load_average, percentile, settled_rss

__all__ = [
    "SCENARIO_SPECS",
    "arm_subscribe",
    "Child",
    "Context",
    "Remote",
    "build_remote",
    "main",
    "remote_fanout",
    "run",
    "subscribe",
]

FULL_N = 1_000_000
QUICK_N = 100_000
STORM_N = 100_000
WATCHERS = 1000
START_TIMEOUT = 60.0
WORK_PERIOD = 0.001            # seconds between work messages in the storm
#: CPU the storm's watcher spends handling each DOWN, in µs (``--down-cost-us``).
DOWN_COST_US = float(os.environ.get("ZENMON_BENCH_DOWN_COST_US", "0"))

#: zenmon's fast settings for (a), (b), (c) and (e), on both nodes.
FAST: dict[str, Any] = {
    "connector_sweep_interval": 10,
    "connector_chunk_size": 100_000,
    "batcher_sweep_interval": 10,
    "batcher_chunk_size": 100_000,
    "dispatch_mode": "unlimited",
}
#: (c): heartbeats on both sides.
HEARTBEAT: dict[str, Any] = {"heartbeat_interval": 100, "heartbeat_timeout": 500}
#: The naive nodes while subscribing (see the module docstring).
NAIVE_PATIENT: dict[str, Any] = {"heartbeat_interval": 100, "heartbeat_timeout": 60_000}


# --------------------------------------------------------------------------
# What each scenario's zenmon nodes are given: (watching node, remote node).
# With --defaults (ctx.defaults) nothing, but what the scenario is about.
# --------------------------------------------------------------------------

NodeSettings = tuple[dict[str, Any], dict[str, Any]]


def _defaults(ctx: Any) -> bool:
    return bool(getattr(ctx, "defaults", False))


def fast_settings(ctx: Any) -> NodeSettings:
    """(a), (b), (e): :data:`FAST` on both nodes."""
    return ({}, {}) if _defaults(ctx) else (dict(FAST), dict(FAST))


def sigkill_settings(ctx: Any) -> NodeSettings:
    """(c): :data:`FAST` and :data:`HEARTBEAT` on both nodes."""
    return ({}, {}) if _defaults(ctx) else ({**FAST, **HEARTBEAT}, {**FAST, **HEARTBEAT})


def storm_settings(ctx: Any, mode: str) -> NodeSettings:
    """(f): the watching node's ``dispatch_mode``, defaults otherwise (in both runs)."""
    return {"dispatch_mode": mode}, {}


def nodedown_storm_settings(ctx: Any, mode: str) -> NodeSettings:
    """(g): the watching node's ``dispatch_mode``, :data:`HEARTBEAT` on both nodes."""
    if _defaults(ctx):
        return {"dispatch_mode": mode}, {}
    return {"dispatch_mode": mode, **HEARTBEAT}, dict(HEARTBEAT)


def _setup(settings: NodeSettings, n: int, watchers: int, os_processes: int = 2,
           **details: Any) -> Setup:
    watching, remote = settings
    return Setup(n, {"watching": watching, "remote": remote},
                 {"watchers": watchers, "remote_processes": n,
                  "os_processes": os_processes, **details})


def _storm_n(ctx: Any) -> int:
    return int(getattr(ctx, "storm_n", STORM_N))


def _log(ctx: Any, text: str) -> None:
    log = getattr(ctx, "log", None)
    if log is not None:
        log(text)


# --------------------------------------------------------------------------
# Child mode: a node in its own OS process, JSON lines over stdin/stdout
# --------------------------------------------------------------------------


def _pack_ids(ids: Sequence[int]) -> str:
    return base64.b64encode(array.array("Q", ids).tobytes()).decode("ascii")


def _unpack_ids(text: str) -> array.array[int]:
    ids = array.array("Q")
    ids.frombytes(base64.b64decode(text))
    return ids


def _make_node(impl: str, settings: dict[str, Any]) -> Any:
    if impl == "zenmon":
        import zenmon

        return zenmon.Node(listen="tcp://127.0.0.1:0", **settings).start()
    if impl == "naive":
        from zenmon.tools.naive_remote import NaiveRemoteNode

        return NaiveRemoteNode(listen="tcp://127.0.0.1:0", **settings).start()
    raise ValueError(f"unknown implementation {impl!r}")


def _pids(impl: str, address: str, incarnation: int, ids: Sequence[int]) -> list[Any]:
    if impl == "zenmon":
        from zenmon import Pid

        return [Pid(address, incarnation, i) for i in ids]
    from zenmon.tools.naive_remote import NaivePid

    return [NaivePid(address, i) for i in ids]


def _subscribers(impl: str, node: Any) -> int:
    """The remote node's subscription count, cheaply (it is polled every 0.5 ms).

    zenmon: the value ``node.metrics()["zenmon.proxy.subscribers.size"]`` reports,
    read from the core directly because ``metrics()`` walks every process's inbox
    (~0.2 s with 1M processes).
    """
    if impl == "zenmon":
        return int(node._core.sizes()["subscribers"])
    return int(node.subscriptions_size)


def _references(impl: str, node: Any) -> int:
    """Live monitors held by the watching node (the SIGKILL detection probe)."""
    if impl == "zenmon":
        return int(node._core.sizes()["references"])
    with node._lock:
        return sum(len(conn.refs) for conn in node._conns.values())


class _Server:
    """Commands of the child mode (``do_<name>(**args)``)."""

    def __init__(self, impl: str, node: Any) -> None:
        self.impl = impl
        self.node = node
        self.processes: list[Any] = []
        self.watchers: list[Any] = []
        self.targets: list[Any] = []

    def do_ping(self) -> str:
        return "pong"

    def do_spawn(self, n: int) -> dict[str, Any]:
        process = self.node.process
        made = [process() for _ in range(int(n))]
        self.processes.extend(made)
        return {"ids": _pack_ids([p.pid.id for p in made])}

    def do_wait_subscribers(self, count: int, timeout: float = 600.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        impl, node = self.impl, self.node
        while True:
            got = _subscribers(impl, node)
            now = time.monotonic()
            if got >= count or now > deadline:
                return {"t": now, "count": got}
            time.sleep(0.0005)

    def do_exit_all(self, reason: Any = "killed") -> dict[str, float]:
        t0 = time.monotonic()
        for process in self.processes:
            process.exit(reason)
        t1 = time.monotonic()
        self.processes = []
        return {"t0": t0, "t1": t1}

    def do_metrics(self) -> dict[str, int]:
        return {k: v for k, v in self.node.metrics().items() if isinstance(v, int)}

    def do_configure(self, settings: dict[str, Any]) -> None:
        self.node.configure(**settings)

    def do_rss(self) -> int:
        return settled_rss()

    # the watching role, for the memory scenario
    def do_watch_prepare(self, address: str, incarnation: int, ids: str,
                         watchers: int) -> int:
        process = self.node.process
        self.watchers = [process() for _ in range(int(watchers))]
        self.targets = _pids(self.impl, address, int(incarnation), _unpack_ids(ids))
        return len(self.targets)

    def do_watch_monitor(self) -> float:
        t0 = time.monotonic()
        k = len(self.targets) // len(self.watchers)
        for i, watcher in enumerate(self.watchers):
            monitor = watcher.monitor
            for pid in self.targets[i * k:(i + 1) * k]:
                monitor(pid)
        return time.monotonic() - t0


def serve(impl: str, settings: dict[str, Any]) -> int:
    """The child mode: start a node, print its address, answer commands until EOF/stop."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent handles Ctrl-C
    import faulthandler

    faulthandler.register(signal.SIGUSR1, all_threads=True)   # kill -USR1: where is it stuck?
    node = _make_node(impl, settings)
    return serve_commands(node, _Server(impl, node), {
        "address": node.address, "incarnation": getattr(node, "incarnation", 0),
        "pid": os.getpid()})


class Child(_child.Child):
    """A node of implementation ``impl`` in a subprocess (``--serve`` mode of this module).

    :class:`zenmon.tools.child.Child` with this module's command set; ``close()``
    asks it to stop, then kills it by its pid if it does not go.
    """

    def __init__(self, impl: str, settings: dict[str, Any] | None = None) -> None:
        self.impl = impl
        super().__init__("zenmon.tools.bench_remote",
                         ["--serve", "--impl", impl, "--settings", json.dumps(settings or {})],
                         name=f"{impl} child", start_timeout=START_TIMEOUT)

    def close(self, graceful: bool = True) -> None:
        """Stop the child politely (unless not `graceful`); kill it if it does not go."""
        super().close(graceful)


# --------------------------------------------------------------------------
# Workloads shared by the scenarios and bench/test_bench_remote.py
# --------------------------------------------------------------------------


@dataclass(eq=False)
class Remote:
    """A remote node (child) with N processes, and a watching node here with watchers."""

    impl: str
    child: Child
    node: Any
    watchers: list[Any]
    pids: list[Any]
    per_watcher: int
    monitored: bool = False
    closed: bool = field(default=False, repr=False)

    @property
    def n(self) -> int:
        return self.per_watcher * len(self.watchers)

    def __post_init__(self) -> None:
        _LIVE.add(self)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        _LIVE.discard(self)
        try:
            self.node.stop()
        finally:
            self.child.close()
        self.watchers = []
        self.pids = []
        gc.collect()


_LIVE: set[Remote] = set()


@atexit.register
def _close_leftovers() -> None:
    """A Remote kept for a scenario that did not run (``--only``): stop its child."""
    for remote in list(_LIVE):
        try:
            remote.close()
        except Exception:
            pass


def build_remote(impl: str, n: int, watchers: int = WATCHERS,
                 node_settings: dict[str, Any] | None = None,
                 child_settings: dict[str, Any] | None = None) -> Remote:
    """A child node with ``n`` processes and a watching node here (nothing monitored yet)."""
    if node_settings is None:
        node_settings = dict(FAST) if impl == "zenmon" else dict(NAIVE_PATIENT)
    if child_settings is None:
        child_settings = node_settings
    watchers = max(1, min(watchers, n))
    per_watcher = n // watchers
    n = per_watcher * watchers
    child = Child(impl, child_settings)
    try:
        ids = _unpack_ids(child.call("spawn", n=n)["ids"])
        node = _make_node(impl, node_settings)
    except BaseException:
        child.kill()
        raise
    process = node.process
    watcher_list = [process() for _ in range(watchers)]
    pids = _pids(impl, child.address, child.incarnation, ids)
    return Remote(impl, child, node, watcher_list, pids, per_watcher)


@dataclass
class SubscribeResult:
    total_s: float          # first monitor() -> the remote holds every subscription
    calls_s: float          # the monitor() calls alone
    subscribed: int


def arm_subscribe(remote: Remote, timeout: float = 300.0) -> None:
    """Ask the remote node to start polling its subscription count (before timing)."""
    remote.child.send("wait_subscribers", count=remote.n, timeout=timeout)
    time.sleep(0.05)     # let the child start polling


def subscribe(remote: Remote, timeout: float = 300.0, armed: bool = False) -> SubscribeResult:
    """Monitor every remote pid; wait until the remote node holds every subscription.

    The remote node starts polling its own count before the first ``monitor()``
    (``arm_subscribe``, done here unless ``armed``) and answers with the
    ``time.monotonic()`` at which the count was reached.
    """
    if not armed:
        arm_subscribe(remote, timeout)
    k = remote.per_watcher
    pids = remote.pids
    clock = time.monotonic
    t0 = clock()
    for i, watcher in enumerate(remote.watchers):
        monitor = watcher.monitor
        for pid in pids[i * k:(i + 1) * k]:
            monitor(pid)
    t1 = clock()
    answer = remote.child.reply(timeout + 10)
    remote.monitored = True
    return SubscribeResult(answer["t"] - t0, t1 - t0, int(answer["count"]))


def subscribe_all(remote: Remote, impl: str, timeout: float = 300.0) -> SubscribeResult:
    """``subscribe``, raising ChildError unless every monitor was subscribed."""
    sub = subscribe(remote, timeout)
    if sub.subscribed != remote.n:
        raise ChildError(f"{impl}: only {sub.subscribed:,} of {remote.n:,} subscribed")
    return sub


@dataclass
class FanoutResult:
    total_s: float          # kill command -> last DOWN received
    first_s: float          # kill command -> first DOWN received
    exit_loop_s: float      # the remote's exit() loop
    received: int
    expected: int
    wrong: int

    @property
    def ok(self) -> bool:
        return self.received == self.expected and self.wrong == 0


def _drain(remote: Remote, reason: Any, timeout: float) -> tuple[int, int, float, float]:
    """Receive every expected DOWN; -> (received, wrong reason, first time, last time)."""
    received = wrong = 0
    first = last = float("nan")
    clock = time.monotonic
    try:
        for watcher in remote.watchers:
            receive = watcher.receive
            for _ in range(remote.per_watcher):
                message = receive(timeout)
                if not received:
                    first = clock()
                received += 1
                if message[2] != reason:
                    wrong += 1
    except TimeoutError:
        _diagnose(remote, f"{received:,} of {remote.n:,} DOWNs received")
    last = clock()
    return received, wrong, first, last


def remote_fanout(remote: Remote, reason: str = "killed", timeout: float = 60.0) -> FanoutResult:
    """Every remote process exits; receive every DOWN. Timed from the kill command."""
    if not remote.monitored:
        raise ValueError("remote_fanout needs a monitored Remote")
    t0 = time.monotonic()
    remote.child.send("exit_all", reason=reason)
    received, wrong, first, last = _drain(remote, reason, timeout)
    answer = remote.child.reply(300)
    remote.monitored = False
    return FanoutResult(last - t0, first - t0, answer["t1"] - answer["t0"], received,
                        remote.n, wrong)


def _diagnose(remote: Remote, what: str) -> None:
    """Print both nodes' metrics when DOWNs went missing (the child may be gone)."""
    print(f"WARNING: {remote.impl} {what}; watching node: {remote.node.metrics()}",
          file=sys.stderr)
    try:
        print(f"  remote node: {remote.child.call('metrics', timeout=10)}", file=sys.stderr)
    except (ChildError, OSError, ValueError) as exc:
        print(f"  remote node: {exc}", file=sys.stderr)


def _wire(impl: str, node: Any) -> tuple[int, int]:
    metrics = node.metrics()
    return metrics["zenmon.wire.bytes.sent"], metrics["zenmon.wire.messages.sent"]


def _missing(figures: dict[str, float], impl: str, what: str, expected: int, got: int,
             wrong: int = 0) -> None:
    if got != expected or wrong:
        print(f"WARNING: {impl} {what}: {got:,} of {expected:,}"
              f" ({wrong} with a wrong reason)", file=sys.stderr)
        figures["DOWNs missing"] = float(expected - got + wrong)


# --------------------------------------------------------------------------
# Scenarios: fn(ctx, impl) -> {label: figure}; ctx needs .n, .quick and .log()
# --------------------------------------------------------------------------

_KEPT = "_remote_kept"


def _drop_kept(ctx: Any) -> None:
    kept = getattr(ctx, _KEPT, None)
    if kept is not None:
        setattr(ctx, _KEPT, None)
        kept.close()


def _take_kept(ctx: Any, impl: str) -> Remote | None:
    kept = getattr(ctx, _KEPT, None)
    setattr(ctx, _KEPT, None)
    if kept is not None and (kept.impl != impl or not kept.monitored or kept.n != ctx.n):
        kept.close()
        kept = None
    return kept


def _build(impl: str, n: int, settings: NodeSettings, watchers: int = WATCHERS) -> Remote:
    """``build_remote`` with the scenario's zenmon settings (the naive nodes: their own)."""
    if impl != "zenmon":
        return build_remote(impl, n, watchers)
    watching, remote = settings
    return build_remote(impl, n, watchers, node_settings=watching, child_settings=remote)


def scenario_subscribe(ctx: Any, impl: str) -> dict[str, float]:
    """(a) + (d): N remote monitors, first monitor() -> all subscribed at the remote."""
    _drop_kept(ctx)
    _log(ctx, f"{impl}: remote node with {ctx.n:,} processes")
    remote = _build(impl, ctx.n, fast_settings(ctx))
    try:
        gc.collect()
        bytes0, messages0 = _wire(impl, remote.node)
        _log(ctx, f"{impl}: subscribing {remote.n:,} remote monitors")
        result = subscribe(remote)
        bytes1, messages1 = _wire(impl, remote.node)
    except BaseException:
        remote.close()
        raise
    setattr(ctx, _KEPT, remote)      # (b) kills these targets
    n = remote.n
    figures = {
        f"first monitor() -> {label_n(n)} subscribed, s": result.total_s,
        "subscribe, ns/monitor": result.total_s * 1e9 / n,
        "monitor() calls alone, s": result.calls_s,
        "wire bytes sent per subscription": (bytes1 - bytes0) / n,
        "wire messages sent per 1k subscriptions": (messages1 - messages0) * 1000 / n,
    }
    if result.subscribed != n:
        print(f"WARNING: {impl}: {result.subscribed:,} of {n:,} subscribed", file=sys.stderr)
        figures["subscriptions missing"] = float(n - result.subscribed)
    return figures


def scenario_fanout(ctx: Any, impl: str) -> dict[str, float]:
    """(b) + (d): N remote deaths -> N DOWNs received, throttle lifted (unless
    ``--defaults``)."""
    remote = _take_kept(ctx, impl)
    if remote is None:
        _log(ctx, f"{impl}: remote node with {ctx.n:,} processes, subscribing (untimed)")
        remote = _build(impl, ctx.n, fast_settings(ctx))
        subscribe(remote)
    try:
        gc.collect()
        before = remote.child.call("metrics")
        _log(ctx, f"{impl}: {remote.n:,} remote deaths, draining {len(remote.watchers)} inboxes")
        result = remote_fanout(remote)
        after = remote.child.call("metrics")
    finally:
        remote.close()
    n = result.expected
    sent = after["zenmon.wire.bytes.sent"] - before["zenmon.wire.bytes.sent"]
    messages = after["zenmon.wire.messages.sent"] - before["zenmon.wire.messages.sent"]
    figures = {
        f"{label_n(n)} remote deaths -> last DOWN received, s": result.total_s,
        "remote fan-out, ns/DOWN": result.total_s * 1e9 / n,
        "kill command -> first DOWN received, s": result.first_s,
        "exit() loop on the remote node, s": result.exit_loop_s,
        "wire bytes sent per death": sent / n,
        "wire messages sent per 1k deaths": messages * 1000 / n,
    }
    _missing(figures, impl, "DOWNs received", n, result.received, result.wrong)
    return figures


def scenario_sigkill(ctx: Any, impl: str) -> dict[str, float]:
    """(c) The remote node is SIGKILLed with N monitors on it: N nodedown DOWNs
    (zenmon: heartbeats 100/500 ms on both nodes, unless ``--defaults``)."""
    _drop_kept(ctx)
    remote = _build(impl, ctx.n, sigkill_settings(ctx))
    try:
        _log(ctx, f"{impl}: subscribing {remote.n:,} remote monitors (untimed)")
        subscribe_all(remote, impl)
        # Collect first: a full collection of this heap holds the GIL long enough
        # (~0.5 s with the naive 1M-entry tables) to read as a 500 ms heartbeat loss.
        gc.collect()
        if impl != "zenmon":
            remote.node.configure(**HEARTBEAT)   # from the patient setup to 100/500 ms
        time.sleep(0.5)                       # a few heartbeats: the link is quiet and alive
        n = remote.n
        live = _references(impl, remote.node)
        if live != n:
            raise ChildError(f"{impl}: {n - live:,} monitors fired before the SIGKILL "
                             "(a false nodedown)")
        detected = [float("nan")]
        stop = threading.Event()

        def probe() -> None:   # when the watching node starts firing its monitors
            while not stop.is_set():
                if _references(impl, remote.node) < n:
                    detected[0] = time.monotonic()
                    return
                time.sleep(0.0005)

        prober = threading.Thread(target=probe, daemon=True)
        prober.start()
        _log(ctx, f"{impl}: SIGKILL of the remote node with {n:,} monitors on it")
        t0 = time.monotonic()
        remote.child.kill()
        received, wrong, _first, last = _drain(remote, "nodedown", 30.0)
        stop.set()
        prober.join()
        remote.monitored = False
    finally:
        remote.close()
    figures = {
        f"SIGKILL -> all {label_n(n)} nodedown DOWNs received, s": last - t0,
        "SIGKILL -> first monitors fired (detection), s": detected[0] - t0,
        "first fired -> last nodedown received, s": last - detected[0],
        "after first fired, ns/DOWN": (last - detected[0]) * 1e9 / n,
    }
    _missing(figures, impl, "nodedown DOWNs received", n, received, wrong)
    return figures


def measure_remote_memory(impl: str, n: int, watchers: int = WATCHERS,
                          settings: dict[str, Any] | None = None) -> dict[str, float]:
    """(e) Bytes per monitor (watching node) and per subscription (remote node) at ``n``.

    Two fresh subprocesses per measurement: the remote node (N processes, then its
    baseline), and the watching node (watchers and N pid objects, then its
    baseline); then N monitors, wait until all are subscribed, read both RSS.
    ``settings``: zenmon's, on both nodes (default :data:`FAST`).
    """
    if impl != "zenmon":
        node_settings = dict(NAIVE_PATIENT)
    else:
        node_settings = dict(FAST) if settings is None else dict(settings)
    target = Child(impl, node_settings)
    watcher: Child | None = None
    try:
        ids = target.call("spawn", n=n)["ids"]
        n = len(_unpack_ids(ids))
        k = max(1, n // watchers)
        if n % k:
            raise ValueError("n must be a multiple of watchers")
        watcher = Child(impl, node_settings)
        watcher.call("watch_prepare", address=target.address,
                     incarnation=target.incarnation, ids=ids, watchers=n // k)
        target_rss0 = target.call("rss")
        watcher_rss0 = watcher.call("rss")
        target.send("wait_subscribers", count=n, timeout=600)
        watcher.call("watch_monitor")
        got = target.reply(620)["count"]
        if got != n:
            raise ChildError(f"{impl}: only {got:,} of {n:,} subscribed")
        time.sleep(0.5)     # acks come back, send buffers are freed
        watcher_rss1 = watcher.call("rss")
        target_rss1 = target.call("rss")
    finally:
        if watcher is not None:
            watcher.close()
        target.close()
    return {
        "watching": (watcher_rss1 - watcher_rss0) / n,
        "remote": (target_rss1 - target_rss0) / n,
    }


def scenario_memory(ctx: Any, impl: str) -> dict[str, float]:
    """(e) RSS per remote monitor on both nodes, fresh subprocesses."""
    _drop_kept(ctx)
    _log(ctx, f"{impl}: memory at {ctx.n:,} remote monitors (2 fresh subprocesses)")
    result = measure_remote_memory(impl, ctx.n, settings=fast_settings(ctx)[0])
    n = label_n(ctx.n)
    return {
        f"watching node @{n}, B/monitor": result["watching"],
        f"remote node @{n}, B/subscription": result["remote"],
    }


@dataclass
class StormResult:
    storm_s: float                  # kill command -> last DOWN received
    waits_ms: list[float]           # waits of work messages sent during the storm
    received: int
    expected: int


def _work_sender(watcher: Any, stop: threading.Event,
                 period: float = WORK_PERIOD) -> threading.Thread:
    """A (not yet started) thread putting ``("work", time.monotonic())`` in
    ``watcher``'s inbox every ``period`` seconds until ``stop`` is set."""
    clock = time.monotonic

    def sender() -> None:
        send = watcher.send
        while not stop.is_set():
            send(("work", clock()))
            time.sleep(period)

    return threading.Thread(target=sender, daemon=True, name="work sender")


def storm(impl: str, n: int = STORM_N, mode: str = "token_bucket",
          period: float = WORK_PERIOD, down_cost_us: float = 0.0,
          settings: NodeSettings | None = None) -> StormResult:
    """(f) One watcher, ``n`` remote monitors; all targets exit while work messages flow.

    ``down_cost_us``: CPU the watcher spends on each DOWN (a busy loop), 0 by default.
    ``settings``: zenmon's (watching node, remote node); default :func:`storm_settings`.
    """
    down_cost = down_cost_us / 1e6
    remote = _build(impl, n, storm_settings(None, mode) if settings is None else settings,
                    watchers=1)
    try:
        subscribe_all(remote, impl, timeout=120.0)
        watcher = remote.watchers[0]
        stop = threading.Event()
        clock = time.monotonic
        gc.collect()
        thread = _work_sender(watcher, stop, period)
        t0 = clock()
        thread.start()
        remote.child.send("exit_all", reason="killed")
        receive = watcher.receive
        waits: list[float] = []
        downs = 0
        last = t0
        try:
            while downs < n:
                message = receive(60.0)
                if type(message) is tuple:
                    waits.append(clock() - message[1])
                else:
                    downs += 1
                    if down_cost:    # the watcher's own handling of a DOWN
                        until = clock() + down_cost
                        while clock() < until:
                            pass
            last = clock()
        except TimeoutError:
            last = clock()
            _diagnose(remote, f"storm: {downs:,} of {n:,} DOWNs")
        stop.set()
        thread.join()
        try:   # work messages sent before the last DOWN but still queued behind it
            while True:
                message = receive(0.05)
                if type(message) is tuple and message[1] <= last:
                    waits.append(clock() - message[1])
        except TimeoutError:
            pass
        remote.child.reply(120)
    finally:
        remote.close()
    return StormResult(last - t0, [w * 1000 for w in waits], downs, n)


def _wait_figures(waits_ms: Sequence[float]) -> dict[str, float]:
    return {
        "work wait p50, ms": statistics.median(waits_ms) if waits_ms else float("nan"),
        "work wait p99, ms": percentile(waits_ms, 0.99),
        "work wait max, ms": max(waits_ms, default=float("nan")),
    }


def _storm_scenario(mode: str) -> Callable[[Any, str], dict[str, float]]:
    def scenario_storm(ctx: Any, impl: str) -> dict[str, float]:
        _drop_kept(ctx)
        n = _storm_n(ctx)
        side = f"{impl} ({mode})" if impl == "zenmon" else impl
        _log(ctx, f"{side}: {n:,}-DOWN storm on one watcher, a work message every 1 ms"
                  + (f", {DOWN_COST_US:g} µs of work per DOWN" if DOWN_COST_US else ""))
        result = storm(impl, n, mode, down_cost_us=DOWN_COST_US,
                       settings=storm_settings(ctx, mode))
        figures = {
            **_wait_figures(result.waits_ms),
            f"storm: kill -> last of {label_n(n)} DOWNs, s": result.storm_s,
        }
        _missing(figures, impl, "storm DOWNs received", result.expected, result.received)
        return figures

    scenario_storm.__name__ = f"scenario_storm_{mode}"
    scenario_storm.__doc__ = (f"(f) Work-message wait during a remote DOWN storm (default "
                              f"{STORM_N:,}); zenmon dispatch_mode={mode!r}, naive alongside.")
    return scenario_storm


@dataclass
class NodedownStormResult:
    first_s: float                  # SIGKILL -> first nodedown DOWN received
    span_s: float                   # first -> last nodedown DOWN received
    waits_ms: list[float]           # waits of work messages sent between those two
    received: int
    expected: int
    wrong: int


def nodedown_storm(impl: str, n: int = STORM_N, mode: str = "token_bucket",
                   period: float = WORK_PERIOD,
                   down_cost_us: float = 0.0,
                   settings: NodeSettings | None = None) -> NodedownStormResult:
    """(g) One watcher, ``n`` monitors on a remote node that is SIGKILLed while work
    messages flow: the watching node fires ``n`` ``nodedown`` DOWNs after its
    heartbeat timeout (100 ms / 500 ms). The watcher's receive loop runs in its own
    thread; a work message's wait counts when it was sent between the first and the
    last DOWN received. ``settings``: zenmon's (watching node, remote node); default
    :func:`nodedown_storm_settings`.
    """
    down_cost = down_cost_us / 1e6
    if settings is None:
        settings = nodedown_storm_settings(None, mode)
    remote = _build(impl, n, settings, watchers=1)
    try:
        subscribe_all(remote, impl, timeout=120.0)
        gc.collect()     # see scenario_sigkill: a long collection reads as a heartbeat loss
        if impl != "zenmon":
            remote.node.configure(**HEARTBEAT)   # from the patient setup to 100/500 ms
        time.sleep(0.5)
        live = _references(impl, remote.node)
        if live != n:
            raise ChildError(f"{impl}: {n - live:,} monitors fired before the SIGKILL "
                             "(a false nodedown)")
        watcher = remote.watchers[0]
        clock = time.monotonic
        stop = threading.Event()
        works: list[tuple[float, float]] = []     # (sent, received)
        # [downs, wrong reason, first DOWN, last DOWN]
        state: list[Any] = [0, 0, float("nan"), float("nan")]

        def receiver() -> None:
            receive = watcher.receive
            downs = wrong = 0
            try:
                while downs < n:
                    message = receive(30.0)
                    now = clock()
                    if type(message) is tuple:
                        works.append((message[1], now))
                        continue
                    if not downs:
                        state[2] = now
                    downs += 1
                    if message[2] != "nodedown":
                        wrong += 1
                    if down_cost:    # the watcher's own handling of a DOWN
                        until = now + down_cost
                        while clock() < until:
                            pass
                state[3] = clock()
            except TimeoutError:
                state[3] = clock()
            state[0], state[1] = downs, wrong

        sending = _work_sender(watcher, stop, period)
        receiving = threading.Thread(target=receiver, daemon=True, name="storm receiver")
        sending.start()
        receiving.start()
        time.sleep(0.1)      # work already flowing
        t0 = clock()
        remote.child.kill()
        receiving.join(300.0)
        stop.set()
        sending.join()
        if receiving.is_alive():
            raise ChildError(f"{impl}: the storm receiver did not finish")
        downs, wrong, first, last = state
        if downs != n:
            _diagnose(remote, f"nodedown storm: {downs:,} of {n:,} DOWNs")
        try:   # work messages sent before the last DOWN but still queued behind it
            while True:
                message = watcher.receive(0.05)
                if type(message) is tuple:
                    works.append((message[1], clock()))
        except TimeoutError:
            pass
        remote.monitored = False
    finally:
        remote.close()
    waits = [(got - sent) * 1000 for sent, got in works if first < sent < last]
    return NodedownStormResult(first - t0, last - first, waits, downs, n, wrong)


def _nodedown_storm_scenario(mode: str) -> Callable[[Any, str], dict[str, float]]:
    def scenario_nodedown_storm(ctx: Any, impl: str) -> dict[str, float]:
        _drop_kept(ctx)
        n = _storm_n(ctx)
        side = f"{impl} ({mode})" if impl == "zenmon" else impl
        _log(ctx, f"{side}: SIGKILL of a remote node with {n:,} monitors of one "
                  "watcher, a work message every 1 ms"
                  + (f", {DOWN_COST_US:g} µs of work per DOWN" if DOWN_COST_US else ""))
        result = nodedown_storm(impl, n, mode, down_cost_us=DOWN_COST_US,
                                settings=nodedown_storm_settings(ctx, mode))
        rate = result.received / result.span_s if result.span_s > 0 else float("nan")
        figures = {
            **_wait_figures(result.waits_ms),
            f"storm: first -> last of {label_n(n)} DOWNs, s": result.span_s,
            "storm drain rate, DOWNs/s": rate,
            "vs 10,000/s, x": rate / 10_000,
        }
        _missing(figures, impl, "nodedown storm DOWNs received", result.expected,
                 result.received, result.wrong)
        return figures

    scenario_nodedown_storm.__name__ = f"scenario_nodedown_storm_{mode}"
    scenario_nodedown_storm.__doc__ = (
        f"(g) Work-message wait during a nodedown storm (default {STORM_N:,} DOWNs, remote "
        f"node SIGKILLed); zenmon dispatch_mode={mode!r}, naive alongside.")
    return scenario_nodedown_storm


def _subscribe_setup(ctx: Any) -> Setup:
    watchers = max(1, min(WATCHERS, ctx.n))
    return _setup(fast_settings(ctx), ctx.n // watchers * watchers, watchers)


def _sigkill_setup(ctx: Any) -> Setup:
    watchers = max(1, min(WATCHERS, ctx.n))
    return _setup(sigkill_settings(ctx), ctx.n // watchers * watchers, watchers)


def _memory_setup(ctx: Any) -> Setup:
    watchers = max(1, min(WATCHERS, ctx.n))
    return _setup(fast_settings(ctx), ctx.n // watchers * watchers, watchers, os_processes=3)


def _storm_setup(settings: Callable[[Any, str], NodeSettings],
                 mode: str) -> Callable[[Any], Setup]:
    def setup(ctx: Any) -> Setup:
        return _setup(settings(ctx, mode), _storm_n(ctx), 1,
                      work_period_ms=WORK_PERIOD * 1000, down_cost_us=DOWN_COST_US)

    return setup


#: ``(name, fn, implementations, repeatable, setup)``: the arguments of
#: ``zenmon.tools.runner.Scenario``, in the order they must run ((b) consumes what
#: (a) set up).
SCENARIO_SPECS: list[tuple[str, Callable[[Any, str], dict[str, float]], tuple[str, ...], bool,
                           Callable[[Any], Setup]]] = [
    ("remote subscribe", scenario_subscribe, IMPLEMENTATIONS, True, _subscribe_setup),
    ("remote DOWN fan-out", scenario_fanout, IMPLEMENTATIONS, True, _subscribe_setup),
    ("remote node SIGKILL", scenario_sigkill, IMPLEMENTATIONS, True, _sigkill_setup),
    ("remote memory", scenario_memory, IMPLEMENTATIONS, False, _memory_setup),
    ("remote DOWN storm, token_bucket", _storm_scenario("token_bucket"), IMPLEMENTATIONS,
     True, _storm_setup(storm_settings, "token_bucket")),
    ("remote DOWN storm, adaptive", _storm_scenario("adaptive"), IMPLEMENTATIONS, True,
     _storm_setup(storm_settings, "adaptive")),
    ("remote nodedown storm, token_bucket", _nodedown_storm_scenario("token_bucket"),
     IMPLEMENTATIONS, True, _storm_setup(nodedown_storm_settings, "token_bucket")),
    ("remote nodedown storm, adaptive", _nodedown_storm_scenario("adaptive"),
     IMPLEMENTATIONS, True, _storm_setup(nodedown_storm_settings, "adaptive")),
]


# --------------------------------------------------------------------------
# Standalone runner
# --------------------------------------------------------------------------


@dataclass
class Context(RunContext):
    """What one remote run shares: its size and options (``storm_n``: DOWNs per storm)."""

    storm_n: int = STORM_N


def run(quick: bool = False, n: int | None = None, only: Sequence[str] | None = None,
        repeat: int = 1, verbose: bool = True, defaults: bool = False,
        storm_n: int = STORM_N) -> Report:
    """Run the remote scenarios for both implementations (``repeat`` times the
    repeatable ones). -> :class:`zenmon.tools.runner.Report`: each figure's median,
    worst and runs, and each scenario's settings record."""
    specs = [spec for spec in SCENARIO_SPECS
             if not only or any(word in spec[0] for word in only)]
    ctx = Context(n=n or (QUICK_N if quick else FULL_N), quick=quick, verbose=verbose,
                  defaults=defaults, storm_n=storm_n)
    try:
        return run_scenarios(ctx, [Scenario(*spec) for spec in specs], IMPLEMENTATIONS, repeat)
    finally:
        _drop_kept(ctx)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m zenmon.tools.bench_remote [--quick] [--json FILE]``; also ``--serve``."""
    parser = argparse.ArgumentParser(
        prog="python -m zenmon.tools.bench_remote",
        description="Remote-monitor figures of zenmon against a naive one-message-per-monitor "
                    "baseline over the same transport, measured in the same run. Lower is "
                    "better (rates: higher); ratio = naive / zenmon. With --repeat K each "
                    "figure is the median of K runs, next to the worst. Under each scenario "
                    "a 'settings:' line gives N and what its zenmon nodes were given that "
                    "differs from zenmon.Config's defaults; --json records them in full.")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_N:,} remote monitors instead of {FULL_N:,}")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    parser.add_argument("--n", type=int, default=None, help="remote monitors (overrides --quick)")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="run only scenarios whose name contains NAME (repeatable)")
    parser.add_argument("--repeat", type=int, default=1, metavar="K",
                        help="run each scenario but the memory one K times (alternating which "
                             "side goes first) and report each figure's median and worst of "
                             "the K runs (JSON: also every run's value); default 1")
    parser.add_argument("--defaults", action="store_true",
                        help="zenmon's nodes with the library's default settings (token "
                             "bucket at 10,000 DOWNs/s, 100 ms sweeps of 5000, 200/1000 ms "
                             "heartbeats) instead of the fast ones; the storms keep their "
                             "dispatch_mode. 1M then takes 20 s to subscribe and 100 s to "
                             "fan out")
    parser.add_argument("--storm-n", type=int, default=STORM_N, metavar="N",
                        help=f"DOWNs in each storm (default {STORM_N:,})")
    parser.add_argument("--down-cost-us", type=float, default=None, metavar="US",
                        help="CPU the storm's watcher spends on each DOWN, in microseconds "
                             "(default 0; also ZENMON_BENCH_DOWN_COST_US)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--impl", choices=IMPLEMENTATIONS, default="zenmon",
                        help=argparse.SUPPRESS)
    parser.add_argument("--settings", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args.impl, json.loads(args.settings))
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    global DOWN_COST_US
    if args.down_cost_us is not None:
        DOWN_COST_US = args.down_cost_us
    n = args.n or (QUICK_N if args.quick else FULL_N)
    load0 = load_average()
    started = time.perf_counter()
    report = run(args.quick, n, args.only, args.repeat, verbose=not args.quiet,
                 defaults=args.defaults, storm_n=args.storm_n)
    elapsed = time.perf_counter() - started
    load1 = load_average()
    runs = "one run" if args.repeat == 1 else f"median and worst of {args.repeat} runs"
    print(f"zenmon bench (remote): n={n:,}, storm={args.storm_n:,} (DOWN cost "
          f"{DOWN_COST_US:g} µs), {runs}, "
          f"lower is better, ratio = naive / zenmon (>1: zenmon better); {elapsed:.1f} s, "
          f"load average {load0:.2f} -> {load1:.2f} on {os.cpu_count()} CPUs")
    print(format_table(report.table, report.settings))
    if args.json:
        document = {
            "n": n, "quick": args.quick, "library_defaults": args.defaults,
            "storm": args.storm_n, "down_cost_us": DOWN_COST_US, "repeat": args.repeat,
            "aggregate": "median and worst of the runs; runs: every run's value",
            "elapsed_s": elapsed, "load_average": [load0, load1],
            "environment": environment(), "scenarios": report.scenarios(),
        }
        with open(args.json, "w") as out:
            json.dump(json_safe(document), out, indent=2)
            out.write("\n")
    return 1 if report.missing else 0


if __name__ == "__main__":
    sys.exit(main())

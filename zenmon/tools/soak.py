"""``zenmon soak``: exactly-once under churn, threads and node deaths, for N minutes.

Three node processes (real OS processes on free loopback ports, started and
killed by this command by their pids):

- the *watching* node ``W``: many threads (``sys.setswitchinterval(1e-4)`` to shake
  out races), each owning one watcher process (every other one in bulk mode),
  monitoring targets on all three nodes by pid and by name, demonitoring some with
  and some without ``flush`` while the storm comes in, some watchers exiting
  mid-storm; it keeps the exactly-once ledger;
- two *target* nodes ``T1`` and ``T2`` hosting the monitored processes, named and
  unnamed; every round they exit them all (the storm); every few rounds ``T2`` is
  SIGKILLed instead and restarted on the same port (a new incarnation: its
  monitors owe ``"nodedown"``).

The ledger: every monitor not demonitored yields exactly one DOWN (a reason the
round allows); none after ``demonitor(ref)`` returns (a DOWN may already be in the
inbox then, unless ``flush=True``, which removes it). Every 10 s the RSS and the
table sizes (``node.metrics()``) of every node are sampled. At the end it measures
the memory retained per unique name once the name's process is gone, on the
watching and the target node, and prints a summary: DOWNs owed, delivered, lost,
duplicates, late after demonitor/flush, wrong reasons, API errors, RSS slope per
node (MB/hour, least squares after the warm-up), table sizes at the end against
the baseline. Exit status 1 when anything was lost, duplicated, late, wrong or
raised, or a table did not return to its baseline; 0 otherwise. ``--json`` adds
the summary as one JSON line (for tests).

The nodes are ``python -m zenmon.tools.soak --child ROLE`` processes answering JSON
command lines (the command loop of :mod:`zenmon.tools.child`).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from typing import Any

import zenmon

#: Gauges that must be back at their baseline when every round's process is gone.
TABLE_GAUGES = (
    "zenmon.local.references.size", "zenmon.local.targets.size",
    "zenmon.local.processes.size", "zenmon.local.message_queue_len",
    "zenmon.local.connector.queue_len", "zenmon.local.dispatcher.queue_len",
    "zenmon.proxy.subscribers.size", "zenmon.proxy.batcher.queue_len",
)
SAMPLE_EVERY = 10.0          # seconds between RSS / table samples
ROUND_DEADLINE = 60.0        # seconds a round may take to deliver what it owes
NODE_SETTINGS: dict[str, Any] = {
    "connector_sweep_interval": 20, "batcher_sweep_interval": 20,
    "demand_interval": 20, "demand_amount": 2000,
    "heartbeat_interval": 200, "heartbeat_timeout": 1500, "connect_timeout": 1500,
}


# ===================================================================== the nodes


def _rss_bytes(pid: int | None = None) -> int:
    """Resident set size of process `pid` (this one by default), from /proc."""
    with open(f"/proc/{pid or 'self'}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class NodeServer:
    """The commands both soak nodes answer: liveness, metrics, collection, traced bytes."""

    node: zenmon.Node

    def do_ping(self) -> str:
        return "pong"

    def do_metrics(self) -> dict[str, int]:
        return self.node.metrics()

    def do_gc(self) -> int:
        return gc.collect()

    def do_traced(self, start: bool = False) -> int:
        """Bytes still allocated, seen by tracemalloc, from zenmon's library code (the
        soak's own ledger and threads left out: they would be noise), after a gc;
        `start` begins tracing (only allocations made after it are counted)."""
        import tracemalloc
        if start and not tracemalloc.is_tracing():
            tracemalloc.start()
        gc.collect()
        library = tracemalloc.take_snapshot().filter_traces([
            tracemalloc.Filter(True, "*/zenmon/*"),
            tracemalloc.Filter(False, "*/zenmon/tools/*")])
        return sum(stat.size for stat in library.statistics("filename"))


class TargetServer(NodeServer):
    """A target node: makes processes on command, exits them all on command."""

    def __init__(self, node: zenmon.Node) -> None:
        self.node = node
        self.processes: list[zenmon.Process] = []


    def do_spawn(self, n: int, names: list[str]) -> dict[str, Any]:
        """`n` unnamed processes and one per name. -> their pids (str) and the names."""
        made = [self.node.process() for _ in range(int(n))]
        named = [self.node.process(name=name) for name in names]
        self.processes.extend(made)
        self.processes.extend(named)
        return {"pids": [str(p.pid) for p in made], "names": list(names),
                "address": self.node.address}

    def do_exit_all(self, reason: Any = "killed") -> int:
        """Exit every process made so far with `reason` (lists become tuples). -> count."""
        if isinstance(reason, list):
            reason = tuple(reason)
        processes, self.processes = self.processes, []
        for process in processes:
            process.exit(reason)
        return len(processes)



class _Watch:
    """One watcher's ledger: its refs and what became of them."""

    __slots__ = ("process", "bulk", "expected", "owed", "outstanding", "received",
                 "flushed", "demonitored", "position", "exited")

    def __init__(self, process: zenmon.Process, bulk: bool) -> None:
        self.process = process
        self.bulk = bulk
        self.expected: dict[int, frozenset[Any]] = {}   # ref -> reasons allowed
        self.owed: set[int] = set()                     # refs that owe one DOWN
        self.outstanding: set[int] = set()              # owed, not received yet
        self.received: dict[int, int] = {}              # ref -> DOWNs received
        self.flushed: set[int] = set()                  # demonitored with flush
        self.demonitored: dict[int, int] = {}           # ref -> last allowed position
        self.position = 0                               # messages received so far
        self.exited = False


class WatcherServer(NodeServer):
    """The watching node: runs rounds on many threads and keeps the ledger."""

    def __init__(self, node: zenmon.Node, threads: int, seed: int) -> None:
        self.node = node
        self.threads = threads
        self.random = random.Random(seed)
        self.totals = {"owed": 0, "delivered": 0, "lost": 0, "duplicates": 0,
                       "late_after_flush": 0, "late_after_demonitor": 0,
                       "wrong_reason": 0, "errors": 0, "monitors": 0,
                       "demonitors": 0, "flushes": 0, "watcher_exits": 0,
                       "rounds": 0}
        self.examples: list[str] = []
        self.round: dict[str, Any] | None = None
        self._lock = threading.Lock()



    def do_totals(self) -> dict[str, Any]:
        return {"totals": self.totals, "examples": self.examples[:20]}

    # ------------------------------------------------------------ a round

    def do_start_round(self, targets: list[dict[str, Any]], local: int,
                       per_watcher: int, kill: bool) -> int:
        """Set up this round's monitors on every thread; return once all are armed.

        `targets`: one entry per target node: {"pids": [...], "names": [...],
        "address": ...}; with `kill`, the last target node will be SIGKILLed (its
        monitors may fire ``nodedown``). `local` local targets are made here too.
        The storm (demonitors, watcher exits, local exits, receiving) runs on after
        this returns; ``round_status`` tells when it is over. -> monitors made.
        """
        if self.round is not None and not self.round["done"].is_set():
            raise RuntimeError("a round is running")
        rng = random.Random(self.random.random())
        remote_reasons = frozenset({"killed", "noproc"})
        down = frozenset({"killed", "noproc", "nodedown"})
        choices: list[tuple[Any, frozenset[Any]]] = []
        for i, target in enumerate(targets):
            reasons = down if kill and i == len(targets) - 1 else remote_reasons
            choices += [(zenmon.Pid.parse(t), reasons) for t in target["pids"]]
            choices += [((name, target["address"]), reasons) for name in target["names"]]
        local_targets = [self.node.process(name=f"local.{self.totals['rounds']}.{i}")
                         if i % 4 == 0 else self.node.process() for i in range(local)]
        local_reasons = frozenset({"normal", "noproc"})
        choices += [(p.pid, local_reasons) for p in local_targets]
        choices += [(p.name, local_reasons) for p in local_targets if p.name]
        armed = threading.Barrier(self.threads + 1)
        state: dict[str, Any] = {"done": threading.Event(), "armed": armed,
                                 "local_targets": local_targets, "watches": [],
                                 "started": time.monotonic(), "made": 0}
        self.round = state
        workers = []
        for t in range(self.threads):
            plan = [rng.choice(choices) for _ in range(per_watcher)]
            worker = threading.Thread(target=self._worker, name=f"soak-worker-{t}",
                                      args=(state, plan, t % 2 == 1,
                                            random.Random(rng.random())), daemon=True)
            workers.append(worker)
            worker.start()
        try:
            armed.wait(ROUND_DEADLINE)
        except threading.BrokenBarrierError:   # a worker failed: counted in errors
            pass
        state["workers"] = workers
        threading.Thread(target=self._finish, args=(state,), daemon=True).start()
        return int(state["made"])

    def do_exit_local(self) -> int:
        """The storm on this node: exit this round's local targets (from a thread)."""
        assert self.round is not None
        local_targets = self.round["local_targets"]

        def exit_all() -> None:
            for process in local_targets:
                process.exit("normal")

        threading.Thread(target=exit_all, daemon=True).start()
        return len(local_targets)

    def do_round_status(self) -> dict[str, Any]:
        """{"done": bool, "result": counts of the round once done}."""
        state = self.round
        if state is None:
            return {"done": True, "result": None}
        done = state["done"].is_set()
        return {"done": done, "result": state.get("result") if done else None}

    def _error(self, text: str) -> None:
        with self._lock:
            self.totals["errors"] += 1
            if len(self.examples) < 50:
                self.examples.append(text)

    def _worker(self, state: dict[str, Any], plan: list[tuple[Any, frozenset[Any]]],
                bulk: bool, rng: random.Random) -> None:
        try:
            process = self.node.process()
            if bulk:
                process.set_bulk(True)
            watch = _Watch(process, bulk)
            with self._lock:
                state["watches"].append(watch)
            monitor = watch.process.monitor
            for target, reasons in plan:
                ref = monitor(target)
                watch.expected[ref] = reasons
                watch.owed.add(ref)
                watch.outstanding.add(ref)
            with self._lock:
                state["made"] += len(plan)
        except Exception:
            self._error(traceback.format_exc())
            state["armed"].abort()
            return
        try:
            state["armed"].wait(ROUND_DEADLINE)
        except threading.BrokenBarrierError:
            return
        try:
            self._storm(watch, rng, state)
        except Exception:
            self._error(traceback.format_exc())

    def _storm(self, watch: _Watch, rng: random.Random, state: dict[str, Any]) -> None:
        """Receive while demonitoring a part of the refs; maybe exit mid-storm."""
        process = watch.process
        refs = list(watch.owed)
        rng.shuffle(refs)
        cancel = refs[:len(refs) // 4]
        exit_after = rng.randrange(len(cancel) + 1) if rng.random() < 0.15 else -1
        deadline = state["started"] + ROUND_DEADLINE
        i = 0
        while time.monotonic() < deadline:
            if i < len(cancel):
                if i == exit_after:
                    process.exit("normal")
                    watch.exited = True
                    watch.owed.clear()
                    watch.outstanding.clear()
                    with self._lock:
                        self.totals["watcher_exits"] += 1
                ref = cancel[i]
                i += 1
                if not watch.exited:
                    flush = rng.random() < 0.5
                    process.demonitor(ref, flush=flush)
                    watch.owed.discard(ref)
                    watch.outstanding.discard(ref)
                    if flush:
                        watch.flushed.add(ref)
                    else:
                        # DOWNs already in the inbox may come; none appended after now
                        watch.demonitored[ref] = watch.position + len(process._messages)
                    with self._lock:
                        self.totals["demonitors"] += 1
                        self.totals["flushes"] += flush
            elif not watch.outstanding or watch.exited:
                break
            try:
                message = process.receive(timeout=0.0 if i < len(cancel) else 0.2)
            except (TimeoutError, zenmon.ProcessExited):
                continue
            self._account(watch, message)
        if not watch.exited:
            process.exit("normal")
        # what is left in the inbox counts too (a dead process's inbox can be read)
        while True:
            try:
                message = process.receive(timeout=0.0)
            except (TimeoutError, zenmon.ProcessExited):
                break
            self._account(watch, message)

    def _account(self, watch: _Watch, message: Any) -> None:
        watch.position += 1
        downs = message.downs if isinstance(message, zenmon.DownBatch) else (message,)
        for down in downs:
            if not isinstance(down, zenmon.Down):
                self._error(f"not a DOWN in a watcher's inbox: {down!r:.200}")
                continue
            ref = down.ref
            watch.outstanding.discard(ref)
            count = watch.received.get(ref, 0) + 1
            watch.received[ref] = count
            reasons = watch.expected.get(ref)
            if reasons is None:
                self._error(f"DOWN for a ref never made here: {down!r:.200}")
            elif down.reason not in reasons:
                with self._lock:
                    self.totals["wrong_reason"] += 1
                    if len(self.examples) < 50:
                        self.examples.append(f"wrong reason: {down!r:.200}")
            if count > 1:
                with self._lock:
                    self.totals["duplicates"] += 1
                    if len(self.examples) < 50:
                        self.examples.append(f"duplicate: {down!r:.200}")
            if ref in watch.flushed:
                with self._lock:
                    self.totals["late_after_flush"] += 1
                    if len(self.examples) < 50:
                        self.examples.append(f"after flush: {down!r:.200}")
            limit = watch.demonitored.get(ref)
            if limit is not None and watch.position > limit:
                with self._lock:
                    self.totals["late_after_demonitor"] += 1
                    if len(self.examples) < 50:
                        self.examples.append(f"after demonitor: {down!r:.200}")

    def _finish(self, state: dict[str, Any]) -> None:
        for worker in state["workers"]:
            worker.join(ROUND_DEADLINE + 30)
        result = {"owed": 0, "delivered": 0, "lost": 0}
        for watch in state["watches"]:
            owed = watch.owed if not watch.exited else set()
            delivered = sum(1 for ref in owed if watch.received.get(ref))
            result["owed"] += len(owed)
            result["delivered"] += delivered
            result["lost"] += len(owed) - delivered
            if len(owed) > delivered:
                missing = sorted(ref for ref in owed if not watch.received.get(ref))[:5]
                self._error(f"lost: watcher {watch.process.pid} bulk={watch.bulk}: "
                            f"{len(owed) - delivered} DOWNs, refs {missing}...")
        with self._lock:
            for key, value in result.items():
                self.totals[key] += value
            self.totals["monitors"] += state["made"]
            self.totals["rounds"] += 1
        state["result"] = result
        state["watches"] = []
        state["local_targets"] = []
        state["done"].set()

    # ------------------------------------------------------------ names

    def do_watch_names(self, names: list[str], address: str) -> int:
        """One watcher monitors each name at `address`. -> monitors made."""
        watcher = self.node.process()
        self._names_watcher = watcher
        for name in names:
            watcher.monitor((name, address))
        return len(names)

    def do_names_received(self, count: int, timeout: float = 120.0) -> int:
        """Receive DOWNs until `count` have come or `timeout`; then exit the watcher."""
        watcher = self._names_watcher
        got = 0
        deadline = time.monotonic() + timeout
        while got < count and time.monotonic() < deadline:
            try:
                message = watcher.receive(timeout=0.5)
            except TimeoutError:
                continue
            got += len(message.downs) if isinstance(message, zenmon.DownBatch) else 1
        watcher.exit("normal")
        gc.collect()
        return got


def child_main(role: str, port: int, settings: dict[str, Any], threads: int,
               seed: int) -> int:
    """Run one soak node (`role`: "watcher" or "target") until stdin ends."""
    from .child import die_with_parent, serve_commands

    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    node = zenmon.Node(listen=f"tcp://127.0.0.1:{port}", **settings)
    node.start()
    server: Any
    if role == "watcher":
        sys.setswitchinterval(1e-4)
        server = WatcherServer(node, threads, seed)
    else:
        server = TargetServer(node)
    return serve_commands(node, server, {"address": node.address,
                                         "incarnation": node.incarnation,
                                         "pid": os.getpid()})


# ================================================================ orchestrator


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Child:
    """One soak node process, driven over its stdin/stdout (a lock per command)."""

    def __init__(self, role: str, port: int, threads: int = 0, seed: int = 0) -> None:
        self.role = role
        self.port = port
        self._lock = threading.Lock()
        argv = [sys.executable, "-m", "zenmon.tools.soak", "--child", role,
                "--port", str(port), "--threads", str(threads), "--seed", str(seed),
                "--settings", json.dumps(NODE_SETTINGS)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"soak {role} node did not start (exit {self.proc.wait()})")
        info = json.loads(line)
        self.address: str = info["address"]
        self.incarnation: int = info["incarnation"]
        self.pid: int = info["pid"]

    def call(self, cmd: str, **args: Any) -> Any:
        """Run one command on the node. -> its result; raises on an error answer."""
        with self._lock:
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.proc.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"soak {self.role} node {self.pid} went away during {cmd}")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"{self.role} {cmd}: {answer['error']}")
        return answer["ok"]

    def rss(self) -> int | None:
        try:
            return _rss_bytes(self.pid)
        except OSError:
            return None

    def kill(self) -> None:
        """SIGKILL the node process (by its pid) and reap it."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:      # a command still buffered for the dead node
                    pass

    def stop(self) -> None:
        """Ask the node to stop; kill it if it does not."""
        if self.proc.poll() is None:
            try:
                self.call("stop")
                self.proc.wait(10)
            except Exception:
                pass
        self.kill()


def slope_mb_per_hour(samples: list[tuple[float, int]]) -> float | None:
    """Least-squares slope of (seconds, bytes) samples, in MB per hour."""
    if len(samples) < 3:
        return None
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_v = sum(v for _, v in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    if var == 0:
        return None
    cov = sum((t - mean_t) * (v - mean_v) for t, v in samples)
    return cov / var * 3600 / 1e6


class Sampler:
    """Samples RSS and table sizes of every node every SAMPLE_EVERY seconds."""

    def __init__(self, nodes: dict[str, Child], start: float) -> None:
        self.nodes = nodes
        self.start = start
        # name -> list of (incarnation, seconds since start, rss bytes, tables)
        self.samples: dict[str, list[tuple[int, float, int, dict[str, int]]]] = {
            name: [] for name in nodes}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)

    def begin(self) -> None:
        self._thread.start()

    def end(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def sample_once(self) -> None:
        for name, child in list(self.nodes.items()):
            try:
                metrics = child.call("metrics")
                rss = child.rss()
            except Exception:   # a node being killed and restarted: skip it this time
                continue
            if rss is None:
                continue
            tables = {k: metrics.get(k, 0) for k in TABLE_GAUGES}
            self.samples[name].append((child.incarnation, time.monotonic() - self.start,
                                       rss, tables))

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY):
            self.sample_once()

    def slopes(self, warmup: float) -> dict[str, float | None]:
        """RSS slope per node, MB/hour, over samples after `warmup` seconds (a float
        below 1: that fraction of the run instead); for a node that was restarted, the
        mean of its incarnations' slopes (each after its own warm-up), over those with
        enough samples."""
        out: dict[str, float | None] = {}
        for name, samples in self.samples.items():
            by_incarnation: dict[int, list[tuple[float, int]]] = {}
            for incarnation, t, rss, _ in samples:
                by_incarnation.setdefault(incarnation, []).append((t, rss))
            slopes = []
            for series in by_incarnation.values():
                if warmup < 1:
                    begin = series[0][0] + warmup * (series[-1][0] - series[0][0])
                else:
                    begin = series[0][0] + (warmup if len(by_incarnation) == 1 else
                                            min(warmup, SAMPLE_EVERY * 2))
                kept = [(t, v) for t, v in series if t >= begin]
                value = slope_mb_per_hour(kept)
                if value is not None:
                    slopes.append(value)
            out[name] = sum(slopes) / len(slopes) if slopes else None
        return out


def _round(nodes: dict[str, Child], round_no: int, args: argparse.Namespace,
           kill: bool, rng: random.Random) -> dict[str, Any]:
    watcher, t1, t2 = nodes["W"], nodes["T1"], nodes["T2"]
    targets = []
    for name, child in (("T1", t1), ("T2", t2)):
        names = [f"{name}.{round_no}.{i}" for i in range(args.named)]
        targets.append(child.call("spawn", n=args.targets, names=names))
    made = watcher.call("start_round", targets=targets, local=args.local,
                        per_watcher=args.per_watcher, kill=kill)
    watcher.call("exit_local")
    t1.call("exit_all", reason="killed")
    if kill:
        t2.kill()
    else:
        t2.call("exit_all", reason="killed")
    deadline = time.monotonic() + ROUND_DEADLINE + 60
    while True:
        status = watcher.call("round_status")
        if status["done"] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if kill:
        nodes["T2"] = Child("target", t2.port)
    result = status.get("result") or {"owed": 0, "delivered": 0, "lost": 0}
    result["monitors"] = made
    return result


def _wait_tables(nodes: dict[str, Child], baseline: dict[str, dict[str, int]],
                 timeout: float) -> dict[str, dict[str, int]]:
    """Poll until every node's tables are back at baseline (or timeout). -> last read."""
    deadline = time.monotonic() + timeout
    while True:
        now = {name: {k: child.call("metrics").get(k, 0) for k in TABLE_GAUGES}
               for name, child in nodes.items()}
        if all(now[name] == baseline[name] for name in nodes) or time.monotonic() > deadline:
            return now
        time.sleep(0.2)


def _names_memory(nodes: dict[str, Child], count: int) -> tuple[dict[str, float],
                                                                 dict[str, float]]:
    """Bytes each node keeps per unique name monitored, fired and gone -> (by RSS, by
    tracemalloc). RSS moves with the allocators' own bookkeeping (arenas, free lists,
    fragmentation), so its per-name figure is noisy at this count; the traced figure
    counts the Python and core memory still allocated, which a leak would grow."""
    watcher, target = nodes["W"], nodes["T1"]
    out: dict[str, float] = {}
    traced: dict[str, float] = {}
    for child in (watcher, target):
        child.call("traced", start=True)
    # two warm-ups: queues and tables reach their high-water marks before measuring
    for phase in ("warmup", "warmup2", "measured"):
        names = [f"mem.{phase}.{i}" for i in range(count)]
        for child in (watcher, target):
            child.call("gc")
        before = {"W": watcher.rss() or 0, "T1": target.rss() or 0}
        traced_before = {"W": watcher.call("traced"), "T1": target.call("traced")}
        target.call("spawn", n=0, names=names)
        watcher.call("watch_names", names=names, address=target.address)
        target.call("exit_all", reason="killed")
        got = watcher.call("names_received", count=count)
        if got != count:
            raise RuntimeError(f"names phase: {got} of {count} DOWNs")
        target.call("gc")
        after = {"W": watcher.rss() or 0, "T1": target.rss() or 0}
        traced_after = {"W": watcher.call("traced"), "T1": target.call("traced")}
        if phase == "measured":
            out = {name: (after[name] - before[name]) / count for name in before}
            traced = {name: (traced_after[name] - traced_before[name]) / count
                      for name in before}
    return out, traced


def main(argv: Sequence[str] | None = None) -> int:
    """``zenmon soak`` entry point. -> exit code (0: exactly once, tables back)."""
    parser = argparse.ArgumentParser(
        prog="zenmon soak", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=2.0, help="how long to churn")
    parser.add_argument("--threads", type=int, default=24,
                        help="watcher threads on the watching node (one watcher each)")
    parser.add_argument("--per-watcher", type=int, default=400,
                        help="monitors each watcher makes per round")
    parser.add_argument("--targets", type=int, default=1500,
                        help="unnamed processes per target node per round")
    parser.add_argument("--named", type=int, default=100,
                        help="named processes per target node per round")
    parser.add_argument("--local", type=int, default=300,
                        help="local targets on the watching node per round")
    parser.add_argument("--kill-every", type=int, default=5,
                        help="SIGKILL and restart T2 every N rounds (0: never)")
    parser.add_argument("--names", type=int, default=20000,
                        help="unique names for the memory-per-name measurement (0: skip)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--json", action="store_true",
                        help="also print the summary as one JSON line")
    parser.add_argument("--child", choices=("watcher", "target"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--settings", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    if args.child:
        return child_main(args.child, args.port, json.loads(args.settings), args.threads,
                          seed)
    return _orchestrate(args, seed)


def _orchestrate(args: argparse.Namespace, seed: int) -> int:
    rng = random.Random(seed)
    out = sys.stdout
    start = time.monotonic()
    budget = args.minutes * 60
    nodes: dict[str, Child] = {}
    try:
        nodes["W"] = Child("watcher", _free_port(), threads=args.threads, seed=seed)
        nodes["T1"] = Child("target", _free_port())
        nodes["T2"] = Child("target", _free_port())
        baseline = {name: {k: child.call("metrics").get(k, 0) for k in TABLE_GAUGES}
                    for name, child in nodes.items()}
        print(f"zenmon soak: {args.minutes:g} min, seed {seed}, W={nodes['W'].address} "
              f"T1={nodes['T1'].address} T2={nodes['T2'].address}", file=out, flush=True)
        sampler = Sampler(nodes, start)
        sampler.sample_once()
        sampler.begin()
        round_no = 0
        kills = 0
        # leave time for the names phase and the settle at the end
        while time.monotonic() - start < budget:
            round_no += 1
            kill = bool(args.kill_every) and round_no % args.kill_every == 0
            kills += kill
            result = _round(nodes, round_no, args, kill, rng)
            print(f"  round {round_no:4d} {'kill T2 ' if kill else ''}"
                  f"monitors {result['monitors']:6d} owed {result['owed']:6d} "
                  f"delivered {result['delivered']:6d} lost {result['lost']}  "
                  f"[{time.monotonic() - start:6.0f} s]", file=out, flush=True)
        sampler.end()
        sampler.sample_once()
        baseline["T2"] = {k: nodes["T2"].call("metrics").get(k, 0) for k in TABLE_GAUGES}
        tables = _wait_tables(nodes, baseline, 60.0)
        names_memory, names_traced = (_names_memory(nodes, args.names) if args.names
                                      else ({}, {}))
        totals = nodes["W"].call("totals")
        warmup = min(120.0, budget / 4)
        summary = {
            "seed": seed, "minutes": round((time.monotonic() - start) / 60, 2),
            "rounds": round_no, "kills": kills, **totals["totals"],
            "rss_slope_mb_per_hour": sampler.slopes(warmup),
            # a leak keeps its slope; allocator warm-up (fragmentation) flattens out
            "rss_slope_mb_per_hour_last_half": sampler.slopes(0.5),
            "rss_mb_series_w": [(round(t), round(rss / 1e6, 1))
                                for _, t, rss, _ in sampler.samples["W"]],
            "rss_mb_end": {name: round((child.rss() or 0) / 1e6, 1)
                           for name, child in nodes.items()},
            "samples": {name: len(s) for name, s in sampler.samples.items()},
            "tables_baseline": baseline, "tables_end": tables,
            "tables_ok": all(tables[n] == baseline[n] for n in nodes),
            "bytes_per_name": names_memory, "traced_bytes_per_name": names_traced,
            "examples": totals["examples"],
        }
    finally:
        for child in nodes.values():
            child.stop()
    bad = (summary["lost"] or summary["duplicates"] or summary["late_after_flush"]
           or summary["late_after_demonitor"] or summary["wrong_reason"]
           or summary["errors"] or not summary["tables_ok"])
    _print_summary(summary, out)
    print("RESULT: " + ("FAIL" if bad else "OK"), file=out, flush=True)
    if args.json:
        print(json.dumps(summary), file=out, flush=True)
    return 1 if bad else 0


def _print_summary(s: dict[str, Any], out: Any) -> None:
    def mb(value: float | None) -> str:
        return "n/a" if value is None else f"{value:+.1f}"

    print(f"\nsoak summary ({s['minutes']} min, {s['rounds']} rounds, {s['kills']} SIGKILLs "
          f"of T2, seed {s['seed']})", file=out)
    print(f"  monitors {s['monitors']}, demonitors {s['demonitors']} "
          f"({s['flushes']} with flush), watcher exits mid-storm {s['watcher_exits']}",
          file=out)
    print(f"  DOWNs owed {s['owed']}, delivered {s['delivered']}, lost {s['lost']}, "
          f"duplicates {s['duplicates']}, late after flush {s['late_after_flush']}, "
          f"late after demonitor {s['late_after_demonitor']}, wrong reason "
          f"{s['wrong_reason']}, errors {s['errors']}", file=out)
    print("  RSS slope (MB/hour, after warm-up): " + ", ".join(
        f"{n} {mb(v)}" for n, v in s["rss_slope_mb_per_hour"].items())
        + "; over the last half: " + ", ".join(
        f"{n} {mb(v)}" for n, v in s["rss_slope_mb_per_hour_last_half"].items())
        + "; RSS at end (MB): " + ", ".join(
        f"{n} {v}" for n, v in s["rss_mb_end"].items()), file=out)
    for name, end in s["tables_end"].items():
        base = s["tables_baseline"][name]
        diff = {k.split(".", 2)[2]: (base[k], v) for k, v in end.items() if v != base[k]}
        print(f"  tables {name}: " + ("back to baseline" if not diff else
                                      f"NOT back to baseline (baseline, end): {diff}"),
              file=out)
    if s["bytes_per_name"]:
        print("  memory kept per unique name once its process is gone: traced "
              + ", ".join(f"{n} {v:.1f} B" for n, v in s["traced_bytes_per_name"].items())
              + "; by RSS (allocator noise) " + ", ".join(
                  f"{n} {v:.0f} B" for n, v in s["bytes_per_name"].items()), file=out)
    for example in s["examples"][:10]:
        print("  example: " + example.strip().replace("\n", "\n    "), file=out)
    out.flush()


if __name__ == "__main__":
    sys.exit(main())

"""``zenmon demo``: the talk's chat scenario, for real, on this machine.

A *guilds* node (this process) and two or more *sessions* nodes (each its own OS
process, :mod:`zenmon.tools.demo_node`, on 127.0.0.1). Sessions nodes host session
processes; every session is a member of a few random guilds plus one big *lobby*
guild that has every session as a member. Guild processes monitor their members'
sessions and sessions monitor their guilds. Then one sessions node is killed with
SIGKILL: the guilds node detects it (heartbeat timeout) and every monitor on its
sessions fires ``nodedown``; one death fans out to several DOWNs.

The guilds are asyncio tasks on one event loop in this process, as in a Python
service. While the DOWNs are delivered, a sender thread puts a *work* message in
the lobby guild's inbox every couple of milliseconds, stamped with the time it
was due; the lobby measures how long each one waited. DOWNs and work share the
inbox, so the wait shows how the DOWN stream interlaces with real work. Every DOWN
also costs the guild that receives it a little simulated CPU work
(``--down-cost``, default 20 us), as a guild removing a member and telling the
others would.

``--compare`` (and ``--plot FILE.png``) runs the same scenario a second time with
``dispatch_mode="unlimited"``: zenmon with the throttle lifted (batching,
truncation and one-monitor-per-target still apply), as the unthrottled baseline.
It is not Erlang's plain monitors; it shows what the token bucket buys.

The exit code is 0 if and only if, in every run, each expected DOWN arrived
exactly once (and no other DOWN arrived). Every process the demo starts is killed
(SIGKILL) and reaped before it exits, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import json
import os
import random
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import zenmon
from zenmon.tools.child import Child, ChildError

__all__ = ["DemoOptions", "RunResult", "main", "run_demo"]

HEARTBEAT_INTERVAL = 100    # ms: the guilds node notices the kill within ~0.5 s
HEARTBEAT_TIMEOUT = 500
SETUP_TIMEOUT = 120.0       # s: sessions, monitors and subscriptions in place
CALL_TIMEOUT = 60.0         # s: one command to a sessions node
WORK_WARMUP = 1.0           # s of work messages before the kill (the calm baseline)
GRACE = 0.5                 # s to wait after the last expected DOWN for strays
SAMPLE_EVERY = 0.1          # s between progress samples


class Interrupted(Exception):
    """SIGTERM/SIGHUP while the demo runs (Ctrl-C raises KeyboardInterrupt)."""


# --------------------------------------------------------------------------
# Child processes: started, recorded, and always killed
# --------------------------------------------------------------------------


class Children:
    """Every subprocess the demo started: only these are ever killed."""

    def __init__(self) -> None:
        self.started: list[Child] = []

    def start(self, settings: dict[str, Any]) -> Child:
        """Start one sessions node (a subprocess of this process) and record it.

        Its start-up line is not awaited here: call ``hello()`` on it, so that
        several children start at once."""
        # Ctrl-C between fork and bookkeeping must not leave an unrecorded child.
        with _guard.critical():
            child = Child("zenmon.tools.demo_node", ["--settings", json.dumps(settings)],
                          name="sessions node", start_timeout=CALL_TIMEOUT,
                          call_timeout=CALL_TIMEOUT, hello=False,
                          new_session=True)   # the terminal's Ctrl-C is for us, not them
            self.started.append(child)
        return child

    @property
    def pids(self) -> list[int]:
        return [child.pid for child in self.started]

    def kill(self, child: Child) -> None:
        """SIGKILL `child` (if still running) and reap it."""
        child.close()

    def kill_all(self) -> None:
        for child in self.started:
            child.signal(signal.SIGKILL)
        for child in self.started:
            self.kill(child)

    def still_running(self) -> list[int]:
        """Pids of started children that still exist (none, after kill_all)."""
        return [child.pid for child in self.started if child.popen.returncode is None]


class _SignalGuard:
    """Ctrl-C, SIGTERM and SIGHUP as exceptions, held back inside critical sections.

    Python runs signal handlers in the main thread between bytecodes, so an
    interrupt could land between starting a child and recording it, or in the middle
    of killing the children. Inside ``critical()`` the interrupt is remembered and
    raised when the section ends (or dropped, for the final cleanup).
    """

    def __init__(self) -> None:
        self.depth = 0
        self.pending: BaseException | None = None
        self.previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return   # signals are the main thread's business; nothing to guard
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            signum = getattr(signal, name, None)
            if signum is not None:
                self.previous[signum] = signal.signal(signum, self._handler)

    def uninstall(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous.clear()

    def _handler(self, signum: int, frame: Any) -> None:
        exc: BaseException = (KeyboardInterrupt() if signum == signal.SIGINT
                              else Interrupted(signal.Signals(signum).name))
        if self.depth:
            if self.pending is None:
                self.pending = exc
            return
        raise exc

    @contextlib.contextmanager
    def critical(self, reraise: bool = True) -> Iterator[None]:
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if not self.depth and self.pending is not None:
                exc, self.pending = self.pending, None
                if reraise:
                    raise exc


_guard = _SignalGuard()


# --------------------------------------------------------------------------
# Output: a progress bar on a terminal, plain periodic lines otherwise
# --------------------------------------------------------------------------


class Output:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._bar_shown = False
        self._last_plain = 0.0

    def line(self, text: str = "") -> None:
        if self._bar_shown:
            self.stream.write("\n")
            self._bar_shown = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def bar(self, text: str, force: bool = False) -> None:
        if self.tty:
            width = shutil.get_terminal_size((100, 24)).columns
            self.stream.write("\r" + text[:max(20, width - 1)] + "\x1b[K")
            self.stream.flush()
            self._bar_shown = True
        else:
            now = time.monotonic()
            if force or now - self._last_plain >= 1.0:
                self._last_plain = now
                self.stream.write(text + "\n")
                self.stream.flush()

    def end_bar(self) -> None:
        if self._bar_shown:
            self.stream.write("\n")
            self.stream.flush()
            self._bar_shown = False


# --------------------------------------------------------------------------
# The guild side: guild processes as asyncio tasks, a work sender, the tally
# --------------------------------------------------------------------------


class Tally:
    """What the guilds received. Written only by the guilds' event-loop thread."""

    def __init__(self, expected_refs: set[int]) -> None:
        self.pending = expected_refs
        self.expected = len(expected_refs)
        self.done: set[int] = set()
        self.delivered = 0
        self.duplicates = 0
        self.unexpected = 0
        self.wrong_reason = 0
        self.first: float | None = None
        self.last: float | None = None
        self.work: list[tuple[float, float]] = []   # (due at, waited s)
        self.last_due = 0.0                          # due time of the last work taken

    def on_down(self, down: zenmon.Down, now: float) -> None:
        ref = down.ref
        if ref in self.pending:
            self.pending.discard(ref)
            self.done.add(ref)
            self.delivered += 1
            if self.first is None:
                self.first = now
            if not self.pending:
                self.last = now
        elif ref in self.done:
            self.duplicates += 1
        else:
            self.unexpected += 1
        if down.reason != "nodedown":
            self.wrong_reason += 1


def _burn(seconds: float) -> None:
    """Simulated CPU work of handling one DOWN (holds the GIL, as real work would)."""
    if seconds <= 0:
        return
    clock = time.perf_counter
    end = clock() + seconds
    while clock() < end:
        pass


class GuildSide:
    """Runs every guild process as a task on one event loop in its own thread."""

    def __init__(self, guilds: list[zenmon.Process], lobby: zenmon.Process, tally: Tally,
                 down_cost: float) -> None:
        self.guilds = guilds
        self.lobby = lobby
        self.tally = tally
        self.down_cost = down_cost
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zenmon-demo guilds",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        tasks = [asyncio.create_task(self._guild(p)) for p in self.guilds]
        tasks.append(asyncio.create_task(self._guild(self.lobby, lobby=True)))
        self._ready.set()
        await self._stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _guild(self, process: zenmon.Process, lobby: bool = False) -> None:
        tally = self.tally
        cost = self.down_cost
        clock = time.monotonic
        down_type = zenmon.Down
        batch_type = zenmon.DownBatch
        work = tally.work
        while True:
            message = await process.areceive()
            if type(message) is down_type:
                tally.on_down(message, clock())
                _burn(cost)
            elif type(message) is batch_type:     # a process in bulk mode (not by default)
                for down in message.downs:
                    tally.on_down(down, clock())
                    _burn(cost)
            elif lobby and type(message) is tuple and message[0] == "work":
                due = message[1]
                work.append((due, clock() - due))
                tally.last_due = due


class WorkSender:
    """Puts ``("work", due)`` in the lobby's inbox, one due every `interval` seconds.

    Each message carries the time it was *due*, not the time this thread got round
    to sending it: when the process is too busy to run this thread on time, the
    late messages go out at once, stamped with when they should have arrived (as
    requests queued in a socket would), so their wait counts the whole delay.
    """

    def __init__(self, lobby: zenmon.Process, interval: float) -> None:
        self.lobby = lobby
        self.interval = interval
        self.sent = 0
        self.last_due = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zenmon-demo work",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        clock = time.monotonic
        send = self.lobby.send
        interval = self.interval
        due = clock() + interval
        while not self._stop.wait(max(0.0, due - clock())):
            now = clock()
            try:
                while due <= now:
                    send(("work", due))
                    self.sent += 1
                    self.last_due = due
                    due += interval
            except zenmon.ProcessExited:
                return


# --------------------------------------------------------------------------
# One run of the scenario
# --------------------------------------------------------------------------


@dataclass
class DemoOptions:
    sessions: int = 100_000
    nodes: int = 2
    guilds: int = 200
    per_session: int = 3
    down_cost_us: float = 20.0
    work_interval_ms: float = 2.0
    compare: bool = False
    plot: str | None = None
    seed: int = 1
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunResult:
    mode: str
    label: str
    maximum_mps: float
    demand_amount: int = 0
    demand_interval_ms: int = 0
    sessions: int = 0
    killed_sessions: int = 0
    guild_monitors: int = 0
    session_monitors: int = 0
    setup_s: float = 0.0
    expected: int = 0
    delivered: int = 0
    duplicates: int = 0
    unexpected: int = 0
    wrong_reason: int = 0
    detect_s: float | None = None
    all_in_s: float | None = None
    storm_s: float | None = None
    mean_rate: float | None = None
    peak_rate: float | None = None
    timed_out: bool = False
    work_before: list[float] = field(default_factory=list)
    work_storm: list[float] = field(default_factory=list)
    # for the plot, t in s since the kill: (t, DOWNs put in inboxes so far, DOWNs
    # taken by the guilds so far) and (t the work message was due, its wait in s)
    timeline: list[tuple[float, int, int]] = field(default_factory=list)
    work_points: list[tuple[float, float]] = field(default_factory=list)

    @property
    def exactly_once(self) -> bool:
        return (not self.timed_out and self.expected > 0 and self.delivered == self.expected
                and self.duplicates == 0 and self.unexpected == 0 and self.wrong_reason == 0)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.1f}" if ms < 100 else f"{ms:,.0f}"


def _membership(opts: DemoOptions) -> list[list[int]]:
    """Guild indices of each session: `per_session` random guilds, then the lobby."""
    rng = random.Random(opts.seed)
    population = range(opts.guilds)
    k = min(opts.per_session, opts.guilds)
    lobby = opts.guilds
    return [rng.sample(population, k) + [lobby] for _ in range(opts.sessions)]


def _split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def run_scenario(opts: DemoOptions, mode: str, children: Children, out: Output) -> RunResult:
    """Set up the nodes, kill one sessions node, watch the DOWNs arrive."""
    settings = {"heartbeat_interval": HEARTBEAT_INTERVAL,
                "heartbeat_timeout": HEARTBEAT_TIMEOUT, **opts.settings}
    guild_settings = dict(settings, dispatch_mode=mode)
    label = "zenmon" if mode == "token_bucket" else "unthrottled"
    t_setup = time.monotonic()
    mine: list[Child] = []
    node: zenmon.Node | None = None
    guild_side: GuildSide | None = None
    sender: WorkSender | None = None
    try:
        # sessions nodes first (they start in parallel), then the guilds node
        for _ in range(opts.nodes):
            mine.append(children.start(settings))
        for child in mine:
            child.hello()
        node = zenmon.Node(listen="tcp://127.0.0.1:0", **guild_settings)
        node.start()
        result = RunResult(mode=mode, label=label, maximum_mps=node.maximum_mps)
        guilds = [node.process(name=f"guild-{g}") for g in range(opts.guilds)]
        lobby = node.process(name="lobby")
        guild_procs = [*guilds, lobby]
        out.line(f"  guilds node    pid {os.getpid():>7}  {node.address}  "
                 f"{opts.guilds} guilds + 1 lobby guild  (this process; "
                 f"dispatch_mode={mode!r})")

        # sessions: spawned on every sessions node at once
        shares = _split(opts.sessions, opts.nodes)
        for child, n in zip(mine, shares):
            child.send("spawn", n=n)
        session_pids: list[list[zenmon.Pid]] = []
        for i, child in enumerate(mine):
            made = child.reply()
            session_pids.append([zenmon.Pid(made["node"], made["incarnation"], pid_id)
                                 for pid_id in made["ids"]])
            role = "  <- will be killed" if i == 0 else ""
            out.line(f"  sessions node  pid {child.pid:>7}  {child.address}  "
                     f"{len(made['ids']):,} sessions{role}")

        # membership; sessions monitor their guilds, guilds monitor their members
        membership = _membership(opts)
        per = len(membership[0]) if membership else 0
        guild_pid_text = [str(p.pid) for p in guild_procs]
        start = 0
        for child, n in zip(mine, shares):
            flat = [g for member in membership[start:start + n] for g in member]
            child.send("monitor_guilds", guilds=guild_pid_text, membership=flat,
                       per_session=per)
            start += n
        expected_refs: set[int] = set()
        guild_monitors = 0
        start = 0
        for j, pids in enumerate(session_pids):
            for i, pid in enumerate(pids):
                for g in membership[start + i]:
                    ref = guild_procs[g].monitor(pid)
                    if j == 0:
                        expected_refs.add(ref)
                    guild_monitors += 1
            start += len(pids)
        session_monitors = sum(int(child.reply()) for child in mine)
        result.sessions = opts.sessions
        result.killed_sessions = shares[0]
        result.guild_monitors = guild_monitors
        result.session_monitors = session_monitors
        result.expected = len(expected_refs)

        # wait until every subscription has crossed the wire, both ways
        start = 0
        want_guild_side = 0
        for n in shares:
            want_guild_side += len({g for member in membership[start:start + n]
                                    for g in member})
            start += n
        deadline = time.monotonic() + SETUP_TIMEOUT
        while True:
            guild_subs = node.metrics()["zenmon.proxy.subscribers.size"]
            for child in mine:
                child.send("metrics")
            session_subs = [int(child.reply()["zenmon.proxy.subscribers.size"])
                            for child in mine]
            if guild_subs == want_guild_side and session_subs == shares:
                break
            if time.monotonic() > deadline:
                raise ChildError(f"subscriptions not in place after {SETUP_TIMEOUT:.0f} s "
                                 f"(guilds node {guild_subs}/{want_guild_side}, sessions "
                                 f"nodes {session_subs}/{shares})")
            time.sleep(0.1)
        result.setup_s = time.monotonic() - t_setup
        out.line(f"  monitors: {guild_monitors:,} guild -> session, {session_monitors:,} "
                 f"session -> guild; subscriptions in place after {result.setup_s:.1f} s")

        # the guilds start receiving, the lobby gets work, then the kill
        tally = Tally(expected_refs)
        # What a service with a large, long-lived heap does after start-up: move it
        # out of the cyclic GC's reach, so a collection during the storm does not
        # traverse hundreds of thousands of set-up objects (zenmon's own tables are
        # C memory and never traversed).
        gc.collect()
        gc.freeze()
        guild_side = GuildSide(guilds, lobby, tally, opts.down_cost_us / 1e6)
        guild_side.start()
        sender = WorkSender(lobby, opts.work_interval_ms / 1000)
        sender.start()
        time.sleep(WORK_WARMUP)
        victim = mine[0]
        out.line(f"  SIGKILL sessions node pid {victim.pid}: {shares[0]:,} sessions gone, "
                 f"{result.expected:,} DOWNs expected (reason 'nodedown')")
        base = node.metrics()["zenmon.local.dispatcher.events.processed"]
        t_kill = time.monotonic()
        children.kill(victim)
        _watch_storm(node, tally, sender, result, t_kill, base, opts, out)
        gc.unfreeze()
        sender.stop()
        sender = None
        guild_side.stop()
        guild_side = None

        # the figures
        result.delivered = tally.delivered
        result.duplicates = tally.duplicates
        result.unexpected = tally.unexpected
        result.wrong_reason = tally.wrong_reason
        if tally.first is not None:
            result.detect_s = tally.first - t_kill
        end = tally.last if tally.last is not None else time.monotonic()
        if tally.last is not None:
            result.storm_s = tally.last - t_kill
            if tally.first is not None and tally.last > tally.first:
                result.mean_rate = tally.delivered / (tally.last - tally.first)
        result.work_points = [(due - t_kill, w) for due, w in tally.work]
        result.work_before = sorted(w for due, w in tally.work if due < t_kill)
        result.work_storm = sorted(w for due, w in tally.work if t_kill <= due <= end)
        result.peak_rate = _peak_rate([(t, c) for t, c, _ in result.timeline], 1.0)
        # sampled every 0.1 s; a DOWN is in an inbox before it is handled
        all_in = next((t for t, c, _ in result.timeline if c >= result.expected), None)
        if all_in is not None and result.storm_s is not None:
            all_in = min(all_in, result.storm_s)
        result.all_in_s = all_in
        result.demand_interval_ms = node.config.demand_interval
        result.demand_amount = node.config.demand_amount
        return result
    finally:
        with _guard.critical():
            if sender is not None:
                sender.stop()
            if guild_side is not None:
                guild_side.stop()
            if node is not None:
                node.stop()
            for child in mine:
                children.kill(child)
            del node
            gc.collect()


def _watch_storm(node: zenmon.Node, tally: Tally, sender: WorkSender, result: RunResult,
                 t_kill: float, base: int, opts: DemoOptions, out: Output) -> None:
    """Sample and draw progress until every expected DOWN arrived (or time runs out).

    Done means: every expected DOWN taken by its guild, `GRACE` seconds more without
    a stray or duplicate, and every work message due before the last DOWN taken by
    the lobby (those stuck behind DOWNs count too).
    """
    expected = max(1, tally.expected)
    cost = opts.down_cost_us / 1e6
    budget = (HEARTBEAT_TIMEOUT / 1000 + expected / result.maximum_mps * 1.5
              + expected * cost * 3 + 30.0)
    deadline = t_kill + budget
    timeline = result.timeline
    maximum = result.maximum_mps
    label = result.label
    done_at: float | None = None
    while True:
        time.sleep(SAMPLE_EVERY)
        now, processed = _sample(node)
        processed -= base
        delivered = tally.delivered
        timeline.append((now - t_kill, processed, delivered))
        rate = _recent_rate(timeline, 2.0)
        waits = sorted(w for due, w in tally.work[-5000:] if due >= t_kill)
        if sender.last_due > tally.last_due + sender.interval / 2:   # work stuck in inbox
            stuck = now - (tally.last_due + sender.interval)
            if stuck > (waits[-1] if waits else 0.0):
                waits.append(stuck)
        limit = f"max {maximum:,.0f}/s" if result.mode == "token_bucket" else "no limit"
        waiting = max(0, processed - delivered - tally.unexpected - tally.duplicates)
        text = _progress_line(out, label, delivered, tally.expected, waiting, rate, limit,
                              waits, now - t_kill)
        finished = (done_at is not None and now - done_at >= GRACE
                    and tally.last is not None and tally.last_due > tally.last)
        out.bar(text, force=finished)
        if finished:
            break
        if done_at is None and tally.last is not None:
            done_at = now
        if now > deadline:
            result.timed_out = True
            out.bar(text, force=True)
            out.end_bar()
            out.line(f"  gave up after {budget:.0f} s: {delivered:,} of {tally.expected:,} "
                     f"DOWNs arrived")
            return
    out.end_bar()


def _sample(node: zenmon.Node) -> tuple[float, int]:
    """(time, DOWNs handed to inboxes so far), the time known to within 2 ms if we can."""
    for _ in range(5):
        before = time.monotonic()
        processed = node.metrics()["zenmon.local.dispatcher.events.processed"]
        after = time.monotonic()
        if after - before < 0.002:
            break
    return (before + after) / 2, processed


def _progress_line(out: Output, label: str, delivered: int, expected: int, waiting: int,
                   rate: float, limit: str, waits: list[float], elapsed: float) -> str:
    """One progress line; on a terminal, the parts that fit its width (in priority order)."""
    p50, p99 = _ms(percentile(waits, 50)), _ms(percentile(waits, 99))
    worst = _ms(waits[-1] if waits else 0.0)
    if not out.tty:
        return (f"  {label} {delivered:>7,}/{expected:,} DOWNs handled, {waiting:>7,} waiting "
                f"in inboxes, {rate:>7,.0f}/s into inboxes ({limit}), work wait p50 {p50} "
                f"p99 {p99} max {worst} ms, {elapsed:4.1f} s")
    columns = shutil.get_terminal_size((100, 24)).columns - 1
    # (priority, text); shown in this order, dropped from the highest priority number
    parts = [
        (0, label),
        (6, "[bar]"),
        (0, f"{delivered:,}/{expected:,} DOWNs"),
        (1, f"{rate:,.0f}/s ({limit})"),
        (4, f"inbox {waiting:,}"),
        (2, f"work p50/p99/max {p50}/{p99}/{worst} ms"),
        (5, f"{elapsed:.1f} s"),
    ]
    for drop in range(7, 0, -1):
        kept = [text for prio, text in parts if prio < drop]
        if sum(len(t) + 2 for t in kept) <= columns or drop == 1:
            break
    spare = columns - sum(len(t) + 2 for t in kept if t != "[bar]")
    if "[bar]" in kept:
        width = max(5, min(20, spare - 2))
        filled = int(width * delivered / max(1, expected))
        kept[kept.index("[bar]")] = f"[{'#' * filled}{'.' * (width - filled)}]"
    return "  " + "  ".join(kept)


def _recent_rate(timeline: list[tuple[float, int, int]], window: float) -> float:
    """DOWNs put in inboxes per second over the last `window` seconds of samples."""
    if len(timeline) < 2:
        return 0.0
    t1, c1, _ = timeline[-1]
    for t0, c0, _ in reversed(timeline):
        if t1 - t0 >= window:
            return (c1 - c0) / (t1 - t0)
    t0, c0, _ = timeline[0]
    return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0


def _count_at(timeline: list[tuple[float, int]], t: float, hint: int = 0) -> tuple[float, int]:
    """The sampled counter at time `t`, linearly interpolated. -> (value, index)."""
    i = hint
    while i + 1 < len(timeline) and timeline[i + 1][0] < t:
        i += 1
    t0, c0 = timeline[i]
    if i + 1 >= len(timeline) or t <= t0:
        return float(c0), i
    t1, c1 = timeline[i + 1]
    return c0 + (c1 - c0) * (t - t0) / (t1 - t0), i


def _peak_rate(timeline: list[tuple[float, int]], window: float) -> float | None:
    """DOWNs put in inboxes during the busiest `window` seconds, per second."""
    if not timeline or timeline[-1][0] - timeline[0][0] < window:
        return None
    best = 0.0
    j = 0
    for t0, c0 in timeline:
        if t0 + window > timeline[-1][0]:
            break
        c1, j = _count_at(timeline, t0 + window, j)
        best = max(best, (c1 - c0) / window)
    return best


# --------------------------------------------------------------------------
# Summary and plot
# --------------------------------------------------------------------------


def summary_table(results: list[RunResult]) -> list[str]:
    """The end-of-demo table, one column per run."""
    def rate(value: float | None) -> str:
        return "-" if value is None else f"{value:,.0f}/s"

    def secs(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f} s"

    def waits(values: list[float]) -> str:
        if not values:
            return "-"
        return (f"{_ms(percentile(values, 50))} / {_ms(percentile(values, 99))} / "
                f"{_ms(values[-1])} ms")

    rows: list[tuple[str, list[str]]] = [
        ("sessions (killed)", [f"{r.sessions:,} ({r.killed_sessions:,})" for r in results]),
        ("monitors guild->session", [f"{r.guild_monitors:,}" for r in results]),
        ("monitors session->guild", [f"{r.session_monitors:,}" for r in results]),
        ("DOWNs expected", [f"{r.expected:,}" for r in results]),
        ("DOWNs delivered", [f"{r.delivered:,}" for r in results]),
        ("duplicates / strays", [f"{r.duplicates} / {r.unexpected}" for r in results]),
        ("exactly once", ["yes (expected == delivered)" if r.exactly_once else "NO"
                          for r in results]),
        ("kill -> first DOWN", [secs(r.detect_s) for r in results]),
        ("kill -> all in inboxes", [secs(r.all_in_s) for r in results]),
        ("kill -> last DOWN handled", [secs(r.storm_s) for r in results]),
        ("mean rate, first->last", [rate(r.mean_rate) for r in results]),
        ("busiest second, inboxes", [rate(r.peak_rate) for r in results]),
        ("maximum_mps", [f"{r.maximum_mps:,.0f}/s" if r.mode == "token_bucket"
                         else "(lifted)" for r in results]),
        ("work wait before kill", [waits(r.work_before) for r in results]),
        ("work wait in the storm", [waits(r.work_storm) for r in results]),
        ("work messages in storm", [f"{len(r.work_storm):,}" for r in results]),
    ]
    headers = [("zenmon (token bucket)" if r.mode == "token_bucket"
                else "unthrottled*") for r in results]
    first = max(len(name) for name, _ in rows)
    widths = [max(len(h), *(len(values[i]) for _, values in rows))
              for i, h in enumerate(headers)]
    lines = ["  " + " " * first + "  " + "  ".join(h.rjust(w) for h, w in zip(headers, widths))]
    lines.append("  " + "-" * (first + sum(w + 2 for w in widths)))
    for name, values in rows:
        lines.append("  " + name.ljust(first) + "  "
                     + "  ".join(v.rjust(w) for v, w in zip(values, widths)))
    lines.append("  mean rate: DOWNs handled by the guilds over the first to the last one; busiest "
                 "second:")
    lines.append("    most DOWNs handed to inboxes in any 1 s (from samples of the dispatcher's "
                 "counter every 0.1 s)")
    over = [r for r in results if r.mode == "token_bucket"
            and max(r.peak_rate or 0.0, r.mean_rate or 0.0) > r.maximum_mps]
    if over:
        lines.append("    a token bucket may start with a burst of its capacity, so a rate over a "
                     "finite stretch")
        lines.append("    can read a little above maximum_mps; zenmon/dispatcher.py has the exact "
                     "bound")
    lines.append("  work wait = p50 / p99 / max, from when a work message to the lobby guild was "
                 "due until the")
    lines.append("    guild took it from its inbox (DOWNs and work share that inbox)")
    return lines


def _load_pyplot() -> Any | None:
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        return None
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def _binned_rate(timeline: list[tuple[float, int, int]], step: float
                 ) -> tuple[list[float], list[float]]:
    """DOWNs put in inboxes per second, in `step`-second bins from the kill on."""
    counts = [(0.0, 0), *((t, c) for t, c, _ in timeline)]
    xs: list[float] = []
    ys: list[float] = []
    end = counts[-1][0]
    t = 0.0
    hint = 0
    while t + step <= end + 1e-9:
        c0, hint = _count_at(counts, t, hint)
        c1, _ = _count_at(counts, t + step, hint)
        xs.append(t + step / 2)
        ys.append((c1 - c0) / step)
        t += step
    return xs, ys


def write_plot(path: str, results: list[RunResult], opts: DemoOptions, plt: Any) -> None:
    """Delivery rate, inbox backlog and work wait over time, one colour per run."""
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(10, 9.5), sharex=True)
    colours = {"token_bucket": "tab:blue", "unlimited": "tab:red"}
    names = {"token_bucket": "zenmon (token bucket)",
             "unlimited": "unthrottled (zenmon with dispatch_mode='unlimited')"}
    for r in results:
        colour = colours.get(r.mode, "tab:grey")
        name = names.get(r.mode, r.mode)
        xs, ys = _binned_rate(r.timeline, 0.5)
        top.plot(xs, [y if y > 0 else float("nan") for y in ys], color=colour,
                 label=name, drawstyle="steps-mid")
        middle.plot([0.0, *(t for t, _, _ in r.timeline)],
                    [0, *(c - h for _, c, h in r.timeline)], color=colour, label=name)
        pts = r.work_points
        if pts:
            bottom.scatter([t for t, _ in pts], [max(w * 1000, 0.01) for _, w in pts], s=3,
                           color=colour, alpha=0.5, label=name)
    maximum = next((r.maximum_mps for r in results if r.mode == "token_bucket"), None)
    if maximum is not None:
        top.axhline(maximum, color="black", linestyle="--", linewidth=1,
                    label=f"maximum_mps = {maximum:,.0f}/s")
    top.set_yscale("log")
    top.set_ylabel("DOWNs into inboxes / s\n(0.5 s bins)")
    top.legend(loc="upper right", fontsize=8)
    middle.set_ylabel("DOWNs waiting in\nguild inboxes")
    middle.legend(loc="upper right", fontsize=8)
    bottom.set_yscale("log")
    bottom.set_ylabel("work message wait (ms)\nby the time it was due")
    bottom.set_xlabel("seconds since the sessions node was SIGKILLed")
    bottom.legend(loc="upper right", fontsize=8, markerscale=4)
    for axis in (top, middle, bottom):
        axis.grid(True, alpha=0.3)
        axis.axvline(0.0, color="grey", linewidth=0.8)
    first = results[0]
    fig.suptitle(f"zenmon demo: a sessions node with {first.killed_sessions:,} sessions "
                 f"SIGKILLed -> {first.expected:,} DOWNs for the guilds\n"
                 f"(each DOWN costs its guild {opts.down_cost_us:g} us; a work message "
                 f"is due every {opts.work_interval_ms:g} ms at the lobby guild)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------


def _setting(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, not {text!r}")
    key = key.strip()
    parsed: Any = value.strip()
    with contextlib.suppress(ValueError):
        parsed = int(parsed)
    return key, parsed


def parse_args(argv: Sequence[str] | None) -> DemoOptions:
    parser = argparse.ArgumentParser(
        prog="zenmon demo",
        description="The chat scenario on this machine: a guilds node and sessions nodes "
                    "as separate OS processes on 127.0.0.1; one sessions node is killed "
                    "with SIGKILL and the guilds receive the throttled DOWN stream while "
                    "their work keeps flowing.",
    )
    parser.add_argument("--sessions", type=int, default=DemoOptions.sessions,
                        help="session processes in total, over all sessions nodes "
                             "(default %(default)s)")
    parser.add_argument("--nodes", type=int, default=DemoOptions.nodes,
                        help="sessions nodes, at least 2; the first is killed "
                             "(default %(default)s)")
    parser.add_argument("--guilds", type=int, default=DemoOptions.guilds,
                        help="guild processes, besides the lobby guild (default %(default)s)")
    parser.add_argument("--per-session", type=int, default=DemoOptions.per_session,
                        help="random guilds each session is a member of, besides the lobby "
                             "(default %(default)s)")
    parser.add_argument("--down-cost", type=float, default=DemoOptions.down_cost_us,
                        metavar="US",
                        help="simulated CPU work per DOWN for the guild receiving it, in "
                             "microseconds (default %(default)s)")
    parser.add_argument("--work-interval", type=float, default=DemoOptions.work_interval_ms,
                        metavar="MS",
                        help="a work message to the lobby guild every MS milliseconds "
                             "(default %(default)s)")
    parser.add_argument("--compare", action="store_true",
                        help="run the scenario again with the throttle lifted "
                             "(dispatch_mode='unlimited') and compare")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="write a chart of delivery rate and work wait over time for "
                             "both runs (implies --compare; needs matplotlib: "
                             "pip install 'zenmon[demo]')")
    parser.add_argument("--set", dest="settings", action="append", type=_setting, default=[],
                        metavar="KEY=VALUE",
                        help="a node setting (ms), e.g. --set demand_amount=2000; repeatable")
    parser.add_argument("--seed", type=int, default=DemoOptions.seed,
                        help="seed of the random guild membership (default %(default)s)")
    args = parser.parse_args(argv)
    if args.nodes < 2:
        parser.error("--nodes must be at least 2 (one is killed, one survives)")
    if args.sessions < args.nodes:
        parser.error("--sessions must be at least --nodes")
    if args.guilds < 1 or args.per_session < 0:
        parser.error("--guilds must be at least 1 and --per-session at least 0")
    if args.down_cost < 0 or args.work_interval <= 0:
        parser.error("--down-cost must be >= 0 and --work-interval > 0")
    settings = dict(args.settings)
    settings.pop("dispatch_mode", None)
    try:
        zenmon.Config().replace(heartbeat_interval=HEARTBEAT_INTERVAL,
                                heartbeat_timeout=HEARTBEAT_TIMEOUT, **settings)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    return DemoOptions(
        sessions=args.sessions, nodes=args.nodes, guilds=args.guilds,
        per_session=args.per_session, down_cost_us=args.down_cost,
        work_interval_ms=args.work_interval, compare=args.compare or bool(args.plot),
        plot=args.plot, seed=args.seed, settings=settings,
    )


def run_demo(opts: DemoOptions, stream: TextIO | None = None) -> int:
    """Run the demo with `opts`, writing to `stream` (stdout). -> exit code."""
    out = Output(stream or sys.stdout)
    children = Children()
    results: list[RunResult] = []
    plt = None
    if opts.plot:
        plt = _load_pyplot()
        if plt is None:
            out.line("note: --plot needs matplotlib, which is not installed; install it with\n"
                     "        python3 -m pip install 'zenmon[demo]'   (or: pip install "
                     "matplotlib)\n      the demo runs anyway and prints the comparison.")
    _guard.install()
    modes = ["token_bucket", "unlimited"] if opts.compare else ["token_bucket"]
    code = 0
    t0 = time.monotonic()
    try:
        out.line(f"zenmon demo: {opts.sessions:,} sessions on {opts.nodes} sessions nodes "
                 f"(separate OS processes), {opts.guilds} guilds + 1 lobby guild here")
        out.line(f"  each session is in {opts.per_session} random guilds and the lobby; guilds "
                 f"monitor their members, sessions monitor their guilds")
        out.line(f"  the guilds are asyncio tasks on one event loop; each DOWN costs its guild "
                 f"{opts.down_cost_us:g} us of simulated work")
        out.line(f"  a work message is due at the lobby every {opts.work_interval_ms:g} ms; "
                 f"its wait shows how DOWNs and work share the inbox")
        for mode in modes:
            out.line()
            if mode == "token_bucket":
                out.line("run: zenmon, default token-bucket dispatch")
            else:
                out.line("run: unthrottled = zenmon with dispatch_mode='unlimited' (the token "
                         "bucket lifted; still batched and truncated, so not plain Erlang)")
            results.append(run_scenario(opts, mode, children, out))
            gc.collect()
        out.line()
        out.line("summary")
        for text in summary_table(results):
            out.line(text)
        if len(results) > 1:
            out.line("  * unthrottled: zenmon itself with the token bucket lifted "
                     "(dispatch_mode='unlimited'),")
            out.line("    not plain Erlang monitors: batching and one monitor per target "
                     "still apply.")
        if opts.plot and plt is not None:
            write_plot(opts.plot, results, opts, plt)
            out.line(f"  chart written to {opts.plot}")
        elif opts.plot:
            out.line(f"  no chart: matplotlib is not installed "
                     f"(python3 -m pip install 'zenmon[demo]'); {opts.plot} not written")
        ok = all(r.exactly_once for r in results)
        code = 0 if ok else 1
        out.line("  every expected DOWN arrived exactly once" if ok
                 else "  FAILED: not every expected DOWN arrived exactly once")
    except (KeyboardInterrupt, Interrupted) as exc:
        out.end_bar()
        why = "Ctrl-C" if isinstance(exc, KeyboardInterrupt) else str(exc)
        out.line(f"interrupted ({why}): cleaning up")
        code = 130
    except ChildError as exc:
        out.end_bar()
        out.line(f"error: {exc}")
        code = 1
    finally:
        with _guard.critical(reraise=False):   # a second Ctrl-C must not stop the cleanup
            children.kill_all()
        _guard.uninstall()
        left = children.still_running()
        pids = " ".join(str(pid) for pid in children.pids) or "none"
        if left:
            out.line(f"  WARNING: child processes still running: {left}")
            code = code or 1
        else:
            out.line(f"  cleanup: all {len(children.pids)} child processes killed and reaped "
                     f"(pids {pids}); took {time.monotonic() - t0:.1f} s in all")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``zenmon demo`` (``zenmon.cli`` calls it with the arguments)."""
    opts = parse_args(argv)
    return run_demo(opts)


if __name__ == "__main__":
    sys.exit(main())

"""Model-based test of local monitors: random programs against a reference model.

The machine runs monitor / monitor-by-name / demonitor (with and without flush)
/ exit / new-process over a handful of processes on one node with unlimited
dispatch, and the model says which DOWNs must arrive, which may (a DOWN
already in the inbox when its monitor was demonitored without flush), and
which must never. After draining, every monitor has had exactly one DOWN
unless demonitored, with the right pid and reason, and the references table
holds exactly the model's pending monitors.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

import zenmon
from helpers import metric, receive_until_sentinel, wait_dispatcher_idle

MAX_PROCS = 7
NAMES = ("a", "b", "c")
REASONS = (
    "normal",
    "shutdown",
    ("error", {"code": 7}),
    "long",  # replaced by a 1500-character string at exit time
    [[["deep"]]],
    [1, 2, 3, 4, 5],
    "exception",  # replaced by a fresh exception instance at exit time
)

PENDING = "pending"  # target alive: the DOWN is still to come
FIRED = "fired"  # the DOWN is due and not yet received
# Demonitored without flush after firing: the DOWN may have been in the inbox
# already. It stays "maybe" (a late arrival cannot be told from one that was
# on its way into the inbox when the dispatcher went idle); the strict
# "nothing after demonitor" checks live in test_local_monitors.py.
MAYBE = "maybe"
DONE = "done"  # the DOWN was received
CANCELLED = "cancelled"  # demonitored: no DOWN may arrive any more
ORPHANED = "orphaned"  # the watcher exited: its monitors are gone


@dataclass
class Monitor:
    watcher: int
    target: int | None  # index of the target process, None when it never existed
    down_pid: Any
    state: str
    reason: Any = None


def comparable(reason: Any) -> Any:
    if isinstance(reason, zenmon.ExitException):
        return ("ExitException", reason.type_name, reason.message)
    return reason


class LocalMonitorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.node = zenmon.Node(listen="tcp://127.0.0.1:0", dispatch_mode="unlimited")
        self.node.start()
        self.base_references = metric(self.node, "zenmon.local.references.size")
        self.base_processes = metric(self.node, "zenmon.local.processes.size")
        self.procs: list[Any] = []
        self.alive: list[bool] = []
        self.registered: dict[str, int] = {}
        self.monitors: dict[int, Monitor] = {}
        self.broken = False  # a check failed: teardown only stops the node (fast shrinking)
        for _ in range(3):
            self.new_process(None)

    # ----------------------------------------------------------------- helpers

    def pick(self, i: int, alive_only: bool = False) -> int | None:
        candidates = [k for k in range(len(self.procs)) if self.alive[k] or not alive_only]
        return candidates[i % len(candidates)] if candidates else None

    def add_monitor(self, watcher: int, ref: int, target: int | None, down_pid: Any) -> None:
        assert type(ref) is int and ref > 0
        assert ref not in self.monitors, f"ref {ref} handed out twice"
        if target is not None and self.alive[target]:
            self.monitors[ref] = Monitor(watcher, target, down_pid, PENDING)
        else:
            self.monitors[ref] = Monitor(watcher, target, down_pid, FIRED, "noproc")

    # ----------------------------------------------------------------- rules

    @precondition(lambda self: len(self.procs) < MAX_PROCS)
    @rule(name=st.sampled_from((None,) + NAMES))
    def new_process(self, name: str | None) -> None:
        if name is not None and name in self.registered:
            with pytest.raises(zenmon.NameTaken):
                self.node.process(name=name)
            return
        proc = self.node.process(name=name)
        self.procs.append(proc)
        self.alive.append(True)
        if name is not None:
            self.registered[name] = len(self.procs) - 1

    @rule(w=st.integers(0, 100), t=st.integers(0, 100), dead_watcher=st.integers(0, 9))
    def monitor_pid(self, w: int, t: int, dead_watcher: int) -> None:
        """Mostly from a live watcher; sometimes from any process, dead ones included."""
        watcher = self.pick(w, alive_only=dead_watcher != 0)
        if watcher is None:
            return
        target = self.pick(t)
        if not self.alive[watcher]:
            with pytest.raises(zenmon.ProcessExited):
                self.procs[watcher].monitor(self.procs[target].pid)
            return
        pid = self.procs[target].pid
        self.add_monitor(watcher, self.procs[watcher].monitor(pid), target, pid)

    @rule(w=st.integers(0, 100), name=st.sampled_from(NAMES), with_address=st.booleans())
    def monitor_name(self, w: int, name: str, with_address: bool) -> None:
        watcher = self.pick(w, alive_only=True)
        if watcher is None:
            return
        address = self.node.address
        target = (name, address) if with_address else name
        ref = self.procs[watcher].monitor(target)
        self.add_monitor(watcher, ref, self.registered.get(name), (name, address))

    @rule(w=st.integers(0, 100), t=st.integers(0, 100), kind=st.sampled_from(["ghost", "old"]))
    def monitor_unknown(self, w: int, t: int, kind: str) -> None:
        watcher = self.pick(w, alive_only=True)
        if watcher is None:
            return
        if kind == "ghost":
            pid = zenmon.Pid(self.node.address, self.node.incarnation, 1_000_000 + t)
        else:
            live = self.procs[self.pick(t)].pid
            pid = zenmon.Pid(self.node.address, self.node.incarnation - 1, live.id)
        self.add_monitor(watcher, self.procs[watcher].monitor(pid), None, pid)

    @rule(i=st.integers(0, 10_000), flush=st.booleans(), kind=st.integers(0, 9))
    def demonitor(self, i: int, flush: bool, kind: int) -> None:
        """Mostly a live monitor; sometimes any ref of a live watcher, or an unknown ref."""
        owned = sorted(ref for ref, m in self.monitors.items() if self.alive[m.watcher])
        live = [ref for ref in owned if self.monitors[ref].state in (PENDING, FIRED, MAYBE)]
        candidates = live if kind >= 3 and live else owned
        if not candidates or kind == 0:
            watcher = self.pick(i, alive_only=True)
            if watcher is not None:
                assert self.procs[watcher].demonitor(10**15 + i, flush=flush) is True
            return
        ref = candidates[i % len(candidates)]
        monitor = self.monitors[ref]
        assert self.procs[monitor.watcher].demonitor(ref, flush=flush) is True
        if monitor.state == PENDING:
            monitor.state = CANCELLED
        elif monitor.state in (FIRED, MAYBE):
            monitor.state = CANCELLED if flush else MAYBE

    @rule(i=st.integers(0, 100), reason=st.sampled_from(REASONS))
    def exit(self, i: int, reason: Any) -> None:
        k = self.pick(i, alive_only=True)
        if k is None:
            return
        if reason == "exception":
            reason = ValueError(f"failed {i}")
        elif reason == "long":
            reason = "x" * 1500
        self.procs[k].exit(reason)
        assert not self.procs[k].alive
        self.alive[k] = False
        for name, index in list(self.registered.items()):
            if index == k:
                del self.registered[name]
        expected = zenmon.truncate(reason)
        for monitor in self.monitors.values():
            if monitor.watcher == k:
                monitor.state = ORPHANED
            elif monitor.target == k and monitor.state == PENDING:
                monitor.state, monitor.reason = FIRED, expected

    @rule()
    def settle(self) -> None:
        self.check_settled()

    # ----------------------------------------------------------------- checks

    def take(self, watcher: int, message: Any) -> None:
        assert isinstance(message, zenmon.Down), f"process {watcher} got {message!r}"
        monitor = self.monitors.get(message.ref)
        assert monitor is not None, f"DOWN for a ref never handed out: {message!r}"
        assert monitor.watcher == watcher, f"DOWN {message!r} went to the wrong process"
        assert monitor.state in (FIRED, MAYBE), f"DOWN {message!r} for a {monitor.state} monitor"
        assert message.pid == monitor.down_pid, message
        assert comparable(message.reason) == comparable(monitor.reason), message
        monitor.state = DONE

    def check_settled(self, timeout: float = 2.0) -> None:
        try:
            self._check_settled(timeout)
        except BaseException:
            self.broken = True
            raise

    def _check_settled(self, timeout: float) -> None:
        wait_dispatcher_idle(self.node, timeout=5.0)
        for k, proc in enumerate(self.procs):
            if self.alive[k]:
                for message in receive_until_sentinel(proc):
                    self.take(k, message)
        # A DOWN that left the queue may still be on its way into an inbox.
        deadline = time.monotonic() + timeout
        for ref, monitor in sorted(self.monitors.items()):
            while monitor.state == FIRED and self.alive[monitor.watcher]:
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"no DOWN for monitor {ref}: {monitor}"
                try:
                    self.take(
                        monitor.watcher, self.procs[monitor.watcher].receive(timeout=remaining)
                    )
                except TimeoutError:
                    pass
        pending = sum(
            1 for m in self.monitors.values() if m.state == PENDING and self.alive[m.watcher]
        )
        assert metric(self.node, "zenmon.local.references.size") == self.base_references + pending
        assert metric(self.node, "zenmon.local.processes.size") == self.base_processes + sum(
            self.alive
        )
        for proc, alive in zip(self.procs, self.alive):
            assert proc.alive is alive
            assert self.node.is_alive(proc.pid) is alive

    def teardown(self) -> None:
        try:
            if self.broken:
                return
            self.check_settled()
            for k, proc in enumerate(self.procs):
                if self.alive[k]:
                    with pytest.raises(TimeoutError):
                        late = proc.receive(timeout=0.02)
                        raise AssertionError(f"late message for process {k}: {late!r}")
        finally:
            self.node.stop(timeout=5.0)


LocalMonitorMachine.TestCase.settings = settings(
    max_examples=30,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

test_local_monitor_model = pytest.mark.timeout(300)(LocalMonitorMachine.TestCase)

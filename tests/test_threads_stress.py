"""Every public call from any thread during a DOWN storm (issue 9, threads).

Real node, real I/O thread, ``sys.setswitchinterval(1e-4)`` so that threads switch
inside every window. What must hold, in single and bulk delivery alike:
- ``demonitor(ref, flush=True)`` never raises, whatever else appends or takes;
- after it returns, no DOWN for ref is in the inbox or arrives later;
- it never reorders the inbox (work messages keep their send order);
- every other monitor yields exactly one DOWN, even when other watchers exit
  while the dispatcher is handing out their DOWNs.
"""

from __future__ import annotations

import random
import sys
import threading
from collections.abc import Iterator

import pytest

import zenmon
from helpers import wait_for


@pytest.fixture
def fast_switching() -> Iterator[None]:
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def downs_in(message: object) -> list[zenmon.Down]:
    if type(message) is zenmon.DownBatch:
        return list(message.downs)
    if type(message) is zenmon.Down:
        return [message]
    return []


@pytest.mark.timeout(90)
@pytest.mark.parametrize("bulk", [False, True], ids=["single", "bulk"])
@pytest.mark.parametrize("mode", ["unlimited", "adaptive"])
def test_flush_send_exit_and_dispatch_from_many_threads(node_factory, fast_switching,
                                                        bulk, mode):
    node = node_factory(dispatch_mode=mode, adaptive_backlog=64, demand_interval=10)
    n_targets, n_watchers = 400, 6
    watchers = [node.process(bulk=bulk) for _ in range(n_watchers)]
    doomed = watchers[n_watchers // 2:]          # exit while their DOWNs are handed out
    keepers = watchers[: n_watchers // 2]
    targets = [node.process() for _ in range(n_targets)]
    refs = {w: [w.monitor(t.pid) for t in targets] for w in watchers}
    flushed: dict[zenmon.Process, set[int]] = {w: set() for w in keepers}
    errors: list[BaseException] = []
    go = threading.Event()

    def guarded(fn):
        def run(*args):
            go.wait()
            try:
                fn(*args)
            except BaseException as exc:   # reported below
                errors.append(exc)
        return run

    @guarded
    def kill_targets():
        for t in targets:
            t.exit("storm")

    @guarded
    def flush_some(w, chosen):
        for ref in chosen:
            assert w.demonitor(ref, flush=True) is True
            flushed[w].add(ref)

    @guarded
    def send_work(w):
        for i in range(3000):
            w.send(("work", i))

    @guarded
    def exit_doomed():
        for w in doomed:
            wait_for(lambda w=w: len(w._messages) > 0, timeout=30)
            w.exit("gone")

    rng = random.Random(7)
    threads = [threading.Thread(target=kill_targets), threading.Thread(target=exit_doomed)]
    for w in keepers:
        chosen = rng.sample(refs[w], n_targets // 3)
        threads.append(threading.Thread(target=flush_some, args=(w, chosen)))
        threads.append(threading.Thread(target=send_work, args=(w,)))
    for thread in threads:
        thread.start()
    go.set()
    for thread in threads:
        thread.join(60)
    assert not errors, errors[:3]
    assert not any(thread.is_alive() for thread in threads)

    for w in keepers:
        owed = set(refs[w]) - flushed[w]
        got: list[int] = []
        work: list[int] = []

        def drained(w=w, got=got, work=work, owed=owed) -> bool:
            while w._messages:
                message = w.receive(timeout=0)
                got.extend(d.ref for d in downs_in(message))
                if type(message) is tuple and message[0] == "work":
                    work.append(message[1])
            return len(got) >= len(owed) and len(work) == 3000

        wait_for(drained, timeout=30)
        assert not set(got) & flushed[w], "a DOWN escaped demonitor(flush=True)"
        assert len(got) == len(set(got)), "a DOWN was delivered twice"
        assert set(got) == owed
        assert work == sorted(work), "flush reordered the inbox"
    wait_for(lambda: node.metrics()["zenmon.local.references.size"] == 0, timeout=10)


@pytest.mark.timeout(60)
def test_flush_never_raises_against_a_concurrent_sender(node_factory, fast_switching):
    """Item 2: flush used to iterate the deque while send() appended to it."""
    node = node_factory()
    p = node.process()
    stop = threading.Event()
    errors: list[BaseException] = []

    def send_forever():
        i = 0
        while not stop.is_set():
            p.send(i)
            i += 1

    sender = threading.Thread(target=send_forever)
    sender.start()
    try:
        for _ in range(3000):
            try:
                p.demonitor(12345, flush=True)
            except BaseException as exc:   # reported below
                errors.append(exc)
            if len(p._messages) > 20_000:
                p._messages.clear()
    finally:
        stop.set()
        sender.join()
    assert not errors, errors[:3]

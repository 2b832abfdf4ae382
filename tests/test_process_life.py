"""The life of a process as Erlang users expect it: join/wait, the exit reason of a
``with`` block, what ``exit()`` does to a spawned thread or task, spawn's rules for
coroutines and awaitables, and a stopped node's processes."""

from __future__ import annotations

import asyncio
import threading
import warnings

import pytest

import zenmon
from helpers import assert_down, metric, wait_for

# ------------------------------------------------------------------- join / wait


def test_join_returns_once_the_process_is_dead(node):
    proc = node.spawn(lambda p: p.receive(timeout=10))
    with pytest.raises(TimeoutError):
        proc.join(timeout=0.05)
    assert proc.alive
    proc.send("go")
    proc.join(timeout=5)
    assert proc.alive is False
    proc.join()                       # already dead: returns at once
    proc.join(timeout=0)


def test_join_from_many_threads_all_return(node):
    proc = node.process()
    returned = []

    def joiner():
        proc.join(timeout=10)
        returned.append(True)

    threads = [threading.Thread(target=joiner) for _ in range(8)]
    for thread in threads:
        thread.start()
    proc.exit("done")
    for thread in threads:
        thread.join(10)
    assert returned == [True] * 8


def test_join_timeout_leaves_no_waiter_behind(node):
    proc = node.process()
    for _ in range(20):
        with pytest.raises(TimeoutError):
            proc.join(timeout=0)
    assert not proc._exit_waiters


def test_await_wait_returns_once_the_process_is_dead(node):
    async def main():
        async def worker(p):
            await p.areceive(timeout=10)

        proc = node.spawn(worker)
        with pytest.raises((TimeoutError, asyncio.TimeoutError)):
            await asyncio.wait_for(proc.wait(), 0.05)
        proc.send("go")
        await asyncio.wait_for(proc.wait(), 5)
        assert proc.alive is False
        await proc.wait()             # already dead

    asyncio.run(main())


def test_await_wait_is_woken_from_another_thread(node):
    async def main():
        proc = node.process()
        threading.Timer(0.05, proc.exit, args=("bye",)).start()
        await asyncio.wait_for(proc.wait(), 5)
        assert proc.alive is False

    asyncio.run(main())


# ----------------------------------------------------------- with: exit reason


def test_exception_escaping_with_is_the_exit_reason(node):
    watcher = node.process()
    with pytest.raises(ValueError, match="crashed"):
        with node.process() as p:
            ref = watcher.monitor(p.pid)
            raise ValueError("crashed")
    assert p.alive is False
    down = watcher.receive(timeout=5)
    assert isinstance(down, zenmon.Down) and down.ref == ref and down.pid == p.pid
    assert isinstance(down.reason, zenmon.ExitException), down.reason
    assert down.reason.type_name == "ValueError"
    assert "crashed" in down.reason.message


def test_with_block_reason_matches_spawn_reason(node):
    watcher = node.process()

    def crash(proc):
        raise KeyError("same")

    spawned, ref1 = watcher.spawn_monitor(crash)
    with pytest.raises(KeyError):
        with node.process() as p:
            ref2 = watcher.monitor(p.pid)
            raise KeyError("same")
    downs = {d.ref: d for d in (watcher.receive(timeout=5), watcher.receive(timeout=5))}
    a, b = downs[ref1].reason, downs[ref2].reason
    assert (a.type_name, a.message) == (b.type_name, b.message)


def test_with_block_that_exits_itself_keeps_its_reason(node):
    watcher = node.process()
    with node.process() as p:
        ref = watcher.monitor(p.pid)
        p.exit("mine")
    assert_down(watcher.receive(timeout=5), ref, p.pid, "mine")


# ------------------------------------------------------ exit() from the outside


def test_exit_cancels_a_spawned_coroutine(node):
    async def main():
        seen = {}

        async def worker(p):
            try:
                await asyncio.sleep(60)      # not in a receive: only cancel stops it
            except asyncio.CancelledError:
                seen["cancelled"] = True
                raise

        watcher = node.process()
        proc = node.spawn(worker)
        ref = watcher.monitor(proc.pid)
        await asyncio.sleep(0.01)
        proc.exit("stop now")
        down = await watcher.areceive(timeout=5)
        assert_down(down, ref, proc.pid, "stop now")
        task = proc._task
        await asyncio.wait_for(asyncio.shield(asyncio.wait([task])), 5)
        assert task.cancelled() or task.done()
        assert seen.get("cancelled") is True

    asyncio.run(main())


def test_exit_from_another_thread_cancels_a_spawned_coroutine(node):
    async def main():
        seen = {}

        async def worker(p):
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                seen["cancelled"] = True
                raise

        proc = node.spawn(worker)
        await asyncio.sleep(0.01)
        killer = threading.Thread(target=proc.exit, args=("from a thread",))
        killer.start()
        await asyncio.get_running_loop().run_in_executor(None, killer.join, 5)
        await asyncio.wait_for(asyncio.wait([proc._task]), 5)
        assert seen.get("cancelled") is True

    asyncio.run(main())


def test_exit_interrupts_a_spawned_threads_blocked_receive(node):
    outcome = {}
    started = threading.Event()

    def worker(p):
        started.set()
        try:
            p.receive(timeout=30)
        except BaseException as exc:
            outcome["error"] = exc
            raise

    proc = node.spawn(worker)
    assert started.wait(5)
    proc.exit("interrupted")
    wait_for(lambda: "error" in outcome, timeout=5)
    assert isinstance(outcome["error"], zenmon.ProcessExited)


def test_exit_makes_a_spawned_threads_next_send_raise(node):
    outcome = {}
    go = threading.Event()

    def worker(p):
        go.wait(10)
        try:
            p.send("to myself")
        except BaseException as exc:
            outcome["error"] = exc

    proc = node.spawn(worker)
    proc.exit("stopped")
    go.set()
    wait_for(lambda: "error" in outcome, timeout=5)
    assert isinstance(outcome["error"], zenmon.ProcessExited)


# ----------------------------------------------------------------- spawn rules


def test_spawn_coroutine_function_without_loop_creates_nothing(node):
    async def worker(p):
        pass

    before = metric(node, "zenmon.local.processes.size")
    with pytest.raises(RuntimeError):
        node.spawn(worker)
    with pytest.raises(RuntimeError):
        node.spawn(worker, name="named")
    assert metric(node, "zenmon.local.processes.size") == before
    assert node.whereis("named") is None


def test_spawn_callable_returning_coroutine_runs_as_task_with_a_loop(node):
    async def main():
        seen = {}

        async def body(p, tag):
            seen["tag"] = tag
            seen["task"] = asyncio.current_task()
            seen["message"] = await p.areceive(timeout=5)
            return None

        watcher = node.process()
        proc = node.spawn(lambda p, tag: body(p, tag), "x")
        ref = watcher.monitor(proc.pid)
        proc.send("hello")
        down = await watcher.areceive(timeout=5)
        assert_down(down, ref, proc.pid, "normal")
        assert seen["tag"] == "x" and seen["message"] == "hello"
        assert seen["task"] is not None

    asyncio.run(main())


def test_spawn_callable_returning_coroutine_runs_as_task_and_raises(node):
    async def main():
        async def body(p):
            await asyncio.sleep(0)
            raise OSError("inside the task")

        watcher = node.process()
        proc = node.spawn(lambda p: body(p))
        ref = watcher.monitor(proc.pid)
        down = await watcher.areceive(timeout=5)
        assert down.ref == ref
        assert down.reason.type_name == "OSError"

    asyncio.run(main())


def test_spawn_callable_returning_coroutine_without_loop_is_a_type_error(node):
    ran = []

    async def body(p):
        ran.append(True)

    watcher = node.process()
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # "never awaited" would be an error here
        proc, ref = watcher.spawn_monitor(lambda p: body(p))
        down = watcher.receive(timeout=5)
    assert down.ref == ref
    assert isinstance(down.reason, zenmon.ExitException), down.reason
    assert down.reason.type_name == "TypeError"
    assert "awaitable" in down.reason.message and "event loop" in down.reason.message
    assert ran == []


def test_spawn_async_callable_object_is_a_coroutine_function(node):
    class Worker:
        async def __call__(self, p):
            pass

    before = metric(node, "zenmon.local.processes.size")
    with pytest.raises(RuntimeError):
        node.spawn(Worker())
    assert metric(node, "zenmon.local.processes.size") == before


# -------------------------------------------------------------------- node stop


def test_stop_kills_every_process(node_factory):
    node = node_factory()
    procs = [node.process() for _ in range(5)]
    named = node.process("registered")
    watcher = node.process()
    node.stop()
    for proc in [*procs, named, watcher]:
        assert proc.alive is False
        assert node.is_alive(proc.pid) is False
        with pytest.raises(zenmon.ProcessExited):
            proc.send("x")
        with pytest.raises(zenmon.ProcessExited):
            proc.monitor(procs[0].pid)
        proc.join(timeout=0)
    assert node.whereis("registered") is None
    assert metric(node, "zenmon.local.processes.size") == 0


def test_stop_interrupts_spawned_threads_and_tasks(node_factory):
    node = node_factory()
    outcome = {}
    started = threading.Event()

    def worker(p):
        started.set()
        try:
            p.receive(timeout=30)
        except zenmon.ProcessExited as exc:
            outcome["thread"] = exc

    proc = node.spawn(worker)
    assert started.wait(5)
    node.stop()
    proc.join(timeout=5)
    wait_for(lambda: "thread" in outcome, timeout=5)

    async def main():
        other = node_factory()
        seen = {}

        async def task_worker(p):
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                seen["cancelled"] = True
                raise

        spawned = other.spawn(task_worker)
        await asyncio.sleep(0.01)
        other.stop()
        await asyncio.wait_for(spawned.wait(), 5)
        await asyncio.wait_for(asyncio.wait([spawned._task]), 5)
        assert seen.get("cancelled") is True

    asyncio.run(main())


def test_monitor_of_a_stopped_nodes_process_from_another_node_process(node_factory):
    node = node_factory()
    target = node.process()
    node.stop()
    assert target.alive is False
    # the stopped node's own pids read dead
    assert node.is_alive(target.pid) is False


@pytest.mark.timeout(60)
def test_join_racing_exit_never_misses_the_exit(node):
    """exit() takes the waiters' lock only when it sees a waiter: a join that adds
    itself at the same moment must still return (it sees the process dead)."""
    import sys
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    try:
        for _ in range(300):
            proc = node.process()
            errors: list[BaseException] = []

            def joiner(p=proc, errors=errors):
                try:
                    p.join(timeout=10)
                except BaseException as exc:   # noqa: BLE001 (reported below)
                    errors.append(exc)

            threads = [threading.Thread(target=joiner) for _ in range(3)]
            for thread in threads:
                thread.start()
            proc.exit("done")
            for thread in threads:
                thread.join(15)
                assert not thread.is_alive(), "a join missed the exit"
            assert errors == []
            assert not proc._exit_waiters
    finally:
        sys.setswitchinterval(old)


def test_exit_many_exits_each_live_pid_once(node):
    watcher = node.process()
    targets = [node.process() for _ in range(50)]
    named = node.process("session")
    refs = {watcher.monitor(p.pid): p.pid for p in targets + [named]}
    joined = threading.Event()
    threading.Thread(target=lambda: (targets[0].join(10), joined.set())).start()
    targets[-1].exit("earlier")
    pids = [p.pid for p in targets] + [named.pid, targets[3].pid]   # a dead one, a repeat
    assert node.exit_many(pids, ("shutdown", "x" * 5000)) == 50
    assert joined.wait(10)
    assert node.whereis("session") is None
    assert not any(node.is_alive(pid) for pid in pids)
    downs = [watcher.receive(timeout=5) for _ in range(51)]
    assert {d.ref for d in downs} == set(refs)
    by_reason: dict[str, list] = {}
    for down in downs:
        key = down.reason if down.reason == "earlier" else "shutdown"
        by_reason.setdefault(key, []).append(down)
    assert len(by_reason["earlier"]) == 1 and len(by_reason["shutdown"]) == 50
    # the reason was truncated once, as exit() truncates it
    reasons = {repr(d.reason) for d in by_reason["shutdown"]}
    assert len(reasons) == 1 and len(next(iter(reasons))) < 2000
    assert node.exit_many([], "x") == 0


def test_exit_many_checks_every_pid_before_exiting_any(node, node_factory):
    other = node_factory()
    mine = node.process()
    with pytest.raises(TypeError):
        node.exit_many([mine.pid, "not a pid"], "x")
    with pytest.raises(ValueError):
        node.exit_many([mine.pid, other.process().pid], "x")
    assert mine.alive

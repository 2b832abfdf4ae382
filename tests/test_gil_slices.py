"""The I/O thread runs Python in slices and lets other threads in between.

CPython hands the GIL to a waiting thread only after its switch interval (5 ms), and
not at all while the holder keeps dropping and retaking it in short C calls (every
poll does): during a storm, a receiver woken by the I/O thread could wait for the
whole storm. So once the I/O thread has been busy for a slice (200 us) without
waiting, it sleeps briefly before its next step (``zenmon.node.gil_yields``).
"""

from __future__ import annotations

import threading
import time

import pytest

from zenmon import iothread

pytestmark = pytest.mark.timeout(60)


def busy_steps(node, seconds: float, step: float = 0.00005) -> threading.Event:
    """Keep `node`'s I/O thread busy for `seconds` in steps of `step` seconds of
    Python, each posting the next (as a chunked nodedown does). -> set when done."""
    done = threading.Event()
    io = node._ctx.io
    until = time.monotonic() + seconds

    def one_step() -> None:
        end = time.monotonic() + step
        while time.monotonic() < end:
            pass
        if time.monotonic() < until:
            io.call(one_step)
        else:
            done.set()

    io.call(one_step)
    return done


def test_a_busy_io_thread_yields_every_slice(node):
    before = node.metrics()["zenmon.node.gil_yields"]
    done = busy_steps(node, 0.1)
    runs = []

    def probe() -> None:              # another thread wanting the GIL meanwhile
        while not done.is_set():
            runs.append(time.monotonic())
            time.sleep(0.0002)

    prober = threading.Thread(target=probe)
    prober.start()
    assert done.wait(10)
    prober.join(10)
    yields = node.metrics()["zenmon.node.gil_yields"] - before
    # 0.1 s busy in 200 us slices: hundreds of hand-overs (not one per step)
    assert 0.1 / iothread.GIL_SLICE / 4 < yields < 0.1 / iothread.GIL_SLICE * 2, yields
    assert len(runs) > 10, len(runs)


def test_an_idle_io_thread_does_not_yield(node):
    before = node.metrics()["zenmon.node.gil_yields"]
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:   # watched, not waited for: an idle node only
        time.sleep(0.01)
    # (a sweep stretched past a slice by a loaded machine may yield once or twice)
    assert node.metrics()["zenmon.node.gil_yields"] - before <= 10

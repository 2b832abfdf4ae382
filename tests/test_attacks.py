"""The attack suite: one peer trying to hurt a node (issue 9, items 7-11 and garbage).

Each test starts a victim node in its own OS process, has a well-behaved node (this
process) monitor some of its processes, replays one attack from a raw socket, and
then asserts the same things every time:

- the victim is alive and answers;
- its peak RSS during the attack grew by at most 64 MB;
- its I/O thread never stalled longer than ``heartbeat_interval``: a prober session
  measures HEARTBEAT round trips to its proxy all along, and a fake proxy the victim
  watches records the victim connector's heartbeats (sent from its sweeps every
  ``heartbeat_interval``): no gap between two may exceed twice that;
- the well-behaved node's monitors get exactly their DOWNs, no false ``nodedown``;
- the victim logged no internal error.

Run alone with ``pytest -m attack``.
"""

from __future__ import annotations

import contextlib
import random
import struct
from array import array
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

import zenmon
from helpers import receive_all, receive_until_sentinel, wait_for
from peers import (
    FakeProxy,
    Prober,
    RawSession,
    names_blob,
    peak_rss_mb,
    reset_peak_rss,
    rss_mb,
)
from remote import RawPeer, wait_remote
from zenmon import protocol as p
from zenmon.codec import encode_reasons

pytestmark = pytest.mark.attack

#: Both ends: fast sweeps, the default heartbeats (the stall bound is heartbeat_interval).
SETTINGS: dict[str, Any] = {
    "connector_sweep_interval": 10,
    "batcher_sweep_interval": 10,
    "demand_interval": 10,
    "heartbeat_interval": 200,
    "heartbeat_timeout": 1000,
    "connect_timeout": 1000,
}
MAX_GROWTH_MB = 64
WATCHED = 20
DEAD_KEY = 0x3FFF_0000_0000_0000      # generation bits no live pid has (no flag bits)
FAKE_INCARNATION = 7_000_000_000


@pytest.fixture
def victim(remote_node):
    return remote_node(settings=SETTINGS)


@pytest.fixture
def bystander(node_factory):
    """The well-behaved peer: a node in this process with monitors on the victim."""
    return node_factory(**SETTINGS)


@pytest.fixture
def attacker(zmq_context, victim):
    sessions: list[RawSession] = []

    def make(hwm: int = 1000) -> RawSession:
        session = RawSession(zmq_context, victim.address, hwm=hwm)
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        session.close()


def sync(session: RawSession, timeout: float = 60.0) -> None:
    """Return once the victim has handled everything `session` sent so far (one pipe,
    handled in order): a HEARTBEAT is answered with HEARTBEAT_ACK, or RESET when the
    session was dropped. Frames queued for the attacker meanwhile are thrown away."""
    session.send(session.heartbeat())
    deadline = _now() + timeout
    while _now() < deadline:
        frame = session.receive(timeout=1.0)
        if frame is None:
            continue
        header = p.unpack_header(frame)
        if header.session == session.session and header.type in (p.HEARTBEAT_ACK, p.RESET):
            return
    raise AssertionError("the victim never answered the attacker's sync heartbeat")


def _now() -> float:
    import time

    return time.monotonic()


@contextlib.contextmanager
def under_attack(victim: Any, bystander: zenmon.Node, context: zmq.Context[Any],
                 ) -> Iterator[dict[str, float]]:
    """Set up the bystander's monitors and the probes, run the attack (the body), then
    check the victim: alive, RSS, stalls, exactly the bystander's DOWNs."""
    sweep_probe = FakeProxy(FAKE_INCARNATION + 1)
    peer = RawPeer(context, sweep_probe)
    try:
        victim.monitor(99, [zenmon.Pid(peer.address, FAKE_INCARNATION + 1, 1)])
        wait_for(lambda: len(sweep_probe.heartbeats) >= 2, timeout=10)
        with _checked(victim, bystander, context, sweep_probe) as figures:
            yield figures
    finally:
        peer.close()


@contextlib.contextmanager
def _checked(victim: Any, bystander: zenmon.Node, context: zmq.Context[Any],
             sweep_probe: FakeProxy) -> Iterator[dict[str, float]]:
    interval = SETTINGS["heartbeat_interval"] / 1000
    targets = victim.spawn(WATCHED)
    watcher = bystander.process()
    refs = {watcher.monitor(pid): pid for pid in targets}
    wait_remote(victim, "zenmon.proxy.subscribers.size", lambda v: v >= WATCHED,
                what=f">= {WATCHED}")
    reset_peak_rss(victim.os_pid)
    baseline = rss_mb(victim.os_pid)
    prober = Prober(context, victim.address)
    started = _now()
    figures: dict[str, float] = {}
    yield figures
    longest = prober.stop()
    gap = sweep_probe.longest_gap(started)
    assert victim.running, f"victim died: {victim.stderr_text()}"
    assert victim.call("ping") == "pong"
    growth = peak_rss_mb(victim.os_pid) - baseline
    figures.update(longest_round_trip_ms=round(longest * 1000, 1),
                   longest_heartbeat_gap_ms=round(gap * 1000, 1),
                   rss_growth_mb=round(growth, 1), probes=len(prober.round_trips),
                   seconds=round(_now() - started, 2))
    print(f"\nattack figures: {figures}")
    assert growth <= MAX_GROWTH_MB, f"victim RSS grew by {growth:.0f} MB"
    assert longest < interval, (
        f"victim I/O thread stalled: a heartbeat round trip took {longest * 1000:.0f} ms")
    assert gap < 2 * interval, (
        f"victim I/O thread stalled: its sweeps sent no heartbeat for {gap * 1000:.0f} ms")
    assert prober.lost == 0, "the prober's session was dropped"
    # the bystander's monitors: exactly one DOWN each, the real reason, no nodedown
    victim.exit(targets, "after the attack")
    downs = receive_all(watcher, WATCHED, timeout=20)
    assert sorted(d.ref for d in downs) == sorted(refs)
    assert {d.reason for d in downs} == {"after the attack"}, downs[:3]
    assert receive_until_sentinel(watcher) == []
    assert bystander.compatibility_for_node(victim.address) == "compatible"
    assert victim.metric("zenmon.node.internal_errors") == 0, victim.stderr_text()


# ----------------------------------------------------------------------------- 7


def test_many_name_keys_for_one_process(victim, bystander, attacker, zmq_context):
    """120,000 name keys (12 frames of 10,000), all naming one process: O(1) each."""
    (target,) = victim.spawn(1, name="victim")
    session = attacker()
    flag = 1 << 62
    planned = session.plan(victim.incarnation)
    frames = []          # built first: the probes run in this process too
    for frame in range(12):
        keys = [flag | (frame * 10_000 + i + 1) for i in range(10_000)]
        frames.append(session.subscribe_frame(keys, dict.fromkeys(keys, "victim")))
    with under_attack(victim, bystander, zmq_context):
        session.hello(planned)   # here: a session silent for heartbeat_timeout is dropped
        for frame in frames:
            session.send(frame)
        sync(session)
        assert victim.metric("zenmon.proxy.subscribers.size") >= 120_000
        victim.exit([target], "victim exits")    # 120,000 death certificates, never acked
        sync(session)


# ----------------------------------------------------------------------------- 8


def test_nack_amplification(victim, bystander, attacker, zmq_context):
    """200,000 dead keys, never acked, then 1,000 NACKs asking for everything again."""
    session = attacker(hwm=100)
    planned = session.plan(victim.incarnation)
    frames = [session.subscribe_frame([DEAD_KEY | (frame * 10_000 + i + 1)
                                       for i in range(10_000)]) for frame in range(20)]
    with under_attack(victim, bystander, zmq_context):
        session.hello(planned)
        for frame in frames:
            session.send(frame)
        sync(session)
        # every summary sent (and unacked) before the NACKs come; heartbeats (sync)
        # keep the session alive meanwhile
        wait_for(lambda: sync(session) or victim.metric("zenmon.proxy.batcher.queue_len")
                 == 0, timeout=30, interval=0.05)
        nack = session.nack_deads(1)
        for _ in range(1000):
            session.send(nack)
        sync(session)


# ----------------------------------------------------------------------------- 9


def test_names_maps_larger_than_their_instructions(victim, bystander, attacker,
                                                   zmq_context):
    """SUBSCRIBE frames of one instruction and a names map of 300,000 entries (under the
    frame limit): the peer is dropped at the first; then frames over the frame limit:
    refused unread."""
    session = attacker(hwm=4)
    dropped = victim.metric("zenmon.wire.peers.dropped")
    planned = session.plan(victim.incarnation)
    key = struct.pack("<Q", 1 << 62 | 1)
    frames = [session.raw_subscribe_frame(1, key, names_blob(300_000)) for _ in range(20)]
    huge = session.raw_subscribe_frame(1, key, names_blob(1_000_000, "y" * 8))
    assert len(frames[0]) < zenmon.Config().max_frame_size < len(huge)
    with under_attack(victim, bystander, zmq_context):
        session.hello(planned)
        for frame in frames:
            session.send(frame)
        sync(session)
        assert victim.metric("zenmon.wire.peers.dropped") == dropped + 1
        sent = sum(session.send(huge, timeout=0.5) for _ in range(3))
        assert sent >= 1
        fresh = attacker()
        fresh.hello()                     # the victim still opens sessions
        sync(fresh)


# ---------------------------------------------------------------------------- 10


def test_hello_churn(victim, bystander, attacker, zmq_context):
    """5,000 HELLOs with new session ids against a node with 150,000 processes."""
    victim.spawn(150_000)
    session = attacker()
    with under_attack(victim, bystander, zmq_context):
        session.hello()
        for _ in range(5000):
            session.hello(wait=False)
        session.hello()
        sync(session)


# ---------------------------------------------------------------------------- 11


def test_dead_summary_that_fails_validation(victim, bystander, zmq_context):
    """A peer the victim watches resends a dead summary that decodes but is invalid
    (reason index out of range): the victim fires nodedown, it never stalls."""
    fake = FakeProxy(FAKE_INCARNATION)
    peer = RawPeer(zmq_context, fake)
    try:
        pid = zenmon.Pid(peer.address, FAKE_INCARNATION, 1)
        (ref,) = victim.monitor(7, [pid])
        wait_for(lambda: fake.keys == [1], timeout=10)
        bad = fake.frame(p.DEAD_SUMMARY, p.pack_dead_summary(
            1, 0, array("Q", [1]).tobytes(), array("I", [5]).tobytes(),
            encode_reasons(["a", "b"])))
        with under_attack(victim, bystander, zmq_context):
            for _ in range(200):
                peer.inject(bad)
            wait_for(lambda: any(d[1] == ref for d in victim.call("downs")), timeout=10,
                     message="the victim never fired the bad peer's monitor")
        (down,) = [d for d in victim.call("downs") if d[1] == ref]
        assert down[3] == "nodedown", down
    finally:
        peer.close()


# ----------------------------------------------------------------- garbage, oversized


def test_garbage_and_oversized_frames(victim, bystander, attacker, zmq_context):
    """Random bytes, headers with random types, bad sessions, multipart messages and
    frames over the frame limit, from several connections."""
    rng = random.Random(9)
    sessions = [attacker(hwm=10) for _ in range(4)]
    with under_attack(victim, bystander, zmq_context):
        for session in sessions:
            session.hello()
        huge = b"ZM" + bytes(zenmon.Config().max_frame_size + 1)
        for i, session in enumerate(sessions):
            for _ in range(500):
                kind = rng.choice([p.SUBSCRIBE, p.HEARTBEAT, p.NACK_DEADS, p.HELLO, 99])
                body = rng.randbytes(rng.randint(0, 300))
                if rng.random() < 0.5:
                    session.send(session.frame(kind, body))
                else:
                    session.send(rng.randbytes(rng.randint(0, 300)))
            session.socket.send_multipart([b"a", b"b", b"c"])
            if i == 0:
                for _ in range(2):
                    session.send(huge, timeout=0.5)
        for session in sessions[1:]:
            session.hello()
            sync(session)
        fresh = attacker()
        fresh.hello()
        sync(fresh)

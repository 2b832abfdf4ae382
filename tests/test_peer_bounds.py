"""What one peer may cost a node, one bound at a time (issue 9, items 7-12, 15, 16).

Regression tests for each defect, each against a real node (in a subprocess where
a second node is involved), plus a model test of the core's subscription table.
"""

from __future__ import annotations

import random
from array import array
from collections import deque

import pytest
import zmq

import zenmon
from helpers import assert_down, metric, receive_all, wait_for
from peers import RawSession, names_blob
from remote import REMOTE_SETTINGS, free_port, wait_remote
from zenmon import protocol as p
from zenmon._core import NAME_KEY_FLAG, Core

SUBSCRIBERS = "zenmon.proxy.subscribers.size"
DROPPED_PEERS = "zenmon.wire.peers.dropped"
DEAD_KEY = 0x3FFF_0000_0000_0000      # generation bits no live pid has (no flag bits)


@pytest.fixture
def session(zmq_context):
    sessions = []

    def make(address, hwm=1000):
        raw = RawSession(zmq_context, address, hwm=hwm)
        sessions.append(raw)
        return raw

    yield make
    for raw in sessions:
        raw.close()


def summaries(frames, session_id):
    """The DEAD_SUMMARY seqs among `frames` of one session, in arrival order."""
    seqs = []
    for frame in frames:
        header = p.unpack_header(frame)
        if header.type == p.DEAD_SUMMARY and header.session == session_id:
            seqs.append(p.unpack_dead_summary(frame)[0])
    return seqs


def heartbeat_round(raw, times=1):
    """`times` HEARTBEAT round trips on `raw` -> every frame received meanwhile."""
    frames = []
    for _ in range(times):
        raw.send(raw.heartbeat())
        while True:
            frame = raw.receive(timeout=10)
            assert frame is not None, "no HEARTBEAT_ACK"
            frames.append(frame)
            header = p.unpack_header(frame)
            if header.type in (p.HEARTBEAT_ACK, p.RESET) and header.session == raw.session:
                break
    return frames


# ------------------------------------------------------- core: the subscription table


def test_subscription_table_matches_a_model():
    """Random subscribe / unsubscribe / drop_peer / exit against a dict model: the core
    holds exactly the model's (peer, key) pairs, and an exit certifies exactly them."""
    rng = random.Random(11)
    core = Core(zenmon.Down, zenmon.DownBatch)
    pids = [core.process_new(deque()) for _ in range(40)]
    peers = [core.batcher_new() for _ in range(5)]
    model: dict[tuple[int, int], int] = {}      # (peer, key) -> pid id
    alive = set(pids)
    for step in range(20_000):
        op = rng.random()
        peer, batcher = rng.choice(peers)
        if op < 0.55:
            pid = rng.choice(pids)
            key = pid if rng.random() < 0.5 else NAME_KEY_FLAG | rng.randrange(1, 60)
            applied = core.subscribe(peer, key, pid)
            assert applied == (pid in alive)
            if applied:
                model.setdefault((peer, key), pid)
        elif op < 0.85:
            key = (rng.choice(pids) if rng.random() < 0.5
                   else NAME_KEY_FLAG | rng.randrange(1, 60))
            assert core.unsubscribe(peer, key) == ((peer, key) in model)
            model.pop((peer, key), None)
        elif op < 0.9:
            gone = [k for k in model if k[0] == peer]
            assert core.drop_peer(peer) == len(gone)
            for k in gone:
                del model[k]
        else:
            pid = rng.choice(pids)
            if pid not in alive:
                continue
            for _, b in peers:
                b.take(1 << 30)
            core.process_exit(pid, (None, "bye", None), "bye")
            alive.discard(pid)
            owed = sorted((pr, k) for (pr, k), v in model.items() if v == pid)
            got = []
            for pr, b in peers:
                keys, _, _ = b.take(1 << 30)
                got.extend((pr, k) for k in array("Q", keys))
            assert sorted(got) == owed
            for k in owed:
                del model[k]
            new = core.process_new(deque())
            pids[pids.index(pid)] = new
            alive.add(new)
        assert core.sizes()["subscribers"] == len(model)
        if step % 500 == 0:
            core.check_invariants()
        assert core.name_subscribers() == sum(
            1 for (_, k) in model if k & NAME_KEY_FLAG)
    for (peer, key) in model:
        assert core.has_subscription(peer, key)
    core.check_invariants()


# ----------------------------------------------------------------------- 8: unacked


@pytest.fixture
def bounded_victim(remote_node):
    return remote_node(settings={**REMOTE_SETTINGS, "batcher_chunk_size": 10,
                                 "max_unacked": 8, "resend_interval": 60_000})


def test_unacked_dead_summaries_are_bounded(bounded_victim, session):
    """A session that never acks gets max_unacked summaries, then nothing more until
    it acks; the rest wait in the batcher."""
    raw = session(bounded_victim.address)
    raw.hello()
    raw.send(raw.subscribe_frame([DEAD_KEY | i for i in range(1, 201)]))
    frames = heartbeat_round(raw)
    wait_remote(bounded_victim, "zenmon.proxy.batcher.sweep", lambda v: v >= 8, what=">= 8")
    frames += heartbeat_round(raw, times=30)        # 30 round trips: many sweeps
    assert summaries(frames, raw.session) == list(range(1, 9))
    assert bounded_victim.metric("zenmon.proxy.batcher.sweep") == 8
    assert bounded_victim.metric("zenmon.proxy.batcher.queue_len") == 200 - 80
    # the summaries sent and not acknowledged yet, kept for resending (not the batcher)
    assert bounded_victim.metric("zenmon.proxy.message_queue_len") == 8
    # an ack lets the rest flow
    raw.send(raw.frame(p.HEARTBEAT, p.pack_seq_ack(raw.seq, 8)))
    wait_remote(bounded_victim, "zenmon.proxy.batcher.sweep", lambda v: v >= 16,
                what=">= 16")


def test_resends_are_rate_limited(bounded_victim, session):
    """50 NACKs get one resend burst per resend_interval (here a minute: one burst)."""
    raw = session(bounded_victim.address)
    raw.hello()
    raw.send(raw.subscribe_frame([DEAD_KEY | i for i in range(1, 201)]))
    wait_remote(bounded_victim, "zenmon.proxy.batcher.sweep", lambda v: v >= 8, what=">= 8")
    frames = heartbeat_round(raw)
    for _ in range(50):
        raw.send(raw.nack_deads(1))
    frames += heartbeat_round(raw, times=5)
    seqs = summaries(frames, raw.session)
    assert len(seqs) <= 16, f"{len(seqs)} dead summaries for 8 unacked and 50 NACKs"
    assert sorted(set(seqs)) == list(range(1, 9))


# ------------------------------------------------------------ 9: frames and batches


@pytest.fixture
def victim(remote_node):
    return remote_node(settings={**REMOTE_SETTINGS, "max_batch": 100})


def test_subscribe_over_max_batch_drops_the_peer(victim, session):
    raw = session(victim.address)
    raw.hello()
    raw.send(raw.subscribe_frame([DEAD_KEY | i for i in range(1, 102)]))
    frames = heartbeat_round(raw)
    assert p.RESET in [p.unpack_header(f).type for f in frames]
    wait_remote(victim, DROPPED_PEERS, lambda v: v == 1, what="== 1")
    assert victim.metric(SUBSCRIBERS) == 0
    wait_for(lambda: "max_batch" in victim.stderr_text(), timeout=5,
             message="the drop was not logged with its reason")
    # a session at the bound is fine
    raw.hello()
    raw.send(raw.subscribe_frame([DEAD_KEY | i for i in range(1, 101)]))
    heartbeat_round(raw)
    assert victim.metric(DROPPED_PEERS) == 1


def test_names_map_longer_than_its_instructions_drops_the_peer(victim, session):
    raw = session(victim.address)
    raw.hello()
    (pid,) = victim.spawn(1, name="x")
    raw.send(raw.raw_subscribe_frame(1, array("Q", [NAME_KEY_FLAG | 1]).tobytes(),
                                     names_blob(2)))
    frames = heartbeat_round(raw)
    assert p.RESET in [p.unpack_header(f).type for f in frames]
    wait_remote(victim, DROPPED_PEERS, lambda v: v == 1, what="== 1")
    assert victim.metric(SUBSCRIBERS) == 0


def test_frames_over_max_frame_size_are_refused(remote_node, session):
    victim = remote_node(settings={**REMOTE_SETTINGS, "max_frame_size": 65536})
    raw = session(victim.address)
    raw.hello()
    raw.send(raw.raw_subscribe_frame(1, array("Q", [NAME_KEY_FLAG | 1]).tobytes(),
                                     b"\0" * 70_000))
    raw.hello()          # the big frame cost its connection; a new session works
    assert victim.metric(SUBSCRIBERS) == 0


def test_config_bounds_are_validated():
    with pytest.raises(ValueError):
        zenmon.Config(max_frame_size=1024)
    with pytest.raises(ValueError):
        zenmon.Config(max_batch=0)
    with pytest.raises(ValueError):
        zenmon.Config(rcvhwm=0)
    config = zenmon.Config()
    assert config.max_batch >= config.connector_chunk_size
    assert config.max_batch >= config.batcher_chunk_size


# ------------------------------------------------------------ 10: per-peer teardown


def test_new_session_drops_only_that_peers_subscriptions(remote, session):
    pids = remote.spawn(50)
    a, b = session(remote.address), session(remote.address)
    for raw in (a, b):
        raw.hello()
        raw.send(raw.subscribe_frame([pid.id for pid in pids]))
        heartbeat_round(raw)
    assert remote.metric(SUBSCRIBERS) == 100
    a.hello()                                       # a new session: a's subscriptions go
    wait_remote(remote, SUBSCRIBERS, lambda v: v == 50, what="== 50")
    remote.exit(pids[:10], "bye")
    frames = []
    wait_for(lambda: frames.extend(heartbeat_round(b)) or summaries(frames, b.session),
             timeout=10)
    keys = []
    for frame in frames:
        if p.unpack_header(frame).type == p.DEAD_SUMMARY:
            keys.extend(p.unpack_dead_summary(frame)[2].cast("Q"))
    assert sorted(keys) == sorted(pid.id for pid in pids[:10])
    assert remote.metric(SUBSCRIBERS) == 40


# ------------------------------------------------------------- 12: bad addresses


@pytest.mark.parametrize("address", ["not-an-address", "tcp://127.0.0.1", "tcp://:5",
                                     "tcp://127.0.0.1:0", "tcp://127.0.0.1:99999",
                                     "udp://127.0.0.1:5", "tcp://[zz]:5", "tcp://a b:5",
                                     "tcp://127.0.0.1:5?key=short"])
def test_malformed_addresses_are_refused_at_the_call(node, address):
    watcher = node.process()
    with pytest.raises(ValueError):
        watcher.monitor(("name", address))
    with pytest.raises(ValueError):
        watcher.monitor(zenmon.Pid(address, 1, 1))
    with pytest.raises(TypeError):
        watcher.monitor(("name", None))
    assert metric(node, "zenmon.local.references.size") == 0
    assert metric(node, "zenmon.local.connectors.size") == 0


def test_remote_names_must_fit_the_wire(node):
    watcher = node.process()
    with pytest.raises(ValueError):
        watcher.monitor(("x" * (p.MAX_NAME + 1), "tcp://127.0.0.1:5"))
    with pytest.raises(ValueError):
        watcher.monitor(("\ud800", "tcp://127.0.0.1:5"))


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "localhost"])
def test_well_formed_unreachable_address_fires_nodedown(node_factory, host):
    node = node_factory(**{**REMOTE_SETTINGS, "connect_timeout": 300})
    watcher = node.process()
    address = f"tcp://{host}:{free_port()}"
    by_name = watcher.monitor(("name", address))
    by_pid = watcher.monitor(zenmon.Pid(address, 1, 1))
    downs = {d.ref: d for d in receive_all(watcher, 2, timeout=5)}
    assert_down(downs[by_name], by_name, ("name", address), "nodedown")
    assert_down(downs[by_pid], by_pid, zenmon.Pid(address, 1, 1), "nodedown")
    assert metric(node, "zenmon.node.internal_errors") == 0


# --------------------------------------------------------- 15: name tables do not leak


def test_name_tables_return_to_baseline(node_factory, remote):
    """10,000 unique names, each monitored, fired and gone: both nodes' name tables
    (connector names, proxy name subscriptions) are back where they started."""
    local = node_factory(**{**REMOTE_SETTINGS, "dispatch_mode": "unlimited"})
    watcher = local.process()
    names = [f"n{i}" for i in range(10_000)]
    live = names[:2000]
    for name in live:
        remote.spawn(1, name=name)
    for round_ in range(2):
        batch = names[round_ * 5000:(round_ + 1) * 5000]
        refs = [watcher.monitor((name, remote.address)) for name in batch]
        if round_ == 0:
            wait_remote(remote, "zenmon.proxy.name_subscribers.size",
                        lambda v: v == 2000, what="== 2000")
            remote.exit("all", "gone")
        downs = receive_all(watcher, len(refs), timeout=30)
        assert sorted(d.ref for d in downs) == sorted(refs)
    wait_for(lambda: metric(local, "zenmon.local.connector.names.size") == 0, timeout=10,
             message=lambda: f"names {metric(local, 'zenmon.local.connector.names.size')}")
    assert remote.metric("zenmon.proxy.name_subscribers.size") == 0
    assert remote.metric(SUBSCRIBERS) == 0
    assert metric(local, "zenmon.local.targets.size") == 0
    # a demonitored name goes too
    ref = watcher.monitor(("n1", remote.address))
    assert metric(local, "zenmon.local.connector.names.size") == 1
    watcher.demonitor(ref)
    wait_for(lambda: metric(local, "zenmon.local.connector.names.size") == 0, timeout=10)


# ------------------------------------------------------------------- 16: counters


def test_send_failures_are_counted_apart(node_factory):
    node = node_factory(**{**REMOTE_SETTINGS, "sndhwm": 1, "heartbeat_interval": 20,
                           "heartbeat_timeout": 200, "connect_timeout": 5000})
    watcher = node.process()
    watcher.monitor(zenmon.Pid(f"tcp://127.0.0.1:{free_port()}", 1, 1))
    wait_for(lambda: metric(node, "zenmon.wire.frames.unsent") >= 1, timeout=10)
    assert metric(node, "zenmon.wire.frames.dropped") == 0


@pytest.fixture
def curve_victim(remote_node):
    secret, public = zenmon.Curve.generate()
    return remote_node(curve={"secret": secret, "public": public, "authorized": []})


@pytest.mark.parametrize("how", ["null-mechanism", "wrong-server-key"])
def test_refused_counts_failed_curve_handshakes(curve_victim, zmq_context, how):
    refused = curve_victim.metric("zenmon.wire.peers.refused")
    dealer = zmq_context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    if how == "wrong-server-key":
        secret, public = zenmon.Curve.generate()
        zenmon.Curve(secret, public).dial(dealer, zenmon.Curve.generate()[1])
    try:
        dealer.connect(curve_victim.address.partition("?")[0])
        dealer.send(p.pack(p.HELLO, 1, 0, 5, b"tcp://rogue"))
        wait_remote(curve_victim, "zenmon.wire.peers.refused", lambda v: v > refused,
                    what=f"> {refused}")
    finally:
        dealer.close(linger=0)
    assert curve_victim.metric("zenmon.proxy.peers.size") == 0


def test_long_names_are_split_to_fit_the_frame_limit(node_factory, remote_node):
    """A sweep whose names would make a SUBSCRIBE larger than max_frame_size is sent
    as several in order: every monitor still resolves, none is stuck."""
    settings = {**REMOTE_SETTINGS, "max_frame_size": 65536}
    remote = remote_node(settings=settings)
    local = node_factory(**settings)
    watcher = local.process()
    names = [f"{i:04d}" + "n" * 1000 for i in range(200)]
    (pid,) = remote.spawn(1, name=names[7])
    refs = {watcher.monitor((name, remote.address)): name for name in names}
    noprocs = receive_all(watcher, 199, timeout=10)
    assert {d.reason for d in noprocs} == {"noproc"}
    wait_remote(remote, SUBSCRIBERS, lambda v: v == 1, what="== 1")
    remote.exit([pid], "long name")
    (down,) = receive_all(watcher, 1, timeout=10)
    assert refs[down.ref] == names[7] and down.reason == "long name"
    assert metric(local, "zenmon.local.connector.sweep") < metric(
        local, "zenmon.wire.messages.sent")

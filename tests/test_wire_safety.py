"""Bad input from the network is counted and dropped; the node keeps serving.

Brief, semantics 11 and "Transport and security": garbage frames, wrong
protocol versions, truncated headers, malformed or oversized batches, unknown
sessions and multi-frame messages, sent to a node's ROUTER (by a raw DEALER) or
answered to its connector (by a raw ROUTER posing as a peer), end up in
``zenmon.wire.frames.dropped``. Reasons are decoded with the safe codec, never
pickle. With CURVE only peers on the allow-list can subscribe or send death
notices; the others are refused (``zenmon.wire.peers.refused``) and their
monitors fire ``"nodedown"``.
"""

from __future__ import annotations

import os
import pickle
import random
import time
from array import array

import msgpack
import pytest
import zmq

import zenmon
from helpers import assert_down, metric, receive_all, receive_until_sentinel, wait_for
from peers import FakeProxy
from remote import (
    REMOTE_SETTINGS,
    RawPeer,
    assert_nothing_more_remote,
    random_bytes,
    wait_remote,
)
from zenmon import protocol as p
from zenmon._core import NAME_KEY_FLAG

DROPPED = "zenmon.wire.frames.dropped"
REFUSED = "zenmon.wire.peers.refused"
SUBSCRIBERS = "zenmon.proxy.subscribers.size"
FAKE_INCARNATION = 7_000_000_000




@pytest.fixture
def raw_peer(zmq_context):
    """Factory of raw ROUTER peers (closed at teardown)."""
    peers = []

    def make(reply=lambda frame: []):
        peer = RawPeer(zmq_context, reply)
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        peer.close()


def assert_node_serves_local_monitors(node):
    watcher, target = node.process(), node.process()
    ref = watcher.monitor(target.pid)
    target.exit("still serving")
    assert_down(watcher.receive(timeout=5), ref, target.pid, "still serving")


def assert_node_serves_remote_monitors(node, remote):
    watcher = node.process()
    (pid,) = remote.spawn(1)
    ref = watcher.monitor(pid)
    wait_remote(remote, SUBSCRIBERS, lambda v: v >= 1, what=">= 1")
    remote.exit([pid], "still serving")
    assert_down(watcher.receive(timeout=5), ref, pid, "still serving")


# ------------------------------------------------------- garbage answered to a connector


def _garbage_replies():
    rng = random.Random(1234)
    header = p.HEADER.size
    return {
        "random-bytes": lambda frame: [random_bytes(rng)],
        "empty-frame": lambda frame: [b""],
        "truncated-header": lambda frame: [frame[: header // 2]],
        "bad-magic": lambda frame: [b"XX" + frame[2:header]],
        "unknown-type": lambda frame: [p.pack(99, 1, p.unpack_header(frame).sender,
                                              p.unpack_header(frame).session)],
        "wrong-session": lambda frame: [p.pack(p.WELCOME, 1, p.unpack_header(frame).sender,
                                               p.unpack_header(frame).session ^ 1)],
        "connector-type": lambda frame: [frame],   # its own HELLO echoed back
    }


@pytest.mark.parametrize("kind", list(_garbage_replies()))
def test_peer_speaking_garbage_is_incompatible(local, raw_peer, kind):
    peer = raw_peer(_garbage_replies()[kind])
    dropped = metric(local, DROPPED)
    assert local.connect(peer.address) == "incompatible"
    assert peer.received, "the connector never dialled the raw peer"
    wait_for(lambda: metric(local, DROPPED) > dropped,
             message=lambda: f"{DROPPED} still {metric(local, DROPPED)}")
    assert local.compatibility_for_node(peer.address) == "incompatible"
    watcher = local.process()
    ghost = zenmon.Pid(peer.address, 1, 1)
    ref = watcher.monitor(ghost)
    assert_down(watcher.receive(timeout=5), ref, ghost, "nodedown")
    assert_node_serves_local_monitors(local)


def test_garbage_peer_among_good_ones(local, remote, raw_peer):
    """One bad peer does not disturb the links to the others."""
    rng = random.Random(99)
    peer = raw_peer(lambda frame: [random_bytes(rng, 1, 5000) for _ in range(3)])
    watcher = local.process()
    (good,) = remote.spawn(1)
    good_ref = watcher.monitor(good)
    bad_ref = watcher.monitor(zenmon.Pid(peer.address, 1, 1))
    assert_down(watcher.receive(timeout=5), bad_ref, zenmon.Pid(peer.address, 1, 1), "nodedown")
    wait_remote(remote, SUBSCRIBERS, lambda v: v == 1, what="== 1")
    remote.exit([good], "good")
    assert_down(watcher.receive(timeout=5), good_ref, good, "good")
    assert metric(local, DROPPED) > 0


class LateFrameProxy(FakeProxy):
    """A proxy that answers each new session's HELLO with a frame of the session
    before it first (still queued for our routing id when the link came back), then
    its WELCOME."""

    def __init__(self) -> None:
        super().__init__()
        self.sessions: list[int] = []

    def __call__(self, frame: bytes) -> list[bytes]:
        header = p.unpack_header(frame)
        answers = super().__call__(frame)
        if header.type == p.HELLO and header.session not in self.sessions:
            if self.sessions:
                late = p.pack(p.HEARTBEAT_ACK, self.incarnation, header.sender,
                              self.sessions[-1], p.pack_seq_ack(0, 0))
                answers = [late, *answers]
            self.sessions.append(header.session)
        return answers


def test_a_late_frame_of_the_previous_session_is_not_incompatible(local, raw_peer):
    """After a peer is lost and found again, frames of the old session may still be
    on their way to the connector's routing id: dropped and counted, never read as
    an incompatible peer (that penalised the peer and fired monitors "nodedown";
    seen after a host loss across namespace hosts)."""
    fake = LateFrameProxy()
    peer = raw_peer(fake)
    assert local.connect(peer.address) == "compatible"
    peer.inject(fake.frame(p.RESET))              # the session ends
    wait_for(lambda: local.compatibility_for_node(peer.address) == "incompatible")
    dropped = metric(local, DROPPED)
    assert local.connect(peer.address) == "compatible"
    assert len(fake.sessions) == 2
    wait_for(lambda: metric(local, DROPPED) > dropped)     # the late frame, counted
    watcher = local.process()
    ghost = zenmon.Pid(peer.address, fake.incarnation, 5)
    watcher.monitor(ghost)
    wait_for(lambda: 5 in fake.keys, message="the monitor never reached the peer")


def test_wrong_protocol_version_is_incompatible(local, raw_peer):
    def reply(frame):
        header = p.unpack_header(frame)
        return [p.HEADER.pack(b"ZM", 99, p.WELCOME, 1, header.sender, header.session)]

    peer = raw_peer(reply)
    dropped = metric(local, DROPPED)
    assert local.connect(peer.address) == "incompatible"
    assert metric(local, DROPPED) > dropped
    watcher = local.process()
    ref = watcher.monitor(("anyone", peer.address))
    assert_down(watcher.receive(timeout=5), ref, ("anyone", peer.address), "nodedown")
    assert_node_serves_local_monitors(local)


def test_silent_peer_is_unavailable(local, raw_peer):
    peer = raw_peer()  # accepts the connection, never answers
    started = time.monotonic()
    assert local.connect(peer.address) == "incompatible"
    assert time.monotonic() - started < local.config.connect_timeout / 1000 + 1.5
    watcher = local.process()
    ghost = zenmon.Pid(peer.address, 1, 1)
    ref = watcher.monitor(ghost)
    assert_down(watcher.receive(timeout=5), ref, ghost, "nodedown")
    assert_node_serves_local_monitors(local)


def test_incompatible_peer_is_not_retried_during_its_penalty(local, raw_peer):
    rng = random.Random(5)
    peer = raw_peer(lambda frame: [random_bytes(rng)])
    assert local.connect(peer.address) == "incompatible"
    heard = len(peer.received)
    watcher = local.process()
    ghost = zenmon.Pid(peer.address, 1, 1)
    ref = watcher.monitor(ghost)   # within the first penalty (1 s)
    assert_down(watcher.receive(timeout=0.9), ref, ghost, "nodedown")
    assert len(peer.received) == heard, "the connector dialled again during its penalty"
    # connect() always tries at once, penalty or not
    assert local.connect(peer.address) == "incompatible"
    assert len(peer.received) > heard


# ---------------------------------------------------- a scripted peer sends bad summaries


class Evil:
    """Unpickling this would create a file: it must never happen."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_bad_dead_summaries_are_dropped_never_unpickled(local, raw_peer, tmp_path):
    fake = FakeProxy()
    peer = raw_peer(fake)
    watcher = local.process()
    pids = [zenmon.Pid(peer.address, FAKE_INCARNATION, i) for i in range(1, 6)]
    refs = {watcher.monitor(pid): pid for pid in pids}
    wait_for(lambda: len(fake.keys) == 5, message=lambda: f"keys {fake.keys}")
    keys = sorted(fake.keys)
    assert keys == sorted(pid.id for pid in pids)
    by_key = {pid.id: ref for ref, pid in refs.items()}

    # the scripted peer is right: a valid dead summary fires a DOWN
    peer.inject(fake.dead_summary(1, [keys[0]], ["valid"]))
    assert_down(watcher.receive(timeout=5), by_key[keys[0]], pids[0], "valid")

    dropped = metric(local, DROPPED)
    rng = random.Random(7)
    bad = [
        random_bytes(rng),
        b"",
        fake.frame(p.DEAD_SUMMARY)[:10],                                  # truncated header
        p.HEADER.pack(b"ZM", 99, p.DEAD_SUMMARY, FAKE_INCARNATION,
                      fake.connector_incarnation, fake.session),          # other version
        fake.frame(p.HEARTBEAT_ACK, b"\x00" * 3),                         # bad seq/ack body
        fake.frame(99),                                                   # unknown type
        fake.frame(p.HELLO),                                              # connector type
        p.pack(p.DEAD_SUMMARY, FAKE_INCARNATION, fake.connector_incarnation,
               fake.session ^ 1, b""),                                    # stale session
        p.pack(p.DEAD_SUMMARY, FAKE_INCARNATION, fake.connector_incarnation + 1,
               fake.session, b""),                                        # other incarnation
    ]
    peer.inject(*bad)
    peer.inject_multipart([b"part one", b"part two", b"part three"])
    wait_for(lambda: metric(local, DROPPED) >= dropped + len(bad),
             message=lambda: f"{DROPPED} {metric(local, DROPPED) - dropped} of {len(bad)}")
    # none of that fired anything, and the session is still up
    assert local.compatibility_for_node(peer.address) == "compatible"

    # a summary for a key nobody here watches fires nothing; the next one still works
    peer.inject(fake.dead_summary(2, [123_456_789], ["bogus"]))
    peer.inject(fake.dead_summary(3, [keys[1]], ["second"]))
    assert_down(watcher.receive(timeout=5), by_key[keys[1]], pids[1], "second")

    # reasons that are not the safe codec (a pickle): dropped, never unpickled; the
    # connector can't be sure of the stream any more, so the rest fire nodedown
    marker = tmp_path / "unpickled"
    dropped = metric(local, DROPPED)
    peer.inject(fake.dead_summary(4, [keys[2]],
                                  raw_reasons=pickle.dumps([Evil(str(marker))])))
    downs = receive_all(watcher, 3, timeout=5)
    assert {d.ref for d in downs} == {by_key[k] for k in keys[2:]}
    assert all(d.reason == "nodedown" for d in downs), downs
    assert not os.path.exists(marker), "a reason was unpickled"
    assert metric(local, DROPPED) > dropped
    wait_for(lambda: local.compatibility_for_node(peer.address) == "incompatible")
    assert receive_until_sentinel(watcher) == []
    assert_node_serves_local_monitors(local)


@pytest.mark.parametrize("body", [
    b"\x01\x02",                                                      # body too short
    p.pack_seq_ack(1, 0) + p.COUNT.pack(2**40) + b"\0" * 8,            # oversized count
    p.pack_seq_ack(1, 0) + p.COUNT.pack(1000) + b"\0" * 80,            # count > frame
], ids=["too-short", "oversized-count", "count-over-frame"])
def test_malformed_dead_summary_of_the_session_fires_nodedown(local, raw_peer, body):
    """A dead summary of the live session that cannot be applied would stall the
    stream for good if dropped (the peer resends the same): nodedown instead."""
    fake = FakeProxy()
    peer = raw_peer(fake)
    watcher = local.process()
    pid = zenmon.Pid(peer.address, FAKE_INCARNATION, 1)
    ref = watcher.monitor(pid)
    wait_for(lambda: fake.keys == [1])
    dropped = metric(local, DROPPED)
    peer.inject(fake.frame(p.DEAD_SUMMARY, body))
    assert_down(watcher.receive(timeout=5), ref, pid, "nodedown")
    assert metric(local, DROPPED) > dropped


@pytest.mark.parametrize("raw_reasons", [
    msgpack.packb({"not": "a list"}),
    b"\xc1",                             # never valid msgpack
    msgpack.packb([msgpack.ExtType(42, b"x")]),   # unknown extension type
    msgpack.packb(["x"] * 2)[:-1],       # cut short
], ids=["not-a-list", "invalid-byte", "unknown-ext", "truncated"])
def test_undecodable_reasons_fire_nodedown_not_garbage(local, raw_peer, raw_reasons):
    fake = FakeProxy()
    peer = raw_peer(fake)
    watcher = local.process()
    pid = zenmon.Pid(peer.address, FAKE_INCARNATION, 1)
    ref = watcher.monitor(pid)
    wait_for(lambda: fake.keys == [1])
    dropped = metric(local, DROPPED)
    peer.inject(fake.dead_summary(1, [1], raw_reasons=raw_reasons))
    assert_down(watcher.receive(timeout=5), ref, pid, "nodedown")
    assert metric(local, DROPPED) > dropped


# ------------------------------------------------------ garbage sent into a node's ROUTER


class RawDealer:
    """A raw DEALER dialling a node's ROUTER (a connector that misbehaves)."""

    def __init__(self, context, address):
        self.socket = context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(address)
        self.incarnation = random.getrandbits(40) + 1

    def send(self, *frames):
        for frame in frames:
            self.socket.send(frame)

    def receive(self, timeout=5.0):
        """Next frame, or AssertionError after `timeout`."""
        if not self.socket.poll(int(timeout * 1000)):
            raise AssertionError("no answer from the node")
        return self.socket.recv()

    def drain(self):
        while self.socket.poll(0):
            self.socket.recv()

    def hello(self, node_incarnation=0):
        """Open a session -> (session, proxy incarnation)."""
        session = random.getrandbits(62) + 1
        self.send(p.pack(p.HELLO, self.incarnation, node_incarnation, session, b"tcp://rogue"))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            header = p.unpack_header(self.receive())
            if header.type == p.WELCOME and header.session == session:
                return session, header.sender
        raise AssertionError("no WELCOME")

    def frame(self, kind, session, proxy_incarnation, body=b""):
        return p.pack(kind, self.incarnation, proxy_incarnation, session, body)

    def close(self):
        self.socket.close(linger=0)


@pytest.fixture
def raw_dealer(zmq_context):
    dealers = []

    def make(address):
        dealer = RawDealer(zmq_context, address)
        dealers.append(dealer)
        return dealer

    yield make
    for dealer in dealers:
        dealer.close()


def test_garbage_into_a_nodes_router_is_counted_and_dropped(local, remote, raw_dealer):
    dealer = raw_dealer(remote.address)
    rng = random.Random(2024)
    dropped = remote.metric(DROPPED)
    hello = p.pack(p.HELLO, dealer.incarnation, 0, 1, b"tcp://rogue")
    garbage = [random_bytes(rng, 1, 3000) for _ in range(100)]
    garbage += [b""]
    garbage += [hello[:k] for k in (1, 2, 3, 10, p.HEADER.size - 1)]       # truncated headers
    garbage += [b"XX" + hello[2:]]                                           # bad magic
    garbage += [p.HEADER.pack(b"ZM", 99, p.HELLO, 1, 0, 5) + b"x"]          # other version
    garbage += [p.pack(99, dealer.incarnation, 0, 5)]                        # unknown type
    garbage += [p.pack(p.WELCOME, dealer.incarnation, 0, 5)]                 # proxy-only type
    garbage += [p.pack(p.SUBSCRIBE, dealer.incarnation, remote.incarnation, 12345,
                       p.pack_subscribe(1, 0, b"\1" + b"\0" * 7, {}))]       # unknown session
    garbage += [p.pack(p.HEARTBEAT, dealer.incarnation, remote.incarnation, 12345,
                       p.pack_seq_ack(0, 0))]                                # unknown session
    dealer.send(*garbage)
    multipart = [[b"a", b"b"], [b"x", hello, b"z"], [hello, hello]]
    for parts in multipart:
        dealer.socket.send_multipart(parts)
    expected = len(garbage) + len(multipart)

    # valid header, bad body: each inside a fresh, valid session
    bodies = [
        (p.SUBSCRIBE, p.pack_seq_ack(1, 0) + p.COUNT.pack(2**62)),                 # oversized
        (p.SUBSCRIBE, p.pack_seq_ack(1, 0) + p.COUNT.pack(1000) + b"\0" * 16),     # > frame
        (p.SUBSCRIBE, b"\x01\x02\x03"),                                             # too short
        (p.SUBSCRIBE, p.pack_seq_ack(1, 0) + p.COUNT.pack(1)
         + array("Q", [NAME_KEY_FLAG | 1]).tobytes() + b"\xc1\xc1"),                    # bad names
        (p.SUBSCRIBE, p.pack_seq_ack(1, 0) + p.COUNT.pack(1)
         + array("Q", [NAME_KEY_FLAG | 1]).tobytes() + msgpack.packb([1, 2])),          # names list
        (p.HEARTBEAT, b"\x00" * 5),                                                 # bad length
        (p.NACK_DEADS, b"\x00" * 17),                                               # bad length
    ]
    for kind, body in bodies:
        session, proxy_incarnation = dealer.hello()
        dealer.send(dealer.frame(kind, session, proxy_incarnation, body))
    expected += len(bodies)
    wait_remote(remote, DROPPED, lambda v: v >= dropped + expected, timeout=10,
                what=f">= {dropped} + {expected}")
    dealer.drain()
    assert remote.call("ping") == "pong"
    # the node keeps serving remote monitors, and the rogue sessions leave nothing behind
    assert_node_serves_remote_monitors(local, remote)
    wait_remote(remote, "zenmon.proxy.peers.size", lambda v: v == 1, what="== 1 (ours)")
    wait_remote(remote, SUBSCRIBERS, lambda v: v == 0, what="== 0")


def test_rogue_session_subscriptions_are_dropped_when_it_goes_silent(local, remote_node,
                                                                      raw_dealer):
    # connected but silent reads as a paused Python: dropped after pause_timeout
    remote = remote_node(settings={**REMOTE_SETTINGS, "pause_timeout": 1000})
    pids = remote.spawn(10)
    dealer = raw_dealer(remote.address)
    session, proxy_incarnation = dealer.hello()
    instructions = array("Q", [pid.id for pid in pids]).tobytes()
    dealer.send(dealer.frame(p.SUBSCRIBE, session, proxy_incarnation,
                             p.pack_subscribe(1, 0, instructions, {})))
    wait_remote(remote, SUBSCRIBERS, lambda v: v == 10, what="== 10")
    # never a heartbeat again: dropped after pause_timeout
    wait_remote(remote, SUBSCRIBERS, lambda v: v == 0, timeout=1 + 3, what="== 0")
    wait_remote(remote, "zenmon.proxy.peers.size", lambda v: v == 0, what="== 0")
    remote.exit(pids, "after the rogue left")
    wait_remote(remote, "zenmon.proxy.batcher.queue_len", lambda v: v == 0, what="== 0")
    assert_node_serves_remote_monitors(local, remote)


def test_hello_for_another_incarnation_is_reset(remote, raw_dealer):
    dealer = raw_dealer(remote.address)
    session = 77
    dealer.send(p.pack(p.HELLO, dealer.incarnation, remote.incarnation - 1, session, b"x"))
    header = p.unpack_header(dealer.receive())
    assert header.type == p.RESET and header.session == session
    assert remote.metric("zenmon.proxy.peers.size") == 0


def test_garbage_into_the_router_of_this_process_node(local, raw_dealer, remote):
    """The same, against a node in this process, watched from a subprocess."""
    dealer = raw_dealer(local.address)
    rng = random.Random(11)
    dropped = metric(local, DROPPED)
    frames = [random_bytes(rng, 0, 500) for _ in range(200)]
    dealer.send(*frames)
    wait_for(lambda: metric(local, DROPPED) >= dropped + len(frames),
             message=lambda: f"{DROPPED} {metric(local, DROPPED) - dropped} of {len(frames)}")
    target = local.process()
    (ref,) = remote.monitor(0, [target.pid])
    wait_for(lambda: metric(local, SUBSCRIBERS) == 1)
    target.exit("served")
    wait_for(lambda: remote.downs_count() == 1, interval=0.02)
    assert [d[1:] for d in remote.downs()] == [(ref, target.pid, "served")]


# ------------------------------------------------------------------------------ CURVE


def key_pair(public_has=None, public_lacks="&"):
    """A CURVE key pair whose public key has (or lacks) some Z85 characters."""
    for _ in range(10_000):
        secret, public = zenmon.Curve.generate()
        text = public.decode("ascii") if isinstance(public, bytes) else public
        if public_has is not None and public_has not in text:
            continue
        if public_lacks and any(ch in text for ch in public_lacks):
            continue
        return secret, public
    raise AssertionError(f"no key with {public_has!r} and without {public_lacks!r}")


@pytest.fixture
def keys():
    """Three key pairs: the server's, an authorized client's, a stranger's.

    Their public keys avoid "&" (see test_curve_address_with_any_z85_key), so that
    these tests check one thing each.
    """
    return {name: key_pair() for name in ("server", "client", "stranger")}


@pytest.fixture
def curve_server(remote_node, keys):
    secret, public = keys["server"]
    return remote_node(curve={"secret": secret, "public": public,
                              "authorized": [keys["client"][1]]})


def test_curve_address_carries_the_public_key(curve_server, keys):
    public = keys["server"][1]
    public = public.decode() if isinstance(public, bytes) else public
    assert curve_server.address.endswith("?key=" + public)


@pytest.mark.parametrize("char", ["&", "?", "=", "@", ">", "<", "#", "%", "/", ":"])
def test_curve_address_with_any_z85_key(node_factory, remote_node, char):
    """A public key is any Z85 string; the address must carry every one of them."""
    # one special character per case ("&" only in its own case)
    secret, public = key_pair(public_has=char, public_lacks="" if char == "&" else "&")
    client_keys = key_pair()
    server = remote_node(curve={"secret": secret, "public": public,
                                "authorized": [client_keys[1]]})
    client = node_factory(curve=zenmon.Curve(*client_keys), **REMOTE_SETTINGS)
    assert client.connect(server.address) == "compatible", server.address
    (pid,) = server.spawn(1)
    assert zenmon.Pid.parse(str(pid)) == pid
    watcher = client.process()
    ref = watcher.monitor(pid)
    wait_remote(server, SUBSCRIBERS, lambda v: v == 1, what="== 1")
    server.exit([pid], "any key")
    assert_down(watcher.receive(timeout=5), ref, pid, "any key")


def test_curve_authorized_peer_works(node_factory, curve_server, keys):
    client = node_factory(curve=zenmon.Curve(*keys["client"]), **REMOTE_SETTINGS)
    assert client.connect(curve_server.address) == "compatible"
    watcher = client.process()
    (pid,) = curve_server.spawn(1, name="secure")
    by_pid = watcher.monitor(pid)
    by_name = watcher.monitor(("secure", curve_server.address))
    assert pid.node == curve_server.address
    wait_remote(curve_server, SUBSCRIBERS, lambda v: v == 2, what="== 2")
    curve_server.exit([pid], "encrypted exit")
    downs = {d.ref: d for d in receive_all(watcher, 2)}
    assert_down(downs[by_pid], by_pid, pid, "encrypted exit")
    assert_down(downs[by_name], by_name, ("secure", curve_server.address), "encrypted exit")
    assert curve_server.metric(REFUSED) == 0
    assert_nothing_more_remote(client, curve_server, watcher)


@pytest.mark.parametrize("who", ["keyless", "stranger"])
def test_curve_refuses_peers_off_the_allow_list(node_factory, curve_server, keys, who):
    curve = zenmon.Curve(*keys["stranger"]) if who == "stranger" else None
    intruder = node_factory(curve=curve, **REMOTE_SETTINGS)
    refused = curve_server.metric(REFUSED)
    (pid,) = curve_server.spawn(1, name="secure")
    assert intruder.connect(curve_server.address) == "incompatible"
    watcher = intruder.process()
    by_pid = watcher.monitor(pid)
    by_name = watcher.monitor(("secure", curve_server.address))
    downs = {d.ref: d for d in receive_all(watcher, 2, timeout=10)}
    assert_down(downs[by_pid], by_pid, pid, "nodedown")
    assert_down(downs[by_name], by_name, ("secure", curve_server.address), "nodedown")
    wait_remote(curve_server, REFUSED, lambda v: v > refused, what=f"> {refused}")
    # it could not subscribe
    assert curve_server.metric(SUBSCRIBERS) == 0
    assert curve_server.metric("zenmon.proxy.peers.size") == 0
    # the process it could not watch is alive and well
    curve_server.exit([pid], "fine")


def test_curve_server_dialled_without_its_key(node_factory, curve_server, keys):
    """A plain-text dial of a CURVE node (address without ?key=) gets nowhere."""
    client = node_factory(curve=zenmon.Curve(*keys["client"]), **REMOTE_SETTINGS)
    plain = curve_server.address.partition("?")[0]
    assert client.connect(plain) == "incompatible"
    watcher = client.process()
    ref = watcher.monitor(("secure", plain))
    assert_down(watcher.receive(timeout=10), ref, ("secure", plain), "nodedown")
    assert curve_server.metric(SUBSCRIBERS) == 0


def test_curve_server_dialled_with_a_wrong_server_key(node_factory, curve_server, keys):
    client = node_factory(curve=zenmon.Curve(*keys["client"]), **REMOTE_SETTINGS)
    wrong = keys["stranger"][1]
    wrong = wrong.decode() if isinstance(wrong, bytes) else wrong
    address = curve_server.address.partition("?")[0] + "?key=" + wrong
    assert client.connect(address) == "incompatible"
    assert curve_server.metric(SUBSCRIBERS) == 0


def test_curve_refusal_does_not_disturb_authorized_peers(node_factory, curve_server, keys):
    client = node_factory(curve=zenmon.Curve(*keys["client"]), **REMOTE_SETTINGS)
    intruder = node_factory(curve=zenmon.Curve(*keys["stranger"]), **REMOTE_SETTINGS)
    pids = curve_server.spawn(2)
    watcher, snoop = client.process(), intruder.process()
    refs = [watcher.monitor(pid) for pid in pids]
    snoop_ref = snoop.monitor(pids[0])
    assert_down(snoop.receive(timeout=10), snoop_ref, pids[0], "nodedown")
    wait_remote(curve_server, SUBSCRIBERS, lambda v: v == 2, what="== 2")
    curve_server.exit(pids, "authorized only")
    downs = receive_all(watcher, 2)
    assert sorted(d.ref for d in downs) == sorted(refs)
    assert all(d.reason == "authorized only" for d in downs)
    assert curve_server.metric(REFUSED) >= 1


def test_curve_raw_peer_cannot_talk_to_a_curve_node(curve_server, raw_dealer):
    """A plain DEALER (no CURVE) sending a valid HELLO gets no answer, no session."""
    dealer = raw_dealer(curve_server.address.partition("?")[0])
    dealer.send(p.pack(p.HELLO, dealer.incarnation, 0, 5, b"tcp://rogue"))
    with pytest.raises(AssertionError):
        dealer.receive(timeout=1.0)
    assert curve_server.metric("zenmon.proxy.peers.size") == 0


@pytest.mark.parametrize("flaw", ["index-out-of-range", "index-count-mismatch",
                                  "no-reasons"])
def test_malformed_dead_summary_is_dropped_as_a_whole(local, raw_peer, flaw):
    """A summary that fails validation has no effect at all (no partial DOWNs)."""
    fake = FakeProxy()
    peer = raw_peer(fake)
    watcher = local.process()
    pids = [zenmon.Pid(peer.address, FAKE_INCARNATION, i) for i in (1, 2)]
    refs = [watcher.monitor(pid) for pid in pids]
    wait_for(lambda: sorted(fake.keys) == [1, 2])
    dropped = metric(local, DROPPED)
    if flaw == "index-out-of-range":      # first index fine, second past the reasons
        bad = fake.dead_summary(1, [1, 2], ["a", "b"], indexes=array("I", [0, 5]).tobytes())
    elif flaw == "index-count-mismatch":
        bad = fake.dead_summary(1, [1, 2], ["a", "b"], indexes=array("I", [0]).tobytes()
                                + b"\0\0\0\0\0\0\0\0")
    else:
        bad = fake.dead_summary(1, [1, 2], [])
    peer.inject(bad)
    wait_for(lambda: metric(local, DROPPED) > dropped)
    # a valid summary with the same sequence number now applies, once
    peer.inject(fake.dead_summary(1, [1, 2], ["valid"]))
    downs = receive_all(watcher, 2, timeout=5)
    assert sorted(d.ref for d in downs) == sorted(refs)
    assert all(d.reason in ("valid", "nodedown") for d in downs), downs
    assert receive_until_sentinel(watcher) == []

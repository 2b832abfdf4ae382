"""The Proxy: the remote side of every node, on its one ROUTER socket.

It accepts connector sessions (HELLO -> WELCOME), applies their SUBSCRIBE batches
in sequence order to the core's subscribers table (at most one subscription per
(local process, peer key), so a process watched by many remote monitors costs one
entry per interested peer), and runs each peer's Batcher every
``batcher_sweep_interval`` (``batcher_chunk_size`` certificates at most), or at the
pace the peer asked for in its HELLO. A peer silent for ``heartbeat_timeout`` is dropped
with all its subscriptions. Runs on the node's I/O thread.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import zmq

from . import _core
from . import protocol as p
from ._core import NAME_KEY_FLAG, UNSUBSCRIBE_FLAG, Batcher
from .batcher import dead_summary_body
from .codec import decode_reasons

if TYPE_CHECKING:
    from .node import Node


class Peer:
    """One connector session talking to this proxy."""

    __slots__ = ("identity", "session", "incarnation", "address", "index", "batcher",
                 "expected", "dead_seq", "unacked", "last_heard", "last_nack",
                 "name_subscriptions", "summary_size", "summary_interval", "next_summary")

    def __init__(self, identity: bytes, session: int, incarnation: int, address: str,
                 index: int, batcher: Batcher, now: float, summary_size: int,
                 summary_interval: int) -> None:
        self.identity = identity
        self.session = session
        self.incarnation = incarnation
        self.address = address
        self.index = index
        self.batcher = batcher
        self.expected = 1                    # next SUBSCRIBE seq
        self.dead_seq = 0                    # last DEAD_SUMMARY sent
        self.unacked: list[tuple[int, bytes]] = []
        self.last_heard = now
        self.last_nack = 0.0
        self.name_subscriptions: dict[int, int] = {}   # name key -> local pid id
        self.summary_size = summary_size     # asked for in HELLO; 0: batcher_chunk_size
        self.summary_interval = summary_interval   # ms, ditto; 0: batcher_sweep_interval
        self.next_summary = now              # no DEAD_SUMMARY before this


class Proxy:
    """Serves every remote connector that subscribes to this node's processes."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._core = node._core
        self.socket: zmq.Socket[Any] | None = None
        self.peers: dict[bytes, Peer] = {}
        self._free_indexes: list[tuple[int, Batcher]] = []
        self.sweeps = 0
        self.noproc_enqueued = 0

    def bind(self, listen: str) -> str:
        """Bind the ROUTER on `listen`. -> the node's address (the real endpoint)."""
        node = self._node
        assert node._context is not None
        socket = node._context.socket(zmq.ROUTER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
        socket.setsockopt(zmq.ROUTER_HANDOVER, 1)
        socket.setsockopt(zmq.SNDHWM, 0)
        socket.setsockopt(zmq.RCVHWM, 0)
        socket.setsockopt(zmq.MAXMSGSIZE, p.MAX_FRAME)
        suffix = ""
        if node._curve is not None:
            suffix = node._curve.serve(socket, node)
        socket.bind(listen)
        self.socket = socket
        return socket.getsockopt_string(zmq.LAST_ENDPOINT) + suffix

    def register(self, poller: zmq.Poller) -> None:
        """Add the ROUTER to the I/O thread's poller."""
        poller.register(self.socket, zmq.POLLIN)

    def close(self) -> None:
        """Close the ROUTER."""
        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None

    # ------------------------------------------------------------- receive

    def on_readable(self) -> None:
        """Handle what connectors sent (bounded, so other sockets get their turn)."""
        socket = self.socket
        wire = self._node._wire
        for _ in range(1000):
            try:
                frames = socket.recv_multipart(zmq.NOBLOCK)  # type: ignore[union-attr]
            except zmq.Again:
                return
            wire.messages_received += 1
            wire.bytes_received += sum(len(f) for f in frames)
            if len(frames) != 2:
                wire.frames_dropped += 1
                continue
            identity, frame = frames
            try:
                self.handle(identity, frame)
            except p.VersionMismatch:
                wire.frames_dropped += 1
                # answer in our own version so the dialler reads "incompatible" at once
                self.reply(identity, p.pack(p.WELCOME, self._node.incarnation, 0, 0))
            except (p.ProtocolError, ValueError):
                wire.frames_dropped += 1

    def handle(self, identity: bytes, frame: bytes) -> None:
        """Apply one frame from a connector."""
        header = p.unpack_header(frame)
        kind = header.type
        node = self._node
        if kind not in p.CONNECTOR_TYPES:
            raise p.ProtocolError(f"message type {kind} is not for a proxy")
        now = time.monotonic()
        if kind == p.HELLO:
            if header.receiver not in (0, node.incarnation):
                self.send(identity, header.session, header.sender, p.RESET, b"")
                return
            peer = self.peers.get(identity)
            if peer is None or peer.session != header.session:
                if peer is not None:
                    self.drop(peer)
                address, size, interval = p.unpack_hello(frame)
                peer = self.new_peer(identity, header.session, header.sender, address, now,
                                     size, interval)
            peer.last_heard = now
            self.send(identity, header.session, header.sender, p.WELCOME, b"")
            return
        peer = self.peers.get(identity)
        if (peer is None or peer.session != header.session
                or header.receiver != node.incarnation or header.sender != peer.incarnation):
            node._wire.frames_dropped += 1      # unknown session: counted, answered RESET
            self.send(identity, header.session, header.sender, p.RESET, b"")
            return
        peer.last_heard = now
        try:
            self.handle_session(peer, kind, frame, now)
        except (p.ProtocolError, ValueError):
            # a malformed body inside a live session would stall its sequence forever:
            # end the session so the connector declares nodedown instead
            self.send_peer(peer, p.RESET, b"")
            self.drop(peer)
            raise

    def handle_session(self, peer: Peer, kind: int, frame: bytes, now: float) -> None:
        """Apply one frame of an established session."""
        if kind == p.SUBSCRIBE:
            seq, ack, instructions, names, link_ops, link_reasons = p.unpack_subscribe_links(
                frame)
            self.acked(peer, ack)
            if seq == peer.expected:
                reasons = decode_reasons(link_reasons) if link_reasons else []
                if not isinstance(reasons, list):
                    raise p.ProtocolError("link reasons are not a list")
                self.apply(peer, instructions, names)
                if link_ops:
                    self.apply_links(peer, link_ops, reasons)
                peer.expected += 1
            elif seq > peer.expected:
                self.nack(peer, now)
        elif kind == p.HEARTBEAT:
            seq, ack = p.seq_ack(frame)
            self.acked(peer, ack)
            if seq >= peer.expected:
                self.nack(peer, now)
            self.send_peer(peer, p.HEARTBEAT_ACK,
                           p.pack_seq_ack(peer.dead_seq, peer.expected - 1))
        elif kind == p.NACK_DEADS:
            seq, ack = p.seq_ack(frame)
            self.acked(peer, ack)
            for sent_seq, body in peer.unacked:
                if sent_seq >= seq:
                    self.send_peer(peer, p.DEAD_SUMMARY, body)
        elif kind == p.GOODBYE:
            self.drop(peer)

    def new_peer(self, identity: bytes, session: int, incarnation: int, address: str,
                 now: float, summary_size: int, summary_interval: int) -> Peer:
        """Open a session for a connector (reusing a dropped peer's batcher slot)."""
        if self._free_indexes:
            index, batcher = self._free_indexes.pop()
        else:
            index, batcher = self._core.batcher_new()
        peer = Peer(identity, session, incarnation, address, index, batcher, now,
                    summary_size, summary_interval)
        self.peers[identity] = peer
        return peer

    def apply(self, peer: Peer, instructions: memoryview, names: dict[int, str]) -> None:
        """Apply one SUBSCRIBE batch in order; dead or unknown targets answer noproc."""
        core = self._core
        before = len(peer.batcher)
        core.subscribe_many(peer.index, instructions, peer.batcher, "noproc")
        if names or peer.name_subscriptions:
            for key in instructions.cast("Q"):
                if key & NAME_KEY_FLAG:
                    self.apply_name(peer, key, names)
        self.noproc_enqueued += len(peer.batcher) - before

    def apply_links(self, peer: Peer, link_ops: memoryview, reasons: list[Any]) -> None:
        """Apply the link ops of one SUBSCRIBE (after its instructions)."""
        if _core.links_apply(self._core, peer.index, peer.address, peer.incarnation,
                             link_ops, reasons):
            self._node._downs_queued()

    def apply_name(self, peer: Peer, key: int, names: dict[int, str]) -> None:
        """Subscribe/unsubscribe by registered name: resolved here, at subscribe time."""
        core = self._core
        if key & UNSUBSCRIBE_FLAG:
            key &= ~UNSUBSCRIBE_FLAG
            pid_id = peer.name_subscriptions.pop(key, None)
            if pid_id is not None:
                core.unsubscribe(peer.index, key, pid_id)
            return
        name = names.get(key)
        pid = self._node.whereis(name) if name is not None else None
        if pid is not None and core.subscribe(peer.index, key, pid.id):
            peer.name_subscriptions[key] = pid.id
        else:
            peer.batcher.push_certificate(key, "noproc")

    def acked(self, peer: Peer, ack: int) -> None:
        """Forget dead summaries the connector has applied."""
        if peer.unacked and peer.unacked[0][0] <= ack:
            peer.unacked = [(s, b) for s, b in peer.unacked if s > ack]

    def nack(self, peer: Peer, now: float) -> None:
        """Ask the connector to resend SUBSCRIBE messages from `expected` on."""
        if now - peer.last_nack < self._node._config.heartbeat_interval / 2000:
            return
        peer.last_nack = now
        self.send_peer(peer, p.NACK_SUBSCRIBE,
                       p.pack_seq_ack(peer.expected, peer.expected - 1))

    def drop(self, peer: Peer) -> None:
        """Forget a peer: its subscriptions, queued certificates and unacked summaries."""
        self._core.drop_peer(peer.index)
        if _core.links_drop_peer(self._core, peer.index, peer.address, peer.incarnation):
            self._node._downs_queued()     # the links it made fire "nodedown"
        if self.peers.get(peer.identity) is peer:
            del self.peers[peer.identity]
        peer.unacked = []
        self._free_indexes.append((peer.index, peer.batcher))

    # ---------------------------------------------------------------- send

    def sweep(self, now: float) -> None:
        """Batcher sweep: a DEAD_SUMMARY to each peer with certificates whose pace allows
        one now (its own, asked for in HELLO, or this node's batcher settings); drop
        silent peers."""
        config = self._node._config
        timeout = config.heartbeat_timeout / 1000
        for peer in list(self.peers.values()):
            if now - peer.last_heard > timeout:
                self.drop(peer)
                continue
            if len(peer.batcher) and now >= peer.next_summary:
                self.sweeps += 1
                peer.dead_seq += 1
                body = dead_summary_body(peer.batcher,
                                         peer.summary_size or config.batcher_chunk_size,
                                         peer.dead_seq, peer.expected - 1)
                peer.unacked.append((peer.dead_seq, body))
                self.send_peer(peer, p.DEAD_SUMMARY, body)
                # at least one interval apart (the I/O loop sweeps with this same `now`,
                # so a peer on the node's own interval is served at every sweep)
                interval = peer.summary_interval or config.batcher_sweep_interval
                peer.next_summary = now + interval / 1000

    def sweep_interval(self) -> int:
        """Milliseconds until the next batcher sweep: the shortest pace of any peer."""
        interval = self._node._config.batcher_sweep_interval
        for peer in self.peers.values():
            if peer.summary_interval and peer.summary_interval < interval:
                interval = peer.summary_interval
        return interval

    def send_peer(self, peer: Peer, kind: int, body: bytes) -> None:
        """Send a frame of `peer`'s session."""
        self.send(peer.identity, peer.session, peer.incarnation, kind, body)

    def send(self, identity: bytes, session: int, receiver: int, kind: int,
             body: bytes) -> None:
        """Send one frame to a connector; unknown or full peers are counted as drops."""
        self.reply(identity, p.pack(kind, self._node.incarnation, receiver, session, body))

    def reply(self, identity: bytes, frame: bytes) -> None:
        """Route `frame` to `identity` without blocking."""
        wire = self._node._wire
        try:
            self.socket.send_multipart([identity, frame], zmq.NOBLOCK,  # type: ignore[union-attr]
                                       copy=len(frame) < 65536)
        except zmq.ZMQError:
            wire.frames_dropped += 1
            return
        wire.messages_sent += 1
        wire.bytes_sent += len(frame) + len(identity)

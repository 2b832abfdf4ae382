"""The Proxy: the remote side of every node, on its one ROUTER socket.

It accepts connector sessions (HELLO -> WELCOME), applies their SUBSCRIBE batches
in sequence order to the core's subscribers table (at most one subscription per
(local process, peer key), so a process watched by many remote monitors costs one
entry per interested peer), and runs each peer's Batcher every
``batcher_sweep_interval`` (``batcher_chunk_size`` certificates at most), or at the
pace the peer asked for in its HELLO. A peer silent for ``heartbeat_timeout`` whose
connection is gone (the ROUTER can no longer route to it: ZMTP heartbeats and TTL
close dead connections in libzmq's threads) is dropped with all its subscriptions;
one whose connection is alive (a paused Python) only after ``pause_timeout``.
WELCOME names this node's identity; ``close`` sends FAREWELL to every peer so that
their monitors fire ``nodedown`` at once. Runs on the node's I/O thread.

What one peer can cost is bounded (Config, docs/protocol.md "Limits"): frames of at
most ``max_frame_size`` bytes and ``max_batch`` instructions (names no more than the
instructions), each instruction O(1) in the core; at most ``max_unacked`` dead
summaries (``max_unacked_bytes``) kept for resending, resent at most once per
``resend_interval``; ``rcvhwm`` / ``sndhwm`` messages queued per connection. A peer
over a bound is dropped (RESET, its subscriptions gone), counted in
``zenmon.wire.peers.dropped`` and logged on ``zenmon.proxy``: its connector then
fires ``nodedown`` and starts a new session, never stays silently wrong.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import zmq

from . import _core, liveness
from . import protocol as p
from ._core import CertificateQueue
from .address import advertised, split_endpoint
from .batcher import dead_summary_body
from .codec import decode_reasons
from .iothread import GIL_SLICE

if TYPE_CHECKING:
    from .context import NodeContext

_log = logging.getLogger("zenmon.proxy")

#: Seconds of frame handling one ``on_readable`` call may use before the I/O loop gets
#: a turn (sweeps, the dispatcher, the other sockets); one frame's work is bounded by
#: max_batch, so this bounds how long the loop goes without a sweep.
READ_SLICE = GIL_SLICE
#: Handshake failures a CURVE server counts as refused peers (bad mechanism, wrong key).
_REFUSED_EVENTS = (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


#: ms the closing ROUTER may take to send its FAREWELLs
FAREWELL_LINGER = 200


class PeerOverBound(p.ProtocolError):
    """A peer went over one of this node's limits: its session is dropped."""


class Peer:
    """One connector session talking to this proxy."""

    __slots__ = ("identity", "session", "incarnation", "address", "index", "batcher",
                 "expected", "dead_seq", "unacked", "unacked_bytes", "last_heard",
                 "last_nack", "last_resend", "summary_size", "summary_interval",
                 "next_summary", "unroutable_since")

    def __init__(self, identity: bytes, session: int, incarnation: int, address: str,
                 index: int, batcher: CertificateQueue, now: float, summary_size: int,
                 summary_interval: int) -> None:
        self.identity = identity
        self.session = session
        self.incarnation = incarnation
        self.address = address
        self.index = index
        self.batcher = batcher
        self.expected = 1                    # next SUBSCRIBE seq
        self.dead_seq = 0                    # last DEAD_SUMMARY sent
        self.unacked: deque[tuple[int, bytes]] = deque()   # (seq, whole frame)
        self.unacked_bytes = 0
        self.last_heard = now
        self.last_nack = 0.0
        self.last_resend = 0.0
        self.summary_size = summary_size     # asked for in HELLO; 0: batcher_chunk_size
        self.summary_interval = summary_interval   # ms, ditto; 0: batcher_sweep_interval
        self.next_summary = now              # no DEAD_SUMMARY before this
        self.unroutable_since = 0.0          # first failed liveness probe (0: none)


class Proxy:
    """Serves every remote connector that subscribes to this node's processes."""

    def __init__(self, ctx: NodeContext) -> None:
        self._ctx = ctx
        self._core = ctx.core
        self.socket: zmq.Socket[Any] | None = None
        self.peers: dict[bytes, Peer] = {}
        self._free_indexes: list[tuple[int, CertificateQueue]] = []
        self.sweeps = 0
        self.noproc_enqueued = 0
        self._handshakes: zmq.Socket[Any] | None = None   # CURVE: handshake failures
        self.last_sweep = 0.0

    def bind(self, listen: str, advertise: str | None = None) -> str:
        """Bind the ROUTER on `listen`. -> the node's address: `advertise` (port 0: the
        bound port) or the listen host as written with the bound port (a wildcard
        host: this machine's host name), plus ``?key=`` with CURVE."""
        ctx = self._ctx
        split_endpoint(listen)
        socket = ctx.io.socket(zmq.ROUTER)
        self.socket = socket          # from here on close() cleans up, bind failing or not
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.IPV6, 1)
        # ZMTP heartbeats of its own (the DEALERs' TTL alone is not enforced after a
        # non-PING message): libzmq closes a frozen or cut watcher's connection, which
        # `routable` then sees, with no GIL needed on either side
        config = ctx.config
        liveness.apply_heartbeats(socket, liveness.zmtp_settings(config), dialer=False)
        socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
        socket.setsockopt(zmq.ROUTER_HANDOVER, 1)
        socket.setsockopt(zmq.SNDHWM, config.sndhwm)
        socket.setsockopt(zmq.RCVHWM, config.rcvhwm)
        socket.setsockopt(zmq.MAXMSGSIZE, config.max_frame_size)
        suffix = ""
        if ctx.curve is not None:
            assert ctx.io.context is not None
            suffix = ctx.curve.serve(socket, ctx.io.context)
            # NULL-mechanism and wrong-server-key dials fail before ZAP is asked
            self._handshakes = socket.get_monitor_socket(_REFUSED_EVENTS)
        socket.bind(listen)       # on failure the caller's close() releases the socket
        return advertised(listen, socket.getsockopt_string(zmq.LAST_ENDPOINT),
                          advertise) + suffix

    def close(self) -> None:
        """Tell every peer this node stops (FAREWELL), then close the ROUTER."""
        if self._handshakes is not None:
            if self.socket is not None:
                self.socket.disable_monitor()
            self._handshakes.close(linger=0)
            self._handshakes = None
        if self.socket is not None:
            for peer in list(self.peers.values()):
                self.send_peer(peer, p.FAREWELL, b"")
            self.socket.close(linger=FAREWELL_LINGER if self.peers else 0)
            self.socket = None

    # ------------------------------------------------------------- receive

    def on_readable(self) -> None:
        """Handle what connectors sent (bounded in frames and time, so the sweeps and
        the other sockets get their turn; ZeroMQ fair-queues the peers)."""
        socket = self.socket
        wire = self._ctx.wire
        deadline = time.monotonic() + READ_SLICE
        for _ in range(1000):
            try:
                frames = socket.recv_multipart(zmq.NOBLOCK)  # type: ignore[union-attr]
            except zmq.Again:
                return
            size = sum(len(f) for f in frames)
            wire.messages_received += 1
            wire.bytes_received += size
            if len(frames) != 2:
                wire.frames_dropped += 1
                continue
            identity, frame = frames
            try:
                self.handle(identity, frame)
            except p.VersionMismatch:
                wire.frames_dropped += 1
                # answer in our own version so the dialler reads "incompatible" at once
                self.reply(identity, p.pack(p.WELCOME, self._ctx.incarnation, 0, 0))
            except (p.ProtocolError, ValueError):
                wire.frames_dropped += 1
            if time.monotonic() >= deadline:
                return

    def handle(self, identity: bytes, frame: bytes) -> None:
        """Apply one frame from a connector."""
        header = p.unpack_header(frame)
        kind = header.type
        ctx = self._ctx
        if len(frame) > ctx.config.max_frame_size:   # the limit lowered at run time
            peer = self.peers.get(identity)
            if peer is not None and peer.session == header.session:
                self.send_peer(peer, p.RESET, b"")
                self.drop(peer, f"frame of {len(frame)} bytes is over max_frame_size")
            raise PeerOverBound("frame over max_frame_size")
        if kind not in p.CONNECTOR_TYPES:
            raise p.ProtocolError(f"message type {kind} is not for a proxy")
        now = time.monotonic()
        if kind == p.HELLO:
            if header.receiver not in (0, ctx.incarnation):
                self.send(identity, header.session, header.sender, p.RESET, b"")
                return
            peer = self.peers.get(identity)
            if peer is None or peer.session != header.session:
                if peer is not None:
                    self.drop(peer)
                address, size, interval = p.unpack_hello(frame)
                size = min(size, ctx.config.max_batch)
                peer = self.new_peer(identity, header.session, header.sender, address, now,
                                     size, interval)
                _log.info("peer %s joined (watches this node)", address)
            peer.last_heard = now
            self.send(identity, header.session, header.sender, p.WELCOME,
                      ctx.address.encode())
            return
        peer = self.peers.get(identity)
        if (peer is None or peer.session != header.session
                or header.receiver != ctx.incarnation or header.sender != peer.incarnation):
            ctx.wire.frames_dropped += 1      # unknown session: counted, answered RESET
            self.send(identity, header.session, header.sender, p.RESET, b"")
            return
        peer.last_heard = now
        try:
            self.handle_session(peer, kind, frame, now)
        except (p.ProtocolError, ValueError) as exc:
            # a malformed body inside a live session would stall its sequence forever:
            # end the session so the connector declares nodedown instead
            self.send_peer(peer, p.RESET, b"")
            self.drop(peer, f"{p.TYPE_NAMES.get(kind, kind)}: {exc}")
            raise

    def handle_session(self, peer: Peer, kind: int, frame: bytes, now: float) -> None:
        """Apply one frame of an established session."""
        if kind == p.SUBSCRIBE:
            seq, ack, instructions, names, link_ops, link_reasons = p.unpack_subscribe_links(
                frame, self._ctx.config.max_batch)
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
            self.resend(peer, seq, now)
        elif kind == p.GOODBYE:
            _log.info("peer %s left (goodbye)", peer.address)
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
        """Apply one SUBSCRIBE batch in order, O(1) per instruction; dead or unknown
        targets (names too: resolved here, at subscribe time) answer noproc."""
        whereis = self._ctx.whereis
        resolved: dict[str, int | None] = {}     # each distinct name looked up once

        def resolve_name(key: int) -> int | None:
            name = names.get(key)
            if name is None:
                return None
            try:
                return resolved[name]
            except KeyError:
                pid = whereis(name)
                pid_id = resolved[name] = pid.id if pid is not None else None
                return pid_id

        before = len(peer.batcher)
        self._core.subscribe_many(peer.index, instructions, peer.batcher, "noproc",
                                  resolve_name)
        self.noproc_enqueued += len(peer.batcher) - before

    def apply_links(self, peer: Peer, link_ops: memoryview, reasons: list[Any]) -> None:
        """Apply the link ops of one SUBSCRIBE (after its instructions)."""
        if _core.links_apply(self._core, peer.index, peer.address, peer.incarnation,
                             link_ops, reasons):
            self._ctx.dispatcher.downs_queued()

    def acked(self, peer: Peer, ack: int) -> None:
        """Forget dead summaries the connector has applied."""
        unacked = peer.unacked
        while unacked and unacked[0][0] <= ack:
            peer.unacked_bytes -= len(unacked.popleft()[1])

    def resend(self, peer: Peer, seq: int, now: float) -> None:
        """Resend unacked dead summaries from `seq` on: at most once per
        ``resend_interval``, the very same frames (no copies), stopping at a full queue."""
        if now - peer.last_resend < self._ctx.config.resend_interval / 1000:
            return
        peer.last_resend = now
        for sent_seq, frame in peer.unacked:
            if sent_seq >= seq and not self.reply(peer.identity, frame):
                return

    def nack(self, peer: Peer, now: float) -> None:
        """Ask the connector to resend SUBSCRIBE messages from `expected` on."""
        if now - peer.last_nack < self._ctx.config.heartbeat_interval / 2000:
            return
        peer.last_nack = now
        self.send_peer(peer, p.NACK_SUBSCRIBE,
                       p.pack_seq_ack(peer.expected, peer.expected - 1))

    def drop(self, peer: Peer, over_bound: str = "") -> None:
        """Forget a peer: its subscriptions, queued certificates and unacked summaries.

        `over_bound` names the limit it broke (then it is counted and logged).
        """
        if self.peers.get(peer.identity) is not peer:
            return                                   # already dropped
        if over_bound:
            self._ctx.wire.peers_dropped += 1
            _log.warning("zenmon proxy %s: dropped peer %s (session %x): %s",
                         self._ctx.address, peer.address[:200], peer.session, over_bound)
        self._core.drop_peer(peer.index)
        if _core.links_drop_peer(self._core, peer.index, peer.address, peer.incarnation):
            self._ctx.dispatcher.downs_queued()     # the links it made fire "nodedown"
        del self.peers[peer.identity]
        peer.unacked.clear()
        peer.unacked_bytes = 0
        self._free_indexes.append((peer.index, peer.batcher))

    # ---------------------------------------------------------------- send

    def sweep(self, now: float) -> None:
        """Batcher sweep: a DEAD_SUMMARY to each peer with certificates whose pace allows
        one now (its own, asked for in HELLO, or this node's batcher settings); drop
        silent peers."""
        config = self._ctx.config
        timeout = config.heartbeat_timeout / 1000
        chunk = min(config.batcher_chunk_size, config.max_batch)
        if self._handshakes is not None:
            self.count_refused()
        pause = max(config.pause_timeout, config.heartbeat_timeout) / 1000
        # a stall of this node's own I/O thread (GC, GIL) is not the peers' silence
        stall = (now - self.last_sweep - 2 * self.sweep_interval() / 1000
                 if self.last_sweep else 0.0)
        self.last_sweep = now
        for peer in list(self.peers.values()):
            if stall > config.heartbeat_interval / 1000:
                peer.last_heard = min(now, peer.last_heard + stall)
            silent = now - peer.last_heard
            if silent > timeout:
                if silent > pause:
                    _log.warning("peer %s dropped: silent for %.1f s (pause_timeout)",
                                 peer.address, silent)
                    self.drop(peer)
                    continue
                if self.routable(peer):
                    peer.unroutable_since = 0.0
                elif not peer.unroutable_since:
                    peer.unroutable_since = now
                elif now - peer.unroutable_since >= 2 * config.heartbeat_interval / 1000:
                    # gone for two heartbeat rounds, not just being re-dialled after a
                    # short partition (its connector then goes on with this session)
                    _log.warning("peer %s dropped: silent for %.1f s and its connection "
                                 "is gone", peer.address, silent)
                    self.drop(peer)
                    continue
            if (len(peer.batcher) and now >= peer.next_summary
                    and len(peer.unacked) < config.max_unacked
                    and peer.unacked_bytes < config.max_unacked_bytes):
                # (a peer that does not ack waits, its certificates queued in the core)
                self.sweeps += 1
                peer.dead_seq += 1
                body = dead_summary_body(peer.batcher, peer.summary_size or chunk,
                                         peer.dead_seq, peer.expected - 1,
                                         config.max_frame_size - p.HEADER.size)
                frame = p.pack(p.DEAD_SUMMARY, self._ctx.incarnation, peer.incarnation,
                               peer.session, body)
                peer.unacked.append((peer.dead_seq, frame))
                peer.unacked_bytes += len(frame)
                self.reply(peer.identity, frame)
                # at least one interval apart (the I/O loop sweeps with this same `now`,
                # so a peer on the node's own interval is served at every sweep)
                interval = peer.summary_interval or config.batcher_sweep_interval
                peer.next_summary = now + interval / 1000

    def sweep_interval(self) -> int:
        """Milliseconds until the next batcher sweep: the shortest pace of any peer."""
        interval = self._ctx.config.batcher_sweep_interval
        for peer in self.peers.values():
            if peer.summary_interval and peer.summary_interval < interval:
                interval = peer.summary_interval
        return interval

    def routable(self, peer: Peer) -> bool:
        """Is `peer`'s connection alive? A HEARTBEAT_ACK probe (harmless: the same
        acknowledgement it last had) is refused with EHOSTUNREACH once libzmq closed it."""
        frame = p.pack(p.HEARTBEAT_ACK, self._ctx.incarnation, peer.incarnation,
                       peer.session, p.pack_seq_ack(peer.dead_seq, peer.expected - 1))
        try:
            self.socket.send_multipart([peer.identity, frame],  # type: ignore[union-attr]
                                       zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            return exc.errno != zmq.EHOSTUNREACH
        return True

    def send_peer(self, peer: Peer, kind: int, body: bytes) -> None:
        """Send a frame of `peer`'s session."""
        self.send(peer.identity, peer.session, peer.incarnation, kind, body)

    def send(self, identity: bytes, session: int, receiver: int, kind: int,
             body: bytes) -> None:
        """Send one frame to a connector; unknown or full peers are counted as drops."""
        self.reply(identity, p.pack(kind, self._ctx.incarnation, receiver, session, body))

    def reply(self, identity: bytes, frame: bytes) -> bool:
        """Route `frame` to `identity` without blocking. -> False if ZeroMQ refused it
        (peer gone, or its queue at ``sndhwm``: counted in ``wire.frames.unsent``)."""
        wire = self._ctx.wire
        try:
            self.socket.send_multipart([identity, frame], zmq.NOBLOCK,  # type: ignore[union-attr]
                                       copy=len(frame) < 65536)
        except zmq.ZMQError:
            wire.frames_unsent += 1
            return False
        wire.messages_sent += 1
        wire.bytes_sent += len(frame) + len(identity)
        return True

    def count_refused(self) -> None:
        """Count CURVE handshakes that failed before ZAP (NULL mechanism, wrong key)."""
        wire = self._ctx.wire
        while True:
            try:
                event = self._handshakes.recv_multipart(zmq.NOBLOCK)  # type: ignore[union-attr]
            except zmq.Again:
                return
            if len(event) == 2 and len(event[0]) >= 2:
                if int.from_bytes(event[0][:2], "little") & _REFUSED_EVENTS:
                    wire.peers_refused += 1

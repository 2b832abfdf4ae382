"""The Connector: this node's link to one remote node (one incarnation of it).

It keeps the remote targets watched from here (in the core, under its connector
index), sends queued subscribe/unsubscribe instructions as one SUBSCRIBE message
per sweep, turns DEAD_SUMMARY messages into DOWNs, and owns liveness: HELLO /
WELCOME for compatibility and identity (WELCOME names the proxy's node: a node
reached under an address that is not its identity is refused), heartbeats, and
``nodedown`` for every monitor it holds when the node dies, stops (FAREWELL),
restarts, or cannot be reached. All methods but
``bind``/``monitor_name``/``compatibility`` run on the node's I/O thread.
``Connectors`` finds the current connector of an address (making it on first use).

Monitors and links of remote pids do not pass through here: Local and Links ask
``bind(incarnation)`` which connector takes the pid, then enter the core themselves
(``Core.monitor_pid``, ``link_remote``); the core queues the subscribe for the next
sweep. Monitors by remote name enter the core here (``monitor_name``: the name key
lives on this connector).

Liveness has two phases. The DEALER runs ZMTP heartbeats (in libzmq's threads, no
GIL needed) and a socket monitor reports its transport: a peer silent for
``heartbeat_timeout`` whose connection is gone (crash, host loss, partition) is
down; a refused reconnect (nobody listens any more) is down at once; a peer whose
connection is alive but whose Python does not answer is down only after
``pause_timeout`` of silence.

Reliability: SUBSCRIBE and DEAD_SUMMARY messages carry sequence numbers and
cumulative acks; a gap (ZeroMQ may drop queued messages on reconnect) is repaired
by a NACK and a retransmit from the sender's unacked buffer. Heartbeats carry the
last sequence sent, so a lost tail is noticed too.

Bounds (Config): at most ``max_unacked`` SUBSCRIBE messages (``max_unacked_bytes``)
wait for an ack (then instructions stay queued in the core until the proxy acks),
resends at most once per ``resend_interval``, dead summaries of at most
``max_batch`` certificates. A dead summary that is malformed in any way ends the
session with ``nodedown`` (the sequence would stall otherwise). Name keys live
exactly as long as some monitor uses them.
"""

from __future__ import annotations

import enum
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import zmq
from zmq.utils.monitor import parse_monitor_message

from . import _core, liveness, tcpinfo
from . import protocol as p
from ._core import CONNECTOR_CLOSED, NAME_KEY_FLAG, TARGET_DEAD, UNSUBSCRIBE_FLAG
from .codec import CodecError, decode_reasons, encode_reasons
from .curve import Curve, split_address
from .errors import ProcessExited
from .iothread import GIL_SLICE

if TYPE_CHECKING:
    import concurrent.futures

    from .config import Config
    from .context import NodeContext


#: What ``Connector.bind`` answers for a pid's incarnation.
BOUND, OLDER, NEWER = 0, -1, 1
#: What a connector's socket monitor reports (see Connector.on_transport_event).
TRANSPORT_EVENTS = (zmq.EVENT_CONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
                    | zmq.EVENT_DISCONNECTED
                    | zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
FIRE_CHUNK = 500       # DOWNs queued per step of a nodedown (0.1-0.5 ms each)
READ_SLICE = GIL_SLICE  # seconds of frame handling per on_readable call (see proxy)
FAREWELL_LINGER = 200  # ms a closing DEALER may take to send its GOODBYE

_log = logging.getLogger("zenmon.connector")


class State(enum.Enum):
    """Where a connector's session stands."""

    IDLE = "idle"              # no session: nothing watched, or after a failure
    CONNECTING = "connecting"  # HELLO sent, waiting for WELCOME
    UP = "up"                  # compatible: instructions flow, heartbeats run


class Connector:
    """The link to the node at `address`, for pids of one incarnation."""

    def __init__(self, ctx: NodeContext, address: str, incarnation: int = 0) -> None:
        p.check_address(address)
        self._ctx = ctx
        self._core = ctx.core
        self.address = address
        self.endpoint, self.server_key = split_address(address)
        self.port = int(self.endpoint.rsplit(":", 1)[1])
        self.index: int = ctx.core.connector_new()
        self.incarnation = 0                 # 0 until a pid or WELCOME tells
        self.state = State.IDLE
        self.retired = False                 # the remote restarted: no new monitors here
        self.firing = False                  # a chunked nodedown is under way
        self.closed = False
        self.socket: zmq.Socket[Any] | None = None
        self.monitor_socket: zmq.Socket[Any] | None = None
        self.routing_id = b"\x01" + secrets.token_bytes(15)   # never starts with 0
        self.transport_up = False            # ZMTP handshake done, not disconnected since
        self.transport_down_at = 0.0         # when it last went down
        self.refused = False                 # a reconnect was refused since the disconnect
        self.retried_at = 0.0                # last CONNECT_RETRIED while down
        self.paused = False                  # silent with a live transport (logged once)
        self.acks: tcpinfo.AckClock | None = None   # the connection's kernel ACK counters
        self.last_sweep = 0.0
        self.zmtp = liveness.zmtp_settings(ctx.config)   # its DEALER's ZMTP settings
        self.session = 0
        self.past_sessions: deque[int] = deque(maxlen=4)   # late frames of these: dropped
        self.sub_seq = 0                     # last SUBSCRIBE sent
        self.unacked: deque[tuple[int, bytes]] = deque()
        self.dead_expected = 1               # next DEAD_SUMMARY seq
        self.last_heard = 0.0
        self.last_sent = 0.0
        self.last_heartbeat = 0.0
        self.last_nack = 0.0
        self.last_resend = 0.0
        self.unacked_bytes = 0
        self.connect_deadline = 0.0
        self.attempt = 0
        self.penalty_until = 0.0
        self.sweeps = 0
        self.waiters: list[concurrent.futures.Future[str]] = []
        self.names = NameKeys(address)       # the names some monitor here uses
        if incarnation:
            self.adopt(incarnation)

    def __repr__(self) -> str:
        return f"<Connector {self.address} inc={self.incarnation} {self.state.value}>"

    # ------------------------------------------------------- any thread

    def monitor_name(self, subscriber: int, name: str) -> int:
        """Monitor the process registered as `name` on the remote node."""
        names = self.names
        with names.lock:             # with forget_names: a key is dropped only unused
            key = names.key_for(name)
            ref = self._core.monitor(subscriber, self.index, key, True)
            if ref <= CONNECTOR_CLOSED and not self._core.has_target(self.index, key):
                names.forget(key)
        if ref == CONNECTOR_CLOSED:     # retired and closed since the caller found it
            return self._ctx.connectors.current(self.address).monitor_name(subscriber, name)
        if ref <= TARGET_DEAD:
            raise ProcessExited("a dead process cannot monitor")
        return ref

    def bind(self, incarnation: int) -> int:
        """Take pids of `incarnation` of this connector's node? (Local and Links ask before
        they monitor or link such a pid.)

        -> ``BOUND``: yes; this connector is bound to that incarnation (the first pid
        seen binds it) and, unless retired, routed, so ``Core.monitor_pid`` finds it.
        ``OLDER``: that incarnation is older than this one's, its processes are dead.
        ``NEWER``: the node has restarted; this connector is retired now, so ask
        ``connectors.current(address, incarnation)`` for the one that takes them.
        """
        if self.incarnation == 0:
            self.adopt(incarnation)
        if incarnation == self.incarnation:
            if not self.retired:
                # again: a route lost to a race (retire, adopt) is put back here
                self._core.route(self.address, self.index, incarnation)
            return BOUND
        if incarnation < self.incarnation:
            return OLDER
        self.restart_seen_from_user()
        return NEWER

    def compatibility(self) -> str:
        """"compatible" once the remote answered with our protocol; else "incompatible"."""
        return "compatible" if self.state is State.UP and not self.retired else "incompatible"

    def adopt(self, incarnation: int) -> None:
        """Bind this connector to one incarnation of its node (and route monitors here)."""
        self.incarnation = incarnation
        if not self.retired:
            self._core.route(self.address, self.index, incarnation)

    def retire(self) -> None:
        """The remote restarted: this connector takes no new monitors."""
        self.retired = True
        self._core.unroute(self.address, self.index)

    def restart_seen_from_user(self) -> None:
        """A pid of a newer incarnation was seen: this incarnation is gone."""
        self.retire()
        self._ctx.io.call(self.incarnation_gone)

    # ------------------------------------------------------- I/O thread

    def connect_now(self, future: concurrent.futures.Future[str], timeout: float) -> None:
        """Ping now, whatever the penalty; resolve `future` with the compatibility."""
        if self.state is State.UP:
            future.set_result("compatible")
            return
        self.waiters.append(future)
        if self.state is State.IDLE:
            self.start_session(time.monotonic(), timeout)

    def sweep(self, now: float) -> None:
        """One connector sweep: connect, fail, heartbeat, and send queued instructions."""
        if self.closed or self.firing:
            return
        config = self._ctx.config
        core = self._core
        # a stall of this node's own I/O thread (GC, GIL) is not the peer's silence
        stall = (now - self.last_sweep - 2 * config.connector_sweep_interval / 1000
                 if self.last_sweep else 0.0)
        self.last_sweep = now
        if stall > config.heartbeat_interval / 1000 and self.last_heard:
            self.last_heard = min(now, self.last_heard + stall)
        has_work = (core.connector_pending(self.index) or core.connector_targets(self.index)
                    or self._ctx.node_monitors.watching(self)
                    or _core.connector_link_pending(core, self.index))
        if self.state is State.IDLE:
            if self.retired:
                if not has_work and core.connector_close(self.index):
                    self.close()       # its core queues are freed: nothing to keep
                else:
                    # monitors that raced in after the restart was seen
                    self.incarnation_gone()
            elif has_work:
                if now < self.penalty_until:
                    self.fire_all()        # incompatible, penalty running: nodedown at once
                    self._ctx.node_monitors.session_down(self, self.address,
                                                           "incompatible", False)
                else:
                    self.start_session(now, config.connect_timeout / 1000)
            return
        if self.state is State.CONNECTING:
            if now >= self.connect_deadline:
                self.node_down("unavailable")
            elif now - self.last_sent >= config.heartbeat_interval / 1000:
                self.send_hello(now)
            return
        self.on_transport_event()
        if self.state is not State.UP:
            return
        if self.transport_up and self.acks is not None:
            self.acks.sample(now)
        if not self.transport_up and self.refused:
            self.node_down("connection lost")   # down, and a reconnect failed: not a pause
            return
        if (now - self.last_heard > config.heartbeat_timeout / 1000
                or now >= self.down_deadline(config)):
            # read what is waiting first: after a long pause of this process (a big
            # GC, a frozen thread) the answers may be queued right here
            self.on_readable(config.heartbeat_timeout / 1000)
            if self.state is not State.UP:
                return
            if now >= self.down_deadline(config):
                # the connection is gone (not re-dialled since) and the peer has not
                # been reachable for heartbeat_timeout: dead, lost or cut off
                self.node_down("heartbeat timeout")
                return
            silent = now - self.last_heard
            if liveness.paused_too_long(now, self.last_heard, config):
                self.node_down("pause timeout")
                return
            if silent > config.heartbeat_timeout / 1000:
                if not self.paused and self.transport_up:
                    self.paused = True
                    _log.info("peer %s silent for %.1f s with its connection alive: "
                              "a paused Python, not declared down before pause_timeout",
                              self.address, silent)
        instructions = b""
        link_ops: bytes = b""
        reasons: list[Any] = []
        if (len(self.unacked) < config.max_unacked
                and self.unacked_bytes < config.max_unacked_bytes):
            chunk = min(config.connector_chunk_size, config.max_batch)
            instructions = core.connector_take(self.index, chunk)
            if not core.connector_pending(self.index):
                # link ops only once the instructions before them are out: a LINK
                # never overtakes the subscribe of its target
                link_ops, reasons = _core.connector_take_links(core, self.index, chunk)
        if instructions or link_ops:
            self.sweeps += 1
            self.send_subscribe(instructions, now, config.max_frame_size, link_ops,
                                encode_reasons(reasons) if reasons else b"")
            self.forget_names(instructions, unsubscribed_only=True)
        # heartbeats run whatever else is sent: they are what the proxy answers, so a
        # long run of SUBSCRIBE batches must not starve last_heard
        if now - self.last_heartbeat >= config.heartbeat_interval / 1000:
            self.last_heartbeat = now
            self.send(self.frame(p.HEARTBEAT, p.pack_seq_ack(self.sub_seq,
                                                             self.dead_expected - 1)), now)

    def down_deadline(self, config: Config) -> float:
        """When this peer is down if its connection stays gone (see liveness)."""
        acks = self.acks
        return liveness.down_deadline(self.last_heard, self.transport_up,
                                      self.transport_down_at, self.zmtp, config,
                                      acks.acked_at if acks else 0.0,
                                      acks.sampled_at if acks else 0.0)

    def send_subscribe(self, instructions: bytes, now: float, max_frame_size: int,
                       link_ops: bytes = b"", link_reasons: bytes = b"") -> None:
        """Send `instructions` (then `link_ops`) as one SUBSCRIBE, or, when long names
        would make it larger than the peer accepts (``max_frame_size``), as
        consecutive halves, in order (the link ops with the last)."""
        body = p.pack_subscribe(self.sub_seq + 1, self.dead_expected - 1, instructions,
                                self._names_in(instructions), link_ops, link_reasons)
        if p.HEADER.size + len(body) > max_frame_size and len(instructions) > 8:
            half = len(instructions) // 16 * 8
            self.send_subscribe(instructions[:half], now, max_frame_size)
            self.send_subscribe(instructions[half:], now, max_frame_size, link_ops,
                                link_reasons)
            return
        self.sub_seq += 1
        frame = self.frame(p.SUBSCRIBE, body)
        self.unacked.append((self.sub_seq, frame))
        self.unacked_bytes += len(frame)
        self.send(frame, now)

    def start_session(self, now: float, timeout: float) -> None:
        """Open a fresh session: new socket, new session id, HELLO."""
        self.close_socket()
        try:
            self.socket, self.monitor_socket = self.open_dealer()
        except zmq.ZMQError as exc:       # e.g. an endpoint ZeroMQ cannot parse
            _log.warning("zenmon connector %s: cannot dial (%s): nodedown", self.address, exc)
            self.incompatible()
            return
        self.transport_up = self.refused = self.paused = False
        self.end_session()
        self.session = secrets.randbits(63) + 1
        self.sub_seq = 0
        self.unacked.clear()
        self.unacked_bytes = 0
        self.dead_expected = 1
        self.state = State.CONNECTING
        self.connect_deadline = now + timeout
        self.send_hello(now)

    def end_session(self) -> None:
        """Forget the current session id, remembering it: the peer's proxy may still
        have frames of it queued for our routing id (kept across sessions)."""
        if self.session:
            self.past_sessions.append(self.session)
        self.session = 0

    def send_hello(self, now: float) -> None:
        """(Re)send HELLO for the current session."""
        config = self._ctx.config
        if config.dispatch_mode == "adaptive":   # we pace our own inboxes: ask for more
            body = p.hello_body(self._ctx.address, config.adaptive_summary_size,
                                config.adaptive_summary_interval)
        else:
            body = p.hello_body(self._ctx.address)
        self.send(self.frame(p.HELLO, body), now)

    def frame(self, kind: int, body: bytes = b"") -> bytes:
        """A frame of this session, addressed to the incarnation we believe in."""
        return p.pack(kind, self._ctx.incarnation, self.incarnation, self.session, body)

    def send(self, frame: bytes, now: float) -> bool:
        """Send without blocking; a refused send is counted in ``wire.frames.unsent``
        (the seq layer recovers). -> whether ZeroMQ took it."""
        wire = self._ctx.wire
        assert self.socket is not None
        try:
            self.socket.send(frame, zmq.NOBLOCK, copy=len(frame) < 65536)
        except zmq.ZMQError:
            wire.frames_unsent += 1
            return False
        self.last_sent = now
        wire.messages_sent += 1
        wire.bytes_sent += len(frame)
        return True

    def on_readable(self, read_slice: float = READ_SLICE) -> None:
        """Read what the remote proxy sent (bounded, so other sockets get their turn)."""
        socket = self.socket
        wire = self._ctx.wire
        deadline = time.monotonic() + read_slice
        for _ in range(1000):
            if socket is None or socket is not self.socket or time.monotonic() >= deadline:
                return
            try:
                frame = socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            wire.messages_received += 1
            wire.bytes_received += len(frame)
            try:
                self.handle(frame)
            except p.VersionMismatch:
                wire.frames_dropped += 1
                if self.state is State.CONNECTING:
                    self.incompatible()
            except (p.ProtocolError, CodecError, ValueError):
                wire.frames_dropped += 1
                if self.state is State.CONNECTING:
                    self.incompatible()

    def handle(self, frame: bytes) -> None:
        """Apply one frame from the proxy."""
        header = p.unpack_header(frame)
        if header.type in p.PROXY_TYPES and header.session in self.past_sessions:
            self._ctx.wire.frames_dropped += 1     # late, not wrong: no verdict on the peer
            return
        if header.type not in p.PROXY_TYPES or header.session != self.session:
            raise p.ProtocolError("unexpected message type or stale session")
        if header.receiver != self._ctx.incarnation:
            raise p.ProtocolError("message for another incarnation of this node")
        if self.incarnation and header.sender != self.incarnation:
            self.restart_seen()
            return
        now = time.monotonic()
        self.last_heard = now
        if self.paused:
            self.paused = False
            _log.info("peer %s answers again", self.address)
        kind = header.type
        if kind == p.DEAD_SUMMARY:
            try:
                self.apply_dead_summary(frame, now)
            except (p.ProtocolError, CodecError, ValueError) as exc:
                # a summary of this session that cannot be applied would stall the
                # stream for good (the peer resends the same): end it, never stay wrong
                _log.warning("zenmon connector %s: malformed dead summary (%s): nodedown",
                             self.address, exc)
                self.node_down("malformed dead summary")
                raise
        elif kind == p.HEARTBEAT_ACK:
            seq, ack = p.seq_ack(frame)
            self.acked(ack)
            if seq >= self.dead_expected:
                self.nack(now)
        elif kind == p.NACK_SUBSCRIBE:
            seq, ack = p.seq_ack(frame)
            self.acked(ack)
            if now - self.last_resend >= self._ctx.config.resend_interval / 1000:
                self.last_resend = now
                for sent_seq, sent in self.unacked:
                    if sent_seq >= seq and not self.send(sent, now):
                        break
        elif kind == p.WELCOME:
            if self.state is State.CONNECTING:
                identity = p.unpack_welcome(frame)
                if identity != self.address:
                    _log.warning("refused %s: the node there has the identity %r (dial "
                                 "it by its advertised address)", self.address, identity)
                    self.incompatible("identity mismatch")
                    return
                if self.incarnation == 0:
                    self.adopt(header.sender)
                self.state = State.UP
                self.attempt = 0
                self.penalty_until = 0.0
                _log.info("peer %s up (incarnation %d)", self.address, header.sender)
                self.resolve("compatible")
                self._ctx.node_monitors.session_up(self.address)
        elif kind == p.RESET:
            self.node_down("reset by peer")
        elif kind == p.FAREWELL:
            self.node_down("stopped")

    def apply_dead_summary(self, frame: bytes, now: float) -> None:
        """DOWNs for a DEAD_SUMMARY in sequence; a gap asks for a resend."""
        seq, ack, keys, indexes, reasons = p.unpack_dead_summary(
            frame, self._ctx.config.max_batch)
        self.acked(ack)
        if seq == self.dead_expected:
            decoded = decode_reasons(reasons)
            fired = self._core.fire_dead_summary(
                self.index, self.address, self.incarnation, keys, decoded, indexes,
                self.names.by_key)
            self.dead_expected += 1
            if fired:
                self._ctx.dispatcher.downs_queued()
            if self.names:
                self.forget_names(keys)
        elif seq > self.dead_expected:
            self.nack(now)

    def acked(self, ack: int) -> None:
        """Forget SUBSCRIBE messages the proxy has applied."""
        unacked = self.unacked
        while unacked and unacked[0][0] <= ack:
            self.unacked_bytes -= len(unacked.popleft()[1])

    def nack(self, now: float) -> None:
        """Ask for the dead summaries from dead_expected on (at most once a heartbeat)."""
        if now - self.last_nack < self._ctx.config.heartbeat_interval / 2000:
            return
        self.last_nack = now
        self.send(self.frame(p.NACK_DEADS, p.pack_seq_ack(self.dead_expected,
                                                          self.dead_expected - 1)), now)

    def restart_seen(self) -> None:
        """The remote answered as another incarnation: it restarted.

        Monitors by pid held here watch the dead incarnation: they fire ``nodedown``.
        Monitors by name that never reached it (no session was up since the last
        nodedown) are for whatever holds the name now: they move to the successor.
        """
        self.retire()
        self.incarnation_gone()
        successor = self._ctx.connectors.current(self.address)
        if successor is not self:
            successor.start_session(time.monotonic(),
                                    self._ctx.config.connect_timeout / 1000)

    def incarnation_gone(self) -> None:
        """This retired connector's incarnation is dead: move what never reached it by
        name, fire the rest (``nodedown``)."""
        if self.state is not State.UP:
            self.hand_names_over()
        self.node_down("restart")

    def hand_names_over(self) -> None:
        """Move this retired connector's monitors by name to the current connector of
        its address (refs kept; the successor subscribes them)."""
        if not self.names:
            return
        successor = self._ctx.connectors.current(self.address)
        core = self._core
        # the I/O thread alone takes two names locks (old, then new): no deadlock
        with self.names.lock, successor.names.lock:
            keys = {key: successor.names.key_for(name)
                    for key, (name, _) in self.names.by_key.items()
                    if core.has_target(self.index, key)}
            if keys:
                core.connector_move_names(self.index, successor.index, keys)
            self.names.clear()
        if keys:
            self._ctx.io.wake()

    def incompatible(self, why: str = "incompatible") -> None:
        """The remote spoke another protocol or garbage: penalty, then nodedown."""
        self.penalty_until = time.monotonic() + min(60.0, 2.0 ** self.attempt)
        self.attempt += 1
        self.node_down(why)

    def node_down(self, why: str) -> None:
        """Fire ``nodedown`` for every monitor held here and end the session."""
        was_up = self.state is State.UP
        if was_up:
            _log.warning("peer %s down: %s", self.address, why)
        elif self.state is State.CONNECTING:
            _log.warning("peer %s not reached: %s", self.address, why)
        self.state = State.IDLE
        self.end_session()
        self.unacked.clear()
        self.unacked_bytes = 0
        self.close_socket()
        self.fire_all()
        self.resolve("incompatible")
        self._ctx.node_monitors.session_down(self, self.address, why, was_up)

    def fire_all(self, start: int = 0) -> None:
        """``nodedown`` for every target of this connector (and drop queued work).

        Fired in chunks of about FIRE_CHUNK DOWNs, the rest re-posted to the I/O loop, so
        a node death with a million monitors does not stop every other thread (work
        messages included) for the whole of it; no new session starts meanwhile.
        """
        fired, resume = self._core.fire_connector(self.index, self.address, self.incarnation,
                                                  self.names.by_key, "nodedown", start,
                                                  FIRE_CHUNK)
        self.firing = resume >= 0
        if self.firing:
            self._ctx.io.call(lambda: self.fire_all(resume))
        elif self.names:
            self.forget_names()
        if fired:
            self._ctx.dispatcher.downs_queued()

    def resolve(self, answer: str) -> None:
        """Answer everyone waiting in ``connect``."""
        waiters, self.waiters = self.waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(answer)

    def on_transport_event(self) -> None:
        """Read the DEALER's socket monitor: is the connection to the peer alive?"""
        monitor = self.monitor_socket
        for _ in range(1000):
            if monitor is None or monitor is not self.monitor_socket:
                return
            try:
                message = parse_monitor_message(monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            event = message["event"]
            if _log.isEnabledFor(logging.DEBUG):
                _log.debug("transport %s: %s", self.address, zmq.Event(event).name)
            now = time.monotonic()
            if event == zmq.EVENT_CONNECTED:
                # a new TCP connection (its fd): sample its ACK counters while it lives
                self.acks = tcpinfo.AckClock(message["value"], self.port)
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.transport_up = True
                self.refused = False
                self.retried_at = 0.0
                if self.state is State.UP:
                    # reconnected within the session: ask for news at once
                    self.last_heartbeat = now
                    self.send(self.frame(p.HEARTBEAT, p.pack_seq_ack(
                        self.sub_seq, self.dead_expected - 1)), now)
            elif event == zmq.EVENT_DISCONNECTED:
                if self.transport_up:
                    self.transport_down_at = now
                self.transport_up = False
                self.retried_at = 0.0
            elif event == zmq.EVENT_CONNECT_RETRIED and not self.transport_up:
                # libzmq reports RETRIED when it schedules a reconnect (right after a
                # disconnect) and again when that attempt failed. A failure within
                # the reconnect interval plus half the connect timeout was refused
                # (nobody listens: the peer is dead), not timed out (partition).
                # Gaps we cannot judge (events read in one batch after a stall of
                # this thread) are left to the heartbeat_timeout rule.
                ivl, probe = self.zmtp.reconnect_ivl / 1000, self.zmtp.connect_timeout / 1000
                if self.retried_at and ivl * 0.6 < now - self.retried_at < ivl + probe / 2:
                    self.refused = True
                self.retried_at = now
            elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                _log.warning("peer %s refused this node's CURVE key (not in its "
                             "authorized list)", self.address)
                if self.state is State.CONNECTING:
                    self.incompatible("refused")
            elif event in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                           zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
                _log.warning("ZMTP handshake with %s failed (wrong CURVE key, or not "
                             "a zenmon node?)", self.address)

    def open_dealer(self) -> tuple[zmq.Socket[Any], zmq.Socket[Any]]:
        """A DEALER to this connector's node and its socket monitor, both watched by the
        I/O thread. -> (dealer, monitor)."""
        ctx = self._ctx
        config = ctx.config
        socket = ctx.io.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.IPV6, 1)
        # ZMTP heartbeats run in libzmq's I/O thread, without the GIL: a dead or cut
        # link is noticed (DISCONNECTED) even while the peer's Python is stalled; after
        # a cut, a fresh TCP connect every reconnect_ivl + connect_timeout instead of
        # the kernel's backoff, so a healed partition is reconnected in time for the
        # session to go on (zenmon/liveness.py)
        self.zmtp = liveness.zmtp_settings(config)
        liveness.apply_heartbeats(socket, self.zmtp, dialer=True)
        # the same routing id across reconnects: the proxy keeps the session (ROUTER
        # handover) and the sequence numbers repair what the reconnect lost
        socket.setsockopt(zmq.ROUTING_ID, self.routing_id)
        # bounds on what one peer can queue here (docs/protocol.md, "Limits")
        socket.setsockopt(zmq.SNDHWM, config.sndhwm)
        socket.setsockopt(zmq.RCVHWM, config.rcvhwm)
        socket.setsockopt(zmq.MAXMSGSIZE, config.max_frame_size)
        if self.server_key is not None:
            if ctx.curve is None:
                # no key pair of our own: dial with a throwaway one (the peer's
                # allow-list decides), so the link is still encrypted
                secret, public = Curve.generate()
                Curve(secret, public).dial(socket, self.server_key)
            else:
                ctx.curve.dial(socket, self.server_key)
        monitor = socket.get_monitor_socket(TRANSPORT_EVENTS)
        socket.connect(self.endpoint)
        ctx.io.watch(socket, self.on_readable)
        ctx.io.watch(monitor, self.on_transport_event)
        return socket, monitor

    def close_dealer(self, socket: zmq.Socket[Any], monitor: zmq.Socket[Any],
                     linger: int = 0) -> None:
        """Close a DEALER (after `linger` ms for a last frame) and its monitor."""
        io = self._ctx.io
        io.unwatch(monitor)
        io.unwatch(socket)
        try:
            socket.disable_monitor()
        except zmq.ZMQError:
            pass
        monitor.close(linger=0)
        socket.close(linger=linger)

    def close_socket(self, linger: int = 0) -> None:
        """Close this connector's DEALER (queued frames are dropped with it)."""
        if self.socket is not None:
            assert self.monitor_socket is not None
            self.close_dealer(self.socket, self.monitor_socket, linger)
            self.socket = self.monitor_socket = None
            self.transport_up = False

    def close(self) -> None:
        """Close for good (node stop, or retired with nothing left to watch); a live
        session is ended with a GOODBYE, so the proxy drops our subscriptions now."""
        linger = 0
        if self.state is State.UP and self.socket is not None:
            self.send(self.frame(p.GOODBYE), time.monotonic())
            linger = FAREWELL_LINGER
        self.close_socket(linger)
        self.closed = True
        self.resolve("incompatible")

    def _names_in(self, instructions: bytes) -> dict[int, str]:
        """Names for the name-key subscribes in this batch (they travel with it)."""
        if not self.names:
            return {}
        names = {}
        known = self.names.by_key
        for key in memoryview(instructions).cast("Q"):
            if key & NAME_KEY_FLAG and not key & UNSUBSCRIBE_FLAG:
                entry = known.get(key)
                if entry is not None:        # else: forgotten, the proxy answers noproc
                    names[key] = entry[0]
        return names

    def forget_names(self, keys: bytes | memoryview | None = None,
                     unsubscribed_only: bool = False) -> None:
        """Drop the name keys among `keys` (all when None) that no monitor uses now."""
        core = self._core
        names = self.names
        with names.lock:
            if keys is None:
                candidates = list(names.by_key)
            else:
                candidates = [key & ~UNSUBSCRIBE_FLAG
                              for key in memoryview(keys).cast("Q")
                              if key & NAME_KEY_FLAG
                              and (not unsubscribed_only or key & UNSUBSCRIBE_FLAG)]
            for key in candidates:
                if key in names.by_key and not core.has_target(self.index, key):
                    names.forget(key)


class NameKeys:
    """The names some monitor on one connector uses, and the keys that stand for them
    on the wire (one mapping, looked up both ways).

    ``by_key`` (key -> (name, node address)) is what the core builds a name monitor's
    Down from. Keys are never reused, so a late certificate cannot hit a new name.
    Changes are made under ``lock``.
    """

    __slots__ = ("address", "by_key", "lock", "_by_name", "_last")

    def __init__(self, address: str) -> None:
        self.address = address
        self.by_key: dict[int, tuple[str, str]] = {}
        self.lock = threading.Lock()
        self._by_name: dict[str, int] = {}
        self._last = 0

    def __len__(self) -> int:
        return len(self.by_key)

    def key_for(self, name: str) -> int:
        """The key standing for `name`, made on first use."""
        key = self._by_name.get(name)
        if key is None:
            self._last += 1
            key = NAME_KEY_FLAG | self._last
            self._by_name[name] = key
            self.by_key[key] = (name, self.address)
        return key

    def forget(self, key: int) -> None:
        """Drop `key` and its name."""
        name, _ = self.by_key.pop(key)
        del self._by_name[name]

    def clear(self) -> None:
        """Drop every name."""
        self.by_key.clear()
        self._by_name.clear()


class Connectors:
    """This node's connectors: the current one for each remote address, and every one
    still open (swept by the I/O thread until it closes)."""

    def __init__(self, ctx: NodeContext) -> None:
        self._ctx = ctx
        self._current: dict[str, Connector] = {}
        self.open: list[Connector] = []
        self._lock = threading.Lock()

    def current(self, address: str, incarnation: int = 0) -> Connector:
        """The current connector for the node at `address`: made on first use (bound
        to `incarnation` when given), and again after the node restarted."""
        connector = self._current.get(address)
        if connector is not None and not connector.retired:
            return connector
        ctx = self._ctx
        ctx.require_started()
        if address == ctx.address:
            raise ValueError("that address is this node's own")
        with self._lock:
            connector = self._current.get(address)
            if connector is None or connector.retired:
                connector = Connector(ctx, address, incarnation)
                self._current[address] = connector
                self.open.append(connector)
                ctx.io.wake()
            return connector

    def get(self, address: str) -> Connector | None:
        """The latest connector for `address` (retired or not), or None; makes none."""
        return self._current.get(address)

    def indexes(self, address: str, incarnation: int) -> list[int]:
        """The core indexes of the open connectors for pids of (address, incarnation)."""
        return [c.index for c in list(self.open)
                if c.address == address and c.incarnation == incarnation]

    def sweep(self, now: float, run: Callable[..., None]) -> None:
        """One connector sweep (I/O thread): ``run(connector.sweep, now)`` for each; the
        closed ones are forgotten."""
        for connector in list(self.open):
            run(connector.sweep, now)
            if connector.closed:
                self.open.remove(connector)

    def close_all(self) -> None:
        """Close every connector (the node stops)."""
        for connector in self.open:
            connector.close()

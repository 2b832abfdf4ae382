"""The Connector: this node's link to one remote node (one incarnation of it).

It keeps the remote targets watched from here (in the core, under its connector
index), sends queued subscribe/unsubscribe instructions as one SUBSCRIBE message
per sweep, turns DEAD_SUMMARY messages into DOWNs, and owns liveness: HELLO /
WELCOME for compatibility, heartbeats, and ``nodedown`` for every monitor it
holds when the node dies, restarts, or cannot be reached. All methods but
``monitor``/``monitor_name``/``compatibility`` run on the node's I/O thread.

Reliability: SUBSCRIBE and DEAD_SUMMARY messages carry sequence numbers and
cumulative acks; a gap (ZeroMQ may drop queued messages on reconnect) is repaired
by a NACK and a retransmit from the sender's unacked buffer. Heartbeats carry the
last sequence sent, so a lost tail is noticed too.
"""

from __future__ import annotations

import enum
import secrets
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import zmq

from . import _core
from . import protocol as p
from ._core import NAME_KEY_FLAG, NO_SUBSCRIBER, TARGET_DEAD, UNSUBSCRIBE_FLAG, Pid
from .codec import CodecError, decode_reasons, encode_reasons
from .curve import split_address
from .errors import ProcessExited

if TYPE_CHECKING:
    import concurrent.futures

    from .node import Node


FIRE_CHUNK = 500       # DOWNs queued per step of a nodedown (0.1-0.5 ms each)


class State(enum.Enum):
    """Where a connector's session stands."""

    IDLE = "idle"              # no session: nothing watched, or after a failure
    CONNECTING = "connecting"  # HELLO sent, waiting for WELCOME
    UP = "up"                  # compatible: instructions flow, heartbeats run


class Connector:
    """The link to the node at `address`, for pids of one incarnation."""

    def __init__(self, node: Node, address: str, incarnation: int = 0) -> None:
        self._node = node
        self._core = node._core
        self.address = address
        self.endpoint, self.server_key = split_address(address)
        self.index: int = node._core.connector_new()
        self.incarnation = incarnation       # 0 until a pid or WELCOME tells
        self.state = State.IDLE
        self.retired = False                 # the remote restarted: no new monitors here
        self.firing = False                  # a chunked nodedown is under way
        self.closed = False
        self.socket: zmq.Socket[Any] | None = None
        self.session = 0
        self.sub_seq = 0                     # last SUBSCRIBE sent
        self.unacked: deque[tuple[int, bytes]] = deque()
        self.dead_expected = 1               # next DEAD_SUMMARY seq
        self.last_heard = 0.0
        self.last_sent = 0.0
        self.last_heartbeat = 0.0
        self.last_nack = 0.0
        self.connect_deadline = 0.0
        self.attempt = 0
        self.penalty_until = 0.0
        self.sweeps = 0
        self.waiters: list[concurrent.futures.Future[str]] = []
        self._name_keys: dict[str, int] = {}
        self.names: dict[int, tuple[str, str]] = {}
        self._names_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Connector {self.address} inc={self.incarnation} {self.state.value}>"

    # ------------------------------------------------------- any thread

    def monitor(self, subscriber: int, pid: Pid) -> int:
        """Monitor remote `pid` for process id `subscriber`. -> ref (never waits)."""
        if self.incarnation == 0:
            self.adopt(pid.incarnation)
        if pid.incarnation != self.incarnation:
            if pid.incarnation < self.incarnation:   # an older incarnation: dead
                return self._node._local.fired(subscriber, (pid, "noproc", None), False)
            self.restart_seen_from_user()
            return self._node._connector(self.address, pid.incarnation).monitor(
                subscriber, pid)
        ref = self._core.monitor(subscriber, self.index, pid.id, False)
        if ref <= TARGET_DEAD:
            raise ProcessExited("a dead process cannot monitor")
        return ref

    def monitor_name(self, subscriber: int, name: str) -> int:
        """Monitor the process registered as `name` on the remote node."""
        with self._names_lock:
            key = self._name_keys.get(name)
            if key is None:
                key = NAME_KEY_FLAG | (len(self._name_keys) + 1)
                self._name_keys[name] = key
                self.names[key] = (name, self.address)
        ref = self._core.monitor(subscriber, self.index, key, True)
        if ref <= TARGET_DEAD:
            raise ProcessExited("a dead process cannot monitor")
        return ref

    def link(self, subscriber: int, pid: Pid, others: list[int]) -> None:
        """Link process id `subscriber` to remote `pid` (never waits)."""
        if self.incarnation == 0:
            self.adopt(pid.incarnation)
        if pid.incarnation != self.incarnation:
            if pid.incarnation < self.incarnation:   # an older incarnation: dead
                self._node._links.fired(subscriber, self.index, pid, "noproc")
                return
            self.restart_seen_from_user()
            self._node._connector(self.address, pid.incarnation).link(subscriber, pid, others)
            return
        if _core.link_remote(self._core, subscriber, self.index, pid.id,
                             others) == NO_SUBSCRIBER:
            raise ProcessExited("a dead process cannot link")

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
        self._node._call_in_io(lambda: self.node_down("restart"))

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
        config = self._node._config
        core = self._core
        has_work = (core.connector_pending(self.index) or core.connector_targets(self.index)
                    or _core.connector_link_pending(core, self.index))
        if self.state is State.IDLE:
            if self.retired:
                if not has_work:
                    self.close()
                else:
                    self.fire_all()
            elif has_work:
                if now < self.penalty_until:
                    self.fire_all()        # incompatible, penalty running: nodedown at once
                else:
                    self.start_session(now, config.connect_timeout / 1000)
            return
        if self.state is State.CONNECTING:
            if now >= self.connect_deadline:
                self.node_down("unavailable")
            elif now - self.last_sent >= config.heartbeat_interval / 1000:
                self.send_hello(now)
            return
        if now - self.last_heard > config.heartbeat_timeout / 1000:
            # read what is waiting first: after a long pause of this process (a big
            # GC, a frozen thread) the answers may be queued right here
            self.on_readable()
            if self.state is not State.UP:
                return
            if now - self.last_heard > config.heartbeat_timeout / 1000:
                self.node_down("heartbeat timeout")
                return
        instructions = core.connector_take(self.index, config.connector_chunk_size)
        link_ops: bytes = b""
        reasons: list[Any] = []
        if not core.connector_pending(self.index):
            # link ops only once the instructions before them are out: a LINK never
            # overtakes the subscribe of its target
            link_ops, reasons = _core.connector_take_links(core, self.index,
                                                           config.connector_chunk_size)
        if instructions or link_ops:
            self.sweeps += 1
            self.sub_seq += 1
            body = p.pack_subscribe(self.sub_seq, self.dead_expected - 1, instructions,
                                    self._names_in(instructions), link_ops,
                                    encode_reasons(reasons) if reasons else b"")
            frame = self.frame(p.SUBSCRIBE, body)
            self.unacked.append((self.sub_seq, frame))
            self.send(frame, now)
        # heartbeats run whatever else is sent: they are what the proxy answers, so a
        # long run of SUBSCRIBE batches must not starve last_heard
        if now - self.last_heartbeat >= config.heartbeat_interval / 1000:
            self.last_heartbeat = now
            self.send(self.frame(p.HEARTBEAT, p.pack_seq_ack(self.sub_seq,
                                                             self.dead_expected - 1)), now)

    def start_session(self, now: float, timeout: float) -> None:
        """Open a fresh session: new socket, new session id, HELLO."""
        self.close_socket()
        self.socket = self._node._open_dealer(self)
        self.session = secrets.randbits(63) + 1
        self.sub_seq = 0
        self.unacked.clear()
        self.dead_expected = 1
        self.state = State.CONNECTING
        self.connect_deadline = now + timeout
        self.send_hello(now)

    def send_hello(self, now: float) -> None:
        """(Re)send HELLO for the current session."""
        config = self._node._config
        if config.dispatch_mode == "adaptive":   # we pace our own inboxes: ask for more
            body = p.hello_body(self._node.address, config.adaptive_summary_size,
                                config.adaptive_summary_interval)
        else:
            body = p.hello_body(self._node.address)
        self.send(self.frame(p.HELLO, body), now)

    def frame(self, kind: int, body: bytes = b"") -> bytes:
        """A frame of this session, addressed to the incarnation we believe in."""
        return p.pack(kind, self._node.incarnation, self.incarnation, self.session, body)

    def send(self, frame: bytes, now: float) -> None:
        """Send without blocking; a refused send is counted (the seq layer recovers)."""
        wire = self._node._wire
        assert self.socket is not None
        try:
            self.socket.send(frame, zmq.NOBLOCK, copy=len(frame) < 65536)
        except zmq.ZMQError:
            wire.frames_dropped += 1
            return
        self.last_sent = now
        wire.messages_sent += 1
        wire.bytes_sent += len(frame)

    def on_readable(self) -> None:
        """Read what the remote proxy sent (bounded, so other sockets get their turn)."""
        socket = self.socket
        wire = self._node._wire
        for _ in range(1000):
            if socket is None or socket is not self.socket:
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
        if header.type not in p.PROXY_TYPES or header.session != self.session:
            raise p.ProtocolError("unexpected message type or stale session")
        if header.receiver != self._node.incarnation:
            raise p.ProtocolError("message for another incarnation of this node")
        if self.incarnation and header.sender != self.incarnation:
            self.restart_seen()
            return
        now = time.monotonic()
        self.last_heard = now
        kind = header.type
        if kind == p.DEAD_SUMMARY:
            seq, ack, keys, indexes, reasons = p.unpack_dead_summary(frame)
            self.acked(ack)
            if seq == self.dead_expected:
                try:
                    decoded = decode_reasons(reasons)
                except CodecError:
                    self.node_down("undecodable dead summary")   # never silently wrong
                    raise
                if not isinstance(decoded, list):
                    self.node_down("undecodable dead summary")
                    raise p.ProtocolError("reasons are not a list")
                fired = self._core.fire_dead_summary(
                    self.index, self.address, self.incarnation, keys, decoded, indexes,
                    self.names)
                self.dead_expected += 1
                if fired:
                    self._node._downs_queued()
            elif seq > self.dead_expected:
                self.nack(now)
        elif kind == p.HEARTBEAT_ACK:
            seq, ack = p.seq_ack(frame)
            self.acked(ack)
            if seq >= self.dead_expected:
                self.nack(now)
        elif kind == p.NACK_SUBSCRIBE:
            seq, ack = p.seq_ack(frame)
            self.acked(ack)
            for sent_seq, sent in self.unacked:
                if sent_seq >= seq:
                    self.send(sent, now)
        elif kind == p.WELCOME:
            if self.state is State.CONNECTING:
                if self.incarnation == 0:
                    self.adopt(header.sender)
                self.state = State.UP
                self.attempt = 0
                self.penalty_until = 0.0
                self.resolve("compatible")
        elif kind == p.RESET:
            self.node_down("reset by peer")

    def acked(self, ack: int) -> None:
        """Forget SUBSCRIBE messages the proxy has applied."""
        unacked = self.unacked
        while unacked and unacked[0][0] <= ack:
            unacked.popleft()

    def nack(self, now: float) -> None:
        """Ask for the dead summaries from dead_expected on (at most once a heartbeat)."""
        if now - self.last_nack < self._node._config.heartbeat_interval / 2000:
            return
        self.last_nack = now
        self.send(self.frame(p.NACK_DEADS, p.pack_seq_ack(self.dead_expected,
                                                          self.dead_expected - 1)), now)

    def restart_seen(self) -> None:
        """The remote answered as another incarnation: it restarted."""
        self.retire()
        self.node_down("restart")
        successor = self._node._connector(self.address)
        if successor is not self:
            successor.start_session(time.monotonic(),
                                    self._node._config.connect_timeout / 1000)

    def incompatible(self) -> None:
        """The remote spoke another protocol or garbage: penalty, then nodedown."""
        self.penalty_until = time.monotonic() + min(60.0, 2.0 ** self.attempt)
        self.attempt += 1
        self.node_down("incompatible")

    def node_down(self, why: str) -> None:
        """Fire ``nodedown`` for every monitor held here and end the session."""
        self.state = State.IDLE
        self.session = 0
        self.unacked.clear()
        self.close_socket()
        self.fire_all()
        self.resolve("incompatible")

    def fire_all(self, start: int = 0) -> None:
        """``nodedown`` for every target of this connector (and drop queued work).

        Fired in chunks of about FIRE_CHUNK DOWNs, the rest re-posted to the I/O loop, so
        a node death with a million monitors does not stop every other thread (work
        messages included) for the whole of it; no new session starts meanwhile.
        """
        fired, resume = self._core.fire_connector(self.index, self.address, self.incarnation,
                                                  self.names, "nodedown", start, FIRE_CHUNK)
        self.firing = resume >= 0
        if self.firing:
            self._node._call_in_io(lambda: self.fire_all(resume))
        if fired:
            self._node._downs_queued()

    def resolve(self, answer: str) -> None:
        """Answer everyone waiting in ``connect``."""
        waiters, self.waiters = self.waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(answer)

    def close_socket(self) -> None:
        """Close this connector's DEALER (queued frames are dropped with it)."""
        if self.socket is not None:
            self._node._close_socket(self.socket)
            self.socket = None

    def close(self) -> None:
        """Close for good (node stop, or retired with nothing left to watch)."""
        self.close_socket()
        self.closed = True
        self.resolve("incompatible")

    def _names_in(self, instructions: bytes) -> dict[int, str]:
        """Names for the name-key subscribes in this batch (they travel with it)."""
        if not self.names:
            return {}
        names = {}
        for key in memoryview(instructions).cast("Q"):
            if key & NAME_KEY_FLAG and not key & UNSUBSCRIBE_FLAG:
                names[key] = self.names[key][0]
        return names

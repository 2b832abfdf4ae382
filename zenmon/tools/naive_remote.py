"""The naive *remote* baseline that ``zenmon bench`` compares zenmon's remote figures with.

Same process model and transport as zenmon (a node per OS process, one I/O thread
per node owning its ZeroMQ sockets, one ROUTER bound per node, one DEALER per
remote node, loopback TCP, unlimited high-water marks), but what a first version
does: **one network message per monitor and per death, no batching, no
dispatcher, no truncation**.

- ``NaiveRemoteNode(listen).process()`` -> :class:`NaiveRemoteProcess` with a
  ``pid`` = :class:`NaivePid` ``(node address, id)`` and a :class:`queue.Queue`
  inbox.
- ``proc.monitor(remote_pid)`` sends one MONITOR message ``(pid id, ref)`` to the
  remote node's ROUTER and returns the ref at once (the message is handed to the
  I/O thread, which owns the sockets). The remote side keeps
  ``{pid id: [(peer identity, ref), ...]}``; a pid that is not alive is answered
  with a ``"noproc"`` DOWN at once.
- ``proc.exit(reason)`` on the remote side sends one DOWN message
  ``(ref, pid id, reason)`` per monitor on it, each encoded with msgpack (never
  pickle), the reason copied into every message as is (not truncated).
- The watching side's I/O thread decodes each DOWN and puts a
  :class:`NaiveRemoteDown` straight into the watcher's inbox.
- Liveness: every ``heartbeat_interval`` ms each DEALER sends a PING, the remote
  answers PONG; a remote silent for ``heartbeat_timeout`` ms is declared down and
  the I/O thread puts one ``"nodedown"`` DOWN per monitor held on it in the
  watchers' inboxes (a later monitor of that node opens a new connection). A
  watching peer silent for ``heartbeat_timeout`` has its subscriptions dropped by
  a scan of the table. PINGs share the stream with MONITOR messages, so a PING
  sent behind a million MONITORs is answered only after all of them are applied:
  with a short ``heartbeat_timeout`` that backlog reads as a dead node (the
  benchmark subscribes with a long timeout, then shortens it with ``configure``).

Wire format: every message is one ZeroMQ frame holding a msgpack array whose first
element is the message type. Byte counters count the payload of every message
sent or received (the ROUTER's routing identity stays local and is not counted;
ZMTP's own 2-byte frame header is not counted either, as in zenmon).

Deliberately missing (it is a baseline, not a product): names, incarnations,
resynchronisation after ZeroMQ drops queued messages, local monitors (monitor a
pid of another node), and dropping a watcher's monitors when the watcher exits
(its DOWNs still land in its inbox). Thread safety is the plain kind: one lock per
node around the tables; ``monitor``/``demonitor``/``exit``/``send`` may be called
from any thread.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
import time
from collections import deque
from typing import Any, NamedTuple

import msgpack
import zmq

__all__ = ["NaivePid", "NaiveRemoteDown", "NaiveRemoteNode", "NaiveRemoteProcess"]

# message types (first element of the msgpack array)
MONITOR = 1      # C->P  (MONITOR, pid id, ref)
DEMONITOR = 2    # C->P  (DEMONITOR, pid id, ref)
PING = 3         # C->P  (PING,)
DOWN = 17        # P->C  (DOWN, ref, pid id, reason)
PONG = 18        # P->C  (PONG,)

_SEND_CHUNK = 10_000      # outgoing messages sent per I/O loop turn (then poll again)
_RECV_CHUNK = 10_000      # incoming messages read per socket per turn


class NaivePid(NamedTuple):
    """A naive pid: ``(node address, id)``."""

    node: str
    id: int


class NaiveRemoteDown(NamedTuple):
    """``(ref, pid, reason)``: the naive remote baseline's DOWN message."""

    ref: int
    pid: NaivePid
    reason: Any


def _encodable(obj: Any) -> Any:
    """msgpack fallback for reasons it cannot encode: a safe, readable form."""
    if isinstance(obj, BaseException):
        return [type(obj).__name__, str(obj)]
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    return repr(obj)


_packb = msgpack.Packer(default=_encodable, use_bin_type=True).pack
_PING_FRAME = msgpack.packb((PING,))
_PONG_FRAME = msgpack.packb((PONG,))


def _unpack(frame: bytes) -> Any:
    return msgpack.unpackb(frame, raw=False, use_list=False, strict_map_key=False)


class _Connection:
    """The watching side's link to one remote node (a DEALER, owned by the I/O thread)."""

    __slots__ = ("address", "refs", "socket", "last_heard", "dead")

    def __init__(self, address: str, now: float) -> None:
        self.address = address
        self.refs: dict[int, tuple[NaiveRemoteProcess, NaivePid]] = {}
        self.socket: zmq.Socket[Any] | None = None
        self.last_heard = now     # a node that never answers is down after the timeout
        self.dead = False


class NaiveRemoteProcess:
    """A process of :class:`NaiveRemoteNode`: a pid and a :class:`queue.Queue` inbox."""

    __slots__ = ("node", "pid", "alive", "inbox")

    def __init__(self, node: NaiveRemoteNode, pid: NaivePid) -> None:
        self.node = node
        self.pid = pid
        self.alive = True
        self.inbox: queue.Queue[Any] = queue.Queue()

    def monitor(self, target: NaivePid) -> int:
        """Monitor a process of another node: one MONITOR message; returns the ref at once."""
        node = self.node
        if target.node == node.address:
            raise ValueError("the naive remote baseline monitors processes of other nodes only")
        ref = next(node._refs)
        with node._lock:
            conn = node._conns.get(target.node)
            if conn is None:
                conn = _Connection(target.node, time.monotonic())
                node._conns[target.node] = conn
            conn.refs[ref] = (self, target)
        node._to_peers.append((conn, _packb((MONITOR, target.id, ref))))
        node._wake()
        return ref

    def demonitor(self, ref: int) -> bool:
        """Cancel ``ref``: one DEMONITOR message; unknown refs are a no-op. -> True."""
        node = self.node
        with node._lock:
            for conn in node._conns.values():
                entry = conn.refs.pop(ref, None)
                if entry is not None:
                    break
            else:
                return True
        node._to_peers.append((conn, _packb((DEMONITOR, entry[1].id, ref))))
        node._wake()
        return True

    def exit(self, reason: Any = "normal") -> None:
        """Die: one DOWN message per remote monitor on this process (reason as is)."""
        node = self.node
        pid_id = self.pid.id
        with node._lock:
            if not self.alive:
                return
            self.alive = False
            node._processes.pop(pid_id, None)
            watchers = node._subscriptions.pop(pid_id, None)
            if watchers:
                node.subscriptions_size -= len(watchers)
        if watchers:
            out = node._to_watchers
            for identity, ref in watchers:
                out.append((identity, _packb((DOWN, ref, pid_id, reason))))
            node._wake()

    def receive(self, timeout: float | None = None) -> Any:
        """Next message in arrival order; :class:`TimeoutError` on timeout."""
        try:
            return self.inbox.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError("no message") from None

    def send(self, obj: Any) -> None:
        """Put ``obj`` in this process's inbox (work messages)."""
        self.inbox.put(obj)


class NaiveRemoteNode:
    """One node: a ROUTER for the processes watched from elsewhere, a DEALER per remote node.

    ``NaiveRemoteNode(listen="tcp://127.0.0.1:0", heartbeat_interval=200,
    heartbeat_timeout=1000)``; ``start()`` binds and starts the I/O thread, and
    ``address`` is then the bound endpoint. Other keyword settings are accepted and
    ignored, so a benchmark can pass the same settings to both implementations.
    """

    def __init__(self, listen: str = "tcp://127.0.0.1:0", heartbeat_interval: int = 200,
                 heartbeat_timeout: int = 1000, **_ignored: Any) -> None:
        self._listen = listen
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.address = ""
        self._lock = threading.Lock()
        self._pids = itertools.count(1)
        self._refs = itertools.count(1)
        self._processes: dict[int, NaiveRemoteProcess] = {}
        # proxy side: {pid id: [(peer identity, ref), ...]} and when each peer was heard
        self._subscriptions: dict[int, list[tuple[bytes, int]]] = {}
        self._peers_heard: dict[bytes, float] = {}
        self.subscriptions_size = 0
        # watching side: {node address: connection}
        self._conns: dict[str, _Connection] = {}
        # outgoing messages, handed to the I/O thread
        self._to_peers: deque[tuple[_Connection, bytes]] = deque()
        self._to_watchers: deque[tuple[bytes, bytes]] = deque()
        self.messages_sent = self.bytes_sent = 0
        self.messages_received = self.bytes_received = 0
        self._context: zmq.Context[Any] | None = None
        self._router: zmq.Socket[Any] | None = None
        self._poller = zmq.Poller()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._wake_pending = False
        self._running = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ life cycle

    def start(self) -> NaiveRemoteNode:
        """Bind the ROUTER and start the I/O thread. -> self."""
        self._context = zmq.Context()
        router = self._context.socket(zmq.ROUTER)
        for option, value in ((zmq.LINGER, 0), (zmq.SNDHWM, 0), (zmq.RCVHWM, 0),
                              (zmq.ROUTER_MANDATORY, 1)):
            router.setsockopt(option, value)
        router.bind(self._listen)
        self._router = router
        self.address = router.getsockopt_string(zmq.LAST_ENDPOINT)
        self._running = True
        self._thread = threading.Thread(target=self._run, name=f"naive-io {self.address}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the I/O thread and close the sockets."""
        if not self._running:
            return
        self._running = False
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._context is not None:
            self._context.destroy(linger=0)
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> NaiveRemoteNode:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------- processes

    def process(self) -> NaiveRemoteProcess:
        """A new local process."""
        proc = NaiveRemoteProcess(self, NaivePid(self.address, next(self._pids)))
        with self._lock:
            self._processes[proc.pid.id] = proc
        return proc

    def configure(self, heartbeat_interval: int | None = None,
                  heartbeat_timeout: int | None = None, **_ignored: Any) -> None:
        """Change the heartbeat settings (ms); other settings are accepted and ignored."""
        if heartbeat_interval is not None:
            self.heartbeat_interval = int(heartbeat_interval)
        if heartbeat_timeout is not None:
            self.heartbeat_timeout = int(heartbeat_timeout)
        self._wake()

    def metrics(self) -> dict[str, int]:
        """Table sizes and wire counters, under zenmon's names where one applies."""
        return {
            "zenmon.proxy.subscribers.size": self.subscriptions_size,
            "zenmon.local.references.size": sum(len(c.refs) for c in list(self._conns.values())),
            "zenmon.local.processes.size": len(self._processes),
            "zenmon.wire.messages.sent": self.messages_sent,
            "zenmon.wire.messages.received": self.messages_received,
            "zenmon.wire.bytes.sent": self.bytes_sent,
            "zenmon.wire.bytes.received": self.bytes_received,
        }

    # ------------------------------------------------------------- I/O thread

    def _wake(self) -> None:
        # coalesced: the I/O thread clears the flag before it drains the queues
        if not self._wake_pending:
            self._wake_pending = True
            try:
                os.write(self._wake_w, b"!")
            except OSError:
                pass

    def _run(self) -> None:
        poller = self._poller
        router = self._router
        assert router is not None
        poller.register(self._wake_r, zmq.POLLIN)
        poller.register(router, zmq.POLLIN)
        dealers: dict[Any, _Connection] = {}
        next_beat = time.monotonic() + self.heartbeat_interval / 1000
        while self._running:
            busy = bool(self._to_peers or self._to_watchers)
            timeout = 0 if busy else max(0, int((next_beat - time.monotonic()) * 1000) + 1)
            for sock, _ in poller.poll(timeout):
                if sock == self._wake_r:
                    self._wake_pending = False
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except (BlockingIOError, OSError):
                        pass
                elif sock is router:
                    self._on_router()
                else:
                    conn = dealers.get(sock)
                    if conn is not None:
                        self._on_dealer(conn)
            self._flush(dealers)
            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + self.heartbeat_interval / 1000
                self._heartbeat(now, dealers)

    def _flush(self, dealers: dict[Any, _Connection]) -> None:
        """Send queued messages, one ZeroMQ message each (a chunk per turn)."""
        to_peers = self._to_peers
        for _ in range(min(_SEND_CHUNK, len(to_peers))):
            conn, frame = to_peers.popleft()
            if conn.dead:
                continue
            sock = conn.socket
            if sock is None:
                sock = self._open(conn, dealers)
            sock.send(frame, zmq.NOBLOCK)
            self.messages_sent += 1
            self.bytes_sent += len(frame)
        to_watchers = self._to_watchers
        router = self._router
        assert router is not None
        for _ in range(min(_SEND_CHUNK, len(to_watchers))):
            identity, frame = to_watchers.popleft()
            try:
                router.send_multipart((identity, frame), zmq.NOBLOCK)
            except zmq.ZMQError:      # the peer is gone (ROUTER_MANDATORY): dropped
                continue
            self.messages_sent += 1
            self.bytes_sent += len(frame)

    def _open(self, conn: _Connection, dealers: dict[Any, _Connection]) -> zmq.Socket[Any]:
        assert self._context is not None
        sock = self._context.socket(zmq.DEALER)
        for option, value in ((zmq.LINGER, 0), (zmq.SNDHWM, 0), (zmq.RCVHWM, 0),
                              (zmq.RECONNECT_IVL, 50), (zmq.RECONNECT_IVL_MAX, 1000)):
            sock.setsockopt(option, value)
        sock.connect(conn.address)
        conn.socket = sock
        dealers[sock] = conn
        self._poller.register(sock, zmq.POLLIN)
        sock.send(_PING_FRAME, zmq.NOBLOCK)
        self.messages_sent += 1
        self.bytes_sent += len(_PING_FRAME)
        return sock

    def _on_router(self) -> None:
        """Proxy side: MONITOR / DEMONITOR / PING from watching nodes."""
        router = self._router
        assert router is not None
        now = time.monotonic()
        heard = self._peers_heard
        for _ in range(_RECV_CHUNK):
            try:
                frames = router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.messages_received += 1
            self.bytes_received += len(frames[-1])
            if len(frames) != 2:
                continue
            identity, frame = frames
            heard[identity] = now
            try:
                message = _unpack(frame)
                kind = message[0]
            except Exception:
                continue
            if kind == MONITOR:
                _, pid_id, ref = message
                with self._lock:
                    alive = pid_id in self._processes
                    if alive:
                        watchers = self._subscriptions.get(pid_id)
                        if watchers is None:
                            self._subscriptions[pid_id] = [(identity, ref)]
                        else:
                            watchers.append((identity, ref))
                        self.subscriptions_size += 1
                if not alive:
                    self._to_watchers.append((identity, _packb((DOWN, ref, pid_id, "noproc"))))
            elif kind == DEMONITOR:
                _, pid_id, ref = message
                with self._lock:
                    watchers = self._subscriptions.get(pid_id)
                    if watchers and (identity, ref) in watchers:
                        watchers.remove((identity, ref))
                        self.subscriptions_size -= 1
                        if not watchers:
                            del self._subscriptions[pid_id]
            elif kind == PING:
                self._to_watchers.append((identity, _PONG_FRAME))

    def _on_dealer(self, conn: _Connection) -> None:
        """Watching side: DOWN / PONG from one remote node."""
        sock = conn.socket
        assert sock is not None
        conn.last_heard = time.monotonic()
        lock = self._lock
        refs = conn.refs
        for _ in range(_RECV_CHUNK):
            try:
                frame = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.messages_received += 1
            self.bytes_received += len(frame)
            try:
                message = _unpack(frame)
                kind = message[0]
            except Exception:
                continue
            if kind == DOWN:
                _, ref, _pid_id, reason = message
                with lock:
                    entry = refs.pop(ref, None)
                if entry is not None:
                    watcher, pid = entry
                    watcher.inbox.put(NaiveRemoteDown(ref, pid, reason))

    def _heartbeat(self, now: float, dealers: dict[Any, _Connection]) -> None:
        timeout = self.heartbeat_timeout / 1000
        for conn in list(self._conns.values()):
            if conn.socket is None:
                continue
            if now - conn.last_heard > timeout:
                self._node_down(conn, dealers)
                continue
            conn.socket.send(_PING_FRAME, zmq.NOBLOCK)
            self.messages_sent += 1
            self.bytes_sent += len(_PING_FRAME)
        gone = [identity for identity, last in self._peers_heard.items() if now - last > timeout]
        for identity in gone:
            del self._peers_heard[identity]
            self._drop_peer(identity)

    def _node_down(self, conn: _Connection, dealers: dict[Any, _Connection]) -> None:
        """A remote went silent: one "nodedown" DOWN per monitor held on it, at once."""
        with self._lock:
            conn.dead = True
            if self._conns.get(conn.address) is conn:
                del self._conns[conn.address]
            refs, conn.refs = conn.refs, {}
        sock = conn.socket
        if sock is not None:
            dealers.pop(sock, None)
            self._poller.unregister(sock)
            sock.close(linger=0)
            conn.socket = None
        for ref, (watcher, pid) in refs.items():
            watcher.inbox.put(NaiveRemoteDown(ref, pid, "nodedown"))

    def _drop_peer(self, identity: bytes) -> None:
        """A watching node went silent: drop its subscriptions (a scan: no per-peer index)."""
        with self._lock:
            for pid_id in list(self._subscriptions):
                watchers = self._subscriptions[pid_id]
                kept = [w for w in watchers if w[0] != identity]
                if len(kept) != len(watchers):
                    self.subscriptions_size -= len(watchers) - len(kept)
                    if kept:
                        self._subscriptions[pid_id] = kept
                    else:
                        del self._subscriptions[pid_id]

"""Helpers for remote tests: zenmon nodes in their own OS processes, raw sockets.

A :class:`RemoteNode` is one ``tests/nodeproc.py`` subprocess on a port of
127.0.0.1, driven over its stdin/stdout with JSON lines: a
:class:`zenmon.tools.child.Child` (the demo and benchmarks use the same), whose
every read has a deadline, so a hung child fails the test instead of hanging it.
:class:`RemoteNodes` starts them and, at teardown, kills each by its own OS pid
(SIGCONT first in case a test froze it, then SIGKILL and wait).
"""

from __future__ import annotations

import json
import queue
import random
import signal
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any

import zmq

import zenmon
from helpers import wait_for
from zenmon.tools.child import Child, ChildError

#: Fast settings for both ends of every remote test (the same on both sides).
REMOTE_SETTINGS: dict[str, Any] = {
    "connector_sweep_interval": 10,
    "batcher_sweep_interval": 10,
    "demand_interval": 10,
    "heartbeat_interval": 50,
    "heartbeat_timeout": 500,
    "connect_timeout": 500,
}

#: REMOTE_SETTINGS plus unthrottled delivery, for tests that move many DOWNs.
BULK_SETTINGS: dict[str, Any] = {**REMOTE_SETTINGS, "dispatch_mode": "unlimited"}

START_TIMEOUT = 20.0
CALL_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def reason_to_json(value: Any) -> Any:
    """The JSON form nodeproc.py reads: tuples and bytes tagged, the rest as is."""
    if isinstance(value, bytes):
        return {"__bytes__": value.decode("latin-1")}
    if isinstance(value, tuple):
        return {"__tuple__": [reason_to_json(v) for v in value]}
    if isinstance(value, list):
        return [reason_to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: reason_to_json(v) for k, v in value.items()}
    return value


def reason_from_json(value: Any) -> Any:
    """Back from nodeproc.py's JSON form (exceptions become ExitException-like tuples)."""
    if isinstance(value, list):
        return [reason_from_json(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1 and "__tuple__" in value:
            return tuple(reason_from_json(v) for v in value["__tuple__"])
        if len(value) == 1 and "__bytes__" in value:
            return str(value["__bytes__"]).encode("latin-1")
        if len(value) == 1 and "__exception__" in value:
            return ("exception", *value["__exception__"])
        return {k: reason_from_json(v) for k, v in value.items()}
    return value


class RemoteError(ChildError, AssertionError):
    """The subprocess answered a command with an error, or not at all."""


class RemoteNode(Child):
    """One zenmon node in a subprocess (see ``tests/nodeproc.py`` for the commands).

    The plumbing (start-up line, deadlines, kill by pid) is
    :class:`zenmon.tools.child.Child`'s; this class adds the typed commands.
    """

    error = RemoteError

    def __init__(self, port: int = 0, settings: dict[str, Any] | None = None,
                 curve: dict[str, Any] | None = None, advertise: str | None = None,
                 listen: str | None = None, prefix: list[str] | None = None) -> None:
        self.port = port
        self.settings = dict(REMOTE_SETTINGS if settings is None else settings)
        argv = ["--port", str(port), "--settings", json.dumps(self.settings)]
        if curve is not None:
            argv += ["--curve", json.dumps(_curve_json(curve))]
        if advertise is not None:
            argv += ["--advertise", advertise]
        if listen is not None:
            argv += ["--listen", listen]
        # the child imports `nodeproc` from this folder, which conftest.py put on
        # sys.path; its cwd is outside the source tree (the installed zenmon).
        # `prefix`, e.g. ["ip", "netns", "exec", name], runs it inside a namespace
        super().__init__("nodeproc", argv, name="node subprocess",
                         start_timeout=START_TIMEOUT, call_timeout=CALL_TIMEOUT,
                         capture_stderr=True, prefix=prefix or ())
        if port and advertise is None and listen is None:
            assert self.address.startswith(f"tcp://127.0.0.1:{port}"), self.address

    @property
    def os_pid(self) -> int:
        """The subprocess's OS pid."""
        return self.pid

    @property
    def bound_port(self) -> int:
        """The TCP port the node listens on."""
        return int(self.address.partition("?")[0].rsplit(":", 1)[1])

    def pids_via(self, address: str, pids: Iterable[zenmon.Pid]) -> list[zenmon.Pid]:
        """The same processes, addressed through `address` (a relay in front of this node)."""
        return [zenmon.Pid(address, pid.incarnation, pid.id) for pid in pids]

    # ---------------------------------------------------------- commands

    def spawn(self, n: int = 1, name: str | None = None, trap: bool = False) -> list[zenmon.Pid]:
        """Make `n` processes there (trapping exits if `trap`) -> their pids."""
        if n > 1000:
            compact = self.call("spawn", n=n, name=name, compact=True, trap=trap)
            node, incarnation = compact["node"], compact["incarnation"]
            return [zenmon.Pid(node, incarnation, i) for i in compact["ids"]]
        return [zenmon.Pid.parse(text)
                for text in self.call("spawn", n=n, name=name, trap=trap)]

    def link(self, pid: zenmon.Pid, targets: Iterable[zenmon.Pid]) -> None:
        """Process `pid` there links each of `targets`."""
        self.call("link", pid=str(pid), targets=[str(t) for t in targets])

    def unlink(self, pid: zenmon.Pid, targets: Iterable[zenmon.Pid]) -> None:
        """Process `pid` there unlinks each of `targets`."""
        self.call("unlink", pid=str(pid), targets=[str(t) for t in targets])

    def inbox(self, pid: zenmon.Pid) -> list[tuple[str, Any, Any]]:
        """Drain process `pid`'s inbox there -> [(kind, pid, reason)] (kind "exit"...)."""
        result = []
        for kind, sender, reason in self.call("inbox", pid=str(pid)):
            if kind != "other" and isinstance(sender, str):
                sender = zenmon.Pid.parse(sender)
            result.append((kind, sender, reason_from_json(reason)))
        return result

    def alive(self, pids: Iterable[zenmon.Pid]) -> list[bool]:
        """Whether each of `pids` (processes there) is alive."""
        return [bool(a) for a in self.call("alive", pids=[str(p) for p in pids])]

    def exit(self, pids: Iterable[zenmon.Pid] | str, reason: Any = "normal",
             exception: bool = False) -> int:
        """Exit processes there (or "all") with `reason` -> how many were alive."""
        texts = pids if isinstance(pids, str) else [str(pid) for pid in pids]
        return int(self.call("exit", pids=texts, reason=reason_to_json(reason),
                             exception=exception))

    def monitor(self, watcher: int, targets: Iterable[Any], repeat: int = 1) -> list[int]:
        """Watcher `watcher` there monitors `targets` (Pids or (name, address)) -> refs."""
        wire = [str(t) if isinstance(t, zenmon.Pid) else list(t) for t in targets]
        return [int(ref) for ref in self.call("monitor", watcher=watcher, targets=wire,
                                              repeat=repeat)]

    def demonitor(self, watcher: int, refs: Iterable[int], flush: bool = False) -> None:
        self.call("demonitor", watcher=watcher, refs=list(refs), flush=flush)

    def watcher_exit(self, watcher: int, reason: Any = "normal") -> None:
        self.call("watcher_exit", watcher=watcher, reason=reason_to_json(reason))

    def downs(self) -> list[tuple[int, int, Any, Any]]:
        """Every DOWN its watchers received: (watcher, ref, pid, reason); pids parsed."""
        result = []
        for watcher, ref, pid, reason in self.call("downs"):
            pid = zenmon.Pid.parse(pid) if isinstance(pid, str) else reason_from_json(pid)
            result.append((watcher, ref, pid, reason_from_json(reason)))
        return result

    def downs_count(self) -> int:
        return int(self.call("downs_count"))

    def metrics(self) -> dict[str, int]:
        return dict(self.call("metrics"))

    def metric(self, key: str) -> int:
        metrics = self.metrics()
        assert key in metrics, f"metric {key!r} missing from the remote node's metrics"
        return int(metrics[key])

    def connect(self, address: str, timeout: float | None = None) -> str:
        return str(self.call("connect", address=address, timeout=timeout))

    def hold_gil(self, seconds: float) -> None:
        """Stall every Python thread of the node for `seconds` (libzmq runs on)."""
        self.call("hold_gil", seconds=seconds)

    def monitor_node(self, watcher: int, address: str) -> int:
        ref: int = self.call("monitor_node", watcher=watcher, address=address)
        return ref

    def monitor_nodes(self, watcher: int, enabled: bool = True) -> None:
        self.call("monitor_nodes", watcher=watcher, enabled=enabled)

    def node_events(self) -> list[list[Any]]:
        """[[watcher, "up"|"down", ref, address, reason, arrival time], ...] so far."""
        events: list[list[Any]] = self.call("node_events")
        return events

    def freeze(self) -> None:
        self.signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.signal(signal.SIGCONT)


def _curve_json(curve: dict[str, Any]) -> dict[str, Any]:
    def text(key: bytes | str) -> str:
        return key.decode("ascii") if isinstance(key, bytes) else key

    return {"secret": text(curve["secret"]), "public": text(curve["public"]),
            "authorized": [text(k) for k in curve.get("authorized", ())]}


class RemoteNodes:
    """Factory behind the ``remote_node`` fixture; ``close_all`` kills what it started."""

    def __init__(self) -> None:
        self.nodes: list[RemoteNode] = []

    def __call__(self, port: int = 0, settings: dict[str, Any] | None = None,
                 curve: dict[str, Any] | None = None, **options: Any) -> RemoteNode:
        node = RemoteNode(port=port, settings=settings, curve=curve, **options)
        self.nodes.append(node)
        return node

    def close_all(self) -> None:
        errors = []
        for node in reversed(self.nodes):
            try:
                node.close()
            except Exception as exc:
                errors.append(exc)
        self.nodes.clear()
        if errors:
            raise errors[0]


# ------------------------------------------------------------------ raw sockets


class RawPeer:
    """A raw ZeroMQ ROUTER bound on 127.0.0.1, answering every frame with `reply(frame)`.

    It plays a misbehaving (or scripted) peer for a node's connector. It runs its
    own thread (the socket never leaves it); :meth:`inject` queues frames for it to
    send to the last peer heard from. ``close`` stops it and closes with linger 0.
    ``received`` holds every frame it got.
    """

    def __init__(self, context: zmq.Context[Any],
                 reply: Callable[[bytes], list[bytes]] = lambda frame: []) -> None:
        self._socket = context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.LINGER, 0)
        port = self._socket.bind_to_random_port("tcp://127.0.0.1")
        self.address = f"tcp://127.0.0.1:{port}"
        if hasattr(reply, "address"):    # a fake proxy names this address in its WELCOME
            reply.address = self.address
        self.reply = reply
        self.received: list[bytes] = []
        self._identity: bytes | None = None
        self._outbox: queue.Queue[list[bytes]] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="raw-peer")
        self._thread.start()

    def inject(self, *frames: bytes) -> None:
        """Send `frames` (one message each) to the last connector heard from."""
        for frame in frames:
            self._outbox.put([frame])

    def inject_multipart(self, parts: list[bytes]) -> None:
        self._outbox.put(list(parts))

    def _send(self, parts: list[bytes]) -> None:
        if self._identity is None:
            return
        try:
            self._socket.send_multipart([self._identity, *parts], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass

    def _run(self) -> None:
        sock = self._socket
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        while not self._stop.is_set():
            while self._identity is not None:
                try:
                    self._send(self._outbox.get_nowait())
                except queue.Empty:
                    break
            if not poller.poll(10):
                continue
            frames = sock.recv_multipart(zmq.NOBLOCK)
            self._identity, body = frames[0], frames[-1]
            self.received.append(body)
            for answer in self.reply(body):
                self._send([answer])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._socket.close(linger=0)


def random_bytes(rng: random.Random, low: int = 1, high: int = 200) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(rng.randint(low, high)))


def wait_remote(remote: RemoteNode, key: str, predicate: Callable[[int], bool],
                timeout: float = 10.0, what: str = "") -> int:
    """Poll a remote metric until `predicate(value)` holds -> the value."""
    last: list[int] = []

    def check() -> bool:
        value = remote.metric(key)
        last[:] = [value]
        return predicate(value)

    wait_for(check, timeout=timeout, interval=0.02,
             message=lambda: f"remote {key} {what}; last value {last}")
    return last[0]


def remote_barrier(local: Any, remote: RemoteNode, timeout: float = 10.0,
                   via: str | None = None) -> None:
    """Return once every DOWN `remote` had produced for `local` so far is in an inbox.

    A fresh target on `remote` is watched from `local` and exits; its DOWN comes
    through the same ordered stream of dead summaries after every earlier death
    certificate, and the dispatcher queue is FIFO, so when it has arrived and the
    dispatcher is idle again, any earlier DOWN would already be in its inbox.
    ``via``: the address the watching node uses for `remote` (a relay's).
    """
    from helpers import wait_dispatcher_idle

    barrier = local.process()
    (target,) = remote.spawn(1)
    watched = target if via is None else zenmon.Pid(via, target.incarnation, target.id)
    ref = barrier.monitor(watched)
    remote.exit([target], "barrier")
    down = barrier.receive(timeout=timeout)
    assert isinstance(down, zenmon.Down) and down.ref == ref, down
    assert down.reason in ("barrier", "noproc"), down
    barrier.exit()
    wait_dispatcher_idle(local, timeout=timeout)


def assert_nothing_more_remote(local: Any, remote: RemoteNode, *watchers: Any,
                               via: str | None = None) -> None:
    """After a :func:`remote_barrier`, the inboxes of `watchers` hold nothing."""
    from helpers import receive_until_sentinel

    remote_barrier(local, remote, via=via)
    for watcher in watchers:
        leftover = receive_until_sentinel(watcher)
        assert leftover == [], f"unexpected messages for {watcher}: {leftover[:5]!r}"


# ------------------------------------------------------------------ TCP relay


class TcpRelay:
    """A TCP relay on 127.0.0.1 in front of a node's port, to break the link at will.

    ``address`` is the relay's endpoint; a watching node that dials it reaches the
    node behind (pids and names are then addressed through the relay, e.g.
    ``zenmon.Pid(relay.address, incarnation, id)``). ``cut()`` resets every
    connection (ZeroMQ reconnects silently, losing what was in flight);
    ``blackhole(True)`` keeps the connections but drops every byte (a partition:
    the stream is broken once it heals, as a real partition with a lost segment
    would be). Runs its own thread; ``close`` stops it.
    """

    def __init__(self, target_port: int) -> None:
        import selectors

        self._target = ("127.0.0.1", target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.setblocking(False)
        self.address = f"tcp://127.0.0.1:{self._listener.getsockname()[1]}"
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._peers: dict[socket.socket, socket.socket] = {}
        self._lock = threading.Lock()
        self._commands: queue.Queue[str] = queue.Queue()
        self.blackholed = False
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="tcp-relay")
        self._thread.start()

    def cut(self) -> None:
        """Reset every open connection now (returns once done)."""
        done = threading.Event()
        self._commands.put("cut")
        self._commands.put(done)  # type: ignore[arg-type]
        if not done.wait(5):
            raise AssertionError("relay did not cut in time")

    def blackhole(self, on: bool) -> None:
        self.blackholed = on

    def _close_pair(self, sock: socket.socket) -> None:
        other = self._peers.pop(sock, None)
        for s in (sock, other):
            if s is None:
                continue
            self._peers.pop(s, None)
            try:
                self._selector.unregister(s)
            except (KeyError, ValueError):
                pass
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            except OSError:
                pass
            s.close()

    def _run(self) -> None:
        import selectors

        while not self._stop.is_set():
            while True:
                try:
                    command: Any = self._commands.get_nowait()
                except queue.Empty:
                    break
                if command == "cut":
                    for sock in list(self._peers):
                        self._close_pair(sock)
                elif isinstance(command, threading.Event):
                    command.set()
            for key, _ in self._selector.select(0.01):
                sock = key.fileobj
                if sock is self._listener:
                    try:
                        client, _ = self._listener.accept()
                    except OSError:
                        continue
                    upstream = socket.create_connection(self._target, timeout=2)
                    for s in (client, upstream):
                        s.setblocking(False)
                        self._selector.register(s, selectors.EVENT_READ, None)
                    self._peers[client] = upstream
                    self._peers[upstream] = client
                    self.connections += 1
                    continue
                try:
                    data = sock.recv(65536)  # type: ignore[union-attr]
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    self._close_pair(sock)  # type: ignore[arg-type]
                    continue
                if self.blackholed:
                    continue
                other = self._peers.get(sock)  # type: ignore[arg-type]
                if other is not None:
                    try:
                        other.setblocking(True)
                        other.sendall(data)
                        other.setblocking(False)
                    except OSError:
                        self._close_pair(sock)  # type: ignore[arg-type]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in list(self._peers):
            self._close_pair(sock)
        self._selector.close()
        self._listener.close()


def wait_subscribed(remote: RemoteNode, count: int, timeout: float = 10.0) -> None:
    """Wait until the remote proxy holds exactly `count` subscriptions."""
    wait_remote(remote, "zenmon.proxy.subscribers.size", lambda v: v == count,
                timeout=timeout, what=f"== {count}")

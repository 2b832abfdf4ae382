"""Fuzz the proxy's and the connector's message handlers of a real node.

One node is started with its I/O thread replaced by this harness (which then does
what that thread does: handle frames, run commands, dispatcher ticks and sweeps),
so every socket is real: the node's ROUTER, the connector's DEALER, and a ROUTER
of this harness standing in for the remote proxy. Each input is a short script of
frames: to the proxy (``Proxy.handle``, as its ROUTER would deliver them) from one
of a few peer identities, or to the connector (``Connector.handle``) of an
established session, with headers mostly right (session, incarnations) so the
bodies are reached, plus process exits and sweeps. The handlers may raise only
what the I/O thread counts and drops (ProtocolError, CodecError, ValueError); any
other exception, or a growing ``internal_errors``, is a finding. See
fuzz/common.py for how to run it.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import zmq  # noqa: E402
from common import Finding, run_atheris  # noqa: E402

import zenmon  # noqa: E402
from zenmon import codec  # noqa: E402
from zenmon import protocol as p  # noqa: E402
from zenmon._core import NAME_KEY_FLAG, UNSUBSCRIBE_FLAG  # noqa: E402
from zenmon.connector import State  # noqa: E402

ALLOWED = (p.ProtocolError, codec.CodecError, ValueError)
IDENTITIES = (b"peer-a", b"peer-b", b"peer-c")
SESSIONS = (1, 2, 3)
PEER_INCARNATION = 1_000_000
REMOTE_INCARNATION = 2_000_000
N_PROCESSES = 8
N_REMOTE_TARGETS = 6
NAMES = [f"p{i}" for i in range(N_PROCESSES)]


class Harness:
    """A node without its I/O thread, and what its I/O thread would do."""

    def __init__(self) -> None:
        node = zenmon.Node(listen="tcp://127.0.0.1:0", demand_interval=1,
                           heartbeat_timeout=3_600_000)
        io = node._ctx.io
        io._run = lambda *parts: None   # type: ignore[method-assign]  # the harness is the I/O thread
        node.start()
        assert io._thread is not None
        io._thread.join()
        self.node = node
        self.io = io
        self.proxy = node._ctx.proxy
        self.processes = [node.process(name=name) for name in NAMES]
        self.watcher = node.process()
        self.remote = io.socket(zmq.ROUTER)
        self.remote.setsockopt(zmq.LINGER, 0)
        port = self.remote.bind_to_random_port("tcp://127.0.0.1")
        self.remote_address = f"tcp://127.0.0.1:{port}"
        self.connector: Any = None
        self.internal_errors = 0
        self.inputs = 0

    # ----------------------------------------------------------- I/O thread

    def pump(self) -> None:
        """One turn of the I/O loop, without polling."""
        node, io = self.node, self.io
        now = time.monotonic()
        for _ in range(len(io._commands)):
            io._guarded(io._commands.popleft())
        node._ctx.dispatcher.tick(now + 1.0)
        node._ctx.connectors.sweep(now, io._guarded)
        io._guarded(self.proxy.sweep, now)
        io._drain_wake()
        while True:   # what connectors sent to our stand-in remote: drop it
            try:
                self.remote.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
        for process in (*self.processes, self.watcher):
            process._messages.clear()
        errors = node._ctx.wire.internal_errors
        if errors != self.internal_errors:
            self.internal_errors = errors
            raise Finding(f"the node counted an internal error ({errors})")

    def session(self) -> Any:
        """The connector to the stand-in remote, with a session UP and targets watched."""
        node = self.node
        connector = node._ctx.connectors.current(self.remote_address)
        if connector.state is not State.UP:
            connector.start_session(time.monotonic(), 3600.0)
            connector.handle(p.pack(p.WELCOME, REMOTE_INCARNATION, node.incarnation,
                                    connector.session, self.remote_address.encode()))
            if connector.state is not State.UP:
                raise Finding(f"a valid WELCOME left {connector} not up")
        if not self._core_targets(connector):
            monitor = self.watcher.monitor
            for i in range(1, N_REMOTE_TARGETS + 1):
                monitor(zenmon.Pid(self.remote_address, REMOTE_INCARNATION, i))
            for name in NAMES[:3]:
                monitor((name, self.remote_address))
        self.connector = connector
        return connector

    def _core_targets(self, connector: Any) -> int:
        return int(self.node._core.connector_targets(connector.index))

    # --------------------------------------------------------------- inputs

    def to_proxy(self, fdp: Any) -> None:
        identity = IDENTITIES[fdp.ConsumeIntInRange(0, len(IDENTITIES) - 1)]
        shape = fdp.ConsumeIntInRange(0, 3)
        if shape == 0:   # raw bytes
            frame = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 512))
        else:
            kind = fdp.PickValueInList(sorted(p.CONNECTOR_TYPES) + [0, 17, 255])
            session = fdp.PickValueInList(list(SESSIONS))
            receiver = (self.node.incarnation if shape != 3
                        else fdp.PickValueInList([0, 1, self.node.incarnation + 1]))
            peer = self.proxy.peers.get(identity)
            if peer is not None and fdp.ConsumeBool():
                session = peer.session
            if kind == p.SUBSCRIBE and shape == 2:
                body = self._subscribe_body(fdp, peer)
            elif kind in (p.HEARTBEAT, p.NACK_DEADS) and shape == 2:
                body = p.pack_seq_ack(fdp.ConsumeIntInRange(0, 8), fdp.ConsumeIntInRange(0, 8))
            elif kind == p.HELLO and shape == 2:
                body = p.hello_body(self.remote_address, fdp.ConsumeIntInRange(0, 2000),
                                    fdp.ConsumeIntInRange(0, 100))
            else:
                body = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 512))
            frame = p.pack(kind, PEER_INCARNATION, receiver, session, body)
        try:
            self.proxy.handle(identity, frame)
        except p.VersionMismatch:
            pass
        except ALLOWED:
            pass

    def _subscribe_body(self, fdp: Any, peer: Any) -> bytes:
        seq = peer.expected if peer is not None and fdp.ConsumeBool() else (
            fdp.ConsumeIntInRange(0, 4))
        keys = []
        names: dict[int, str] = {}
        for _ in range(fdp.ConsumeIntInRange(0, 12)):
            if fdp.ConsumeBool():
                key = NAME_KEY_FLAG | fdp.ConsumeIntInRange(1, 6)
                if fdp.ConsumeBool():
                    names[key] = fdp.PickValueInList([*NAMES, "nobody", ""])
            else:
                key = fdp.ConsumeIntInRange(0, N_PROCESSES + 3)
            if fdp.ConsumeIntInRange(0, 3) == 0:
                key |= UNSUBSCRIBE_FLAG
            keys.append(key)
        instructions = b"".join(k.to_bytes(8, "little") for k in keys)
        return p.pack_subscribe(seq, fdp.ConsumeIntInRange(0, 4), instructions, names)

    def to_connector(self, fdp: Any) -> None:
        connector = self.session()
        shape = fdp.ConsumeIntInRange(0, 3)
        if shape == 0:
            frame = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 512))
        else:
            kind = fdp.PickValueInList(sorted(p.PROXY_TYPES) + [0, 2, 255])
            sender = REMOTE_INCARNATION if shape != 3 else fdp.PickValueInList(
                [0, REMOTE_INCARNATION - 1, REMOTE_INCARNATION + 1])
            session = connector.session if fdp.ConsumeIntInRange(0, 7) else 77
            if kind == p.DEAD_SUMMARY and shape == 2:
                body = self._dead_summary_body(fdp, connector)
            elif kind in (p.HEARTBEAT_ACK, p.NACK_SUBSCRIBE) and shape == 2:
                body = p.pack_seq_ack(fdp.ConsumeIntInRange(0, 8), fdp.ConsumeIntInRange(0, 8))
            else:
                body = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 512))
            frame = p.pack(kind, sender, self.node.incarnation, session, body)
        try:
            connector.handle(frame)
        except ALLOWED:
            pass

    def _dead_summary_body(self, fdp: Any, connector: Any) -> bytes:
        seq = connector.dead_expected if fdp.ConsumeBool() else fdp.ConsumeIntInRange(0, 4)
        n = fdp.ConsumeIntInRange(0, 10)
        keys = []
        for _ in range(n):
            if fdp.ConsumeBool():
                keys.append(NAME_KEY_FLAG | fdp.ConsumeIntInRange(1, 4))
            else:
                keys.append(fdp.ConsumeIntInRange(0, N_REMOTE_TARGETS + 2))
        n_reasons = fdp.ConsumeIntInRange(0, 3)
        if fdp.ConsumeBool():
            reasons = codec.encode_reasons(["killed", ("x", 1), {"k": [1.5]}][:n_reasons])
        else:
            reasons = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))
        indexes = b""
        if fdp.ConsumeBool():
            indexes = b"".join(fdp.ConsumeIntInRange(0, 3).to_bytes(4, "little")
                               for _ in range(n))
        return p.pack_dead_summary(seq, fdp.ConsumeIntInRange(0, 4),
                                   b"".join(k.to_bytes(8, "little") for k in keys),
                                   indexes, reasons)

    def churn(self, fdp: Any) -> None:
        """Exit a process (its subscribers get certificates) and make a new one."""
        i = fdp.ConsumeIntInRange(0, N_PROCESSES - 1)
        old = self.processes[i]
        old.exit(fdp.PickValueInList(["normal", "killed", ("crash", 1)]))
        self.processes[i] = self.node.process(name=NAMES[i])

    def run(self, data: bytes) -> None:
        import atheris

        fdp = atheris.FuzzedDataProvider(data)
        self.inputs += 1
        for _ in range(fdp.ConsumeIntInRange(1, 6)):
            step = fdp.ConsumeIntInRange(0, 9)
            if step < 5:
                self.to_proxy(fdp)
            elif step < 9:
                self.to_connector(fdp)
            else:
                self.churn(fdp)
            self.pump()


_harness: Harness | None = None


def harness() -> Harness:
    """The one node of this process (made on first use)."""
    global _harness
    if _harness is None:
        _harness = Harness()
    return _harness


def close() -> None:
    """Stop the node of this process, if one was made."""
    global _harness
    if _harness is not None:
        _harness.remote.close(linger=0)
        _harness.node.stop()
        _harness = None


def test_one_input(data: bytes) -> None:
    """Run the script of frames that `data` describes."""
    harness().run(data)


def seeds() -> list[bytes]:
    """A few byte strings (the provider turns any bytes into a script)."""
    return [bytes(range(64)), bytes(64), b"\xff" * 64, bytes(range(255, 0, -3))]


if __name__ == "__main__":
    harness()
    run_atheris(test_one_input, seeds())

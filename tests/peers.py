"""Raw protocol peers for the attack and bounds tests: a scripted connector session,
a heartbeat prober that measures how long a node's I/O thread takes to answer, and
memory readings of a node subprocess.
"""

from __future__ import annotations

import random
import threading
import time
from array import array
from typing import Any

import msgpack
import zmq

from zenmon import protocol as p
from zenmon.codec import encode_reasons


class RawSession:
    """A DEALER speaking the connector side of the protocol by hand (HELLO, SUBSCRIBE,
    HEARTBEAT, NACK_DEADS), so a test can send what a well-behaved connector never would.
    """

    def __init__(self, context: zmq.Context[Any], address: str, hwm: int = 0) -> None:
        self.socket = context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SNDHWM, hwm)
        self.socket.setsockopt(zmq.RCVHWM, hwm)
        self.socket.connect(address)
        self.incarnation = random.getrandbits(40) + 1
        self.session = 0
        self.proxy_incarnation = 0
        self.seq = 0

    def send(self, frame: bytes, block: bool = True, timeout: float | None = None) -> bool:
        """Send one frame; with `timeout` (s) or block=False, -> False if it could not."""
        flags = 0 if block else zmq.NOBLOCK
        if timeout is not None:
            self.socket.setsockopt(zmq.SNDTIMEO, int(timeout * 1000))
        try:
            self.socket.send(frame, flags, copy=len(frame) < 65536)
        except zmq.Again:
            return False
        finally:
            if timeout is not None:
                self.socket.setsockopt(zmq.SNDTIMEO, -1)
        return True

    def receive(self, timeout: float = 5.0) -> bytes | None:
        """The next frame, or None after `timeout` seconds."""
        if not self.socket.poll(int(timeout * 1000)):
            return None
        return self.socket.recv()

    def drain(self) -> list[bytes]:
        frames = []
        while self.socket.poll(0):
            frames.append(self.socket.recv())
        return frames

    def plan(self, proxy_incarnation: int) -> int:
        """Choose the next session id ahead of its HELLO (frames can be built first,
        then sent with ``hello(session_id)``) -> the id."""
        self.session = random.getrandbits(62) + 1
        self.seq = 0
        self.proxy_incarnation = proxy_incarnation
        return self.session

    def hello(self, session: int | None = None, wait: bool = True) -> int:
        """Open a session (a new id unless given; the planned one keeps its seq)."""
        if session is None or session != self.session:
            self.session = session if session is not None else random.getrandbits(62) + 1
            self.seq = 0
        hello = self.frame(p.HELLO, p.hello_body("tcp://127.0.0.1:9"))
        self.send(hello)
        if not wait:
            return self.session
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            frame = self.receive(timeout=0.5)
            if frame is None:     # lost with a connection the node closed: again
                self.send(hello)
                continue
            header = p.unpack_header(frame)
            if header.type == p.WELCOME and header.session == self.session:
                self.proxy_incarnation = header.sender
                return self.session
        raise AssertionError("no WELCOME")

    def frame(self, kind: int, body: bytes = b"") -> bytes:
        return p.pack(kind, self.incarnation, self.proxy_incarnation, self.session, body)

    def subscribe_frame(self, keys: list[int], names: dict[int, str] | None = None,
                        ack: int = 0) -> bytes:
        """The next SUBSCRIBE of this session (its seq is taken now)."""
        self.seq += 1
        instructions = array("Q", keys).tobytes()
        return self.frame(p.SUBSCRIBE, p.pack_subscribe(self.seq, ack, instructions,
                                                        names or {}))

    def raw_subscribe_frame(self, n: int, keys: bytes, names_blob: bytes,
                            ack: int = 0) -> bytes:
        """A SUBSCRIBE with a hand-made names section (any msgpack, any size)."""
        self.seq += 1
        body = p.SEQ_ACK.pack(self.seq, ack) + p.COUNT.pack(n) + keys + names_blob
        return self.frame(p.SUBSCRIBE, body)

    def heartbeat(self, ack: int = 0) -> bytes:
        return self.frame(p.HEARTBEAT, p.pack_seq_ack(self.seq, ack))

    def nack_deads(self, first: int) -> bytes:
        return self.frame(p.NACK_DEADS, p.pack_seq_ack(first, 0))

    def close(self) -> None:
        self.socket.close(linger=0)


def names_blob(entries: int, name: str = "x") -> bytes:
    """A msgpack map of `entries` name keys, all naming `name` (built without a dict)."""
    packer = msgpack.Packer()
    parts = [packer.pack_map_header(entries)]
    value = packer.pack(name)
    flag = 1 << 62
    parts.extend(packer.pack(flag | (i + 1)) + value for i in range(entries))
    return b"".join(parts)


class Prober:
    """A well-behaved session that sends a HEARTBEAT every `period` seconds and records
    the round trip of each HEARTBEAT_ACK: the longest one bounds how long the node's
    I/O thread went without serving its ROUTER. Runs its own thread (its own socket).
    """

    def __init__(self, context: zmq.Context[Any], address: str, period: float = 0.01,
                 ) -> None:
        self._session = RawSession(context, address)
        self._session.hello()
        self.period = period
        self.round_trips: list[float] = []
        self.lost = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="prober")
        self._thread.start()

    def _run(self) -> None:
        session = self._session
        while not self._stop.is_set():
            sent = time.monotonic()
            session.send(session.heartbeat())
            answered = False
            while not self._stop.is_set():
                frame = session.receive(timeout=0.05)
                if frame is None:
                    continue
                header = p.unpack_header(frame)
                if header.type == p.HEARTBEAT_ACK and header.session == session.session:
                    self.round_trips.append(time.monotonic() - sent)
                    answered = True
                    break
                if header.type == p.RESET:    # dropped: a probe must never be
                    self.lost += 1
                    session.hello(wait=False)
                    break
            if not answered and self._stop.is_set():
                self.round_trips.append(time.monotonic() - sent)
            self._stop.wait(self.period)

    def stop(self) -> float:
        """Stop probing -> the longest round trip seen (seconds)."""
        self._stop.set()
        self._thread.join(10)
        self._session.close()
        assert self.round_trips, "the prober got no answer at all"
        return max(self.round_trips)


def _status_kb(os_pid: int, field: str) -> int:
    with open(f"/proc/{os_pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field} missing from /proc/{os_pid}/status")


def rss_mb(os_pid: int) -> float:
    """Resident set size of process `os_pid`, in MB."""
    return _status_kb(os_pid, "VmRSS") / 1024


def reset_peak_rss(os_pid: int) -> None:
    """Restart the peak-RSS reading (VmHWM) of `os_pid` from its current RSS."""
    with open(f"/proc/{os_pid}/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def peak_rss_mb(os_pid: int) -> float:
    """Peak resident set size (VmHWM) of `os_pid` since start or reset_peak_rss, MB."""
    return _status_kb(os_pid, "VmHWM") / 1024


class FakeProxy:
    """The reply function of a RawPeer that answers a node's connector as a proxy would
    (WELCOME, HEARTBEAT_ACK acking every SUBSCRIBE) and records when each HEARTBEAT
    arrived: the connector sends one every heartbeat_interval from its sweep, so the
    gaps between them show how late the node's I/O loop ran its sweeps.
    """

    def __init__(self, incarnation: int = 7_000_000_000) -> None:
        self.incarnation = incarnation
        self.session = 0
        self.connector_incarnation = 0
        self.sub_seq = 0
        self.keys: list[int] = []
        self.heartbeats: list[float] = []
        self.address = ""          # the identity its WELCOME names (set once bound)

    def __call__(self, frame: bytes) -> list[bytes]:
        header = p.unpack_header(frame)
        if header.type == p.HELLO:
            self.session, self.connector_incarnation = header.session, header.sender
            self.heartbeats.clear()
            return [self.frame(p.WELCOME, self.address.encode())]
        if header.session != self.session:
            return []
        if header.type == p.SUBSCRIBE:
            seq, _ack, instructions, _names = p.unpack_subscribe(frame)
            self.keys.extend(instructions.cast("Q"))
            self.sub_seq = seq
        elif header.type == p.HEARTBEAT:
            self.heartbeats.append(time.monotonic())
            return [self.frame(p.HEARTBEAT_ACK, p.pack_seq_ack(0, self.sub_seq))]
        return []

    def frame(self, kind: int, body: bytes = b"") -> bytes:
        return p.pack(kind, self.incarnation, self.connector_incarnation, self.session, body)

    def dead_summary(self, seq: int, keys: list[int], reasons: list[Any] | None = None,
                     raw_reasons: bytes | None = None, indexes: bytes = b"") -> bytes:
        """A DEAD_SUMMARY frame of this session (raw_reasons: already encoded bytes)."""
        encoded = raw_reasons if raw_reasons is not None else encode_reasons(reasons)  # type: ignore[arg-type]
        body = p.pack_dead_summary(seq, self.sub_seq, array("Q", keys).tobytes(), indexes,
                                   encoded)
        return self.frame(p.DEAD_SUMMARY, body)

    def longest_gap(self, since: float) -> float:
        """The longest time between two heartbeats (or since `since`, or until now)."""
        times = [since] + [t for t in self.heartbeats if t > since] + [time.monotonic()]
        return max(b - a for a, b in zip(times, times[1:]))

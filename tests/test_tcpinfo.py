"""zenmon.tcpinfo: the kernel's ACK counters of a connection, read by its fd.

On a real loopback TCP connection: the counters are read without taking the fd
over (the connection keeps working), a wrong port or a closed fd reads as None, and
the ACK clock moves on while the peer acknowledges. The one-way partition this
serves is tested across namespace hosts (test_multihost.py)."""

from __future__ import annotations

import socket
import sys

import pytest

from zenmon import tcpinfo

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="TCP_INFO counters are read on Linux only")


@pytest.fixture
def connection():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    server, _ = listener.accept()
    server.settimeout(5)
    yield client, server, port
    for s in (client, server, listener):
        s.close()


@linux_only
def test_read_gives_the_counters_and_leaves_the_fd_alone(connection):
    client, server, port = connection
    client.sendall(b"x" * 1000)
    assert server.recv(1000)
    counters = None
    for _ in range(200):       # the ACK may still be on its way
        counters = tcpinfo.read(client.fileno(), port)
        if counters is not None and counters[0] == 0:
            break
    assert counters is not None
    unacked, acked = counters
    assert unacked == 0 and acked >= 1000
    client.sendall(b"still mine")                  # the fd was not closed or taken
    assert server.recv(100) == b"still mine"


@linux_only
def test_read_refuses_another_port_and_a_closed_fd(connection):
    client, _, port = connection
    assert tcpinfo.read(client.fileno(), port + 1) is None
    r, w = socket.socketpair()
    assert tcpinfo.read(r.fileno(), port) is None    # not a TCP connection to port
    fd = r.fileno()
    r.close()
    w.close()
    assert tcpinfo.read(fd, port) is None


@linux_only
def test_the_ack_clock_follows_acknowledgements(connection):
    client, server, port = connection
    clock = tcpinfo.AckClock(client.fileno(), port)
    clock.sample(10.0)
    assert (clock.acked_at, clock.sampled_at) == (0.0, 10.0)   # one sample: no span yet
    client.sendall(b"ping")
    assert server.recv(10) == b"ping"
    for step in range(1, 200):                     # until the ACK is counted
        clock.sample(10.0 + step)
        if clock.acked_at:
            break
    # an ACK came in after the sample before the one that saw it
    assert clock.acked_at == clock.sampled_at - 1
    before = clock.acked_at
    clock.fd = -1                                  # unreadable: nothing changes
    clock.sample(500.0)
    assert (clock.acked_at, clock.sampled_at) == (before, before + 1)


def test_read_answers_none_for_a_number_that_is_no_socket():
    assert tcpinfo.read(2**20, 1) is None

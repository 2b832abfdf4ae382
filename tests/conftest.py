"""Fixtures for the real parts: started nodes that are always stopped.

The suite runs with ``--import-mode=importlib`` against the installed build,
so ``tests/`` is not a package on ``sys.path``; this file puts its own folder
there once so that test modules can ``from helpers import ...``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

_TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from worlds import KINDS, LocalWorld, RemoteWorld  # noqa: E402

import zenmon  # noqa: E402
from helpers import receive_all, wait_for  # noqa: E402,F401  (re-exported for convenience)

LOOPBACK = "tcp://127.0.0.1:0"

#: Settings that make every stage of DOWN delivery fast (10 ms sweeps and ticks).
FAST_SETTINGS = {
    "demand_interval": 10,
    "connector_sweep_interval": 10,
    "batcher_sweep_interval": 10,
}


def _stop(node: Any) -> None:
    node.stop(timeout=5.0)


@pytest.fixture
def node_factory() -> Iterator[Callable[..., Any]]:
    """Make started nodes on loopback: ``node_factory(**settings)``; all stopped at teardown."""
    nodes: list[Any] = []

    def make(listen: str = LOOPBACK, **kwargs: Any) -> Any:
        node = zenmon.Node(listen=listen, **kwargs)
        node.start()
        nodes.append(node)
        return node

    yield make
    errors = []
    for node in reversed(nodes):
        try:
            _stop(node)
        except Exception as exc:  # keep stopping the others; report afterwards
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def node(node_factory: Callable[..., Any]) -> Any:
    """A started node with default settings, listening on a free loopback port."""
    return node_factory()


@pytest.fixture
def fast_node(node_factory: Callable[..., Any]) -> Any:
    """A started node with 10 ms demand interval and 10 ms connector/batcher sweeps."""
    return node_factory(**FAST_SETTINGS)


# ---------------------------------------------------------------- remote nodes
# (appended for the remote suites; the helpers live in tests/remote.py)


@pytest.fixture
def remote_node() -> Iterator[Callable[..., Any]]:
    """Start zenmon nodes in subprocesses: ``remote_node(port=0, settings=None, curve=None)``.

    Each is a ``remote.RemoteNode`` on 127.0.0.1 (a free port unless one is given),
    ready when returned; at teardown each is killed by its own OS pid (SIGKILL)
    and reaped, and its pipes closed.
    """
    from remote import RemoteNodes

    nodes = RemoteNodes()
    try:
        yield nodes
    finally:
        nodes.close_all()


@pytest.fixture
def local(node_factory: Callable[..., Any]) -> Any:
    """The watching node of the remote suites, in this test process (fast settings)."""
    from remote import REMOTE_SETTINGS

    return node_factory(**REMOTE_SETTINGS)


@pytest.fixture
def remote(remote_node: Callable[..., Any]) -> Any:
    """The node hosting the targets of the remote suites, in a subprocess."""
    return remote_node()


@pytest.fixture
def zmq_context() -> Iterator[Any]:
    """A private ZeroMQ context for raw test sockets; sockets close with linger=0."""
    import zmq

    context = zmq.Context()
    try:
        yield context
    finally:
        context.destroy(linger=0)


@pytest.fixture
def tcp_relay() -> Iterator[Callable[[int], Any]]:
    """Make TCP relays in front of a port: ``tcp_relay(port)``; all closed at teardown."""
    from remote import TcpRelay

    relays: list[Any] = []

    def make(port: int) -> Any:
        relay = TcpRelay(port)
        relays.append(relay)
        return relay

    try:
        yield make
    finally:
        for relay in relays:
            relay.close()


# ---------------------------------------------------------------- worlds
# (the behaviour suite, written once for local and remote targets: tests/worlds.py)


@pytest.fixture(params=KINDS)
def world(request: pytest.FixtureRequest, node_factory: Callable[..., Any]) -> Any:
    """A watching node here and a target side of the kind in the param: one node in
    this process (default settings, or 10 ms ticks and sweeps), or a node in a
    subprocess (both ends with ``remote.REMOTE_SETTINGS``). See ``tests/worlds.py``."""
    kind = request.param
    if kind == "local":
        return LocalWorld(kind, node_factory())
    if kind == "local-fast":
        return LocalWorld(kind, node_factory(**FAST_SETTINGS))
    from remote import REMOTE_SETTINGS

    return RemoteWorld(node_factory(**REMOTE_SETTINGS), request.getfixturevalue("remote_node")())

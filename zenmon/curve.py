"""CURVE security: encryption and an allow-list of peer keys (ZeroMQ CURVE + ZAP).

A CURVE node's address carries its public key (``tcp://host:port?key=<z85>``), so
every pid names the key to trust for its node; ``authorized`` lists the public
keys allowed to dial in. Peers refused by the allow-list are counted in
``zenmon.wire.peers.refused``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import zmq

ZAP_DOMAIN = "zenmon"


def _z85(key: bytes | str) -> bytes:
    raw = key.encode("ascii") if isinstance(key, str) else bytes(key)
    if len(raw) != 40:
        raise ValueError("CURVE keys are 40-character Z85 strings")
    return raw


def split_address(address: str) -> tuple[str, bytes | None]:
    """``"tcp://h:p?key=K"`` -> ("tcp://h:p", b"K"); no key -> (address, None).

    The key is the 40 characters after ``key=`` taken as they are: Z85 uses ``&``,
    ``?`` and ``=`` too, so the query is not split on them.
    """
    endpoint, sep, query = address.partition("?")
    if not sep:
        return address, None
    if not query.startswith("key=") or len(query) != 44:
        raise ValueError(f"a node address carries its CURVE key as ?key=<40 z85 chars>: "
                         f"{address!r}")
    return endpoint, _z85(query[4:])


class Curve:
    """A node's CURVE key pair and the public keys it lets dial in."""

    def __init__(self, secret_key: bytes | str, public_key: bytes | str,
                 authorized: Iterable[bytes | str] = ()) -> None:
        self.secret_key = _z85(secret_key)
        self.public_key = _z85(public_key)
        self.authorized = frozenset(_z85(k) for k in authorized)
        self.refused = 0
        self._authenticator: Any = None

    @staticmethod
    def generate() -> tuple[bytes, bytes]:
        """A new key pair -> (secret_key, public_key), Z85 encoded."""
        public, secret = zmq.curve_keypair()
        return secret, public

    def serve(self, socket: zmq.Socket[Any], context: zmq.Context[Any]) -> str:
        """Make `socket` a CURVE server guarded by the allow-list, its ZAP handler running
        in `context` (the node's). -> the address suffix (``?key=``)."""
        from zmq.auth.thread import ThreadAuthenticator

        authenticator = ThreadAuthenticator(context)
        authenticator.start()
        authenticator.configure_curve_callback(ZAP_DOMAIN, credentials_provider=self)
        self._authenticator = authenticator
        socket.setsockopt(zmq.CURVE_SERVER, 1)
        socket.setsockopt(zmq.CURVE_SECRETKEY, self.secret_key)
        socket.setsockopt(zmq.CURVE_PUBLICKEY, self.public_key)
        socket.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())
        return "?key=" + self.public_key.decode("ascii")

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP decision for a dialling peer's public key (Z85)."""
        allowed = key in self.authorized or key == self.public_key
        if not allowed:
            self.refused += 1
        return allowed

    def dial(self, socket: zmq.Socket[Any], server_key: bytes) -> None:
        """Make `socket` a CURVE client of the node whose public key is `server_key`."""
        socket.setsockopt(zmq.CURVE_SERVERKEY, server_key)
        socket.setsockopt(zmq.CURVE_SECRETKEY, self.secret_key)
        socket.setsockopt(zmq.CURVE_PUBLICKEY, self.public_key)

    def stop(self) -> None:
        """Stop the ZAP authenticator thread."""
        if self._authenticator is not None:
            self._authenticator.stop()
            self._authenticator = None

"""Node addresses: what a node listens on versus the identity it advertises.

A node *listens* on a ZeroMQ endpoint (``tcp://0.0.0.0:7001``, ``tcp://[::1]:0``)
and *advertises* an address that peers can dial and that every pid carries
(``tcp://sessions-3.internal:7001``). Without ``advertise`` the listen host is kept
as written (a host name is not resolved at bind time), and a wildcard host
(``*``, ``0.0.0.0``, ``::``) becomes the machine's host name: never a wildcard.
"""

from __future__ import annotations

import socket

WILDCARD_HOSTS = frozenset({"*", "0.0.0.0", "::", "[::]", "[*]"})


def split_endpoint(endpoint: str) -> tuple[str, str]:
    """``"tcp://host:port"`` -> (host, port); IPv6 hosts keep their brackets.

    Raises ValueError for anything that is not a tcp endpoint with a host and a port.
    """
    if not isinstance(endpoint, str):
        raise TypeError("a node address is a string like 'tcp://host:port'")
    scheme, sep, rest = endpoint.partition("://")
    if scheme != "tcp" or not sep:
        raise ValueError(f"not a tcp://host:port endpoint: {endpoint!r}")
    host, colon, port = rest.rpartition(":")
    if not colon or not host or not port or not (port.isdigit() or port == "*"):
        raise ValueError(f"not a tcp://host:port endpoint: {endpoint!r}")
    if host.startswith("[") != host.endswith("]"):
        raise ValueError(f"unbalanced IPv6 brackets in {endpoint!r}")
    if ("[" in host[1:-1] or "]" in host[1:-1] or "/" in host
            or (":" in host and not host.startswith("["))):
        raise ValueError(f"bad host in {endpoint!r} (IPv6 hosts go in brackets)")
    return host, port


def is_ipv6(host: str) -> bool:
    """True for a bracketed IPv6 host (``[::1]``)."""
    return host.startswith("[")


def advertised(listen: str, bound: str, advertise: str | None = None) -> str:
    """The identity of a node that listens on `listen` and got bound endpoint `bound`.

    `advertise` wins when given; a port of 0 in it stands for the bound port. Else the
    listen host as written (a wildcard becomes ``socket.gethostname()``) with the
    bound port. Never resolves a name.
    """
    _, bound_port = split_endpoint(bound)
    if advertise is not None:
        host, port = split_endpoint(advertise)
        if port in ("0", "*"):
            port = bound_port
        return f"tcp://{host}:{int(port)}"
    host, _ = split_endpoint(listen)
    if host in WILDCARD_HOSTS:
        host = socket.gethostname()
    return f"tcp://{host}:{bound_port}"

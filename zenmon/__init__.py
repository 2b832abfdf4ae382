"""zenmon: Erlang-style process monitors for Python services, at scale.

A rendition of Discord's ZenMonitor: batched subscriptions per remote node, one
local monitor per watched process on the remote side, batched death notices, a
throttled dispatcher, truncated exit reasons, node-down detection. See README.md.

Platforms: Linux is tested; macOS is expected to work but is untested; Windows is
not supported (importing zenmon there raises ImportError).
"""

import sys as _sys

if _sys.platform == "win32":
    # Fail here, clearly, rather than at the first Node.start(): each node wakes its
    # I/O thread through an os.pipe() registered with zmq.Poller, and on Windows
    # zmq.Poller accepts sockets only, not pipe file descriptors.
    raise ImportError(
        "zenmon does not support Windows: a node wakes its I/O thread through an "
        "os.pipe() polled by zmq.Poller, which polls only sockets on Windows. "
        "Use Linux (tested) or macOS (expected to work, untested)."
    )

from ._core import Pid
from ._version import __version__ as __version__
from .codec import CodecError
from .config import Config
from .curve import Curve
from .errors import NameTaken, NotStarted, ProcessExited, ZenmonError
from .messages import Down, DownBatch, Exit, NodeDown, NodeUp
from .metrics import PrometheusCollector
from .node import Node
from .process import Process
from .truncator import TRUNCATED, ExitException, truncate

__all__ = [
    "TRUNCATED",
    "CodecError",
    "Config",
    "Curve",
    "Down",
    "DownBatch",
    "Exit",
    "ExitException",
    "NameTaken",
    "Node",
    "NodeDown",
    "NodeUp",
    "NotStarted",
    "Pid",
    "Process",
    "ProcessExited",
    "PrometheusCollector",
    "ZenmonError",
    "truncate",
]

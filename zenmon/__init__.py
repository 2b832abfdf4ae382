"""zenmon: Erlang-style process monitors for Python services, at scale.

A rendition of Discord's ZenMonitor: batched subscriptions per remote node, one
local monitor per watched process on the remote side, batched death notices, a
throttled dispatcher, truncated exit reasons, node-down detection. See README.md.
"""

from ._core import Pid
from ._version import __version__ as __version__
from .codec import CodecError
from .config import Config
from .curve import Curve
from .errors import NameTaken, NotStarted, ProcessExited, ZenmonError
from .messages import Down, DownBatch, NodeDown, NodeUp
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

"""The naive local-monitoring baseline, for ``bench/`` and for reading.

It lives in :mod:`zenmon._naive` so that the installed ``zenmon bench`` can run
it; this module only re-exports it (``from zenmon._naive import *``, spelled out
so that the linter can check the names).
"""

from zenmon._naive import NaiveDown, NaiveNode, NaiveProcess

__all__ = ["NaiveDown", "NaiveNode", "NaiveProcess"]

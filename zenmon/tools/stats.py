"""Measurement helpers shared by the benchmarks: memory readings, percentiles, labels."""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import sys
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["environment", "label_n", "load_average", "malloc_trim", "percentile",
           "rss_bytes", "settled_rss"]


def rss_bytes() -> int:
    """This process's resident set size, in bytes (Linux: ``/proc/self/statm``)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def malloc_trim() -> None:
    """Hand freed heap back to the OS (glibc), so that a baseline RSS is not padded
    with free pages that the measured structures would then reuse unseen."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def settled_rss() -> int:
    """RSS after a full collection, a heap trim and a moment for other threads to settle."""
    gc.collect()
    malloc_trim()
    time.sleep(0.2)
    return rss_bytes()


def percentile(values: Sequence[float], q: float) -> float:
    """The `q` quantile (0..1) of `values` by nearest rank; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def label_n(n: int) -> str:
    """A count as it appears in figure labels: ``1M``, ``100k``."""
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k"


def load_average() -> float:
    """One-minute load average (figures from a loaded machine are not comparable)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def environment() -> dict[str, Any]:
    """What the figures were measured with: versions, machine, CPUs, GIL."""
    try:
        import zenmon

        version = getattr(zenmon, "__version__", None)
    except ImportError:
        version = None
    return {
        "zenmon": version,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "gil_enabled": getattr(sys, "_is_gil_enabled", lambda: True)(),
    }

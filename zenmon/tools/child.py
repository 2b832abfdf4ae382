"""Plumbing of the node subprocesses that ``zenmon demo`` and ``zenmon bench`` start.

Such a child prints one JSON line describing itself, then answers each command line
on stdin (``{"cmd": name, **args}``) with one line on stdout: ``{"ok": result}`` or
``{"error": text}``; a failing command never ends it. ``stop`` or end of stdin (the
parent went away) stops the node and ends the loop.
"""

from __future__ import annotations

import json
import signal
import sys
from typing import Any


def die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this process when its parent dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # no libc/prctl: stdin EOF still ends us
        pass


def serve_commands(node: Any, server: Any, info: dict[str, Any]) -> int:
    """Print `info`, then run command ``name`` as ``server.do_<name>(**args)`` for each
    line on stdin until ``stop`` or EOF; `node` is stopped either way. -> exit code 0."""
    out = sys.stdout
    out.write(json.dumps(info) + "\n")
    out.flush()
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            stop = False
            try:
                command = json.loads(line)
                name = command.pop("cmd")
                if name == "stop":
                    node.stop()
                    answer: dict[str, Any] = {"ok": None}
                    stop = True
                else:
                    handler = getattr(server, f"do_{name}", None)
                    if handler is None:
                        raise ValueError(f"unknown command {name!r}")
                    answer = {"ok": handler(**command)}
            except Exception as exc:  # answer the error; keep serving
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            out.write(json.dumps(answer) + "\n")
            out.flush()
            if stop:
                break
    finally:
        node.stop()
    return 0

"""A *sessions* node of ``zenmon demo``: one OS process, driven by JSON lines.

Started by :mod:`zenmon.tools.demo` (through :class:`zenmon.tools.child.Child`) with
``--settings JSON``; ``python -m zenmon.tools.demo_node`` runs it by hand.
It starts a :class:`zenmon.Node` on a free loopback port, prints one JSON line
``{"address", "incarnation", "pid"}``, then answers each command line on stdin
with one line on stdout: ``{"ok": result}`` or ``{"error": text}``. End of stdin
(the orchestrator went away) stops the node and ends the process; on Linux the
process also asks the kernel to kill it if its parent dies, so a demo that is
itself killed leaves nothing behind.

Commands (``{"cmd": ..., ...}``):

- ``spawn`` ``n``: make `n` session processes -> ``{"node", "incarnation", "ids"}``
  (pid ids, in order; session ``i`` of this node is ``ids[i]``).
- ``monitor_guilds`` ``guilds`` (str pids), ``membership`` (flat list of guild
  indices, ``per_session`` per session, in session order), ``per_session``: every
  session monitors each of its guilds -> number of monitors made.
- ``metrics`` -> ``node.metrics()``.
- ``ping`` -> ``"pong"``; ``stop`` -> stops the node, answers, then the process exits.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import Any

import zenmon
from zenmon.tools.child import die_with_parent, serve_commands


class SessionsNode:
    """The command handlers around one node hosting session processes."""

    def __init__(self, node: zenmon.Node) -> None:
        self.node = node
        self.sessions: list[zenmon.Process] = []

    def do_ping(self) -> str:
        return "pong"

    def do_spawn(self, n: int) -> dict[str, Any]:
        process = self.node.process
        made = [process() for _ in range(int(n))]
        self.sessions.extend(made)
        return {"node": self.node.address, "incarnation": self.node.incarnation,
                "ids": [p.pid.id for p in made]}

    def do_monitor_guilds(self, guilds: list[str], membership: list[int],
                          per_session: int) -> int:
        targets = [zenmon.Pid.parse(text) for text in guilds]
        k = int(per_session)
        if len(membership) != k * len(self.sessions):
            raise ValueError(f"membership has {len(membership)} entries, expected "
                             f"{k} x {len(self.sessions)} sessions")
        count = 0
        for i, session in enumerate(self.sessions):
            monitor = session.monitor
            for g in membership[i * k:(i + 1) * k]:
                monitor(targets[g])
                count += 1
        return count

    def do_metrics(self) -> dict[str, int]:
        return self.node.metrics()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zenmon.tools.demo_node")
    parser.add_argument("--settings", default="{}", help="node settings as a JSON object")
    args = parser.parse_args(argv)
    die_with_parent()
    # The orchestrator handles Ctrl-C and kills us; a terminal's SIGINT is not ours.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    settings = json.loads(args.settings)
    node = zenmon.Node(listen="tcp://127.0.0.1:0", **settings)
    node.start()
    return serve_commands(node, SessionsNode(node), {
        "address": node.address, "incarnation": node.incarnation, "pid": os.getpid()})


if __name__ == "__main__":
    sys.exit(main())

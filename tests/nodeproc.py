"""A zenmon node in its own OS process, driven by JSON lines on stdin.

Started by ``tests/remote.RemoteNode`` (a :class:`zenmon.tools.child.Child`) as the
module ``nodeproc`` with ``--port N --settings JSON [--curve JSON] [--listen ENDPOINT]
[--advertise ADDRESS]`` (port 0 picks a free one). It starts a :class:`zenmon.Node`
on 127.0.0.1 (or `listen`) and serves the commands
below through :func:`zenmon.tools.child.serve_commands`, the command loop that the
demo and benchmark nodes use too: one JSON line ``{"address", "incarnation",
"pid"}``, then one answer line per command line, ``{"ok": result}`` or
``{"error": text, "traceback": text}``. A bad command is answered with an error; the
node keeps serving. End of stdin stops the node.

Commands (``{"cmd": ..., ...}``):

- ``spawn`` ``n`` (1), ``name`` (null; needs n == 1), ``compact`` (false):
  make processes -> ``[str(pid), ...]``, or ``{"node", "incarnation", "ids"}`` when
  compact (for very many pids).
- ``exit`` ``pids`` (str pids, or "all"), ``reason`` (JSON; ``{"__tuple__": [...]}`` and
  ``{"__bytes__": latin-1 text}`` stand for tuples and bytes, both ways),
  ``exception`` (false: when true the reason is ``RuntimeError(reason)``) -> count.
- ``monitor`` ``watcher`` (int index; the watcher process is made on first use),
  ``targets`` (str pids or ``[name, address]``), ``repeat`` (1) -> refs.
- ``demonitor`` ``watcher``, ``refs``, ``flush`` (false) -> count.
- ``watcher_exit`` ``watcher``, ``reason`` ("normal") -> null.
- ``downs``: every DOWN received by any watcher since the start ->
  ``[[watcher, ref, pid, reason], ...]`` (pid as str or [name, address]).
- ``downs_count`` -> number of DOWNs received so far (cheap).
- ``metrics``; ``connect`` ``address`` ``timeout``; ``configure`` ``settings``;
  ``ping``; ``stop`` (stops the node, answers, then this process exits).
- ``hold_gil`` ``seconds``: answers, then a thread holds the GIL for that long (a C
  call, ``usleep``): every Python thread stalls while libzmq's threads run on.
- ``monitor_node`` ``watcher``, ``address`` -> ref; ``monitor_nodes`` ``watcher``;
  ``node_events``: every NodeUp / NodeDown a watcher received ->
  ``[[watcher, kind, ref, address, reason, time.time() on arrival], ...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from typing import Any

import zenmon
from zenmon.tools.child import serve_commands


def _jsonable(value: Any) -> Any:
    """A JSON form of a reason or pid (pids as str, tuples as lists, rest repr)."""
    if isinstance(value, zenmon.Pid):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, bytes):
        return {"__bytes__": value.decode("latin-1")}
    if isinstance(value, zenmon.ExitException):
        return {"__exception__": [value.type_name, value.message]}
    if isinstance(value, tuple):
        return {"__tuple__": [_jsonable(v) for v in value]}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return repr(value)


def _from_json(value: Any) -> Any:
    """A reason from its JSON form: ``{"__tuple__": [...]}`` and ``{"__bytes__": latin-1}``."""
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1 and "__tuple__" in value:
            return tuple(_from_json(v) for v in value["__tuple__"])
        if len(value) == 1 and "__bytes__" in value:
            return str(value["__bytes__"]).encode("latin-1")
        return {k: _from_json(v) for k, v in value.items()}
    return value


def _target(value: Any) -> Any:
    if isinstance(value, str):
        return zenmon.Pid.parse(value)
    if isinstance(value, list) and len(value) == 2:
        return (str(value[0]), str(value[1]))
    raise ValueError(f"bad monitor target {value!r}")


class Server:
    """The command loop around one node."""

    def __init__(self, node: zenmon.Node) -> None:
        self.node = node
        self.processes: dict[str, zenmon.Process] = {}
        self.watchers: dict[int, zenmon.Process] = {}
        self.downs: list[list[Any]] = []
        self.node_events: list[list[Any]] = []
        self.downs_lock = threading.Lock()

    def watcher(self, index: int) -> zenmon.Process:
        watcher = self.watchers.get(index)
        if watcher is None:
            watcher = self.node.process()
            self.watchers[index] = watcher
            threading.Thread(target=self.collect, args=(index, watcher), daemon=True).start()
        return watcher

    def collect(self, index: int, watcher: zenmon.Process) -> None:
        """Move every DOWN of `watcher` into the shared list as it arrives."""
        while True:
            try:
                message = watcher.receive(timeout=None)
            except zenmon.ProcessExited:
                return
            if isinstance(message, zenmon.Down):
                entry = [index, message.ref, _jsonable(message.pid), _jsonable(message.reason)]
                with self.downs_lock:
                    self.downs.append(entry)
            elif isinstance(message, (zenmon.NodeUp, zenmon.NodeDown)):
                event = ([index, "up", None, message.address, None, time.time()]
                         if isinstance(message, zenmon.NodeUp)
                         else [index, "down", message.ref, message.address, message.reason,
                               time.time()])
                with self.downs_lock:
                    self.node_events.append(event)

    # ------------------------------------------------------------- commands

    def do_ping(self) -> str:
        return "pong"

    def do_spawn(self, n: int = 1, name: str | None = None, compact: bool = False) -> Any:
        if name is not None and n != 1:
            raise ValueError("a name needs n == 1")
        made = [self.node.process(name) for _ in range(int(n))]
        for process in made:
            self.processes[str(process.pid)] = process
        if compact:
            return {"node": self.node.address, "incarnation": self.node.incarnation,
                    "ids": [process.pid.id for process in made]}
        return [str(process.pid) for process in made]

    def do_exit(self, pids: Any, reason: Any = "normal", exception: bool = False) -> int:
        if pids == "all":
            pids = list(self.processes)
        exit_reason = RuntimeError(reason) if exception else _from_json(reason)
        count = 0
        for text in pids:
            process = self.processes.pop(text, None)
            if process is not None:
                process.exit(exit_reason)
                count += 1
        return count

    def do_monitor(self, watcher: int, targets: list[Any], repeat: int = 1) -> list[int]:
        process = self.watcher(int(watcher))
        parsed = [_target(t) for t in targets]
        return [process.monitor(t) for t in parsed for _ in range(int(repeat))]

    def do_demonitor(self, watcher: int, refs: list[int], flush: bool = False) -> int:
        process = self.watchers[int(watcher)]
        for ref in refs:
            process.demonitor(int(ref), flush=bool(flush))
        return len(refs)

    def do_watcher_exit(self, watcher: int, reason: Any = "normal") -> None:
        self.watchers[int(watcher)].exit(_from_json(reason))

    def do_downs(self) -> list[list[Any]]:
        with self.downs_lock:
            return list(self.downs)

    def do_downs_count(self) -> int:
        with self.downs_lock:
            return len(self.downs)

    def do_metrics(self) -> dict[str, int]:
        return self.node.metrics()

    def do_connect(self, address: str, timeout: float | None = None) -> str:
        return self.node.connect(address, timeout=timeout)

    def do_configure(self, settings: dict[str, Any]) -> None:
        self.node.configure(**settings)

    def do_hold_gil(self, seconds: float) -> None:
        import ctypes

        usleep = ctypes.PyDLL(None).usleep    # PyDLL: the GIL stays held during the call
        threading.Thread(target=usleep, args=(int(seconds * 1e6),), daemon=True).start()

    def do_monitor_node(self, watcher: int, address: str) -> int:
        ref: int = self.watcher(int(watcher)).monitor_node(address)
        return ref

    def do_monitor_nodes(self, watcher: int, enabled: bool = True) -> None:
        self.watcher(int(watcher)).monitor_nodes(bool(enabled))

    def do_node_events(self) -> list[list[Any]]:
        with self.downs_lock:
            return list(self.node_events)

    def do_stop(self) -> None:
        self.node.stop(timeout=5.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--settings", default="{}", help="zenmon settings as JSON")
    parser.add_argument("--listen", default=None, help="endpoint (default 127.0.0.1:port)")
    parser.add_argument("--advertise", default=None, help="advertised address")
    parser.add_argument("--curve", default=None,
                        help='JSON {"secret": z85, "public": z85, "authorized": [z85...]}')
    args = parser.parse_args(argv)
    settings = json.loads(args.settings)
    if os.environ.get("ZENMON_TEST_LOG"):      # e.g. DEBUG: zenmon's logs on stderr
        import logging

        logging.basicConfig(level=os.environ["ZENMON_TEST_LOG"],
                            format="%(asctime)s %(name)s %(message)s")
    curve = None
    if args.curve:
        keys = json.loads(args.curve)
        curve = zenmon.Curve(keys["secret"], keys["public"], authorized=keys.get("authorized", []))
    listen = args.listen or f"tcp://127.0.0.1:{args.port}"
    node = zenmon.Node(listen=listen, curve=curve, advertise=args.advertise, **settings)
    node.start()
    return serve_commands(node, Server(node), {
        "address": node.address, "incarnation": node.incarnation, "pid": os.getpid()})


if __name__ == "__main__":
    sys.exit(main())

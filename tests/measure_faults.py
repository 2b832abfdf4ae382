"""Measure failure detection across three namespace "hosts" (the README's table).

Run as root: ``python tests/measure_faults.py [--runs N]`` (zenmon installed). For
each fault kind it starts a fresh three-node cluster (``tests/netns.py``, default
heartbeat settings: heartbeat_interval 200 ms, heartbeat_timeout 1000 ms,
pause_timeout 15000 ms), meshes monitors, injects the fault and prints:

- detection time: fault -> NodeDown (``monitor_nodes``) on each watcher that was
  cut off (SIGKILL, host loss, long partitions);
- false nodedowns under faults that must not look like death (GIL holds of 1, 3 and
  10 s; partitions of 0.3-0.8 s): node-level NodeDown events and monitors fired
  "nodedown" although the target lived;
- monitors checked and lost (each must get exactly one DOWN; lost must be 0).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import netns  # noqa: E402
from test_multihost import SETTINGS, check_exactly_once  # noqa: E402

from helpers import wait_for  # noqa: E402

PER_NODE = 100


def node_down_time(cluster: netns.Cluster, watcher: int, target: int,
                   timeout: float = 20.0) -> float:
    address = cluster.nodes[target].address

    def seen() -> float | None:
        times = [e[5] for e in cluster.node_downs(watcher) if e[3] == address]
        return times[0] if times else None

    return float(wait_for(seen, timeout=timeout, interval=0.01))


def run_fault(lab: netns.Lab, kind: str, arg: float) -> dict[str, Any]:
    cluster = netns.Cluster(lab, SETTINGS)
    try:
        cluster.start_all()
        cluster.mesh(PER_NODE)
        time.sleep(0.5)
        cut: set[tuple[int, int]] = set()
        detections: list[float] = []
        reason = "end"
        alive = [0, 1, 2]
        if kind == "sigkill":
            start = time.time()
            cluster.nodes[2].kill()
            detections = [node_down_time(cluster, w, 2) - start for w in (0, 1)]
            cut = {(0, 2), (1, 2)}
            alive = [0, 1]
        elif kind == "host loss":
            start = time.time()
            lab.link(2, False)
            try:
                detections = [node_down_time(cluster, w, t) - start
                              for w, t in ((0, 2), (1, 2), (2, 0), (2, 1))]
            finally:
                lab.link(2, True)
            cut = {(0, 2), (1, 2), (2, 0), (2, 1)}
        elif kind in ("partition", "one-way partition"):
            start = time.time()
            lab.partition(0, 1, both_ways=kind == "partition")
            try:
                detections = [node_down_time(cluster, w, t) - start
                              for w, t in ((0, 1), (1, 0))]
            finally:
                lab.heal(0)
            cut = {(0, 1), (1, 0)}
        elif kind == "short partition":
            lab.partition(0, 1)
            time.sleep(arg)
            lab.heal(0)
            time.sleep(2 * SETTINGS["heartbeat_timeout"] / 1000)
            cut = {(0, 1), (1, 0)}
        elif kind == "gil hold":
            cluster.nodes[1].hold_gil(arg)
            cluster.nodes[1].call("ping", timeout=arg + 30)
            time.sleep(2 * SETTINGS["heartbeat_timeout"] / 1000)
            cut = {(0, 1), (1, 0), (2, 1), (1, 2)}     # counted, must stay 0
        node_downs = sum(len(cluster.node_downs(h)) for h in alive)
        cluster.exit_all(reason, hosts=alive)
        counts = check_exactly_once(cluster, reason, cut=cut, watchers=alive)
        return {"detections": detections, "node_downs": node_downs, **counts}
    finally:
        for host in range(len(lab.hosts)):
            lab.heal(host)
            lab.link(host, True)
        cluster.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", default=None, help="one fault kind")
    args = parser.parse_args()
    reason = netns.unavailable()
    if reason:
        print(reason)
        return 1
    netns.sweep_stale()
    plan: list[tuple[str, float, int]] = [
        ("sigkill", 0, args.runs), ("host loss", 0, args.runs),
        ("partition", 0, args.runs), ("one-way partition", 0, args.runs),
        ("short partition", 0.3, args.runs), ("short partition", 0.5, args.runs),
        ("short partition", 0.8, args.runs),
        ("gil hold", 1.0, args.runs), ("gil hold", 3.0, args.runs),
        ("gil hold", 10.0, max(1, args.runs // 2)),
    ]
    lab = netns.Lab(3)
    try:
        for kind, arg, runs in plan:
            if args.only and kind != args.only:
                continue
            results = [run_fault(lab, kind, arg) for _ in range(runs)]
            detections = [d for r in results for d in r["detections"]]
            label = f"{kind} {arg:g} s" if arg else kind
            line = (f"{label:22s} runs {runs:2d}  monitors checked "
                    f"{sum(r['checked'] for r in results):5d} lost "
                    f"{sum(r['lost'] for r in results)}  nodedown DOWNs "
                    f"{sum(r['nodedown'] for r in results):5d}  NodeDown events "
                    f"{sum(r['node_downs'] for r in results):3d}")
            if detections:
                line += (f"  detection median {statistics.median(detections):.2f} s "
                         f"max {max(detections):.2f} s")
            print(line, flush=True)
    finally:
        lab.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

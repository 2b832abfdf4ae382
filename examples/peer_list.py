"""A live peer list from node events, with three peer nodes in their own OS processes.

    python examples/peer_list.py

This process starts PEERS peers (this file with the argument ``peer``); each runs a
node on a free port, prints its address and serves until its stdin says "stop" or
closes. A "membership" process here calls ``monitor_nodes(True)``: it gets a
``zenmon.NodeUp`` when a session with a peer comes up and a ``zenmon.NodeDown`` (ref
None, with a reason) when one goes down. Those are the sessions this node opens, so
it ``connect``s to each peer (your service discovery would give the addresses). Then
it stops one peer gracefully and SIGKILLs another by pid, and prints the list as it
changes.
"""

import os
import signal
import subprocess
import sys

import zenmon

# Fast sweeps and a short heartbeat so a killed peer is seen quickly. Nodes that
# talk to each other must share the heartbeat settings.
SETTINGS = {"connector_sweep_interval": 10, "batcher_sweep_interval": 10,
            "demand_interval": 10, "heartbeat_interval": 100, "heartbeat_timeout": 500}
PEERS = 3


def peer_main():
    with zenmon.Node(**SETTINGS) as node:   # listens on tcp://127.0.0.1:0: a free port
        print(node.address, flush=True)
        sys.stdin.readline()                # "stop", or "" when the parent goes
    # leaving the block stops the node: its peers' sessions end with "stopped"


def main():
    children = [subprocess.Popen([sys.executable, __file__, "peer"], text=True,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                for _ in range(PEERS)]
    try:
        names = {child.stdout.readline().strip(): f"peer {i}"
                 for i, child in enumerate(children)}
        with zenmon.Node(**SETTINGS) as node:
            membership = node.process(name="membership")
            membership.monitor_nodes(True)  # before any session comes up
            up = set()

            def show(event):                # one line per change of the list
                name = names[event.address]
                if isinstance(event, zenmon.NodeUp):
                    up.add(name)
                    print(f"{name} up -> peers {sorted(up)}", flush=True)
                else:
                    up.discard(name)
                    print(f"{name} down ({event.reason}) -> peers {sorted(up)}", flush=True)

            for address in names:
                node.connect(address)       # opens a session; heartbeats keep it up
            while len(up) < PEERS:
                show(membership.receive(timeout=10))   # TimeoutError: never hang

            print(f"stopping peer 0 (pid {children[0].pid})", flush=True)
            children[0].stdin.write("stop\n")
            children[0].stdin.flush()
            while "peer 0" in up:
                show(membership.receive(timeout=10))
            print(f"killing peer 1 (pid {children[1].pid}) with SIGKILL", flush=True)
            os.kill(children[1].pid, signal.SIGKILL)
            while "peer 1" in up:           # within about heartbeat_timeout
                show(membership.receive(timeout=10))
            print(f"final peers: {sorted(up)}", flush=True)
    finally:
        for child in children:              # the rest stop when their stdin closes
            child.stdin.close()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


if __name__ == "__main__":
    if sys.argv[1:2] == ["peer"]:
        peer_main()
    else:
        main()

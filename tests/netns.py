"""A small lab of "hosts" in Linux network namespaces, for the multi-host tests.

``Lab(n)`` makes a switch namespace with a bridge and ``n`` host namespaces, each
wired to the bridge by a veth pair and given ``10.<x>.<y>.<i>/24`` and a host name
(``host-a``, ``host-b``...) that resolves inside every host namespace (through
``/etc/netns/<namespace>/hosts``, which ``ip netns exec`` bind-mounts over
``/etc/hosts``). Faults: ``partition(a, b, both_ways)`` / ``heal(a)`` with nft drop
rules inside a host namespace, ``link(a, up)`` for host loss (its veth on the
switch goes down). Traffic stays inside the namespaces made here.

Everything a lab makes is named ``zmt-<os pid>-<random>-...`` and removed by
``close()`` (also after a failure); ``sweep_stale()`` removes what a killed test run
left behind (namespaces of a pid that no longer runs). Needs root, ``ip`` and
``nft``: ``unavailable()`` says why not, else None. ``Cluster`` runs one zenmon
node per host.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from typing import Any

PREFIX = "zmt-"


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command (no shell), capturing its output; raise with stderr on failure."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr}")
    return done


def unavailable() -> str | None:
    """Why namespaces cannot be used here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"{tool!r} is not installed (ci/apt-packages.txt: iproute2, nftables)"
    probe = f"{PREFIX}{os.getpid()}-probe"
    done = run("ip", "netns", "add", probe, check=False)
    if done.returncode != 0:
        return f"cannot create a network namespace: {done.stderr.strip()}"
    run("ip", "netns", "del", probe, check=False)
    return None


def sweep_stale() -> None:
    """Remove namespaces (and their hosts files) left by lab runs whose pid is gone."""
    listing = run("ip", "netns", "list", check=False).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        if not name.startswith(PREFIX):
            continue
        owner = name[len(PREFIX):].split("-", 1)[0]
        if owner.isdigit() and not _running(int(owner)):
            run("ip", "netns", "del", name, check=False)
            shutil.rmtree(f"/etc/netns/{name}", ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lab:
    """A switch and `n` hosts; ``hosts[i]`` is a dict with name, namespace, ip."""

    def __init__(self, n: int = 3) -> None:
        tag = f"{random.getrandbits(16):04x}"
        self.prefix = f"{PREFIX}{os.getpid()}-{tag}-"
        subnet = f"10.{random.randrange(64, 250)}.{random.randrange(1, 250)}"
        self.switch = self.prefix + "sw"
        self.hosts: list[dict[str, Any]] = []
        self.namespaces: list[str] = []
        try:
            self._add_namespace(self.switch)
            run("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
            run("ip", "-n", self.switch, "link", "set", "br0", "up")
            for i in range(n):
                letter = "abcdefgh"[i]
                namespace = self.prefix + letter
                self._add_namespace(namespace)
                port = f"v{letter}"
                run("ip", "link", "add", "name", "eth0", "netns", namespace, "type", "veth",
                    "peer", "name", port, "netns", self.switch)
                run("ip", "-n", self.switch, "link", "set", port, "master", "br0")
                run("ip", "-n", self.switch, "link", "set", port, "up")
                ip = f"{subnet}.{i + 1}"
                run("ip", "-n", namespace, "addr", "add", f"{ip}/24", "dev", "eth0")
                run("ip", "-n", namespace, "link", "set", "eth0", "up")
                run("ip", "-n", namespace, "link", "set", "lo", "up")
                self.hosts.append({"name": f"host-{letter}", "namespace": namespace, "ip": ip,
                                   "port": port})
            hosts_file = "127.0.0.1 localhost\n" + "".join(
                f"{h['ip']} {h['name']}\n" for h in self.hosts)
            for host in self.hosts:
                folder = f"/etc/netns/{host['namespace']}"
                os.makedirs(folder, exist_ok=True)
                with open(f"{folder}/hosts", "w") as f:
                    f.write(hosts_file)
        except BaseException:
            self.close()
            raise

    def _add_namespace(self, name: str) -> None:
        run("ip", "netns", "add", name)
        self.namespaces.append(name)

    def exec_prefix(self, host: int) -> list[str]:
        """argv prefix that runs a command inside host `host`'s namespace."""
        return ["ip", "netns", "exec", self.hosts[host]["namespace"]]

    def ping(self, src: int, dst: int) -> bool:
        """One ping from host `src` to host `dst` by name (checks routes and names)."""
        done = run(*self.exec_prefix(src), "ping", "-c", "1", "-W", "1",
                   self.hosts[dst]["name"], check=False)
        return done.returncode == 0

    # --------------------------------------------------------------- faults

    def partition(self, a: int, b: int, both_ways: bool = True) -> None:
        """Drop what host `b` sends to host `a` (and, both ways, what `a` sends to `b`),
        with nft rules in `a`'s namespace; ``heal(a)`` removes them."""
        namespace = self.hosts[a]["namespace"]
        peer = self.hosts[b]["ip"]
        rules = [("input", "saddr")] + ([("output", "daddr")] if both_ways else [])
        script = "".join(
            f"table inet zmfault {{\n chain {chain} {{ type filter hook {chain} priority 0; "
            f"policy accept;\n  ip {field} {peer} drop\n }}\n}}\n"
            for chain, field in rules)
        subprocess.run(["ip", "netns", "exec", namespace, "nft", "-f", "-"], input=script,
                       text=True, check=True, capture_output=True, timeout=30)

    def heal(self, a: int) -> None:
        """Remove the drop rules of host `a`."""
        run(*self.exec_prefix(a), "nft", "delete", "table", "inet", "zmfault", check=False)

    def link(self, host: int, up: bool) -> None:
        """Host loss: take host `host`'s port on the switch down (or back up)."""
        run("ip", "-n", self.switch, "link", "set", self.hosts[host]["port"],
            "up" if up else "down")

    # -------------------------------------------------------------- cleanup

    def close(self) -> None:
        """Remove every namespace and hosts file this lab made (idempotent)."""
        for name in reversed(self.namespaces):
            run("ip", "netns", "del", name, check=False)
            shutil.rmtree(f"/etc/netns/{name}", ignore_errors=True)
        self.namespaces.clear()


class Cluster:
    """One zenmon node per lab host (``tests/nodeproc.py`` run in the host's
    namespace), listening on ``tcp://0.0.0.0:<port>`` and advertising
    ``tcp://host-x:<port>``; every node monitors every other node's processes."""

    def __init__(self, lab: Lab, settings: dict[str, Any], port: int = 7001) -> None:
        self.lab = lab
        self.settings = settings
        self.port = port
        self.nodes: list[Any] = [None] * len(lab.hosts)
        self.pids: dict[int, list[Any]] = {}
        self.refs: dict[int, dict[int, Any]] = {}        # watcher host -> ref -> pid

    def start(self, host: int) -> Any:
        """Start (or restart) the node of host `host`."""
        from remote import RemoteNode

        info = self.lab.hosts[host]
        node = RemoteNode(settings=self.settings, listen=f"tcp://0.0.0.0:{self.port}",
                          advertise=f"tcp://{info['name']}:{self.port}",
                          prefix=self.lab.exec_prefix(host))
        self.nodes[host] = node
        node.monitor_nodes(0)
        return node

    def start_all(self) -> None:
        for host in range(len(self.lab.hosts)):
            self.start(host)

    def mesh(self, per_node: int) -> None:
        """Each node spawns `per_node` processes; watcher 0 of every node monitors all
        the others'. Returns once every subscription is in place."""
        from remote import wait_subscribed

        for host, node in enumerate(self.nodes):
            self.pids[host] = node.spawn(per_node)
        for host, node in enumerate(self.nodes):
            targets = [pid for other, pids in self.pids.items() if other != host
                       for pid in pids]
            refs = node.monitor(0, targets)
            self.refs.setdefault(host, {}).update(zip(refs, targets))
        for node in self.nodes:
            wait_subscribed(node, per_node * (len(self.nodes) - 1), timeout=30)

    def host_of(self, pid: Any) -> int:
        return next(h for h, pids in self.pids.items() if pid in pids)

    def exit_all(self, reason: str, hosts: list[int] | None = None) -> None:
        for host in hosts if hosts is not None else range(len(self.nodes)):
            self.nodes[host].exit(self.pids[host], reason)

    def node_downs(self, host: int) -> list[list[Any]]:
        """NodeDown events (monitor_nodes) node `host` received so far."""
        return [e for e in self.nodes[host].node_events() if e[1] == "down"]

    def close(self) -> None:
        for node in self.nodes:
            if node is not None:
                node.close()

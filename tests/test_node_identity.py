"""A node's identity: listen versus advertise, host names kept, IPv6, one identity.

BRIEF "Across machines": ``node.address`` is the advertised address every pid
carries; a wildcard listen never becomes the identity; host names are not
resolved at bind time; IPv6 works end to end; a peer reached under an address
that is not its identity is refused with a logged reason, and monitors through
that address fire ``"nodedown"``.
"""

from __future__ import annotations

import logging
import socket

import pytest

import zenmon
from helpers import assert_down, metric, wait_for
from remote import REMOTE_SETTINGS, free_port

FAST = {**REMOTE_SETTINGS}


def host_of(address: str) -> str:
    return address.partition("://")[2].rpartition(":")[0]


def port_of(address: str) -> int:
    return int(address.partition("?")[0].rpartition(":")[2])


@pytest.mark.parametrize("listen", ["tcp://0.0.0.0:0", "tcp://*:0"])
def test_wildcard_listen_advertises_the_host_name(node_factory, listen):
    node = node_factory(listen=listen)
    assert host_of(node.address) == socket.gethostname()
    assert port_of(node.address) > 0
    assert node.process().pid.node == node.address


def test_advertise_is_the_identity_every_pid_carries(node_factory):
    port = free_port()
    node = node_factory(listen=f"tcp://0.0.0.0:{port}",
                        advertise=f"tcp://sessions-3.internal:{port}")
    assert node.address == f"tcp://sessions-3.internal:{port}"
    pid = node.process().pid
    assert pid.node == node.address
    assert zenmon.Pid.parse(str(pid)) == pid


def test_advertise_port_zero_means_the_bound_port(node_factory):
    node = node_factory(listen="tcp://127.0.0.1:0", advertise="tcp://localhost:0")
    assert host_of(node.address) == "localhost"
    assert port_of(node.address) > 0


def test_host_names_are_kept_as_written(node_factory):
    node = node_factory(listen="tcp://localhost:0")
    assert host_of(node.address) == "localhost"


@pytest.mark.parametrize("bad", ["localhost:7001", "tcp://:7001", "tcp://host", "udp://h:1",
                                 "tcp://::1:7001", "tcp://[::1:7001"])
def test_malformed_advertise_or_listen_is_refused_at_once(bad):
    with pytest.raises(ValueError):
        zenmon.Node(listen="tcp://127.0.0.1:0", advertise=bad)
    with pytest.raises(ValueError):
        zenmon.Node(listen=bad)


def test_ipv6_nodes_monitor_each_other(node_factory):
    a = node_factory(listen="tcp://[::1]:0", **FAST)
    b = node_factory(listen="tcp://[::1]:0", **FAST)
    assert a.address.startswith("tcp://[::1]:")
    target = b.process()
    assert zenmon.Pid.parse(str(target.pid)) == target.pid
    watcher = a.process()
    ref = watcher.monitor(zenmon.Pid.parse(str(target.pid)))
    wait_for(lambda: metric(b, "zenmon.proxy.subscribers.size") == 1, timeout=10)
    target.exit("over v6")
    assert_down(watcher.receive(timeout=10), ref, target.pid, "over v6")
    assert a.connect(b.address) == "compatible"


def test_ipv6_pids_with_curve_keys_round_trip():
    secret, public = zenmon.Curve.generate()
    address = f"tcp://[fe80::1%eth0]:7001?key={public.decode()}"
    pid = zenmon.Pid(address, 12345, 7)
    assert zenmon.Pid.parse(str(pid)) == pid


def test_a_node_reached_under_another_address_is_refused(node_factory, caplog):
    caplog.set_level(logging.INFO, logger="zenmon")
    a = node_factory(**FAST)
    b = node_factory(listen="tcp://127.0.0.1:0", **FAST)
    alias = f"tcp://localhost:{port_of(b.address)}"     # the same socket, another name
    target = b.process()
    watcher = a.process()
    through_alias = zenmon.Pid(alias, target.pid.incarnation, target.pid.id)
    ref = watcher.monitor(through_alias)
    assert_down(watcher.receive(timeout=10), ref, through_alias, "nodedown")
    assert a.connect(alias) == "incompatible"
    assert any("identity" in r.getMessage() and r.levelno == logging.WARNING
               and r.name.startswith("zenmon.") for r in caplog.records), caplog.text
    # under its identity the same node is fine, and only that session stays
    ref = watcher.monitor(target.pid)
    wait_for(lambda: metric(b, "zenmon.proxy.subscribers.size") == 1, timeout=10)
    wait_for(lambda: metric(b, "zenmon.proxy.peers.size") == 1, timeout=10)
    target.exit("by identity")
    assert_down(watcher.receive(timeout=10), ref, target.pid, "by identity")


def test_one_node_under_three_spellings_has_one_session(node_factory):
    a = node_factory(**FAST)
    b = node_factory(listen="tcp://127.0.0.1:0", **FAST)
    port = port_of(b.address)
    spellings = [b.address, f"tcp://localhost:{port}", f"tcp://127.0.0.01:{port}"]
    answers = [a.connect(address) for address in spellings]
    assert answers == ["compatible", "incompatible", "incompatible"]
    wait_for(lambda: metric(b, "zenmon.proxy.peers.size") == 1, timeout=10)


def test_prometheus_labels_each_node_and_types_counters(node_factory):
    prometheus_client = pytest.importorskip("prometheus_client")
    a = node_factory()
    b = node_factory()
    late = node_factory()
    registry = prometheus_client.CollectorRegistry()
    collector = zenmon.PrometheusCollector(a, b)
    registry.register(collector)
    collector.add(late)
    a.process().monitor(a.process().pid)
    text = prometheus_client.generate_latest(registry).decode()
    assert f'zenmon_local_monitor_total{{node="{a.address}"}} 1.0' in text
    assert f'zenmon_local_monitor_total{{node="{b.address}"}} 0.0' in text
    assert f'zenmon_local_monitor_total{{node="{late.address}"}} 0.0' in text
    assert text.count("# TYPE zenmon_local_monitor_total ") == 1   # one family, 3 series
    assert "# TYPE zenmon_node_internal_errors_total counter" in text
    assert "# TYPE zenmon_local_references_size gauge" in text
    names = {family.name for family in collector.describe()}
    assert {"zenmon_local_monitor", "zenmon_local_references_size"} <= names
    collector.remove(b)
    assert f'node="{b.address}"' not in prometheus_client.generate_latest(registry).decode()

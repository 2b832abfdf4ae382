"""Defects the soak (``zenmon soak``) found, each reproduced on its own.

A monitor by name made after a target node died (its ``nodedown`` fired) and came
back on the same port went to the old incarnation's connector; the new
incarnation's WELCOME then read as a restart and fired ``nodedown`` for it although
its node was up. Now a connector whose node was lost forgets the incarnation once
everything it held has fired (older pids still read as dead).
"""

from __future__ import annotations

from helpers import receive_all
from remote import REMOTE_SETTINGS, free_port


def test_name_monitor_after_a_restart_gets_the_process_reason(node_factory, remote_node):
    local = node_factory(**REMOTE_SETTINGS)
    port = free_port()
    old = remote_node(port=port)
    watcher = local.process()
    pid = old.spawn(1)[0]
    watcher.monitor(pid)          # the connector now belongs to the old incarnation
    old.kill()
    (down,) = receive_all(watcher, 1, timeout=10)
    assert down.reason == "nodedown"

    new = remote_node(port=port)
    assert new.address == old.address
    new.spawn(1, name="guild")
    ref = watcher.monitor(("guild", new.address))
    new.exit("all", "killed")
    (down,) = receive_all(watcher, 1, timeout=10)
    assert down.ref == ref
    assert down.reason == "killed", down


def test_after_a_restart_new_pids_are_watched_and_old_ones_read_dead(node_factory,
                                                                     remote_node):
    local = node_factory(**REMOTE_SETTINGS)
    port = free_port()
    old = remote_node(port=port)
    watcher = local.process()
    old_pid = old.spawn(1)[0]
    watcher.monitor(old_pid)
    old.kill()
    (down,) = receive_all(watcher, 1, timeout=10)
    assert down.reason == "nodedown"

    new = remote_node(port=port)
    new_pid = new.spawn(1)[0]
    ref_new = watcher.monitor(new_pid)
    ref_old = watcher.monitor(old_pid)
    new.exit([new_pid], "bye")
    downs = {d.ref: d for d in receive_all(watcher, 2, timeout=10)}
    assert downs[ref_old].reason == "noproc"
    assert downs[ref_new].reason == "bye"

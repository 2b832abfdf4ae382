"""Defects the soak (``zenmon soak``) found, each reproduced on its own.

Marked ``xfail(strict=True)`` while the defect stands: the fix turns the test into
a pass, and strict makes that an XPASS failure until the marker is removed.
"""

from __future__ import annotations

import pytest

from helpers import receive_all
from remote import REMOTE_SETTINGS, free_port


@pytest.mark.xfail(strict=True, reason=(
    "soak finding: after a target node dies (nodedown fired) and restarts on the same "
    "port, a monitor by name made on the watching node before it has talked to the new "
    "incarnation lands on the old incarnation's connector; the WELCOME of the new "
    "incarnation then retires that connector and fires 'nodedown' for the new monitor, "
    "although its node is up and the named process alive"))
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

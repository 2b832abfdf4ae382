"""The two-phase liveness rule (``zenmon.liveness``), as pure logic.

The wire behaviour (SIGKILL, host loss, partitions, GIL holds across namespace
hosts) is tested in test_multihost.py and measured by measure_faults.py; here the
arithmetic that decides when a silent peer is down.
"""

from __future__ import annotations

import math

import pytest

from zenmon.config import Config
from zenmon.liveness import down_deadline, paused_too_long, reachable_at, zmtp_settings

DEFAULTS = Config()


def test_default_zmtp_settings_leave_the_redial_most_of_the_timeout():
    zmtp = zmtp_settings(DEFAULTS)
    assert (zmtp.ivl, zmtp.timeout, zmtp.ttl) == (50, 400, 1000)
    assert (zmtp.connect_timeout, zmtp.reconnect_ivl) == (100, 25)
    # libzmq drops a cut connection within 0.45 s: more than half of the
    # timeout remains for a fresh connect after a short partition
    assert zmtp.silence_before_drop == pytest.approx(0.45)
    assert zmtp.silence_before_drop < DEFAULTS.heartbeat_timeout / 2000


@pytest.mark.parametrize("interval,timeout", [(1, 2), (10, 30), (200, 1000),
                                              (1000, 5000), (50, 100000)])
def test_zmtp_settings_are_sane_for_any_valid_config(interval, timeout):
    zmtp = zmtp_settings(Config(heartbeat_interval=interval, heartbeat_timeout=timeout))
    assert zmtp.ivl >= 10 and zmtp.timeout >= 2 * zmtp.ivl
    assert zmtp.ttl <= 6_553_599 and zmtp.connect_timeout >= 50
    assert zmtp.reconnect_ivl >= 10


def test_a_live_connection_is_never_declared_down_by_the_timeout():
    zmtp = zmtp_settings(DEFAULTS)
    assert down_deadline(100.0, True, 0.0, zmtp, DEFAULTS) == math.inf
    assert down_deadline(100.0, True, 150.0, zmtp, DEFAULTS) == math.inf
    # only pause_timeout ends a peer whose Python is silent
    assert not paused_too_long(114.9, 100.0, DEFAULTS)
    assert paused_too_long(115.1, 100.0, DEFAULTS)


def test_the_drop_time_dates_the_fault_better_than_the_last_heartbeat():
    zmtp = zmtp_settings(DEFAULTS)
    # heard at 100.0; the fault at 100.15; libzmq drops the connection at 100.15 +
    # (up to ivl) + timeout = 100.6: the peer was reachable until about 100.15
    assert reachable_at(100.0, False, 100.6, zmtp) == pytest.approx(100.15)
    deadline = down_deadline(100.0, False, 100.6, zmtp, DEFAULTS)
    assert deadline == pytest.approx(100.15 + 1.0 - 0.1)
    # so the sweep that sees it declares it within heartbeat_timeout of the fault
    assert deadline + DEFAULTS.connector_sweep_interval / 1000 <= 100.15 + 1.0 + 1e-9


def test_a_drop_read_long_after_the_last_frame_heard_does_not_go_back_before_it():
    zmtp = zmtp_settings(DEFAULTS)
    # a frame heard after the drop's silence began (the drop read late): the frame wins
    assert reachable_at(100.5, False, 100.6, zmtp) == 100.5


def test_a_connection_never_up_counts_from_the_last_frame():
    zmtp = zmtp_settings(DEFAULTS)
    assert reachable_at(100.0, False, 0.0, zmtp) == 100.0
    assert down_deadline(100.0, False, 0.0, zmtp, DEFAULTS) == pytest.approx(100.9)


def test_the_margin_never_makes_the_deadline_earlier_than_the_silence():
    config = Config(heartbeat_interval=10, heartbeat_timeout=50,
                    connector_sweep_interval=100)
    zmtp = zmtp_settings(config)
    assert down_deadline(100.0, False, 0.0, zmtp, config) == 100.0


def test_acknowledgements_date_a_drop_by_the_far_side():
    zmtp = zmtp_settings(DEFAULTS)
    # one-way cut at 100.0 (what we send is lost): the far side drops the connection
    # at 100.45, its FIN reaches us a retransmission timeout later, at 100.62; our
    # data was last acknowledged after 100.0, and the connection was read at 100.6
    assert reachable_at(99.9, False, 100.62, zmtp, 100.0, 100.6) == pytest.approx(100.0)
    deadline = down_deadline(99.9, False, 100.62, zmtp, DEFAULTS, 100.0, 100.6)
    assert deadline + DEFAULTS.connector_sweep_interval / 1000 <= 100.0 + 1.0 + 1e-9


def test_acknowledgements_never_make_a_drop_later_or_count_when_read_too_early():
    zmtp = zmtp_settings(DEFAULTS)
    # acknowledged after the drop's own date: the drop's date stands
    assert reachable_at(99.0, False, 100.6, zmtp, 100.5, 100.58) == pytest.approx(100.15)
    # counters last read before the moment the drop dates the fault: not about the
    # hung connection, so not used
    assert reachable_at(99.0, False, 100.6, zmtp, 99.5, 100.1) == pytest.approx(100.15)
    # no counters (not Linux, or never read): the drop alone
    assert reachable_at(99.0, False, 100.6, zmtp, 0.0, 0.0) == pytest.approx(100.15)
    # a frame heard later than both still wins
    assert reachable_at(100.3, False, 100.6, zmtp, 100.0, 100.6) == 100.3

"""The soak: ``zenmon soak --minutes 2`` over three node processes holds exactly-once.

It runs as a subprocess (it starts and kills its own node processes) and must
exit 0 with a summary showing DOWNs owed and every one delivered, nothing lost,
duplicated or late, the target node SIGKILLed and restarted at least once, and
every node's tables back at their baseline. Deselect with ``-m 'not soak'``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

MINUTES = 2


@pytest.mark.soak
@pytest.mark.timeout(MINUTES * 60 + 300)
def test_two_minute_soak_is_exactly_once(tmp_path: object) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "zenmon", "soak", "--minutes", str(MINUTES), "--json",
         "--names", "10000"],
        capture_output=True, text=True, timeout=MINUTES * 60 + 240, cwd=str(tmp_path))
    # the nodes log each peer lost or restarted: keep the rest of stderr (tracebacks)
    errors = "\n".join(line for line in result.stderr.splitlines()
                       if not line.startswith("peer "))
    report = result.stdout[-4000:] + errors[-6000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines, report
    summary = json.loads(lines[-1])
    assert summary["lost"] == 0, report
    assert summary["duplicates"] == 0, report
    assert summary["late_after_flush"] == 0, report
    assert summary["late_after_demonitor"] == 0, report
    assert summary["wrong_reason"] == 0, report
    assert summary["errors"] == 0, report
    assert summary["tables_ok"], report
    assert result.returncode == 0, report
    assert "RESULT: OK" in result.stdout, report
    # it did churn: monitors, demonitors with and without flush, watcher exits, kills
    assert summary["owed"] > 0 and summary["delivered"] == summary["owed"], report
    assert summary["demonitors"] > summary["flushes"] > 0, report
    assert summary["watcher_exits"] > 0, report
    assert summary["kills"] >= 1, report
    assert summary["rounds"] >= 5, report
    assert all(n >= 3 for n in summary["samples"].values()), report
    assert set(summary["bytes_per_name"]) == {"W", "T1"}, report
    # nothing is kept per unique name once its process is gone (a leak of one small
    # object per name would show as 30 B or more here)
    traced = summary["traced_bytes_per_name"]
    assert set(traced) == {"W", "T1"} and all(abs(v) < 8 for v in traced.values()), report

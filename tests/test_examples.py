"""The programs in examples/ run to completion across real OS processes.

Each example is run as a user would (``python examples/<name>.py``, from a
temporary directory so that the installed zenmon is imported), bounded in time,
and its output is checked: the right DOWNs with the right reasons, and a clean exit.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXAMPLE_TIMEOUT = 90   # s; each example takes a few seconds on a quiet machine


def run_example(name: str, tmp_path: Path) -> list[str]:
    path = EXAMPLES / name
    assert path.is_file(), f"missing {path}"
    proc = subprocess.run([sys.executable, str(path)], cwd=tmp_path, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=EXAMPLE_TIMEOUT)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout.splitlines()


@pytest.mark.timeout(EXAMPLE_TIMEOUT + 30)
def test_guild_sessions(tmp_path: Path) -> None:
    lines = run_example("guild_sessions.py", tmp_path)
    output = "\n".join(lines)
    # the guild saw exactly the two disconnected sessions go, with their reason
    assert sorted(line for line in lines if line.startswith("guild:") and "down" in line) == [
        "guild: session 0 down, reason 'connection closed'",
        "guild: session 1 down, reason 'connection closed'",
    ], output
    # the two remaining sessions (in the other OS process) saw the guild go
    assert sorted(line for line in lines if "guild down" in line) == [
        "  | session 2: guild down, reason 'guild restarting'",
        "  | session 3: guild down, reason 'guild restarting'",
    ], output
    assert lines[-2:] == ["  | sessions node: stopped",
                          "guild: sessions process exited with 0"], output


@pytest.mark.timeout(EXAMPLE_TIMEOUT + 30)
def test_job_runner(tmp_path: Path) -> None:
    lines = run_example("job_runner.py", tmp_path)
    output = "\n".join(lines)
    killed = [line for line in lines if line.startswith("killing worker 0")]
    down = [line for line in lines if line.startswith("worker 0 down")]
    assert len(killed) == 1 and len(down) == 1, output
    # the node of the SIGKILLed worker is reported down, and its jobs are handed on
    assert down[0].startswith("worker 0 down (nodedown), reassigning jobs ["), output
    assert lines[-1] == "all 12 jobs done: True", output
    assert lines.index(killed[0]) < lines.index(down[0]), output


@pytest.mark.timeout(EXAMPLE_TIMEOUT + 30)
def test_peer_list(tmp_path: Path) -> None:
    lines = run_example("peer_list.py", tmp_path)
    output = "\n".join(lines)
    ups = sorted(line.split(" up ->")[0] for line in lines if " up -> " in line)
    downs = [line for line in lines if " down (" in line]
    # every peer came up exactly once (in any order), and the list grew to all three
    assert ups == ["peer 0", "peer 1", "peer 2"], output
    assert [line for line in lines if " up -> " in line][-1].endswith(
        "-> peers ['peer 0', 'peer 1', 'peer 2']"), output
    # the stopped peer said goodbye; the SIGKILLed one was lost (a refused reconnect
    # or, on a slow machine, the heartbeat timeout); each is down exactly once
    assert len(downs) == 2, output
    assert downs[0] == "peer 0 down (stopped) -> peers ['peer 1', 'peer 2']", output
    assert downs[1] in ("peer 1 down (connection lost) -> peers ['peer 2']",
                        "peer 1 down (heartbeat timeout) -> peers ['peer 2']"), output
    stopping = next(i for i, line in enumerate(lines) if line.startswith("stopping peer 0"))
    killing = next(i for i, line in enumerate(lines) if line.startswith("killing peer 1"))
    assert stopping < lines.index(downs[0]) < killing < lines.index(downs[1]), output
    assert lines[-1] == "final peers: ['peer 2']", output

"""``zenmon demo`` end to end: real subprocesses, exact DOWN accounting, no leftovers.

The demo runs as ``python -m zenmon demo`` from a temporary directory (so that
the installed zenmon is the one imported, not the source tree). It prints the pids
of the sessions nodes it started; every one of them must be gone when it exits,
whether it finished, was interrupted with Ctrl-C (SIGINT) or was terminated.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import zenmon
from zenmon import cli
from zenmon.tools import demo

DEMO_TIMEOUT = 120    # s for one demo subprocess (pytest's own timeout is set above it)


def run_demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zenmon", "demo", *args],
        cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=DEMO_TIMEOUT,
    )


def row(output: str, name: str) -> list[str]:
    """The values of summary row `name`, one per run (columns are 2+ spaces apart)."""
    match = re.search(rf"^\s*{re.escape(name)}\s{{2,}}(.+)$", output, re.MULTILINE)
    assert match, f"no summary row {name!r} in:\n{output}"
    return re.split(r"\s{2,}", match.group(1).strip())


def child_pids(output: str) -> list[int]:
    """Pids of the sessions nodes the demo reported starting."""
    pids = list(dict.fromkeys(int(p) for p in re.findall(r"sessions node\s+pid\s+(\d+)",
                                                          output)))
    assert pids, f"the demo printed no sessions node pids:\n{output}"
    return pids


def demo_node_running(pid: int) -> bool:
    """True if `pid` is still a live (or unreaped) zenmon demo sessions node."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # someone else's process: the pid was reused
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True    # no /proc to tell a reused pid apart: count it as left over
    return b"zenmon.tools.demo_node" in cmdline


def assert_children_gone(output: str) -> None:
    left = [pid for pid in child_pids(output) if demo_node_running(pid)]
    assert not left, f"demo left child processes running: {left}\n{output}"


def assert_exactly_once(output: str, runs: int) -> None:
    expected = row(output, "DOWNs expected")
    delivered = row(output, "DOWNs delivered")
    assert len(expected) == len(delivered) == runs, output
    assert expected == delivered, output
    assert all(int(v.replace(",", "")) > 0 for v in expected), output
    assert row(output, "duplicates / strays") == ["0 / 0"] * runs, output
    assert all(v.startswith("yes") for v in row(output, "exactly once")), output
    assert "every expected DOWN arrived exactly once" in output


@pytest.mark.timeout(180)
def test_demo_small_run_delivers_every_down_once(tmp_path: Path) -> None:
    proc = run_demo(tmp_path, "--sessions", "2000")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert_exactly_once(proc.stdout, runs=1)
    # 2,000 sessions on 2 nodes; the killed one held 1,000 sessions, each watched by
    # 3 guilds and the lobby
    assert row(proc.stdout, "DOWNs expected") == ["4,000"]
    assert "SIGKILL sessions node pid" in proc.stdout
    assert_children_gone(proc.stdout)
    assert len(child_pids(proc.stdout)) == 2


@pytest.mark.timeout(180)
def test_demo_compare_and_plot(tmp_path: Path) -> None:
    """--plot implies the unthrottled comparison run; without matplotlib it still finishes."""
    chart = tmp_path / "chart.png"
    proc = run_demo(tmp_path, "--sessions", "2000", "--nodes", "3", "--plot", str(chart))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert_exactly_once(proc.stdout, runs=2)
    assert "unthrottled" in proc.stdout and "dispatch_mode='unlimited'" in proc.stdout
    assert "not plain Erlang" in proc.stdout
    if importlib.util.find_spec("matplotlib") is not None:
        assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert "pip install 'zenmon[demo]'" in proc.stdout
        assert not chart.exists()
    assert len(child_pids(proc.stdout)) == 6
    assert_children_gone(proc.stdout)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_demo_interrupted_cleans_up(tmp_path: Path, signum: int) -> None:
    """Ctrl-C (SIGINT) or SIGTERM in the middle of the storm: every child is killed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "zenmon", "demo", "--sessions", "20000"],
        cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + DEMO_TIMEOUT
        for line in proc.stdout:
            lines.append(line)
            if "SIGKILL sessions node" in line:
                break
            assert time.monotonic() < deadline, "".join(lines)
        else:
            pytest.fail("the demo ended before the kill:\n" + "".join(lines))
        started = child_pids("".join(lines))
        assert any(demo_node_running(pid) for pid in started), "".join(lines)
        proc.send_signal(signum)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    output = "".join(lines) + rest
    assert proc.returncode == 130, output
    assert "interrupted" in output, output
    assert "cleanup: all" in output, output
    assert_children_gone(output)


def test_cli_help_and_dispatch(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "demo" in text and "bench" in text
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert zenmon.__version__ in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--help"])
    assert exit_info.value.code == 0
    assert "--sessions" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "--help"])
    assert exit_info.value.code == 0
    assert "zenmon bench" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["nonsense"])
    assert exit_info.value.code == 2
    assert cli.main([]) == 2


def test_demo_options_are_checked() -> None:
    with pytest.raises(SystemExit):
        demo.parse_args(["--nodes", "1"])
    with pytest.raises(SystemExit):
        demo.parse_args(["--set", "no_such_setting=1"])
    opts = demo.parse_args(["--plot", "x.png", "--set", "demand_amount=2000"])
    assert opts.compare and opts.settings == {"demand_amount": 2000}


def test_percentile_and_peak_rate() -> None:
    values = sorted(float(v) for v in range(1, 101))
    assert demo.percentile(values, 50) == 50.0
    assert demo.percentile(values, 99) == 99.0
    assert demo.percentile(values, 100) == 100.0
    assert demo.percentile([], 50) == 0.0
    # 1,000 per 0.1 s for 3 s, sampled every 0.1 s
    timeline = [(i / 10, i * 1000) for i in range(31)]
    peak = demo._peak_rate(timeline, 1.0)
    assert peak is not None and abs(peak - 10_000) < 1e-6
    assert demo._peak_rate(timeline[:5], 1.0) is None

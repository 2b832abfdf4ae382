"""``zenmon bench`` records what each figure was measured with, and reports the median
and the worst of ``--repeat K`` runs (never the best).

The runner's arithmetic is checked on made-up scenarios; the command itself runs
in a subprocess at a tiny N (2,000 monitors, 2,000-DOWN storms) with a few
scenarios of each half, local and remote.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import zenmon
from zenmon.tools import runner
from zenmon.tools.bench_remote import FAST, HEARTBEAT
from zenmon.tools.runner import RunContext, Scenario, Setup

N = 2000


# --------------------------------------------------------------------------
# The runner, on made-up scenarios
# --------------------------------------------------------------------------


def test_figure_is_the_median_and_the_worst() -> None:
    fig = runner.figure([3.0, 1.0, 2.0, 10.0, 2.5], "x, s")
    assert fig == {"median": 2.5, "worst": 10.0, "runs": [3.0, 1.0, 2.0, 10.0, 2.5]}
    # rates and multiples are better high: their worst is the lowest
    assert runner.figure([5.0, 1.0, 3.0], "storm drain rate, DOWNs/s")["worst"] == 1.0
    assert runner.figure([5.0, 1.0, 3.0], "vs 10,000/s, x")["worst"] == 1.0
    # a run that measured nothing is the worst run; the median is of the others
    fig = runner.figure([1.0, math.nan, 3.0], "x, s")
    assert fig["median"] == 2.0 and math.isnan(fig["worst"])
    assert runner.figure([4.0], "x, s") == {"median": 4.0, "worst": 4.0, "runs": [4.0]}


class Scripted:
    """A scenario whose figures come from a script, one dict per run and side."""

    def __init__(self, script: dict[str, list[dict[str, float]]]) -> None:
        self.script = {impl: list(runs) for impl, runs in script.items()}
        self.calls: list[str] = []

    def __call__(self, ctx: Any, impl: str) -> dict[str, float]:
        self.calls.append(impl)
        return self.script[impl].pop(0)


def test_run_keeps_every_run_and_reports_median_worst_and_settings() -> None:
    timed = Scripted({
        "zenmon": [{"t, s": 1.0}, {"t, s": 5.0, "DOWNs missing": 2.0}, {"t, s": 2.0}],
        "naive": [{"t, s": 4.0}, {"t, s": 6.0}, {"t, s": 8.0}],
    })
    once = Scripted({"zenmon": [{"B/monitor": 60.0}], "naive": [{"B/monitor": 300.0}]})
    ctx = RunContext(n=N, verbose=False)
    report = runner.run(ctx, [
        Scenario("timed", timed, setup=lambda c: Setup(c.n, {
            "watching": {"dispatch_mode": "adaptive", "heartbeat_interval": 200},
            "remote": {}})),
        Scenario("memory", once, repeatable=False,
                 setup=lambda c: Setup(c.n, {"node": {}}, {"watchers": 10})),
    ], repeat=3)
    # the order of the sides alternates from one round to the next
    assert timed.calls == ["zenmon", "naive", "naive", "zenmon", "zenmon", "naive"]
    row = report.table["timed"]["t, s"]
    assert row["zenmon"] == {"median": 2.0, "worst": 5.0, "runs": [1.0, 5.0, 2.0]}
    assert row["naive"] == {"median": 6.0, "worst": 8.0, "runs": [4.0, 6.0, 8.0]}
    assert row["ratio"] == pytest.approx(3.0)          # of the medians
    # a loss in one run of three is reported, as the worst; runs without one count 0
    lost = report.table["timed"]["DOWNs missing"]["zenmon"]
    assert lost["runs"] == [0.0, 2.0, 0.0] and lost["worst"] == 2.0
    assert report.missing
    assert report.table["memory"]["B/monitor"]["zenmon"]["runs"] == [60.0]

    record = report.settings["timed"]
    # heartbeat_interval=200 is the default: not a change
    assert record["changed"] == {"watching": {"dispatch_mode": "adaptive"}, "remote": {}}
    assert set(record["config"]["remote"]) >= set(runner.RECORDED_SETTINGS)
    assert record["config"]["remote"]["connector_sweep_interval"] == \
        zenmon.Config().connector_sweep_interval
    assert record["n"] == N and record["runs"] == 3 and record["repeat"] == 3
    assert record["python"] == platform.python_version()
    assert record["nproc"] == os.cpu_count()
    assert isinstance(record["load_average_at_start"], float)
    assert report.settings["memory"]["runs"] == 1
    assert report.settings["memory"]["watchers"] == 10

    text = runner.format_table(report.table, report.settings)
    lines = text.splitlines()
    assert "zenmon median" in lines[0] and "zenmon worst" in lines[0]
    assert "naive median" in lines[0] and "naive worst" in lines[0]
    timed_row = next(line for line in lines if line.startswith("timed") and "t, s" in line)
    assert timed_row.split()[-5:] == ["2.00", "5.00", "6.00", "8.00", "3.00x"]
    settings = [line.strip() for line in lines if "settings" in line]
    assert settings == [
        "settings: N=2,000; watching node: dispatch_mode=adaptive; remote node: Config defaults",
        "settings: N=2,000; Config defaults; measured once",
    ]
    # each settings line sits under its own scenario's rows
    assert lines.index(next(line for line in lines if "memory" in line and "B/" in line)) \
        > lines.index(next(line for line in lines if "dispatch_mode=adaptive" in line))


def test_settings_line_lists_only_what_differs() -> None:
    def line(nodes: dict[str, dict[str, Any]], defaults: bool = False) -> str:
        ctx = RunContext(n=1_000_000, verbose=False, defaults=defaults)
        return runner.settings_line(runner.settings_record(Setup(ctx.n, nodes), ctx))

    assert line({"node": {}}) == "settings: N=1,000,000; Config defaults"
    assert line({"node": {"dispatch_mode": "unlimited"}}) == \
        "settings: N=1,000,000; dispatch_mode=unlimited"
    fast = line({"watching": dict(FAST), "remote": dict(FAST)})
    assert fast == ("settings: N=1,000,000; both nodes: dispatch_mode=unlimited, "
                    "connector_sweep_interval=10, connector_chunk_size=100000, "
                    "batcher_sweep_interval=10, batcher_chunk_size=100000")
    assert line({"watching": {}, "remote": {}}, defaults=True) == \
        "settings (--defaults): N=1,000,000; Config defaults"
    mixed = line({"watching": {"dispatch_mode": "adaptive", **HEARTBEAT},
                  "remote": dict(HEARTBEAT)})
    assert mixed == ("settings: N=1,000,000; watching node: dispatch_mode=adaptive, "
                     "heartbeat_interval=100, heartbeat_timeout=500; remote node: "
                     "heartbeat_interval=100, heartbeat_timeout=500")


def test_json_safe_has_no_nan() -> None:
    document = runner.json_safe({"a": [1.0, math.nan], "b": {"c": math.inf}, "d": "x"})
    assert document == {"a": [1.0, None], "b": {"c": None}, "d": "x"}
    json.dumps(document, allow_nan=False)


# --------------------------------------------------------------------------
# The command, at a tiny N
# --------------------------------------------------------------------------


def zenmon_bench(tmp_path: Path, *args: str, timeout: float = 200) -> str:
    # cwd is an empty directory: `python -m` puts it first on sys.path, and the
    # source tree there would shadow the installed zenmon.
    done = subprocess.run([sys.executable, "-m", "zenmon", "bench", "-q", *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=timeout,
                          check=False)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    return done.stdout


def check_figures(figures: dict[str, Any], runs: int) -> None:
    """Every figure of zenmon's side: its runs, their median and their worst."""
    assert figures
    for label, row in figures.items():
        side = row["zenmon"]
        assert len(side["runs"]) == runs, (label, side)
        values = side["runs"]
        if any(v is None for v in values):     # NaN in the JSON: a run measured nothing
            assert side["worst"] is None, (label, side)
            continue
        assert side["median"] == pytest.approx(statistics.median(values)), (label, side)
        worst = min(values) if runner.higher_is_better(label) else max(values)
        assert side["worst"] == pytest.approx(worst), (label, side)


def check_machine(record: dict[str, Any]) -> None:
    assert record["python"] == platform.python_version()
    assert record["nproc"] == os.cpu_count()
    assert isinstance(record["load_average_at_start"], float)


@pytest.mark.timeout(300)
def test_zenmon_bench_writes_settings_median_worst_and_runs(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    text = zenmon_bench(tmp_path, "--quick", "--n", str(N), "--storm-n", str(N),
                        "--repeat", "3", "--json", str(out),
                        "--only", "fan-out", "--only", "memory", "--only", "DOWN storm")
    assert text.count("median and worst of 3 runs") == 2, text     # local, then remote
    assert "zenmon median" in text and "zenmon worst" in text
    local = json.loads(out.read_text())
    remote = json.loads((tmp_path / "figures.remote.json").read_text())
    assert local["repeat"] == 3 and remote["repeat"] == 3
    assert not local["library_defaults"] and not remote["library_defaults"]

    scenarios = local["scenarios"]
    assert set(scenarios) == {"DOWN fan-out", "DOWN fan-out, bulk delivery",
                              "memory per monitor"}, set(scenarios)
    fan_out = scenarios["DOWN fan-out"]
    assert fan_out["settings"]["n"] == N and fan_out["settings"]["runs"] == 3
    assert fan_out["settings"]["changed"] == {"node": {"dispatch_mode": "unlimited"}}
    assert fan_out["settings"]["config"]["node"]["demand_amount"] == \
        zenmon.Config().demand_amount
    check_machine(fan_out["settings"])
    check_figures(fan_out["figures"], 3)
    assert len(fan_out["figures"]["fan-out, ns/DOWN"]["naive"]["runs"]) == 3
    memory = scenarios["memory per monitor"]
    assert memory["settings"]["runs"] == 1        # bytes: measured once
    check_figures(memory["figures"], 1)

    scenarios = remote["scenarios"]
    assert set(scenarios) == {"remote DOWN fan-out", "remote memory",
                              "remote DOWN storm, token_bucket",
                              "remote DOWN storm, adaptive"}, set(scenarios)
    fan_out = scenarios["remote DOWN fan-out"]
    assert fan_out["settings"]["changed"] == {"watching": FAST, "remote": FAST}
    check_machine(fan_out["settings"])
    check_figures(fan_out["figures"], 3)
    storm = scenarios["remote DOWN storm, adaptive"]
    assert storm["settings"]["n"] == N and storm["settings"]["watchers"] == 1
    assert storm["settings"]["changed"] == {"watching": {"dispatch_mode": "adaptive"},
                                            "remote": {}}
    check_figures(storm["figures"], 3)
    assert scenarios["remote DOWN storm, token_bucket"]["settings"]["changed"] == \
        {"watching": {}, "remote": {}}

    # each table carries its settings lines, under the rows they describe
    settings_lines = [line.strip() for line in text.splitlines() if "settings" in line]
    assert "settings: N=2,000; dispatch_mode=unlimited" in settings_lines
    assert "settings: N=2,000; Config defaults; measured once" in settings_lines
    assert ("settings: N=2,000; watching node: dispatch_mode=adaptive; "
            "remote node: Config defaults") in settings_lines
    assert len(settings_lines) == 7, settings_lines


@pytest.mark.timeout(200)
def test_zenmon_bench_defaults_runs_with_the_library_settings(tmp_path: Path) -> None:
    out = tmp_path / "defaults.json"
    text = zenmon_bench(tmp_path, "--defaults", "--n", str(N), "--json", str(out),
                        "--only", "fan-out", timeout=150)
    lines = [line.strip() for line in text.splitlines() if "settings" in line]
    assert lines == ["settings (--defaults): N=2,000; Config defaults"] * 3, lines
    assert "one run" in text
    for document in (json.loads(out.read_text()),
                     json.loads((tmp_path / "defaults.remote.json").read_text())):
        assert document["library_defaults"] is True and document["repeat"] == 1
        for name, scenario in document["scenarios"].items():
            record = scenario["settings"]
            assert record["library_defaults"] is True, name
            assert not any(record["changed"].values()), (name, record["changed"])
            for config in record["config"].values():
                assert config["dispatch_mode"] == "token_bucket", name
            check_figures(scenario["figures"], 1)


@pytest.mark.timeout(200)
def test_zenmon_bench_gil_probe_reports_its_waits(tmp_path: Path) -> None:
    """The GIL-hold scenario (issue 12's figure) runs and reports plausible waits."""
    out = tmp_path / "gil.json"
    zenmon_bench(tmp_path, "--local", "--n", str(N), "--repeat", "2", "--json", str(out),
                 "--only", "GIL hold", timeout=150)
    (scenario,) = json.loads(out.read_text())["scenarios"].values()
    figures = scenario["figures"]
    check_figures(figures, 2)
    longest = figures["longest GIL wait of a 1 ms probe, ms"]["zenmon"]
    p99 = figures["p99 GIL wait of a 1 ms probe, ms"]["zenmon"]
    assert all(0 <= w < 5000 for w in longest["runs"]), longest
    assert all(0 <= a <= b for a, b in zip(p99["runs"], longest["runs"])), (p99, longest)

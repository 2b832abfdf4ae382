"""The pytest-benchmark suites in ``bench/`` run, in a quick mode, so that they cannot rot.

``bench/`` is outside ``testpaths``: nothing else collects it. Here it runs in a
subprocess against the installed build, with 2,000 monitors instead of a million
(``--bench-n``, ``--bench-remote-n``) but with the benchmarks enabled, so the
pedantic rounds, the statistics they read and the closing ratio table all run.
pytest's deprecations are errors: a suite that uses a feature on its way out
fails here first.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
N = 2000


def run_bench_suites(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # cwd is an empty directory: `python -m pytest` puts it first on sys.path, and
    # the source tree there would shadow the installed zenmon.
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(BENCH), "-p", "no:cacheprovider",
         "--rootdir", str(ROOT), "--bench-n", str(N), "--bench-remote-n", str(N),
         "-W", "error::pytest.PytestDeprecationWarning", *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=150, check=False,
    )


def summary_rows(output: str) -> dict[tuple[str, str], list[str]]:
    """The closing table's rows: (scenario, figure) -> [zenmon, naive, ratio] cells."""
    _, sep, table = output.partition("zenmon vs naive (lower is better")
    assert sep, f"no closing ratio table:\n{output[-4000:]}"
    rows = {}
    for line in table.splitlines()[1:]:
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) == 5 and cells[0] != "scenario" and not set(cells[0]) <= {"-"}:
            rows[(cells[0], cells[1])] = cells[2:]
    return rows


@pytest.mark.timeout(180)
def test_bench_suites_run_quick(tmp_path: Path) -> None:
    done = run_bench_suites(tmp_path, "-q")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    counts = dict((word, int(count)) for count, word in
                  re.findall(r"(\d+) (passed|failed|skipped|errors?)", output))
    assert counts.get("passed", 0) >= 18 and "failed" not in counts, counts
    assert "error" not in counts and "errors" not in counts, counts
    assert counts.get("skipped") == 2, counts      # the 10M memory figures, not asked for

    rows = summary_rows(output)
    label = "2k"
    expected = [
        ("a: per call", f"monitor()+demonitor() @{label} live, ns"),
        ("a: per call", f"monitor() @{label} live, ns"),
        ("a: per call", f"demonitor() @{label} live, ns"),
        ("b: bulk monitor", "bulk monitor, ns/monitor"),
        ("c: DOWN fan-out", "fan-out, ns/DOWN"),
        ("d: memory", f"@{label} (rss), B/monitor"),
        ("d: memory", f"@{label} (tracemalloc), B/monitor"),
        ("remote a: subscribe", "subscribe, ns/monitor"),
        ("remote b: DOWN fan-out", "remote fan-out, ns/DOWN"),
    ]
    for key in expected:
        assert key in rows, (key, sorted(rows))
        zenmon, naive, ratio = rows[key]
        # measured, on both sides: a number (not nan, not "-"), and a ratio
        for cell in (zenmon, naive):
            assert re.fullmatch(r"[0-9][0-9,]*(\.[0-9]+)?", cell), (key, rows[key])
            assert float(cell.replace(",", "")) > 0, (key, rows[key])
        assert re.fullmatch(r"[0-9.]+x", ratio), (key, rows[key])


def test_the_summary_parser_sees_a_broken_table() -> None:
    with pytest.raises(AssertionError):
        summary_rows("no table here")
    text = ("=== zenmon vs naive (lower is better; ratio = naive / zenmon) ===\n"
            "scenario     figure    zenmon  naive  naive/zenmon\n"
            "-----------  --------  ------  -----  ------------\n"
            "a: per call  x, ns        nan    300             -\n")
    assert summary_rows(text) == {("a: per call", "x, ns"): ["nan", "300", "-"]}

"""Options, fixtures and the ratio summary for the pytest-benchmark suites in ``bench/``.

Run with ``pytest bench/ --benchmark-only`` (``bench/`` is outside ``testpaths``,
so the default test run does not collect it). Options:

- ``--bench-n N`` (or ``ZENMON_BENCH_N``): targets and monitors, default 1,000,000;
- ``--bench-remote-n N`` (or ``ZENMON_BENCH_REMOTE_N``): remote monitors in
  ``test_bench_remote.py``, default 100,000;
- ``--bench-10m`` (or ``ZENMON_BENCH_10M=1``): also zenmon's bytes per monitor at
  10M (needs several GB of memory).

pytest-benchmark reports the time of one round; the per-call figures (a round is
an inner loop of many calls) and the memory figures go to each benchmark's
``extra_info`` and to the table printed at the end, with ratios naive / zenmon
from this same run.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from zenmon.tools.bench_local import FULL_N, IMPLEMENTATIONS
from zenmon.tools.runner import Row, Table, figure, format_table

REMOTE_N = 100_000
Results = dict[str, dict[str, dict[str, float]]]  # scenario -> label -> impl -> figure
RESULTS_KEY = pytest.StashKey[Results]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("zenmon-bench")
    group.addoption(
        "--bench-n", type=int, default=int(os.environ.get("ZENMON_BENCH_N", FULL_N)),
        help="targets/monitors per benchmark (default 1,000,000; also ZENMON_BENCH_N)",
    )
    group.addoption(
        "--bench-remote-n", type=int,
        default=int(os.environ.get("ZENMON_BENCH_REMOTE_N", REMOTE_N)),
        help="remote monitors per remote benchmark (default 100,000; also "
             "ZENMON_BENCH_REMOTE_N)",
    )
    group.addoption(
        "--bench-10m", action="store_true",
        default=os.environ.get("ZENMON_BENCH_10M") == "1",
        help="also measure zenmon's bytes per monitor at 10M (also ZENMON_BENCH_10M=1)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[RESULTS_KEY] = {}


@pytest.fixture(scope="session")
def bench_n(pytestconfig: pytest.Config) -> int:
    """How many targets and monitors each benchmark uses."""
    return int(pytestconfig.getoption("--bench-n"))


@pytest.fixture(scope="session")
def remote_n(pytestconfig: pytest.Config) -> int:
    """How many remote monitors each remote benchmark uses."""
    return int(pytestconfig.getoption("--bench-remote-n"))


@pytest.fixture(scope="session")
def ten_million(pytestconfig: pytest.Config) -> bool:
    """Whether the 10M memory figure was asked for."""
    return bool(pytestconfig.getoption("--bench-10m"))


@pytest.fixture
def record(pytestconfig: pytest.Config) -> Callable[[str, str, str, float], None]:
    """``record(scenario, label, impl, figure)``: a figure for the closing ratio table."""
    results = pytestconfig.stash[RESULTS_KEY]

    def record(scenario: str, label: str, impl: str, figure: float) -> None:
        results.setdefault(scenario, {}).setdefault(label, {})[impl] = figure

    return record


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    results = config.stash.get(RESULTS_KEY, {})
    if not results:
        return
    table: Table = {}
    for scenario, labels in results.items():
        rows = table.setdefault(scenario, {})
        for label, sides in labels.items():
            row: Row = {impl: figure([sides[impl]], label) if impl in sides else None
                        for impl in IMPLEMENTATIONS}
            zen, naive = sides.get("zenmon"), sides.get("naive")
            row["ratio"] = naive / zen if zen and naive else None
            rows[label] = row
    terminalreporter.write_sep("=", "zenmon vs naive (lower is better; ratio = naive / zenmon)")
    for line in format_table(table).splitlines():
        terminalreporter.write_line(line)

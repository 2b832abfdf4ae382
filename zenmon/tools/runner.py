"""The scenario runner of ``zenmon bench``, shared by its local and remote halves.

A scenario is a function ``fn(ctx, impl) -> {label: figure}`` that measures one
implementation; :func:`run` walks a list of them once per implementation and per
repeat (alternating the order), keeps every run's figure, and pairs the two sides
label by label into a :data:`Table` of the *median* and the *worst* of the K runs
(the raw K values stay in it). :func:`format_table` prints it, with one
``settings:`` line under each scenario: what its zenmon nodes were given that
differs from :class:`zenmon.Config`'s defaults, and N. Figures are *lower is
better* except rates and multiples (:func:`higher_is_better`); ratio = naive /
zenmon, of the medians. pyzmq's ``perf/perf.py`` is the model.
"""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from zenmon.tools.stats import environment, load_average

__all__ = ["IMPLEMENTATIONS", "RECORDED_SETTINGS", "Figure", "Report", "Row", "RunContext",
           "Scenario", "ScenarioFunction", "Setup", "Table", "figure", "format_table",
           "higher_is_better", "json_safe", "run", "settings_line", "settings_record"]

IMPLEMENTATIONS = ("zenmon", "naive")
#: Counts of lost messages: a run that lost none has no such figure, and counts as 0.
MISSING_LABELS = frozenset({"DOWNs missing", "subscriptions missing"})
#: The Config fields a figure may depend on, recorded in full for each zenmon node.
RECORDED_SETTINGS = (
    "dispatch_mode", "demand_interval", "demand_amount",
    "adaptive_backlog", "adaptive_interval", "adaptive_summary_size",
    "adaptive_summary_interval",
    "connector_sweep_interval", "connector_chunk_size",
    "batcher_sweep_interval", "batcher_chunk_size",
    "heartbeat_interval", "heartbeat_timeout", "pause_timeout",
)


@dataclass
class RunContext:
    """What one run shares: its size and options. Subclasses keep state between scenarios.

    ``defaults``: run every scenario with the library's default settings (only the
    setting a scenario is about, such as the storms' ``dispatch_mode``, is kept).
    """

    n: int
    quick: bool = False
    verbose: bool = True
    defaults: bool = False

    def log(self, text: str) -> None:
        """A progress line on stderr (unless quiet)."""
        if self.verbose:
            print(f"  .. {text}", file=sys.stderr, flush=True)

    def drop(self) -> None:
        """Free what the scenarios kept for each other (called between implementations)."""


ScenarioFunction = Callable[[Any, str], dict[str, float]]


@dataclass(frozen=True)
class Setup:
    """What a scenario runs with, for the record.

    ``nodes`` maps each zenmon node's role (``"node"``; ``"watching"`` and
    ``"remote"``) to the settings it is given (``zenmon.Node(**settings)``, or
    ``configure()`` before the timing): everything else is Config's default.
    ``details``: the rest that shapes the figures (watchers, processes, ...).
    """

    n: int
    nodes: Mapping[str, Mapping[str, Any]]
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    """A named scenario: ``run(ctx, impl)`` measures one implementation;
    ``setup(ctx)`` says what it runs with (see :class:`Setup`)."""

    name: str
    run: ScenarioFunction
    implementations: tuple[str, ...] = IMPLEMENTATIONS
    # Timing figures are repeated under --repeat; deterministic ones (bytes) are
    # measured once.
    repeatable: bool = True
    setup: Callable[[Any], Setup] | None = None


#: ``{"median": x, "worst": y, "runs": [every run's value, in order]}``
Figure = dict[str, Any]
#: ``{"zenmon": Figure | None, "naive": Figure | None, "ratio": naive / zenmon medians}``
Row = dict[str, Any]
Table = dict[str, dict[str, Row]]


@dataclass
class Report:
    """What :func:`run` measured: the table, each scenario's settings record, K."""

    table: Table
    settings: dict[str, dict[str, Any]]
    repeat: int

    def scenarios(self) -> dict[str, dict[str, Any]]:
        """``{scenario: {"settings": record, "figures": {label: Row}}}`` (for JSON)."""
        return {name: {"settings": self.settings.get(name), "figures": rows}
                for name, rows in self.table.items()}

    @property
    def missing(self) -> bool:
        """Whether any run lost DOWNs or subscriptions."""
        return any(label in MISSING_LABELS for rows in self.table.values() for label in rows)


def higher_is_better(label: str) -> bool:
    """Rates (``..., DOWNs/s``) and multiples (``..., x``) are better high; the rest low."""
    return label.endswith("/s") or label.endswith(", x")


def figure(values: Sequence[float], label: str = "") -> Figure:
    """The median and the worst of ``values`` (one figure's runs), and the runs.

    A run that produced no number (NaN) is left out of the median and makes the
    worst NaN: a failed measurement is the worst one.
    """
    runs = [float(v) for v in values]
    finite = [v for v in runs if not math.isnan(v)]
    median = statistics.median(finite) if finite else math.nan
    if len(finite) < len(runs) or not finite:
        worst = math.nan
    else:
        worst = min(finite) if higher_is_better(label) else max(finite)
    return {"median": median, "worst": worst, "runs": runs}


def _ratio(zenmon: Figure | None, naive: Figure | None) -> float | None:
    z = zenmon["median"] if zenmon else None
    b = naive["median"] if naive else None
    if not z or not b or math.isnan(z) or math.isnan(b):
        return None
    return b / z


def settings_record(setup: Setup, ctx: Any = None) -> dict[str, Any]:
    """A scenario's settings for the JSON: N, what differs from Config's defaults per
    node (``changed``), the recorded Config fields in full per node (``config``), the
    details, and the machine (Python, CPUs; the load average is added by :func:`run`)."""
    import zenmon

    defaults = zenmon.Config()
    config: dict[str, dict[str, Any]] = {}
    changed: dict[str, dict[str, Any]] = {}
    for role, given in setup.nodes.items():
        effective = defaults.replace(**dict(given))
        names = list(RECORDED_SETTINGS) + sorted(set(given) - set(RECORDED_SETTINGS))
        config[role] = {name: getattr(effective, name) for name in names}
        changed[role] = {name: getattr(effective, name) for name in names
                         if getattr(effective, name) != getattr(defaults, name)}
    env = environment()
    return {
        "n": setup.n,
        **dict(setup.details),
        "zenmon_nodes": len(config),
        "library_defaults": bool(getattr(ctx, "defaults", False)),
        "changed": changed,
        "config": config,
        "python": env["python"],
        "nproc": env["cpus"],
    }


def settings_line(record: Mapping[str, Any]) -> str:
    """``settings: N=...; <role> node: name=value, ...`` with only what differs from
    Config's defaults (``Config defaults`` where nothing does)."""
    head = "settings (--defaults)" if record.get("library_defaults") else "settings"
    parts = [f"N={record['n']:,}"]
    if "changed" not in record:
        return f"{head}: " + "; ".join([*parts, "not recorded"])
    changed: Mapping[str, Mapping[str, Any]] = record.get("changed", {})

    def listed(diff: Mapping[str, Any]) -> str:
        return ", ".join(f"{name}={value}" for name, value in diff.items()) or "Config defaults"

    diffs = list(changed.values())
    if not any(diffs):
        parts.append("Config defaults")
    elif len(diffs) > 1 and all(diff == diffs[0] for diff in diffs):
        both = "both nodes" if len(diffs) == 2 else f"all {len(diffs)} nodes"
        parts.append(f"{both}: {listed(diffs[0])}")
    else:
        for role, diff in changed.items():
            parts.append(f"{role} node: {listed(diff)}" if role != "node" else listed(diff))
    if record.get("runs") == 1 and record.get("repeat", 1) > 1:
        parts.append("measured once")
    return f"{head}: " + "; ".join(parts)


def run(
    ctx: RunContext,
    scenarios: Sequence[Scenario],
    implementations: Sequence[str] = IMPLEMENTATIONS,
    repeat: int = 1,
) -> Report:
    """Run ``scenarios`` for each implementation in turn, ``repeat`` times with the
    order of the implementations alternating (on a shared machine the load drifts,
    and alternating spreads the drift over both sides); non-repeatable scenarios run
    once. Every figure is reported as the median and the worst of its runs, with
    the runs themselves: ``{scenario: {label: {"zenmon": Figure, "naive": Figure,
    "ratio": naive median / zenmon median}}}``."""
    scenarios = list(scenarios)
    repeat = max(1, repeat)
    raw: dict[str, dict[str, dict[str, list[float]]]] = {}
    runs_done: dict[str, dict[str, int]] = {}
    records: dict[str, dict[str, Any]] = {}
    for round_ in range(repeat):
        order = list(implementations) if round_ % 2 == 0 else list(reversed(implementations))
        for impl in order:
            for entry in scenarios:
                if impl not in entry.implementations or (round_ and not entry.repeatable):
                    continue
                if entry.name not in records:
                    record: dict[str, Any] = (settings_record(entry.setup(ctx), ctx)
                                              if entry.setup else {"n": ctx.n})
                    record["load_average_at_start"] = load_average()
                    records[entry.name] = record
                figures = entry.run(ctx, impl)
                done = runs_done.setdefault(entry.name, {})
                count = done[impl] = done.get(impl, 0) + 1
                values = raw.setdefault(entry.name, {}).setdefault(impl, {})
                for label, value in figures.items():
                    if label in MISSING_LABELS and label not in values:
                        values[label] = [0.0] * (count - 1)
                    values.setdefault(label, []).append(value)
                for label in MISSING_LABELS & (values.keys() - figures.keys()):
                    values[label].append(0.0)
            ctx.drop()
    table: Table = {}
    for entry in scenarios:
        name = entry.name
        sides = raw.get(name, {})
        labels: list[str] = []
        for impl in implementations:
            for label in sides.get(impl, {}):
                if label not in labels:
                    labels.append(label)
        rows: dict[str, Row] = {}
        for label in labels:
            row: Row = {}
            for impl in IMPLEMENTATIONS:
                runs = sides.get(impl, {}).get(label)
                row[impl] = figure(runs, label) if runs else None
            row["ratio"] = _ratio(row.get("zenmon"), row.get("naive"))
            rows[label] = row
        if name in raw:
            table[name] = rows
    for name, record in records.items():
        record["repeat"] = repeat
        record["runs"] = max(runs_done.get(name, {}).values(), default=0)
    return Report(table, {name: records[name] for name in table if name in records}, repeat)


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as None (strict JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.4f}"


def format_table(table: Table, settings: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """The table: scenario, figure, then per side the median (and the worst, when a
    figure has more than one run), and naive/zenmon of the medians; under each
    scenario its ``settings:`` line when ``settings`` has a record for it."""
    settings = settings or {}
    repeated = any(len(side["runs"]) > 1 for rows in table.values() for row in rows.values()
                   for side in (row.get("zenmon"), row.get("naive")) if side)
    sides = []
    for impl in IMPLEMENTATIONS:
        sides += [(impl, "median", f"{impl} median"), (impl, "worst", f"{impl} worst")] \
            if repeated else [(impl, "median", impl)]
    header = ("scenario", "figure", *(title for _, _, title in sides), "naive/zenmon")
    lines: list[tuple[str, ...] | str] = [header]
    for name, rows in table.items():
        for label, row in rows.items():
            ratio = row.get("ratio")
            cells = [_fmt(row[impl][key]) if row.get(impl) else "-" for impl, key, _ in sides]
            lines.append((name, label, *cells, "-" if ratio is None else f"{ratio:.2f}x"))
        if name in settings:
            lines.append("    " + settings_line(settings[name]))
    cells_only = [line for line in lines if isinstance(line, tuple)]
    widths = [max(len(line[i]) for line in cells_only) for i in range(len(header))]
    out = []
    for i, line in enumerate(lines):
        if isinstance(line, str):
            out.append(line)
            continue
        cells = [line[0].ljust(widths[0]), line[1].ljust(widths[1])]
        cells += [cell.rjust(width) for cell, width in zip(line[2:], widths[2:])]
        out.append("  ".join(cells))
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)

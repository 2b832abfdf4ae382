"""The scenario runner of ``zenmon bench``, shared by its local and remote halves.

A scenario is a function ``fn(ctx, impl) -> {label: figure}`` that measures one
implementation; :func:`run` walks a list of them once per implementation (and per
repeat, alternating the order), keeps each figure's best, and pairs the two sides
label by label into a :data:`Table` that :func:`format_table` prints. Every figure
is *lower is better*; ratio = naive / zenmon. pyzmq's ``perf/perf.py`` is the model.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["IMPLEMENTATIONS", "RunContext", "Scenario", "ScenarioFunction", "Table",
           "format_table", "run"]

IMPLEMENTATIONS = ("zenmon", "naive")
WORST_KEPT = frozenset({"DOWNs missing"})  # across repeats, keep the worst of these


@dataclass
class RunContext:
    """What one run shares: its size and options. Subclasses keep state between scenarios."""

    n: int
    quick: bool = False
    verbose: bool = True

    def log(self, text: str) -> None:
        """A progress line on stderr (unless quiet)."""
        if self.verbose:
            print(f"  .. {text}", file=sys.stderr, flush=True)

    def drop(self) -> None:
        """Free what the scenarios kept for each other (called between implementations)."""


ScenarioFunction = Callable[[Any, str], dict[str, float]]


@dataclass(frozen=True)
class Scenario:
    """A named scenario: ``run(ctx, impl)`` measures one implementation."""

    name: str
    run: ScenarioFunction
    implementations: tuple[str, ...] = IMPLEMENTATIONS
    # Timing figures are repeated under --repeat (best kept); deterministic
    # ones (bytes) are measured once.
    repeatable: bool = True


Table = dict[str, dict[str, dict[str, float | None]]]


def run(
    ctx: RunContext,
    scenarios: Sequence[Scenario],
    implementations: Sequence[str] = IMPLEMENTATIONS,
    repeat: int = 1,
) -> Table:
    """Run ``scenarios`` for each implementation in turn, ``repeat`` times with the
    order of the implementations alternating, keeping each figure's best (lowest)
    value: on a shared machine the load drifts, and alternating spreads the drift
    over both sides. Returns
    ``{scenario: {label: {"zenmon": x, "naive": y, "ratio": y / x}}}``."""
    scenarios = list(scenarios)
    raw: dict[str, dict[str, dict[str, float]]] = {}
    for round_ in range(max(1, repeat)):
        order = list(implementations) if round_ % 2 == 0 else list(reversed(implementations))
        for impl in order:
            for entry in scenarios:
                if impl not in entry.implementations or (round_ and not entry.repeatable):
                    continue
                figures = entry.run(ctx, impl)
                best = raw.setdefault(entry.name, {}).setdefault(impl, {})
                for label, value in figures.items():
                    if label in best:
                        keep = max if label in WORST_KEPT else min
                        best[label] = keep(best[label], value)
                    else:
                        best[label] = value
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
        rows: dict[str, dict[str, float | None]] = {}
        for label in labels:
            row: dict[str, float | None] = {
                impl: sides.get(impl, {}).get(label) for impl in IMPLEMENTATIONS
            }
            z, b = row.get("zenmon"), row.get("naive")
            row["ratio"] = (b / z) if (z and b) else None
            rows[label] = row
        table[name] = rows
    return table


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.4f}"


def format_table(table: Table) -> str:
    """The table: scenario, figure, zenmon, naive, naive/zenmon."""
    header = ("scenario", "figure", "zenmon", "naive", "naive/zenmon")
    lines = [header]
    for name, rows in table.items():
        for label, row in rows.items():
            ratio = row.get("ratio")
            lines.append((
                name,
                label,
                _fmt(row.get("zenmon")),
                _fmt(row.get("naive")),
                "-" if ratio is None else f"{ratio:.2f}x",
            ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for i, line in enumerate(lines):
        cells = [line[0].ljust(widths[0]), line[1].ljust(widths[1])]
        cells += [cell.rjust(width) for cell, width in zip(line[2:], widths[2:])]
        out.append("  ".join(cells))
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)

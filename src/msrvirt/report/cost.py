"""Render cost estimates and exit-cost figures: rich tables, the JSON form, the sweep plot.

Rendering only: every number comes from msrvirt.cost.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table

from msrvirt.arch.nested import MERGE_LISTS
from msrvirt.cost.constants import ExitCosts, Figure
from msrvirt.cost.model import PolicyCost
from msrvirt.cost.nested import NestedCost
from msrvirt.cost.workload import Workload


def number(x: float) -> str:
    """A rate or a percentage, readable from 1e-8 to 1e6: '0', '0.000556', '4.33', '100,000'."""
    if x == 0:
        return "0"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def _cpuid(shstk: bool) -> str:
    return "FRED+SHSTK" if shstk else "FRED only"


def cost_table(costs: Sequence[PolicyCost]) -> Table:
    """One row per FRED MSR, an exits/s and a CPU % column per policy, and a totals row.

    The costs must be for one workload (they share the MSR rows).
    """
    first = costs[0]
    table = Table(
        title=f"workload {first.workload}: {number(first.context_switches_per_s)} guest context"
              f" switches/s, guest {_cpuid(first.guest_shstk)}; guest FRED MSR accesses that"
              " exit, per second, and their share of one CPU",
        title_justify="left")
    table.add_column("MSR", no_wrap=True)
    table.add_column("index", justify="right", no_wrap=True)
    for c in costs:
        table.add_column(f"{c.policy}\nexits/s", justify="right", no_wrap=True)
        table.add_column(f"{c.policy}\nCPU %", justify="right", no_wrap=True)
    for i, row in enumerate(first.rows):
        cells = [row.name, f"{row.msr:#x}"]
        for c in costs:
            cells += [number(c.rows[i].exits_per_s), number(c.rows[i].cpu_percent)]
        table.add_row(*cells)
    totals = ["total", ""]
    for c in costs:
        totals += [number(c.exits_per_s), number(c.cpu_percent)]
    table.add_section()
    table.add_row(*totals)
    return table


def nested_cost_table(costs: Sequence[NestedCost]) -> Table:
    """One row per FRED MSR: L2's writes/s, then per merge list the outcome of a write, the
    exits to L0 per second (reflected ones in parentheses) and their share of one CPU."""
    first = costs[0]
    table = Table(
        title=f"workload {first.workload} in L2 ({_cpuid(first.guest_shstk)}) under L1"
              f" {first.l1}, L0 {first.l0_policy}: {number(first.context_switches_per_s)} L2"
              " context switches/s; L2's FRED MSR writes per merge list, the exits to L0 per"
              " second (reflected to L1) and their share of one CPU", title_justify="left")
    table.add_column("MSR", no_wrap=True)
    table.add_column("L2\nwrites/s", justify="right", no_wrap=True)
    for c in costs:
        table.add_column(f"{c.merge}\nwrite", no_wrap=True)
        table.add_column(f"{c.merge}\nexits/s", justify="right", no_wrap=True)
        table.add_column(f"{c.merge}\nCPU %", justify="right", no_wrap=True)
    for i, row in enumerate(first.rows):
        cells = [row.name, number(row.writes_per_s)]
        for c in costs:
            r = c.rows[i]
            cells += [r.outcome.value, _exits(r.l0_exits_per_s, r.reflected_per_s),
                      number(r.cpu_percent)]
        table.add_row(*cells)
    totals = ["total", number(sum(r.writes_per_s for r in first.rows))]
    for c in costs:
        totals += ["", _exits(c.l0_exits_per_s, c.reflected_per_s), number(c.cpu_percent)]
    table.add_section()
    table.add_row(*totals)
    return table


def _exits(exits: float, reflected: float) -> str:
    return number(exits) + (f" ({number(reflected)})" if reflected else "")


def nested_cost_json(costs: Sequence[NestedCost], costs_used: ExitCosts, round_trip: Figure, *,
                     workload: Workload) -> dict[str, Any]:
    """The JSON object of `msrvirt cost --nested --json` (schema: docs/cost.md)."""
    first = costs[0]
    return {
        "workload": workload_json(workload),
        "costs": costs_used.to_obj(),
        "l1_round_trip_cycles": round_trip.to_obj(),
        "nested": {"l0_policy": first.l0_policy, "l1": first.l1,
                   "l2_guest_shstk": first.guest_shstk},
        "merges": [{
            "merge": c.merge, "description": MERGE_LISTS[c.merge].description,
            "l0_exits_per_s": c.l0_exits_per_s, "reflected_per_s": c.reflected_per_s,
            "cpu_percent": c.cpu_percent,
            "rows": [{"index": r.msr, "name": r.name, "writes_per_s": r.writes_per_s,
                      "outcome": r.outcome.value, "l0_exits_per_s": r.l0_exits_per_s,
                      "reflected_per_s": r.reflected_per_s, "cpu_percent": r.cpu_percent,
                      "exits_by_event": dict(r.exits_by_event)} for r in c.rows],
        } for c in costs],
    }


def figures_table(costs: ExitCosts) -> Table:
    """The exit-cost figures, each marked measured or default, with its source."""
    table = Table(title=f"exit costs: {costs.host}", title_justify="left")
    table.add_column("figure", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("unit", no_wrap=True)
    table.add_column("", no_wrap=True)
    table.add_column("source")
    for name, f in costs.figures():
        value = f"{f.value:,.0f}" if f.value >= 100 else f"{f.value:.4g}"
        table.add_row(name, value, f.unit, "measured" if f.measured else "default",
                      f.source)
    return table


def costs_line(costs: ExitCosts) -> str:
    """One line: what an exit costs in this estimate, and whether it was measured."""
    def mark(measured: bool) -> str:
        return "measured" if measured else "default"

    k, g = costs.in_kernel_exit_cycles, costs.cpu_ghz
    return (f"cost per exit: {number(k.value)} cycles ({mark(k.measured)}) at {g.value:.4g} GHz"
            f" ({mark(g.measured)}); {costs.host}")


def workload_json(w: Workload) -> dict[str, Any]:
    """A workload in its file form."""
    return {"name": w.name, "description": w.description, "guest_shstk": w.guest_shstk,
            "rates": {name: {"per_second": r.per_second, "source": r.source}
                      for name, r in w.rates()}}


def policy_json(c: PolicyCost) -> dict[str, Any]:
    return {
        "policy": c.policy, "design": c.design, "workload": c.workload,
        "guest_shstk": c.guest_shstk, "context_switches_per_s": c.context_switches_per_s,
        "exits_per_s": c.exits_per_s, "cpu_percent": c.cpu_percent,
        "rows": [{"index": r.msr, "name": r.name, "exits_per_s": r.exits_per_s,
                  "emulations_per_s": r.emulations_per_s, "direct_per_s": r.direct_per_s,
                  "cpu_percent": r.cpu_percent, "exits_by_event": dict(r.exits_by_event)}
                 for r in c.rows],
    }


def cost_json(costs: Sequence[PolicyCost], costs_used: ExitCosts, *,
              workload: Workload | None = None) -> dict[str, Any]:
    """The JSON object of `msrvirt cost --json` (schema: docs/cost.md)."""
    out: dict[str, Any] = {}
    if workload is not None:
        out["workload"] = workload_json(workload)
    out["costs"] = costs_used.to_obj()
    out["policies"] = [policy_json(c) for c in costs]
    return out


_STYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "x")


def sweep_plot_png(sweep_result: Mapping[str, Sequence[PolicyCost]], rates: Sequence[float]) -> bytes:
    """PNG of FRED MSR exits/s and CPU % against the guest context-switch rate, a line per policy."""
    # Imported here: matplotlib takes longer to import than `msrvirt cost` takes to run.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(10, 4.2), layout="constrained")
    FigureCanvasAgg(fig)  # the Agg canvas: no display, no pyplot state
    exits_ax, cpu_ax = fig.subplots(1, 2)
    workload = ""
    for i, (policy, points) in enumerate(sweep_result.items()):
        style = {"linestyle": _STYLES[i % len(_STYLES)], "marker": _MARKERS[i % len(_MARKERS)],
                 "markersize": 4, "label": policy}
        exits_ax.plot(rates, [p.exits_per_s for p in points], **style)
        cpu_ax.plot(rates, [p.cpu_percent for p in points], **style)
        workload = points[0].workload if points else workload
    for ax, what in ((exits_ax, "FRED MSR VM exits per second"), (cpu_ax, "CPU % of one CPU")):
        ax.set_xlabel("guest context switches per second")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:g}k" if x else "0"))
        ax.set_ylabel(what)
        ax.grid(True, alpha=0.3)
        ax.legend()
    exits_ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:,.0f}"))
    fig.suptitle(f"Cost of the FRED MSR intercepts, workload {workload}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()

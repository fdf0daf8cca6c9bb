"""`msrvirt cost`: VM exits and CPU time of each FRED intercept policy under a workload.

Counts come from the checker's machine (one unit of each workload event driven through
it, scaled by the workload's rates); CPU time uses the built-in exit costs or a
`msrvirt calibrate` output file (--costs).  docs/cost.md has the model and the JSON form.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from msrvirt.cli import InputPath, OutputPath
from msrvirt.cli.options import print_json
from msrvirt.cost.constants import DEFAULT_COSTS, ExitCosts
from msrvirt.cost.model import COST_DESIGNS, COST_POLICIES, design_for, estimate, sweep
from msrvirt.cost.workload import DEFAULT_WORKLOAD, WORKLOADS, workload
from msrvirt.dataio import display_path, load
from msrvirt.errors import UsageError
from msrvirt.output import write_output
from msrvirt.report.cost import cost_json, cost_table, costs_line, sweep_plot_png
from msrvirt.report.tables import console

PLOT_POINTS = 21
PLOT_MAX_RATE = 200_000.0  # the plot's x axis ends here, or at twice the workload's rate


def register(sub: Any) -> None:
    p = sub.add_parser("cost", help="VM exits and CPU time of each intercept policy under a"
                       " workload", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", default=DEFAULT_WORKLOAD, metavar="NAME|FILE", type=InputPath,
                   help=f"workload profile: {', '.join(WORKLOADS)}, or a JSON/TOML file"
                   " (default %(default)s)")
    p.add_argument("--policy", action="extend", nargs="+", metavar="NAME",
                   help=f"policies to cost, repeatable or comma-separated (default: all of"
                   f" {', '.join(COST_POLICIES)})")
    p.add_argument("--context-switches", type=float, metavar="N",
                   help="guest context switches per second instead of the workload's")
    p.add_argument("--costs", metavar="FILE", type=InputPath,
                   help="exit costs from `msrvirt calibrate --out FILE` (default: built-in)")
    p.add_argument("--plot", metavar="FILE.png", type=OutputPath,
                   help="write a PNG of exits/s and CPU %% against the context-switch rate")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)


def _policies(given: list[str] | None) -> list[str]:
    if not given:
        return list(COST_POLICIES)
    names = [n.strip() for item in given for n in item.split(",") if n.strip()]
    if not names:
        raise UsageError(f"--policy must name at least one policy, not {' '.join(given)!r}")
    for name in names:
        design_for(name)  # one line naming the policy if it cannot be costed
    return list(dict.fromkeys(names))


def load_costs(path: str | None) -> ExitCosts:
    """The built-in exit costs, or those of a calibrate output file."""
    if path is None:
        return DEFAULT_COSTS
    return load(path, lambda obj: ExitCosts.from_obj(obj, origin=display_path(path)))


def plot_rates(current: float) -> list[float]:
    """Evenly spaced context-switch rates from 0 to 200,000/s (or twice ``current``)."""
    top = max(PLOT_MAX_RATE, 2 * current)
    return [top * i / (PLOT_POINTS - 1) for i in range(PLOT_POINTS)]


def run(args: argparse.Namespace) -> int:
    w = workload(args.workload)
    if args.context_switches is not None:
        n = args.context_switches
        if not (math.isfinite(n) and n >= 0):
            raise UsageError(f"--context-switches must be a number >= 0, not {n:g}")
        w = w.with_context_switches(n)
    policies = _policies(args.policy)
    costs = load_costs(args.costs)
    results = [estimate(w, p, costs) for p in policies]
    if args.plot:
        rates = plot_rates(w.guest_context_switches.per_second)
        write_output(args.plot, sweep_plot_png(sweep(w, policies, rates, costs), rates))
    if args.json:
        obj = cost_json(results, costs, workload=w)
        if args.plot:
            obj["plot"] = args.plot
        print_json(obj)
        return 0
    out = console()
    out.print(cost_table(results))
    out.print(costs_line(costs))
    out.print("counts: guest accesses driven through the checker's machine, designs "
              + ", ".join(f"{p}={COST_DESIGNS[p]}" for p in policies)
              + "; RSP2-3 and SSP2-3 follow the model's RSP1 and SSP1 (docs/cost.md)")
    if args.plot:
        out.print(f"wrote {args.plot}")
    return 0

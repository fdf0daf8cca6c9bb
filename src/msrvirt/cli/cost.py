"""`msrvirt cost`: VM exits and CPU time of each FRED intercept policy under a workload.

Counts come from the checker's machine (one unit of each workload event driven through
it, scaled by the workload's rates); CPU time uses the built-in exit costs or a
`msrvirt calibrate` output file (--costs).  With --nested the workload runs in L2: its
FRED MSR writes are decided by the nested model under each merge list (--merge), each
exit costed as an exit to L0 plus, when reflected, the round trip through L1.
docs/cost.md has the model and the JSON form.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from msrvirt.arch.nested import MERGE_LISTS, merge_list
from msrvirt.cli import InputPath, OutputPath
from msrvirt.cli.nested import load_l1
from msrvirt.cli.options import print_json
from msrvirt.cost.constants import DEFAULT_COSTS, L1_ROUND_TRIP, ExitCosts
from msrvirt.cost.model import COST_DESIGNS, COST_POLICIES, design_for, estimate, sweep
from msrvirt.cost.nested import DEFAULT_L0_POLICY, estimate_nested, kvm_nested
from msrvirt.cost.workload import DEFAULT_WORKLOAD, WORKLOADS, Workload, workload
from msrvirt.dataio import display_path, load
from msrvirt.errors import UsageError
from msrvirt.machine.nested import l0_scenario
from msrvirt.output import write_output
from msrvirt.policy.nested import Nested
from msrvirt.policy.policies import policy
from msrvirt.report.cost import (
    cost_json,
    cost_table,
    costs_line,
    nested_cost_json,
    nested_cost_table,
    sweep_plot_png,
)
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
    p.add_argument("--nested", nargs="?", const="kvm", metavar="L1", type=InputPath,
                   help="the workload runs in L2 under L1: kvm[:POLICY] (the default),"
                   " intercept-all, no-bitmaps or an L1 bitmap file; --policy is then L0's"
                   f" (default {DEFAULT_L0_POLICY})")
    p.add_argument("--merge", action="extend", nargs="+", metavar="LIST",
                   help=f"with --nested: L0's merge lists, repeatable or comma-separated"
                   f" (default: all of {', '.join(MERGE_LISTS)})")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)


def _policies(given: list[str] | None) -> list[str]:
    names = _names(given, "--policy")
    for name in names:
        design_for(name)  # one line naming the policy if it cannot be costed
    return names or list(COST_POLICIES)


def load_costs(path: str | None) -> ExitCosts:
    """The built-in exit costs, or those of a calibrate output file."""
    if path is None:
        return DEFAULT_COSTS
    return load(path, lambda obj: ExitCosts.from_obj(obj, origin=display_path(path)))


def plot_rates(current: float) -> list[float]:
    """Evenly spaced context-switch rates from 0 to 200,000/s (or twice ``current``)."""
    top = max(PLOT_MAX_RATE, 2 * current)
    return [top * i / (PLOT_POINTS - 1) for i in range(PLOT_POINTS)]


def _names(given: list[str] | None, option: str) -> list[str]:
    """The names of a repeatable, comma-separated option; given but empty is an error."""
    names = list(dict.fromkeys(n.strip() for item in given or () for n in item.split(",")
                               if n.strip()))
    if given and not names:
        raise UsageError(f"{option} must name at least one, not {' '.join(given)!r}")
    return names


def _nested(args: argparse.Namespace, w: Workload) -> list[Nested]:
    """The nested settings to cost: L1 from --nested, L0's policy, one per merge list."""
    if args.plot:
        raise UsageError("--plot draws the single-level policies, not --nested")
    l0_names = _names(args.policy, "--policy")
    if len(l0_names) > 1:
        raise UsageError(f"with --nested, --policy names L0's one policy, not {', '.join(l0_names)}")
    l0_policy = l0_names[0] if l0_names else DEFAULT_L0_POLICY
    merges = [merge_list(name) for name in _names(args.merge, "--merge") or list(MERGE_LISTS)]
    kind, _, l1_policy = args.nested.partition(":")
    if kind == "kvm":
        return [kvm_nested(w, m, l1_policy or l0_policy, l0_policy) for m in merges]
    s = l0_scenario(policy(l0_policy))
    l1 = load_l1(args.nested, s, None)
    return [Nested(l0=s, l1=l1, merge=m) for m in merges]


def run(args: argparse.Namespace) -> int:
    w = workload(args.workload)
    if args.context_switches is not None:
        n = args.context_switches
        if not (math.isfinite(n) and n >= 0):
            raise UsageError(f"--context-switches must be a number >= 0, not {n:g}")
        w = w.with_context_switches(n)
    costs = load_costs(args.costs)
    if args.nested is not None:
        return _run_nested(args, w, costs)
    if args.merge:
        raise UsageError("--merge needs --nested")
    policies = _policies(args.policy)
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


def _run_nested(args: argparse.Namespace, w: Workload, costs: ExitCosts) -> int:
    results = [estimate_nested(w, n, costs) for n in _nested(args, w)]
    if args.json:
        print_json(nested_cost_json(results, costs, L1_ROUND_TRIP, workload=w))
        return 0
    out = console()
    out.print(nested_cost_table(results))
    out.print(costs_line(costs))
    out.print(f"a reflected exit adds the round trip through L1: {L1_ROUND_TRIP.value:,.0f}"
              f" cycles ({'measured' if L1_ROUND_TRIP.measured else 'default'});"
              " outcomes from the nested model (docs/nested.md, docs/cost.md)")
    return 0

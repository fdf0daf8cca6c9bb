"""`msrvirt explain`: every MSR's read and write decision, with the reason."""

from __future__ import annotations

import argparse
from typing import Any

from msrvirt.arch.kvm import Backend
from msrvirt.arch.msrs import MSRS, Family, display_name, resolve_index
from msrvirt.cli import nested
from msrvirt.cli.options import add_scenario_options, print_json, scenario_from_args
from msrvirt.policy.decide import explain_msr
from msrvirt.policy.intercepts import compute_intercepts
from msrvirt.policy.policies import policy
from msrvirt.policy.scenario import Scenario
from msrvirt.report.jsonout import decision_json, scenario_json
from msrvirt.report.tables import console, explain_table


def register(sub: Any) -> None:
    p = sub.add_parser("explain", help="intercept decision and outcome of each MSR access",
                       description=__doc__)
    add_scenario_options(p)
    nested.add_nested_options(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--msr", metavar="NAME[,NAME...]",
                       help="MSRs to explain (names or indices)")
    which.add_argument("--all", action="store_true", help="every MSR in msrvirt's table")
    p.add_argument("--json", action="store_true", help="print one JSON object (docs/json.md)")
    p.set_defaults(run=run)


_FRED_AND_CET = frozenset(m.index for m in MSRS if m.family in (Family.FRED, Family.CET))


def default_msrs(s: Scenario) -> list[int]:
    """The FRED and CET MSRs and the upstream passthrough set of the host's backend."""
    upstream = policy("svm-upstream" if s.host.backend is Backend.SVM else "upstream")
    return sorted(_FRED_AND_CET | upstream.touched | s.policy.touched)


def select_msrs(args: argparse.Namespace, s: Scenario) -> list[int]:
    if args.all:
        return [m.index for m in MSRS]
    if args.msr:
        return list(dict.fromkeys(resolve_index(t) for t in args.msr.split(",") if t.strip()))
    return default_msrs(s)


def run(args: argparse.Namespace) -> int:
    s = scenario_from_args(args)
    n = nested.nested_from_args(args, s)
    if n is not None:
        return nested.run_explain(args, n, select_msrs(args, s))
    ints = compute_intercepts(s)
    rows = [(i, *explain_msr(s, i, ints)) for i in select_msrs(args, s)]
    if args.json:
        print_json({
            "scenario": scenario_json(s),
            "msrs": [
                {"index": i, "name": display_name(i), "read": decision_json(rd),
                 "write": decision_json(wr)}
                for i, rd, wr in rows
            ],
        })
    else:
        console().print(explain_table(s, rows))
    return 0

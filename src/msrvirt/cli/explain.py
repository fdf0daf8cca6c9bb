"""`msrvirt explain`: every MSR's read and write decision, with the reason."""

from __future__ import annotations

import argparse
from typing import Any

from msrvirt.api import explain
from msrvirt.arch.kvm import Backend
from msrvirt.arch.msrs import MSRS, Family
from msrvirt.cli import nested
from msrvirt.cli.options import (
    add_diff_option,
    add_scenario_options,
    diff_scenario,
    print_json,
    resolve_msrs,
    scenario_from_args,
)
from msrvirt.errors import UsageError
from msrvirt.policy.decide import Decision, Outcome
from msrvirt.policy.policies import policy
from msrvirt.policy.scenario import Scenario
from msrvirt.report.jsonout import decision_diff_json, decision_json, scenario_json
from msrvirt.report.tables import console, decision_diff_table, explain_table


def register(sub: Any) -> None:
    p = sub.add_parser("explain", help="intercept decision and outcome of each MSR access",
                       description=__doc__)
    add_scenario_options(p)
    nested.add_nested_options(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--msr", metavar="NAME[,NAME...]",
                       help="MSRs to explain: names, indices or patterns such as IA32_FRED_*"
                       " or '*SSP*'")
    which.add_argument("--all", action="store_true", help="every MSR in msrvirt's table")
    add_diff_option(p, "the decisions")
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
    if args.msr is not None:
        return resolve_msrs(args.msr)
    return default_msrs(s)


def run(args: argparse.Namespace) -> int:
    s = scenario_from_args(args)
    n = nested.nested_from_args(args, s)
    if n is not None and args.diff is not None:
        raise UsageError("explain --diff compares L1's scenarios, not --nested ones"
                         " (bitmap --nested --diff compares merge lists)")
    if n is not None:
        return nested.run_explain(args, n, select_msrs(args, s))
    if args.diff is not None:
        return run_diff(args, s)
    rows = explain(s, select_msrs(args, s))
    if args.json:
        print_json({
            "scenario": scenario_json(s),
            "msrs": [
                {"index": r.index, "name": r.name, "read": decision_json(r.read),
                 "write": decision_json(r.write)}
                for r in rows
            ],
        })
    else:
        console().print(explain_table(s, [(r.index, r.read, r.write) for r in rows]))
    return 0


def _seen(d: Decision) -> tuple[object, ...]:
    """What a guest observes of a decision: the outcome, the exit reason of an exit, and
    whether it causes a VM exit at all."""
    return d.outcome, d.exit_reason if d.outcome is Outcome.EXIT else None, d.intercept


def run_diff(args: argparse.Namespace, s: Scenario) -> int:
    """--diff: every (MSR, direction) whose decision differs in the other scenario."""
    label, other = diff_scenario(args, s)
    which = select_msrs(args, s) if args.msr is not None or args.all else sorted(
        set(default_msrs(s)) | set(default_msrs(other)))
    changed = [(before.index, direction, b, a)
               for before, after in zip(explain(s, which), explain(other, which), strict=True)
               for direction, b, a in (("read", before.read, after.read),
                                       ("write", before.write, after.write))
               if _seen(b) != _seen(a)]
    if args.json:
        print_json({"scenario": scenario_json(s), "against": scenario_json(other),
                    "diff": {"label": label, "rows": [decision_diff_json(*r) for r in changed]}})
    else:
        console().print(decision_diff_table(f"{label}: {len(changed)} decision(s) differ",
                                            changed))
    return 0

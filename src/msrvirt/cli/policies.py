"""`msrvirt policies`: the built-in KVM intercept policies and their rules."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from msrvirt.arch.msrs import display_name
from msrvirt.cli.options import print_json
from msrvirt.policy.policies import POLICIES, policy
from msrvirt.report.jsonout import policy_json
from msrvirt.report.tables import console


def register(sub: Any) -> None:
    p = sub.add_parser("policies", help="list the built-in intercept policies",
                       description=__doc__)
    p.add_argument("--show", metavar="NAME", help="list the rules of one policy, in order")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    chosen = [policy(args.show)] if args.show is not None else list(POLICIES.values())
    if args.json:
        print_json({"policies": [policy_json(p, rules=True) for p in chosen]})
        return 0
    out = console()
    if args.show is None:
        table = Table(title="KVM MSR intercept policies", title_justify="left")
        for col in ("policy", "backends", "rules", "description"):
            table.add_column(col)
        for p in chosen:
            table.add_row(p.name, ",".join(sorted(b.value for b in p.backends)),
                          str(len(p.rules)), p.description)
        out.print(table)
        return 0
    p = chosen[0]
    out.print(f"{p.name}: {p.description}\nsource: {p.source}")
    table = Table(title=f"rules of {p.name}, in order", title_justify="left")
    for col in ("rule", "MSRs", "access", "runs when", "intercept when", "source"):
        table.add_column(col)
    for r in p.rules:
        table.add_row(r.id, ", ".join(display_name(m) for m in r.msrs), r.access.label,
                      r.runs_when, r.intercept_when, r.source)
    out.print(table)
    return 0

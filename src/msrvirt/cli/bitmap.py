"""`msrvirt bitmap`: the exact VMX MSR bitmap / SVM MSR permission map of a scenario."""

from __future__ import annotations

import argparse
import hashlib
from dataclasses import replace
from typing import Any

from msrvirt.api import bitmap as scenario_bitmap
from msrvirt.arch.kvm import Access
from msrvirt.arch.msrs import display_name
from msrvirt.arch.nested import merge_list
from msrvirt.cli import OutputPath, nested
from msrvirt.cli.options import (
    add_diff_option,
    add_scenario_options,
    diff_scenario,
    print_json,
    scenario_from_args,
)
from msrvirt.errors import UsageError
from msrvirt.output import write_output
from msrvirt.report.jsonout import diff_json
from msrvirt.report.nested import nested_line
from msrvirt.report.tables import console, diff_table, scenario_line


def register(sub: Any) -> None:
    p = sub.add_parser("bitmap", help="the exact MSR bitmap page of a scenario",
                       description=__doc__)
    add_scenario_options(p)
    nested.add_nested_options(p)
    p.add_argument("--out", metavar="FILE", type=OutputPath,
                   help="write the page (4096 bytes VMX, 8192 bytes SVM) to FILE ('-': stdout)")
    add_diff_option(p, "the page (with --nested: another merge list)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    s = scenario_from_args(args)
    n = nested.nested_from_args(args, s)
    bitmap = scenario_bitmap(s) if n is None else nested.vmcs02_page(n)
    diff = None
    if args.diff is not None and n is not None:
        label = f"{n.merge.name} -> {args.diff}"
        diff = bitmap.diff(nested.vmcs02_page(replace(n, merge=merge_list(args.diff))))
    elif args.diff is not None:
        label, other = diff_scenario(args, s)
        other_bitmap = scenario_bitmap(other)
        if other_bitmap.KIND != bitmap.KIND:
            raise UsageError(f"--diff must compare pages of one kind, not a {bitmap.KIND} with"
                             f" a {other_bitmap.KIND}")
        diff = bitmap.diff(other_bitmap)
    if args.out:
        write_output(args.out, bitmap.to_bytes())
    clear = bitmap.passthrough()
    by_msr: dict[int, Access] = {}
    for msr, access in clear:
        by_msr[msr] = by_msr.get(msr, Access(0)) | access
    if args.json:
        obj: dict[str, Any] = {
            **nested.json_head(s, n),
            "kind": bitmap.KIND,
            "size": bitmap.SIZE,
            "sha256": hashlib.sha256(bitmap.to_bytes()).hexdigest(),
            "passthrough": [
                {"index": m, "name": display_name(m), "read": bool(a & Access.R),
                 "write": bool(a & Access.W)} for m, a in sorted(by_msr.items())
            ],
        }
        if diff is not None:
            obj["diff"] = {"merge": args.diff} if n else {"against": label}
            obj["diff"]["rows"] = [diff_json(r) for r in diff]
        if args.out:
            obj["out"] = args.out
        print_json(obj)
        return 0
    out = console()
    out.print(f"{bitmap.KIND}, {bitmap.SIZE} bytes, sha256"
              f" {hashlib.sha256(bitmap.to_bytes()).hexdigest()[:16]}…")
    out.print(f"scenario: {scenario_line(s)}")
    if n is not None:
        out.print(nested_line(n))
    out.print(f"passed through ({len(by_msr)} MSRs; every other access exits):")
    for m, a in sorted(by_msr.items()):
        out.print(f"  {m:#010x}  {display_name(m):<24} {a.label}")
    if diff is not None:
        out.print(diff_table(f"{label}: {len(diff)} bit(s) differ", diff))
    if args.out:
        out.print(f"wrote {bitmap.SIZE} bytes to {args.out}")
    return 0

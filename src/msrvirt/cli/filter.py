"""`msrvirt filter check FILE`: validate a userspace MSR filter exactly as KVM does."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from msrvirt.cli import EXIT_FINDING, InputPath
from msrvirt.cli.options import load_filter, print_json
from msrvirt.errors import FilterError
from msrvirt.report.tables import console


def register(sub: Any) -> None:
    p = sub.add_parser("filter", help="work with userspace MSR filter files",
                       description=__doc__)
    verbs = p.add_subparsers(dest="filter_verb", required=True, metavar="VERB",
                             parser_class=type(p))
    check = verbs.add_parser("check", help="validate FILE as KVM_X86_SET_MSR_FILTER would")
    check.add_argument("file", metavar="FILE", type=InputPath,
                       help="filter file (JSON or TOML; '-': standard input)")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.set_defaults(run=run_check)


def run_check(args: argparse.Namespace) -> int:
    try:
        flt = load_filter(args.file)
    except FilterError as err:  # a finding (exit 1); a file that cannot be read is exit 2
        if args.json:
            print_json({"file": args.file, "valid": False, "errno": err.errno_name,
                        "range": err.range_index, "message": str(err)})
        print(f"msrvirt: {err}", file=sys.stderr)
        return EXIT_FINDING
    active = [(i, r) for i, r in enumerate(flt.ranges) if r.nmsrs]
    if args.json:
        print_json({"file": args.file, "valid": True, "errno": None, "range": None,
                    "default": "allow" if flt.default_allow else "deny",
                    "ranges": len(active)})
        return 0
    out = console()
    out.print(f"{args.file}: valid; default {'allow' if flt.default_allow else 'deny'},"
              f" {len(active)} non-empty range(s)")
    for i, r in active:
        allowed = sum(r.allows_bit(r.base + k) for k in range(r.nmsrs))
        out.print(f"  range {i}: {r.access.label:<10} {r.base:#010x}..{r.base + r.nmsrs - 1:#010x}"
                  f"  {allowed}/{r.nmsrs} allowed")
    return 0

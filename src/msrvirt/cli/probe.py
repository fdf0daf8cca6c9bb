"""`msrvirt probe FILE`: run one probe scenario on this host's KVM and record what happened."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.table import Table

from msrvirt.cli import InputPath, OutputPath
from msrvirt.cli.conformance import load_scenarios
from msrvirt.cli.options import parse_guest
from msrvirt.conform.scenario import describe, ops_of
from msrvirt.live import fingerprint as fp_mod
from msrvirt.live.conformance import run_scenario
from msrvirt.live.kvm import Kvm
from msrvirt.output import check_output, write_output
from msrvirt.report.conformance import op_text, seen_text
from msrvirt.report.tables import console


def register(sub: Any) -> None:
    p = sub.add_parser("probe", help="run one probe scenario on /dev/kvm", description=__doc__)
    p.add_argument("file", metavar="FILE", type=InputPath,
                   help="probe scenario (JSON, docs/formats.md; '-': standard input)")
    p.add_argument("--json", metavar="OUT", type=OutputPath,
                   help="write the fingerprint and every observed outcome to OUT ('-': stdout,"
                   " the table then goes to stderr)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    (ps,) = load_scenarios([args.file])
    if args.json:
        check_output(args.json)  # before the VM runs, not after
    with Kvm() as kvm:
        fingerprint = fp_mod.take(kvm)
        host = fp_mod.host_profile(fingerprint)
        result = run_scenario(kvm, ps, parse_guest(ps.guest, host.features))
    ops = ops_of(ps.steps)
    doc = {
        "host": fingerprint.to_obj(),
        "scenario": ps.name,
        "guest_features": sorted(f.value for f in result.guest_features),
        "results": [{"op": describe(op), "observed": s.to_obj()}
                    for op, s in zip(ops, result.observed, strict=True)],
    }
    if args.json:
        write_output(args.json, (json.dumps(doc, indent=2) + "\n").encode())
    table = Table()
    table.add_column("operation")
    table.add_column("observed")
    for op, s in zip(ops, result.observed, strict=True):
        table.add_row(op_text(op), seen_text(s))
    out = console()
    # The host on its own line: a title would wrap at the table's width.
    out.print(f"{ps.name} on {host.description}")
    out.print(table)
    if args.json and args.json != "-":
        out.print(f"wrote {args.json}")
    return 0

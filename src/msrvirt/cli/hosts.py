"""`msrvirt hosts`: the built-in host profiles (and, with --features, the CPUID features)."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from msrvirt.arch.cpuid import CPUID_BITS
from msrvirt.arch.hosts import HOSTS
from msrvirt.cli.options import print_json
from msrvirt.report.tables import console


def register(sub: Any) -> None:
    p = sub.add_parser("hosts", help="list the built-in host profiles", description=__doc__)
    p.add_argument("--features", action="store_true",
                   help="list the CPUID features msrvirt knows instead")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    out = console()
    if args.features:
        rows = [(f.value, str(bit), bit.source) for f, bit in CPUID_BITS.items()]
        if args.json:
            print_json({"features": [
                {"name": f.value, "leaf": b.leaf, "subleaf": b.subleaf, "reg": b.reg.value,
                 "bit": b.bit, "source": b.source} for f, b in CPUID_BITS.items()]})
            return 0
        table = Table(title="CPUID features", title_justify="left")
        for col in ("feature", "enumerated by", "source"):
            table.add_column(col)
        for row in rows:
            table.add_row(*row)
        out.print(table)
        return 0
    if args.json:
        print_json({"hosts": [h.to_obj() for h in HOSTS.values()]})
        return 0
    table = Table(title="host profiles", title_justify="left")
    for col in ("host", "vendor", "backend", "description", "features"):
        table.add_column(col)
    for h in HOSTS.values():
        table.add_row(h.name, h.vendor.value, h.backend.value, h.description,
                      ", ".join(sorted(f.value for f in h.features)))
    out.print(table)
    return 0

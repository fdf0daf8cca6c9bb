"""`msrvirt calibrate`: measure what an MSR exit costs on this host's /dev/kvm.

Two round trips through the live layer (msrvirt.live.calibrate): a guest WRMSR that KVM
emulates in the kernel, and a guest RDMSR that exits to this process and back.  Each
figure is printed marked measured or default, with its source; `--out FILE` writes them
in the form `msrvirt cost --costs FILE` reads.  Without a usable /dev/kvm every figure
is the built-in default.  On a software backend (PVM) the figures are that backend's
path, not a VMX VM exit: the host line says which.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from msrvirt.cli import OutputPath
from msrvirt.cli.options import print_json
from msrvirt.cost.constants import DEFAULT_COSTS, ExitCosts, Figure, measured_costs
from msrvirt.errors import UsageError
from msrvirt.live.calibrate import DEFAULT_ITERATIONS, DEFAULT_REPEATS, MAX_ITERATIONS, calibrate
from msrvirt.live.errors import KvmError
from msrvirt.live.fingerprint import PROC_CPUINFO
from msrvirt.live.kvm import Kvm
from msrvirt.output import check_output, write_output
from msrvirt.report.cost import figures_table
from msrvirt.report.tables import console


def register(sub: Any) -> None:
    p = sub.add_parser("calibrate", help="measure the cost of an MSR exit on this host",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS,
                   help="round trips per round (default %(default)s)")
    p.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                   help="rounds; the best is kept (default %(default)s)")
    p.add_argument("--out", metavar="FILE", type=OutputPath,
                   help="write the figures as JSON (for cost --costs; '-': stdout)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.set_defaults(run=run)


def measure(iterations: int, repeats: int) -> ExitCosts:
    """The exit costs measured on /dev/kvm; KvmError if it cannot be used."""
    with Kvm() as kvm:
        cal = calibrate(kvm, iterations=iterations, repeats=repeats)
    clock = DEFAULT_COSTS.cpu_ghz if cal.cpu_mhz is None else Figure(
        value=cal.cpu_mhz / 1000, unit="GHz", measured=True,
        source=f"{PROC_CPUINFO} 'cpu MHz' (the clock the kernel reports)")
    return measured_costs(host=f"measured on {cal.host}", cpu_ghz=clock,
                          in_kernel_ns=cal.in_kernel_ns, in_kernel_source=cal.in_kernel_how,
                          userspace_ns=cal.userspace_ns, userspace_source=cal.userspace_how)


def run(args: argparse.Namespace) -> int:
    if args.iterations < 1 or args.repeats < 1:
        raise UsageError("--iterations and --repeats must be at least 1, not"
                         f" {args.iterations} and {args.repeats}")
    if args.iterations > MAX_ITERATIONS:  # the guest counts them down in EBP
        raise UsageError(f"--iterations must be at most {MAX_ITERATIONS:#x} (a 32-bit count),"
                         f" not {args.iterations}")
    if args.out:
        check_output(args.out)  # before the measuring, not after
    try:
        costs = measure(args.iterations, args.repeats)
    except KvmError as err:
        print(f"msrvirt calibrate: nothing measured, /dev/kvm is not usable here ({err});"
              " every figure is the built-in default", file=sys.stderr)
        costs = DEFAULT_COSTS
    obj = costs.to_obj()
    if args.out:
        write_output(args.out, (json.dumps(obj, indent=2) + "\n").encode())
    if args.json:
        print_json(obj)
        return 0
    out = console()
    out.print(figures_table(costs))
    if args.out:
        out.print(f"wrote {args.out}")
    return 0

"""`msrvirt decide`: one MSR access, its full outcome and the chain of reasons."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from msrvirt.api import access
from msrvirt.arch.kvm import Access
from msrvirt.arch.msrs import display_name
from msrvirt.cli import nested
from msrvirt.cli.options import add_scenario_options, print_json, scenario_from_args
from msrvirt.errors import UsageError
from msrvirt.policy.decide import Decision, Initiator, decide
from msrvirt.report.jsonout import decision_json

if TYPE_CHECKING:
    from msrvirt.policy.nested import L2Decision


def register(sub: Any) -> None:
    p = sub.add_parser("decide", help="the outcome of one RDMSR/WRMSR", description=__doc__)
    p.add_argument("--msr", required=True, metavar="NAME|INDEX",
                   help="the MSR: a name, an index, or a pattern such as 'IA32_FRED_RSP?' that"
                   " matches one MSR")
    rw = p.add_mutually_exclusive_group(required=True)
    rw.add_argument("--read", action="store_true", help="RDMSR / KVM_GET_MSRS")
    rw.add_argument("--write", metavar="VALUE", help="WRMSR / KVM_SET_MSRS of VALUE")
    p.add_argument("--host-initiated", action="store_true",
                   help="userspace KVM_GET_MSRS/KVM_SET_MSRS instead of the guest")
    add_scenario_options(p)
    nested.add_nested_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)


def parse_value(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise UsageError(f"--write VALUE must be an integer such as 0x1000, not {text!r}") from None
    if value < 0:
        value &= (1 << 64) - 1  # -1 means all ones, as in C
    if value >> 64:
        raise UsageError(f"--write VALUE must fit in 64 bits, not {text}")
    return value


def run(args: argparse.Namespace) -> int:
    s = scenario_from_args(args)
    n = nested.nested_from_args(args, s)
    req = access(args.msr, write=None if args.read else parse_value(args.write),
                 host_initiated=args.host_initiated)
    index = req.msr
    d: Decision | L2Decision
    if n is None:
        d = decide(s, req)
    else:
        from msrvirt.policy.nested import decide_l2  # see cli/nested.py

        d = decide_l2(n, req)
    if args.json:
        if isinstance(d, Decision):
            decision = decision_json(d)
        else:  # report.nested renders with rich too: imported only when nested
            from msrvirt.report.nested import l2_decision_json

            decision = l2_decision_json(d)
        print_json({
            **nested.json_head(s, n),
            "access": {"index": index, "name": display_name(index),
                       "access": req.access.label, "value": req.value,
                       "initiator": req.initiator.value},
            "decision": {**decision, "kvm_ret": d.kvm_ret.name if d.kvm_ret else None,
                         "value": d.value},
        })
        return 0
    # Rendering only off --json: rich is most of this verb's start-up time (bench/bench_cli.py).
    from rich.text import Text

    from msrvirt.report.nested import l2_outcome_text, nested_line
    from msrvirt.report.tables import console, decision_lines, outcome_text, scenario_line

    out = console()
    who = "host KVM_SET_MSRS" if req.access is Access.W else "host KVM_GET_MSRS"
    if req.initiator is Initiator.GUEST:
        who = "guest WRMSR" if req.access is Access.W else "guest RDMSR"
    what = f" value {req.value:#x}" if req.access is Access.W else ""
    out.print(f"{who if n is None else 'L2 ' + who} {display_name(index)} ({index:#x}){what}")
    out.print(f"scenario: {scenario_line(s)}")
    if n is not None:
        out.print(nested_line(n))
    line = Text("outcome: ").append_text(
        outcome_text(d) if isinstance(d, Decision) else l2_outcome_text(d))
    if d.value is not None:
        line.append(f"  (reads {d.value:#x})")
    if not d.exact:
        line.append(f"  (not exact: the model does not know {d.missing})")
    out.print(line)
    for text in decision_lines(d.reasons):
        out.print(text)
    return 0

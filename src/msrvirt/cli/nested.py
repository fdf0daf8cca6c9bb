"""The nested-VMX half of `explain`, `decide` and `bitmap`: options, inputs, output.

`--nested L1` switches a verb from L1's accesses to those of L1's L2 guest
(docs/nested.md); the scenario options describe L0 and L1's vCPU as before.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from msrvirt.arch.msrs import display_name
from msrvirt.arch.nested import MERGE_LISTS, merge_list
from msrvirt.arch.vmcs12 import CONTROL_BITS
from msrvirt.cli import InputPath
from msrvirt.cli.options import parse_guest, print_json
from msrvirt.dataio import display_path, load, names_file
from msrvirt.errors import UnknownNameError, UsageError
from msrvirt.policy.bitmap import VmxMsrBitmap
from msrvirt.policy.policies import policy
from msrvirt.policy.scenario import Scenario
from msrvirt.report.jsonout import scenario_json

if TYPE_CHECKING:
    from msrvirt.policy.nested import L1, Nested

# policy.nested is imported where a verb runs with --nested, not at the top: the verbs
# register these options on every start, and most runs are not nested (bench/bench_cli.py).

DEFAULT_MERGE = "v9"
_PROFILES = ("kvm", "intercept-all", "no-bitmaps")


def add_nested_options(parser: argparse.ArgumentParser) -> None:
    """Add --nested, --l2-guest, --merge, --vmcs12."""
    group = parser.add_argument_group("nested VMX: answer for L1's L2 guest (docs/nested.md)")
    group.add_argument("--nested", metavar="L1", type=InputPath,
                       help="how L1 runs L2: kvm[:POLICY] (L1 is KVM with POLICY, default the"
                       " --policy), intercept-all, no-bitmaps, or an L1 bitmap file (JSON/TOML)")
    group.add_argument("--l2-guest", metavar="FEATURES",
                       help="with --nested kvm: L2's CPUID in --guest syntax over L1's features"
                       " (default host)")
    group.add_argument("--merge", metavar="LIST",
                       help=f"L0's merge list: {', '.join(MERGE_LISTS)} (default {DEFAULT_MERGE})")
    group.add_argument("--vmcs12", metavar="CONTROLS",
                       help="edit the L1 profile's vmcs12 controls: NAME adds, -NAME removes"
                       f" (--vmcs12=-NAME), none clears ({', '.join(c.name for c in CONTROL_BITS)})")


def load_l1(spec: str, s: Scenario, l2_guest: str | None) -> L1:
    """L1 from ``--nested``'s profile or file, over L0's scenario ``s`` (UsageError if bad)."""
    from msrvirt.policy.nested import INTERCEPT_ALL_L1, NO_BITMAPS_L1, kvm_l1, l1_from_obj, l1_host

    kind, _, pol = spec.partition(":")
    if kind == "kvm":
        features = parse_guest(l2_guest or "host", l1_host(s).features)
        return kvm_l1(s, policy(pol or s.policy.name), features)
    if l2_guest is not None:
        raise UsageError(f"--l2-guest describes the L2 of --nested kvm, not of {spec}")
    if spec == "intercept-all":
        return INTERCEPT_ALL_L1
    if spec == "no-bitmaps":
        return NO_BITMAPS_L1
    if not names_file(spec):
        raise UnknownNameError("L1 profile", spec,
                               "kvm[:POLICY], intercept-all, no-bitmaps, or a .json/.toml file")
    return load(spec, lambda obj: l1_from_obj(obj, display_path(spec)))


def nested_from_args(args: argparse.Namespace, s: Scenario) -> Nested | None:
    """The nested inputs of ``args`` over L0's scenario ``s``, or None without --nested."""
    if args.nested is None:
        for option in ("l2_guest", "merge", "vmcs12"):
            if getattr(args, option) is not None:
                raise UsageError(f"--{option.replace('_', '-')} needs --nested")
        return None
    from msrvirt.policy.nested import Nested, check_host, parse_controls

    check_host(s.host)
    merge = merge_list(args.merge or DEFAULT_MERGE)
    l1 = load_l1(args.nested, s, args.l2_guest)
    if args.vmcs12 is not None:
        l1 = replace(l1, controls=parse_controls(args.vmcs12, l1.controls))
    return Nested(l0=s, l1=l1, merge=merge)


def run_explain(args: argparse.Namespace, n: Nested, msrs: list[int]) -> int:
    """`explain --nested`: L2's read and write of each MSR."""
    # Here, not at the top: report.nested renders with rich, which a verb without --nested
    # need not import (bench/bench_cli.py).
    from msrvirt.policy.nested import explain_l2
    from msrvirt.report.nested import explain_l2_table, l2_decision_json
    from msrvirt.report.tables import console

    rows = [(i, *explain_l2(n, i)) for i in msrs]
    if args.json:
        print_json({
            **json_head(n.l0, n),
            "msrs": [{"index": i, "name": display_name(i), "read": l2_decision_json(rd),
                      "write": l2_decision_json(wr)} for i, rd, wr in rows],
        })
    else:
        console().print(explain_l2_table(n.l0, n, rows))
    return 0


def json_head(s: Scenario, n: Nested | None) -> dict[str, Any]:
    """The "scenario" member of a verb's JSON object, and with --nested the "nested" one."""
    if n is None:
        return {"scenario": scenario_json(s)}
    from msrvirt.report.nested import nested_json  # see run_explain

    return {"scenario": scenario_json(s), "nested": nested_json(n)}


def vmcs02_page(n: Nested) -> VmxMsrBitmap:
    """vmcs02's page; UsageError when vmcs12 does not use MSR bitmaps (vmcs02 has none)."""
    from msrvirt.policy.nested import vmcs02_bitmap

    page = vmcs02_bitmap(n)
    if page is None:
        raise UsageError("vmcs12 does not use MSR bitmaps, so vmcs02 has no MSR bitmap: every"
                         " L2 MSR access exits")
    return page

"""Options shared by the verbs: the scenario (host, guest, filter, exits, policy, runtime),
the MSR selection, diffs, and printing JSON.  Reading them is msrvirt.api's job."""

from __future__ import annotations

import argparse
import json

from msrvirt.api import LIVE, parse_guest, vary
from msrvirt.api import filter as load_filter
from msrvirt.api import msrs as resolve_msrs
from msrvirt.api import scenario as build_scenario
from msrvirt.arch.hosts import HOSTS, KvmParams
from msrvirt.cli import InputPath
from msrvirt.policy.scenario import Runtime, Scenario

__all__ = ["add_diff_option", "add_scenario_options", "diff_scenario", "load_filter",
           "parse_guest", "print_json", "resolve_msrs", "scenario_from_args"]


def add_scenario_options(parser: argparse.ArgumentParser) -> None:
    """Add --host, --guest, --filter, --exits, --policy, --runtime."""
    group = parser.add_argument_group("scenario")
    group.add_argument("--host", default="intel-fred", metavar="NAME|FILE|live", type=InputPath,
                       help=f"host profile: {', '.join(HOSTS)}; '{LIVE}' for this machine's KVM"
                       " (its fingerprint); or a file: a host profile or a saved fingerprint"
                       " (default intel-fred)")
    group.add_argument("--guest", default="host", metavar="FEATURES",
                       help="guest CPUID features, comma list: 'host' = all the host has,"
                       " 'none' = nothing, NAME adds, -NAME removes (default host)")
    group.add_argument("--filter", metavar="FILE", type=InputPath,
                       help="userspace MSR filter (JSON or TOML)")
    group.add_argument("--exits", default="", metavar="REASONS",
                       help="userspace exit reasons enabled: filter,unknown,inval (default none)")
    group.add_argument("--policy", metavar="NAME",
                       help="KVM intercept policy (default: fred-v9 on vmx, svm-fred on svm,"
                       " pvm on pvm)")
    group.add_argument("--runtime", default="", metavar="STATE",
                       help="VM and vCPU state, e.g. spec_ctrl_nonzero,x2apic_mode,mcg_cap=0x10a"
                       f" (known: {', '.join(Runtime.names())})")
    group.add_argument("--kvm-param", default="", metavar="NAME=VALUE",
                       help="KVM module parameters and build options over the host profile's,"
                       f" e.g. pt_mode=1,enable_pmu=0 (known: {', '.join(KvmParams.names())})")


def scenario_from_args(args: argparse.Namespace) -> Scenario:
    return build_scenario(host=args.host, guest=args.guest, policy=args.policy,
                          filter=args.filter, exits=args.exits, runtime=args.runtime,
                          kvm_param=args.kvm_param)


def add_diff_option(parser: argparse.ArgumentParser, what: str) -> None:
    """Add --diff: compare with another policy, host or guest CPUID."""
    parser.add_argument("--diff", metavar="[policy:]NAME|host:SPEC|guest:FEATURES",
                        help=f"list what changes in {what} with another policy, another host"
                        " (a name, a file or live) or another guest CPUID (--guest syntax)")


def diff_scenario(args: argparse.Namespace, s: Scenario) -> tuple[str, Scenario]:
    """The scenario --diff compares ``s`` with, and its label."""
    return vary(s, args.diff, guest=args.guest, policy=args.policy,
                kvm_param=args.kvm_param)


def print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2))

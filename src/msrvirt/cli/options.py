"""Options shared by the verbs: the scenario (host, guest, filter, exits, policy, runtime)."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path

from msrvirt.arch.cpuid import Feature, feature
from msrvirt.arch.hosts import HOSTS, HostProfile, KvmParams, host, with_implied
from msrvirt.arch.kvm import ExitReason
from msrvirt.dataio import read_data_file
from msrvirt.errors import FileFormatError, MsrvirtError, UsageError
from msrvirt.policy.filter import NO_FILTER, MsrFilter
from msrvirt.policy.intercepts import check_backend
from msrvirt.policy.policies import DEFAULT_POLICY, policy
from msrvirt.policy.scenario import Runtime, Scenario


def add_scenario_options(parser: argparse.ArgumentParser) -> None:
    """Add --host, --guest, --filter, --exits, --policy, --runtime."""
    group = parser.add_argument_group("scenario")
    group.add_argument("--host", default="intel-fred", metavar="NAME|FILE",
                       help=f"host profile: {', '.join(HOSTS)}, or a JSON file (default intel-fred)")
    group.add_argument("--guest", default="host", metavar="FEATURES",
                       help="guest CPUID features, comma list: 'host' = all the host has,"
                       " 'none' = nothing, NAME adds, -NAME removes (default host)")
    group.add_argument("--filter", metavar="FILE", help="userspace MSR filter (JSON or TOML)")
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


def load_host(spec: str) -> HostProfile:
    if spec in HOSTS or not (spec.endswith((".json", ".toml")) or os.sep in spec):
        return host(spec)
    try:
        return HostProfile.from_obj(read_data_file(spec), default_name=Path(spec).stem)
    except MsrvirtError as err:
        if isinstance(err, FileFormatError):
            raise
        raise FileFormatError(spec, str(err)) from None


def load_filter(path: str | None) -> MsrFilter:
    if path is None:
        return NO_FILTER
    try:
        return MsrFilter.from_obj(read_data_file(path))
    except MsrvirtError as err:
        if isinstance(err, FileFormatError):
            raise
        raise FileFormatError(path, str(err)) from None


def parse_guest(spec: str, host_features: frozenset[Feature]) -> frozenset[Feature]:
    """'host', 'none', 'host,-fred', 'lm,fred' ... -> the guest's requested features."""
    out: set[Feature] = set()
    for item in (p.strip() for p in spec.split(",")):
        if not item:
            continue
        if item == "host":
            out |= host_features
        elif item == "none":
            out.clear()
        elif item.startswith("-"):
            out.discard(feature(item[1:]))
        else:
            out.add(feature(item.lstrip("+")))
    return with_implied(out)


def parse_exits(spec: str) -> ExitReason:
    reasons = ExitReason(0)
    for item in (p.strip().lower() for p in spec.split(",")):
        if not item or item == "none":
            continue
        if item == "all":
            reasons |= ExitReason.INVAL | ExitReason.UNKNOWN | ExitReason.FILTER
            continue
        try:
            reasons |= ExitReason[item.upper()]
        except KeyError:
            raise UsageError(
                f"exit reasons must be among filter, unknown, inval, all, none; not {item!r}"
            ) from None
    return reasons


def scenario_from_args(args: argparse.Namespace) -> Scenario:
    h = load_host(args.host)
    if getattr(args, "kvm_param", ""):
        h = replace(h, params=h.params.with_text(args.kvm_param))
    pol = policy(args.policy or DEFAULT_POLICY[h.backend])
    check_backend(pol, h.backend)
    flt = load_filter(args.filter)
    flt.validate()
    return Scenario(
        host=h,
        guest=parse_guest(args.guest, h.features),
        policy=pol,
        filter=flt,
        exits=parse_exits(args.exits),
        runtime=Runtime.parse(args.runtime),
    )


def check_writable(path: str) -> None:
    """Fail now, with one line, if ``path`` could not be written later (for long commands).

    Creates the directory and a temporary file in it, as write_atomically will.
    """
    if Path(path).is_dir():
        raise UsageError(f"cannot write {path}: it is a directory")
    directory = Path(path).parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as err:
        raise UsageError(f"cannot write {path}: {err.strerror}") from None


def write_atomically(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and rename: never half-written."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as err:
        raise UsageError(f"cannot write {path}: {err.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        # mkstemp creates the file 0600; give it the mode any new file gets here.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise UsageError(f"cannot write {path}: {err.strerror}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2))

"""The Python API: what a script needs to ask msrvirt the CLI's questions without the CLI.

Each function takes the same spellings as the command line (host names or files, guest
feature lists, filter files, exit reasons, MSR names with wildcards) or the model's own
values, and returns the model's frozen values.  Bad input raises the typed errors of
`msrvirt.errors` (every one a `MsrvirtError`), as the CLI reports them.

    >>> from msrvirt import api
    >>> s = api.scenario(host="intel-fred", guest="host,-fred", exits="unknown")
    >>> api.decide(s, "IA32_FRED_RSP0").outcome.value
    'exit'
    >>> [row.name for row in api.explain(s, "IA32_FRED_RSP*")]
    ['IA32_FRED_RSP0', 'IA32_FRED_RSP1', 'IA32_FRED_RSP2', 'IA32_FRED_RSP3']
    >>> len(api.bitmap(s).to_bytes())
    4096

The CLI is built on these functions (cli/options.py), so both read input the same way.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from msrvirt.arch.cpuid import Feature, feature
from msrvirt.arch.hosts import HOSTS, HostProfile, with_implied
from msrvirt.arch.hosts import host as builtin_host
from msrvirt.arch.kvm import Access, ExitReason
from msrvirt.arch.msrs import display_name, resolve_index, resolve_pattern
from msrvirt.dataio import STDIN, built, display_path, load, names_file, read_data_file
from msrvirt.errors import FilterError, UsageError
from msrvirt.policy.bitmap import MsrBitmap
from msrvirt.policy.decide import Decision, Initiator, MsrAccess, explain_msr
from msrvirt.policy.decide import decide as decide_access
from msrvirt.policy.filter import NO_FILTER, MsrFilter
from msrvirt.policy.intercepts import check_backend, compute_intercepts
from msrvirt.policy.policies import DEFAULT_POLICY, Policy
from msrvirt.policy.policies import policy as named_policy
from msrvirt.policy.scenario import Runtime, Scenario

__all__ = ["LIVE", "Explained", "access", "bitmap", "decide", "explain", "filter", "host", "msrs",
           "parse_exits", "parse_guest", "scenario", "vary"]

LIVE = "live"  # the host spec meaning "this machine's KVM, from its fingerprint"
_FINGERPRINT_KEYS = frozenset({"kvm_api_version", "cpuid", "msr_index_list"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Explained:
    """One MSR of `explain`: its index, name, and the guest read and write decisions."""

    index: int
    name: str
    read: Decision
    write: Decision


def host(spec: str | HostProfile = "intel-fred") -> HostProfile:
    """A host profile: a built-in name, ``live`` (this machine's KVM, fingerprinted now), or
    a file (``-``: standard input) holding a host profile or a saved fingerprint (as
    `msrvirt probe --json`, `conformance --json` and `review --json` record it)."""
    if isinstance(spec, HostProfile):
        return spec
    if spec == LIVE:
        from msrvirt.live.fingerprint import host_profile, take
        from msrvirt.live.kvm import Kvm

        with Kvm() as kvm:
            return host_profile(take(kvm))
    if spec in HOSTS or not names_file(spec):
        return builtin_host(spec)
    obj = read_data_file(spec)
    name = "stdin" if spec == STDIN else os.path.splitext(os.path.basename(spec))[0]
    fingerprint = _fingerprint_in(obj)
    if fingerprint is not None:
        from msrvirt.live.fingerprint import Fingerprint, host_profile

        return built(spec, fingerprint, lambda o: host_profile(Fingerprint.from_obj(o), name=name))
    return built(spec, obj, lambda o: HostProfile.from_obj(o, default_name=name))


def _fingerprint_in(obj: object) -> Mapping[str, object] | None:
    """The fingerprint object in ``obj``: ``obj`` itself, or its ``host`` (a saved run)."""
    for candidate in (obj, obj.get("host") if isinstance(obj, Mapping) else None):
        if isinstance(candidate, Mapping) and candidate.keys() >= _FINGERPRINT_KEYS:
            return candidate
    return None


def parse_guest(spec: str | Iterable[Feature | str], host_features: frozenset[Feature]) -> \
        frozenset[Feature]:
    """The guest CPUID a spec asks for: ``host`` (all the host has), ``none``, ``NAME`` adds,
    ``-NAME`` removes, comma-separated in order (``host,-fred``); or an iterable of features."""
    if not isinstance(spec, str):
        return with_implied(f if isinstance(f, Feature) else feature(f) for f in spec)
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


def parse_exits(spec: str | ExitReason) -> ExitReason:
    """The userspace exit reasons of ``filter,unknown,inval`` (also ``all``, ``none``)."""
    if isinstance(spec, ExitReason):
        return spec
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


def filter(source: str | Mapping[str, object] | MsrFilter | None) -> MsrFilter:
    """A userspace MSR filter from a file (``-``: standard input), its file-format object
    (docs/formats.md) or itself; validated as KVM_X86_SET_MSR_FILTER would (FilterError)."""
    if source is None:
        return NO_FILTER
    if isinstance(source, MsrFilter):
        flt = source
    elif isinstance(source, str):
        flt = load(source, MsrFilter.from_obj)
    else:
        flt = MsrFilter.from_obj(source)
    try:
        flt.validate()
    except FilterError as err:
        raise err.in_file(display_path(source)) if isinstance(source, str) else err from None
    return flt


_host, _filter = host, filter  # `scenario`'s parameters take these names, as the CLI's options


def scenario(*, host: str | HostProfile = "intel-fred",
             guest: str | Iterable[Feature | str] = "host",
             policy: str | Policy | None = None,
             filter: str | Mapping[str, object] | MsrFilter | None = None,
             exits: str | ExitReason = "", runtime: str | Runtime = "",
             kvm_param: str = "") -> Scenario:
    """A scenario, as the CLI's --host, --guest, --policy, --filter, --exits, --runtime,
    --kvm-param.

    The policy defaults to the host backend's (fred-v9 on VMX, svm-fred on SVM, pvm).
    """
    h = _with_params(_host(host), kvm_param)
    return Scenario(
        host=h, guest=parse_guest(guest, h.features), policy=_policy(policy, h),
        filter=_filter(filter), exits=parse_exits(exits),
        runtime=runtime if isinstance(runtime, Runtime) else Runtime.parse(runtime))


def _with_params(h: HostProfile, kvm_param: str) -> HostProfile:
    """``h`` with the module parameters of ``kvm_param`` (``pt_mode=1,enable_pmu=0``)."""
    return replace(h, params=h.params.with_text(kvm_param)) if kvm_param else h


def _policy(spec: str | Policy | None, h: HostProfile) -> Policy:
    """``spec`` (default: the host backend's policy), refused if the backend cannot run it."""
    pol = spec if isinstance(spec, Policy) else named_policy(
        DEFAULT_POLICY[h.backend] if spec is None else spec)
    check_backend(pol, h.backend)
    return pol


def msrs(spec: str | int | Iterable[str | int]) -> list[int]:
    """MSR indices from names, indices or wildcard patterns (``IA32_FRED_*``, ``*SSP*``),
    comma-separated or as an iterable; in the order given, each once."""
    items = spec.split(",") if isinstance(spec, str) else [spec] if isinstance(spec, int) \
        else list(spec)
    found: list[int] = []
    for item in items:
        if isinstance(item, str):
            if item.strip():
                found.extend(resolve_pattern(item))
        else:
            found.append(resolve_index(item))
    if not found:
        raise UsageError(f"MSRs must be named (names, indices or patterns), not {spec!r}")
    return list(dict.fromkeys(found))


def access(msr: str | int, *, write: int | None = None, host_initiated: bool = False) -> \
        MsrAccess:
    """One access to ``msr`` (a name, index or a pattern matching one MSR): a read, or a write
    of ``write``; by the guest (RDMSR/WRMSR) or, with ``host_initiated``, by userspace
    (KVM_GET/SET_MSRS)."""
    found = msrs(msr)
    if len(found) != 1:
        raise UsageError(f"one MSR must be named, not {len(found)} ({msr!r} matches"
                         f" {', '.join(display_name(i) for i in found[:4])}"
                         f"{', ...' if len(found) > 4 else ''})")
    return MsrAccess(found[0], Access.R if write is None else Access.W, write or 0,
                     Initiator.HOST if host_initiated else Initiator.GUEST)


def decide(s: Scenario, msr: str | int, *, write: int | None = None,
           host_initiated: bool = False) -> Decision:
    """The decision for one access to ``msr`` (as `access` takes it) in ``s``."""
    return decide_access(s, access(msr, write=write, host_initiated=host_initiated))


def explain(s: Scenario, which: str | int | Iterable[str | int]) -> list[Explained]:
    """The guest read and write decisions of each MSR ``which`` names (see `msrs`)."""
    ints = compute_intercepts(s)
    out = []
    for index in msrs(which):
        rd, wr = explain_msr(s, index, ints)
        out.append(Explained(index=index, name=display_name(index), read=rd, write=wr))
    return out


def bitmap(s: Scenario) -> MsrBitmap:
    """The exact VMX MSR bitmap (SVM permission map) KVM would hold for ``s``; UsageError on
    a backend without one (PVM: every access exits)."""
    page = compute_intercepts(s).bitmap
    if page is None:
        raise UsageError(f"host {s.host.name} ({s.host.backend.value}) has no MSR bitmap:"
                         " every guest MSR access exits")
    return page


def vary(s: Scenario, spec: str, *, guest: str | Iterable[Feature | str] = "host",
         policy: str | Policy | None = None, kvm_param: str = "") -> tuple[str, Scenario]:
    """``s`` with one thing changed, for a diff: ``host:SPEC`` (a host name, file or
    ``live``), ``guest:FEATURES`` or ``policy:NAME`` (a bare NAME is a policy).

    On another host, ``guest`` (the spec ``s`` was made with) is read against that host's
    features, ``kvm_param`` applies as well, and the policy is ``policy`` or that host
    backend's default.  Returns
    (label, scenario), the label as ``policy fred-v9 -> upstream``.
    """
    kind, sep, value = spec.partition(":")
    if not sep:
        kind, value = "policy", spec
    if kind == "policy":
        before, other = s.policy.name, replace(s, policy=_policy(value, s.host))
    elif kind == "guest":
        before = guest if isinstance(guest, str) else ",".join(sorted(f.value for f in s.guest))
        other = replace(s, guest=parse_guest(value, s.host.features))
    elif kind == "host":
        h = _with_params(_host(value), kvm_param)
        before, other = s.host.name, replace(s, host=h, guest=parse_guest(guest, h.features),
                                             policy=_policy(policy, h))
    else:
        raise UsageError(f"a diff must be host:SPEC, guest:FEATURES or policy:NAME, not"
                         f" {spec!r}")
    return f"{kind} {before} -> {value}", other

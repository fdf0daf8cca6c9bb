"""Named save/restore designs for the FRED MSRs: the seed (v9), review alternatives, planted bugs.

A design is the intercept policy (from msrvirt.policy, so the model's MSR bitmap is the
one `compute_intercepts` builds) plus the software and VMCS behaviour around it:
what vCPU put does to the host's rsp0 cache, and a set of planted faults.  The
behaviour of v9 follows kvm-msr-facts.md sections 5-8 and the seed; each planted
fault names the claim of the seed or the review thread it breaks.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum

from msrvirt.errors import UnknownNameError
from msrvirt.policy.policies import Policy, policy


class Verdict(StrEnum):
    """Whether every invariant holds for a design (and what a design is expected to get)."""

    HOLDS = "holds"
    FAILS = "fails"


class PutSync(Enum):
    """What vCPU put does to the host's per-CPU rsp0 cache after reading the guest's RSP0 back.

    kvm-msr-facts.md section 7: v9 calls ``fred_sync_rsp0(guest value)``; H. Peter Anvin's
    suggestion in the review is to set the cache to an invalid value (0) instead.
    """

    SYNC = "fred_sync_rsp0(guest value)"
    INVALIDATE = "cache := 0 (invalid)"
    NONE = "cache untouched"


class Fault(Enum):
    """A planted bug: one step of the v9 design left out or done wrong."""

    EXIT_KEEPS_GUEST_RSP1 = "VM exit saves guest FRED_RSP1 but does not load the host value"
    EXIT_KEEPS_GUEST_STKLVLS_CONFIG = (
        "VM exit leaves the guest STKLVLS and CONFIG in the MSRs (switched in software later)")
    ENTRY_SKIPS_GUEST_FRED = "VM entry does not load the guest FRED state (control bit 23 clear)"
    NO_RSP0_RESTORE_AFTER_RUN = "KVM_RUN returns to user mode without fred_update_rsp0"
    GET_RSP0_SOFT = "KVM reads FRED_RSP0 from msr_guest_fred_rsp0 even while guest state is loaded"
    FILTER_NO_RECALC = "a filter change does not request the recomputation of intercepts"
    CPUID_NO_RECALC = "KVM_SET_CPUID2 does not recompute the intercepts"
    HOST_FIELDS_ONCE = "host FRED_RSP1-3 VMCS fields are written once, not when the VMCS moves CPU"


@dataclass(frozen=True, slots=True, kw_only=True)
class Design:
    """One save/restore design: intercept policy, put behaviour, faults and the expected verdict."""

    name: str
    summary: str
    policy: Policy
    put_sync: PutSync = PutSync.SYNC
    faults: frozenset[Fault] = frozenset()
    expected: Verdict
    source: str


_SEED = "seed (v9 08/22) and kvm-msr-facts.md sections 5-8"
_REVIEW = "kvm-msr-facts.md section 10"


def _planted(name: str, summary: str, *, faults: frozenset[Fault] = frozenset(),
             put_sync: PutSync = PutSync.SYNC, policy_name: str = "fred-v9") -> Design:
    return Design(name=name, summary=summary, policy=policy(policy_name), put_sync=put_sync,
                  faults=faults, expected=Verdict.FAILS, source=f"planted bug; {_SEED}")


DESIGNS: dict[str, Design] = {
    d.name: d for d in (
        Design(name="v9", policy=policy("fred-v9"), expected=Verdict.HOLDS, source=_SEED,
               summary="the seed: VMCS switches 8 FRED MSRs, RSP0 lazily with fred_sync_rsp0,"
               " PL0_SSP by the CET rule with the software fallback"),
        Design(name="minimal", policy=policy("fred-minimal"), expected=Verdict.HOLDS,
               source=f"{_REVIEW} (Chao Gao)",
               summary="review alternative: STKLVLS and CONFIG intercepted, the rest as v9"),
        Design(name="intercept-all", policy=policy("intercept-all"), expected=Verdict.HOLDS,
               source=_REVIEW, summary="review alternative: every FRED MSR access is emulated"),
        Design(name="invalidate-cache", policy=policy("fred-v9"), put_sync=PutSync.INVALIDATE,
               expected=Verdict.HOLDS, source=f"{_REVIEW} (H. Peter Anvin)",
               summary="review alternative: vCPU put sets the rsp0 cache to 0 instead of syncing"),
        _planted("rsp1-no-host-load", "RSP1 passed through but VM exit keeps the guest value",
                 faults=frozenset({Fault.EXIT_KEEPS_GUEST_RSP1})),
        _planted("stklvls-config-no-host-load",
                 "STKLVLS and CONFIG not switched atomically with VM exit (Sean's NMI point)",
                 faults=frozenset({Fault.EXIT_KEEPS_GUEST_STKLVLS_CONFIG})),
        _planted("entry-no-guest-load", "VM entry runs the guest on the host's FRED MSRs",
                 faults=frozenset({Fault.ENTRY_SKIPS_GUEST_FRED})),
        _planted("no-rsp0-restore", "host RSP0 not restored when KVM_RUN returns to user mode",
                 faults=frozenset({Fault.NO_RSP0_RESTORE_AFTER_RUN})),
        _planted("no-sync", "fred_sync_rsp0 left out: the cache keeps the host value",
                 put_sync=PutSync.NONE),
        _planted("get-soft-rsp0", "KVM_GET_MSRS reads the software RSP0 while guest state is in",
                 faults=frozenset({Fault.GET_RSP0_SOFT})),
        _planted("pl0-ssp-passthrough", "PL0_SSP passed through without shadow stacks (v6)",
                 policy_name="fred-v6"),
        _planted("filter-no-recalc", "a filter change is not followed by recomputation",
                 faults=frozenset({Fault.FILTER_NO_RECALC})),
        _planted("cpuid-no-recalc", "a CPUID change is not followed by recomputation",
                 faults=frozenset({Fault.CPUID_NO_RECALC})),
        _planted("host-fields-once", "host RSP1-3 VMCS fields not rewritten on vCPU migration",
                 faults=frozenset({Fault.HOST_FIELDS_ONCE})),
    )
}


def design(name: str) -> Design:
    """Return the design called ``name``; raise UnknownNameError listing the known ones."""
    try:
        return DESIGNS[name]
    except KeyError:
        raise UnknownNameError("design", name, "one of " + ", ".join(DESIGNS)) from None

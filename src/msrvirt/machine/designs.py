"""Named save/restore designs for the FRED MSRs: the seed (v9), review alternatives, planted bugs.

A design is the intercept policy (from msrvirt.policy, so the model's MSR bitmap is the
one `compute_intercepts` builds) plus the software and VMCS behaviour around it:
what vCPU put does to the host's rsp0 cache, where KVM takes the VMCS host FRED fields
from, a set of planted faults, and the host kernel it runs on (`msrvirt.machine.hostconf`).
The behaviour of v9 follows kvm-msr-facts.md sections 5-8 and the seed; each planted
fault names the claim of the seed or the review thread it breaks.

``DESIGN@HOST`` names a design on another host configuration (`on_host`), e.g.
``v9@stack-map-changed``: the planted host variants are such pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum, StrEnum

from msrvirt.arch.nested import MergeList, merge_list
from msrvirt.errors import UnknownNameError, UsageError
from msrvirt.machine.hostconf import HOST_CONFIGS, LINUX, HostConfig, ShadowStacks, Vector, host_config
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
    # Nested VMX (machine/nested.py): one step of Linux v6.19 nested.c with FRED v9 patch 19.
    MERGE_IGNORES_L1 = "vmcs02's merged bits copy vmcs01's: L1's bitmap is ignored"
    MERGE_IGNORES_VMCS01 = "vmcs02's merged bits copy L1's: vmcs01's bitmap (L0's filter) is ignored"
    NESTED_EXIT_NO_HOST_LOAD = (
        "a nested VM exit does not load vmcs12's host FRED fields into vmcs01: L1 resumes on the"
        " FRED state L2 exited with")
    NESTED_EXIT_NO_GUEST_SAVE = "a nested VM exit does not save L2's FRED state into vmcs12"


class FilterTiming(Enum):
    """When L0's VMM may change its MSR filter in a nested design, and what KVM does then."""

    WHILE_L1 = "while the vCPU is out of L2; the next nested VM entry merges the new vmcs01"
    WHILE_L2_STALE = ("also while the vCPU is in L2: KVM recomputes vmcs01 only and vmcs02 keeps"
                      " its bits until L1's next VMLAUNCH/VMRESUME (Linux v6.19)")
    WHILE_L2_REBUILT = ("also while the vCPU is in L2: KVM rebuilds vmcs02 from the new vmcs01"
                        " when it recomputes (a fix of the v6.19 window)")


@dataclass(frozen=True, slots=True, kw_only=True)
class NestedSetup:
    """How a nested design's L0 runs L2: its merge list and when its filter may change."""

    merge: MergeList
    filter_timing: FilterTiming = FilterTiming.WHILE_L1


class HostFields(Enum):
    """Where KVM takes the VMCS host FRED_RSP1-3 and FRED_SSP1-3 fields from (vmx_vcpu_load_vmcs)."""

    EXCEPTION_STACKS = "RSP1-3 from the #DB, NMI and #DF stacks, SSP1-3 = 0 (v9 07)"
    MSRS = "the host's own RSP1-3 and SSP1-3, as in the MSRs (Sean, v9 07 review)"


# v9 07/22 vmx_vcpu_load_vmcs: HOST_IA32_FRED_RSP1-3 = __this_cpu_ist_top_va(ESTACK_DB,
# ESTACK_NMI, ESTACK_DF); HOST_IA32_FRED_SSP1-3 = 0.
V9_07_STACKS = (Vector.DB, Vector.NMI, Vector.DF)


@dataclass(frozen=True, slots=True, kw_only=True)
class Design:
    """One save/restore design: intercept policy, put behaviour, host fields, faults, the host
    kernel it runs on, and the expected verdict."""

    name: str
    summary: str
    policy: Policy
    put_sync: PutSync = PutSync.SYNC
    host_fields: HostFields = HostFields.EXCEPTION_STACKS
    faults: frozenset[Fault] = frozenset()
    host: HostConfig = LINUX
    expected: Verdict
    source: str
    nested: NestedSetup | None = None  # a nested design (machine/nested.py): L0, L1 and L2
    # For a design that models the kernel as it is and fails: what the failure shows.
    finding: str = ""

    @property
    def host_rsp_right(self) -> bool:
        """Whether the host RSP1-3 fields KVM writes are the stacks the host kernel uses."""
        return self.host_fields is HostFields.MSRS or not self.host.mismatched_levels(V9_07_STACKS)

    @property
    def host_ssp_right(self) -> bool:
        """Whether the host SSP1-3 fields KVM writes are the host kernel's SSP1-3."""
        return (self.host_fields is HostFields.MSRS
                or self.host.shadow_stacks is ShadowStacks.NONE)  # Linux leaves them 0


_SEED = "seed (v9 08/22) and kvm-msr-facts.md sections 5-8"
_REVIEW = "kvm-msr-facts.md section 10"
_NESTED = ("Linux v6.19 arch/x86/kvm/vmx/nested.c with FRED v9 patch 19 (vmcs12's FRED fields);"
           " docs/nested.md")


def _planted(name: str, summary: str, *, faults: frozenset[Fault] = frozenset(),
             put_sync: PutSync = PutSync.SYNC, policy_name: str = "fred-v9") -> Design:
    return Design(name=name, summary=summary, policy=policy(policy_name), put_sync=put_sync,
                  faults=faults, expected=Verdict.FAILS, source=f"planted bug; {_SEED}")


def on_host(d: Design, h: HostConfig) -> Design:
    """Design ``d`` on host ``h``, named ``DESIGN@HOST``: expected to fail if ``d`` is a planted
    bug or if the VMCS host fields it writes are not the host's own values."""
    if h == d.host:
        return d
    on = replace(d, name=f"{d.name}@{h.name}", host=h, summary=f"{d.summary}; on {h.summary}")
    fails = d.expected is Verdict.FAILS or not (on.host_rsp_right and on.host_ssp_right)
    return replace(on, expected=Verdict.FAILS if fails else Verdict.HOLDS)


_V9 = Design(name="v9", policy=policy("fred-v9"), expected=Verdict.HOLDS, source=_SEED,
             summary="the seed: VMCS switches 8 FRED MSRs, RSP0 lazily with fred_sync_rsp0,"
             " PL0_SSP by the CET rule with the software fallback")


def _nested(name: str, summary: str, merge: str, *, expected: Verdict = Verdict.HOLDS,
            faults: frozenset[Fault] = frozenset(), source: str = _NESTED,
            timing: FilterTiming = FilterTiming.WHILE_L1, finding: str = "") -> Design:
    """A nested design: L0 and L1 both KVM with fred-v9, L0 merging with list ``merge``."""
    return Design(name=name, summary=summary, policy=policy("fred-v9"), faults=faults,
                  expected=expected, source=source, finding=finding,
                  nested=NestedSetup(merge=merge_list(merge), filter_timing=timing))


DESIGNS: dict[str, Design] = {
    d.name: d for d in (
        _V9,
        Design(name="minimal", policy=policy("fred-minimal"), expected=Verdict.HOLDS,
               source=f"{_REVIEW} (Chao Gao)",
               summary="review alternative: STKLVLS and CONFIG intercepted, the rest as v9"),
        Design(name="intercept-all", policy=policy("intercept-all"), expected=Verdict.HOLDS,
               source=_REVIEW, summary="review alternative: every FRED MSR access is emulated"),
        Design(name="invalidate-cache", policy=policy("fred-v9"), put_sync=PutSync.INVALIDATE,
               expected=Verdict.HOLDS, source=f"{_REVIEW} (H. Peter Anvin)",
               summary="review alternative: vCPU put sets the rsp0 cache to 0 instead of syncing"),
        Design(name="host-fields-from-msrs", policy=policy("fred-v9"),
               host_fields=HostFields.MSRS, expected=Verdict.HOLDS,
               source="Sean Christopherson, v9 07 review (aahchI7oiFrjFAmb@google.com)",
               summary="review alternative: KVM writes the host's own RSP1-3 and SSP1-3 (read"
               " from the MSRs) to the VMCS host fields, the rest as v9"),
        on_host(_V9, HOST_CONFIGS["cet-xsaves"]),
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
        # The planted host variants: v9's KVM code on a kernel it was not written for.
        on_host(_V9, HOST_CONFIGS["stack-map-changed"]),
        on_host(_V9, HOST_CONFIGS["host-supervisor-shstk"]),
        _nested("nested-upstream", "nested: L0 merges Linux v6.19's list (no FRED MSR) into"
                " vmcs02", "upstream"),
        _nested("nested-v9", "nested: L0 merges v6.19's list and FRED_RSP0 (v9 patch 19)", "v9"),
        _nested("nested-fred-all", "nested: L0 merges v6.19's list and all nine FRED MSRs (the"
                " review's request)", "fred-all"),
        _nested("nested-filter-window", "nested, fred-all: L0's filter changes while L2 runs and"
                " vmcs02 keeps its bits until L1's next VMRESUME (v6.19)", "fred-all",
                expected=Verdict.FAILS, timing=FilterTiming.WHILE_L2_STALE,
                source=f"{_NESTED}; vmx.c vmx_recalc_msr_intercepts changes vmcs01 only",
                finding="until L1's next VMLAUNCH/VMRESUME, L0's new filter does not hold for"
                " L2's accesses to the MSRs vmcs02 merged (the FRED MSRs under fred-all, RSP0"
                " under v9, PL0_SSP and the other merged MSRs under every list)"),
        _nested("nested-filter-rebuilt", "nested, fred-all: L0's filter changes while L2 runs and"
                " KVM rebuilds vmcs02 with vmcs01 (a fix of the window)", "fred-all",
                timing=FilterTiming.WHILE_L2_REBUILT,
                source=f"msrvirt's alternative to v6.19's lazy vmcs02; {_NESTED}"),
        _nested("nested-merge-no-l1", "nested, fred-all: the merge ignores L1's bitmap",
                "fred-all", expected=Verdict.FAILS, faults=frozenset({Fault.MERGE_IGNORES_L1}),
                source=f"planted bug; {_NESTED}"),
        _nested("nested-merge-no-vmcs01", "nested, fred-all: the merge ignores vmcs01's bitmap"
                " (L0's filter)", "fred-all", expected=Verdict.FAILS,
                faults=frozenset({Fault.MERGE_IGNORES_VMCS01}), source=f"planted bug; {_NESTED}"),
        _nested("nested-exit-no-host-load", "nested, v9: a nested exit does not load L1's FRED"
                " host fields from vmcs12", "v9", expected=Verdict.FAILS,
                faults=frozenset({Fault.NESTED_EXIT_NO_HOST_LOAD}),
                source=f"planted bug; {_NESTED}"),
        _nested("nested-exit-no-guest-save", "nested, v9: a nested exit does not save L2's FRED"
                " state to vmcs12", "v9", expected=Verdict.FAILS,
                faults=frozenset({Fault.NESTED_EXIT_NO_GUEST_SAVE}),
                source=f"planted bug; {_NESTED}"),
    )
}


def design(name: str) -> Design:
    """Return the design called ``name``, or ``DESIGN@HOST``: a design on a host configuration.

    Raises UnknownNameError naming the known designs or host configurations.
    """
    found = DESIGNS.get(name)
    if found is not None:
        return found
    base, sep, host_name = name.partition("@")
    if sep and base in DESIGNS and DESIGNS[base].host is LINUX:
        if DESIGNS[base].nested is not None:
            # machine/nested.py declares L0's host deliveries for Linux v6.19 only.
            raise UsageError(f"design {name!r}: a nested design runs on the default host only")
        return on_host(DESIGNS[base], host_config(host_name))
    raise UnknownNameError("design", name, "one of " + ", ".join(DESIGNS)
                           + ", or DESIGN@HOST with HOST one of " + ", ".join(HOST_CONFIGS))

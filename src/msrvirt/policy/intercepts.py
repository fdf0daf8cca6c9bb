"""Run a policy's recomputation for a scenario: the exact bitmap, and which rule set each bit.

Follows `vmx_set_intercept_for_msr` (kvm-msr-facts.md section 2): for each direction of a
rule, the bit is cleared only if the rule does not intercept AND the userspace filter
allows that direction; otherwise it is set.  Bits no rule touches stay set (KVM creates
the page all ones).  On PVM there is no bitmap: every access exits.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from msrvirt.arch.hosts import HwCap
from msrvirt.arch.kvm import Access, Backend
from msrvirt.arch.msrs import BY_INDEX, X2APIC_RANGE, Check, index_of
from msrvirt.errors import UsageError
from msrvirt.policy.bitmap import DIRECTIONS_OF, MsrBitmap, SvmMsrpm, VmxMsrBitmap
from msrvirt.policy.policies import Policy, Rule
from msrvirt.policy.scenario import Scenario


@dataclass(frozen=True, slots=True, kw_only=True)
class Setting:
    """The last rule that set one (MSR, direction), and what it asked for."""

    rule: Rule
    wanted_intercept: bool
    filter_denied: bool  # the rule asked for passthrough but the filter forced an intercept

    @property
    def intercept(self) -> bool:
        return self.wanted_intercept or self.filter_denied


@dataclass(frozen=True, slots=True, kw_only=True)
class Intercepts:
    """The outcome of one recomputation."""

    bitmap: MsrBitmap | None  # None: the backend has no MSR bitmap (PVM)
    # (msr, direction) -> (last rule that set it, rule wanted intercept, filter denied); plain
    # tuples because a recomputation makes dozens of them.
    settings: dict[tuple[int, Access], tuple[Rule, bool, bool]]
    skipped: tuple[Rule, ...]  # rules whose condition did not hold
    # The (msr, direction) pairs whose bit is clear: the page's clear bits as a set, so the
    # per-access test is one hash lookup (tests check it against the page).
    clear: frozenset[tuple[int, Access]]
    # (msr, direction) -> why KVM cleared it outside the recomputation (the x2APIC MSRs
    # with APIC virtualization: they are changed on demand and cannot be filtered).
    on_demand: dict[tuple[int, Access], str]

    def intercepted(self, msr: int, access: Access) -> bool:
        """Whether a guest access (R or W) exits."""
        return (msr, access) not in self.clear

    def setting(self, msr: int, access: Access) -> Setting | None:
        """The last rule that set (msr, access), or None if no rule touched it."""
        found = self.settings.get((msr, access))
        if found is None:
            return None
        rule, wanted, denied = found
        return Setting(rule=rule, wanted_intercept=wanted, filter_denied=denied)


def check_backend(policy: Policy, backend: Backend) -> None:
    """Raise UsageError if ``policy`` does not describe KVM on ``backend``."""
    if backend not in policy.backends:
        names = ", ".join(sorted(b.value for b in policy.backends))
        raise UsageError(f"policy {policy.name} is for {names} hosts, not {backend.value}")


@lru_cache(maxsize=4096)
def compute_intercepts(scenario: Scenario) -> Intercepts:
    """Run ``scenario.policy``'s rules in order against the scenario's caps and filter."""
    policy = scenario.policy
    backend = scenario.host.backend
    check_backend(policy, backend)
    # Later rules override earlier ones bit by bit, as in the kernel; the page itself is
    # built from the final settings (equivalent, and cheaper than replaying every change).
    settings: dict[tuple[int, Access], tuple[Rule, bool, bool]] = {}
    skipped = []
    flt = scenario.filter
    # With no filter ranges and DEFAULT_ALLOW every access is allowed: skip the lookups.
    unfiltered = flt.default_allow and flt.is_empty
    allows = flt.allows
    for rule in policy.rules:
        if not rule.runs(scenario):
            skipped.append(rule)
            continue
        want = rule.intercept(scenario)
        directions = DIRECTIONS_OF[rule.access]
        for msr in rule.msrs:
            for direction in directions:
                denied = not want and not unfiltered and not allows(msr, direction)
                settings[(msr, direction)] = (rule, want, denied)
    # intercept-all, a policy with no rules, stands for a bitmap that stays all ones.
    on_demand = x2apic_passthrough(scenario) if policy.rules else {}
    bitmap: MsrBitmap | None
    changes = [(msr, d, want or denied) for (msr, d), (_, want, denied) in settings.items()]
    changes += [(msr, d, False) for (msr, d) in on_demand if (msr, d) not in settings]
    if backend is Backend.VMX:
        bitmap = VmxMsrBitmap.from_changes(changes)
    elif backend is Backend.SVM:
        bitmap = SvmMsrpm.from_changes(changes)
    else:
        bitmap = None
    # Every rule MSR lies inside its backend's bitmap ranges (tests/test_policies.py checks
    # it), so a pair no rule intercepts is exactly a clear bit.
    clear: frozenset[tuple[int, Access]] = frozenset() if bitmap is None else frozenset(
        (msr, d) for msr, d, intercept in changes if not intercept)
    return Intercepts(bitmap=bitmap, settings=settings, skipped=tuple(skipped), clear=clear,
                      on_demand=on_demand)


_R, _W = Access.R, Access.W
_READABLE = (Check.X2APIC_RW, Check.X2APIC_RO, Check.X2APIC_ESR, Check.X2APIC_ICR)
_TPR, _EOI, _SELF_IPI, _ICR, _TMCCT = (index_of(n) for n in (
    "X2APIC_TPR", "X2APIC_EOI", "X2APIC_SELF_IPI", "X2APIC_ICR", "X2APIC_TMCCT"))
# avic_set_x2apic_msr_interception's list; LVTT stays intercepted (TSC-deadline mode).
_X2AVIC = tuple(index_of(f"X2APIC_{n}") for n in (
    "ID", "VERSION", "TPR", "APR", "PPR", "EOI", "RRR", "LDR", "DFR", "SIVR", "ISR0", "TMR0",
    "IRR0", "ESR", "ICR", "ICR2", "LVTTHMR", "LVTPC", "LVT0", "LVT1", "LVTERR", "TMICT",
    "TMCCT", "TDCR"))


def x2apic_passthrough(s: Scenario) -> dict[tuple[int, Access], str]:
    """The x2APIC (MSR, direction) pairs KVM passes through on demand, and why.

    VMX (vmx_update_msr_bitmap_x2apic): with the in-kernel APIC in x2APIC mode and the
    "virtualize x2APIC mode" control, TPR reads and writes; with APICv active also reads
    of every register kvm_lapic_readable_reg_mask names except TMCCT, writes of EOI and
    SELF_IPI, and ICR with IPI virtualization.  SVM (avic_activate_vmcb): with x2AVIC
    active in x2APIC mode, reads and writes of avic_set_x2apic_msr_interception's list.
    """
    rt, host = s.runtime, s.host
    if not (rt.lapic_in_kernel and rt.x2apic_mode):
        return {}
    apicv = host.params.enable_apicv and not rt.apicv_inhibited
    out: dict[tuple[int, Access], str] = {}
    if host.backend is Backend.VMX and HwCap.VIRT_X2APIC in host.hw_caps:
        out[(_TPR, _R)] = out[(_TPR, _W)] = "virtualize x2APIC mode: TPR is virtualized"
        if apicv:
            cmci = rt.mcg_cap & (1 << 10)
            for msr in X2APIC_RANGE[:0x40]:
                check = BY_INDEX[msr].write.check
                if (check in _READABLE or (check is Check.X2APIC_CMCI and cmci)) \
                        and msr != _TMCCT:
                    out[(msr, _R)] = "APICv: APIC-register virtualization reads it"
            out[(_EOI, _W)] = out[(_SELF_IPI, _W)] = "APICv: virtual-interrupt delivery"
            if host.params.enable_ipiv:
                out[(_ICR, _R)] = out[(_ICR, _W)] = "APICv with IPI virtualization"
    elif host.backend is Backend.SVM and HwCap.X2AVIC in host.hw_caps and apicv:
        for msr in _X2AVIC:
            out[(msr, _R)] = out[(msr, _W)] = "x2AVIC: AVIC virtualizes the x2APIC registers"
    return out

"""KVM's MSR intercept policies as data: ordered rules, each with its condition, source and why.

A rule is one call (per MSR) of `vmx_set_intercept_for_msr` / `svm_set_intercept_for_msr`
inside the recomputation (`vmx_recalc_msr_intercepts`, `svm_recalc_msr_intercepts`):
when its condition holds it sets each MSR's intercept for its directions, and the
userspace filter can still force an intercept (kvm-msr-facts.md sections 2-3).
Rules run in order; a later rule overrides an earlier one for the same bit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from msrvirt.arch.cpuid import Feature
from msrvirt.arch.hosts import HwCap, PtMode
from msrvirt.arch.kernel import FRED_V9, SVM_FRED, Cite, cite
from msrvirt.arch.kvm import Access, Backend, Vendor
from msrvirt.arch.msrs import FRED_MSRS, index_of
from msrvirt.errors import UnknownNameError
from msrvirt.policy.scenario import Scenario

F = Feature
Pred = Callable[[Scenario], bool]


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """One intercept rule: for ``msrs`` x ``access``, intercept = ``intercept(s)`` when ``runs(s)``."""

    id: str
    msrs: tuple[int, ...]
    access: Access
    runs: Pred
    intercept: Pred
    runs_when: str  # the condition, in words
    intercept_when: str  # when the rule intercepts, in words
    pass_when: str  # when the rule passes through, in words
    source: str
    rationale: str
    kernel: tuple[Cite, ...] = ()  # the kernel function(s) it follows (every built-in has one)


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """A named KVM intercept policy for some backends."""

    name: str
    backends: frozenset[Backend]
    rules: tuple[Rule, ...]
    kvm_lacks: frozenset[Feature]  # features this KVM version cannot offer guests
    description: str
    source: str
    # Every MSR some rule of this policy can pass through (derived from ``rules``).
    touched: frozenset[int] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "touched", frozenset(m for r in self.rules for m in r.msrs))


def _always(_: Scenario) -> bool:
    return True


def _never(_: Scenario) -> bool:
    return False


def _kvm(feat: Feature) -> Pred:
    return lambda s: feat in s.kvm_caps


def _lacks(*feats: Feature) -> Pred:
    """Intercept when the guest has none of ``feats``."""
    fs = frozenset(feats)
    return lambda s: fs.isdisjoint(s.guest_caps)


def _guest_pred_cmd(s: Scenario) -> bool:
    # guest_has_pred_cmd_msr: SPEC_CTRL (Intel IBRS/IBPB) or AMD IBPB.
    return not {F.SPEC_CTRL, F.IBPB}.isdisjoint(s.guest_caps)


def _host_ibpb(s: Scenario) -> bool:
    # X86_FEATURE_IBPB is set from Intel SPEC_CTRL or AMD IBPB.
    return not {F.SPEC_CTRL, F.IBPB}.isdisjoint(s.host.features)


def _guest_spec_ctrl(s: Scenario) -> bool:
    return not {F.SPEC_CTRL, F.AMD_STIBP, F.AMD_IBRS, F.AMD_SSBD}.isdisjoint(s.guest_caps)


_VMX = "kvm-msr-facts.md section 3"
_SVM = "kvm-svm-common-pvm-facts.md 1b [S1: kvm-x86 svm.c svm_recalc_msr_intercepts @0149b498]"
VMX_RECALC = cite("vmx/vmx.c", "vmx_recalc_msr_intercepts", "vmx_set_intercept_for_msr")
SVM_RECALC = cite("svm/svm.c", "svm_recalc_msr_intercepts", "svm_set_intercept_for_msr")
SEV_RECALC = cite("svm/sev.c", "sev_es_recalc_msr_intercepts")
FRED_SERIES = Cite(file="arch/x86/kvm/vmx/vmx.c", functions=("vmx_recalc_msr_intercepts",),
                   tree=FRED_V9)

# The MSRs the rules name, through the MSR table (arch/msrs.py).
_I = index_of
TSC, FS_BASE, GS_BASE, KERNEL_GS_BASE = _I("IA32_TSC"), _I("FS_BASE"), _I("GS_BASE"), _I(
    "KERNEL_GS_BASE")
SYSENTER_CS, SYSENTER_ESP, SYSENTER_EIP = (_I("IA32_SYSENTER_CS"), _I("IA32_SYSENTER_ESP"),
                                           _I("IA32_SYSENTER_EIP"))
SYSENTER = (SYSENTER_CS, SYSENTER_ESP, SYSENTER_EIP)
CSTATES = tuple(_I(n) for n in ("CORE_C1_RES", "CORE_C3_RESIDENCY", "CORE_C6_RESIDENCY",
                                "CORE_C7_RESIDENCY"))
MPERF, APERF = _I("IA32_MPERF"), _I("IA32_APERF")
PT_PASSABLE = tuple(_I(n) for n in (
    "IA32_RTIT_STATUS", "IA32_RTIT_OUTPUT_BASE", "IA32_RTIT_OUTPUT_MASK", "IA32_RTIT_CR3_MATCH",
    "IA32_RTIT_ADDR0_A", "IA32_RTIT_ADDR0_B", "IA32_RTIT_ADDR1_A", "IA32_RTIT_ADDR1_B"))
XFD, XFD_ERR, SPEC_CTRL, PRED_CMD, FLUSH_CMD = (_I("IA32_XFD"), _I("IA32_XFD_ERR"),
                                                _I("IA32_SPEC_CTRL"), _I("IA32_PRED_CMD"),
                                                _I("IA32_FLUSH_CMD"))
PL_SSP = tuple(_I(f"IA32_PL{i}_SSP") for i in range(4))
PL0_SSP = PL_SSP[0]
U_CET, S_CET = _I("IA32_U_CET"), _I("IA32_S_CET")
FRED_ALL = tuple(m.index for m in FRED_MSRS)
FRED_RSP0 = _I("IA32_FRED_RSP0")
FRED_STACKS = tuple(_I(n) for n in ("IA32_FRED_RSP0", "IA32_FRED_RSP1", "IA32_FRED_RSP2",
                                    "IA32_FRED_RSP3", "IA32_FRED_SSP1", "IA32_FRED_SSP2",
                                    "IA32_FRED_SSP3"))
STAR, LSTAR, CSTAR, SFMASK, EFER, PAT, TSC_AUX, XSS = (
    _I("IA32_STAR"), _I("IA32_LSTAR"), _I("IA32_CSTAR"), _I("IA32_FMASK"), _I("IA32_EFER"),
    _I("IA32_PAT"), _I("IA32_TSC_AUX"), _I("IA32_XSS"))
LBR = tuple(_I(n) for n in ("LASTBRANCHFROMIP", "LASTBRANCHTOIP", "LASTINTFROMIP",
                            "LASTINTTOIP"))
DEBUGCTL, SEV_ES_GHCB = _I("IA32_DEBUGCTL"), _I("SEV_ES_GHCB")


def _rule(id: str, msrs: tuple[int, ...], access: Access, *, runs: Pred = _always,
          runs_when: str = "always", intercept: Pred = _never, intercept_when: str = "never",
          pass_when: str = "always", source: str, rationale: str,
          kernel: tuple[Cite, ...] | None = None) -> Rule:
    if kernel is None:
        kernel = (SVM_RECALC,) if id.startswith("svm-") else (VMX_RECALC,)
    return Rule(id=id, msrs=msrs, access=access, runs=runs, intercept=intercept,
                runs_when=runs_when, intercept_when=intercept_when, pass_when=pass_when,
                source=source, rationale=rationale, kernel=kernel)


VMX_UPSTREAM: tuple[Rule, ...] = (
    _rule("vmx-1", (TSC,), Access.R, source=f"{_VMX} rule 1",
          rationale="reading the TSC is frequent and the offset/scaling are applied by hardware"),
    _rule("vmx-2", (FS_BASE, GS_BASE, KERNEL_GS_BASE), Access.RW,
          runs_when="64-bit host (always, in this model)",
          source=f"{_VMX} rule 2",
          rationale="segment bases are switched by the VMCS or on vCPU load; no reason to trap"),
    _rule("vmx-3", SYSENTER, Access.RW, source=f"{_VMX} rule 3",
          rationale="SYSENTER MSRs have VMCS guest/host fields"),
    _rule("vmx-4", CSTATES, Access.R, runs=lambda s: s.runtime.cstates_in_guest,
          runs_when="C-states are in the guest (runtime cstates_in_guest)",
          source=f"{_VMX} rule 4", rationale="the guest owns the core's idle states"),
    _rule("vmx-5", (APERF, MPERF), Access.R, runs=lambda s: s.runtime.aperfmperf_in_guest,
          runs_when="APERF/MPERF are in the guest (runtime aperfmperf_in_guest)",
          source=f"{_VMX} rule 5", rationale="the guest reads the real counters"),
    _rule("vmx-6", PT_PASSABLE, Access.RW,
          runs=lambda s: s.host.params.pt_mode is PtMode.HOST_GUEST,
          runs_when="kvm_intel.pt_mode=1 (host-guest)",
          intercept=lambda s: not s.runtime.pt_tracing,
          intercept_when="guest tracing is off (RTIT_CTL.TraceEn clear)",
          pass_when="guest is tracing",
          source=f"{_VMX} rule 6; vmx.c pt_update_intercept_for_msr",
          kernel=(VMX_RECALC, cite("vmx/vmx.c", "pt_update_intercept_for_msr")),
          rationale="while the guest traces, its PT MSRs are loaded on the CPU"),
    _rule("vmx-7", (XFD,), Access.RW, runs=lambda s: s.runtime.xfd_no_write_intercept,
          runs_when="after the guest's first non-zero XFD write (runtime xfd_no_write_intercept)",
          source=f"{_VMX} rule 7",
          rationale="a guest that uses XFD writes it on context switches"),
    _rule("vmx-8", (SPEC_CTRL,), Access.RW, intercept=lambda s: not s.runtime.spec_ctrl_nonzero,
          intercept_when="until the guest's first non-zero write (runtime spec_ctrl_nonzero)",
          pass_when="guest wrote a non-zero value",
          source=f"{_VMX} rule 8",
          rationale="guests that never use SPEC_CTRL save KVM the save/restore"),
    _rule("vmx-9", (XFD_ERR,), Access.R, runs=_kvm(F.XFD), runs_when="KVM supports XFD",
          intercept=_lacks(F.XFD), intercept_when="guest lacks XFD",
          pass_when="guest has XFD",
          source=f"{_VMX} rule 9", rationale="#NM handlers read XFD_ERR"),
    _rule("vmx-10", (PRED_CMD,), Access.W, runs=_host_ibpb, runs_when="host has IBPB",
          intercept=lambda s: not _guest_pred_cmd(s), intercept_when="guest lacks PRED_CMD",
          pass_when="guest has PRED_CMD",
          source=f"{_VMX} rule 10", rationale="IBPB on context switch is frequent"),
    _rule("vmx-11", (FLUSH_CMD,), Access.W, runs=lambda s: F.FLUSH_L1D in s.host.features,
          runs_when="host has FLUSH_L1D",
          intercept=_lacks(F.FLUSH_L1D), intercept_when="guest lacks FLUSH_L1D",
          pass_when="guest has FLUSH_L1D",
          source=f"{_VMX} rule 11", rationale="L1D flushes are a hot mitigation path"),
    _rule("vmx-12", PL_SSP, Access.RW, runs=_kvm(F.SHSTK), runs_when="KVM supports SHSTK",
          intercept=_lacks(F.SHSTK), intercept_when="guest lacks SHSTK",
          pass_when="guest has SHSTK",
          source=f"{_VMX} rule 12",
          rationale="with shadow stacks the PLx_SSP MSRs live in XSAVE state KVM switches anyway"),
    _rule("vmx-13", (U_CET, S_CET), Access.RW,
          runs=lambda s: not {F.SHSTK, F.IBT}.isdisjoint(s.kvm_caps),
          runs_when="KVM supports SHSTK or IBT",
          intercept=_lacks(F.SHSTK, F.IBT), intercept_when="guest has neither IBT nor SHSTK",
          pass_when="guest has IBT or SHSTK",
          source=f"{_VMX} rule 13", rationale="CET control MSRs are context switched"),
)

_SEED = "seed patch v9 08/22 (kvm-msr-facts.md section 3 rule 14)"

FRED_V9_RULE = _rule(
    "v9-14", FRED_ALL, Access.RW, runs=_kvm(F.FRED), runs_when="KVM supports FRED",
    intercept=_lacks(F.FRED), intercept_when="guest lacks FRED", source=_SEED,
    kernel=(FRED_SERIES,),
          pass_when="guest has FRED",
    rationale="eight have VMCS guest/host fields (hardware switches them atomically); RSP0 is"
    " used only for events from ring 3, so KVM can run with the guest value and switch it lazily",
)

FRED_MINIMAL_RULE = _rule(
    "minimal-14", FRED_STACKS, Access.RW, runs=_kvm(F.FRED), runs_when="KVM supports FRED",
    intercept=_lacks(F.FRED), intercept_when="guest lacks FRED", pass_when="guest has FRED",
    source="review (Chao Gao, Nov 2025): kvm-msr-facts.md section 10", kernel=(FRED_SERIES,),
    rationale="RSPs and SSPs are per task and context switched often; STKLVLS and CONFIG are"
    " written once at CPU bring-up, so they stay intercepted",
)

FRED_V6_PL0_SSP_RULE = _rule(
    "v6-pl0", (PL0_SSP,), Access.RW, runs=_kvm(F.FRED), runs_when="KVM supports FRED",
    intercept=_lacks(F.FRED), intercept_when="guest lacks FRED", pass_when="guest has FRED",
    source="FRED v6 (kvm-msr-facts.md section 10: PL0_SSP toggled with FRED; rejected)",
    kernel=(FRED_SERIES,),
    rationale="FRED_SSP0 is PL0_SSP, so it followed the FRED MSRs; runs after the CET rule and"
    " overrides it",
)

SVM_UPSTREAM: tuple[Rule, ...] = (
    _rule("svm-star", (STAR,), Access.RW, source=_SVM, rationale="saved/loaded by VMSAVE/VMLOAD"),
    _rule("svm-sysenter-cs", (SYSENTER_CS,), Access.RW, source=_SVM,
          rationale="saved/loaded by VMSAVE/VMLOAD"),
    _rule("svm-64bit", (GS_BASE, FS_BASE, KERNEL_GS_BASE, LSTAR, CSTAR, SFMASK), Access.RW,
          runs_when="64-bit build (always, in this model)", source=_SVM,
          rationale="saved/loaded by VMSAVE/VMLOAD or the VMCB"),
    _rule("svm-lbr", LBR, Access.RW, runs=lambda s: HwCap.LBRV in s.host.hw_caps,
          runs_when="kvm_amd.lbrv", intercept=lambda s: not s.runtime.lbrv_active,
          intercept_when="LBR virtualization off in the current VMCB (runtime lbrv_active)",
          pass_when="LBRV active",
          source=_SVM, rationale="with LBRV the VMCB holds the LBR MSRs"),
    _rule("svm-debugctl", (DEBUGCTL,), Access.RW,
          runs=lambda s: HwCap.LBRV in s.host.hw_caps,
          runs_when="kvm_amd.lbrv",
          intercept=lambda s: not (s.runtime.sev_es and s.runtime.lbrv_active),
          intercept_when="not an SEV-ES guest with LBRV active",
          pass_when="SEV-ES guest with LBRV active",
          source=_SVM, rationale="only SEV-ES guests get DEBUGCTL passed through"),
    _rule("svm-pred-cmd", (PRED_CMD,), Access.W, runs=_host_ibpb, runs_when="host has IBPB",
          intercept=lambda s: not _guest_pred_cmd(s), intercept_when="guest lacks PRED_CMD",
          pass_when="guest has PRED_CMD",
          source=_SVM, rationale="IBPB on context switch is frequent"),
    _rule("svm-flush-cmd", (FLUSH_CMD,), Access.W,
          runs=lambda s: F.FLUSH_L1D in s.host.features, runs_when="host has FLUSH_L1D",
          intercept=_lacks(F.FLUSH_L1D), intercept_when="guest lacks FLUSH_L1D",
          pass_when="guest has FLUSH_L1D",
          source=_SVM, rationale="L1D flushes are a hot mitigation path"),
    _rule("svm-spec-ctrl", (SPEC_CTRL,), Access.RW,
          intercept=lambda s: not _guest_spec_ctrl(s) if HwCap.V_SPEC_CTRL in s.host.hw_caps
          else not s.runtime.spec_ctrl_nonzero,
          intercept_when="with V_SPEC_CTRL: guest lacks SPEC_CTRL; without: until the first"
          " non-zero write",
          pass_when="with V_SPEC_CTRL: guest has SPEC_CTRL; without: after a non-zero write",
          source=_SVM, rationale="V_SPEC_CTRL keeps the guest value in the VMCB"),
    _rule("svm-sysenter-eip-esp", (SYSENTER_ESP, SYSENTER_EIP), Access.RW,
          intercept=lambda s: s.vendor is Vendor.INTEL,
          intercept_when="guest CPUID vendor is Intel-compatible",
          pass_when="guest CPUID vendor is AMD",
          source=_SVM, rationale="AMD stores only 32 bits; KVM keeps the high halves for"
          " Intel-compatible guests"),
    _rule("svm-aperfmperf", (APERF, MPERF), Access.R,
          intercept=lambda s: not s.runtime.aperfmperf_in_guest,
          intercept_when="APERF/MPERF not in the guest", source=_SVM,
          pass_when="APERF/MPERF in the guest",
          rationale="the guest reads the real counters"),
    _rule("svm-cet", (U_CET, S_CET, *PL_SSP), Access.RW, runs=_kvm(F.SHSTK),
          runs_when="KVM supports SHSTK", intercept=_lacks(F.SHSTK),
          intercept_when="guest lacks SHSTK", source=_SVM,
          pass_when="guest has SHSTK",
          rationale="with shadow stacks the CET state is switched by XSAVES/VMCB"),
    _rule("svm-sev-es", (SEV_ES_GHCB, EFER, PAT), Access.RW, runs=lambda s: s.runtime.sev_es,
          runs_when="SEV-ES guest (runtime sev_es)",
          source=f"{_SVM}; [S3] sev_es_recalc_msr_intercepts", kernel=(SVM_RECALC, SEV_RECALC),
          rationale="hardware context-switches them for SEV-ES"),
    _rule("svm-sev-es-tsc-aux", (TSC_AUX,), Access.RW,
          runs=lambda s: s.runtime.sev_es and HwCap.V_TSC_AUX in s.host.hw_caps,
          runs_when="SEV-ES guest and V_TSC_AUX", intercept=_lacks(F.RDTSCP, F.RDPID),
          intercept_when="guest has neither RDTSCP nor RDPID",
          pass_when="guest has RDTSCP or RDPID", kernel=(SVM_RECALC, SEV_RECALC),
          source=f"{_SVM}; [S3]", rationale="V_TSC_AUX virtualizes TSC_AUX"),
    _rule("svm-sev-es-xss", (XSS,), Access.RW, runs=lambda s: s.runtime.sev_es,
          runs_when="SEV-ES guest", intercept=_lacks(F.XSAVES),
          intercept_when="guest lacks XSAVES", source=f"{_SVM}; [S3]",
          kernel=(SVM_RECALC, SEV_RECALC),
          pass_when="guest has XSAVES",
          rationale="XSS is switched by hardware for SEV-ES"),
)

SVM_FRED_RULE = _rule(
    "svm-fred", FRED_ALL, Access.RW, runs=_kvm(F.FRED), runs_when="KVM supports FRED",
    intercept=_lacks(F.FRED), intercept_when="guest lacks FRED (Sean's v2 condition)",
          pass_when="guest has FRED",
    source="AMD SVM FRED series 2/7 (2026-01-29) and review: kvm-svm-common-pvm-facts.md 1c",
    kernel=(Cite(file="arch/x86/kvm/svm/svm.c", functions=("svm_recalc_fred_msr_intercepts",),
                 tree=SVM_FRED),),
    rationale="VMCB FRED fields; RSP0 saved/restored around VMRUN in software",
)

_BITMAP_BACKENDS = frozenset({Backend.VMX})
_FRED: frozenset[Feature] = frozenset()  # KVM versions with FRED support lack nothing
_NO_FRED = frozenset({F.FRED})

POLICIES: dict[str, Policy] = {
    p.name: p for p in (
        Policy(name="upstream", backends=_BITMAP_BACKENDS, rules=VMX_UPSTREAM,
               kvm_lacks=_NO_FRED,
               description="kvm-x86 2026 (CET merged in 6.18), no FRED virtualization",
               source=_VMX),
        Policy(name="fred-v9", backends=_BITMAP_BACKENDS, rules=(*VMX_UPSTREAM, FRED_V9_RULE),
               kvm_lacks=_FRED,
               description="the seed: upstream plus all nine FRED MSRs passed through for FRED"
               " guests; PL0_SSP by the CET rule", source=_SEED),
        Policy(name="fred-minimal", backends=_BITMAP_BACKENDS,
               rules=(*VMX_UPSTREAM, FRED_MINIMAL_RULE), kvm_lacks=_FRED,
               description="review alternative: STKLVLS and CONFIG stay intercepted",
               source=FRED_MINIMAL_RULE.source),
        Policy(name="fred-v6", backends=_BITMAP_BACKENDS,
               rules=(*VMX_UPSTREAM, FRED_V9_RULE, FRED_V6_PL0_SSP_RULE), kvm_lacks=_FRED,
               description="earlier v6: PL0_SSP's intercept follows FRED too",
               source=FRED_V6_PL0_SSP_RULE.source),
        Policy(name="intercept-all", backends=frozenset(Backend), rules=(), kvm_lacks=_FRED,
               description="every MSR access exits (the bitmap stays all ones); FRED emulated",
               source="review alternative: kvm-msr-facts.md section 10"),
        Policy(name="svm-upstream", backends=frozenset({Backend.SVM}), rules=SVM_UPSTREAM,
               kvm_lacks=_NO_FRED, description="upstream SVM (svm_recalc_msr_intercepts)",
               source=_SVM),
        Policy(name="svm-fred", backends=frozenset({Backend.SVM}),
               rules=(*SVM_UPSTREAM, SVM_FRED_RULE), kvm_lacks=_FRED,
               description="AMD FRED series (2026): upstream SVM plus all nine FRED MSRs",
               source=SVM_FRED_RULE.source),
        Policy(name="pvm", backends=frozenset({Backend.PVM}), rules=(), kvm_lacks=_NO_FRED,
               description="PVM: no MSR bitmap, every guest RDMSR/WRMSR traps (#GP) and is"
               " emulated", source="kvm-svm-common-pvm-facts.md part 3"),
    )
}

DEFAULT_POLICY: dict[Backend, str] = {
    Backend.VMX: "fred-v9", Backend.SVM: "svm-fred", Backend.PVM: "pvm",
}


def policy(name: str) -> Policy:
    """The built-in policy called ``name``."""
    try:
        return POLICIES[name]
    except KeyError:
        raise UnknownNameError("policy", name, "one of " + ", ".join(POLICIES)) from None

"""The MSR table: one row per MSR that KVM v6.19 answers, with how it gates, checks and stores it.

Every index KVM's MSR code handles on a VMX, SVM or PVM host has a row here: the common
code (x86.c kvm_get_msr_common / kvm_set_msr_common and the pre-checks of __kvm_set_msr),
the vendor code (vmx/vmx.c vmx_get_msr / vmx_set_msr, svm/svm.c svm_get_msr /
svm_set_msr, PVM's pvm_get_msr / pvm_set_msr), the x2APIC registers (lapic.c), the PMU
(pmu.c, vmx/pmu_intel.c, svm/pmu.c), the machine-check banks, the MTRRs (mtrr.c),
Hyper-V (hyperv.c) and KVM's paravirtual MSRs.  Families are declared once and expanded
into one row per member (bank i, variable-range pair i, counter i); every index of a range
KVM routes to a family handler has a row, reserved slots included, so an index with no
row is one KVM answers with KVM_MSR_RET_UNSUPPORTED.  The Xen hypercall MSR has no row:
its index is chosen by userspace (KVM_XEN_HVM_CONFIG), so it is a scenario input.

Each row cites the kernel functions it follows (``kernel``, arch/kernel.py: Linux v6.19
unless a row says otherwise) and, in ``source``, the reference notes.  This module is
the only place an MSR index is written; everything else names MSRs through it
(`index_of`, `lookup`, the named ranges at the end).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from fnmatch import fnmatchcase

from msrvirt.arch.cpuid import Feature
from msrvirt.arch.kernel import FRED_V9, PVM_FORK, Cite, cite
from msrvirt.arch.kvm import U64, Access, Backend, KvmRet, Vendor
from msrvirt.arch.vmcs import GUEST_FIELDS, HOST_FIELDS, VmcsField
from msrvirt.errors import UnknownNameError, UsageError

F = Feature


class Family(StrEnum):
    """What an MSR is for; used to pick the default sets of `explain`."""

    FRED = "fred"
    CET = "cet"
    SYSCALL = "syscall"
    SEGMENT = "segment"
    TIME = "time"
    SPEC = "speculation"
    XSAVE = "xsave"
    TRACE = "trace"
    POWER = "power"
    APIC = "apic"
    MEMTYPE = "memtype"
    DEBUG = "debug"
    KVM_PV = "kvm-pv"
    PVM = "pvm"
    SVM = "svm"
    MCE = "mce"
    PMU = "pmu"
    VMX = "vmx"
    FEATURE = "feature"
    LEGACY = "legacy"
    HYPERV = "hyperv"


class Emul(StrEnum):
    """How KVM handles an intercepted access that passed the row's gates."""

    STORED = "stored"  # KVM keeps the value (VMCS field, software copy, XSAVE state)
    COMMAND = "command"  # write-only command: writes act, reads are UNSUPPORTED
    READ_ZERO = "read-zero"  # reads return 0, writes are UNSUPPORTED
    IGNORED = "ignored"  # reads return the reset value, writes are accepted and dropped
    SINK = "sink"  # writes are accepted and dropped, reads are UNSUPPORTED
    CONSTANT = "constant"  # reads return the reset value, writes are UNSUPPORTED
    READ_ONLY = "read-only"  # reads return the value, writes fail (1)
    UNSUPPORTED = "unsupported"  # KVM does not emulate it: every access is UNSUPPORTED
    HOST_WRITE = "host-write"  # only host-initiated writes are accepted; guest writes UNSUPPORTED
    HOST_STORED = "host-stored"  # host writes are stored, guest writes accepted and dropped
    HOST_ONLY = "host-only"  # guest accesses fail (1); host-initiated ones are accepted
    REFUSED = "refused"  # a reserved slot of a handled range: every access fails (1)
    X2APIC = "x2apic"  # lapic.c: fails (1) unless the in-kernel APIC is in x2APIC mode
    MCE = "mce"  # x86.c set_msr_mce / get_msr_mce
    MTRR = "mtrr"  # mtrr.c kvm_mtrr_set_msr / kvm_mtrr_get_msr
    PMU = "pmu"  # pmu.c and the vendor PMU: handled only while the PMU says it is valid
    VMX_CAP = "vmx-cap"  # VMX capability MSRs (vmx_get_vmx_msr / vmx_set_vmx_msr)
    HYPERV = "hyperv"  # hyperv.c kvm_hv_get_msr_common / kvm_hv_set_msr_common


class Check(StrEnum):
    """Which of KVM's rules decides an MSR's values (beyond canonical + reserved bits)."""

    NONE = "none"
    CET = "cet"  # kvm_is_valid_u_s_cet
    PAT = "pat"  # kvm_pat_valid: every byte a valid memory type (0, 1, 4, 5, 6, 7)
    MTRR_DEF_TYPE = "mtrr-def-type"  # type in {0, 1, 4, 5, 6}, bits outside 0xCFF clear
    MTRR_FIXED = "mtrr-fixed"  # every byte a valid MTRR type
    MTRR_VAR_BASE = "mtrr-var-base"  # type valid; bits 11:8 and above MAXPHYADDR clear
    MTRR_VAR_MASK = "mtrr-var-mask"  # bits 10:0 and above MAXPHYADDR clear
    TSC_AUX = "tsc-aux"  # Intel-compatible guest: bits 63:32 must be clear; else truncated
    CANONICALIZE = "canonicalize"  # SYSENTER_ESP/EIP: made canonical silently by KVM
    EFER = "efer"  # set_efer
    MISC_ENABLE = "misc-enable"  # kvm_set_msr_common MSR_IA32_MISC_ENABLE
    APIC_BASE = "apic-base"  # kvm_apic_set_base
    HWCR = "hwcr"  # kvm_set_msr_common MSR_K7_HWCR
    PRED_CMD = "pred-cmd"  # kvm_set_msr_common MSR_IA32_PRED_CMD
    FLUSH_CMD = "flush-cmd"  # kvm_set_msr_common MSR_IA32_FLUSH_CMD
    TSC_ADJUST = "tsc-adjust"  # stored only with guest TSC_ADJUST, else dropped
    MISC_FEATURES = "misc-features"  # MISC_FEATURES_ENABLES: bit 0 only, with CPUID faulting
    ASYNC_PF_EN = "async-pf-en"  # kvm_pv_enable_async_pf
    ASYNC_PF_INT = "async-pf-int"  # kvm_pv_enable_async_pf_int
    PV_EOI = "pv-eoi"  # kvm_lapic_set_pv_eoi
    XFD = "xfd"  # bits outside the guest's dynamic xfeatures
    XSS = "xss"  # bits outside guest_supported_xss
    PERF_CAP = "perf-cap"  # bits outside kvm_caps.supported_perf_cap
    SPEC_CTRL = "spec-ctrl"  # kvm_spec_ctrl_test_value (a hardware test)
    TSX_CTRL = "tsx-ctrl"  # vmx_set_msr MSR_IA32_TSX_CTRL
    FEAT_CTL = "feat-ctl"  # is_vmx_feature_control_msr_valid
    DEBUGCTL_VMX = "debugctl-vmx"  # vmx_is_valid_debugctl
    DEBUGCTL_SVM = "debugctl-svm"  # svm_set_msr MSR_IA32_DEBUGCTLMSR
    BNDCFGS = "bndcfgs"  # canonical base, bits 11:2 reserved
    TSC_RATIO = "tsc-ratio"  # svm_set_msr MSR_AMD64_TSC_RATIO
    VM_CR = "vm-cr"  # svm_set_vm_cr
    HSAVE_PA = "hsave-pa"  # svm_set_msr MSR_VM_HSAVE_PA: a guest write must be a page address
    DE_CFG = "de-cfg"  # svm_set_msr MSR_AMD64_DE_CFG
    SYSENTER_SVM = "sysenter-svm"  # SVM keeps 32 bits (+ the high half for Intel guests)
    VMX_CAP = "vmx-cap"  # vmx_set_vmx_msr
    MCG_CAP = "mcg-cap"
    MCG_CTL = "mcg-ctl"
    MCG_STATUS = "mcg-status"
    MCI_CTL = "mci-ctl"
    MCI_STATUS = "mci-status"
    MCI_OTHER = "mci-other"  # MCi_ADDR, MCi_MISC: any value
    MCI_CTL2 = "mci-ctl2"
    X2APIC_RW = "x2apic-rw"  # readable, writable (bits 63:32 reserved)
    X2APIC_RO = "x2apic-ro"  # readable, a write fails
    X2APIC_EOI = "x2apic-eoi"  # write-only
    X2APIC_SELF_IPI = "x2apic-self-ipi"  # write-only, bits 7:0 only
    X2APIC_ESR = "x2apic-esr"  # readable, only 0 may be written
    X2APIC_ICR = "x2apic-icr"  # one 64-bit register; X2APIC_ICR_RESERVED_BITS
    X2APIC_CMCI = "x2apic-cmci"  # LVTCMCI: exists only with MCG_CMCI_P
    X2APIC_RESERVED = "x2apic-reserved"  # not a register in x2APIC mode: every access fails
    PMU_GP_CTR = "pmu-gp-ctr"
    PMU_GP_SEL = "pmu-gp-sel"
    PMU_FW_CTR = "pmu-fw-ctr"  # full-width counter alias (IA32_PMCi)
    PMU_FIXED_CTR = "pmu-fixed-ctr"
    PMU_FIXED_CTRL = "pmu-fixed-ctrl"
    PMU_GLOBAL_STATUS = "pmu-global-status"
    PMU_GLOBAL_CTRL = "pmu-global-ctrl"
    PMU_GLOBAL_OVF = "pmu-global-ovf"
    PMU_PEBS_ENABLE = "pmu-pebs-enable"
    PMU_DS_AREA = "pmu-ds-area"
    PMU_PEBS_DATA_CFG = "pmu-pebs-data-cfg"
    AMD_K7_SEL = "amd-k7-sel"
    AMD_K7_CTR = "amd-k7-ctr"
    AMD_F15_SEL = "amd-f15-sel"
    AMD_F15_CTR = "amd-f15-ctr"
    AMD_GLOBAL_STATUS = "amd-global-status"
    AMD_GLOBAL_CTL = "amd-global-ctl"
    AMD_GLOBAL_CLR = "amd-global-clr"
    AMD_GLOBAL_SET = "amd-global-set"
    HV_STORED = "hv-stored"  # any value, read back
    HV_HYPERCALL = "hv-hypercall"
    HV_VP_INDEX = "hv-vp-index"
    HV_RESET = "hv-reset"
    HV_HOST_WRITE = "hv-host-write"  # read-only for the guest (TIME_REF_COUNT, frequencies...)
    HV_VAPIC = "hv-vapic"  # EOI / ICR / TPR through the in-kernel APIC
    HV_VP_ASSIST = "hv-vp-assist"
    HV_SYNIC = "hv-synic"
    HV_STIMER = "hv-stimer"
    HV_CRASH_CTL = "hv-crash-ctl"
    HV_TSC_EMULATION_STATUS = "hv-tsc-emulation-status"
    HV_TSC_INVARIANT = "hv-tsc-invariant"
    HV_SYNDBG = "hv-syndbg"
    HV_UNKNOWN = "hv-unknown"  # an index of a Hyper-V range KVM does not implement: fails (1)


class Cond(StrEnum):
    """A condition a gate needs besides guest CPUID (module parameters, VM and vCPU state).

    Evaluated by policy/emulate.py against the scenario; each names its kernel source.
    """

    PT_HOST_GUEST = "pt_mode=1"  # vmx_pt_mode_is_host_guest()
    NESTED = "nested"  # kvm_intel.nested / kvm_amd.nested
    SMM = "CONFIG_KVM_SMM"
    HYPERV = "CONFIG_KVM_HYPERV"
    LAPIC = "in-kernel local APIC"  # lapic_in_kernel()
    MPX = "kvm_mpx_supported()"
    TSX_CTRL = "ARCH_CAPABILITIES.TSX_CTRL_MSR"  # vcpu->arch.arch_capabilities bit 7
    LMCE = "FEAT_CTL.LMCE_ENABLED"  # vmx->msr_ia32_feature_control (0 at reset)
    INTEL_HOST = "Intel host"  # PVM handles FEAT_CTL only on Intel hosts (is_intel)
    PLATFORM_INFO_READ = "KVM_CAP_MSR_PLATFORM_INFO"  # guest_can_read_msr_platform_info


@dataclass(frozen=True, slots=True, kw_only=True)
class Need:
    """A CPUID requirement: every feature of ``all_of`` and, if given, one of ``any_of``."""

    any_of: frozenset[Feature] = frozenset()
    all_of: frozenset[Feature] = frozenset()
    never: bool = False  # no CPUID satisfies it (a check that always fails)

    def met(self, features: frozenset[Feature]) -> bool:
        if self.never:
            return False
        if self.all_of and not self.all_of <= features:
            return False
        return not self.any_of or not self.any_of.isdisjoint(features)

    def __str__(self) -> str:
        if self.never:
            return "never"
        parts = [" or ".join(sorted(self.any_of))] if self.any_of else []
        parts += sorted(self.all_of)
        return " and ".join(f"({p})" if " or " in p and len(parts) > 1 else p for p in parts)


ALWAYS = Need()
NEVER = Need(never=True)


def need(*any_of: Feature, all_of: Iterable[Feature] = ()) -> Need:
    return Need(any_of=frozenset(any_of), all_of=frozenset(all_of))


@dataclass(frozen=True, slots=True, kw_only=True)
class Gate:
    """A check KVM makes before it emulates: guest CPUID (``guest_cpu_cap_has``) and a condition.

    Gates run in order; the first that fails decides the result.  ``error`` OK means the
    write is accepted and dropped (e.g. TSC_ADJUST without the feature).
    """

    need: Need = ALWAYS
    cond: Cond | None = None
    access: Access = Access.RW  # which directions the gate applies to
    host: bool = True  # host-initiated accesses are gated too
    error: KvmRet = KvmRet.UNSUPPORTED  # what a failed gate returns
    pv: bool = False  # KVM PV feature: enforced only with KVM_CAP_ENFORCE_PV_FEATURE_CPUID
    raw_cpuid: bool = False  # guest_cpuid_has (the raw CPUID), not guest_cpu_cap_has


GUEST_FAILS = Gate(need=NEVER, host=False, error=KvmRet.ERR)  # "if (!host_initiated) return 1"


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteRule:
    """Which values a WRMSR (hardware or KVM) refuses: error 1 / #GP.

    ``unmodelled`` is the mask of bits whose acceptance depends on something the model
    does not know (a hardware test, guest memory, host values it was not given): a
    value with any of them set is decided but not exact, and ``missing`` says why.
    """

    canonical: bool = False  # must fit the linear-address width, sign-extended
    reserved: int = 0  # bits that must be clear (alignment included)
    check: Check = Check.NONE
    unmodelled: int = 0
    missing: str = ""

    @property
    def exact(self) -> bool:
        """Every value's fate is modelled (no ``unmodelled`` bits)."""
        return not self.unmodelled


ANY_VALUE = WriteRule()
CANONICAL = WriteRule(canonical=True)


def unknown_values(missing: str, mask: int = U64) -> WriteRule:
    """A write rule for an MSR whose non-zero values depend on ``missing``."""
    return WriteRule(unmodelled=mask, missing=missing)


class QuirkKind(StrEnum):
    """How one backend's KVM departs from the common behaviour of an MSR."""

    RESET = "reset"  # a different value after vCPU creation
    NO_GATE = "no-gate"  # the guest-CPUID gate is not applied (values other than 0 unverified)
    NO_VALUE_CHECK = "no-value-check"  # written values are not checked
    GATE_UNSUPPORTED = "gate-unsupported"  # a failed gate returns UNSUPPORTED, not its error


@dataclass(frozen=True, slots=True, kw_only=True)
class Quirk:
    """A backend-specific behaviour, observed on a real kernel (``evidence`` says where)."""

    backend: Backend
    kind: QuirkKind
    value: int = 0
    evidence: str


_PVM_6_18 = ("msrvirt conformance, scenario 08-common-msrs / 09-sweep, Linux 6.18.44 kvm_pvm,"
             " 2026-11-25 (docs/conformance.md)")
_PVM_SYNTHETIC = ("msrvirt conformance, scenarios 10/11 (synthetic-MSR sweeps), Linux 6.18.44"
                  " kvm_pvm, 2026-11 (docs/conformance.md)")
# The KVM PV MSRs' return code on this kernel: UNSUPPORTED, as in v6.19.9 (a stable fix),
# where v6.19 returns 1 (x86.c kvm_get_msr_common / kvm_set_msr_common).
_PV_UNSUPPORTED = (Quirk(backend=Backend.PVM, kind=QuirkKind.GATE_UNSUPPORTED,
                         evidence=f"{_PVM_SYNTHETIC}; v6.19.9 x86.c returns"
                         " KVM_MSR_RET_UNSUPPORTED there (docs/kernel-sources.md)"),)


@dataclass(frozen=True, slots=True, kw_only=True)
class Listed:
    """When an MSR is in one of KVM's index lists (x86.c kvm_init_msr_lists).

    ``need`` is on KVM's caps (kvm_cpu_cap_has; for msrs_to_save it stands for the host
    RDMSR that kvm_probe_msr_to_save tries), ``vendors`` the host CPUs where that RDMSR
    succeeds, ``backends`` where the vendor's has_emulated_msr / get_feature_msr says
    yes, ``cond`` a module parameter or build option it also needs.
    """

    need: Need = ALWAYS
    vendors: frozenset[Vendor] | None = None
    backends: frozenset[Backend] | None = None
    cond: Cond | None = None
    pmu: bool = False  # msrs_to_save_pmu: probed only with enable_pmu, counter < KVM's count


LISTED = Listed()
INTEL = frozenset({Vendor.INTEL})
AMD = frozenset({Vendor.AMD})
VMX_ONLY = frozenset({Backend.VMX})
SVM_ONLY = frozenset({Backend.SVM})
PVM_ONLY = frozenset({Backend.PVM})
NOT_SVM = frozenset({Backend.VMX, Backend.PVM})


@dataclass(frozen=True, slots=True, kw_only=True)
class Override:
    """How one backend's vendor code handles an MSR differently (``None`` keeps the row's)."""

    backend: Backend
    emul: Emul | None = None
    gates: tuple[Gate, ...] | None = None
    write: WriteRule | None = None
    reset: int | None = None
    kernel: tuple[Cite, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Msr:
    """One MSR: identity, KVM gating and checks, where KVM keeps it, and the source."""

    index: int
    name: str
    family: Family
    aliases: tuple[str, ...] = ()
    gates: tuple[Gate, ...] = ()
    write: WriteRule = ANY_VALUE
    emul: Emul = Emul.STORED
    # Backends whose vendor code handles this MSR; None = KVM's common code (every backend).
    handled_by: frozenset[Backend] | None = None
    overrides: tuple[Override, ...] = ()
    reset: int | None = 0  # value after vCPU creation, where the model knows it
    listed: Listed | None = None  # in KVM_GET_MSR_INDEX_LIST (msrs_to_save + emulated_msrs)
    feature: Listed | None = None  # in KVM_GET_MSR_FEATURE_INDEX_LIST (msr_based_features)
    unit: int = 0  # the member's number within its family (bank, pair, counter, register)
    # The gates and the canonical / reserved / CET checks are __kvm_set_msr's and
    # __kvm_get_msr's, made before the vendor code (so before ``handled_by`` matters).
    precheck: bool = False
    quirks: tuple[Quirk, ...] = ()
    kernel: tuple[Cite, ...] = ()
    source: str
    note: str = ""
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", (self.name, *self.aliases))

    def __str__(self) -> str:
        return f"{self.name} ({self.index:#x})"

    def quirk(self, backend: Backend, kind: QuirkKind) -> Quirk | None:
        """The quirk of ``kind`` this MSR has on ``backend``, if any."""
        for q in self.quirks:
            if q.backend is backend and q.kind is kind:
                return q
        return None

    def override(self, backend: Backend) -> Override | None:
        """How ``backend``'s vendor code departs from this row, if it does."""
        for o in self.overrides:
            if o.backend is backend:
                return o
        return None

    @property
    def vmcs_guest(self) -> VmcsField | None:
        """The VMCS guest-state field that holds this MSR, if any (arch/vmcs.py)."""
        return GUEST_FIELDS.get(self.name)

    @property
    def vmcs_host(self) -> VmcsField | None:
        """The VMCS host-state field that holds this MSR, if any."""
        return HOST_FIELDS.get(self.name)


# -- citations -----------------------------------------------------------------------------------

_FACTS = "kvm-msr-facts.md"
_ARCH = "fred-arch-facts.md"
_COMMON = "kvm-svm-common-pvm-facts.md"

X86_GET = cite("x86.c", "kvm_get_msr_common")
X86_SET = cite("x86.c", "kvm_set_msr_common")
X86_BOTH = cite("x86.c", "kvm_get_msr_common", "kvm_set_msr_common")
X86_PRE = cite("x86.c", "__kvm_set_msr", "__kvm_get_msr")
X86_FEATURES = cite("x86.c", "msr_based_features_all_except_vmx", "kvm_get_feature_msr")
X86_RESET = cite("x86.c", "kvm_vcpu_reset", "kvm_arch_vcpu_create")
VMX_MSR = cite("vmx/vmx.c", "vmx_get_msr", "vmx_set_msr")
VMX_RECALC = cite("vmx/vmx.c", "vmx_recalc_msr_intercepts")
SVM_MSR = cite("svm/svm.c", "svm_get_msr", "svm_set_msr")
PVM_MSR = cite("arch/x86/kvm/pvm/pvm.c", "pvm_get_msr", "pvm_set_msr", tree=PVM_FORK)
MCE_CITE = cite("x86.c", "set_msr_mce", "get_msr_mce", "kvm_arch_vcpu_create")
MTRR_CITE = cite("mtrr.c", "kvm_mtrr_set_msr", "kvm_mtrr_get_msr", "kvm_mtrr_valid")
LAPIC_CITE = cite("lapic.c", "kvm_x2apic_msr_read", "kvm_x2apic_msr_write",
                  "kvm_lapic_readable_reg_mask", "kvm_lapic_reg_write")
PMU_CITE = cite("pmu.c", "kvm_pmu_is_valid_msr", "kvm_pmu_get_msr", "kvm_pmu_set_msr")
PMU_INTEL = cite("vmx/pmu_intel.c", "intel_is_valid_msr", "intel_pmu_get_msr",
                 "intel_pmu_set_msr", "intel_pmu_refresh")
PMU_AMD = cite("svm/pmu.c", "amd_is_valid_msr", "amd_pmu_get_msr", "amd_pmu_set_msr",
               "amd_pmu_refresh")
HV_CITE = cite("hyperv.c", "kvm_hv_get_msr_common", "kvm_hv_set_msr_common",
               "kvm_hv_get_msr", "kvm_hv_set_msr", "kvm_hv_get_msr_pw", "kvm_hv_set_msr_pw")
NESTED_CITE = cite("vmx/nested.c", "vmx_get_vmx_msr", "vmx_set_vmx_msr")
PV_CITE = cite("x86.c", "kvm_get_msr_common", "kvm_set_msr_common")
CPUID_PV = cite("cpuid.h", "guest_pv_has")

_PVM_HANDLED = Override(backend=Backend.PVM, kernel=(PVM_MSR,))


# -- row helpers ---------------------------------------------------------------------------------

def _fred(index: int, name: str, write: WriteRule, aliases: tuple[str, ...] = ()) -> Msr:
    return Msr(
        index=index, name=name, family=Family.FRED, aliases=aliases,
        gates=(Gate(need=need(F.FRED)),), write=write, listed=Listed(need=need(F.FRED)),
        kernel=(Cite(file="arch/x86/kvm/x86.c", functions=("__kvm_set_msr", "__kvm_get_msr"),
                     tree=FRED_V9),),
        source=f"{_ARCH} section 2; {_FACTS} sections 6 and 8 (v9 patch 10; not in v6.19,"
        " where every FRED MSR is UNSUPPORTED)",
    )

_FRED_RSP = WriteRule(canonical=True, reserved=0x3F)
_FRED_SSP = WriteRule(canonical=True, reserved=0x7)
_CET_SSP = WriteRule(canonical=True, reserved=0x3)
_CET_CTL = WriteRule(check=Check.CET)
_CET_SRC = f"{_FACTS} section 6; {_COMMON} 2.0 (__kvm_set_msr CET checks)"
_CET_KERNEL = (X86_PRE, cite("x86.c", "kvm_set_msr_common", "kvm_get_msr_common",
                             "kvm_access_xstate_msr"))


def _pv(index: int, name: str, feat: Feature, write: WriteRule = ANY_VALUE,
        reset: int | None = 0, aliases: tuple[str, ...] = ()) -> Msr:
    # kvm_{get,set}_msr_common: "if (!guest_pv_has(vcpu, KVM_FEATURE_x)) return 1;" for
    # guest and host alike; guest_pv_has() is true unless PV CPUID is enforced (cpuid.h).
    return Msr(
        index=index, name=name, family=Family.KVM_PV, aliases=aliases,
        gates=(Gate(need=need(feat), pv=True, error=KvmRet.ERR),), write=write, reset=reset,
        listed=LISTED, kernel=(PV_CITE, CPUID_PV), quirks=_PV_UNSUPPORTED,
        source=f"{_COMMON} 2a (KVM PV MSRs); Documentation/virt/kvm/x86/msr.rst",
    )


def _pvm(index: int, name: str, emul: Emul, reset: int | None) -> Msr:
    """A PVM virtual MSR of the PVM kernel msrvirt was checked on (observed: the PVM sources read put them
    elsewhere; docs/reference-notes.md)."""
    return Msr(
        index=index, name=name, family=Family.PVM, handled_by=PVM_ONLY, emul=emul,
        write=unknown_values("this kernel's PVM MSR handler is not in the sources read"),
        reset=reset, kernel=(PVM_MSR,),
        source=f"{_COMMON} part 3 (PVM virtual MSRs); observed: {_PVM_SYNTHETIC}",
    )


def _zero(index: int, name: str, note: str = "", aliases: tuple[str, ...] = ()) -> Msr:
    """An MSR kvm_get_msr_common reads as 0 and kvm_set_msr_common does not know."""
    return Msr(index=index, name=name, family=Family.LEGACY, emul=Emul.READ_ZERO,
               aliases=aliases, kernel=(X86_GET,), note=note,
               source=f"{_COMMON} 2a (read 0, write UNSUPPORTED)")


def _ignored(index: int, name: str, reset: int = 0, family: Family = Family.LEGACY) -> Msr:
    """An MSR kvm_get_msr_common reads as a constant and kvm_set_msr_common ignores."""
    return Msr(index=index, name=name, family=family, emul=Emul.IGNORED, reset=reset,
               kernel=(X86_BOTH,), source=f"{_COMMON} 2a (read a constant, writes dropped)")


_LBR_SRC = f"{_COMMON} 2a (read 0, write UNSUPPORTED); SVM reads them from the VMCB"
_LBR_SVM = Override(backend=Backend.SVM, emul=Emul.READ_ZERO, kernel=(SVM_MSR,))
_HOST_VALUE = "the host's value (KVM reports it through KVM_GET_MSR_FEATURE_INDEX_LIST)"


def _mce_rows() -> Iterator[Msr]:
    """IA32_MCi_CTL/STATUS/ADDR/MISC (0x400 + 4i) and IA32_MCi_CTL2 (0x280 + i), i < 32."""
    src = f"SDM Vol. 4 Table 2-2; {_COMMON} 2a (MCE rules)"
    for bank in range(32):  # KVM_MAX_MCE_BANKS
        for offset, kind, check in ((0, "CTL", Check.MCI_CTL), (1, "STATUS", Check.MCI_STATUS),
                                    (2, "ADDR", Check.MCI_OTHER), (3, "MISC", Check.MCI_OTHER)):
            yield Msr(index=0x400 + 4 * bank + offset, name=f"IA32_MC{bank}_{kind}",
                      family=Family.MCE, emul=Emul.MCE, write=WriteRule(check=check),
                      unit=bank, kernel=(MCE_CITE,), source=src)
        yield Msr(index=0x280 + bank, name=f"IA32_MC{bank}_CTL2", family=Family.MCE,
                  emul=Emul.MCE, write=WriteRule(check=Check.MCI_CTL2), unit=bank,
                  kernel=(MCE_CITE,), source=src)


_MTRR_FIXED = {0x250: "MTRRFIX64K_00000", 0x258: "MTRRFIX16K_80000",
               0x259: "MTRRFIX16K_A0000",
               **{0x268 + i: f"MTRRFIX4K_{0xC0000 + 0x8000 * i:05X}" for i in range(8)}}


def _mtrr_rows() -> Iterator[Msr]:
    """0x200-0x26F: eight variable-range pairs (KVM_NR_VAR_MTRR), the fixed ranges, and the
    slots in between that kvm_mtrr_get/set_msr refuse (find_mtrr returns NULL: 1)."""
    src = f"SDM Vol. 3A 12.11; {_COMMON} 2a MTRRs"
    for index in range(0x200, 0x270):
        if index < 0x210:
            pair, is_mask = divmod(index - 0x200, 2)
            yield Msr(index=index, name=f"IA32_MTRR_PHYS{'MASK' if is_mask else 'BASE'}{pair}",
                      family=Family.MEMTYPE, emul=Emul.MTRR, unit=pair,
                      write=WriteRule(check=Check.MTRR_VAR_MASK if is_mask
                                      else Check.MTRR_VAR_BASE),
                      kernel=(MTRR_CITE,), source=src)
        elif index in _MTRR_FIXED:
            yield Msr(index=index, name=f"IA32_{_MTRR_FIXED[index]}", family=Family.MEMTYPE,
                      emul=Emul.MTRR, write=WriteRule(check=Check.MTRR_FIXED),
                      kernel=(MTRR_CITE,), source=src)
        else:
            yield Msr(index=index, name=f"MTRR_RESERVED_{index:#x}", family=Family.MEMTYPE,
                      emul=Emul.REFUSED, reset=None, kernel=(MTRR_CITE,),
                      source=f"{src}; an index of the MTRR range that is no MTRR (find_mtrr)")


# x2APIC registers (MSR 0x800 + offset >> 4), lapic.c: what a read and a write in x2APIC
# mode do.  ARBPRI, DFR and ICR2 exist only in xAPIC mode (kvm_lapic_readable_reg_mask).
_X2APIC_REGS: dict[int, tuple[str, Check]] = {
    0x02: ("X2APIC_ID", Check.X2APIC_RO), 0x03: ("X2APIC_VERSION", Check.X2APIC_RO),
    0x08: ("X2APIC_TPR", Check.X2APIC_RW), 0x09: ("X2APIC_APR", Check.X2APIC_RESERVED),
    0x0A: ("X2APIC_PPR", Check.X2APIC_RO), 0x0B: ("X2APIC_EOI", Check.X2APIC_EOI),
    0x0C: ("X2APIC_RRR", Check.X2APIC_RESERVED), 0x0D: ("X2APIC_LDR", Check.X2APIC_RO),
    0x0E: ("X2APIC_DFR", Check.X2APIC_RESERVED), 0x0F: ("X2APIC_SIVR", Check.X2APIC_RW),
    **{0x10 + i: (f"X2APIC_ISR{i}", Check.X2APIC_RO) for i in range(8)},
    **{0x18 + i: (f"X2APIC_TMR{i}", Check.X2APIC_RO) for i in range(8)},
    **{0x20 + i: (f"X2APIC_IRR{i}", Check.X2APIC_RO) for i in range(8)},
    0x28: ("X2APIC_ESR", Check.X2APIC_ESR), 0x2F: ("X2APIC_LVT_CMCI", Check.X2APIC_CMCI),
    0x30: ("X2APIC_ICR", Check.X2APIC_ICR), 0x31: ("X2APIC_ICR2", Check.X2APIC_RESERVED),
    0x32: ("X2APIC_LVTT", Check.X2APIC_RW), 0x33: ("X2APIC_LVTTHMR", Check.X2APIC_RW),
    0x34: ("X2APIC_LVTPC", Check.X2APIC_RW), 0x35: ("X2APIC_LVT0", Check.X2APIC_RW),
    0x36: ("X2APIC_LVT1", Check.X2APIC_RW), 0x37: ("X2APIC_LVTERR", Check.X2APIC_RW),
    0x38: ("X2APIC_TMICT", Check.X2APIC_RW), 0x39: ("X2APIC_TMCCT", Check.X2APIC_RO),
    0x3E: ("X2APIC_TDCR", Check.X2APIC_RW), 0x3F: ("X2APIC_SELF_IPI", Check.X2APIC_SELF_IPI),
}


def _x2apic_rows() -> Iterator[Msr]:
    """MSRs 0x800-0x8FF: all routed to kvm_x2apic_msr_read/write and never filtered."""
    src = f"SDM Vol. 3A 11.12.1 Table 11-6; {_COMMON} 2d; never filtered ({_FACTS} 4)"
    for offset in range(0x100):
        name, check = _X2APIC_REGS.get(offset, (f"X2APIC_RESERVED_{0x800 + offset:#x}",
                                                Check.X2APIC_RESERVED))
        yield Msr(index=0x800 + offset, name=name, family=Family.APIC, emul=Emul.X2APIC,
                  write=WriteRule(check=check), unit=offset, reset=None,
                  kernel=(LAPIC_CITE,), source=src)


def _pmu(index: int, name: str, check: Check, unit: int = 0, listed: bool = False,
         aliases: tuple[str, ...] = ()) -> Msr:
    amd = check.value.startswith("amd-")
    return Msr(index=index, name=name, family=Family.PMU, emul=Emul.PMU, aliases=aliases,
               write=WriteRule(check=check), unit=unit,
               listed=Listed(pmu=True, vendors=AMD if amd else INTEL) if listed else None,
               kernel=(PMU_CITE, PMU_AMD if amd else PMU_INTEL),
               source=f"SDM Vol. 3B 20 / APM Vol. 2 13.2; {_COMMON} 2b (msrs_to_save_pmu)")


def _pmu_rows() -> Iterator[Msr]:
    """The Intel and AMD PMU MSRs KVM knows (pmu.c, vmx/pmu_intel.c, svm/pmu.c)."""
    for i in range(8):  # KVM_MAX_NR_INTEL_GP_COUNTERS
        yield _pmu(0xC1 + i, f"IA32_PERFCTR{i}", Check.PMU_GP_CTR, i, True,
                   aliases=(f"P6_PERFCTR{i}",) if i < 2 else ())
        yield _pmu(0x186 + i, f"IA32_PERFEVTSEL{i}", Check.PMU_GP_SEL, i, True,
                   aliases=(f"P6_EVNTSEL{i}",) if i < 2 else ())
        yield _pmu(0x4C1 + i, f"IA32_PMC{i}", Check.PMU_FW_CTR, i)
    for i in range(3):  # KVM_MAX_NR_FIXED_COUNTERS
        yield _pmu(0x309 + i, f"IA32_FIXED_CTR{i}", Check.PMU_FIXED_CTR, i, True)
    yield _pmu(0x38D, "IA32_FIXED_CTR_CTRL", Check.PMU_FIXED_CTRL, listed=True)
    yield _pmu(0x38E, "IA32_PERF_GLOBAL_STATUS", Check.PMU_GLOBAL_STATUS, listed=True)
    yield _pmu(0x38F, "IA32_PERF_GLOBAL_CTRL", Check.PMU_GLOBAL_CTRL, listed=True)
    yield _pmu(0x390, "IA32_PERF_GLOBAL_OVF_CTRL", Check.PMU_GLOBAL_OVF)
    yield _pmu(0x3F1, "IA32_PEBS_ENABLE", Check.PMU_PEBS_ENABLE, listed=True)
    yield _pmu(0x3F2, "MSR_PEBS_DATA_CFG", Check.PMU_PEBS_DATA_CFG, listed=True)
    yield _pmu(0x600, "IA32_DS_AREA", Check.PMU_DS_AREA, listed=True)
    for i in range(4):  # AMD64_NUM_COUNTERS
        yield _pmu(0xC0010000 + i, f"K7_EVNTSEL{i}", Check.AMD_K7_SEL, i, True)
        yield _pmu(0xC0010004 + i, f"K7_PERFCTR{i}", Check.AMD_K7_CTR, i, True)
    for i in range(6):  # KVM_MAX_NR_AMD_GP_COUNTERS
        yield _pmu(0xC0010200 + 2 * i, f"F15H_PERF_CTL{i}", Check.AMD_F15_SEL, i, True)
        yield _pmu(0xC0010201 + 2 * i, f"F15H_PERF_CTR{i}", Check.AMD_F15_CTR, i, True)
    yield _pmu(0xC0000300, "AMD64_PERF_CNTR_GLOBAL_STATUS", Check.AMD_GLOBAL_STATUS,
               listed=True)
    yield _pmu(0xC0000301, "AMD64_PERF_CNTR_GLOBAL_CTL", Check.AMD_GLOBAL_CTL, listed=True)
    yield _pmu(0xC0000302, "AMD64_PERF_CNTR_GLOBAL_STATUS_CLR", Check.AMD_GLOBAL_CLR,
               listed=True)
    yield _pmu(0xC0000303, "AMD64_PERF_CNTR_GLOBAL_STATUS_SET", Check.AMD_GLOBAL_SET,
               listed=True)


# VMX capability MSRs 0x480-0x491 (KVM_FIRST_EMULATED_VMX_MSR ... KVM_LAST_EMULATED_VMX_MSR).
_VMX_CAPS = ("BASIC", "PINBASED_CTLS", "PROCBASED_CTLS", "EXIT_CTLS", "ENTRY_CTLS", "MISC",
             "CR0_FIXED0", "CR0_FIXED1", "CR4_FIXED0", "CR4_FIXED1", "VMCS_ENUM",
             "PROCBASED_CTLS2", "EPT_VPID_CAP", "TRUE_PINBASED_CTLS", "TRUE_PROCBASED_CTLS",
             "TRUE_EXIT_CTLS", "TRUE_ENTRY_CTLS", "VMFUNC")
# The ones vmx_set_vmx_msr refuses outright (-EINVAL): generated from others.
VMX_CAP_NOT_RESTORABLE = frozenset({"PINBASED_CTLS", "PROCBASED_CTLS", "EXIT_CTLS",
                                    "ENTRY_CTLS", "CR0_FIXED1", "CR4_FIXED1"})


def _vmx_cap_rows() -> Iterator[Msr]:
    for i, cap in enumerate(_VMX_CAPS):
        yield Msr(
            index=0x480 + i, name=f"IA32_VMX_{cap}", family=Family.VMX, emul=Emul.VMX_CAP,
            handled_by=VMX_ONLY, unit=i, reset=None,
            # x86.c emulated_msrs_all lists the "true" controls and not the legacy ones.
            # emulated_msrs_all lists exactly the ones userspace can restore.
            listed=None if cap in VMX_CAP_NOT_RESTORABLE
            else Listed(backends=VMX_ONLY, cond=Cond.NESTED),
            feature=Listed(backends=VMX_ONLY, cond=Cond.NESTED),
            write=WriteRule(check=Check.VMX_CAP, unmodelled=U64,
                            missing="vmx_set_vmx_msr checks a restored value against KVM's"
                            " own VMX configuration (vmcs_config.nested)"),
            kernel=(VMX_MSR, NESTED_CITE, cite("vmx/vmx.c", "vmx_get_feature_msr")),
            source="SDM Vol. 3D Appendix A; x86.c emulated_msrs_all (VMX MSRs)",
            note="the value is KVM's nested VMX configuration, not modelled",
        )


# Hyper-V synthetic MSRs (include/hyperv/hvgdk_mini.h), in the ranges kvm_get/set_msr_common
# route to hyperv.c (with CONFIG_KVM_HYPERV).
_HV_NAMES: dict[int, tuple[str, Check]] = {
    0x00: ("GUEST_OS_ID", Check.HV_STORED), 0x01: ("HYPERCALL", Check.HV_HYPERCALL),
    0x02: ("VP_INDEX", Check.HV_VP_INDEX), 0x03: ("RESET", Check.HV_RESET),
    0x10: ("VP_RUNTIME", Check.HV_HOST_WRITE), 0x20: ("TIME_REF_COUNT", Check.HV_HOST_WRITE),
    0x21: ("REFERENCE_TSC", Check.HV_STORED), 0x22: ("TSC_FREQUENCY", Check.HV_HOST_WRITE),
    0x23: ("APIC_FREQUENCY", Check.HV_HOST_WRITE), 0x70: ("EOI", Check.HV_VAPIC),
    0x71: ("ICR", Check.HV_VAPIC), 0x72: ("TPR", Check.HV_VAPIC),
    0x73: ("VP_ASSIST_PAGE", Check.HV_VP_ASSIST), 0x80: ("SCONTROL", Check.HV_SYNIC),
    0x81: ("SVERSION", Check.HV_SYNIC), 0x82: ("SIEFP", Check.HV_SYNIC),
    0x83: ("SIMP", Check.HV_SYNIC), 0x84: ("EOM", Check.HV_SYNIC),
    **{0x90 + i: (f"SINT{i}", Check.HV_SYNIC) for i in range(16)},
    **{0xB0 + 2 * i: (f"STIMER{i}_CONFIG", Check.HV_STIMER) for i in range(4)},
    **{0xB1 + 2 * i: (f"STIMER{i}_COUNT", Check.HV_STIMER) for i in range(4)},
    0xF1: ("SYNDBG_CONTROL", Check.HV_SYNDBG), 0xF2: ("SYNDBG_STATUS", Check.HV_SYNDBG),
    0xF3: ("SYNDBG_SEND_BUFFER", Check.HV_SYNDBG), 0xF4: ("SYNDBG_RECV_BUFFER", Check.HV_SYNDBG),
    0xF5: ("SYNDBG_PENDING_BUFFER", Check.HV_SYNDBG), 0xFF: ("SYNDBG_OPTIONS", Check.HV_SYNDBG),
    **{0x100 + i: (f"CRASH_P{i}", Check.HV_STORED) for i in range(5)},
    0x105: ("CRASH_CTL", Check.HV_CRASH_CTL),
    0x106: ("REENLIGHTENMENT_CONTROL", Check.HV_STORED),
    0x107: ("TSC_EMULATION_CONTROL", Check.HV_STORED),
    0x108: ("TSC_EMULATION_STATUS", Check.HV_TSC_EMULATION_STATUS),
    0x118: ("TSC_INVARIANT_CONTROL", Check.HV_TSC_INVARIANT),
}
# Offsets from 0x40000000 routed to hyperv.c: GUEST_OS_ID..SINT15 (every index, implemented
# or not), STIMER0_CONFIG..STIMER3_COUNT, and the named ones above.
HV_ROUTED = frozenset(range(0xA0)) | frozenset(_HV_NAMES)
# Listed in emulated_msrs_all (under CONFIG_KVM_HYPERV).
_HV_LISTED = frozenset({0x00, 0x01, 0x20, 0x21, 0x22, 0x23, 0x100, 0x101, 0x102, 0x103, 0x104,
                        0x105, 0x03, 0x02, 0x10, 0x80, 0xB0, 0x73, 0x106, 0x107, 0x108, 0x118,
                        0xFF, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5})


def _hyperv_rows() -> Iterator[Msr]:
    src = "Hyper-V TLFS; include/hyperv/hvgdk_mini.h; hyperv.c"
    for offset in sorted(HV_ROUTED):
        name, check = _HV_NAMES.get(offset, (f"HV_X64_MSR_UNKNOWN_{0x40000000 + offset:#x}",
                                             Check.HV_UNKNOWN))
        yield Msr(
            index=0x40000000 + offset,
            name=name if name.startswith("HV_") else f"HV_X64_MSR_{name}",
            family=Family.HYPERV, emul=Emul.HYPERV, write=WriteRule(check=check),
            gates=(Gate(cond=Cond.HYPERV),), unit=offset,
            reset=None if check in (Check.HV_HOST_WRITE, Check.HV_UNKNOWN) else 0,
            listed=Listed(cond=Cond.HYPERV) if offset in _HV_LISTED else None,
            kernel=(X86_BOTH, HV_CITE), source=src,
        )


MSRS: tuple[Msr, ...] = tuple(sorted((
    # -- time -----------------------------------------------------------------------------------
    Msr(index=0x10, name="IA32_TSC", family=Family.TIME, aliases=("TSC",), reset=None,
        listed=LISTED, kernel=(X86_BOTH, VMX_RECALC),
        source=f"SDM Vol. 4 Table 2-2; {_FACTS} section 3 rule 1",
        note="a guest write moves the TSC offset; reads depend on time"),
    Msr(index=0x3B, name="IA32_TSC_ADJUST", family=Family.TIME, aliases=("TSC_ADJUST",),
        write=WriteRule(check=Check.TSC_ADJUST), listed=LISTED, kernel=(X86_BOTH,),
        source=f"SDM Vol. 4; {_COMMON} 2a TSC_ADJUST",
        note="without guest TSC_ADJUST a write is accepted and dropped"),
    Msr(index=0x6E0, name="IA32_TSC_DEADLINE", family=Family.TIME, emul=Emul.IGNORED,
        listed=LISTED, kernel=(X86_BOTH, cite("lapic.c", "kvm_get_lapic_tscdeadline_msr",
                                               "kvm_set_lapic_tscdeadline_msr")),
        source=f"{_COMMON} 2a: ignored without an in-kernel APIC in TSC-deadline mode",
        note="reads 0 and drops writes while LVTT is not in TSC-deadline mode (reset state)"),
    # -- KVM paravirtual ------------------------------------------------------------------------
    _pv(0x11, "KVM_WALL_CLOCK", F.KVM_CLOCK),
    _pv(0x12, "KVM_SYSTEM_TIME", F.KVM_CLOCK),
    _pv(0x4B564D00, "KVM_WALL_CLOCK_NEW", F.KVM_CLOCK2),
    _pv(0x4B564D01, "KVM_SYSTEM_TIME_NEW", F.KVM_CLOCK2),
    _pv(0x4B564D02, "KVM_ASYNC_PF_EN", F.KVM_ASYNC_PF,
        write=WriteRule(reserved=0x30, check=Check.ASYNC_PF_EN)),
    _pv(0x4B564D03, "KVM_STEAL_TIME", F.KVM_STEAL_TIME, write=WriteRule(reserved=0x3E)),
    _pv(0x4B564D04, "KVM_PV_EOI_EN", F.KVM_PV_EOI, write=WriteRule(check=Check.PV_EOI)),
    _pv(0x4B564D05, "KVM_POLL_CONTROL", F.KVM_POLL_CONTROL,
        write=WriteRule(reserved=~0x1 & U64), reset=1),
    _pv(0x4B564D06, "KVM_ASYNC_PF_INT", F.KVM_ASYNC_PF_INT,
        write=WriteRule(reserved=~0xFF & U64, check=Check.ASYNC_PF_INT)),
    Msr(index=0x4B564D07, name="KVM_ASYNC_PF_ACK", family=Family.KVM_PV, emul=Emul.IGNORED,
        gates=(Gate(need=need(F.KVM_ASYNC_PF_INT), pv=True, error=KvmRet.ERR),),
        listed=LISTED, kernel=(PV_CITE, CPUID_PV), quirks=_PV_UNSUPPORTED,
        source=f"{_COMMON} 2a (KVM PV MSRs); Documentation/virt/kvm/x86/msr.rst",
        note="reads 0; a write of bit 0 acknowledges a page-ready event"),
    Msr(index=0x4B564DFF, name="KVM_INTERNAL_GUEST_SSP", family=Family.CET,
        # __kvm_set_msr / __kvm_get_msr: the guest check comes first, then SHSTK.
        gates=(GUEST_FAILS, Gate(need=need(F.SHSTK))), write=_CET_SSP, precheck=True,
        handled_by=frozenset({Backend.VMX, Backend.SVM}), reset=0,
        kernel=(X86_PRE, VMX_MSR, SVM_MSR),
        source=f"{_COMMON} 2.0 (MSR_KVM_INTERNAL_GUEST_SSP: host-only); x86.h",
        note="KVM's handle on the guest SSP for SMM and migration; not an architectural MSR"),
    # -- speculation control --------------------------------------------------------------------
    Msr(index=0x48, name="IA32_SPEC_CTRL", family=Family.SPEC, aliases=("SPEC_CTRL",),
        gates=(Gate(need=need(F.SPEC_CTRL, F.AMD_STIBP, F.AMD_IBRS, F.AMD_SSBD), host=False,
                    error=KvmRet.ERR),),
        handled_by=frozenset({Backend.VMX, Backend.SVM, Backend.PVM}),
        write=WriteRule(check=Check.SPEC_CTRL, unmodelled=U64,
                        missing="kvm_spec_ctrl_test_value tries the value on the host CPU"),
        listed=Listed(need=need(F.SPEC_CTRL, F.AMD_IBRS, F.AMD_STIBP, F.AMD_SSBD)),
        quirks=(Quirk(backend=Backend.PVM, kind=QuirkKind.NO_GATE, evidence=_PVM_6_18),),
        kernel=(VMX_MSR, SVM_MSR, cite("x86.c", "kvm_spec_ctrl_test_value")),
        source=f"{_FACTS} section 3 rule 8; vmx_set_msr/svm_set_msr SPEC_CTRL",
        note="valid bits depend on the host (kvm_spec_ctrl_test_value)"),
    Msr(index=0x49, name="IA32_PRED_CMD", family=Family.SPEC, aliases=("PRED_CMD",),
        emul=Emul.COMMAND,
        gates=(Gate(need=need(F.SPEC_CTRL, F.IBPB), access=Access.W, host=False,
                    error=KvmRet.ERR),),
        write=WriteRule(check=Check.PRED_CMD), reset=None,
        quirks=(Quirk(backend=Backend.PVM, kind=QuirkKind.NO_GATE, evidence=_PVM_6_18),),
        kernel=(X86_SET, VMX_RECALC),
        source=f"{_FACTS} section 3 rule 10; {_COMMON} 2a PRED_CMD"),
    Msr(index=0x10A, name="IA32_ARCH_CAPABILITIES", family=Family.FEATURE,
        aliases=("ARCH_CAPABILITIES",), emul=Emul.HOST_WRITE,
        gates=(Gate(need=need(F.ARCH_CAPABILITIES)),), reset=None, listed=LISTED,
        feature=LISTED, kernel=(X86_BOTH, X86_FEATURES, X86_RESET),
        source=f"{_COMMON} 2a ARCH_CAPABILITIES",
        note=f"reads {_HOST_VALUE} (KVM_X86_QUIRK_STUFF_FEATURE_MSRS)"),
    Msr(index=0x10B, name="IA32_FLUSH_CMD", family=Family.SPEC, aliases=("FLUSH_CMD",),
        emul=Emul.COMMAND,
        gates=(Gate(need=need(F.FLUSH_L1D), access=Access.W, host=False, error=KvmRet.ERR),),
        write=WriteRule(check=Check.FLUSH_CMD), reset=None,
        quirks=(Quirk(backend=Backend.PVM, kind=QuirkKind.NO_GATE, evidence=_PVM_6_18),),
        kernel=(X86_SET, VMX_RECALC),
        source=f"{_FACTS} section 3 rule 11; {_COMMON} 2a FLUSH_CMD"),
    Msr(index=0x122, name="IA32_TSX_CTRL", family=Family.SPEC, aliases=("TSX_CTRL",),
        handled_by=frozenset({Backend.VMX, Backend.PVM}),
        gates=(Gate(cond=Cond.TSX_CTRL, host=False, error=KvmRet.ERR),),
        write=WriteRule(reserved=~0x3 & U64, check=Check.TSX_CTRL), reset=None,
        listed=Listed(vendors=INTEL, cond=Cond.TSX_CTRL),
        overrides=(Override(backend=Backend.PVM, gates=(), write=unknown_values(
            "PVM's handling of TSX_CTRL is not in the sources read"), reset=0),),
        kernel=(VMX_MSR,), source="SDM Vol. 4; vmx_get_msr/vmx_set_msr TSX_CTRL (a uret MSR)",
        note="PVM: handled on this kernel (reads 0, accepts 0); observed, docs/conformance.md"),
    Msr(index=0xC001011F, name="AMD64_VIRT_SPEC_CTRL", family=Family.SPEC,
        aliases=("VIRT_SPEC_CTRL",), handled_by=SVM_ONLY,
        gates=(Gate(need=need(F.VIRT_SSBD), host=False, error=KvmRet.ERR),),
        write=WriteRule(reserved=~(1 << 2) & U64),
        listed=Listed(backends=frozenset({Backend.SVM, Backend.PVM})),
        kernel=(SVM_MSR,), source=f"{_COMMON} 2a-SVM VIRT_SPEC_CTRL (SSBD only)"),
    # -- syscall / sysenter / segments ----------------------------------------------------------
    Msr(index=0x174, name="IA32_SYSENTER_CS", family=Family.SYSCALL, aliases=("SYSENTER_CS",),
        listed=LISTED, overrides=(_PVM_HANDLED,), kernel=(VMX_MSR, SVM_MSR, VMX_RECALC),
        source=f"SDM Vol. 4; {_FACTS} section 3 rule 3"),
    Msr(index=0x175, name="IA32_SYSENTER_ESP", family=Family.SYSCALL,
        aliases=("SYSENTER_ESP",), write=WriteRule(check=Check.CANONICALIZE), listed=LISTED,
        overrides=(Override(backend=Backend.SVM, write=WriteRule(check=Check.SYSENTER_SVM),
                            kernel=(SVM_MSR,)), _PVM_HANDLED),
        kernel=(X86_PRE, VMX_MSR, SVM_MSR),
        source=f"SDM Vol. 4; {_FACTS} section 3 rule 3; {_COMMON} 2.0 (canonicalised)"),
    Msr(index=0x176, name="IA32_SYSENTER_EIP", family=Family.SYSCALL,
        aliases=("SYSENTER_EIP",), write=WriteRule(check=Check.CANONICALIZE), listed=LISTED,
        overrides=(Override(backend=Backend.SVM, write=WriteRule(check=Check.SYSENTER_SVM),
                            kernel=(SVM_MSR,)), _PVM_HANDLED),
        kernel=(X86_PRE, VMX_MSR, SVM_MSR),
        source=f"SDM Vol. 4; {_FACTS} section 3 rule 3; {_COMMON} 2.0 (canonicalised)"),
    Msr(index=0xC0000080, name="IA32_EFER", family=Family.SYSCALL, aliases=("EFER",),
        write=WriteRule(check=Check.EFER),
        kernel=(X86_SET, cite("x86.c", "set_efer", "__kvm_valid_efer", "kvm_enable_efer_bits"),
                cite("svm/svm.c", "svm_set_efer", "svm_hardware_setup"),
                cite("vmx/vmx.c", "vmx_hardware_setup")),
        source=f"SDM Vol. 4; {_COMMON} 2a EFER (set_efer)",
        note="not in KVM_GET_MSR_INDEX_LIST: userspace saves EFER with KVM_GET_SREGS"),
    Msr(index=0xC0000081, name="IA32_STAR", family=Family.SYSCALL, aliases=("STAR",),
        listed=LISTED, overrides=(Override(backend=Backend.PVM, write=unknown_values(
            "PVM checks the selectors of a guest STAR write (pvm_set_msr)"),
            kernel=(PVM_MSR,)),),
        kernel=(VMX_MSR, SVM_MSR), source="SDM Vol. 4; msrs_to_save_base"),
    Msr(index=0xC0000082, name="IA32_LSTAR", family=Family.SYSCALL, aliases=("LSTAR",),
        write=CANONICAL, listed=LISTED, overrides=(_PVM_HANDLED,),
        kernel=(X86_PRE, VMX_MSR, SVM_MSR),
        source=f"SDM Vol. 4; {_COMMON} 2.0 (canonical check)"),
    Msr(index=0xC0000083, name="IA32_CSTAR", family=Family.SYSCALL, aliases=("CSTAR",),
        write=CANONICAL, listed=LISTED, overrides=(_PVM_HANDLED,),
        kernel=(X86_PRE, VMX_MSR, SVM_MSR),
        source=f"SDM Vol. 4; {_COMMON} 2.0 (canonical check)"),
    Msr(index=0xC0000084, name="IA32_FMASK", family=Family.SYSCALL,
        aliases=("SFMASK", "SYSCALL_MASK"), listed=LISTED,
        overrides=(Override(backend=Backend.VMX, write=unknown_values(
            "VMX keeps it in a user-return slot: the host CPU refuses what it does not"
            " implement (kvm_set_user_return_msr)", ~0xFFFFFFFF & U64),
            kernel=(VMX_MSR, cite("x86.c", "kvm_set_user_return_msr"))), _PVM_HANDLED),
        kernel=(VMX_MSR, SVM_MSR),
        source=f"SDM Vol. 4 (IA32_FMASK); msr-index.h MSR_SYSCALL_MASK; {_FACTS} section 11"),
    Msr(index=0xC0000100, name="FS_BASE", family=Family.SEGMENT, aliases=("IA32_FS_BASE",),
        write=CANONICAL, overrides=(_PVM_HANDLED,), kernel=(X86_PRE, VMX_MSR, SVM_MSR),
        source=f"SDM Vol. 4; {_FACTS} section 3 rule 2",
        note="not in KVM_GET_MSR_INDEX_LIST: userspace saves it with KVM_GET_SREGS"),
    Msr(index=0xC0000101, name="GS_BASE", family=Family.SEGMENT, aliases=("IA32_GS_BASE",),
        write=CANONICAL, overrides=(_PVM_HANDLED,), kernel=(X86_PRE, VMX_MSR, SVM_MSR),
        source=f"SDM Vol. 4; {_FACTS} section 3 rule 2",
        note="not in KVM_GET_MSR_INDEX_LIST: userspace saves it with KVM_GET_SREGS"),
    Msr(index=0xC0000102, name="KERNEL_GS_BASE", family=Family.SEGMENT,
        aliases=("IA32_KERNEL_GS_BASE", "SWAPGS"), write=CANONICAL, listed=LISTED,
        overrides=(_PVM_HANDLED,), kernel=(X86_PRE, VMX_MSR, SVM_MSR),
        source=f"SDM Vol. 4; {_FACTS} section 3 rule 2"),
    Msr(index=0xC0000103, name="IA32_TSC_AUX", family=Family.TIME, aliases=("TSC_AUX",),
        gates=(Gate(need=need(F.RDTSCP, F.RDPID), host=False, error=KvmRet.ERR),),
        handled_by=frozenset({Backend.VMX, Backend.SVM, Backend.PVM}),
        write=WriteRule(check=Check.TSC_AUX), listed=Listed(need=need(F.RDTSCP, F.RDPID)),
        kernel=(X86_PRE, VMX_MSR, SVM_MSR),
        source=f"SDM Vol. 4; {_COMMON} 2.0 (TSC_AUX pre-checks)"),
    # -- XSAVE-managed --------------------------------------------------------------------------
    Msr(index=0x1C4, name="IA32_XFD", family=Family.XSAVE, aliases=("XFD",),
        gates=(Gate(need=need(F.XFD), host=False, error=KvmRet.ERR),),
        write=WriteRule(check=Check.XFD, unmodelled=1 << 18,
                        missing="the guest's dynamic xfeatures (CPUID 0xD) are not an input"),
        listed=Listed(need=need(F.XFD)), kernel=(X86_BOTH, VMX_MSR),
        source=f"{_FACTS} section 3 rule 7; kvm_set_msr_common MSR_IA32_XFD"),
    Msr(index=0x1C5, name="IA32_XFD_ERR", family=Family.XSAVE, aliases=("XFD_ERR",),
        gates=(Gate(need=need(F.XFD), host=False, error=KvmRet.ERR),),
        write=WriteRule(check=Check.XFD, unmodelled=1 << 18,
                        missing="the guest's dynamic xfeatures (CPUID 0xD) are not an input"),
        listed=Listed(need=need(F.XFD)), kernel=(X86_BOTH,),
        source=f"{_FACTS} section 3 rule 9; kvm_set_msr_common MSR_IA32_XFD_ERR"),
    Msr(index=0xDA0, name="IA32_XSS", family=Family.XSAVE, aliases=("XSS",),
        # A write needs the raw CPUID bit even from the host (UNSUPPORTED); a guest read 1.
        gates=(Gate(need=need(F.XSAVES), access=Access.W, raw_cpuid=True),
               Gate(need=need(F.XSAVES), access=Access.R, host=False, error=KvmRet.ERR,
                    raw_cpuid=True)),
        write=WriteRule(check=Check.XSS, unmodelled=U64,
                        missing="guest_supported_xss follows the guest's CPUID 0xD.1"),
        listed=Listed(need=need(F.XSAVES)), kernel=(X86_BOTH,),
        source=f"SDM Vol. 4; {_COMMON} 2a XSS; {_FACTS} section 11",
        note="writes need guest XSAVES (else UNSUPPORTED); guest reads without it fail (1)"),
    # -- FRED (v9; not in v6.19) ----------------------------------------------------------------
    _fred(0x1CC, "IA32_FRED_RSP0", _FRED_RSP),
    _fred(0x1CD, "IA32_FRED_RSP1", _FRED_RSP),
    _fred(0x1CE, "IA32_FRED_RSP2", _FRED_RSP),
    _fred(0x1CF, "IA32_FRED_RSP3", _FRED_RSP),
    _fred(0x1D0, "IA32_FRED_STKLVLS", ANY_VALUE),
    _fred(0x1D1, "IA32_FRED_SSP1", _FRED_SSP),
    _fred(0x1D2, "IA32_FRED_SSP2", _FRED_SSP),
    _fred(0x1D3, "IA32_FRED_SSP3", _FRED_SSP),
    _fred(0x1D4, "IA32_FRED_CONFIG", WriteRule(canonical=True, reserved=0x834)),
    # -- CET ------------------------------------------------------------------------------------
    Msr(index=0x6A0, name="IA32_U_CET", family=Family.CET, aliases=("U_CET",),
        gates=(Gate(need=need(F.SHSTK, F.IBT)),), write=_CET_CTL,
        listed=Listed(need=need(F.SHSTK, F.IBT)), kernel=_CET_KERNEL, source=_CET_SRC),
    Msr(index=0x6A2, name="IA32_S_CET", family=Family.CET, aliases=("S_CET",),
        gates=(Gate(need=need(F.SHSTK, F.IBT)),), write=_CET_CTL, precheck=True,
        handled_by=frozenset({Backend.VMX, Backend.SVM}),
        listed=Listed(need=need(F.SHSTK, F.IBT)), kernel=(X86_PRE, VMX_MSR, SVM_MSR),
        source=_CET_SRC),
    Msr(index=0x6A4, name="IA32_PL0_SSP", family=Family.CET,
        aliases=("IA32_FRED_SSP0", "PL0_SSP"),
        gates=(Gate(need=need(F.SHSTK, F.FRED)),), write=_CET_SSP,
        listed=Listed(need=need(F.SHSTK, F.FRED)), kernel=_CET_KERNEL,
        source=f"{_CET_SRC}; {_ARCH} section 2 (= FRED_SSP0, exists on every FRED CPU)",
        note="v6.19 gates it on SHSTK; the FRED series adds FRED (fred_ssp0_fallback)"),
    Msr(index=0x6A5, name="IA32_PL1_SSP", family=Family.CET, aliases=("PL1_SSP",),
        gates=(Gate(need=need(F.SHSTK)),), write=_CET_SSP, listed=Listed(need=need(F.SHSTK)),
        kernel=_CET_KERNEL, source=_CET_SRC),
    Msr(index=0x6A6, name="IA32_PL2_SSP", family=Family.CET, aliases=("PL2_SSP",),
        gates=(Gate(need=need(F.SHSTK)),), write=_CET_SSP, listed=Listed(need=need(F.SHSTK)),
        kernel=_CET_KERNEL, source=_CET_SRC),
    Msr(index=0x6A7, name="IA32_PL3_SSP", family=Family.CET, aliases=("PL3_SSP",),
        gates=(Gate(need=need(F.SHSTK)),), write=_CET_SSP, listed=Listed(need=need(F.SHSTK)),
        kernel=_CET_KERNEL, source=_CET_SRC),
    Msr(index=0x6A8, name="IA32_INT_SSP_TAB", family=Family.CET, aliases=("INT_SSP_TAB",),
        gates=(Gate(need=need(F.SHSTK)), Gate(need=need(F.LM))), write=CANONICAL, precheck=True,
        handled_by=frozenset({Backend.VMX, Backend.SVM}),
        listed=Listed(need=need(all_of=(F.SHSTK, F.LM))), kernel=(X86_PRE, VMX_MSR, SVM_MSR),
        source=f"{_CET_SRC}; {_FACTS} section 3 (never passed through)"),
    # -- Intel PT (VMX vendor code, gated on kvm_intel.pt_mode) ---------------------------------
    *(Msr(index=idx, name=name, family=Family.TRACE, handled_by=VMX_ONLY,
          gates=(Gate(cond=Cond.PT_HOST_GUEST, error=KvmRet.ERR),),
          write=unknown_values("the PT capabilities KVM exposes (CPUID 0x14) are not an"
                               " input; RTIT_CTL is checked against them"),
          listed=Listed(need=need(F.INTEL_PT)),
          kernel=(VMX_MSR, cite("vmx/vmx.c", "vmx_rtit_ctl_check", "pt_can_write_msr")),
          source=f"SDM Vol. 4; {_FACTS} section 3 rule 6; vmx_get_msr/vmx_set_msr RTIT_*",
          note="fails (1) unless kvm_intel.pt_mode=1 (host-guest), whatever the guest CPUID")
      for idx, name in (
          (0x560, "IA32_RTIT_OUTPUT_BASE"), (0x561, "IA32_RTIT_OUTPUT_MASK"),
          (0x570, "IA32_RTIT_CTL"), (0x571, "IA32_RTIT_STATUS"), (0x572, "IA32_RTIT_CR3_MATCH"),
          (0x580, "IA32_RTIT_ADDR0_A"), (0x581, "IA32_RTIT_ADDR0_B"),
          (0x582, "IA32_RTIT_ADDR1_A"), (0x583, "IA32_RTIT_ADDR1_B"),
          (0x584, "IA32_RTIT_ADDR2_A"), (0x585, "IA32_RTIT_ADDR2_B"),
          (0x586, "IA32_RTIT_ADDR3_A"), (0x587, "IA32_RTIT_ADDR3_B"),
      )),
    # -- power / performance --------------------------------------------------------------------
    Msr(index=0xE7, name="IA32_MPERF", family=Family.POWER, aliases=("MPERF",),
        emul=Emul.UNSUPPORTED, reset=None, kernel=(VMX_RECALC,),
        source=f"SDM Vol. 4; {_FACTS} section 3 rule 5"),
    Msr(index=0xE8, name="IA32_APERF", family=Family.POWER, aliases=("APERF",),
        emul=Emul.UNSUPPORTED, reset=None, kernel=(VMX_RECALC,),
        source=f"SDM Vol. 4; {_FACTS} section 3 rule 5"),
    Msr(index=0x3FC, name="CORE_C3_RESIDENCY", family=Family.POWER, emul=Emul.UNSUPPORTED,
        reset=None, kernel=(VMX_RECALC,), source=f"SDM Vol. 4; {_FACTS} section 3 rule 4"),
    Msr(index=0x3FD, name="CORE_C6_RESIDENCY", family=Family.POWER, emul=Emul.UNSUPPORTED,
        reset=None, kernel=(VMX_RECALC,), source=f"SDM Vol. 4; {_FACTS} section 3 rule 4"),
    Msr(index=0x3FE, name="CORE_C7_RESIDENCY", family=Family.POWER, emul=Emul.UNSUPPORTED,
        reset=None, kernel=(VMX_RECALC,), source=f"SDM Vol. 4; {_FACTS} section 3 rule 4"),
    Msr(index=0x660, name="CORE_C1_RES", family=Family.POWER, emul=Emul.UNSUPPORTED,
        reset=None, kernel=(VMX_RECALC,), source=f"SDM Vol. 4; {_FACTS} section 3 rule 4"),
    Msr(index=0x1FC, name="IA32_POWER_CTL", family=Family.POWER, aliases=("POWER_CTL",),
        listed=LISTED, kernel=(X86_BOTH,),
        source=f"{_COMMON} 2a POWER_CTL (stored); {_FACTS} section 11"),
    Msr(index=0x1A0, name="IA32_MISC_ENABLE", family=Family.POWER, aliases=("MISC_ENABLE",),
        write=WriteRule(check=Check.MISC_ENABLE), reset=0x1800, listed=LISTED,
        quirks=(Quirk(backend=Backend.PVM, kind=QuirkKind.RESET, value=0x1,
                      evidence=_PVM_6_18),),
        kernel=(X86_BOTH, X86_RESET),
        source=f"SDM Vol. 4; {_COMMON} 2a MISC_ENABLE; kvm_vcpu_reset (PEBS/BTS unavailable)",
        note="a guest write may not change bits 12:11 (PMU_RO_MASK); EMON (bit 7) is kept"),
    Msr(index=0xCD, name="MSR_FSB_FREQ", family=Family.POWER, emul=Emul.CONSTANT, reset=3,
        kernel=(X86_GET,), source=f"{_COMMON} 2a (0xCD reads 3)"),
    Msr(index=0x2C, name="MSR_EBC_FREQUENCY_ID", family=Family.POWER, emul=Emul.CONSTANT,
        reset=1 << 24, kernel=(X86_GET,), source=f"{_COMMON} 2a (EBC_FREQUENCY_ID 1<<24)"),
    Msr(index=0x198, name="IA32_PERF_STATUS", family=Family.POWER, emul=Emul.CONSTANT,
        reset=1000 | 4 << 40, kernel=(X86_GET,),
        source=f"{_COMMON} 2a (PERF_STATUS 1000 + 4 << 40)"),
    _zero(0x199, "IA32_PERF_CTL"),
    _zero(0x606, "MSR_RAPL_POWER_UNIT"),
    _zero(0x611, "MSR_PKG_ENERGY_STATUS"),
    _zero(0x619, "MSR_DRAM_ENERGY_STATUS"),
    _zero(0x639, "MSR_PP0_ENERGY_STATUS"),
    _zero(0x641, "MSR_PP1_ENERGY_STATUS"),
    # -- feature and model MSRs -----------------------------------------------------------------
    Msr(index=0x8B, name="IA32_UCODE_REV", family=Family.FEATURE, aliases=("UCODE_REV",),
        emul=Emul.HOST_STORED, listed=LISTED, feature=LISTED, reset=None,
        overrides=(Override(backend=Backend.VMX, reset=0x100000000,
                            kernel=(cite("vmx/vmx.c", "vmx_vcpu_reset"),)),
                   Override(backend=Backend.SVM, reset=0x01000065,
                            kernel=(cite("svm/svm.c", "init_vmcb"),)),
                   Override(backend=Backend.PVM, reset=0)),
        kernel=(X86_BOTH, X86_FEATURES),
        source=f"{_COMMON} 2a UCODE_REV", note="PVM: reads 0 on a fresh vCPU (observed)"),
    Msr(index=0x79, name="IA32_UCODE_WRITE", family=Family.FEATURE, emul=Emul.SINK,
        kernel=(X86_SET,), source=f"{_COMMON} 2a (writes dropped, no read handler)"),
    Msr(index=0x345, name="IA32_PERF_CAPABILITIES", family=Family.FEATURE,
        aliases=("PERF_CAPABILITIES",), emul=Emul.HOST_WRITE,
        gates=(Gate(need=need(F.PDCM)),), write=WriteRule(check=Check.PERF_CAP), reset=None,
        listed=LISTED, feature=LISTED, kernel=(X86_BOTH, VMX_MSR, X86_FEATURES),
        source=f"{_COMMON} 2a PERF_CAPABILITIES",
        note="reads kvm_caps.supported_perf_cap (the value KVM reports as a feature MSR)"),
    Msr(index=0xCE, name="MSR_PLATFORM_INFO", family=Family.FEATURE, aliases=("PLATFORM_INFO",),
        gates=(Gate(need=NEVER, access=Access.W, host=False, error=KvmRet.ERR),
               Gate(cond=Cond.PLATFORM_INFO_READ, access=Access.R, host=False,
                    error=KvmRet.ERR)),
        reset=0x80000000, listed=LISTED, feature=LISTED,
        kernel=(X86_BOTH, X86_FEATURES, X86_RESET),
        source=f"{_COMMON} 2a PLATFORM_INFO",
        note="reads CPUID_FAULT (bit 31) after vCPU creation; only userspace may write it"),
    Msr(index=0x140, name="MSR_MISC_FEATURES_ENABLES", family=Family.FEATURE,
        aliases=("MISC_FEATURES_ENABLES",), write=WriteRule(check=Check.MISC_FEATURES),
        listed=LISTED, kernel=(X86_BOTH,),
        source=f"{_COMMON} 2a MISC_FEATURES_ENABLES (CPUID faulting)"),
    Msr(index=0x3A, name="IA32_FEAT_CTL", family=Family.FEATURE,
        aliases=("FEATURE_CONTROL", "IA32_FEATURE_CONTROL"), handled_by=NOT_SVM,
        write=WriteRule(check=Check.FEAT_CTL), listed=Listed(vendors=INTEL),
        overrides=(Override(backend=Backend.PVM, gates=(Gate(cond=Cond.INTEL_HOST),),
                            write=unknown_values("PVM's FEAT_CTL valid bits (pvm.c)"),
                            kernel=(PVM_MSR,)),),
        kernel=(VMX_MSR, cite("vmx/vmx.c", "is_vmx_feature_control_msr_valid",
                              "vmx_vcpu_after_set_cpuid")),
        source="SDM Vol. 4; vmx_set_msr MSR_IA32_FEAT_CTL",
        note="PVM: only on Intel hosts (unknown to KVM on this AMD host, observed)"),
    Msr(index=0x9E, name="IA32_SMBASE", family=Family.FEATURE, aliases=("SMBASE",),
        gates=(Gate(cond=Cond.SMM, error=KvmRet.ERR), GUEST_FAILS), reset=0x30000,
        listed=Listed(cond=Cond.SMM), kernel=(X86_BOTH, X86_RESET),
        source=f"{_COMMON} 2a SMBASE (host only, CONFIG_KVM_SMM)"),
    Msr(index=0x34, name="MSR_SMI_COUNT", family=Family.FEATURE, aliases=("SMI_COUNT",),
        gates=(Gate(need=NEVER, access=Access.W, host=False, error=KvmRet.ERR),),
        listed=LISTED, kernel=(X86_BOTH,), source=f"{_COMMON} 2a SMI_COUNT (writes host only)"),
    Msr(index=0xE1, name="IA32_UMWAIT_CONTROL", family=Family.FEATURE,
        aliases=("UMWAIT_CONTROL",), handled_by=VMX_ONLY,
        gates=(Gate(need=need(F.WAITPKG), host=False, error=KvmRet.ERR),),
        write=WriteRule(reserved=(1 << 1) | (U64 & ~0xFFFFFFFF)),
        listed=Listed(need=need(F.WAITPKG), vendors=INTEL), kernel=(VMX_MSR,),
        source="SDM Vol. 4; vmx_get_msr/vmx_set_msr UMWAIT_CONTROL"),
    Msr(index=0xD90, name="IA32_BNDCFGS", family=Family.FEATURE, aliases=("BNDCFGS",),
        handled_by=VMX_ONLY,
        gates=(Gate(cond=Cond.MPX, error=KvmRet.ERR),
               Gate(need=need(F.MPX), host=False, error=KvmRet.ERR)),
        write=WriteRule(check=Check.BNDCFGS, reserved=0xFFC),
        listed=Listed(need=need(F.MPX), cond=Cond.MPX), kernel=(VMX_MSR,),
        source="SDM Vol. 4; vmx_get_msr/vmx_set_msr BNDCFGS"),
    *(Msr(index=0x8C + i, name=f"IA32_SGXLEPUBKEYHASH{i}", family=Family.FEATURE,
          handled_by=VMX_ONLY, gates=(Gate(need=need(F.SGX_LC), host=False, error=KvmRet.ERR),),
          reset=None, kernel=(VMX_MSR,),
          source="SDM Vol. 4; vmx_get_msr/vmx_set_msr SGXLEPUBKEYHASH",
          note="a guest write also needs FEAT_CTL unlocked or SGX_LC_ENABLED")
      for i in range(4)),
    # -- machine check ---------------------------------------------------------------------------
    Msr(index=0x0, name="IA32_P5_MC_ADDR", family=Family.MCE, aliases=("P5_MC_ADDR",),
        emul=Emul.CONSTANT, kernel=(MCE_CITE,), source=f"{_COMMON} 2a (P5_MC_ADDR reads 0)"),
    Msr(index=0x1, name="IA32_P5_MC_TYPE", family=Family.MCE, aliases=("P5_MC_TYPE",),
        emul=Emul.CONSTANT, kernel=(MCE_CITE,), source=f"{_COMMON} 2a (P5_MC_TYPE reads 0)"),
    Msr(index=0x179, name="IA32_MCG_CAP", family=Family.MCE, aliases=("MCG_CAP",),
        emul=Emul.MCE, write=WriteRule(check=Check.MCG_CAP), kernel=(MCE_CITE,),
        source=f"SDM Vol. 4; {_COMMON} 2a (MCG_CAP reads mcg_cap; no write handler)"),
    Msr(index=0x17A, name="IA32_MCG_STATUS", family=Family.MCE, aliases=("MCG_STATUS",),
        emul=Emul.MCE, write=WriteRule(check=Check.MCG_STATUS), listed=LISTED,
        kernel=(MCE_CITE,), source=f"SDM Vol. 4; {_COMMON} 2a MCE rules"),
    Msr(index=0x17B, name="IA32_MCG_CTL", family=Family.MCE, aliases=("MCG_CTL",),
        emul=Emul.MCE, write=WriteRule(check=Check.MCG_CTL), listed=LISTED,
        kernel=(MCE_CITE,), source=f"SDM Vol. 4; {_COMMON} 2a MCE rules"),
    Msr(index=0x4D0, name="IA32_MCG_EXT_CTL", family=Family.MCE, aliases=("MCG_EXT_CTL",),
        handled_by=VMX_ONLY,
        gates=(Gate(cond=Cond.LMCE, host=False, error=KvmRet.ERR),),
        write=WriteRule(reserved=~0x1 & U64), listed=Listed(backends=VMX_ONLY),
        kernel=(VMX_MSR,), source="SDM Vol. 4; vmx_get_msr/vmx_set_msr MCG_EXT_CTL",
        note="a guest access needs FEAT_CTL.LMCE_ENABLED, clear after vCPU creation"),
    *_mce_rows(),
    # -- VMX capabilities -----------------------------------------------------------------------
    *_vmx_cap_rows(),
    # -- APIC -----------------------------------------------------------------------------------
    Msr(index=0x1B, name="IA32_APIC_BASE", family=Family.APIC, aliases=("APIC_BASE",),
        write=WriteRule(check=Check.APIC_BASE), reset=0xFEE00900,
        kernel=(X86_BOTH, cite("lapic.c", "kvm_apic_set_base", "kvm_lapic_reset")),
        source=f"SDM Vol. 4; {_COMMON} 2a APIC_BASE (kvm_apic_set_base)",
        note="0xfee00900 for vCPU 0 (the BSP): xAPIC enabled at the default base"),
    *_x2apic_rows(),
    # -- memory types ---------------------------------------------------------------------------
    Msr(index=0x277, name="IA32_PAT", family=Family.MEMTYPE, aliases=("PAT", "CR_PAT"),
        write=WriteRule(check=Check.PAT), reset=0x0007040600070406, listed=LISTED,
        quirks=(Quirk(backend=Backend.PVM, kind=QuirkKind.NO_VALUE_CHECK, evidence=_PVM_6_18),),
        kernel=(X86_BOTH, X86_RESET, VMX_MSR, SVM_MSR),
        source=f"SDM Vol. 4; {_COMMON} 2a CR_PAT (kvm_pat_valid)"),
    Msr(index=0xFE, name="IA32_MTRRCAP", family=Family.MEMTYPE, aliases=("MTRRCAP",),
        emul=Emul.CONSTANT, reset=0x508, kernel=(MTRR_CITE, X86_BOTH),
        source=f"SDM Vol. 4; {_COMMON} 2a MTRRs (8 variable ranges, fixed, WC)",
        note="reads 0x500 | KVM_NR_VAR_MTRR; outside kvm_set_msr_common's MTRR range, so a"
        " write is UNSUPPORTED"),
    Msr(index=0x2FF, name="IA32_MTRR_DEF_TYPE", family=Family.MEMTYPE,
        aliases=("MTRR_DEF_TYPE", "MTRRDEFTYPE"), emul=Emul.MTRR,
        write=WriteRule(check=Check.MTRR_DEF_TYPE), kernel=(MTRR_CITE,),
        source=f"SDM Vol. 4; {_COMMON} 2a MTRRs (kvm_mtrr_set_msr)"),
    *_mtrr_rows(),
    # -- debug / LBR ----------------------------------------------------------------------------
    Msr(index=0x1D9, name="IA32_DEBUGCTL", family=Family.DEBUG, aliases=("DEBUGCTL",),
        handled_by=frozenset({Backend.VMX, Backend.SVM, Backend.PVM}),
        write=WriteRule(check=Check.DEBUGCTL_VMX),
        overrides=(Override(backend=Backend.SVM, write=WriteRule(check=Check.DEBUGCTL_SVM),
                            kernel=(SVM_MSR,)),
                   Override(backend=Backend.PVM, emul=Emul.IGNORED, write=ANY_VALUE,
                            kernel=(PVM_MSR,))),
        kernel=(VMX_MSR, cite("vmx/vmx.c", "vmx_is_valid_debugctl", "vmx_get_supported_debugctl")),
        source=f"SDM Vol. 4; {_COMMON} 1b (SVM LBRV) and 2a",
        note="not in v6.19's KVM_GET_MSR_INDEX_LIST (docs/reference-notes.md)"),
    Msr(index=0x1DB, name="LASTBRANCHFROMIP", family=Family.DEBUG, emul=Emul.READ_ZERO,
        overrides=(_LBR_SVM,), kernel=(X86_GET, SVM_MSR), source=_LBR_SRC),
    Msr(index=0x1DC, name="LASTBRANCHTOIP", family=Family.DEBUG, emul=Emul.READ_ZERO,
        overrides=(_LBR_SVM,), kernel=(X86_GET, SVM_MSR), source=_LBR_SRC),
    Msr(index=0x1DD, name="LASTINTFROMIP", family=Family.DEBUG, emul=Emul.READ_ZERO,
        overrides=(_LBR_SVM,), kernel=(X86_GET, SVM_MSR), source=_LBR_SRC),
    Msr(index=0x1DE, name="LASTINTTOIP", family=Family.DEBUG, emul=Emul.READ_ZERO,
        overrides=(_LBR_SVM,), kernel=(X86_GET, SVM_MSR), source=_LBR_SRC),
    # -- PMU ------------------------------------------------------------------------------------
    *_pmu_rows(),
    # -- legacy and model-specific MSRs KVM reads as constants or ignores -----------------------
    _zero(0x17, "IA32_PLATFORM_ID"),
    _zero(0x2A, "IA32_EBL_CR_POWERON"),
    _ignored(0x11E, "MSR_IA32_BBL_CR_CTL3", reset=0xBE702111),
    _zero(0xC0010010, "AMD64_SYSCFG", aliases=("SYSCFG",)),
    _zero(0xC0010112, "K8_TSEG_ADDR"),
    _zero(0xC0010113, "K8_TSEG_MASK"),
    _zero(0xC0010055, "K8_INT_PENDING_MSG"),
    _ignored(0xC001001F, "AMD64_NB_CFG"),
    _ignored(0xC001001B, "K7_CLK_CTL", reset=0x20000000),
    _ignored(0xC001102A, "AMD64_BU_CFG2"),
    _ignored(0xC0011022, "AMD64_DC_CFG"),
    _ignored(0xC0011023, "AMD64_TW_CFG"),
    _ignored(0xC001102C, "F15H_EX_CFG"),
    Msr(index=0xC0010020, name="AMD64_PATCH_LOADER", family=Family.LEGACY, emul=Emul.SINK,
        kernel=(X86_SET,), source=f"{_COMMON} 2a (writes dropped, no read handler)"),
    Msr(index=0xC0010058, name="FAM10H_MMIO_CONF_BASE", family=Family.LEGACY,
        emul=Emul.IGNORED, write=WriteRule(reserved=U64), kernel=(X86_BOTH,),
        source=f"{_COMMON} 2a (reads 0; only 0 may be written)"),
    Msr(index=0xC0010015, name="K7_HWCR", family=Family.LEGACY, aliases=("HWCR",),
        write=WriteRule(check=Check.HWCR), listed=LISTED, kernel=(X86_BOTH,),
        source=f"{_COMMON} 2a K7_HWCR (McStatusWrEn, TscFreqSel)"),
    Msr(index=0xC0010140, name="AMD64_OSVW_ID_LENGTH", family=Family.LEGACY,
        gates=(Gate(need=need(F.OSVW), error=KvmRet.ERR),), reset=None,
        overrides=(Override(backend=Backend.PVM, reset=0),), kernel=(X86_BOTH,),
        source=f"{_COMMON} 2a OSVW (needs guest OSVW)",
        note="SVM presets it from the host's OSVW (svm_vcpu_create)"),
    Msr(index=0xC0010141, name="AMD64_OSVW_STATUS", family=Family.LEGACY,
        gates=(Gate(need=need(F.OSVW), error=KvmRet.ERR),), reset=None,
        overrides=(Override(backend=Backend.PVM, reset=0),), kernel=(X86_BOTH,),
        source=f"{_COMMON} 2a OSVW (needs guest OSVW)"),
    # -- SVM-only -------------------------------------------------------------------------------
    Msr(index=0xC0010130, name="SEV_ES_GHCB", family=Family.SVM, emul=Emul.UNSUPPORTED,
        handled_by=SVM_ONLY, reset=None, kernel=(cite("svm/sev.c", "sev_es_recalc_msr_intercepts"),),
        source=f"{_COMMON} 1b (SEV-ES: always passed through)"),
    Msr(index=0xC0010117, name="VM_HSAVE_PA", family=Family.SVM, emul=Emul.IGNORED,
        listed=Listed(vendors=AMD),
        overrides=(Override(backend=Backend.SVM, emul=Emul.STORED,
                            write=WriteRule(check=Check.HSAVE_PA), kernel=(SVM_MSR,)),),
        kernel=(X86_BOTH, SVM_MSR), source=f"{_COMMON} 2a and 2a-SVM VM_HSAVE_PA"),
    Msr(index=0xC0010114, name="VM_CR", family=Family.SVM, handled_by=SVM_ONLY,
        write=WriteRule(check=Check.VM_CR, reserved=~0x1F & U64),
        kernel=(SVM_MSR, cite("svm/svm.c", "svm_set_vm_cr")),
        source=f"{_COMMON} 2a-SVM VM_CR"),
    Msr(index=0xC0010115, name="VM_IGNNE", family=Family.SVM, emul=Emul.SINK,
        handled_by=SVM_ONLY, kernel=(SVM_MSR,),
        source=f"{_COMMON} 2a-SVM VM_IGNNE (writes ignored; no read handler)"),
    Msr(index=0xC0000104, name="AMD64_TSC_RATIO", family=Family.SVM, aliases=("TSC_RATIO",),
        handled_by=frozenset({Backend.SVM, Backend.PVM}),
        gates=(Gate(need=need(F.TSCRATEMSR), host=False, error=KvmRet.ERR),),
        write=WriteRule(check=Check.TSC_RATIO), reset=0x0100000000,
        listed=Listed(backends=frozenset({Backend.SVM})),
        overrides=(Override(backend=Backend.PVM, emul=Emul.REFUSED, gates=(), reset=None),),
        kernel=(SVM_MSR,), source=f"{_COMMON} 2a-SVM TSC_RATIO",
        note="PVM: every access fails (1) on this kernel (observed, docs/conformance.md)"),
    Msr(index=0xC0011021, name="F15H_IC_CFG", family=Family.SVM, emul=Emul.CONSTANT,
        handled_by=SVM_ONLY, kernel=(SVM_MSR,),
        source=f"{_COMMON} 2a-SVM F15H_IC_CFG (0x1e on family 15h models 2-0x1f, else 0)"),
    Msr(index=0xC0011029, name="AMD64_DE_CFG", family=Family.SVM, aliases=("DE_CFG",),
        handled_by=SVM_ONLY, write=WriteRule(check=Check.DE_CFG),
        feature=Listed(backends=SVM_ONLY),
        kernel=(SVM_MSR, cite("svm/svm.c", "svm_get_feature_msr")),
        source=f"{_COMMON} 2a-SVM DE_CFG (LFENCE_SERIALIZE only)"),
    # -- Hyper-V --------------------------------------------------------------------------------
    *_hyperv_rows(),
    # -- PVM virtual MSRs (this kernel's; the RFC's 0x4b564df0-0x4b564df7 are not handled) ----
    _pvm(0x4B564D10, "PVM_MSR_0", Emul.STORED, 0),
    _pvm(0x4B564D11, "PVM_MSR_1", Emul.CONSTANT, 0x4D5650),
    _pvm(0x4B564D12, "PVM_MSR_2", Emul.CONSTANT, 0x1FF),
    _pvm(0x4B564D13, "PVM_MSR_3", Emul.CONSTANT, None),
), key=lambda m: m.index))


def _key(name: str) -> str:
    """Normalise a name: case, '-' vs '_', and the MSR_ / IA32_ / MSR_IA32_ prefixes."""
    key = name.strip().upper().replace("-", "_")
    key = key.removeprefix("MSR_")
    return key.removeprefix("IA32_")


BY_INDEX: dict[int, Msr] = {m.index: m for m in MSRS}
BY_NAME: dict[str, Msr] = {}
for _m in MSRS:
    for _n in _m.names:
        BY_NAME.setdefault(_key(_n), _m)
del _m, _n

FRED_MSRS: tuple[Msr, ...] = tuple(m for m in MSRS if m.family is Family.FRED)


def lookup(index: int) -> Msr | None:
    """The table row of MSR ``index``, or None if KVM does not know it (UNSUPPORTED)."""
    return BY_INDEX.get(index)


def resolve_index(text: str | int) -> int:
    """Turn ``0x1cc``, ``460``, ``IA32_FRED_RSP0``, ``fred_rsp0`` or ``MSR_IA32_FRED_RSP0`` into 0x1cc.

    A number is accepted whether or not the table has a row for it (an unknown MSR);
    a name must be in the table.  Raises UnknownNameError otherwise.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        raw = str(text).strip()
        try:
            value = int(raw, 0)
        except ValueError:
            row = BY_NAME.get(_key(raw))
            if row is None:
                raise UnknownNameError("MSR", raw, "a name from `msrvirt explain --all`"
                                       " or an index such as 0x1cc") from None
            return row.index
    if not 0 <= value <= 0xFFFF_FFFF:
        raise UnknownNameError("MSR", str(text), "indices are 32-bit")
    return value


def resolve_pattern(text: str) -> tuple[int, ...]:
    """The indices ``text`` names: one MSR (as resolve_index), or with ``*``, ``?`` or ``[``
    every table MSR with a name matching the shell-style pattern, in index order.

    Names are normalised as for resolve_index, so ``IA32_FRED_*``, ``fred_*`` and
    ``msr_ia32_fred_*`` match the same MSRs.  UsageError when nothing matches.
    """
    if not any(c in text for c in "*?["):
        return (resolve_index(text),)
    pattern = _key(text)
    found = tuple(m.index for m in MSRS if any(fnmatchcase(_key(n), pattern) for n in m.names))
    if not found:
        raise UsageError(f"MSR pattern {text.strip()!r} must match a name of"
                         " `msrvirt explain --all`, and it matches none")
    return found


def resolve(text: str | int) -> Msr | None:
    """resolve_index, then the row (None for a number with no row)."""
    return lookup(resolve_index(text))


def index_of(name: str) -> int:
    """The index of the MSR called ``name`` (a table name; raises UnknownNameError)."""
    row = BY_NAME.get(_key(name))
    if row is None:
        raise UnknownNameError("MSR", name, "a name of the MSR table")
    return row.index


def display_name(index: int) -> str:
    """The table name of ``index``, or its hex form."""
    row = BY_INDEX.get(index)
    return row.name if row else f"MSR_{index:#010x}"


def span(first: str, last: str) -> range:
    """The indices from MSR ``first`` to MSR ``last``, both included."""
    return range(index_of(first), index_of(last) + 1)


# Named ranges, for the code that works on ranges rather than rows.
X2APIC_RANGE = span("X2APIC_RESERVED_0x800", "X2APIC_RESERVED_0x8ff")

"""CPUID feature bits the MSR policies depend on.

Each feature names the CPUID leaf, subleaf, register and bit that enumerates it
(Intel SDM Vol. 2A CPUID; AMD APM Vol. 3 Appendix E; Linux
arch/x86/include/asm/cpufeatures.h; KVM Documentation/virt/kvm/x86/cpuid.rst
for the KVM paravirtual leaf).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from msrvirt.errors import UnknownNameError


class Reg(StrEnum):
    """A CPUID output register."""

    EAX = "eax"
    EBX = "ebx"
    ECX = "ecx"
    EDX = "edx"


@dataclass(frozen=True, slots=True, kw_only=True)
class CpuidBit:
    """Where one feature is enumerated: CPUID.(EAX=leaf, ECX=subleaf):reg[bit]."""

    leaf: int
    subleaf: int
    reg: Reg
    bit: int
    source: str

    def __str__(self) -> str:
        return f"CPUID.(EAX={self.leaf:#x},ECX={self.subleaf}):{self.reg.upper()}[{self.bit}]"


class Feature(StrEnum):
    """A CPUID feature, by its Linux /proc/cpuinfo-style name."""

    FRED = "fred"
    LKGS = "lkgs"
    WRMSRNS = "wrmsrns"
    SHSTK = "shstk"
    IBT = "ibt"
    LA57 = "la57"
    RDPID = "rdpid"
    WAITPKG = "waitpkg"
    TSC_ADJUST = "tsc_adjust"
    MPX = "mpx"
    INTEL_PT = "intel_pt"
    SPEC_CTRL = "spec_ctrl"
    STIBP = "stibp"
    FLUSH_L1D = "flush_l1d"
    ARCH_CAPABILITIES = "arch_capabilities"
    SPEC_CTRL_SSBD = "spec_ctrl_ssbd"
    XSAVES = "xsaves"
    XFD = "xfd"
    LM = "lm"
    NX = "nx"
    RDTSCP = "rdtscp"
    IBPB = "ibpb"
    AMD_IBRS = "amd_ibrs"
    AMD_STIBP = "amd_stibp"
    AMD_SSBD = "amd_ssbd"
    VIRT_SSBD = "virt_ssbd"
    X2APIC = "x2apic"
    PDCM = "pdcm"
    XSAVE = "xsave"
    SSE3 = "sse3"
    APERFMPERF = "aperfmperf"
    KVM_CLOCK = "kvmclock"
    KVM_CLOCK2 = "kvmclock2"
    KVM_ASYNC_PF = "kvm_async_pf"
    KVM_STEAL_TIME = "kvm_steal_time"
    KVM_PV_EOI = "kvm_pv_eoi"
    KVM_POLL_CONTROL = "kvm_poll_control"
    KVM_ASYNC_PF_INT = "kvm_async_pf_int"
    KVM_ASYNC_PF_VMEXIT = "kvm_async_pf_vmexit"
    VMX = "vmx"
    SVM = "svm"
    DS = "ds"
    DTES64 = "dtes64"
    TSC_DEADLINE = "tsc_deadline_timer"
    HYPERVISOR = "hypervisor"
    HLE = "hle"
    RTM = "rtm"
    SGX_LC = "sgx_lc"
    BUS_LOCK_DETECT = "bus_lock_detect"
    OSVW = "osvw"
    PERFCTR_CORE = "perfctr_core"
    FXSR_OPT = "fxsr_opt"
    TSCRATEMSR = "tsc_scale"
    LFENCE_RDTSC = "lfence_rdtsc"
    AUTOIBRS = "auto_ibrs"
    SBPB = "sbpb"
    PERFMON_V2 = "perfmon_v2"

    @property
    def cpuid(self) -> CpuidBit:
        """Where the feature is enumerated."""
        return CPUID_BITS[self]


_SDM = "Intel SDM Vol. 2A, CPUID"
_APM = "AMD APM Vol. 3, Appendix E"
_KVM_PV = "Linux Documentation/virt/kvm/x86/cpuid.rst"


def _bit(leaf: int, subleaf: int, reg: Reg, bit: int, source: str) -> CpuidBit:
    return CpuidBit(leaf=leaf, subleaf=subleaf, reg=reg, bit=bit, source=source)


CPUID_BITS: dict[Feature, CpuidBit] = {
    Feature.SSE3: _bit(0x1, 0, Reg.ECX, 0, _SDM),
    Feature.DTES64: _bit(0x1, 0, Reg.ECX, 2, _SDM),
    Feature.VMX: _bit(0x1, 0, Reg.ECX, 5, _SDM),
    Feature.TSC_DEADLINE: _bit(0x1, 0, Reg.ECX, 24, _SDM),
    Feature.HYPERVISOR: _bit(0x1, 0, Reg.ECX, 31, _SDM + " (reserved for hypervisors)"),
    Feature.DS: _bit(0x1, 0, Reg.EDX, 21, _SDM),
    Feature.PDCM: _bit(0x1, 0, Reg.ECX, 15, _SDM),
    Feature.X2APIC: _bit(0x1, 0, Reg.ECX, 21, _SDM),
    Feature.XSAVE: _bit(0x1, 0, Reg.ECX, 26, _SDM),
    Feature.APERFMPERF: _bit(0x6, 0, Reg.ECX, 0, _SDM),
    Feature.TSC_ADJUST: _bit(0x7, 0, Reg.EBX, 1, _SDM),
    Feature.HLE: _bit(0x7, 0, Reg.EBX, 4, _SDM),
    Feature.RTM: _bit(0x7, 0, Reg.EBX, 11, _SDM),
    Feature.MPX: _bit(0x7, 0, Reg.EBX, 14, _SDM),
    Feature.INTEL_PT: _bit(0x7, 0, Reg.EBX, 25, _SDM),
    Feature.WAITPKG: _bit(0x7, 0, Reg.ECX, 5, _SDM),
    Feature.SHSTK: _bit(0x7, 0, Reg.ECX, 7, _SDM + " (CET_SS)"),
    Feature.LA57: _bit(0x7, 0, Reg.ECX, 16, _SDM),
    Feature.RDPID: _bit(0x7, 0, Reg.ECX, 22, _SDM),
    Feature.BUS_LOCK_DETECT: _bit(0x7, 0, Reg.ECX, 24, _SDM),
    Feature.SGX_LC: _bit(0x7, 0, Reg.ECX, 30, _SDM),
    Feature.IBT: _bit(0x7, 0, Reg.EDX, 20, _SDM + " (CET_IBT)"),
    Feature.SPEC_CTRL: _bit(0x7, 0, Reg.EDX, 26, _SDM + " (IBRS/IBPB)"),
    Feature.STIBP: _bit(0x7, 0, Reg.EDX, 27, _SDM),
    Feature.FLUSH_L1D: _bit(0x7, 0, Reg.EDX, 28, _SDM + " (L1D_FLUSH)"),
    Feature.ARCH_CAPABILITIES: _bit(0x7, 0, Reg.EDX, 29, _SDM),
    Feature.SPEC_CTRL_SSBD: _bit(0x7, 0, Reg.EDX, 31, _SDM),
    Feature.FRED: _bit(0x7, 1, Reg.EAX, 17, _SDM + "; fred-arch-facts.md section 1"),
    Feature.LKGS: _bit(0x7, 1, Reg.EAX, 18, _SDM + "; fred-arch-facts.md section 1"),
    Feature.WRMSRNS: _bit(0x7, 1, Reg.EAX, 19, _SDM + "; fred-arch-facts.md section 1"),
    Feature.XSAVES: _bit(0xD, 1, Reg.EAX, 3, _SDM),
    Feature.XFD: _bit(0xD, 1, Reg.EAX, 4, _SDM),
    Feature.SVM: _bit(0x80000001, 0, Reg.ECX, 2, _APM),
    Feature.OSVW: _bit(0x80000001, 0, Reg.ECX, 9, _APM),
    Feature.PERFCTR_CORE: _bit(0x80000001, 0, Reg.ECX, 23, _APM),
    Feature.NX: _bit(0x80000001, 0, Reg.EDX, 20, _SDM),
    Feature.FXSR_OPT: _bit(0x80000001, 0, Reg.EDX, 25, _APM),
    Feature.RDTSCP: _bit(0x80000001, 0, Reg.EDX, 27, _SDM),
    Feature.LM: _bit(0x80000001, 0, Reg.EDX, 29, _SDM),
    Feature.IBPB: _bit(0x80000008, 0, Reg.EBX, 12, _APM + " (AMD_IBPB)"),
    Feature.AMD_IBRS: _bit(0x80000008, 0, Reg.EBX, 14, _APM),
    Feature.AMD_STIBP: _bit(0x80000008, 0, Reg.EBX, 15, _APM),
    Feature.AMD_SSBD: _bit(0x80000008, 0, Reg.EBX, 24, _APM),
    Feature.VIRT_SSBD: _bit(0x80000008, 0, Reg.EBX, 25, _APM),
    Feature.TSCRATEMSR: _bit(0x8000000A, 0, Reg.EDX, 4, _APM + " (TscRateMsr)"),
    Feature.LFENCE_RDTSC: _bit(0x80000021, 0, Reg.EAX, 2, _APM + " (LFENCE serializing)"),
    Feature.AUTOIBRS: _bit(0x80000021, 0, Reg.EAX, 8, _APM),
    Feature.SBPB: _bit(0x80000021, 0, Reg.EAX, 27, _APM),
    Feature.PERFMON_V2: _bit(0x80000022, 0, Reg.EAX, 0, _APM),
    Feature.KVM_CLOCK: _bit(0x40000001, 0, Reg.EAX, 0, _KVM_PV + " (KVM_FEATURE_CLOCKSOURCE)"),
    Feature.KVM_CLOCK2: _bit(0x40000001, 0, Reg.EAX, 3, _KVM_PV + " (KVM_FEATURE_CLOCKSOURCE2)"),
    Feature.KVM_ASYNC_PF: _bit(0x40000001, 0, Reg.EAX, 4, _KVM_PV + " (KVM_FEATURE_ASYNC_PF)"),
    Feature.KVM_STEAL_TIME: _bit(0x40000001, 0, Reg.EAX, 5, _KVM_PV + " (KVM_FEATURE_STEAL_TIME)"),
    Feature.KVM_PV_EOI: _bit(0x40000001, 0, Reg.EAX, 6, _KVM_PV + " (KVM_FEATURE_PV_EOI)"),
    Feature.KVM_POLL_CONTROL: _bit(
        0x40000001, 0, Reg.EAX, 12, _KVM_PV + " (KVM_FEATURE_POLL_CONTROL)"
    ),
    Feature.KVM_ASYNC_PF_VMEXIT: _bit(
        0x40000001, 0, Reg.EAX, 10, _KVM_PV + " (KVM_FEATURE_ASYNC_PF_VMEXIT)"
    ),
    Feature.KVM_ASYNC_PF_INT: _bit(
        0x40000001, 0, Reg.EAX, 14, _KVM_PV + " (KVM_FEATURE_ASYNC_PF_INT)"
    ),
}

# The CPUID leaves hypervisors use (Intel SDM Vol. 2A: 0x40000000-0x4FFFFFFF are reserved
# for them; KVM looks for its own in steps of 0x100 up to 0x4000ff00).
HYPERVISOR_LEAVES = range(0x40000000, 0x40010000)

# Features that KVM derives from others (Linux cpufeatures.h; fred-arch-facts.md 1).
IMPLIES: dict[Feature, frozenset[Feature]] = {
    Feature.FRED: frozenset({Feature.LKGS}),
}


def feature(name: str) -> Feature:
    """Return the feature called ``name`` (case-insensitive, '-' or '_')."""
    key = name.strip().lower().replace("-", "_")
    try:
        return Feature(key)
    except ValueError:
        raise UnknownNameError(
            "CPUID feature", name, "see `msrvirt hosts --features`"
        ) from None

"""KVM's MSR emulation, family by family, against Linux v6.19 (matankalina/linux-6.19.10-fork
@ 094d8694).  Each expectation cites the kernel function it comes from; none is copied from
msrvirt's own output.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from msrvirt.arch.cpuid import Feature
from msrvirt.arch.hosts import (
    HOSTS,
    NO_PMU,
    KvmParams,
    PmuCaps,
    PtMode,
    host,
    params_from,
    reported_phys_addr_bits,
    reported_pmu,
)
from msrvirt.arch.kvm import U64, Access, ExitReason, KvmRet, Vendor
from msrvirt.arch.msrs import index_of
from msrvirt.policy.decide import Decision, Initiator, MsrAccess, Outcome, advertised, decide, feature_listed
from msrvirt.policy.policies import policy
from msrvirt.policy.scenario import Runtime, Scenario

F = Feature
R, W = Access.R, Access.W
ALL = ExitReason.INVAL | ExitReason.UNKNOWN | ExitReason.FILTER
OK, ERR, UNSUP = KvmRet.OK, KvmRet.ERR, KvmRet.UNSUPPORTED
IDX = index_of


def sc(name: str = "intel-fred", *, drop: set[Feature] | frozenset[Feature] = frozenset(),
       add: set[Feature] | frozenset[Feature] = frozenset(), pol: str = "intercept-all",
       runtime: Runtime | None = None, params: dict[str, object] | None = None) -> Scenario:
    h = host(name)
    if params:
        h = replace(h, params=replace(h.params, **params))  # type: ignore[arg-type]
    pol = "pvm" if h.backend.value == "pvm" else pol
    return Scenario(host=h, guest=(h.features | add) - drop, policy=policy(pol),
                    exits=ALL, runtime=runtime or Runtime())


def acc(s: Scenario, name: str | int, access: Access, value: int = 0, *,
        by_host: bool = False, current: int | None = None) -> Decision:
    index = name if isinstance(name, int) else IDX(name)
    return decide(s, MsrAccess(index, access, value,
                               Initiator.HOST if by_host else Initiator.GUEST, current))


def ret(d: Decision) -> KvmRet | None:
    return d.kvm_ret


RT_X2APIC = Runtime(x2apic_mode=True)
RT_NO_LAPIC = Runtime(lapic_in_kernel=False)
RT_CMCI = Runtime(mcg_cap=0x20 | 1 << 10 | 1 << 8)  # MCG_CMCI_P, MCG_CTL_P

# (id, scenario, MSR, access, value, host-initiated, expected KvmRet)
CASES: list[tuple[str, Scenario, str | int, Access, int, bool, KvmRet]] = [
    # x86.c set_msr_mce / get_msr_mce; mcg_cap = KVM_MAX_MCE_BANKS (32) at vCPU creation
    ("MC31_CTL exists with the default 32 banks (kvm_arch_vcpu_create)",
     sc(), "IA32_MC31_CTL", R, 0, False, OK),
    ("MC2_CTL is refused beyond MCG_CAP's 2 banks (set_msr_mce: msr > last_msr)",
     sc(runtime=Runtime(mcg_cap=2)), "IA32_MC2_CTL", W, 0, False, ERR),
    ("MC0_CTL accepts all ones with bit 10 clear (the K8 GART workaround)",
     sc(), "IA32_MC0_CTL", W, U64 & ~(1 << 10), False, OK),
    ("MC0_CTL refuses any value but 0 or all ones", sc(), "IA32_MC0_CTL", W, 0x2, False, ERR),
    ("MC0_STATUS refuses a non-zero guest write on Intel", sc(), "IA32_MC0_STATUS", W, 1, False,
     ERR),
    ("MC0_STATUS takes a non-zero guest write on AMD with HWCR.McStatusWrEn",
     sc("amd-zen5", runtime=Runtime(mcstatuswren=True)), "IA32_MC0_STATUS", W, 1, False, OK),
    ("MC0_STATUS takes a non-zero write from userspace", sc(), "IA32_MC0_STATUS", W, 1, True, OK),
    ("MC5_MISC takes any value", sc(), "IA32_MC5_MISC", W, U64, False, OK),
    ("MC0_CTL2 fails for the guest without MCG_CMCI_P", sc(), "IA32_MC0_CTL2", R, 0, False, ERR),
    ("MC0_CTL2 reads for userspace without MCG_CMCI_P", sc(), "IA32_MC0_CTL2", R, 0, True, OK),
    ("MC0_CTL2 takes 0 from userspace without MCG_CMCI_P", sc(), "IA32_MC0_CTL2", W, 0, True, OK),
    ("MC0_CTL2 refuses 1 from userspace without MCG_CMCI_P", sc(), "IA32_MC0_CTL2", W, 1, True,
     ERR),
    ("MC0_CTL2 refuses reserved bit 31 with MCG_CMCI_P", sc(runtime=RT_CMCI), "IA32_MC0_CTL2", W,
     1 << 31, False, ERR),
    ("MC0_CTL2 takes CMCI_EN and a threshold with MCG_CMCI_P", sc(runtime=RT_CMCI),
     "IA32_MC0_CTL2", W, 1 << 30 | 0x7FFF, False, OK),
    ("MCG_CTL fails for the guest without MCG_CTL_P", sc(), "IA32_MCG_CTL", R, 0, False, ERR),
    ("MCG_CTL reads for userspace without MCG_CTL_P", sc(), "IA32_MCG_CTL", R, 0, True, OK),
    ("MCG_CTL refuses a value but 0 or all ones with MCG_CTL_P", sc(runtime=RT_CMCI),
     "IA32_MCG_CTL", W, 5, False, ERR),
    ("MCG_CAP has no write handler (kvm_set_msr_common)", sc(), "IA32_MCG_CAP", W, 0, False,
     UNSUP),
    ("P5_MC_TYPE reads 0 (get_msr_mce)", sc(), "IA32_P5_MC_TYPE", R, 0, False, OK),
    ("P5_MC_TYPE has no write handler", sc(), "IA32_P5_MC_TYPE", W, 0, False, UNSUP),
    # mtrr.c kvm_mtrr_set_msr / kvm_mtrr_get_msr / kvm_mtrr_valid (MAXPHYADDR 46)
    ("MTRR_PHYSBASE7 exists (KVM_NR_VAR_MTRR = 8)", sc(), "IA32_MTRR_PHYSBASE7", R, 0, False, OK),
    ("0x210, past the eight variable pairs, is refused (find_mtrr returns NULL)",
     sc(), 0x210, R, 0, False, ERR),
    ("MTRR_PHYSBASE0 refuses memory type 2", sc(), "IA32_MTRR_PHYSBASE0", W, 2, False, ERR),
    ("MTRR_PHYSBASE0 refuses bits 11:8", sc(), "IA32_MTRR_PHYSBASE0", W, 0x106, False, ERR),
    ("MTRR_PHYSBASE0 refuses a base above MAXPHYADDR", sc(), "IA32_MTRR_PHYSBASE0", W,
     (1 << 46) | 6, False, ERR),
    ("MTRR_PHYSMASK0 refuses bits 10:0", sc(), "IA32_MTRR_PHYSMASK0", W, 0x1, False, ERR),
    ("MTRR_PHYSMASK0 takes valid and address bits", sc(), "IA32_MTRR_PHYSMASK0", W,
     0xFFF000 | 1 << 11, False, OK),
    ("MTRRFIX4K_C0000 refuses a byte of type 3", sc(), "IA32_MTRRFIX4K_C0000", W, 0x0306, False,
     ERR),
    ("MTRRCAP reads 0x508 (0x500 | KVM_NR_VAR_MTRR)", sc(), "IA32_MTRRCAP", R, 0, False, OK),
    ("MTRRCAP has no write handler: outside kvm_set_msr_common's MTRR range", sc(),
     "IA32_MTRRCAP", W, 0, False, UNSUP),
    # lapic.c kvm_x2apic_msr_read / kvm_x2apic_msr_write / kvm_lapic_reg_write
    ("x2APIC TPR fails outside x2APIC mode", sc(), "X2APIC_TPR", R, 0, False, ERR),
    ("x2APIC TPR fails without an in-kernel APIC", sc(runtime=RT_NO_LAPIC), "X2APIC_TPR", R, 0,
     False, ERR),
    ("x2APIC TPR reads in x2APIC mode", sc(runtime=RT_X2APIC), "X2APIC_TPR", R, 0, False, OK),
    ("x2APIC TPR refuses bits 63:32", sc(runtime=RT_X2APIC), "X2APIC_TPR", W, 1 << 32, False,
     ERR),
    ("x2APIC EOI is write-only", sc(runtime=RT_X2APIC), "X2APIC_EOI", R, 0, False, ERR),
    ("x2APIC EOI takes a write", sc(runtime=RT_X2APIC), "X2APIC_EOI", W, 0, False, OK),
    ("x2APIC ID is read-only in x2APIC mode", sc(runtime=RT_X2APIC), "X2APIC_ID", W, 0, False,
     ERR),
    ("x2APIC LDR is read-only in x2APIC mode", sc(runtime=RT_X2APIC), "X2APIC_LDR", W, 0, False,
     ERR),
    ("x2APIC DFR does not exist in x2APIC mode", sc(runtime=RT_X2APIC), "X2APIC_DFR", R, 0,
     False, ERR),
    ("x2APIC ICR2 does not exist in x2APIC mode", sc(runtime=RT_X2APIC), "X2APIC_ICR2", R, 0,
     False, ERR),
    ("x2APIC ESR takes only 0", sc(runtime=RT_X2APIC), "X2APIC_ESR", W, 1, False, ERR),
    ("x2APIC SELF_IPI refuses bits 31:8", sc(runtime=RT_X2APIC), "X2APIC_SELF_IPI", W, 0x100,
     False, ERR),
    ("x2APIC SELF_IPI takes a vector", sc(runtime=RT_X2APIC), "X2APIC_SELF_IPI", W, 0x30, False,
     OK),
    ("x2APIC ICR refuses reserved bit 13 (X2APIC_ICR_RESERVED_BITS)", sc(runtime=RT_X2APIC),
     "X2APIC_ICR", W, 1 << 13, False, ERR),
    ("x2APIC ICR takes a 64-bit destination", sc(runtime=RT_X2APIC), "X2APIC_ICR", W,
     (5 << 32) | 0x30, False, OK),
    ("x2APIC LVT_CMCI does not exist without MCG_CMCI_P", sc(runtime=RT_X2APIC),
     "X2APIC_LVT_CMCI", R, 0, False, ERR),
    ("x2APIC LVT_CMCI exists with MCG_CMCI_P", sc(runtime=replace(RT_CMCI, x2apic_mode=True)),
     "X2APIC_LVT_CMCI", R, 0, False, OK),
    ("x2APIC TMCCT is read-only", sc(runtime=RT_X2APIC), "X2APIC_TMCCT", W, 0, False, ERR),
    ("0x840, past the last x2APIC register, fails", sc(runtime=RT_X2APIC), 0x840, R, 0, False,
     ERR),
    # pmu.c, vmx/pmu_intel.c, svm/pmu.c (intel-fred: PMU v2, 8 GP, 3 fixed)
    ("PERFCTR7 is a counter of the vCPU's PMU", sc(), "IA32_PERFCTR7", R, 0, False, OK),
    ("PERFCTR7 is UNSUPPORTED with kvm.enable_pmu off", sc(params={"enable_pmu": False}),
     "IA32_PERFCTR7", R, 0, False, UNSUP),
    ("P6 PERFCTR1 reads 0 with kvm.enable_pmu off (kvm_get_msr_common's legacy range)",
     sc(params={"enable_pmu": False}), "IA32_PERFCTR1", R, 0, False, OK),
    ("P6 EVNTSEL0 drops a write with kvm.enable_pmu off", sc(params={"enable_pmu": False}),
     "IA32_PERFEVTSEL0", W, 0x1234, False, OK),
    ("PERFEVTSEL0 refuses bit 21 (pmu->reserved_bits)", sc(), "IA32_PERFEVTSEL0", W, 1 << 21,
     False, ERR),
    ("PERFEVTSEL3 beyond a 2-counter guest PMU is UNSUPPORTED", sc(runtime=Runtime(pmu_gp=2)),
     "IA32_PERFEVTSEL3", R, 0, False, UNSUP),
    ("FIXED_CTR2 exists with three fixed counters", sc(), "IA32_FIXED_CTR2", R, 0, False, OK),
    ("FIXED_CTR_CTRL refuses AnyThread (bit 2)", sc(), "IA32_FIXED_CTR_CTRL", W, 1 << 2, False,
     ERR),
    ("PERF_GLOBAL_CTRL refuses a bit of no counter", sc(), "IA32_PERF_GLOBAL_CTRL", W, 1 << 8,
     False, ERR),
    ("PERF_GLOBAL_STATUS is read-only for the guest", sc(), "IA32_PERF_GLOBAL_STATUS", W, 0,
     False, ERR),
    ("PERF_GLOBAL_CTRL is UNSUPPORTED for a version 1 PMU", sc(runtime=Runtime(pmu_version=1)),
     "IA32_PERF_GLOBAL_CTRL", R, 0, False, UNSUP),
    ("IA32_PMC0 exists with PERF_CAPABILITIES.FW_WRITES", sc(), "IA32_PMC0", R, 0, False, OK),
    ("K7_PERFCTR3 is a counter on AMD", sc("amd-zen5"), "K7_PERFCTR3", R, 0, False, OK),
    ("F15H_PERF_CTL0 is UNSUPPORTED without guest PERFCTR_CORE",
     sc("amd-zen5", drop={F.PERFCTR_CORE}), "F15H_PERF_CTL0", R, 0, False, UNSUP),
    ("AMD64_PERF_CNTR_GLOBAL_CTL needs PerfMonV2", sc("amd-zen5", drop={F.PERFMON_V2}),
     "AMD64_PERF_CNTR_GLOBAL_CTL", R, 0, False, UNSUP),
    ("AMD event selects drop reserved bits instead of failing", sc("amd-zen5"), "K7_EVNTSEL0", W,
     U64, False, OK),
    # vmx/vmx.c vmx_get_msr / vmx_set_msr; vmx/nested.c vmx_set_vmx_msr
    ("VMX_BASIC reads for a VMX guest", sc(), "IA32_VMX_BASIC", R, 0, False, OK),
    ("VMX_BASIC fails without guest VMX", sc(drop={F.VMX}), "IA32_VMX_BASIC", R, 0, False, ERR),
    ("VMX_BASIC is read-only for the guest", sc(), "IA32_VMX_BASIC", W, 0, False, ERR),
    ("VMX_PINBASED_CTLS cannot be restored by userspace (-EINVAL)", sc(),
     "IA32_VMX_PINBASED_CTLS", W, 0, True, ERR),
    ("VMX_BASIC is UNSUPPORTED on SVM", sc("amd-zen5"), "IA32_VMX_BASIC", R, 0, False, UNSUP),
    # feature and model MSRs (x86.c)
    ("PLATFORM_INFO reads CPUID_FAULT after vCPU creation", sc(), "MSR_PLATFORM_INFO", R, 0,
     False, OK),
    ("PLATFORM_INFO is written only by userspace", sc(), "MSR_PLATFORM_INFO", W, 0, False, ERR),
    ("PLATFORM_INFO fails for the guest with KVM_CAP_MSR_PLATFORM_INFO off",
     sc(runtime=Runtime(platform_info_hidden=True)), "MSR_PLATFORM_INFO", R, 0, False, ERR),
    ("ARCH_CAPABILITIES is written only by userspace", sc(), "IA32_ARCH_CAPABILITIES", W, 0,
     False, UNSUP),
    ("PERF_CAPABILITIES refuses bits KVM does not support", sc(), "IA32_PERF_CAPABILITIES", W,
     1 << 15, True, ERR),
    ("UCODE_REV drops a guest write", sc(), "IA32_UCODE_REV", W, 5, False, OK),
    ("MISC_FEATURES_ENABLES takes CPUID faulting", sc(), "MSR_MISC_FEATURES_ENABLES", W, 1,
     False, OK),
    ("MISC_FEATURES_ENABLES refuses bit 1", sc(), "MSR_MISC_FEATURES_ENABLES", W, 2, False, ERR),
    ("SMBASE fails for the guest", sc(), "IA32_SMBASE", R, 0, False, ERR),
    ("SMBASE fails for userspace without CONFIG_KVM_SMM", sc(params={"smm": False}),
     "IA32_SMBASE", R, 0, True, ERR),
    ("SMI_COUNT is written only by userspace", sc(), "MSR_SMI_COUNT", W, 0, False, ERR),
    ("FEAT_CTL refuses SGX_ENABLED for a guest without SGX", sc(), "IA32_FEAT_CTL", W,
     1 | 1 << 18, False, ERR),
    ("FEAT_CTL takes VMXON outside SMX for a VMX guest", sc(), "IA32_FEAT_CTL", W, 1 | 1 << 2,
     False, OK),
    ("FEAT_CTL refuses a guest write once locked", sc(runtime=Runtime(feat_ctl=1)),
     "IA32_FEAT_CTL", W, 1, False, ERR),
    ("MCG_EXT_CTL fails for the guest until FEAT_CTL.LMCE_ENABLED", sc(), "IA32_MCG_EXT_CTL", R,
     0, False, ERR),
    ("UMWAIT_CONTROL refuses bit 1", sc(), "IA32_UMWAIT_CONTROL", W, 2, False, ERR),
    ("TSX_CTRL fails for a guest without ARCH_CAPABILITIES.TSX_CTRL_MSR",
     replace(sc(), host=replace(host("intel-fred"), feature_msrs=((IDX("IA32_ARCH_CAPABILITIES"),
                                                                  0),))),
     "IA32_TSX_CTRL", R, 0, False, ERR),
    # read-as-zero, constants and ignored MSRs (kvm_get_msr_common / kvm_set_msr_common)
    ("BBL_CR_CTL3 reads its constant", sc(), "MSR_IA32_BBL_CR_CTL3", R, 0, False, OK),
    ("BBL_CR_CTL3 drops writes", sc(), "MSR_IA32_BBL_CR_CTL3", W, 1, False, OK),
    ("K7_CLK_CTL drops writes", sc(), "K7_CLK_CTL", W, 5, False, OK),
    ("UCODE_WRITE has no read handler", sc(), "IA32_UCODE_WRITE", R, 0, False, UNSUP),
    ("UCODE_WRITE drops writes", sc(), "IA32_UCODE_WRITE", W, 1, False, OK),
    ("FAM10H_MMIO_CONF_BASE refuses a non-zero write", sc(), "FAM10H_MMIO_CONF_BASE", W, 1,
     False, ERR),
    ("FSB_FREQ has no write handler", sc(), "MSR_FSB_FREQ", W, 0, False, UNSUP),
    ("RAPL_POWER_UNIT reads 0", sc(), "MSR_RAPL_POWER_UNIT", R, 0, False, OK),
    ("RAPL_POWER_UNIT has no write handler", sc(), "MSR_RAPL_POWER_UNIT", W, 0, False, UNSUP),
    ("K7_HWCR takes McStatusWrEn", sc(), "K7_HWCR", W, 1 << 18, False, OK),
    ("K7_HWCR drops bit 6 (flush filter) instead of failing", sc(), "K7_HWCR", W, 0x40, False,
     OK),
    ("K7_HWCR refuses bit 0", sc(), "K7_HWCR", W, 1, False, ERR),
    ("OSVW_STATUS fails without guest OSVW", sc(), "AMD64_OSVW_STATUS", R, 0, False, ERR),
    # svm/svm.c svm_get_msr / svm_set_msr
    ("VM_CR refuses bits outside SVM_VM_CR_VALID_MASK", sc("amd-zen5"), "VM_CR", W, 1 << 5,
     False, ERR),
    ("VM_HSAVE_PA refuses a guest write that is no page address", sc("amd-zen5"), "VM_HSAVE_PA",
     W, 0x1001, False, ERR),
    ("VM_HSAVE_PA takes any value from userspace", sc("amd-zen5"), "VM_HSAVE_PA", W, 0x1001, True,
     OK),
    ("VM_HSAVE_PA reads 0 on VMX (kvm_get_msr_common)", sc(), "VM_HSAVE_PA", R, 0, False, OK),
    ("VM_IGNNE has no read handler", sc("amd-zen5"), "VM_IGNNE", R, 0, False, UNSUP),
    ("TSC_RATIO refuses reserved bits", sc("amd-zen5"), "AMD64_TSC_RATIO", W, 1 << 40, False, ERR),
    ("DE_CFG refuses bits but LFENCE_SERIALIZE", sc("amd-zen5"), "AMD64_DE_CFG", W, 1, False, ERR),
    ("DEBUGCTL refuses BTF's neighbour bit 2 on SVM", sc("amd-zen5"), "IA32_DEBUGCTL", W, 4,
     False, ERR),
    ("DEBUGCTL drops any write on SVM with kvm_amd.lbrv off",
     sc("amd-zen5", params={"lbrv": False}), "IA32_DEBUGCTL", W, 4, False, OK),
    ("LASTBRANCHFROMIP has no write handler on SVM", sc("amd-zen5"), "LASTBRANCHFROMIP", W, 0,
     False, UNSUP),
    # hyperv.c kvm_hv_get_msr_common / kvm_hv_set_msr_common (Hyper-V CPUID on)
    ("Hyper-V GUEST_OS_ID is UNSUPPORTED without CONFIG_KVM_HYPERV",
     sc(params={"hyperv": False}, runtime=Runtime(hyperv=True)), "HV_X64_MSR_GUEST_OS_ID", R, 0,
     False, UNSUP),
    ("Hyper-V GUEST_OS_ID fails for a guest without the Hyper-V interface", sc(),
     "HV_X64_MSR_GUEST_OS_ID", R, 0, False, ERR),
    ("Hyper-V GUEST_OS_ID reads for userspace without the interface", sc(),
     "HV_X64_MSR_GUEST_OS_ID", R, 0, True, OK),
    ("Hyper-V GUEST_OS_ID stores a guest write", sc(runtime=Runtime(hyperv=True)),
     "HV_X64_MSR_GUEST_OS_ID", W, 0x1234, False, OK),
    ("Hyper-V VP_INDEX is set only by userspace", sc(runtime=Runtime(hyperv=True)),
     "HV_X64_MSR_VP_INDEX", W, 1, False, ERR),
    ("Hyper-V VP_INDEX refuses KVM_MAX_VCPUS", sc(runtime=Runtime(hyperv=True)),
     "HV_X64_MSR_VP_INDEX", W, 4096, True, ERR),
    ("Hyper-V 0x40000004, in the routed range but unimplemented, fails",
     sc(runtime=Runtime(hyperv=True)), 0x40000004, R, 0, False, ERR),
    ("0x400000A0, between SINT15 and STIMER0, is not routed to Hyper-V",
     sc(runtime=Runtime(hyperv=True)), 0x400000A0, R, 0, False, UNSUP),
    ("Hyper-V SINT0 fails for the guest while SynIC is inactive",
     sc(runtime=Runtime(hyperv=True)), "HV_X64_MSR_SINT0", R, 0, False, ERR),
    ("Hyper-V STIMER0_CONFIG reads for the guest while SynIC is inactive",
     sc(runtime=Runtime(hyperv=True)), "HV_X64_MSR_STIMER0_CONFIG", R, 0, False, OK),
    ("Hyper-V STIMER0_CONFIG refuses a non-zero userspace write while SynIC is inactive",
     sc(runtime=Runtime(hyperv=True)), "HV_X64_MSR_STIMER0_CONFIG", W, 1, True, ERR),
    ("Hyper-V TIME_REF_COUNT is read-only for the guest", sc(runtime=Runtime(hyperv=True)),
     "HV_X64_MSR_TIME_REF_COUNT", W, 0, False, ERR),
    ("Hyper-V TSC_INVARIANT_CONTROL refuses bit 1", sc(runtime=Runtime(hyperv=True)),
     "HV_X64_MSR_TSC_INVARIANT_CONTROL", W, 2, False, ERR),
    ("Hyper-V EOI fails without an in-kernel APIC",
     sc(runtime=Runtime(hyperv=True, lapic_in_kernel=False)), "HV_X64_MSR_EOI", W, 0, False,
     ERR),
    # KVM PV MSRs (x86.c; cpuid.h guest_pv_has)
    ("KVM_POLL_CONTROL refuses bit 1", sc(), "KVM_POLL_CONTROL", W, 2, False, ERR),
    ("KVM_POLL_CONTROL reads 1 after vCPU creation (kvm_arch_vcpu_postcreate)", sc(),
     "KVM_POLL_CONTROL", R, 0, False, OK),
    ("KVM_SYSTEM_TIME_NEW fails (1) with enforced PV CPUID lacking CLOCKSOURCE2",
     sc(drop={F.KVM_CLOCK2}, runtime=Runtime(enforce_pv_cpuid=True)), "KVM_SYSTEM_TIME_NEW", R,
     0, False, ERR),
    ("KVM_SYSTEM_TIME_NEW fails for userspace too with enforced PV CPUID",
     sc(drop={F.KVM_CLOCK2}, runtime=Runtime(enforce_pv_cpuid=True)), "KVM_SYSTEM_TIME_NEW", R,
     0, True, ERR),
    ("KVM_SYSTEM_TIME_NEW ignores the PV CPUID unless enforced", sc(drop={F.KVM_CLOCK2}),
     "KVM_SYSTEM_TIME_NEW", R, 0, False, OK),
    ("KVM_ASYNC_PF_EN refuses bit 4", sc(), "KVM_ASYNC_PF_EN", W, 1 << 4, False, ERR),
    ("KVM_ASYNC_PF_EN refuses non-zero without an in-kernel APIC", sc(runtime=RT_NO_LAPIC),
     "KVM_ASYNC_PF_EN", W, 0x1000, False, ERR),
    ("KVM_ASYNC_PF_INT fails without an in-kernel APIC", sc(runtime=RT_NO_LAPIC),
     "KVM_ASYNC_PF_INT", W, 0, False, ERR),
    ("KVM_PV_EOI_EN refuses a misaligned address", sc(), "KVM_PV_EOI_EN", W, 0x1002, False, ERR),
    ("KVM_STEAL_TIME refuses bits 5:1", sc(), "KVM_STEAL_TIME", W, 1 << 3, False, ERR),
    ("KVM_ASYNC_PF_ACK reads 0", sc(), "KVM_ASYNC_PF_ACK", R, 0, False, OK),
]


@pytest.mark.parametrize(("s", "msr", "access", "value", "by_host", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_kvm_answers(s: Scenario, msr: str | int, access: Access, value: int, by_host: bool,
                     expected: KvmRet) -> None:
    d = acc(s, msr, access, value, by_host=by_host)
    got = d.kvm_ret if not by_host or d.kvm_ret is not UNSUP else UNSUP
    assert got is expected, d.reasons


# Values a read returns (kernel constants and reset values).
READS = [
    ("MTRRCAP reads 0x508", sc(), "IA32_MTRRCAP", 0x508),
    ("MCG_CAP reads the vCPU's mcg_cap", sc(runtime=Runtime(mcg_cap=0x10A)), "IA32_MCG_CAP",
     0x10A),
    ("BBL_CR_CTL3 reads 0xbe702111", sc(), "MSR_IA32_BBL_CR_CTL3", 0xBE702111),
    ("K7_CLK_CTL reads 0x20000000", sc(), "K7_CLK_CTL", 0x20000000),
    ("EBC_FREQUENCY_ID reads 1 << 24", sc(), "MSR_EBC_FREQUENCY_ID", 1 << 24),
    ("PERF_STATUS reads 1000 + (4 << 40)", sc(), "IA32_PERF_STATUS", 1000 + (4 << 40)),
    ("FSB_FREQ reads 3", sc(), "MSR_FSB_FREQ", 3),
    ("PLATFORM_INFO reads CPUID_FAULT", sc(), "MSR_PLATFORM_INFO", 1 << 31),
    ("MISC_ENABLE reads BTS and PEBS unavailable", sc(), "IA32_MISC_ENABLE", 0x1800),
    ("PAT reads its power-on value", sc(), "IA32_PAT", 0x0007040600070406),
    ("SMBASE reads 0x30000 for userspace", sc(), "IA32_SMBASE", 0x30000),
    ("UCODE_REV reads 0x100000000 on VMX (vmx_vcpu_reset)", sc(), "IA32_UCODE_REV", 0x100000000),
    ("UCODE_REV reads 0x01000065 on SVM (init_vmcb)", sc("amd-zen5"), "IA32_UCODE_REV",
     0x01000065),
    ("PERF_GLOBAL_CTRL reads every GP counter enabled (kvm_pmu_refresh)", sc(),
     "IA32_PERF_GLOBAL_CTRL", 0xFF),
    ("APIC_BASE reads the BSP's xAPIC at 0xfee00000", sc(), "IA32_APIC_BASE", 0xFEE00900),
    ("TSC_RATIO reads the default ratio 1.0 on SVM", sc("amd-zen5"), "AMD64_TSC_RATIO",
     0x0100000000),
]


@pytest.mark.parametrize(("s", "msr", "value"), [c[1:] for c in READS], ids=[c[0] for c in READS])
def test_a_read_returns(s: Scenario, msr: str, value: int) -> None:
    host_read = msr == "IA32_SMBASE"
    d = acc(s, msr, R, by_host=host_read)
    assert d.outcome is Outcome.EMULATED and d.value == value


# The rows the issue listed as wrong.
def test_a_host_efer_write_skips_the_guest_cpuid_gates() -> None:
    # set_efer: only efer_reserved_bits for host-initiated writes.
    s = sc(drop={F.LM})
    assert acc(s, "IA32_EFER", W, 1 << 8).kvm_ret is ERR
    assert acc(s, "IA32_EFER", W, 1 << 8, by_host=True).kvm_ret is OK


@pytest.mark.parametrize(("bit", "nested", "expected"), [
    (1 << 12, True, OK), (1 << 12, False, ERR), (1 << 14, True, OK), (1 << 21, True, OK),
], ids=["SVME with kvm_amd.nested", "SVME without kvm_amd.nested",
        "FFXSR with host FXSR_OPT", "AUTOIBRS with host AUTOIBRS"])
def test_svm_efer_bits_follow_svm_hardware_setup(bit: int, nested: bool, expected: KvmRet) -> None:
    s = sc("amd-zen5", params={"nested": nested}, add={F.SVM})
    assert acc(s, "IA32_EFER", W, bit, by_host=True).kvm_ret is expected


def test_vmx_efer_has_no_svm_bits() -> None:
    assert acc(sc(), "IA32_EFER", W, 1 << 12, by_host=True).kvm_ret is ERR


@pytest.mark.parametrize(("pt_mode", "expected"), [(PtMode.SYSTEM, ERR), (PtMode.HOST_GUEST, OK)],
                         ids=["pt_mode=0 fails whatever the guest CPUID",
                              "pt_mode=1 reads the guest's RTIT_CTL"])
def test_intel_pt_msrs_are_gated_on_pt_mode(pt_mode: PtMode, expected: KvmRet) -> None:
    s = sc(params={"pt_mode": pt_mode})
    assert F.INTEL_PT in s.guest_caps
    assert acc(s, "IA32_RTIT_CTL", R).kvm_ret is expected


@pytest.mark.parametrize(("value", "by_host", "expected"), [
    (0x800, False, ERR), (0x1800 | 1, False, OK), (0x0, True, OK),
], ids=["a guest write changing PEBS_UNAVAILABLE fails", "a guest write keeping bits 12:11 works",
        "userspace may change them"])
def test_misc_enable_read_only_bits(value: int, by_host: bool, expected: KvmRet) -> None:
    assert acc(sc(), "IA32_MISC_ENABLE", W, value, by_host=by_host).kvm_ret is expected


def test_misc_enable_keeps_emon_on_a_guest_write() -> None:
    d = acc(sc(), "IA32_MISC_ENABLE", W, 0x1800, current=0x1880)
    assert d.kvm_ret is OK and d.stored == 0x1880


@pytest.mark.parametrize(("drop", "by_host", "expected"), [
    (set(), False, ERR), ({F.SHSTK}, False, ERR), ({F.SHSTK}, True, UNSUP), (set(), True, OK),
], ids=["the guest fails with SHSTK", "the guest fails (1) before the SHSTK check",
        "userspace without SHSTK gets UNSUPPORTED", "userspace with SHSTK reads it"])
def test_the_internal_guest_ssp_checks_the_guest_first(
        drop: set[Feature], by_host: bool, expected: KvmRet) -> None:
    d = acc(sc(drop=drop), "KVM_INTERNAL_GUEST_SSP", R, by_host=by_host)
    assert d.kvm_ret is expected


def test_the_cpu_refuses_a_non_canonical_sysenter_esp_passed_through_on_intel() -> None:
    s = sc(pol="fred-v9")
    d = acc(s, "IA32_SYSENTER_ESP", W, 1 << 60)
    assert d.outcome is Outcome.GP and not d.intercept
    # KVM itself (intercepted) makes it canonical instead (__kvm_set_msr).
    assert acc(sc(), "IA32_SYSENTER_ESP", W, 1 << 60).outcome is Outcome.EMULATED


def test_svm_keeps_32_bits_of_sysenter_esp_for_an_amd_guest() -> None:
    d = acc(sc("amd-zen5"), "IA32_SYSENTER_ESP", W, 0x1234_5678_9ABC)
    assert d.stored == 0x5678_9ABC


@pytest.mark.parametrize(("msr", "listed"), [
    ("IA32_EFER", False), ("FS_BASE", False), ("IA32_MISC_ENABLE", True),
    ("IA32_DEBUGCTL", False), ("IA32_TSC_ADJUST", True), ("KERNEL_GS_BASE", True),
    ("IA32_VMX_BASIC", True), ("IA32_VMX_PINBASED_CTLS", False), ("IA32_FEAT_CTL", True),
    ("VM_HSAVE_PA", False), ("AMD64_VIRT_SPEC_CTRL", False), ("IA32_PERFCTR7", True),
    ("K7_PERFCTR0", False), ("HV_X64_MSR_GUEST_OS_ID", True), ("HV_X64_MSR_SINT0", False),
], ids=lambda v: str(v))
def test_kvm_get_msr_index_list_membership_on_intel(msr: str, listed: bool) -> None:
    # x86.c msrs_to_save_base, msrs_to_save_pmu, emulated_msrs_all; vmx_has_emulated_msr.
    assert advertised(sc(), IDX(msr)) is listed


def test_vmx_capability_msrs_are_feature_msrs_only_with_nested() -> None:
    assert feature_listed(sc(), IDX("IA32_VMX_BASIC"))
    assert not feature_listed(sc(params={"nested": False}), IDX("IA32_VMX_BASIC"))
    assert feature_listed(sc("amd-zen5"), IDX("AMD64_DE_CFG"))


@pytest.mark.parametrize("name", ["intel-fred", "intel-spr", "amd-zen5"])
def test_host_profiles_carry_what_kvm_always_reports(name: str) -> None:
    # cpuid.c kvm_set_cpu_caps: EMULATED_F X2APIC, TSC_DEADLINE_TIMER, HYPERVISOR,
    # TSC_ADJUST, ARCH_CAPABILITIES; the KVM PV leaf.
    assert {F.X2APIC, F.TSC_DEADLINE, F.HYPERVISOR, F.TSC_ADJUST, F.ARCH_CAPABILITIES,
            F.KVM_CLOCK2} <= HOSTS[name].features


def test_kvm_synthesizes_the_other_vendors_speculation_bits() -> None:
    # kvm_set_cpu_caps: AMD_IBPB/IBRS/STIBP/SSBD from Intel's, SPEC_CTRL/STIBP/SSBD from AMD's.
    assert {F.IBPB, F.AMD_IBRS, F.AMD_STIBP, F.AMD_SSBD} <= HOSTS["intel-fred"].features
    assert {F.SPEC_CTRL, F.STIBP, F.SPEC_CTRL_SSBD} <= HOSTS["amd-zen5"].features


def test_kvm_params_default_to_kvms_defaults() -> None:
    p = KvmParams()
    assert (p.ignore_msrs, p.enable_pmu, p.enable_apicv, p.nested, p.pt_mode) == (
        False, True, True, True, PtMode.SYSTEM)



# What a fingerprint's raw data means (arch/hosts.py): module parameters, kvm_pmu_cap, MAXPHYADDR.
def test_module_parameters_as_sysfs_shows_them_set_their_fields() -> None:
    p = params_from({"kvm.ignore_msrs": "Y", "kvm.enable_pmu": "N", "kvm_amd.avic": "0",
                     "kvm_intel.pt_mode": "1", "kvm.unrelated": "Y"}, {"hyperv": False})
    assert (p.ignore_msrs, p.enable_pmu, p.enable_apicv, p.pt_mode, p.hyperv) == (
        True, False, False, PtMode.HOST_GUEST, False)
    assert params_from({}, {}) == KvmParams()


_LEAVES = {(0xA, 0): (0x0730_0802, 0, 0, 0x0000_0603),  # Intel: v2, 8 GP, 3 fixed (48-bit)
           (0x80000022, 0): (0, 0x0000_0005, 0, 0),  # AMD PerfMonV2: 5 GP counters
           (0x80000008, 0): (0x0000_3030, 0, 0, 0)}  # MAXPHYADDR 48


@pytest.mark.parametrize(("vendor", "features", "leaves", "want"), [
    # pmu.c kvm_init_pmu_capability / perf_get_x86_pmu_capability: CPUID.0xA EAX[7:0]
    # version, EAX[15:8] GP counters, EDX[4:0] fixed counters.
    (Vendor.INTEL, frozenset(), _LEAVES, PmuCaps(version=2, gp=8, fixed=3)),
    (Vendor.INTEL, frozenset(), {}, NO_PMU),
    # AMD: PerfMonV2 reports its counters in 0x80000022 EBX[3:0]; else 6 with PerfCtrCore, 4.
    (Vendor.AMD, frozenset({Feature.PERFMON_V2}), _LEAVES, PmuCaps(version=2, gp=5)),
    (Vendor.AMD, frozenset({Feature.PERFCTR_CORE}), {}, PmuCaps(version=1, gp=6)),
    (Vendor.AMD, frozenset(), {}, PmuCaps(version=1, gp=4)),
], ids=["an Intel host reports CPUID 0xA's version and counters",
        "an Intel host without leaf 0xA has no PMU",
        "an AMD PerfMonV2 host reports 0x80000022's counters",
        "an AMD host with PerfCtrCore has six counters",
        "an older AMD host has four counters"])
def test_kvm_reports_the_pmu_from_the_supported_cpuid(vendor: Vendor, features: frozenset[Feature],
                                                     leaves: dict[tuple[int, int], tuple[int, int, int, int]],
                                                     want: PmuCaps) -> None:
    assert reported_pmu(leaves, vendor, KvmParams(), features) == want
    assert reported_pmu(leaves, vendor, KvmParams(enable_pmu=False), features) == NO_PMU


def test_maxphyaddr_comes_from_leaf_0x80000008_or_defaults_to_36() -> None:
    assert reported_phys_addr_bits(_LEAVES) == 48
    assert reported_phys_addr_bits({}) == 36


# Exactness and exit reasons.
def test_a_gp_has_no_exit_reason_but_says_which_it_would_have() -> None:
    s = replace(sc(drop={F.FRED}), exits=ExitReason(0))
    d = acc(s, "IA32_FRED_RSP0", R)
    assert d.outcome is Outcome.GP and d.exit_reason is None and d.would_exit is ExitReason.UNKNOWN


def test_a_value_the_model_cannot_judge_is_not_exact() -> None:
    d = acc(sc(), "IA32_SPEC_CTRL", W, 1)
    assert not d.exact and "kvm_spec_ctrl_test_value" in d.missing
    assert acc(sc(), "IA32_SPEC_CTRL", W, 0).exact


def test_the_xen_hypercall_msr_is_taken_before_anything_else() -> None:
    s = sc(runtime=Runtime(xen_hypercall_msr=0x40000000, hyperv=True))
    d = acc(s, 0x40000000, W, 0x1000)
    assert d.kvm_ret is OK and not d.exact and "hypercall page" in d.missing
    # Reads and host writes go the usual way (here to Hyper-V's GUEST_OS_ID).
    assert acc(s, 0x40000000, R).exact and acc(s, 0x40000000, W, 1, by_host=True).exact


def test_pvm_answers_the_pv_msrs_of_a_missing_feature_with_unsupported() -> None:
    # Observed on the PVM kernel (6.18.44); v6.19.9 does the same (docs/kernel-sources.md).
    s = sc("pvm", drop={F.KVM_CLOCK2}, runtime=Runtime(enforce_pv_cpuid=True))
    assert acc(s, "KVM_SYSTEM_TIME_NEW", R).kvm_ret is UNSUP


# x2APIC intercepts KVM changes on demand (not in the recomputation, never filtered):
# vmx.c vmx_update_msr_bitmap_x2apic, svm/avic.c avic_set_x2apic_msr_interception.
def _passes(s: Scenario, name: str, access: Access) -> bool:
    return acc(s, name, access).outcome is Outcome.PASSTHROUGH


X2 = Runtime(x2apic_mode=True)
VMX_X2 = sc(pol="fred-v9", runtime=X2)  # an Intel host, APICv on, the APIC in x2APIC mode
X2APIC_INTERCEPTS = [
    ("VMX APICv: a TPR read runs on the CPU", VMX_X2, "X2APIC_TPR", R, True),
    ("VMX APICv: an ISR read runs on the CPU", VMX_X2, "X2APIC_ISR3", R, True),
    ("VMX APICv: TMCCT reads stay intercepted (the current count is emulated)", VMX_X2,
     "X2APIC_TMCCT", R, False),
    ("VMX APICv: an EOI write runs on the CPU", VMX_X2, "X2APIC_EOI", W, True),
    ("VMX APICv: an LDR write stays intercepted", VMX_X2, "X2APIC_LDR", W, False),
    ("VMX APICv with IPI virtualization: an ICR write runs on the CPU", VMX_X2, "X2APIC_ICR", W,
     True),
    ("VMX APICv without IPI virtualization: an ICR write is intercepted",
     sc(pol="fred-v9", runtime=X2, params={"enable_ipiv": False}), "X2APIC_ICR", W, False),
    ("VMX with APICv inhibited: only TPR runs on the CPU",
     sc(pol="fred-v9", runtime=replace(X2, apicv_inhibited=True)), "X2APIC_ISR3", R, False),
    ("VMX with APICv inhibited: TPR still runs on the CPU",
     sc(pol="fred-v9", runtime=replace(X2, apicv_inhibited=True)), "X2APIC_TPR", W, True),
    ("VMX outside x2APIC mode: TPR is intercepted", sc(pol="fred-v9"), "X2APIC_TPR", R, False),
    ("SVM x2AVIC: an ICR2 write runs on the CPU", sc("amd-zen5", pol="svm-fred", runtime=X2),
     "X2APIC_ICR2", W, True),
    ("SVM x2AVIC: LVTT stays intercepted (TSC-deadline mode is not virtualized)",
     sc("amd-zen5", pol="svm-fred", runtime=X2), "X2APIC_LVTT", W, False),
    ("SVM without AVIC: everything is intercepted",
     sc("amd-zen5", pol="svm-fred", runtime=X2, params={"enable_apicv": False}), "X2APIC_TPR",
     R, False),
]


@pytest.mark.parametrize(("s", "name", "access", "passes"), [c[1:] for c in X2APIC_INTERCEPTS],
                         ids=[c[0] for c in X2APIC_INTERCEPTS])
def test_x2apic_intercepts_on_demand(s: Scenario, name: str, access: Access,
                                     passes: bool) -> None:
    assert _passes(s, name, access) is passes


def test_the_cpu_refuses_tpr_bits_63_8_under_x2apic_virtualization() -> None:
    # SDM Vol. 3C 30.5: WRMSR to the virtualized TPR with bits 63:8 set is #GP.
    d = acc(VMX_X2, "X2APIC_TPR", W, 0x100)
    assert d.outcome is Outcome.GP and not d.intercept


@pytest.mark.parametrize(("text", "field", "value"), [
    ("mcg_cap=0x10a", "mcg_cap", 0x10A), ("x2apic_mode", "x2apic_mode", True),
    ("lapic_in_kernel=0", "lapic_in_kernel", False), ("pmu_gp=4", "pmu_gp", 4),
], ids=lambda v: str(v))
def test_runtime_parses_booleans_and_integers(text: str, field: str, value: object) -> None:
    assert getattr(Runtime.parse(text), field) == value


@pytest.mark.parametrize("text", ["mcg_cap=0", "mcg_cap=0x21", "mcg_cap=x", "x2apic_mode=maybe",
                                  "nothing", "pmu_gp=300"])
def test_runtime_refuses_what_kvm_would(text: str) -> None:
    from msrvirt.errors import UsageError
    with pytest.raises(UsageError):
        Runtime.parse(text)


@pytest.mark.parametrize(("text", "bad"), [("pt_mode=2", "pt_mode"), ("nosuch=1", "nosuch"),
                                           ("nested=maybe", "nested")])
def test_kvm_params_refuse_bad_text_naming_it(text: str, bad: str) -> None:
    from msrvirt.errors import UsageError
    with pytest.raises(UsageError, match=bad):
        KvmParams().with_text(text)


def test_a_host_profile_round_trips_its_params_and_pmu() -> None:
    from msrvirt.arch.hosts import HostProfile
    h = replace(HOSTS["intel-spr"], params=KvmParams(pt_mode=PtMode.HOST_GUEST, enable_pmu=False))
    back = HostProfile.from_obj(h.to_obj())
    assert back.params == h.params and back.pmu == h.pmu and back.feature_msrs == h.feature_msrs


RT_RAN = Runtime(vcpu_has_run=True)
HV = Runtime(hyperv=True)
AMD_NO_SCALE = sc("amd-zen5", drop={F.TSCRATEMSR})
_PVM = replace(host("pvm"), features=host("pvm").features | {F.SHSTK})
PVM_SHSTK = Scenario(host=_PVM, guest=_PVM.features, policy=policy("pvm"), exits=ALL)
LBR_HOST = replace(host("intel-fred"), feature_msrs=((IDX("IA32_PERF_CAPABILITIES"), 0x2005),))
LBR_GUEST = Scenario(host=LBR_HOST, guest=LBR_HOST.features, policy=policy("intercept-all"))
# More of kvm_set_msr_common, the vendor set_msr and the PMU / Hyper-V code, each a kernel path.
MORE: list[tuple[str, Scenario, str | int, Access, int, bool, int | None, KvmRet]] = [
    ("a feature MSR changed by userspace after KVM_RUN is refused (kvm_is_immutable_feature_msr)",
     sc(runtime=RT_RAN), "IA32_PERF_CAPABILITIES", W, 0, True, 1 << 13, ERR),
    ("a feature MSR rewritten with its value after KVM_RUN is accepted",
     sc(runtime=RT_RAN), "IA32_PERF_CAPABILITIES", W, 1 << 13, True, 1 << 13, OK),
    ("TSC_AUX bits 63:32 are dropped for an AMD guest", sc("amd-zen5"), "IA32_TSC_AUX", W,
     1 << 40, False, None, OK),
    ("APIC_BASE: a guest may not go from x2APIC to xAPIC", sc(runtime=X2), "IA32_APIC_BASE", W,
     0xFEE00900, False, None, ERR),
    ("APIC_BASE: userspace may go from x2APIC to xAPIC", sc(runtime=X2), "IA32_APIC_BASE", W,
     0xFEE00900, True, None, OK),
    ("APIC_BASE: a guest may not go from disabled to x2APIC", sc(), "IA32_APIC_BASE", W,
     0xFEE00D00, False, 0xFEE00000, ERR),
    ("APIC_BASE: x2APIC enable without the enable bit is invalid", sc(), "IA32_APIC_BASE", W,
     0xFEE00500, True, None, ERR),
    ("APIC_BASE: reserved bit 9 is refused", sc(), "IA32_APIC_BASE", W, 0xFEE00B00, True, None,
     ERR),
    ("PRED_CMD: bit 1 is reserved", sc(), "IA32_PRED_CMD", W, 2, False, None, ERR),
    ("PRED_CMD: IBPB is a command", sc(), "IA32_PRED_CMD", W, 1, False, None, OK),
    ("FLUSH_CMD: only bit 0", sc(), "IA32_FLUSH_CMD", W, 2, False, None, ERR),
    ("TSC_ADJUST: without guest TSC_ADJUST a write is dropped", sc(drop={F.TSC_ADJUST}),
     "IA32_TSC_ADJUST", W, 5, False, None, OK),
    ("ASYNC_PF_EN: delivery as #PF VM exit needs its PV feature when enforced",
     sc(drop={F.KVM_ASYNC_PF_VMEXIT}, runtime=Runtime(enforce_pv_cpuid=True)),
     "KVM_ASYNC_PF_EN", W, 1 << 2, False, None, ERR),
    ("ASYNC_PF_EN: delivery as interrupt needs its PV feature when enforced",
     sc(drop={F.KVM_ASYNC_PF_INT}, runtime=Runtime(enforce_pv_cpuid=True)),
     "KVM_ASYNC_PF_EN", W, 1 << 3, False, None, ERR),
    ("ASYNC_PF_EN: 0 is accepted without an in-kernel APIC", sc(runtime=RT_NO_LAPIC),
     "KVM_ASYNC_PF_EN", W, 0, False, None, OK),
    ("DEBUGCTL on VMX: bus-lock detect with host and guest support",
     sc(), "IA32_DEBUGCTL", W, 1 << 2, False, None, OK),
    ("DEBUGCTL on VMX: bit 3 is refused", sc(), "IA32_DEBUGCTL", W, 1 << 3, False, None, ERR),
    ("DEBUGCTL on VMX: BTF is dropped, not refused", sc(), "IA32_DEBUGCTL", W, 1 << 1, False,
     None, OK),
    ("DEBUGCTL on SVM: LBR is stored", sc("amd-zen5"), "IA32_DEBUGCTL", W, 1, False, None, OK),
    ("DEBUGCTL on PVM: a write is dropped", sc("pvm"), "IA32_DEBUGCTL", W, 8, False, None, OK),
    ("BNDCFGS: a non-canonical base is refused", sc(add={F.MPX}), "IA32_BNDCFGS", W, 1 << 60,
     True, None, ERR),
    ("BNDCFGS: fails without host MPX", sc(), "IA32_BNDCFGS", R, 0, True, None, ERR),
    ("TSC_RATIO: userspace may write 0 without guest TSC scaling", AMD_NO_SCALE,
     "AMD64_TSC_RATIO", W, 0, True, None, OK),
    ("TSC_RATIO: userspace may not set another ratio without guest TSC scaling", AMD_NO_SCALE,
     "AMD64_TSC_RATIO", W, 5, True, None, ERR),
    ("TSC_RATIO: the guest needs TSC scaling", AMD_NO_SCALE, "AMD64_TSC_RATIO", R, 0, False,
     None, ERR),
    ("VIRT_SPEC_CTRL: SSBD only", sc("amd-zen5", add={F.VIRT_SSBD}), "AMD64_VIRT_SPEC_CTRL", W,
     1, True, None, ERR),
    ("S_CET on PVM: the pre-check refuses bits 9:6 before the vendor code",
     PVM_SHSTK, "IA32_S_CET", W, 1 << 6, True, None, ERR),
    ("S_CET on PVM: a valid guest write is UNSUPPORTED (pvm_set_msr does not know it)",
     PVM_SHSTK, "IA32_S_CET", W, 0, False, None, UNSUP),
    ("S_CET on PVM: userspace may write 0, as KVM advertises it (kvm_do_msr_access)",
     PVM_SHSTK, "IA32_S_CET", W, 0, True, None, OK),
    ("DEBUGCTL on VMX: LBR is dropped without an LBR format (no failure)", sc(),
     "IA32_DEBUGCTL", W, 1, False, None, OK),
    ("DEBUGCTL on VMX: FREEZE_LBRS_ON_PMI fails without an LBR format", sc(),
     "IA32_DEBUGCTL", W, 1 << 11, False, None, ERR),
    ("IA32_PMC0 refuses... nothing in 32 bits", sc(), "IA32_PMC0", W, 0xFFFF, False, None, OK),
    ("PERFEVTSEL2 takes IN_TX_CP with guest TSX (HSW_IN_TX_CHECKPOINTED)",
     sc("intel-spr"), "IA32_PERFEVTSEL2", W, 3 << 32, False, None, OK),
    ("PERFEVTSEL0 refuses IN_TX_CP (counter 2 only)", sc("intel-spr"), "IA32_PERFEVTSEL0", W,
     1 << 33, False, None, ERR),
    ("PERF_GLOBAL_OVF_CTRL refuses a bit of no counter", sc(), "IA32_PERF_GLOBAL_OVF_CTRL", W,
     1 << 20, False, None, ERR),
    ("PERF_GLOBAL_STATUS takes a valid value from userspace", sc(), "IA32_PERF_GLOBAL_STATUS",
     W, 1, True, None, OK),
    ("K7_PERFCTR3 fails beyond a 2-counter AMD PMU",
     sc("amd-zen5", drop={F.PERFMON_V2, F.PERFCTR_CORE}, runtime=Runtime(pmu_gp=2),
        params={"enable_pmu": True}), "K7_PERFCTR3", R, 0, False, None, OK),
    ("AMD GLOBAL_STATUS: a guest write is ignored", sc("amd-zen5"),
     "AMD64_PERF_CNTR_GLOBAL_STATUS", W, 1, False, None, OK),
    ("AMD GLOBAL_CTL: reserved bits are dropped", sc("amd-zen5"), "AMD64_PERF_CNTR_GLOBAL_CTL",
     W, U64, False, None, OK),
    ("AMD GLOBAL_STATUS_CLR reads 0", sc("amd-zen5"), "AMD64_PERF_CNTR_GLOBAL_STATUS_CLR", R, 0,
     False, None, OK),
    ("F15H_PERF_CTR5 reads as a counter", sc("amd-zen5"), "F15H_PERF_CTR5", R, 0, False, None,
     OK),
    ("DS_AREA needs guest DS", sc(drop={F.DS}), "IA32_DS_AREA", R, 0, False, None, UNSUP),
    ("DS_AREA refuses a non-canonical address", sc(), "IA32_DS_AREA", W, 1 << 60, False, None,
     ERR),
    ("PEBS_ENABLE without PERF_CAPABILITIES.PEBS_FORMAT is UNSUPPORTED", sc(), "IA32_PEBS_ENABLE",
     R, 0, False, None, UNSUP),
    ("a VMX capability MSR can be restored before KVM_RUN", sc(), "IA32_VMX_VMCS_ENUM", W, 0,
     True, None, OK),
    ("Hyper-V HYPERCALL stores a disabled page", sc(runtime=HV), "HV_X64_MSR_HYPERCALL", W, 0,
     False, None, OK),
    ("Hyper-V EOI is not readable", sc(runtime=HV), "HV_X64_MSR_EOI", R, 0, False, None, ERR),
    ("Hyper-V TPR reads through the in-kernel APIC", sc(runtime=HV), "HV_X64_MSR_TPR", R, 0,
     False, None, OK),
    ("Hyper-V TPR refuses bits 63:32", sc(runtime=HV), "HV_X64_MSR_TPR", W, 1 << 32, False, None,
     ERR),
    ("Hyper-V ICR refuses reserved bit 13", sc(runtime=HV), "HV_X64_MSR_ICR", W, 1 << 13, False,
     None, ERR),
    ("Hyper-V VP_ASSIST_PAGE stores a disabled page", sc(runtime=HV), "HV_X64_MSR_VP_ASSIST_PAGE",
     W, 0x1000, False, None, OK),
    ("Hyper-V RESET reads 0", sc(runtime=HV), "HV_X64_MSR_RESET", R, 0, False, None, OK),
    ("Hyper-V VP_RUNTIME: userspace writes are accepted", sc(runtime=HV), "HV_X64_MSR_VP_RUNTIME",
     W, 5, True, None, OK),
    ("Hyper-V CRASH_CTL: userspace stores the notify bit", sc(runtime=HV), "HV_X64_MSR_CRASH_CTL",
     W, U64, True, None, OK),
    ("Hyper-V TSC_EMULATION_STATUS: the guest may only write 0", sc(runtime=HV),
     "HV_X64_MSR_TSC_EMULATION_STATUS", W, 1, False, None, ERR),
    ("Hyper-V TSC_INVARIANT_CONTROL: the guest cannot turn it off", sc(runtime=HV),
     "HV_X64_MSR_TSC_INVARIANT_CONTROL", W, 0, False, 1, ERR),
    ("Hyper-V SYNDBG_CONTROL: userspace reads it", sc(runtime=HV), "HV_X64_MSR_SYNDBG_CONTROL",
     R, 0, True, None, OK),
    ("Hyper-V SYNDBG_CONTROL: userspace writes it", sc(runtime=HV), "HV_X64_MSR_SYNDBG_CONTROL",
     W, 1, True, None, OK),
    ("MCG_STATUS stores any value", sc(), "IA32_MCG_STATUS", W, 5, False, None, OK),
    ("MCG_CTL takes all ones with MCG_CTL_P", sc(runtime=RT_CMCI), "IA32_MCG_CTL", W, U64, False,
     None, OK),
    ("MTRRFIX64K takes valid types", sc(), "IA32_MTRRFIX64K_00000", W, 0x0606060606060606, False,
     None, OK),
    ("MTRR_DEF_TYPE refuses type 2", sc(), "IA32_MTRR_DEF_TYPE", W, 2, False, None, ERR),
    ("VM_CR takes its valid bits", sc("amd-zen5"), "VM_CR", W, 1 << 3, False, None, OK),
    ("DE_CFG takes LFENCE_SERIALIZE with host LFENCE_RDTSC", sc("amd-zen5"), "AMD64_DE_CFG", W,
     2, False, None, OK),
    ("PAT refuses type 2 in entry 7", sc(), "IA32_PAT", W, 2 << 56, False, None, ERR),
]


@pytest.mark.parametrize(("s", "msr", "access", "value", "by_host", "current", "expected"),
                         [c[1:] for c in MORE], ids=[c[0] for c in MORE])
def test_kvm_answers_more(s: Scenario, msr: str | int, access: Access, value: int,
                          by_host: bool, current: int | None, expected: KvmRet) -> None:
    d = acc(s, msr, access, value, by_host=by_host, current=current)
    assert d.kvm_ret is expected, d.reasons


@pytest.mark.parametrize(("s", "msr", "value", "missing"), [
    (sc(), "KVM_PV_EOI_EN", 0x1001, "guest memory"),
    (sc(), "KVM_ASYNC_PF_EN", 0x1001, "guest memory"),
    (sc(runtime=HV), "HV_X64_MSR_HYPERCALL", 0x1001, "guest memory"),
    (sc(runtime=HV), "HV_X64_MSR_VP_ASSIST_PAGE", 0x1001, "guest memory"),
    (sc(runtime=replace(HV, hyperv_synic=True)), "HV_X64_MSR_SINT0", 0x10, "SynIC"),
    (sc("amd-zen5"), "VM_CR", 1 << 4, "EFER.SVME"),
    (sc(runtime=replace(HV, hyperv_enforce_cpuid=True)), "HV_X64_MSR_GUEST_OS_ID", 1,
     "Hyper-V feature CPUID"),
    (sc(), "IA32_PMC0", 1 << 40, "bit width"),
    (LBR_GUEST, "IA32_DEBUGCTL", 1, "LBR"),
    (sc(runtime=RT_RAN), "IA32_VMX_BASIC", 0, "current value"),
    (sc(), "IA32_XFD", 1 << 18, "xfeatures"),
], ids=["PV_EOI enabled", "ASYNC_PF enabled", "a Hyper-V hypercall page", "a VP assist page",
        "an active SynIC", "VM_CR.SVMDIS", "Hyper-V with enforced CPUID",
        "a full-width counter beyond 32 bits",
        "DEBUGCTL.LBR on VMX", "a VMX capability after KVM_RUN", "XFD of AMX tile data"])
def test_what_the_model_does_not_know_is_said(s: Scenario, msr: str, value: int,
                                              missing: str) -> None:
    d = acc(s, msr, W, value, by_host=msr == "IA32_VMX_BASIC")
    assert not d.exact and missing in d.missing


def test_a_guest_with_lbrs_makes_unknown_indices_inexact_on_vmx() -> None:
    d = acc(LBR_GUEST, 0x680, R)  # an LBR record MSR of some Intel models
    assert d.kvm_ret is UNSUP and not d.exact and "LBR" in d.missing


def test_an_sev_es_guest_is_not_exact_past_the_intercept() -> None:
    # svm.c sev_es_prevent_msr_access depends on the VMSA's protected state.
    d = acc(sc("amd-zen5", runtime=Runtime(sev_es=True)), "IA32_TSC", W, 5)
    assert not d.exact and "SEV-ES" in d.missing

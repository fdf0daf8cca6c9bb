"""VMCS fields and controls for the MSRs msrvirt models (Intel SDM Vol. 3C Appendix B;
kvm-msr-facts.md section 8; fred-arch-facts.md section 4)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class VmcsField:
    """One VMCS field: its 32-bit encoding and name."""

    encoding: int
    name: str


def _f(encoding: int, name: str) -> VmcsField:
    return VmcsField(encoding=encoding, name=name)


# Guest-state and host-state fields, by the name of the MSR they hold.
GUEST_FIELDS: dict[str, VmcsField] = {
    "IA32_DEBUGCTL": _f(0x2802, "GUEST_IA32_DEBUGCTL"),
    "IA32_PAT": _f(0x2804, "GUEST_IA32_PAT"),
    "IA32_EFER": _f(0x2806, "GUEST_IA32_EFER"),
    "IA32_FRED_CONFIG": _f(0x281A, "GUEST_IA32_FRED_CONFIG"),
    "IA32_FRED_RSP1": _f(0x281C, "GUEST_IA32_FRED_RSP1"),
    "IA32_FRED_RSP2": _f(0x281E, "GUEST_IA32_FRED_RSP2"),
    "IA32_FRED_RSP3": _f(0x2820, "GUEST_IA32_FRED_RSP3"),
    "IA32_FRED_STKLVLS": _f(0x2822, "GUEST_IA32_FRED_STKLVLS"),
    "IA32_FRED_SSP1": _f(0x2824, "GUEST_IA32_FRED_SSP1"),
    "IA32_FRED_SSP2": _f(0x2826, "GUEST_IA32_FRED_SSP2"),
    "IA32_FRED_SSP3": _f(0x2828, "GUEST_IA32_FRED_SSP3"),
    "IA32_SYSENTER_CS": _f(0x482A, "GUEST_SYSENTER_CS"),
    "FS_BASE": _f(0x680E, "GUEST_FS_BASE"),
    "GS_BASE": _f(0x6810, "GUEST_GS_BASE"),
    "IA32_SYSENTER_ESP": _f(0x6824, "GUEST_SYSENTER_ESP"),
    "IA32_SYSENTER_EIP": _f(0x6826, "GUEST_SYSENTER_EIP"),
    "IA32_S_CET": _f(0x6828, "GUEST_S_CET"),
    "IA32_INT_SSP_TAB": _f(0x682C, "GUEST_INTR_SSP_TABLE"),
}

HOST_FIELDS: dict[str, VmcsField] = {
    "IA32_PAT": _f(0x2C00, "HOST_IA32_PAT"),
    "IA32_EFER": _f(0x2C02, "HOST_IA32_EFER"),
    "IA32_FRED_CONFIG": _f(0x2C08, "HOST_IA32_FRED_CONFIG"),
    "IA32_FRED_RSP1": _f(0x2C0A, "HOST_IA32_FRED_RSP1"),
    "IA32_FRED_RSP2": _f(0x2C0C, "HOST_IA32_FRED_RSP2"),
    "IA32_FRED_RSP3": _f(0x2C0E, "HOST_IA32_FRED_RSP3"),
    "IA32_FRED_STKLVLS": _f(0x2C10, "HOST_IA32_FRED_STKLVLS"),
    "IA32_FRED_SSP1": _f(0x2C12, "HOST_IA32_FRED_SSP1"),
    "IA32_FRED_SSP2": _f(0x2C14, "HOST_IA32_FRED_SSP2"),
    "IA32_FRED_SSP3": _f(0x2C16, "HOST_IA32_FRED_SSP3"),
    "IA32_SYSENTER_CS": _f(0x4C00, "HOST_IA32_SYSENTER_CS"),
    "FS_BASE": _f(0x6C06, "HOST_FS_BASE"),
    "GS_BASE": _f(0x6C08, "HOST_GS_BASE"),
    "IA32_SYSENTER_ESP": _f(0x6C10, "HOST_IA32_SYSENTER_ESP"),
    "IA32_SYSENTER_EIP": _f(0x6C12, "HOST_IA32_SYSENTER_EIP"),
    "IA32_S_CET": _f(0x6C18, "HOST_S_CET"),
    "IA32_INT_SSP_TAB": _f(0x6C1C, "HOST_INTR_SSP_TABLE"),
}

# FRED controls (v9 patches 01, 02; fred-arch-facts.md section 4).
VM_ENTRY_LOAD_GUEST_FRED = 1 << 23
VM_EXIT_ACTIVATE_SECONDARY_CONTROLS = 1 << 31
SECONDARY_VM_EXIT_CONTROLS = 0x2044
SECONDARY_EXIT_SAVE_GUEST_FRED = 1 << 0
SECONDARY_EXIT_LOAD_HOST_FRED = 1 << 1

# VMX MSR-bitmap control: primary processor-based control bit 28; exits 31 (RDMSR), 32 (WRMSR).
CPU_BASED_USE_MSR_BITMAPS = 1 << 28
EXIT_REASON_MSR_READ = 31
EXIT_REASON_MSR_WRITE = 32
# SVM: SVM_EXIT_MSR, EXITINFO1 0 = read, 1 = write.
SVM_EXIT_MSR = 0x7C

# Nested VMX: the vmcs12 controls that decide how L2's MSR accesses are handled
# (Linux v6.19 arch/x86/include/asm/vmx.h and vmxfeatures.h; arch/vmcs12.py names them).
CPU_BASED_VM_EXEC_CONTROL = 0x4002
SECONDARY_VM_EXEC_CONTROL = 0x401E
VM_EXIT_CONTROLS = 0x400C
VM_ENTRY_CONTROLS = 0x4012
CPU_BASED_ACTIVATE_SECONDARY_CONTROLS = 1 << 31
SECONDARY_EXEC_VIRTUALIZE_X2APIC_MODE = 1 << 4
SECONDARY_EXEC_APIC_REGISTER_VIRT = 1 << 8
SECONDARY_EXEC_VIRTUAL_INTR_DELIVERY = 1 << 9

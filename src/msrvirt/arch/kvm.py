"""KVM ABI constants the model and the live layer share (uapi linux/kvm.h, asm/kvm.h, msrs.h)."""

from __future__ import annotations

from enum import IntEnum, IntFlag, StrEnum

U64 = (1 << 64) - 1  # every bit of an MSR value


class Access(IntFlag):
    """Direction of an MSR access; values match KVM's MSR_TYPE_R/W and the filter's READ/WRITE."""

    R = 1
    W = 2
    RW = 3

    @property
    def label(self) -> str:
        return {1: "read", 2: "write", 3: "read|write"}[int(self)]


class KvmRet(IntEnum):
    """Result of KVM's MSR emulation (arch/x86/kvm/msrs.h; kvm-msr-facts.md section 5)."""

    OK = 0
    ERR = 1  # generic failure: invalid value, or an MSR the vCPU model refuses
    UNSUPPORTED = 2  # KVM_MSR_RET_UNSUPPORTED: unknown MSR or missing feature
    FILTERED = 3  # KVM_MSR_RET_FILTERED: the userspace filter denied the access


class ExitReason(IntFlag):
    """KVM_MSR_EXIT_REASON_*: both the enable mask of KVM_CAP_X86_USER_SPACE_MSR and msr.reason."""

    INVAL = 1
    UNKNOWN = 2
    FILTER = 4

    @property
    def label(self) -> str:
        return "|".join(r.name.lower() for r in ExitReason if r in self and r.name) or "none"


EXIT_REASON_VALID_MASK = int(ExitReason.INVAL | ExitReason.UNKNOWN | ExitReason.FILTER)


# x86.c kvm_msr_reason: UNSUPPORTED -> UNKNOWN, FILTERED -> FILTER, any other failure -> INVAL.
EXIT_REASON_OF = {KvmRet.UNSUPPORTED: ExitReason.UNKNOWN, KvmRet.FILTERED: ExitReason.FILTER}


class Backend(StrEnum):
    """How the host runs guests: which KVM vendor module."""

    VMX = "vmx"
    SVM = "svm"
    PVM = "pvm"


class Vendor(StrEnum):
    """CPU vendor of the host (and, by default, of the guest CPUID)."""

    INTEL = "intel"
    AMD = "amd"


# uapi linux/kvm.h
KVM_EXIT_X86_RDMSR = 29
KVM_EXIT_X86_WRMSR = 30
KVM_CAP_X86_USER_SPACE_MSR = 188
KVM_CAP_X86_MSR_FILTER = 189
KVM_MSR_FILTER_MAX_RANGES = 16
KVM_MSR_FILTER_MAX_BITMAP_SIZE = 0x600
KVM_MSR_FILTER_READ = 1
KVM_MSR_FILTER_WRITE = 2
KVM_MSR_FILTER_RANGE_VALID_MASK = KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE
KVM_MSR_FILTER_DEFAULT_ALLOW = 0
KVM_MSR_FILTER_DEFAULT_DENY = 1
KVM_MSR_FILTER_VALID_MASK = KVM_MSR_FILTER_DEFAULT_DENY
# KVM_GET_MSRS / KVM_SET_MSRS refuse 256 or more entries with E2BIG (msrs.c).
KVM_MAX_MSR_ENTRIES = 255

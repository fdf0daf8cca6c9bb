"""ctypes mirrors of the KVM uapi structures the live layer uses, and its ioctl numbers.

Layouts follow include/uapi/linux/kvm.h and arch/x86/include/uapi/asm/kvm.h
(x86-64); tests/live/test_live_uapi.py asserts every size and offset against
the real headers with a compiled C program.  Request numbers are computed from
direction, type, number and argument size exactly as include/uapi/asm-generic/
ioctl.h's ``_IOC`` does, never written as hex.

`struct kvm_msr_filter` is not mirrored here: its bytes come from
`msrvirt.policy.filter.MsrFilter.to_kvm_bytes`, one encoding for model and kernel.
"""

from __future__ import annotations

import ctypes
from enum import IntEnum

from msrvirt.arch.kvm import (
    KVM_CAP_X86_MSR_FILTER,
    KVM_CAP_X86_USER_SPACE_MSR,
    KVM_EXIT_X86_RDMSR,
    KVM_EXIT_X86_WRMSR,
)
from msrvirt.policy.filter import KVM_MSR_FILTER_SIZE

u8 = ctypes.c_uint8
u16 = ctypes.c_uint16
u32 = ctypes.c_uint32
u64 = ctypes.c_uint64

# -- ioctl encoding (asm-generic/ioctl.h) ---------------------------------------------------------

IOC_NRBITS = 8
IOC_TYPEBITS = 8
IOC_SIZEBITS = 14
IOC_NRSHIFT = 0
IOC_TYPESHIFT = IOC_NRSHIFT + IOC_NRBITS
IOC_SIZESHIFT = IOC_TYPESHIFT + IOC_TYPEBITS
IOC_DIRSHIFT = IOC_SIZESHIFT + IOC_SIZEBITS


class IocDir(IntEnum):
    """_IOC_NONE / _IOC_WRITE / _IOC_READ: which way the argument is copied (user's view)."""

    NONE = 0
    WRITE = 1
    READ = 2
    READ_WRITE = 3


def ioc(direction: IocDir, type_: int, nr: int, size: int) -> int:
    """Encode an ioctl request number the way ``_IOC(dir, type, nr, size)`` does."""
    if not 0 <= size < 1 << IOC_SIZEBITS:
        raise ValueError(f"ioctl argument size must fit in {IOC_SIZEBITS} bits, not {size}")
    return (
        direction << IOC_DIRSHIFT | type_ << IOC_TYPESHIFT | nr << IOC_NRSHIFT
        | size << IOC_SIZESHIFT
    )


KVMIO = 0xAE


def io(nr: int) -> int:
    """``_IO(KVMIO, nr)``: no argument copied."""
    return ioc(IocDir.NONE, KVMIO, nr, 0)


def ior(nr: int, size: int) -> int:
    """``_IOR(KVMIO, nr, type)``: the kernel writes a ``size``-byte argument."""
    return ioc(IocDir.READ, KVMIO, nr, size)


def iow(nr: int, size: int) -> int:
    """``_IOW(KVMIO, nr, type)``: the kernel reads a ``size``-byte argument."""
    return ioc(IocDir.WRITE, KVMIO, nr, size)


def iowr(nr: int, size: int) -> int:
    """``_IOWR(KVMIO, nr, type)``: the argument is copied both ways."""
    return ioc(IocDir.READ_WRITE, KVMIO, nr, size)


# -- structures -----------------------------------------------------------------------------------


class KvmRegs(ctypes.Structure):
    """struct kvm_regs (asm/kvm.h): the general-purpose registers, RIP and RFLAGS; 144 bytes."""

    _fields_ = [
        (name, u64) for name in (
            "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
            "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags",
        )
    ]


class KvmSegment(ctypes.Structure):
    """struct kvm_segment (asm/kvm.h): a segment register with its descriptor cache; 24 bytes."""

    _fields_ = [
        ("base", u64), ("limit", u32), ("selector", u16), ("type", u8), ("present", u8),
        ("dpl", u8), ("db", u8), ("s", u8), ("l", u8), ("g", u8), ("avl", u8),
        ("unusable", u8), ("padding", u8),
    ]


class KvmDtable(ctypes.Structure):
    """struct kvm_dtable (asm/kvm.h): GDTR or IDTR; 16 bytes."""

    _fields_ = [("base", u64), ("limit", u16), ("padding", u16 * 3)]


KVM_NR_INTERRUPTS = 256


class KvmSregs(ctypes.Structure):
    """struct kvm_sregs (asm/kvm.h): segments, descriptor tables, control registers; 312 bytes."""

    _fields_ = [
        ("cs", KvmSegment), ("ds", KvmSegment), ("es", KvmSegment), ("fs", KvmSegment),
        ("gs", KvmSegment), ("ss", KvmSegment), ("tr", KvmSegment), ("ldt", KvmSegment),
        ("gdt", KvmDtable), ("idt", KvmDtable),
        ("cr0", u64), ("cr2", u64), ("cr3", u64), ("cr4", u64), ("cr8", u64),
        ("efer", u64), ("apic_base", u64),
        ("interrupt_bitmap", u64 * ((KVM_NR_INTERRUPTS + 63) // 64)),
    ]


class KvmEnableCap(ctypes.Structure):
    """struct kvm_enable_cap (linux/kvm.h); 104 bytes."""

    _fields_ = [("cap", u32), ("flags", u32), ("args", u64 * 4), ("pad", u8 * 64)]


class KvmCpuidEntry2(ctypes.Structure):
    """struct kvm_cpuid_entry2 (asm/kvm.h): one CPUID leaf/subleaf; 40 bytes."""

    _fields_ = [
        ("function", u32), ("index", u32), ("flags", u32),
        ("eax", u32), ("ebx", u32), ("ecx", u32), ("edx", u32), ("padding", u32 * 3),
    ]


class KvmCpuid2(ctypes.Structure):
    """struct kvm_cpuid2 (asm/kvm.h) header; ``entries[nent]`` follow (see `cpuid2_type`)."""

    _fields_ = [("nent", u32), ("padding", u32)]


class KvmMsrEntry(ctypes.Structure):
    """struct kvm_msr_entry (asm/kvm.h); 16 bytes."""

    _fields_ = [("index", u32), ("reserved", u32), ("data", u64)]


class KvmMsrs(ctypes.Structure):
    """struct kvm_msrs (asm/kvm.h) header; ``entries[nmsrs]`` follow (see `msrs_type`)."""

    _fields_ = [("nmsrs", u32), ("pad", u32)]


class KvmMsrList(ctypes.Structure):
    """struct kvm_msr_list (asm/kvm.h) header; ``indices[nmsrs]`` follow (see `msr_list_type`)."""

    _fields_ = [("nmsrs", u32)]


class KvmUserspaceMemoryRegion(ctypes.Structure):
    """struct kvm_userspace_memory_region (linux/kvm.h); 32 bytes."""

    _fields_ = [
        ("slot", u32), ("flags", u32), ("guest_phys_addr", u64), ("memory_size", u64),
        ("userspace_addr", u64),
    ]


# The kvm_run exit union members the live layer decodes (linux/kvm.h struct kvm_run).


class ExitHw(ctypes.Structure):
    """kvm_run.hw (KVM_EXIT_UNKNOWN)."""

    _fields_ = [("hardware_exit_reason", u64)]


class ExitFailEntry(ctypes.Structure):
    """kvm_run.fail_entry (KVM_EXIT_FAIL_ENTRY)."""

    _fields_ = [("hardware_entry_failure_reason", u64), ("cpu", u32)]


class ExitIo(ctypes.Structure):
    """kvm_run.io (KVM_EXIT_IO); the data lives at kvm_run + data_offset."""

    _fields_ = [
        ("direction", u8), ("size", u8), ("port", u16), ("count", u32), ("data_offset", u64),
    ]


class ExitMmio(ctypes.Structure):
    """kvm_run.mmio (KVM_EXIT_MMIO)."""

    _fields_ = [("phys_addr", u64), ("data", u8 * 8), ("len", u32), ("is_write", u8)]


class ExitInternal(ctypes.Structure):
    """kvm_run.internal (KVM_EXIT_INTERNAL_ERROR); ``ndata`` words of ``data`` are valid."""

    _fields_ = [("suberror", u32), ("ndata", u32), ("data", u64 * 16)]


class ExitSystemEvent(ctypes.Structure):
    """kvm_run.system_event (KVM_EXIT_SYSTEM_EVENT)."""

    _fields_ = [("type", u32), ("ndata", u32), ("data", u64 * 16)]


class ExitMsr(ctypes.Structure):
    """kvm_run.msr (KVM_EXIT_X86_RDMSR/WRMSR): ``error`` and, for reads, ``data`` go back in."""

    _fields_ = [
        ("error", u8), ("pad", u8 * 7), ("reason", u32), ("index", u32), ("data", u64),
    ]


class KvmRunExit(ctypes.Union):
    """The 256-byte exit union of struct kvm_run (at offset 32 on x86-64)."""

    _fields_ = [
        ("hw", ExitHw), ("fail_entry", ExitFailEntry), ("io", ExitIo), ("mmio", ExitMmio),
        ("internal", ExitInternal), ("system_event", ExitSystemEvent), ("msr", ExitMsr),
        ("padding", ctypes.c_char * 256),
    ]


SYNC_REGS_SIZE_BYTES = 2048


class KvmRun(ctypes.Structure):
    """struct kvm_run (linux/kvm.h), the page shared with the kernel (mmap of the vCPU fd)."""

    _fields_ = [
        ("request_interrupt_window", u8), ("immediate_exit", u8), ("padding1", u8 * 6),
        ("exit_reason", u32), ("ready_for_interrupt_injection", u8), ("if_flag", u8),
        ("flags", u16), ("cr8", u64), ("apic_base", u64),
        ("exit", KvmRunExit),
        ("kvm_valid_regs", u64), ("kvm_dirty_regs", u64),
        ("s", ctypes.c_char * SYNC_REGS_SIZE_BYTES),
    ]


KVM_RUN_EXIT_OFFSET: int = KvmRun.exit.offset


def cpuid2_type(nent: int) -> type[ctypes.Structure]:
    """A struct kvm_cpuid2 with room for ``nent`` entries."""
    return type(
        "KvmCpuid2N", (ctypes.Structure,),
        {"_fields_": [("nent", u32), ("padding", u32), ("entries", KvmCpuidEntry2 * nent)]},
    )


def msrs_type(nmsrs: int) -> type[ctypes.Structure]:
    """A struct kvm_msrs with room for ``nmsrs`` entries."""
    return type(
        "KvmMsrsN", (ctypes.Structure,),
        {"_fields_": [("nmsrs", u32), ("pad", u32), ("entries", KvmMsrEntry * nmsrs)]},
    )


def msr_list_type(nmsrs: int) -> type[ctypes.Structure]:
    """A struct kvm_msr_list with room for ``nmsrs`` indices."""
    return type(
        "KvmMsrListN", (ctypes.Structure,),
        {"_fields_": [("nmsrs", u32), ("indices", u32 * nmsrs)]},
    )


# -- request numbers (linux/kvm.h) ----------------------------------------------------------------

class Ioctl(IntEnum):
    """The KVM ioctl request numbers the live layer makes; the member name is the uapi name."""

    # System ioctls (/dev/kvm).
    KVM_GET_API_VERSION = io(0x00)
    KVM_CREATE_VM = io(0x01)
    KVM_GET_MSR_INDEX_LIST = iowr(0x02, ctypes.sizeof(KvmMsrList))
    KVM_CHECK_EXTENSION = io(0x03)
    KVM_GET_VCPU_MMAP_SIZE = io(0x04)
    KVM_GET_SUPPORTED_CPUID = iowr(0x05, ctypes.sizeof(KvmCpuid2))
    KVM_GET_MSR_FEATURE_INDEX_LIST = iowr(0x0A, ctypes.sizeof(KvmMsrList))
    # VM ioctls.
    KVM_CREATE_VCPU = io(0x41)
    KVM_SET_USER_MEMORY_REGION = iow(0x46, ctypes.sizeof(KvmUserspaceMemoryRegion))
    KVM_ENABLE_CAP = iow(0xA3, ctypes.sizeof(KvmEnableCap))
    KVM_X86_SET_MSR_FILTER = iow(0xC6, KVM_MSR_FILTER_SIZE)
    # vCPU ioctls (KVM_GET_MSRS is also a system ioctl: the values of feature MSRs).
    KVM_RUN = io(0x80)
    KVM_GET_REGS = ior(0x81, ctypes.sizeof(KvmRegs))
    KVM_SET_REGS = iow(0x82, ctypes.sizeof(KvmRegs))
    KVM_GET_SREGS = ior(0x83, ctypes.sizeof(KvmSregs))
    KVM_SET_SREGS = iow(0x84, ctypes.sizeof(KvmSregs))
    KVM_GET_MSRS = iowr(0x88, ctypes.sizeof(KvmMsrs))
    KVM_SET_MSRS = iow(0x89, ctypes.sizeof(KvmMsrs))
    KVM_SET_CPUID2 = iow(0x90, ctypes.sizeof(KvmCpuid2))
    KVM_GET_CPUID2 = iowr(0x91, ctypes.sizeof(KvmCpuid2))


class Cap(IntEnum):
    """KVM_CAP_* numbers the live layer checks with KVM_CHECK_EXTENSION (linux/kvm.h)."""

    USER_MEMORY = 3
    EXT_CPUID = 7
    XEN_HVM = 38
    HYPERV = 44
    X86_SMM = 117
    CHECK_EXTENSION_VM = 105
    IMMEDIATE_EXIT = 136
    GET_MSR_FEATURES = 153
    X86_USER_SPACE_MSR = KVM_CAP_X86_USER_SPACE_MSR
    X86_MSR_FILTER = KVM_CAP_X86_MSR_FILTER
    ENFORCE_PV_FEATURE_CPUID = 190

    @property
    def uapi_name(self) -> str:
        return f"KVM_CAP_{self.name}"


class ExitKind(IntEnum):
    """KVM_EXIT_* values of kvm_run.exit_reason (linux/kvm.h)."""

    UNKNOWN = 0
    EXCEPTION = 1
    IO = 2
    HYPERCALL = 3
    DEBUG = 4
    HLT = 5
    MMIO = 6
    IRQ_WINDOW_OPEN = 7
    SHUTDOWN = 8
    FAIL_ENTRY = 9
    INTR = 10
    INTERNAL_ERROR = 17
    SYSTEM_EVENT = 24
    X86_RDMSR = KVM_EXIT_X86_RDMSR
    X86_WRMSR = KVM_EXIT_X86_WRMSR


KVM_API_VERSION = 12
KVM_CPUID_FLAG_SIGNIFCANT_INDEX = 1  # (sic) the uapi spelling
KVM_EXIT_IO_IN = 0
KVM_EXIT_IO_OUT = 1

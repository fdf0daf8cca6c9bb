"""Typed KVM_RUN exits: one frozen value per kind of exit (linux/kvm.h struct kvm_run).

Shaped like rust-vmm kvm-ioctls' ``VcpuExit``: `Vcpu.run` decodes kvm_run into
one of these, copying every field, so an exit stays valid after the next
KVM_RUN.  Exit kinds the live layer does not decode become `Unknown` with the
raw exit_reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from msrvirt.arch.kvm import ExitReason
from msrvirt.errors import UsageError
from msrvirt.live.uapi import KVM_EXIT_IO_IN, KVM_EXIT_IO_OUT


class IoDirection(IntEnum):
    """kvm_run.io.direction."""

    IN = KVM_EXIT_IO_IN
    OUT = KVM_EXIT_IO_OUT


class InternalSuberror(IntEnum):
    """KVM_INTERNAL_ERROR_* values of kvm_run.internal.suberror (linux/kvm.h)."""

    EMULATION = 1
    SIMUL_EX = 2
    DELIVERY_EV = 3
    UNEXPECTED_EXIT_REASON = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class Hlt:
    """KVM_EXIT_HLT: the guest executed HLT and no in-kernel irqchip is there to wait on."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Shutdown:
    """KVM_EXIT_SHUTDOWN: the vCPU triple-faulted (or the guest asked for a shutdown)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Io:
    """KVM_EXIT_IO: port I/O; ``data`` is the ``size * count`` bytes KVM placed in kvm_run."""

    direction: IoDirection
    port: int
    size: int
    count: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Mmio:
    """KVM_EXIT_MMIO: an access to guest-physical memory no slot backs."""

    phys_addr: int
    length: int
    direction: IoDirection  # OUT = the guest wrote ``data``
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class X86Rdmsr:
    """KVM_EXIT_X86_RDMSR: userspace must answer a guest RDMSR (api.rst, KVM_EXIT_X86_RDMSR).

    ``reason`` is why KVM did not handle it; answer with `Vcpu.answer_msr`.
    """

    reason: ExitReason
    index: int
    data: int


@dataclass(frozen=True, slots=True, kw_only=True)
class X86Wrmsr:
    """KVM_EXIT_X86_WRMSR: userspace must answer a guest WRMSR of ``data``."""

    reason: ExitReason
    index: int
    data: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FailEntry:
    """KVM_EXIT_FAIL_ENTRY: hardware refused to enter the guest."""

    hardware_entry_failure_reason: int
    cpu: int


@dataclass(frozen=True, slots=True, kw_only=True)
class InternalError:
    """KVM_EXIT_INTERNAL_ERROR: KVM could not go on (e.g. the emulator failed); ``data`` is raw."""

    suberror: InternalSuberror | int
    data: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemEvent:
    """KVM_EXIT_SYSTEM_EVENT: shutdown, reset or crash requested through a PV interface."""

    type: int
    data: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Unknown:
    """Any exit the live layer does not decode, by its raw kvm_run.exit_reason."""

    exit_reason: int


MsrExit = X86Rdmsr | X86Wrmsr
Exit = Hlt | Shutdown | Io | Mmio | X86Rdmsr | X86Wrmsr | FailEntry | InternalError \
    | SystemEvent | Unknown


class Reply(IntEnum):
    """How userspace completes an MSR exit: the value it writes to kvm_run.msr.error."""

    OK = 0  # the instruction completes; a RDMSR returns the answer's value
    GP = 1  # KVM injects #GP(0) into the guest


@dataclass(frozen=True, slots=True, kw_only=True)
class MsrAnswer:
    """Userspace's answer to an X86Rdmsr/X86Wrmsr exit (api.rst, KVM_EXIT_X86_RDMSR).

    ``value`` is what a RDMSR returns when ``reply`` is OK; a WRMSR ignores it.
    """

    reply: Reply = Reply.OK
    value: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.value <= 0xFFFF_FFFF_FFFF_FFFF:
            raise UsageError(f"an MSR answer's value must be a u64, not {self.value:#x}")


ANSWER_GP = MsrAnswer(reply=Reply.GP)

"""The vmcs12 controls that decide what L0 does with L2's MSR accesses (nested VMX).

vmcs12 is the VMCS L1 writes for its L2 guest; L0 (KVM) builds vmcs02 from it and from
its own vmcs01.  Only the controls below matter for L2's MSR accesses (the MSR bitmap
merge, the x2APIC rules) and for FRED state across L1 and L2.  Encodings: Linux v6.19
arch/x86/include/asm/vmx.h and vmxfeatures.h; the FRED controls are the v9 series'
(kvm-msr-facts.md section 8).  Secondary controls count only with their activation
bit set (nested.h nested_cpu_has2; v9 patch 19 nested_cpu_has_secondary_vm_exit_controls),
so each control here carries the activation bit it needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Flag, auto

from msrvirt.arch.vmcs import (
    CPU_BASED_ACTIVATE_SECONDARY_CONTROLS,
    CPU_BASED_USE_MSR_BITMAPS,
    CPU_BASED_VM_EXEC_CONTROL,
    SECONDARY_EXEC_APIC_REGISTER_VIRT,
    SECONDARY_EXEC_VIRTUAL_INTR_DELIVERY,
    SECONDARY_EXEC_VIRTUALIZE_X2APIC_MODE,
    SECONDARY_EXIT_LOAD_HOST_FRED,
    SECONDARY_EXIT_SAVE_GUEST_FRED,
    SECONDARY_VM_EXEC_CONTROL,
    SECONDARY_VM_EXIT_CONTROLS,
    VM_ENTRY_CONTROLS,
    VM_ENTRY_LOAD_GUEST_FRED,
    VM_EXIT_ACTIVATE_SECONDARY_CONTROLS,
    VM_EXIT_CONTROLS,
)
from msrvirt.errors import UnknownNameError


class Control(Flag):
    """A vmcs12 control msrvirt models; a set of them is how L1 runs its L2."""

    USE_MSR_BITMAPS = auto()
    VIRTUALIZE_X2APIC_MODE = auto()
    APIC_REGISTER_VIRT = auto()
    VIRTUAL_INTR_DELIVERY = auto()
    LOAD_GUEST_FRED = auto()
    SAVE_GUEST_FRED = auto()
    LOAD_HOST_FRED = auto()


NO_CONTROLS = Control(0)


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlBit:
    """Where one control lives in vmcs12: its field, its bit, and the bit that activates it."""

    control: Control
    name: str  # the command line's name
    kernel: str  # the kernel's name of the bit
    field: int  # VMCS field encoding of the control word
    mask: int
    activation: tuple[int, int] | None  # (field, mask) that must be set for it to count
    source: str


_VMX_H = "Linux v6.19 arch/x86/include/asm/vmx.h, vmxfeatures.h"
_FRED = "FRED v9 patches 01-02 (kvm-msr-facts.md section 8); v9 patch 19 nested.h"
_SECONDARY_EXEC = (CPU_BASED_VM_EXEC_CONTROL, CPU_BASED_ACTIVATE_SECONDARY_CONTROLS)
_SECONDARY_EXIT = (VM_EXIT_CONTROLS, VM_EXIT_ACTIVATE_SECONDARY_CONTROLS)

def _bit(control: Control, name: str, kernel: str, field: int, mask: int,
         activation: tuple[int, int] | None, source: str) -> ControlBit:
    return ControlBit(control=control, name=name, kernel=kernel, field=field, mask=mask,
                      activation=activation, source=source)


_C = Control
CONTROL_BITS: tuple[ControlBit, ...] = (
    _bit(_C.USE_MSR_BITMAPS, "msr-bitmaps", "CPU_BASED_USE_MSR_BITMAPS",
         CPU_BASED_VM_EXEC_CONTROL, CPU_BASED_USE_MSR_BITMAPS, None, _VMX_H),
    _bit(_C.VIRTUALIZE_X2APIC_MODE, "virtualize-x2apic", "SECONDARY_EXEC_VIRTUALIZE_X2APIC_MODE",
         SECONDARY_VM_EXEC_CONTROL, SECONDARY_EXEC_VIRTUALIZE_X2APIC_MODE, _SECONDARY_EXEC, _VMX_H),
    _bit(_C.APIC_REGISTER_VIRT, "apic-register-virt", "SECONDARY_EXEC_APIC_REGISTER_VIRT",
         SECONDARY_VM_EXEC_CONTROL, SECONDARY_EXEC_APIC_REGISTER_VIRT, _SECONDARY_EXEC, _VMX_H),
    _bit(_C.VIRTUAL_INTR_DELIVERY, "virtual-interrupt-delivery",
         "SECONDARY_EXEC_VIRTUAL_INTR_DELIVERY", SECONDARY_VM_EXEC_CONTROL,
         SECONDARY_EXEC_VIRTUAL_INTR_DELIVERY, _SECONDARY_EXEC, _VMX_H),
    _bit(_C.LOAD_GUEST_FRED, "load-guest-fred", "VM_ENTRY_LOAD_IA32_FRED", VM_ENTRY_CONTROLS,
         VM_ENTRY_LOAD_GUEST_FRED, None, _FRED),
    _bit(_C.SAVE_GUEST_FRED, "save-guest-fred", "SECONDARY_VM_EXIT_SAVE_IA32_FRED",
         SECONDARY_VM_EXIT_CONTROLS, SECONDARY_EXIT_SAVE_GUEST_FRED, _SECONDARY_EXIT, _FRED),
    _bit(_C.LOAD_HOST_FRED, "load-host-fred", "SECONDARY_VM_EXIT_LOAD_IA32_FRED",
         SECONDARY_VM_EXIT_CONTROLS, SECONDARY_EXIT_LOAD_HOST_FRED, _SECONDARY_EXIT, _FRED),
)

_BY_NAME: dict[str, ControlBit] = {
    key: c for c in CONTROL_BITS for key in (c.name, c.kernel.lower().replace("_", "-"))
}

FRED_CONTROLS = Control.LOAD_GUEST_FRED | Control.SAVE_GUEST_FRED | Control.LOAD_HOST_FRED


def control(name: str) -> Control:
    """The control called ``name`` (msrvirt's name or the kernel's, any case, '-' or '_')."""
    found = _BY_NAME.get(name.strip().lower().replace("_", "-"))
    if found is None:
        raise UnknownNameError("vmcs12 control", name,
                               "one of " + ", ".join(c.name for c in CONTROL_BITS))
    return found.control


def names(controls: Control) -> list[str]:
    """msrvirt's names of ``controls``, in table order."""
    return [c.name for c in CONTROL_BITS if c.control in controls]


def encode(controls: Control) -> dict[int, int]:
    """The vmcs12 control fields (encoding -> value) with exactly ``controls`` set.

    Every field a control lives in, or activates it, is present (0 when nothing is set).
    """
    fields: dict[int, int] = {}
    for c in CONTROL_BITS:
        fields.setdefault(c.field, 0)
        if c.activation is not None:
            fields.setdefault(c.activation[0], 0)
        if c.control in controls:
            fields[c.field] |= c.mask
            if c.activation is not None:
                fields[c.activation[0]] |= c.activation[1]
    return dict(sorted(fields.items()))

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

CONTROL_BITS: tuple[ControlBit, ...] = (
    ControlBit(control=Control.USE_MSR_BITMAPS, name="msr-bitmaps",
               kernel="CPU_BASED_USE_MSR_BITMAPS", field=CPU_BASED_VM_EXEC_CONTROL,
               mask=CPU_BASED_USE_MSR_BITMAPS, activation=None, source=_VMX_H),
    ControlBit(control=Control.VIRTUALIZE_X2APIC_MODE, name="virtualize-x2apic",
               kernel="SECONDARY_EXEC_VIRTUALIZE_X2APIC_MODE", field=SECONDARY_VM_EXEC_CONTROL,
               mask=SECONDARY_EXEC_VIRTUALIZE_X2APIC_MODE, activation=_SECONDARY_EXEC,
               source=_VMX_H),
    ControlBit(control=Control.APIC_REGISTER_VIRT, name="apic-register-virt",
               kernel="SECONDARY_EXEC_APIC_REGISTER_VIRT", field=SECONDARY_VM_EXEC_CONTROL,
               mask=SECONDARY_EXEC_APIC_REGISTER_VIRT, activation=_SECONDARY_EXEC,
               source=_VMX_H),
    ControlBit(control=Control.VIRTUAL_INTR_DELIVERY, name="virtual-interrupt-delivery",
               kernel="SECONDARY_EXEC_VIRTUAL_INTR_DELIVERY", field=SECONDARY_VM_EXEC_CONTROL,
               mask=SECONDARY_EXEC_VIRTUAL_INTR_DELIVERY, activation=_SECONDARY_EXEC,
               source=_VMX_H),
    ControlBit(control=Control.LOAD_GUEST_FRED, name="load-guest-fred",
               kernel="VM_ENTRY_LOAD_IA32_FRED", field=VM_ENTRY_CONTROLS,
               mask=VM_ENTRY_LOAD_GUEST_FRED, activation=None, source=_FRED),
    ControlBit(control=Control.SAVE_GUEST_FRED, name="save-guest-fred",
               kernel="SECONDARY_VM_EXIT_SAVE_IA32_FRED", field=SECONDARY_VM_EXIT_CONTROLS,
               mask=SECONDARY_EXIT_SAVE_GUEST_FRED, activation=_SECONDARY_EXIT, source=_FRED),
    ControlBit(control=Control.LOAD_HOST_FRED, name="load-host-fred",
               kernel="SECONDARY_VM_EXIT_LOAD_IA32_FRED", field=SECONDARY_VM_EXIT_CONTROLS,
               mask=SECONDARY_EXIT_LOAD_HOST_FRED, activation=_SECONDARY_EXIT, source=_FRED),
)

BY_CONTROL: dict[Control, ControlBit] = {c.control: c for c in CONTROL_BITS}
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

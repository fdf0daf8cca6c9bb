"""The host kernel a design runs on: its FRED stack-level map, its shadow stacks, its CET state.

KVM's FRED code writes the VMCS host fields from what it assumes of the host kernel (v9
07/22, vmx_vcpu_load_vmcs): host RSP1-3 from the #DB, NMI and #DF exception stacks, host
SSP1-3 = 0.  Whether that is right depends on the kernel, so the kernel is an input of the
model (`Design.host`), and the same KVM design can be checked on another kernel:

- the **stack-level map**: which FRED stack level each ring-0 event uses (the kernel's
  STKLVLS) and which stack the kernel puts in each level's RSP (Linux v6.19,
  arch/x86/kernel/fred.c: #DB level 1, NMI and #MC level 2, #DF level 3; cpu_init_fred_rsps
  writes RSP1-3 = the #DB, NMI and #DF stacks);
- **shadow stacks**: Linux v6.19 runs its kernel without supervisor shadow stacks
  (vmx_set_constant_host_state: "Supervisor shadow stack is not enabled on host side"), so
  no host event delivery loads an SSP; with them, a ring-0 delivery loads SSPn of its level
  and a delivery from user mode loads PL0_SSP (fred-arch-facts.md section 3);
- **CET state**: what the host's XSAVES/XRSTORS do with the CET supervisor state (PL0_SSP)
  around a guest.  Linux v6.19 on a CET host: every guest FPU state carries CET_KERNEL
  (guest_default_mask) and a host task's does not (host_default_mask), and the host's
  restore uses XFEATURE_MASK_FPSTATE, which holds CET_KERNEL (restore_fpregs_from_fpstate,
  from fpu_swap_kvm_fpstate at the end of KVM_RUN and fpregs_restore_userregs on the way
  back to user mode), so PL0_SSP returns to its init state.

`HOST_CONFIGS` names the configurations the checker and the review use; `LINUX` is the
default one, the host every design runs on unless it says otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from msrvirt.errors import UnknownNameError


class Vector(Enum):
    """A ring-0 host event with a FRED stack level of its own (STKLVLS, arch/x86/kernel/fred.c)."""

    DB = "#DB"
    NMI = "NMI"
    MC = "#MC"
    DF = "#DF"


class ShadowStacks(Enum):
    """Whether the host kernel runs on supervisor shadow stacks."""

    NONE = "no supervisor shadow stacks"
    SUPERVISOR = "supervisor shadow stacks"


class CetState(Enum):
    """What the host's XSAVES/XRSTORS do with PL0_SSP (the CET supervisor state) around a guest."""

    KEPT = "the guest's PL0_SSP moves with its XSAVE state only for a guest with shadow stacks," \
        " and the host's XRSTORS leaves PL0_SSP as it is after vCPU put"
    RESTORED = "every guest's XSAVE state carries CET_KERNEL, and the host's XRSTORS restores" \
        " PL0_SSP (its init state on Linux v6.19) at vCPU put"


@dataclass(frozen=True, slots=True, kw_only=True)
class HostConfig:
    """One host kernel configuration: the stack-level map, shadow stacks and CET state handling.

    ``levels`` is the kernel's STKLVLS (the stack level of each ring-0 event), ``stacks``
    the stacks it writes to RSP1, RSP2 and RSP3, each named by the event it is the
    exception stack of (cpu_entry_area: ESTACK_DB, ESTACK_NMI, ESTACK_DF).
    """

    name: str
    summary: str
    levels: tuple[tuple[Vector, int], ...]
    stacks: tuple[Vector, Vector, Vector]
    shadow_stacks: ShadowStacks = ShadowStacks.NONE
    cet_state: CetState = CetState.KEPT
    source: str

    def level(self, vector: Vector) -> int:
        """The FRED stack level ``vector`` uses at ring 0."""
        return dict(self.levels)[vector]

    def mismatched_levels(self, fill: Sequence[Vector]) -> tuple[int, ...]:
        """The stack levels some event uses whose RSP the kernel sets to another stack than
        ``fill`` (the stacks KVM writes to the host RSP1-3 fields) does."""
        used = sorted({lvl for _, lvl in self.levels if lvl > 0})
        return tuple(lvl for lvl in used if self.stacks[lvl - 1] is not fill[lvl - 1])

    @property
    def map_text(self) -> str:
        """'#DB level 1, NMI level 2, ...; RSP1-3 = the #DB, NMI and #DF stacks'."""
        levels = ", ".join(f"{v.value} level {lvl}" for v, lvl in self.levels)
        return f"{levels}; RSP1-3 = the {', '.join(s.value for s in self.stacks)} stacks"


_FRED_C = "arch/x86/kernel/fred.c cpu_init_fred_rsps, Linux v6.19"
_LINUX_LEVELS = ((Vector.DB, 1), (Vector.NMI, 2), (Vector.MC, 2), (Vector.DF, 3))
_LINUX_STACKS = (Vector.DB, Vector.NMI, Vector.DF)

LINUX = HostConfig(
    name="linux-6.19", levels=_LINUX_LEVELS, stacks=_LINUX_STACKS,
    summary="Linux v6.19's stack-level map, no supervisor shadow stacks; the host's XRSTORS"
    " leaves PL0_SSP as it is (the stricter case: a guest value stays there after vCPU put)",
    source=f"{_FRED_C}; arch/x86/kvm/vmx/vmx.c vmx_set_constant_host_state")

HOST_CONFIGS: dict[str, HostConfig] = {h.name: h for h in (
    LINUX,
    HostConfig(
        name="stack-map-changed", levels=((Vector.DB, 2), (Vector.NMI, 1), (Vector.MC, 1),
                                          (Vector.DF, 3)),
        stacks=(Vector.NMI, Vector.DB, Vector.DF),
        summary="a kernel that moves NMI and #MC to stack level 1 and #DB to level 2"
        " (RSP1 = the NMI stack, RSP2 = the #DB stack), otherwise Linux v6.19",
        source=f"planted host; Linux v6.19's map is in {_FRED_C}"),
    HostConfig(
        name="host-supervisor-shstk", levels=_LINUX_LEVELS, stacks=_LINUX_STACKS,
        shadow_stacks=ShadowStacks.SUPERVISOR, cet_state=CetState.RESTORED,
        summary="a kernel with supervisor shadow stacks (its own SSP1-3 and PL0_SSP, restored"
        " with its XSAVE state before it returns to user mode), otherwise Linux v6.19",
        source="planted host; fred-arch-facts.md section 3 (a delivery loads SSPn or PL0_SSP"
        " with supervisor shadow stacks)"),
    HostConfig(
        name="cet-xsaves", levels=_LINUX_LEVELS, stacks=_LINUX_STACKS,
        cet_state=CetState.RESTORED,
        summary="Linux v6.19 on a CET host: every guest FPU state carries CET_KERNEL and the"
        " host's XRSTORS puts PL0_SSP in its init state at vCPU put",
        source="arch/x86/kernel/fpu/core.c restore_fpregs_from_fpstate, fpu_swap_kvm_fpstate;"
        " xstate.c host_default_mask, guest_default_mask; context.h fpregs_restore_userregs,"
        " Linux v6.19"),
)}


def host_config(name: str) -> HostConfig:
    """Return the host configuration called ``name``; UnknownNameError lists the known ones."""
    try:
        return HOST_CONFIGS[name]
    except KeyError:
        raise UnknownNameError("host configuration", name, "one of " + ", ".join(HOST_CONFIGS)) \
            from None

"""The stateful model: physical CPUs, the VMCS, the host kernel, KVM's vCPU and the guest.

Semantics follow kvm-msr-facts.md sections 2 and 5-8 and fred-arch-facts.md section 3;
docs/check.md lists every abstraction and why it is sound.  In short:

- MSRs: FRED_RSP0, FRED_RSP1 (standing for RSP1-3), FRED_STKLVLS, FRED_SSP1 (standing for
  SSP1-3), FRED_CONFIG and PL0_SSP (= FRED_SSP0).  RSP2/3 and SSP2/3 have the same VMCS
  fields, intercept rule and consumers as RSP1 and SSP1, so one of each is kept.
- Values are symbols: the host's own values (task stack tops, per-CPU exception stacks,
  the fixed STKLVLS/CONFIG), the invalid cache value 0, and guest values g0 (the reset
  value) to gN, disjoint from the host's.
- Every event delivery is modelled together with its return (ERETS/ERETU), so the current
  stack level between events is always the one of the interrupted context.
- The host kernel is an input (`Design.host`, msrvirt.machine.hostconf): its stack-level
  map decides whether KVM's host RSP1-3 fields hold its stacks, its shadow stacks what its
  deliveries consume, its XRSTORS what PL0_SSP holds after vCPU put (`host_fields`,
  `host_uses`, `save_guest_cet`, `load_guest_cet`).

The model is one declaration in the language of `msrvirt.machine.spec`: the fields
(`FIELDS`), the events (`declare` builds every instance for a design and bounds, each
with its enabling condition and its effect) and the expressions the invariants and the
cost model ask about (`kvm_get`, `host_needs`, `filter_allows`...).  `Machine` compiles
it (`msrvirt.machine.codegen`) and steps packed states; `msrvirt.check.promela` writes
the same declaration as Promela.  To add a field, declare a `Field` and list it in
`FIELDS`; to add an event, add an `Ev` kind and its instances in `declare`; a design's
variations are Python conditionals on the `Design` while declaring (docs/check.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from typing import NamedTuple, cast

from msrvirt.arch import msrs
from msrvirt.arch.cpuid import Feature
from msrvirt.arch.hosts import host
from msrvirt.arch.kvm import Access
from msrvirt.errors import UsageError
from msrvirt.machine.codegen import Program, compile_program
from msrvirt.machine.designs import Design, Fault, PutSync
from msrvirt.machine.hostconf import CetState, ShadowStacks
from msrvirt.machine.spec import (
    FLAG,
    Const,
    Domain,
    EventDecl,
    Expr,
    Field,
    Group,
    HasBits,
    Model,
    Observe,
    Stmt,
    Var,
    add,
    all_of,
    any_of,
    assign,
    cond,
    enum_domain,
    eq,
    flatten,
    ge,
    layout,
    ne,
    not_,
    select,
    table,
    when,
)
from msrvirt.policy.filter import NO_FILTER, FilterRange, MsrFilter, bitmap_size_bytes
from msrvirt.policy.intercepts import Intercepts, compute_intercepts
from msrvirt.policy.scenario import Scenario

State = int  # a packed state (`msrvirt.machine.codegen.Layout`)

HOST_PROFILE = "intel-fred"  # FRED with CET: the host the seed targets (fred-arch-facts.md 1)


class Slot(IntEnum):
    """A modelled MSR, by its position among the hardware MSRs and the guest's beliefs."""

    RSP0 = 0
    RSP1 = 1
    STKLVLS = 2
    SSP1 = 3
    CONFIG = 4
    PL0_SSP = 5

    @property
    def msr(self) -> int:
        """The architectural MSR index, from the MSR table (fred-arch-facts.md section 2)."""
        return _SLOT_MSR[self]

    @property
    def label(self) -> str:
        return msrs.display_name(self.msr)


_SLOT_MSR = {slot: msrs.resolve_index(name) for slot, name in (
    (Slot.RSP0, "IA32_FRED_RSP0"), (Slot.RSP1, "IA32_FRED_RSP1"),
    (Slot.STKLVLS, "IA32_FRED_STKLVLS"), (Slot.SSP1, "IA32_FRED_SSP1"),
    (Slot.CONFIG, "IA32_FRED_CONFIG"), (Slot.PL0_SSP, "IA32_PL0_SSP"))}
SLOTS = tuple(Slot)
# The MSRs with VMCS guest/host fields (kvm-msr-facts.md section 8).
VMCS_SLOTS = (Slot.RSP1, Slot.STKLVLS, Slot.SSP1, Slot.CONFIG)


class Mode(IntEnum):
    """What a physical CPU runs."""

    HOST_USER = 0  # the running task in user mode (its kernel work is atomic, see docs)
    KVM = 1  # the vCPU thread in the kernel inside KVM_RUN
    GUEST = 2  # VMX non-root: the guest, at the ring in ``Ring``


class Ring(IntEnum):
    """The guest's privilege level."""

    KERNEL = 0
    USER = 3


class Parked(IntEnum):
    """Where the vCPU thread is while no CPU runs it."""

    USER = 0  # preempted in its user mode (the VMM)
    KVM = 1  # preempted inside KVM_RUN (vcpu_put ran from the preempt notifier)


class GuestCpu(IntEnum):
    """The guest CPUID the VMM sets (KVM_SET_CPUID2)."""

    FRED_SHSTK = 0
    FRED = 1

    @property
    def features(self) -> frozenset[Feature]:
        if self is GuestCpu.FRED_SHSTK:
            return frozenset({Feature.FRED, Feature.LKGS, Feature.SHSTK})
        return frozenset({Feature.FRED, Feature.LKGS})

    @property
    def shstk(self) -> bool:
        return Feature.SHSTK in self.features


class FilterChoice(IntEnum):
    """The userspace MSR filters the VMM switches between."""

    NONE = 0
    DENY_FRED = 1

    @property
    def msr_filter(self) -> MsrFilter:
        return _FILTERS[self]


def deny_filter(base: int, nmsrs: int) -> MsrFilter:
    """DEFAULT_ALLOW with one R|W range over ``nmsrs`` MSRs from ``base``, its bits all 0 (deny)."""
    return MsrFilter(ranges=(FilterRange(flags=int(Access.RW), base=base, nmsrs=nmsrs,
                                         allow_bits=bytes(bitmap_size_bytes(nmsrs))),))


_FILTERS = {
    FilterChoice.NONE: NO_FILTER,
    FilterChoice.DENY_FRED: deny_filter(msrs.FRED_MSRS[0].index, len(msrs.FRED_MSRS)),  # all nine
}


class Ev(IntEnum):
    """Kinds of event."""

    HOST_USER_EVENT = 0  # interrupt/syscall from host ring 3, delivered, handled, exit to user
    HOST_EXCEPTION = 1  # NMI/#DB at host ring 0 (level 1), delivered and returned with ERETS
    CONTEXT_SWITCH = 2  # schedule() on a CPU; vCPU put/load through the preempt notifiers
    KVM_RUN = 3  # the vCPU thread enters KVM_RUN: vcpu_load
    KVM_RUN_RETURN = 4  # KVM_RUN returns: vcpu_put, exit to user mode (fred_update_rsp0)
    VM_ENTRY = 5
    VM_EXIT = 6  # an exit for any reason but an MSR access (interrupt, NMI, preemption timer)
    GUEST_RDMSR = 7
    GUEST_WRMSR = 8
    GUEST_ERETU = 9  # guest kernel returns to guest user mode
    GUEST_EVENT_RING3 = 10  # interrupt/syscall in guest user mode
    GUEST_EVENT_RING0 = 11  # NMI/#DB in guest kernel mode (level 1)
    KVM_SET_MSRS = 12  # host-initiated write from the VMM: load, write, put, exit to user
    SET_FILTER = 13  # KVM_X86_SET_MSR_FILTER from another VMM thread
    SET_CPUID = 14  # KVM_SET_CPUID2 (only before the vCPU is first used)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One event; fields that do not apply to ``kind`` keep their defaults."""

    kind: IntEnum  # an Ev; a nested design's own events are machine.nested.NestedEv
    cpu: int = -1
    slot: Slot | None = None
    value: int = 0  # the value a write stores
    task: int = -1  # CONTEXT_SWITCH: the task switched in
    choice: int = -1  # SET_FILTER: a FilterChoice; SET_CPUID: a GuestCpu


class ObsKind(IntEnum):
    """What an observable event exposes to the invariants."""

    HOST_DELIVERY = 0
    GUEST_DELIVERY = 1
    GUEST_READ = 2
    GUEST_WRITE = 3


class Observation(NamedTuple):
    """What one event consumed or returned: (slot, value) pairs, and how the access went."""

    kind: ObsKind
    cpu: int
    values: tuple[tuple[Slot, int], ...]  # consumed by a delivery; returned/stored by an access
    direct: bool = False  # the access ran on the hardware MSR without a VM exit
    faulted: bool = False  # the access got #GP (filter denial), no value moved


# -- symbolic values ---------------------------------------------------------------------------

INVALID = 0  # the rsp0 cache's "invalid" value (fred-arch / kvm-msr-facts section 7)
HOST_STKLVLS = 1
HOST_CONFIG = 2
HOST_SSP = 3  # host FRED_SSP1-3 (0: the host kernel has no supervisor shadow stacks)
HOST_PL0_SSP = 4  # whatever the host leaves in PL0_SSP (with supervisor shadow stacks: its own)
OTHER_STACK = 5  # an exception stack other than the one the host kernel uses at the level
# L1's own values in the nested designs (machine/nested.py), where L1 is itself a Linux host.
L1_EXC = 6  # L1's FRED_RSP1: its #DB stack (standing for its values of the eight VMCS-switched MSRs)
L1_TOP = 7  # the stack top of L1's VMM thread: L1's FRED_RSP0 while L1 runs its user mode
L1_PL0 = 8  # whatever L1 leaves in PL0_SSP
_EXC, _TOP, _GUEST = 16, 24, 40
MAX_CPUS, MAX_TASKS, MAX_VALUES = _TOP - _EXC, _GUEST - _TOP, 8


def exc_stack(cpu: int) -> int:
    """The host value of FRED_RSP1 on ``cpu``: its per-CPU #DB/NMI/#DF stack."""
    return _EXC + cpu


def stack_top(task: int) -> int:
    """A host task's kernel stack top, the value FRED_RSP0 must hold while it runs user code."""
    return _TOP + task


def guest_value(k: int) -> int:
    """The guest's k-th value; k = 0 is the reset value."""
    return _GUEST + k


def is_guest_value(value: int) -> bool:
    return value >= _GUEST


VCPU_TASK = 0  # task 0 is the vCPU thread (its user mode is the VMM)


# The fixed symbols, in value order, with the names traces print.
_FIXED_NAMES = {INVALID: "0", HOST_STKLVLS: "host-stklvls", HOST_CONFIG: "host-config",
                HOST_SSP: "host-ssp", HOST_PL0_SSP: "host-pl0", OTHER_STACK: "other-stack",
                L1_EXC: "L1-exc", L1_TOP: "top(L1 VMM)", L1_PL0: "L1-pl0"}


def value_name(value: int) -> str:
    """A symbol's name, as traces print it."""
    if value in _FIXED_NAMES:
        return _FIXED_NAMES[value]
    if value >= _GUEST:
        return f"g{value - _GUEST}"
    if value >= _TOP:
        return f"top({task_name(value - _TOP)})"
    return f"exc(cpu{value - _EXC})"


def task_name(task: int) -> str:
    return "vcpu" if task == VCPU_TASK else f"T{task}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Bounds:
    """The size of the modelled system: CPUs, host tasks (vCPU thread included), guest values."""

    cpus: int = 2
    tasks: int = 3
    values: int = 1  # guest values besides the reset value

    def __post_init__(self) -> None:
        if not 1 <= self.cpus <= MAX_CPUS:
            raise UsageError(f"cpus must be between 1 and {MAX_CPUS}, not {self.cpus}")
        if not self.cpus <= self.tasks <= MAX_TASKS:
            raise UsageError(
                f"tasks must be between cpus ({self.cpus}) and {MAX_TASKS}, not {self.tasks}")
        if not 1 <= self.values <= MAX_VALUES:
            raise UsageError(f"values must be between 1 and {MAX_VALUES}, not {self.values}")


DEFAULT_BOUNDS = Bounds()


# -- domains -------------------------------------------------------------------------------------


def _symbols(b: Bounds) -> tuple[int, ...]:
    return (*_FIXED_NAMES,
            *(exc_stack(c) for c in range(b.cpus)), *(stack_top(t) for t in range(b.tasks)),
            *(guest_value(k) for k in range(b.values + 1)))


def slot_bit(slot: Slot, access: Access) -> int:
    """The BITMAP bit of one intercept: 2*slot for reads, 2*slot+1 for writes."""
    return 1 << (2 * slot + (1 if access is Access.W else 0))


def bitmap_text(bits: int) -> str:
    """The modelled intercept bits in words, e.g. ``intercepts PL0_SSP/rw``."""
    parts = []
    for slot in SLOTS:
        dirs = "".join(d for d, a in (("r", Access.R), ("w", Access.W)) if bits & slot_bit(slot, a))
        if dirs:
            parts.append(f"{slot.label.removeprefix('IA32_')}/{dirs}")
    return "intercepts " + (" ".join(parts) if parts else "none")


_MODE_TEXT = {Mode.HOST_USER: "host user", Mode.KVM: "KVM", Mode.GUEST: "guest"}
_CPUID_TEXT = {GuestCpu.FRED_SHSTK: "FRED+SHSTK", GuestCpu.FRED: "FRED"}
_FILTER_TEXT = {FilterChoice.NONE: "none", FilterChoice.DENY_FRED: "deny FRED MSRs"}

VALUE = Domain(name="value", values=_symbols, text=value_name)
CPU_OR_NONE = Domain(name="cpu", values=lambda b: tuple(range(-1, b.cpus)),
                     text=lambda v: "-" if v < 0 else f"cpu{v}")
TASK = Domain(name="task", values=lambda b: tuple(range(b.tasks)), text=task_name)
BITMAP = Domain(name="bitmap", values=lambda _b: tuple(range(1 << (2 * len(SLOTS)))),
                text=bitmap_text)
MODE = enum_domain(Mode, lambda v: _MODE_TEXT[Mode(v)])
RING = enum_domain(Ring, lambda v: f"ring {v}")
PARKED = enum_domain(Parked)
GUEST_CPU = enum_domain(GuestCpu, lambda v: _CPUID_TEXT[GuestCpu(v)])
FILTER_CHOICE = enum_domain(FilterChoice, lambda v: _FILTER_TEXT[FilterChoice(v)])


# -- fields --------------------------------------------------------------------------------------

_G0 = guest_value(0)
_HOST_FIXED = {Slot.RSP0: INVALID, Slot.STKLVLS: HOST_STKLVLS, Slot.SSP1: HOST_SSP,
               Slot.CONFIG: HOST_CONFIG, Slot.PL0_SSP: HOST_PL0_SSP}


def _cpu(cpu: int | None) -> int:
    assert cpu is not None, "a per-CPU field's initial value gets its CPU"
    return cpu


def _hw_initial(cpu: int | None, slot: Slot) -> int:
    cpu = _cpu(cpu)
    if slot is Slot.RSP0:
        return stack_top(cpu)  # task i starts on CPU i, back in user mode
    if slot is Slot.RSP1:
        return exc_stack(cpu)
    return _HOST_FIXED[slot]


def scalar(name: str, domain: Domain, initial: int, doc: str) -> Var:
    """The one variable of a machine-wide field without keys."""
    return Field(name=name, domain=domain, initial=initial, doc=doc).var


CPUID = scalar("guest cpuid", GUEST_CPU, GuestCpu.FRED_SHSTK, "the CPUID the VMM set")
FILTER = scalar("msr filter", FILTER_CHOICE, FilterChoice.NONE, "the filter installed")
# Initial value: the design's bitmap for the initial CPUID and filter (set by `declare`).
BITMAP_BITS = scalar("msr bitmap", BITMAP, 0, "intercept bits of the slots (slot_bit)")
REQ = scalar("recalc request", FLAG, 0,
               "KVM_REQ_MSR_FILTER_CHANGED pending: recompute at the next VM entry")
LOCKED = scalar("cpuid locked", FLAG, 0,
                  "the vCPU ran or was configured: KVM_SET_CPUID2 may not change CPUID")
VMCS_CPU = scalar("vmcs on", CPU_OR_NONE, -1, "CPU the VMCS was last loaded on")
LOADED = scalar("guest state loaded on", CPU_OR_NONE, -1,
                  "CPU holding the guest's RSP0/CET state (guest_state_loaded)")
PARKED_AT = scalar("vcpu thread parked", PARKED, Parked.USER,
                     "where the vCPU thread is while off-CPU (USER while on a CPU)")
RING_OF = scalar("guest ring", RING, Ring.KERNEL, "the guest's privilege level")
SOFT_RSP0 = scalar("msr_guest_fred_rsp0", VALUE, _G0, "KVM's software copy of RSP0")
FALLBACK = scalar("fred_ssp0_fallback", VALUE, _G0, "PL0_SSP of a guest without SHSTK")
XSAVE_PL0 = scalar("guest xsave PL0_SSP", VALUE, _G0,
                     "PL0_SSP in the guest's XSAVE CET supervisor state")
VMCS_GUEST = Field(name="vmcs guest {key}", domain=VALUE, keys=VMCS_SLOTS, initial=_G0,
                   doc="guest-state VMCS fields (guest fields start at 0: the reset value)")
VMCS_HOST = Field(name="vmcs host {key}", domain=VALUE, keys=VMCS_SLOTS,
                  initial=lambda _c, slot: _HOST_FIXED.get(slot, INVALID),
                  doc="host-state VMCS fields; RSP1 is per CPU, written at the first load")
BELIEF = Field(name="guest's {key}", domain=VALUE, keys=SLOTS, initial=_G0,
               doc="the value the guest believes each MSR holds (its last write)")
MODE_OF = Field(name="runs", domain=MODE, group=Group.CPU, initial=Mode.HOST_USER,
                doc="what the CPU runs")
TASK_OF = Field(name="task", domain=TASK, group=Group.CPU, initial=lambda c, _k: _cpu(c),
                doc="the task running on the CPU (task i starts on CPU i)")
CACHE = Field(name="fred_rsp0 cache", domain=VALUE, group=Group.CPU,
              initial=lambda c, _k: stack_top(_cpu(c)), doc="the per-CPU fred_rsp0 cache")
HW = Field(name="{key}", domain=VALUE, group=Group.CPU, keys=SLOTS, initial=_hw_initial,
           doc="the hardware MSRs")

FIELDS: tuple[Field, ...] = (
    CPUID.field, FILTER.field, BITMAP_BITS.field, REQ.field, LOCKED.field, VMCS_CPU.field,
    LOADED.field, PARKED_AT.field, RING_OF.field, SOFT_RSP0.field, FALLBACK.field,
    XSAVE_PL0.field, VMCS_GUEST, VMCS_HOST, BELIEF, MODE_OF, TASK_OF, CACHE, HW)


# -- expressions the effects, the invariants and the cost model share ---------------------------


def symbol(v: int) -> Expr:
    """A value symbol as a constant."""
    return Const(v, VALUE)


def shstk() -> Expr:
    """The guest has shadow stacks (its CET state lives in XSAVE, not the fallback)."""
    return eq(CPUID, GuestCpu.FRED_SHSTK)


def top_of(task: Expr) -> Expr:
    """The stack top of the task ``task`` evaluates to."""
    return add(task, _TOP, VALUE)


def is_written(value: Expr) -> Expr:
    """A value the guest or the VMM wrote (g1..gN); the reset value g0 is also the init state
    of an XSAVE component, which the host's XRSTORS can load without any guest writing it."""
    return ge(value, guest_value(1))


def in_guest(cpu: int) -> Expr:
    return eq(MODE_OF[cpu], Mode.GUEST)


def any_in_guest(b: Bounds) -> Expr:
    return any_of(*(in_guest(c) for c in range(b.cpus)))


def intercepted(slot: Slot, access: Access) -> Expr:
    """The MSR bitmap intercepts ``access`` to ``slot``."""
    return HasBits(BITMAP_BITS, slot_bit(slot, access))


def filter_allows(slot: Slot, access: Access) -> Expr:
    """The installed userspace filter lets a guest ``access`` to ``slot`` through."""
    return all_of(*(ne(FILTER, f) for f in FilterChoice
                    if not f.msr_filter.allows(slot.msr, access)))


def host_needs(slot: Slot, cpu: int) -> Expr:
    """The value the host kernel needs in ``slot`` on ``cpu`` (kvm-msr-facts.md 7, 8).

    RSP0: the running task's stack top; RSP1: the CPU's exception stack; the rest fixed.
    """
    if slot is Slot.RSP0:
        return top_of(TASK_OF[cpu])
    if slot is Slot.RSP1:
        return symbol(exc_stack(cpu))
    return symbol(_HOST_FIXED[slot])


def at_loaded(b: Bounds, slot: Slot) -> Expr:
    """The hardware ``slot`` of the CPU holding the guest state (a dynamic index)."""
    return select(LOADED, [(c, HW[c, slot]) for c in range(b.cpus)])


def kvm_get(design: Design, b: Bounds, slot: Slot) -> Expr:
    """__kvm_get_msr for a FRED MSR or PL0_SSP: what KVM_GET_MSRS returns."""
    if slot is Slot.RSP0:
        if Fault.GET_RSP0_SOFT in design.faults:
            return SOFT_RSP0
        return cond(eq(LOADED, -1), SOFT_RSP0, at_loaded(b, Slot.RSP0))
    if slot is Slot.PL0_SSP:
        return cond(not_(shstk()), FALLBACK, cond(eq(LOADED, -1), XSAVE_PL0,
                                                  at_loaded(b, Slot.PL0_SSP)))
    return VMCS_GUEST[slot]


# -- statements: the kernel and KVM code the events run ------------------------------------------


def exit_to_user(c: int) -> Stmt:
    """arch_exit_to_user_mode_prepare: rewrite RSP0 and the cache if the cache differs."""
    top = top_of(TASK_OF[c])
    return when(ne(CACHE[c], top), assign(HW[c, Slot.RSP0], top), assign(CACHE[c], top))


def vcpu_load(d: Design, c: int) -> Stmt:
    """vmx_vcpu_load: move the VMCS to ``c`` and write its per-CPU host fields."""
    write: list[Stmt] | Stmt = host_fields(d, c)
    if Fault.HOST_FIELDS_ONCE in d.faults:
        write = when(eq(VMCS_CPU, -1), write)
    return when(ne(VMCS_CPU, c), write, assign(VMCS_CPU, c))


def vcpu_put(d: Design, c: int) -> Stmt:
    """vmx_prepare_switch_to_host: save the guest's RSP0 (and CET state), fix the cache."""
    body: list[Stmt] = [assign(SOFT_RSP0, HW[c, Slot.RSP0])]
    if d.put_sync is PutSync.SYNC:
        body.append(assign(CACHE[c], SOFT_RSP0))
    elif d.put_sync is PutSync.INVALIDATE:
        body.append(assign(CACHE[c], symbol(INVALID)))
    return when(eq(LOADED, c), body, save_guest_cet(d, c), assign(LOADED, -1))


def load_guest_state(d: Design, c: int) -> Stmt:
    """vmx_prepare_switch_to_guest, once per load: guest RSP0 (and CET state) to the MSRs."""
    return when(eq(LOADED, -1), assign(HW[c, Slot.RSP0], SOFT_RSP0), load_guest_cet(d, c),
                assign(LOADED, c))


def hw_exit(d: Design, c: int) -> list[Stmt]:
    """VM exit: save the 8 FRED MSRs to the guest fields, load the host fields, atomically."""
    kept = set()
    if Fault.EXIT_KEEPS_GUEST_RSP1 in d.faults:
        kept.add(Slot.RSP1)
    if Fault.EXIT_KEEPS_GUEST_STKLVLS_CONFIG in d.faults:
        kept |= {Slot.STKLVLS, Slot.CONFIG}
    out: list[Stmt] = []
    for slot in VMCS_SLOTS:
        out.append(assign(VMCS_GUEST[slot], HW[c, slot]))
        if slot not in kept:
            out.append(assign(HW[c, slot], VMCS_HOST[slot]))
    out.append(assign(MODE_OF[c], Mode.KVM))
    return out


def kvm_set(b: Bounds, slot: Slot, value: int) -> Stmt | list[Stmt]:
    """__kvm_set_msr for a FRED MSR or PL0_SSP, guest- or host-initiated."""
    v = symbol(value)
    if slot is Slot.RSP0:
        return [assign(SOFT_RSP0, v),
                *(when(eq(LOADED, c), assign(HW[c, Slot.RSP0], v)) for c in range(b.cpus))]
    if slot is Slot.PL0_SSP:
        loaded = [when(eq(LOADED, c), assign(HW[c, Slot.PL0_SSP], v)) for c in range(b.cpus)]
        return when(not_(shstk()), assign(FALLBACK, v),
                    orelse=[when(ne(LOADED, -1), loaded, orelse=[assign(XSAVE_PL0, v)])])
    return assign(VMCS_GUEST[slot], v)


def context_switch(d: Design, b: Bounds, c: int, t: int) -> tuple[Expr, list[Stmt]]:
    """schedule() on ``c`` switching task ``t`` in: its enabling condition and its effect.

    The vCPU thread switched out inside KVM_RUN is put and parked there (kvm_sched_out) and
    loaded again when it comes back (kvm_sched_in); any other task returns to user mode.
    """
    off_cpu = all_of(*(ne(TASK_OF[o], t) for o in range(b.cpus)))
    switch_in = ([when(eq(PARKED_AT, Parked.KVM),
                       vcpu_load(d, c), assign(MODE_OF[c], Mode.KVM),  # kvm_sched_in
                       orelse=[assign(MODE_OF[c], Mode.HOST_USER), exit_to_user(c)]),
                  assign(PARKED_AT, Parked.USER)]  # canonical while on a CPU
                 if t == VCPU_TASK else
                 [assign(MODE_OF[c], Mode.HOST_USER), exit_to_user(c)])
    return all_of(ne(MODE_OF[c], Mode.GUEST), off_cpu), [
        when(eq(TASK_OF[c], VCPU_TASK),
             when(eq(MODE_OF[c], Mode.KVM),
                  vcpu_put(d, c), assign(PARKED_AT, Parked.KVM),  # kvm_sched_out
                  orelse=[assign(PARKED_AT, Parked.USER)])),
        assign(TASK_OF[c], t), *switch_in]


def kvm_run_return(d: Design, c: int) -> list[Stmt]:
    """KVM_RUN returns on ``c``: vcpu_put, then the exit to user mode (fred_update_rsp0)."""
    return [vcpu_put(d, c),
            *([] if Fault.NO_RSP0_RESTORE_AFTER_RUN in d.faults else [exit_to_user(c)]),
            assign(MODE_OF[c], Mode.HOST_USER)]


def recompute(masks: dict[tuple[int, ...], int], cpuid: Expr) -> Stmt:
    """vmx_recalc_msr_intercepts: the bitmap compute_intercepts gives for CPUID and filter."""
    return assign(BITMAP_BITS, table((cpuid, FILTER), masks, BITMAP))


def _delivery(kind: ObsKind, c: int, used: Sequence[Slot], with_shstk: Slot) -> Stmt:
    """An event delivery observing what it consumes; ``with_shstk`` too with shadow stacks."""
    plain = tuple((s, HW[c, s]) for s in used)
    return when(shstk(), Observe(kind=kind, cpu=c, items=(*plain, (with_shstk, HW[c, with_shstk]))),
                orelse=[Observe(kind=kind, cpu=c, items=plain)])


# -- the host configuration (msrvirt.machine.hostconf): what KVM writes to the host fields, what
#    the host's XRSTORS does with PL0_SSP, what a host delivery consumes ---------------------------


def host_fields(d: Design, c: int) -> list[Stmt]:
    """vmx_vcpu_load_vmcs on ``c``: the per-CPU host RSP1-3 and SSP1-3 fields (v9 07/22).

    The host's own values (its stack for the level, its SSP: 0 without supervisor shadow
    stacks), unless the fields come from the #DB/NMI/#DF stacks and SSP1-3 = 0 while the
    host kernel uses another stack at the level or has supervisor shadow stacks.
    """
    rsp = exc_stack(c) if d.host_rsp_right else OTHER_STACK
    ssp = HOST_SSP if d.host_ssp_right else INVALID
    return [assign(VMCS_HOST[Slot.RSP1], symbol(rsp)), assign(VMCS_HOST[Slot.SSP1], symbol(ssp))]


def save_guest_cet(d: Design, c: int) -> Stmt | list[Stmt]:
    """At vCPU put: XSAVES of the guest's CET supervisor state, then the host's XRSTORS."""
    if d.host.cet_state is CetState.RESTORED:
        # Every guest FPU state carries CET_KERNEL (guest_default_mask); the host task's
        # restore (mask XFEATURE_MASK_FPSTATE) puts PL0_SSP back to the host's value.
        return [assign(XSAVE_PL0, HW[c, Slot.PL0_SSP]),
                assign(HW[c, Slot.PL0_SSP], symbol(HOST_PL0_SSP))]
    # Only a shadow-stack guest's PL0_SSP is in its XSAVE state; the host's XRSTORS leaves
    # the MSR alone, so the guest value stays there.
    return when(shstk(), assign(XSAVE_PL0, HW[c, Slot.PL0_SSP]))


def load_guest_cet(d: Design, c: int) -> Stmt:
    """At guest-state load: XRSTORS of the guest's CET supervisor state into PL0_SSP."""
    load = assign(HW[c, Slot.PL0_SSP], XSAVE_PL0)
    return load if d.host.cet_state is CetState.RESTORED else when(shstk(), load)


def host_uses(d: Design, from_user: bool) -> tuple[Slot, ...]:
    """The MSRs a host event delivery consumes (fred-arch-facts.md section 3): from user mode
    RSP0 and CONFIG, at ring 0 STKLVLS, CONFIG and the RSP of its level; with supervisor
    shadow stacks also PL0_SSP, or the SSP of its level."""
    shadow = d.host.shadow_stacks is ShadowStacks.SUPERVISOR
    if from_user:
        return (Slot.RSP0, Slot.CONFIG, *((Slot.PL0_SSP,) if shadow else ()))
    return (Slot.STKLVLS, Slot.CONFIG, Slot.RSP1, *((Slot.SSP1,) if shadow else ()))


# -- the declaration -----------------------------------------------------------------------------


def slot_bits(intercepted: Callable[[int, Access], bool]) -> int:
    """The BITMAP bits of a bitmap, given whether it intercepts (MSR index, R or W)."""
    return sum(slot_bit(s, a) for s in SLOTS for a in (Access.R, Access.W) if intercepted(s.msr, a))


@lru_cache(maxsize=64)
def intercept_masks(d: Design) -> dict[tuple[int, ...], int]:
    """The BITMAP bits compute_intercepts gives for every (GuestCpu, FilterChoice)."""
    hostp = host(HOST_PROFILE)
    out: dict[tuple[int, ...], int] = {}
    for cpu in GuestCpu:
        for flt in FilterChoice:
            found: Intercepts = compute_intercepts(Scenario(
                host=hostp, guest=cpu.features, policy=d.policy, filter=flt.msr_filter))
            out[int(cpu), int(flt)] = slot_bits(found.intercepted)
    return out


@lru_cache(maxsize=64)
def declare(d: Design, b: Bounds) -> Model:
    """Every event of design ``d`` at bounds ``b``, in the order the explorers enumerate them.

    Per CPU: VM exit, the guest kernel's RDMSR/WRMSR/NMI/ERETU, the guest's ring-3 event,
    the host's NMI and user event, context switches, then KVM_RUN's events (VM entry,
    return) and the VMM's (KVM_RUN, KVM_SET_MSRS); then the VM ioctls (filter, CPUID).
    A nested design is declared by machine/nested.py, which builds on this module.
    """
    if d.nested is not None:
        from msrvirt.machine.nested import declare_nested  # it imports this module

        return declare_nested(d, b)
    masks = intercept_masks(d)
    values = [guest_value(k) for k in range(1, b.values + 1)]
    events: list[EventDecl] = []

    def event(guard: Expr, *effect: Stmt | Iterable[Stmt], **what: object) -> None:
        events.append(EventDecl(event=Event(**what), guard=guard,  # type: ignore[arg-type]
                                effect=flatten(effect)))

    for c in range(b.cpus):
        guest, host_side = in_guest(c), ne(MODE_OF[c], Mode.GUEST)
        kernel = all_of(guest, eq(RING_OF, Ring.KERNEL))
        event(guest, hw_exit(d, c), kind=Ev.VM_EXIT, cpu=c)
        for slot in SLOTS:
            read = Observe(kind=ObsKind.GUEST_READ, cpu=c, items=((slot, kvm_get(d, b, slot)),))
            event(kernel, when(
                intercepted(slot, Access.R),
                hw_exit(d, c),  # emulation (or #GP) changes nothing else
                when(filter_allows(slot, Access.R), read,
                     orelse=[Observe(kind=ObsKind.GUEST_READ, cpu=c, faulted=True)]),
                orelse=[Observe(kind=ObsKind.GUEST_READ, cpu=c, items=((slot, HW[c, slot]),),
                                direct=True)]),
                kind=Ev.GUEST_RDMSR, cpu=c, slot=slot)
        for slot in SLOTS:
            for v in values:
                item = ((slot, symbol(v)),)
                event(kernel, when(
                    intercepted(slot, Access.W),
                    hw_exit(d, c),
                    when(filter_allows(slot, Access.W),
                         Observe(kind=ObsKind.GUEST_WRITE, cpu=c, items=item),
                         kvm_set(b, slot, v), assign(BELIEF[slot], symbol(v)),
                         # else: KVM_MSR_RET_FILTERED, #GP injected, nothing stored
                         orelse=[Observe(kind=ObsKind.GUEST_WRITE, cpu=c, faulted=True)]),
                    orelse=[Observe(kind=ObsKind.GUEST_WRITE, cpu=c, items=item, direct=True),
                            assign(HW[c, slot], symbol(v)), assign(BELIEF[slot], symbol(v))]),
                    kind=Ev.GUEST_WRMSR, cpu=c, slot=slot, value=v)
        event(kernel, _delivery(ObsKind.GUEST_DELIVERY, c, (Slot.STKLVLS, Slot.CONFIG, Slot.RSP1),
                                Slot.SSP1), kind=Ev.GUEST_EVENT_RING0, cpu=c)
        event(kernel, assign(RING_OF, Ring.USER), kind=Ev.GUEST_ERETU, cpu=c)
        event(all_of(guest, eq(RING_OF, Ring.USER)),
              _delivery(ObsKind.GUEST_DELIVERY, c, (Slot.RSP0, Slot.CONFIG), Slot.PL0_SSP),
              assign(RING_OF, Ring.KERNEL), kind=Ev.GUEST_EVENT_RING3, cpu=c)
        event(host_side, Observe(kind=ObsKind.HOST_DELIVERY, cpu=c, items=tuple(
            (s, HW[c, s]) for s in host_uses(d, from_user=False))),
            kind=Ev.HOST_EXCEPTION, cpu=c)
        event(eq(MODE_OF[c], Mode.HOST_USER), Observe(kind=ObsKind.HOST_DELIVERY, cpu=c, items=tuple(
            (s, HW[c, s]) for s in host_uses(d, from_user=True))),
            exit_to_user(c), kind=Ev.HOST_USER_EVENT, cpu=c)
        for t in range(b.tasks):
            event(*context_switch(d, b, c, t), kind=Ev.CONTEXT_SWITCH, cpu=c, task=t)
        vcpu_thread = eq(TASK_OF[c], VCPU_TASK)
        in_kvm = all_of(vcpu_thread, eq(MODE_OF[c], Mode.KVM))
        event(in_kvm, when(eq(REQ, 1), recompute(masks, CPUID), assign(REQ, 0)),
              load_guest_state(d, c),
              [] if Fault.ENTRY_SKIPS_GUEST_FRED in d.faults else
              [assign(HW[c, s], VMCS_GUEST[s]) for s in VMCS_SLOTS],
              assign(MODE_OF[c], Mode.GUEST), kind=Ev.VM_ENTRY, cpu=c)
        event(in_kvm, kvm_run_return(d, c), kind=Ev.KVM_RUN_RETURN, cpu=c)
        in_vmm = all_of(vcpu_thread, eq(MODE_OF[c], Mode.HOST_USER))
        event(in_vmm, assign(LOCKED, 1), vcpu_load(d, c), assign(MODE_OF[c], Mode.KVM),
              kind=Ev.KVM_RUN, cpu=c)
        for slot in SLOTS:
            for v in values:
                event(in_vmm, assign(LOCKED, 1), vcpu_load(d, c),
                      kvm_set(b, slot, v),  # host-initiated: the filter does not apply
                      assign(BELIEF[slot], symbol(v)), vcpu_put(d, c), exit_to_user(c),
                      kind=Ev.KVM_SET_MSRS, cpu=c, slot=slot, value=v)
    # KVM kicks a vCPU out of guest mode when the filter changes, so the VMM's change is
    # modelled while the vCPU is outside guest mode (docs/check.md).
    outside = not_(any_in_guest(b))
    for f in FilterChoice:
        event(all_of(outside, ne(FILTER, f)), assign(FILTER, f),
              [] if Fault.FILTER_NO_RECALC in d.faults else [assign(REQ, 1)],
              kind=Ev.SET_FILTER, choice=int(f))
    for g in GuestCpu:
        event(all_of(outside, eq(LOCKED, 0), ne(CPUID, g)), assign(CPUID, g),
              [] if Fault.CPUID_NO_RECALC in d.faults else [recompute(masks, Const(int(g)))],
              kind=Ev.SET_CPUID, choice=int(g))
    variables = layout(FIELDS, b.cpus)
    initial = tuple(masks[GuestCpu.FRED_SHSTK, FilterChoice.NONE] if v == BITMAP_BITS
                    else v.field.initial_value(v.cpu, v.key) for v in variables)
    return Model(variables=variables, initial=initial, events=tuple(events), bounds=b)



# -- the compiled machine ------------------------------------------------------------------------


class Machine:
    """A design at some bounds: the declaration (`model`), compiled (`program`), and its queries.

    States are packed ints (`msrvirt.machine.codegen.Layout`); everything is pure, the object
    only holds the compiled tables.
    """

    def __init__(self, design: Design, bounds: Bounds = DEFAULT_BOUNDS) -> None:
        self.design = design
        self.model = declare(design, bounds)
        self.bounds: Bounds = self.model.bounds  # a nested design's own (`nested_bounds`)
        self.program: Program = compile_program(self.model)
        self.layout = self.program.layout
        self._index = {decl.event: i for i, decl in enumerate(self.model.events)}
        self._enabled: dict[int, tuple[Event, ...]] = {}
        self._exprs: dict[Expr, Callable[[int], int]] = {}

    @property
    def fields(self) -> tuple[Var, ...]:
        """Every state variable, in layout order (a Var's ``name`` and ``domain`` print it)."""
        return self.model.variables

    def initial(self) -> State:
        """The vCPU created with CPUID FRED+SHSTK, no filter, task i running on CPU i."""
        return self.program.initial

    def events(self, s: State) -> tuple[Event, ...]:
        """The events enabled in ``s``, in a fixed order (per CPU, then the VMM's VM ioctls)."""
        key = s & self.program.guard_mask
        found = self._enabled.get(key)
        if found is None:
            evs = self.model.events
            found = self._enabled[key] = tuple(evs[i].event for i in self.program.enabled(s))
        return found

    def index(self, ev: Event) -> int:
        """The position of ``ev`` among the model's event instances."""
        return self._index[ev]

    def step(self, s: State, ev: Event) -> State:
        """The state after ``ev`` (which must be enabled in ``s``)."""
        return self.program.effects[self._index[ev]](s)[0]

    def run(self, s: State, ev: Event) -> tuple[State, tuple[Observation, ...]]:
        """The state after ``ev`` and what it observed, in order."""
        after, observed, _ = self.program.effects[self._index[ev]](s)
        obs = self.program.observes
        return after, tuple(
            Observation(cast(ObsKind, obs[i].kind), obs[i].cpu,
                        tuple((slot, v) for (slot, _), v in zip(obs[i].items, values, strict=True)),
                        obs[i].direct, obs[i].faulted)
            for i, values in observed)

    def observe(self, s: State, ev: Event) -> Observation | None:
        """What ``ev`` consumes or returns in ``s`` (fred-arch-facts.md section 3), if anything.

        Host deliveries: from ring 3, RSP0 and CONFIG (entry point); at ring 0 (NMI/#DB at
        level 1), STKLVLS, CONFIG and RSP1; no SSP unless the host configuration has
        supervisor shadow stacks (Linux has none), then PL0_SSP / SSP1 too (`host_uses`).
        Guest deliveries consume the same, plus PL0_SSP / SSP1 when the guest has shadow
        stacks (assumed enabled for its kernel).
        """
        found = self.run(s, ev)[1]
        return found[0] if found else None

    def get(self, s: State, var: Var) -> int:
        """The value of ``var`` in ``s``."""
        return self.layout.get(s, var)

    def unpack(self, s: State) -> tuple[int, ...]:
        """Every variable's value in ``s``, in `fields` order."""
        return self.layout.unpack(s)

    def evaluate(self, expr: Expr, s: State) -> int:
        """The value of ``expr`` in ``s``."""
        fn = self._exprs.get(expr)
        if fn is None:
            fn = self._exprs[expr] = self.program.evaluate(expr)
        return fn(s)

    def execute(self, s: State, *stmts: Stmt) -> State:
        """The state after running declared statements (a helper such as `vcpu_put`) on ``s``."""
        return self.program.execute(stmts)(s)

    def kvm_get(self, s: State, slot: Slot) -> int:
        """__kvm_get_msr for a FRED MSR or PL0_SSP: what KVM_GET_MSRS returns in ``s``."""
        return self.evaluate(kvm_get(self.design, self.bounds, slot), s)

    def mask_for(self, cpu: GuestCpu, flt: FilterChoice) -> int:
        """The intercept bits compute_intercepts gives for this guest CPUID and filter."""
        return intercept_masks(self.design)[int(cpu), int(flt)]


@lru_cache(maxsize=64)
def machine(design: Design, bounds: Bounds = DEFAULT_BOUNDS) -> Machine:
    """The compiled machine of ``design`` at ``bounds``: pure, so one of each is enough."""
    return Machine(design, bounds)

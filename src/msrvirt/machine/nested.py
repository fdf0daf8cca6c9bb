"""Nested VMX in the stateful model: L0 (KVM on the host) runs L1 (a KVM), which runs L2.

A nested design (`Design.nested`) is declared here, in the language of
`msrvirt.machine.spec`, on top of the single-level declaration of `msrvirt.machine.model`:
it reuses that module's fields for what L0 keeps for the vCPU whatever level it runs (the
CPU's FRED MSRs, the rsp0 cache, the lazy RSP0 copy and the CET state of the vCPU,
vmcs01 with its bitmap, the vCPU thread) and its statements for L0's own code
(`vcpu_load`, `load_guest_state`, `exit_to_user`, `kvm_set`, and the host's context switch
and KVM_RUN's return: `context_switch`, `kvm_run_return`), and adds L1,
L2, vmcs02 and vmcs12.  docs/nested.md and docs/check.md give the model and why each
abstraction is sound.  The rules come from Linux v6.19 (matankalina/linux-6.19.10-fork
@094d869456d2), arch/x86/kvm/vmx/nested.c, with the FRED series' v9 patch 19 ("KVM:
nVMX: Handle FRED VMCS fields in nested VMX context", 2025-10-26) for vmcs12's FRED
fields:

- nested VM entry (L1's VMLAUNCH/VMRESUME, nested_vmx_enter_non_root_mode): when
  vmcs12 is dirty, prepare_vmcs02_rare copies vmcs12's guest FRED fields into vmcs02
  (L1 sets "load guest FRED state"); nested_vmx_prepare_msr_bitmap merges vmcs02's bitmap
  from vmcs01's and L1's (policy/nested.py, `merge_bitmaps`);
- an L2 RDMSR/WRMSR that vmcs02 intercepts exits to L0, which reflects it to L1 when
  L1's bitmap intercepts it (nested_vmx_exit_handled_msr) and otherwise handles it on
  vmcs02 (its filter, then its emulation: the guest fields of the current VMCS, the
  vCPU's RSP0 and CET state);
- nested VM exit (nested_vmx_vmexit): sync_vmcs02_to_vmcs12 saves vmcs02's guest FRED
  fields into vmcs12 (L1 sets "save guest FRED state"); load_vmcs12_host_state writes
  vmcs12's host FRED fields into vmcs01's guest fields (L1 sets "load host FRED state");
- FRED_RSP0 and PL0_SSP have no VMCS field: nested entry and exit leave them in the MSRs.
  L1 switches L2's RSP0 and PL0_SSP itself, lazily, as L0 does its guest's (L1 is a KVM
  with v9's design: its vmx_prepare_switch_to_guest writes L2's RSP0 and XRSTORS L2's CET
  state, its vcpu_put reads them back and syncs its rsp0 cache, its exit to user mode
  rewrites RSP0), with direct accesses, since vmcs01 passes RSP0 and PL0_SSP through to a
  FRED+SHSTK L1 (checked while declaring);
- a filter change makes KVM recompute vmcs01 (vmx_recalc_msr_intercepts); vmcs02 follows
  at L1's next nested entry only (`FilterTiming`).

What is modelled, in short: one physical CPU and two host tasks (the vCPU thread and one
other), L1 with one vCPU (L0's) and one task (its VMM thread), L1 and L0 KVM with
policy fred-v9, L1's and L2's CPUID FRED+SHSTK, and three MSRs: FRED_RSP0, FRED_RSP1
(standing for the eight VMCS-switched FRED MSRs, which every merge list, filter and
nested.c function treats alike) and PL0_SSP.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum
from functools import cache

from msrvirt.arch import msrs
from msrvirt.arch.hosts import host
from msrvirt.arch.kvm import Access
from msrvirt.arch.vmcs12 import FRED_CONTROLS, Control
from msrvirt.machine.designs import Design, Fault, FilterTiming
from msrvirt.machine.model import (
    BITMAP,
    BITMAP_BITS,
    CACHE,
    CPUID,
    FALLBACK,
    FILTER_CHOICE,
    HOST_PROFILE,
    HW,
    L1_EXC,
    L1_PL0,
    L1_TOP,
    LOADED,
    MODE_OF,
    PARKED_AT,
    REQ,
    RING,
    SOFT_RSP0,
    TASK_OF,
    VALUE,
    VCPU_TASK,
    VMCS_CPU,
    VMCS_GUEST,
    VMCS_HOST,
    XSAVE_PL0,
    Bounds,
    Ev,
    Event,
    FilterChoice,
    GuestCpu,
    Mode,
    ObsKind,
    Ring,
    Slot,
    context_switch,
    deny_filter,
    exc_stack,
    exit_to_user,
    guest_value,
    kvm_get,
    kvm_run_return,
    load_guest_state,
    scalar,
    slot_bit,
    slot_bits,
    symbol,
    vcpu_load,
)
from msrvirt.machine.model import kvm_set as l0_set
from msrvirt.machine.spec import (
    FLAG,
    EventDecl,
    Expr,
    Field,
    HasBits,
    Model,
    Observe,
    Stmt,
    Var,
    all_of,
    assign,
    cond,
    enum_domain,
    eq,
    flatten,
    ne,
    table,
    when,
)
from msrvirt.policy.bitmap import VmxMsrBitmap
from msrvirt.policy.filter import NO_FILTER, MsrFilter
from msrvirt.policy.intercepts import compute_intercepts
from msrvirt.policy.nested import kvm_l1, merge_bitmaps
from msrvirt.policy.policies import Policy
from msrvirt.policy.scenario import Scenario

# The modelled MSRs: FRED_RSP1 stands for RSP1-3, STKLVLS, SSP1-3 and CONFIG (docs/check.md).
NESTED_SLOTS = (Slot.RSP0, Slot.RSP1, Slot.PL0_SSP)
R, W = Access.R, Access.W
_SHSTK = GuestCpu.FRED_SHSTK  # L1's CPUID (for L0) and L2's (for L1)


def nested_bounds(b: Bounds) -> Bounds:
    """The bounds a nested design runs at: one CPU, two host tasks, ``b``'s guest values."""
    return Bounds(cpus=1, tasks=2, values=b.values)


class Level(IntEnum):
    """Where the vCPU runs when it is in guest mode (or resumes, when L0 runs)."""

    L1_USER = 0  # L1's VMM, in L1's user mode
    L1_KVM = 1  # L1's kernel: its vCPU thread for L2 inside L1's KVM_RUN
    L2 = 2  # L2, on vmcs02 (is_guest_mode in L0)


class L0Filter(IntEnum):
    """L0's userspace filters in the nested designs."""

    NONE = 0
    DENY = 1  # R/W of the eight VMCS-switched FRED MSRs (not RSP0, which L1's own code writes)

    @property
    def msr_filter(self) -> MsrFilter:
        return _L0_FILTERS[self]


_EIGHT = msrs.FRED_MSRS[1:]  # FRED_RSP1 .. FRED_CONFIG, consecutive indices
_L0_FILTERS = {
    L0Filter.NONE: NO_FILTER,
    L0Filter.DENY: deny_filter(_EIGHT[0].index, len(_EIGHT)),
}


class NestedEv(IntEnum):
    """The nested designs' own kinds of event (numbered apart from `Ev`: events compare)."""

    L2_RDMSR = 100
    L2_WRMSR = 101
    L2_EVENT_RING0 = 102  # NMI/#DB in L2's kernel
    L2_ERETU = 103
    L2_EVENT_RING3 = 104  # interrupt/syscall in L2's user mode
    NESTED_EXIT = 105  # an L2 exit L1 wants (an interrupt for L1, HLT...): nested VM exit
    L1_EVENT_RING0 = 106  # NMI/#DB in L1 (its kernel, or its user code)
    L1_EVENT_RING3 = 107  # interrupt/syscall in L1's user mode, then L1's exit to user
    L1_KVM_RUN = 108  # L1's VMM enters L1's KVM_RUN (L1's vcpu_load)
    L1_KVM_RUN_RETURN = 109  # L1's KVM_RUN returns: L1's vcpu_put, L1's exit to user mode
    L1_SET_FILTER = 110  # L1's VMM changes L1's filter for L2: L1's bitmap follows
    L1_VMWRITE = 111  # L1 writes a vmcs12 field that is not shadowed: vmcs12 becomes dirty
    L1_VMRESUME = 112  # L1's VMLAUNCH/VMRESUME: exit to L0, which enters L2 (nested VM entry)
    L0_SET_FILTER = 113  # KVM_X86_SET_MSR_FILTER from L0's VMM


class NestedObs(IntEnum):
    """What a nested design's events expose to the invariants (numbered apart from ObsKind)."""

    L1_DELIVERY = 100
    L2_DELIVERY = 101
    L2_READ = 102  # an L2 RDMSR L0 or the CPU answered (``direct``: the CPU)
    L2_WRITE = 103
    L2_REFLECTED_READ = 104  # reflected to L1 (a nested VM exit)
    L2_REFLECTED_WRITE = 105


L2_ACCESS = frozenset({NestedObs.L2_READ, NestedObs.L2_WRITE})
_LEVEL_TEXT = {Level.L1_USER: "L1 user", Level.L1_KVM: "L1 KVM", Level.L2: "L2"}
_L0_FILTER_TEXT = {L0Filter.NONE: "none", L0Filter.DENY: "deny FRED_RSP1-3, STKLVLS, SSP1-3, CONFIG"}
LEVEL = enum_domain(Level, lambda v: _LEVEL_TEXT[Level(v)])
L0_FILTER_CHOICE = enum_domain(L0Filter, lambda v: _L0_FILTER_TEXT[L0Filter(v)])


_G0 = guest_value(0)
L0_FILTER = scalar("L0 msr filter", L0_FILTER_CHOICE, L0Filter.NONE, "L0's userspace filter")
L1_FILTER = scalar("L1 msr filter", FILTER_CHOICE,  # the single-level model's filters
                   FilterChoice.NONE,
                   "L1's userspace filter for L2 (L1's bitmap for L2 follows it)")
LEVEL_OF = scalar("nested level", LEVEL, Level.L1_KVM, "where the vCPU runs in guest mode")
L2_RING = scalar("L2 ring", RING, Ring.KERNEL, "L2's privilege level")
VMCS02_BITS = scalar("vmcs02 msr bitmap", BITMAP, 0, "vmcs02's intercept bits of the slots")
VMCS02_GUEST = scalar("vmcs02 guest IA32_FRED_RSP1", VALUE, _G0, "vmcs02's guest FRED field")
VMCS12_GUEST = scalar("vmcs12 guest IA32_FRED_RSP1", VALUE, _G0,
                      "vmcs12's guest FRED field (what L1's VMREAD returns)")
VMCS12_DIRTY = scalar("vmcs12 dirty", FLAG, 1,
                      "nested.dirty_vmcs12: the next nested entry runs prepare_vmcs02_rare")
L1_SOFT_RSP0 = scalar("L1 msr_guest_fred_rsp0", VALUE, _G0, "L1's KVM's copy of L2's RSP0")
L1_XSAVE_PL0 = scalar("L1 guest xsave PL0_SSP", VALUE, _G0,
                      "L2's PL0_SSP in L1's XSAVE area for L2")
L1_LOADED = scalar("L1 guest state loaded", FLAG, 0,
                   "L1's guest_state_loaded: L2's RSP0 and CET state are in the MSRs")
L1_CACHE = scalar("L1 fred_rsp0 cache", VALUE, L1_TOP, "L1's per-CPU fred_rsp0 cache")
L2_BELIEF = Field(name="L2's {key}", domain=VALUE, keys=NESTED_SLOTS, initial=_G0,
                  doc="the value L2 believes each MSR holds (its last write)")

# vmcs12's host FRED fields: L1's own values (L1's KVM writes them at its vmcs load; L1 has
# one vCPU, so they never change).
VMCS12_HOST_RSP1 = L1_EXC
_NESTED_FIELDS: tuple[Var, ...] = (
    L0_FILTER, L1_FILTER, LEVEL_OF, L2_RING, VMCS02_BITS, VMCS02_GUEST, VMCS12_GUEST,
    VMCS12_DIRTY, L1_SOFT_RSP0, L1_XSAVE_PL0, L1_LOADED, L1_CACHE,
    *(L2_BELIEF[s] for s in NESTED_SLOTS))
# What L0 keeps whatever level the vCPU runs: the single-level model's fields, CPU 0 only.
# vmcs01's host SSP1 is written by vcpu_load (model.host_fields) but never read here: on
# the default host it stays the host's value, so it adds no state.
_L0_FIELDS: tuple[Var, ...] = (
    CPUID, BITMAP_BITS, REQ, VMCS_CPU, LOADED, PARKED_AT, SOFT_RSP0, FALLBACK, XSAVE_PL0,
    VMCS_GUEST[Slot.RSP1], VMCS_HOST[Slot.RSP1], VMCS_HOST[Slot.SSP1])
_CPU0_FIELDS: tuple[Var, ...] = (MODE_OF[0], TASK_OF[0], CACHE[0],
                                 *(HW[0, s] for s in NESTED_SLOTS))


# -- the bitmaps ---------------------------------------------------------------------------------


def l0_scenario(l0_policy: Policy, f: L0Filter = L0Filter.NONE) -> Scenario:
    """L0 of the nested model: the intel-fred host, L1 FRED+SHSTK, ``l0_policy``, filter ``f``."""
    h = host(HOST_PROFILE)
    return Scenario(host=h, guest=_SHSTK.features, policy=l0_policy, filter=f.msr_filter)


def _vmcs01_page(d: Design, f: L0Filter) -> VmxMsrBitmap:
    page = compute_intercepts(l0_scenario(d.policy, f)).bitmap
    assert isinstance(page, VmxMsrBitmap)  # a VMX host
    return page


def _l1_page(d: Design, f: FilterChoice) -> VmxMsrBitmap:
    """L1's page for L2: KVM with the design's policy, L2 FRED+SHSTK, L1's filter ``f``."""
    l1 = kvm_l1(l0_scenario(d.policy), d.policy, _SHSTK.features, f.msr_filter)
    if l1.controls & FRED_CONTROLS != FRED_CONTROLS:
        raise ValueError("the nested model needs vmcs12's three FRED controls set")
    return l1.bitmap


@cache
def vmcs01_masks(d: Design) -> dict[tuple[int, ...], int]:
    """vmcs01's bits (L0's bitmap for L1) for each L0 filter."""
    return {(int(f),): slot_bits(_vmcs01_page(d, f).intercepted) for f in L0Filter}


@cache
def l1_masks(d: Design) -> dict[tuple[int, ...], int]:
    """L1's bits for L2 for each L1 filter."""
    return {(int(f),): slot_bits(_l1_page(d, f).intercepted) for f in FilterChoice}


@cache
def vmcs02_masks(d: Design) -> dict[tuple[int, ...], int]:
    """vmcs02's bits for each (vmcs01's bits, L1's filter), merged as the design merges."""
    assert d.nested is not None
    none = VmxMsrBitmap(intercept_bits=bytes(VmxMsrBitmap.SIZE))
    out: dict[tuple[int, ...], int] = {}
    for f0 in L0Filter:
        vmcs01 = _vmcs01_page(d, f0)
        for f1 in FilterChoice:
            l1 = _l1_page(d, f1)
            # A merge that ignores one side merges with a page that intercepts nothing there.
            page = merge_bitmaps(none if Fault.MERGE_IGNORES_VMCS01 in d.faults else vmcs01,
                                 none if Fault.MERGE_IGNORES_L1 in d.faults else l1,
                                 Control.USE_MSR_BITMAPS | FRED_CONTROLS, d.nested.merge)
            out[slot_bits(vmcs01.intercepted), int(f1)] = slot_bits(page.intercepted)
    return out


def _check_assumptions(d: Design) -> None:
    """What the declaration relies on, against the policies; ValueError where they differ."""
    for bits in vmcs01_masks(d).values():
        for slot in (Slot.RSP0, Slot.PL0_SSP):
            # L1's own RDMSR/WRMSR of RSP0 and XSAVES/XRSTORS of PL0_SSP run on the CPU.
            if bits & (slot_bit(slot, R) | slot_bit(slot, W)):
                raise ValueError(f"the nested model needs vmcs01 ({d.policy.name}) to pass"
                                 f" {slot.label} through to L1")
    for (f1,), bits in l1_masks(d).items():
        for slot in NESTED_SLOTS:
            for access in (R, W):
                # L1 intercepts only what its filter denies, so a reflected access is L1's #GP.
                denied = not FilterChoice(f1).msr_filter.allows(slot.msr, access)
                if bool(bits & slot_bit(slot, access)) != denied:
                    raise ValueError(f"the nested model needs L1 ({d.policy.name}) to intercept"
                                     f" {slot.label} exactly when its filter denies it")


def vmcs02_intercepts(slot: Slot, access: Access) -> Expr:
    """vmcs02 intercepts L2's ``access`` to ``slot``."""
    return HasBits(VMCS02_BITS, slot_bit(slot, access))


def l1_intercepts(d: Design, slot: Slot, access: Access) -> Expr:
    """L1's bitmap for L2 intercepts ``access`` to ``slot`` (nested_vmx_exit_handled_msr)."""
    return HasBits(table([L1_FILTER], l1_masks(d), BITMAP), slot_bit(slot, access))


def l0_filter_allows(slot: Slot, access: Access) -> Expr:
    """L0's installed userspace filter lets a guest ``access`` to ``slot`` through."""
    return all_of(*(ne(L0_FILTER, f) for f in L0Filter
                    if not f.msr_filter.allows(slot.msr, access)))


# -- what each level holds and reads -------------------------------------------------------------


def l1_needs(slot: Slot) -> Expr:
    """The value L1's own event deliveries need: its VMM thread's stack top, its #DB stack."""
    return symbol(L1_TOP if slot is Slot.RSP0 else VMCS12_HOST_RSP1)


def l0_view(d: Design, b: Bounds, slot: Slot) -> Expr:
    """What L0's KVM reads for the vCPU at its current level (on vmcs02 while in L2)."""
    if slot is Slot.RSP1:
        return cond(eq(LEVEL_OF, Level.L2), VMCS02_GUEST, VMCS_GUEST[Slot.RSP1])
    return kvm_get(d, b, slot)


def l1_view(d: Design, b: Bounds, slot: Slot) -> Expr:
    """What L1's KVM reads for L2's ``slot`` while L2 is out (its KVM_GET_MSRS of L2).

    FRED_RSP1: vmcs12's guest field (a VMREAD).  RSP0 and PL0_SSP: with L2's state loaded in
    L1, the MSR, which is the vCPU's RSP0 or CET state in L0; otherwise L1's own copy.
    """
    if slot is Slot.RSP1:
        return VMCS12_GUEST
    own = L1_SOFT_RSP0 if slot is Slot.RSP0 else L1_XSAVE_PL0
    return cond(eq(L1_LOADED, 1), kvm_get(d, b, slot), own)


# -- statements ----------------------------------------------------------------------------------


def _exit_to_l0() -> list[Stmt]:
    """A VM exit from the running level: the CPU saves FRED_RSP1 into the current VMCS's guest
    field (vmcs02 in L2, vmcs01 in L1) and loads the host's, atomically."""
    return [when(eq(LEVEL_OF, Level.L2), assign(VMCS02_GUEST, HW[0, Slot.RSP1]),
                 orelse=[assign(VMCS_GUEST[Slot.RSP1], HW[0, Slot.RSP1])]),
            assign(HW[0, Slot.RSP1], VMCS_HOST[Slot.RSP1]), assign(MODE_OF[0], Mode.KVM)]


def _nested_exit(d: Design) -> list[Stmt]:
    """nested_vmx_vmexit after a VM exit from L2 (L0 runs): vmcs12 from vmcs02, vmcs01 from
    vmcs12's host fields; RSP0 and PL0_SSP stay in the MSRs."""
    out: list[Stmt] = []
    if Fault.NESTED_EXIT_NO_GUEST_SAVE not in d.faults:
        out.append(assign(VMCS12_GUEST, VMCS02_GUEST))  # sync_vmcs02_to_vmcs12
    # load_vmcs12_host_state; the planted fault takes the branch of an L1 without "load host
    # FRED state": vmcs01 keeps the values L2 exited with (fred_msr_at_vmexit).
    out.append(assign(VMCS_GUEST[Slot.RSP1], VMCS02_GUEST
                      if Fault.NESTED_EXIT_NO_HOST_LOAD in d.faults else symbol(VMCS12_HOST_RSP1)))
    out.append(assign(LEVEL_OF, Level.L1_KVM))
    return out


def _merge(d: Design) -> Stmt:
    """nested_vmx_prepare_msr_bitmap: vmcs02's bits from vmcs01's and L1's."""
    return assign(VMCS02_BITS, table([BITMAP_BITS, L1_FILTER], vmcs02_masks(d), BITMAP))


def _l1_exit_to_user() -> Stmt:
    """L1's arch_exit_to_user_mode_prepare (one task): rewrite RSP0 if L1's cache differs."""
    top = symbol(L1_TOP)
    return when(ne(L1_CACHE, top), assign(HW[0, Slot.RSP0], top), assign(L1_CACHE, top))


def _l1_put() -> Stmt:
    """L1's vmx_prepare_switch_to_host for L2: read L2's RSP0 back, sync L1's cache, XSAVES."""
    return when(eq(L1_LOADED, 1), assign(L1_SOFT_RSP0, HW[0, Slot.RSP0]),
                assign(L1_CACHE, L1_SOFT_RSP0), assign(L1_XSAVE_PL0, HW[0, Slot.PL0_SSP]),
                assign(L1_LOADED, 0))


def _l1_load() -> Stmt:
    """L1's vmx_prepare_switch_to_guest, once per load: L2's RSP0 and CET state to the MSRs."""
    return when(eq(L1_LOADED, 0), assign(HW[0, Slot.RSP0], L1_SOFT_RSP0),
                assign(HW[0, Slot.PL0_SSP], L1_XSAVE_PL0), assign(L1_LOADED, 1))


def _l0_set(b: Bounds, slot: Slot, value: int) -> Stmt | list[Stmt]:
    """L0's emulation of L2's WRMSR: on vmcs02's guest field, or the vCPU's RSP0 / CET state."""
    if slot is Slot.RSP1:
        return assign(VMCS02_GUEST, symbol(value))
    return l0_set(b, slot, value)


# -- the declaration -----------------------------------------------------------------------------


def declare_nested(d: Design, b: Bounds) -> Model:
    """Every event of nested design ``d`` (at ``nested_bounds``), in the explorers' order.

    L0's VM exit, L2's events (RDMSR, WRMSR, NMI, ERETU, ring-3 event, the nested exit),
    L1's (NMI, ring-3 event, KVM_RUN and its return, its filter, VMWRITE, VMRESUME), the
    host's (NMI, user event, context switches), KVM_RUN's (VM entry, return, KVM_RUN), and
    L0's VMM's filter.
    """
    assert d.nested is not None
    b = nested_bounds(b)
    _check_assumptions(d)
    values = [guest_value(k) for k in range(1, b.values + 1)]
    events: list[EventDecl] = []

    def event(guard: Expr, *effect: Stmt | Iterable[Stmt], **what: object) -> None:
        events.append(EventDecl(event=Event(cpu=0, **what),  # type: ignore[arg-type]
                                guard=guard, effect=flatten(effect)))

    guest = eq(MODE_OF[0], Mode.GUEST)
    in_l2 = all_of(guest, eq(LEVEL_OF, Level.L2))
    l2_kernel = all_of(in_l2, eq(L2_RING, Ring.KERNEL))
    in_l1 = all_of(guest, ne(LEVEL_OF, Level.L2))
    event(guest, _exit_to_l0(), kind=Ev.VM_EXIT)
    for slot in NESTED_SLOTS:
        event(l2_kernel, when(
            vmcs02_intercepts(slot, R), _exit_to_l0(),
            when(l1_intercepts(d, slot, R),
                 Observe(kind=NestedObs.L2_REFLECTED_READ, cpu=0, faulted=True), _nested_exit(d),
                 orelse=[when(l0_filter_allows(slot, R),
                              Observe(kind=NestedObs.L2_READ, cpu=0,
                                      items=((slot, l0_view(d, b, slot)),)),
                              orelse=[Observe(kind=NestedObs.L2_READ, cpu=0, faulted=True)])]),
            orelse=[Observe(kind=NestedObs.L2_READ, cpu=0, items=((slot, HW[0, slot]),),
                            direct=True)]),
            kind=NestedEv.L2_RDMSR, slot=slot)
    for slot in NESTED_SLOTS:
        for v in values:
            item = ((slot, symbol(v)),)
            event(l2_kernel, when(
                vmcs02_intercepts(slot, W), _exit_to_l0(),
                when(l1_intercepts(d, slot, W),
                     Observe(kind=NestedObs.L2_REFLECTED_WRITE, cpu=0, faulted=True),
                     _nested_exit(d),
                     orelse=[when(l0_filter_allows(slot, W),
                                  Observe(kind=NestedObs.L2_WRITE, cpu=0, items=item),
                                  _l0_set(b, slot, v), assign(L2_BELIEF[slot], symbol(v)),
                                  orelse=[Observe(kind=NestedObs.L2_WRITE, cpu=0, faulted=True)])]),
                orelse=[Observe(kind=NestedObs.L2_WRITE, cpu=0, items=item, direct=True),
                        assign(HW[0, slot], symbol(v)), assign(L2_BELIEF[slot], symbol(v))]),
                kind=NestedEv.L2_WRMSR, slot=slot, value=v)
    event(l2_kernel, Observe(kind=NestedObs.L2_DELIVERY, cpu=0,
                             items=((Slot.RSP1, HW[0, Slot.RSP1]),)), kind=NestedEv.L2_EVENT_RING0)
    event(l2_kernel, assign(L2_RING, Ring.USER), kind=NestedEv.L2_ERETU)
    # L2 has shadow stacks, assumed enabled for its kernel: the stricter case (docs/check.md).
    event(all_of(in_l2, eq(L2_RING, Ring.USER)), Observe(
        kind=NestedObs.L2_DELIVERY, cpu=0,
        items=((Slot.RSP0, HW[0, Slot.RSP0]), (Slot.PL0_SSP, HW[0, Slot.PL0_SSP]))),
        assign(L2_RING, Ring.KERNEL), kind=NestedEv.L2_EVENT_RING3)
    event(in_l2, _exit_to_l0(), _nested_exit(d), kind=NestedEv.NESTED_EXIT)
    l1_user, l1_kvm = (all_of(in_l1, eq(LEVEL_OF, lv)) for lv in (Level.L1_USER, Level.L1_KVM))
    event(in_l1, Observe(kind=NestedObs.L1_DELIVERY, cpu=0,
                         items=((Slot.RSP1, HW[0, Slot.RSP1]),)), kind=NestedEv.L1_EVENT_RING0)
    event(l1_user, Observe(kind=NestedObs.L1_DELIVERY, cpu=0,
                           items=((Slot.RSP0, HW[0, Slot.RSP0]),)),
          _l1_exit_to_user(), kind=NestedEv.L1_EVENT_RING3)
    event(l1_user, assign(LEVEL_OF, Level.L1_KVM), kind=NestedEv.L1_KVM_RUN)
    event(l1_kvm, _l1_put(), _l1_exit_to_user(), assign(LEVEL_OF, Level.L1_USER),
          kind=NestedEv.L1_KVM_RUN_RETURN)
    for f1 in FilterChoice:
        event(all_of(l1_user, ne(L1_FILTER, f1)), assign(L1_FILTER, f1),
              kind=NestedEv.L1_SET_FILTER, choice=int(f1))
    event(l1_kvm, assign(VMCS12_DIRTY, 1), kind=NestedEv.L1_VMWRITE)
    event(l1_kvm, _l1_load(), _exit_to_l0(),
          # nested_vmx_enter_non_root_mode: prepare_vmcs02 (its rare part when vmcs12 is
          # dirty), then nested_get_vmcs12_pages merges the bitmaps.
          when(eq(VMCS12_DIRTY, 1), assign(VMCS02_GUEST, VMCS12_GUEST), assign(VMCS12_DIRTY, 0)),
          _merge(d), assign(LEVEL_OF, Level.L2),
          kind=NestedEv.L1_VMRESUME)
    host_side = ne(MODE_OF[0], Mode.GUEST)
    event(host_side, Observe(kind=ObsKind.HOST_DELIVERY, cpu=0,
                             items=((Slot.RSP1, HW[0, Slot.RSP1]),)), kind=Ev.HOST_EXCEPTION)
    event(eq(MODE_OF[0], Mode.HOST_USER), Observe(kind=ObsKind.HOST_DELIVERY, cpu=0,
                                                  items=((Slot.RSP0, HW[0, Slot.RSP0]),)),
          exit_to_user(0), kind=Ev.HOST_USER_EVENT)
    for t in range(b.tasks):
        event(*context_switch(d, b, 0, t), kind=Ev.CONTEXT_SWITCH, task=t)
    vcpu_thread = eq(TASK_OF[0], VCPU_TASK)
    in_kvm = all_of(vcpu_thread, eq(MODE_OF[0], Mode.KVM))
    recompute: list[Stmt] = [assign(BITMAP_BITS, table([L0_FILTER], vmcs01_masks(d), BITMAP))]
    if d.nested.filter_timing is FilterTiming.WHILE_L2_REBUILT:
        recompute.append(when(eq(LEVEL_OF, Level.L2), _merge(d)))
    event(in_kvm, when(eq(REQ, 1), recompute, assign(REQ, 0)), load_guest_state(d, 0),
          assign(HW[0, Slot.RSP1], cond(eq(LEVEL_OF, Level.L2), VMCS02_GUEST,
                                        VMCS_GUEST[Slot.RSP1])),
          assign(MODE_OF[0], Mode.GUEST), kind=Ev.VM_ENTRY)
    event(in_kvm, kvm_run_return(d, 0), kind=Ev.KVM_RUN_RETURN)
    event(all_of(vcpu_thread, eq(MODE_OF[0], Mode.HOST_USER)), vcpu_load(d, 0),
          assign(MODE_OF[0], Mode.KVM), kind=Ev.KVM_RUN)
    # KVM kicks the vCPU out of guest mode with the request; WHILE_L1 designs change the
    # filter only while the vCPU is out of L2 too.
    outside = host_side if d.nested.filter_timing is not FilterTiming.WHILE_L1 else \
        all_of(host_side, ne(LEVEL_OF, Level.L2))
    for f0 in L0Filter:
        event(all_of(outside, ne(L0_FILTER, f0)), assign(L0_FILTER, f0), assign(REQ, 1),
              kind=NestedEv.L0_SET_FILTER, choice=int(f0))
    variables = (*_L0_FIELDS, *_NESTED_FIELDS, *_CPU0_FIELDS)
    fixed = _initial(d)
    return Model(variables=variables, events=tuple(events), bounds=b, initial=tuple(
        int(fixed.get(v, v.field.initial_value(v.cpu, v.key))) for v in variables))


def _initial(d: Design) -> dict[Var, int]:
    """The first state, where it differs from the fields' initial values: the vCPU runs L1's
    kernel (its KVM, about to VMLAUNCH L2) on CPU 0.

    L0's guest state is loaded and the MSRs hold L1's values; L2 was created by L1 with its
    reset values (vmcs12 dirty from L1's VMPTRLD); no filter anywhere.
    """
    vmcs01 = vmcs01_masks(d)[int(L0Filter.NONE),]
    return {
        MODE_OF[0]: Mode.GUEST, LOADED: 0, VMCS_CPU: 0, VMCS_HOST[Slot.RSP1]: exc_stack(0),
        HW[0, Slot.RSP0]: L1_TOP, HW[0, Slot.RSP1]: L1_EXC, HW[0, Slot.PL0_SSP]: L1_PL0,
        SOFT_RSP0: L1_TOP, XSAVE_PL0: L1_PL0, VMCS_GUEST[Slot.RSP1]: L1_EXC,
        BITMAP_BITS: vmcs01, VMCS02_BITS: vmcs02_masks(d)[vmcs01, int(FilterChoice.NONE)],
    }

"""The nested designs' machine (machine/nested.py), step by step against the kernel's code.

Expected values come from Linux v6.19 arch/x86/kvm/vmx/nested.c (matankalina/linux-6.19.10-fork
@094d869456d2) with FRED v9 patch 19 (prepare_vmcs02_rare, sync_vmcs02_to_vmcs12,
load_vmcs12_host_state), and from the architecture (no VMCS field for FRED_RSP0 or
PL0_SSP, kvm-msr-facts.md 8); the outcome of every L2 access is held to the stateless
nested model (policy/nested.py, itself tested bit by bit against nested.c in
tests/test_nested.py).
"""

from __future__ import annotations

import dataclasses
from enum import IntEnum

import pytest

from msrvirt.arch.kvm import Access
from msrvirt.arch.nested import merge_list
from msrvirt.machine.designs import DESIGNS, design
from msrvirt.machine.model import (
    CACHE,
    HW,
    L1_EXC,
    L1_TOP,
    LOADED,
    SOFT_RSP0,
    VMCS_GUEST,
    XSAVE_PL0,
    Bounds,
    Ev,
    Event,
    FilterChoice,
    GuestCpu,
    Machine,
    Observation,
    Slot,
    State,
    guest_value,
    stack_top,
)
from msrvirt.machine.nested import (
    L1_CACHE,
    L1_LOADED,
    L1_SOFT_RSP0,
    L2_BELIEF,
    LEVEL_OF,
    NESTED_SLOTS,
    VMCS02_GUEST,
    VMCS12_DIRTY,
    VMCS12_GUEST,
    L0Filter,
    Level,
    NestedEv,
    NestedObs,
    l0_scenario,
    nested_bounds,
)
from msrvirt.policy.decide import MsrAccess
from msrvirt.policy.nested import L2Outcome, Nested, decide_l2, kvm_l1
from msrvirt.policy.policies import policy
from msrvirt.report.check import event_label

G0, G1 = guest_value(0), guest_value(1)
NESTED = [name for name, d in DESIGNS.items() if d.nested is not None]


def go(m: Machine, s: State, *kinds: IntEnum, **what: int) -> State:
    """Step the events ``kinds`` on CPU 0 (each must be enabled); ``what`` is the last one's."""
    for i, kind in enumerate(kinds):
        ev = Event(kind=kind, cpu=0, **(what if i == len(kinds) - 1 else {}))
        assert ev in m.events(s), f"{event_label(ev)} is not enabled"
        s = m.step(s, ev)
    return s


def run(m: Machine, s: State, kind: IntEnum, **what: int) -> tuple[State, Observation]:
    """Step one event on CPU 0 and return what it observed (exactly one observation)."""
    ev = Event(kind=kind, cpu=0, **what)
    assert ev in m.events(s)
    after, seen = m.run(s, ev)
    assert len(seen) == 1
    return after, seen[0]


def in_l2(m: Machine, l0_filter: L0Filter = L0Filter.NONE,
          l1_filter: FilterChoice = FilterChoice.NONE) -> State:
    """From the first state (L1's KVM about to VMLAUNCH): set the filters, then enter L2."""
    s = m.initial()
    if l1_filter is not FilterChoice.NONE:
        s = go(m, s, NestedEv.L1_KVM_RUN_RETURN)
        s = go(m, s, NestedEv.L1_SET_FILTER, choice=l1_filter)
        s = go(m, s, NestedEv.L1_KVM_RUN)
    if l0_filter is not L0Filter.NONE:
        s = go(m, s, Ev.VM_EXIT)
        s = go(m, s, NestedEv.L0_SET_FILTER, choice=l0_filter)
        s = go(m, s, Ev.VM_ENTRY)
    return go(m, s, NestedEv.L1_VMRESUME, Ev.VM_ENTRY)


def test_nested_designs_run_on_one_cpu_and_two_tasks_with_the_given_values() -> None:
    m = Machine(design("nested-v9"), Bounds(cpus=3, tasks=5, values=2))
    assert m.bounds == nested_bounds(Bounds(cpus=3, tasks=5, values=2)) == Bounds(
        cpus=1, tasks=2, values=2)


def test_the_first_state_runs_l1s_kernel_on_l1s_values() -> None:
    m = Machine(design("nested-v9"))
    s = m.initial()
    assert m.get(s, LEVEL_OF) == Level.L1_KVM
    assert (m.get(s, HW[0, Slot.RSP0]), m.get(s, HW[0, Slot.RSP1])) == (L1_TOP, L1_EXC)
    assert m.get(s, LOADED) == 0 and m.get(s, VMCS12_DIRTY) == 1
    assert all(m.get(s, L2_BELIEF[slot]) == G0 for slot in NESTED_SLOTS)


# -- L2's accesses: the stateless model's outcome, in the machine ---------------------------------


def machine_outcome(obs: Observation) -> L2Outcome:
    """What the machine's observation of an L2 access says about where it ended."""
    if obs.kind in (NestedObs.L2_REFLECTED_READ, NestedObs.L2_REFLECTED_WRITE):
        return L2Outcome.REFLECTED
    if obs.direct:
        return L2Outcome.PASSTHROUGH
    return L2Outcome.GP if obs.faulted else L2Outcome.EMULATED  # L0 handled it


CASES = [(merge, f0, f1, slot, access)
         for merge in ("upstream", "v9", "fred-all") for f0 in L0Filter for f1 in FilterChoice
         for slot in NESTED_SLOTS for access in (Access.R, Access.W)]


@pytest.mark.parametrize(("merge", "f0", "f1", "slot", "access"), CASES, ids=[
    f"under {m} with L0 filter {f0.name.lower()} and L1 filter {f1.name.lower()} L2's"
    f" {a.label} of {s.label} ends as the stateless model says" for m, f0, f1, s, a in CASES])
def test_the_machine_agrees_with_the_stateless_model(
        merge: str, f0: L0Filter, f1: FilterChoice, slot: Slot, access: Access) -> None:
    m = Machine(design(f"nested-{merge}"))
    s = in_l2(m, f0, f1)
    if access is Access.R:
        _, obs = run(m, s, NestedEv.L2_RDMSR, slot=slot)
    else:
        _, obs = run(m, s, NestedEv.L2_WRMSR, slot=slot, value=G1)
    fred_v9 = policy("fred-v9")
    l1 = kvm_l1(l0_scenario(fred_v9), fred_v9, GuestCpu.FRED_SHSTK.features, f1.msr_filter)
    n = Nested(l0=l0_scenario(fred_v9, f0), l1=l1, merge=merge_list(merge))
    assert machine_outcome(obs) is decide_l2(n, MsrAccess(slot.msr, access, 0)).outcome


# -- nested entry and exit: vmcs12's FRED fields (v9 patch 19) ------------------------------------


def test_nested_entry_copies_vmcs12s_guest_fields_only_when_vmcs12_is_dirty() -> None:
    """prepare_vmcs02 runs prepare_vmcs02_rare (which loads vmcs12's guest FRED fields into
    vmcs02, L1 having set "load guest FRED state") only when nested.dirty_vmcs12 is set: by
    L1's VMPTRLD, or a VMWRITE of a field that is not shadowed (handle_vmwrite).  Seen where
    vmcs12 and vmcs02 differ: the planted design that does not save L2's fields to vmcs12."""
    m = Machine(design("nested-exit-no-guest-save"))
    s = go(m, m.initial(), NestedEv.L1_VMRESUME)  # dirty since L1's VMPTRLD
    assert m.get(s, VMCS02_GUEST) == m.get(s, VMCS12_GUEST) == G0
    assert m.get(s, VMCS12_DIRTY) == 0
    s = go(m, s, Ev.VM_ENTRY)
    s = go(m, s, NestedEv.L2_WRMSR, slot=Slot.RSP1, value=G1)  # v9: emulated by L0 on vmcs02
    assert m.get(s, VMCS02_GUEST) == G1
    s = go(m, s, Ev.VM_ENTRY, NestedEv.NESTED_EXIT, Ev.VM_ENTRY)
    assert m.get(s, VMCS12_GUEST) == G0  # not saved
    clean = go(m, s, NestedEv.L1_VMRESUME)
    assert m.get(clean, VMCS02_GUEST) == G1  # vmcs02 keeps what L2 exited with
    dirty = go(m, s, NestedEv.L1_VMWRITE, NestedEv.L1_VMRESUME)
    assert m.get(dirty, VMCS02_GUEST) == G0  # vmcs12's stale value reaches L2


def test_a_nested_exit_saves_l2s_fields_to_vmcs12_and_loads_l1s_host_fields() -> None:
    """sync_vmcs02_to_vmcs12 copies vmcs02's guest FRED fields into vmcs12;
    load_vmcs12_host_state writes vmcs12's host FRED fields into vmcs01's guest fields,
    which the VM entry into L1 loads; RSP0 and PL0_SSP have no VMCS field and stay put."""
    m = Machine(design("nested-fred-all"))
    s = in_l2(m)
    s = go(m, s, NestedEv.L2_WRMSR, slot=Slot.RSP1, value=G1)  # fred-all: on the CPU
    s = go(m, s, NestedEv.L2_WRMSR, slot=Slot.RSP0, value=G1)
    assert m.get(s, HW[0, Slot.RSP1]) == G1
    s = go(m, s, NestedEv.NESTED_EXIT)
    assert m.get(s, VMCS02_GUEST) == m.get(s, VMCS12_GUEST) == G1
    assert m.get(s, VMCS_GUEST[Slot.RSP1]) == L1_EXC  # vmcs01's guest field: L1's own
    assert m.get(s, HW[0, Slot.RSP0]) == G1  # no VMCS field: L2's value stays in the MSR
    s = go(m, s, Ev.VM_ENTRY)
    assert m.get(s, HW[0, Slot.RSP1]) == L1_EXC and m.get(s, LEVEL_OF) == Level.L1_KVM


def test_the_planted_exit_faults_leave_l2s_values_where_l1_looks() -> None:
    no_load = Machine(design("nested-exit-no-host-load"))
    s = go(no_load, in_l2(no_load), NestedEv.NESTED_EXIT)
    assert no_load.get(s, VMCS_GUEST[Slot.RSP1]) == G0  # L2's value, not L1's host field
    no_save = Machine(design("nested-exit-no-guest-save"))
    s = in_l2(no_save)
    s = go(no_save, s, NestedEv.L2_WRMSR, slot=Slot.RSP1, value=G1)
    s = go(no_save, s, Ev.VM_ENTRY, NestedEv.NESTED_EXIT)
    assert no_save.get(s, VMCS12_GUEST) == G0  # stale: L1 reads the value L2 launched with


# -- FRED_RSP0 across the three levels ------------------------------------------------------------


def test_l2s_rsp0_goes_from_the_cpu_to_l1s_copy_and_back() -> None:
    """v9 merges RSP0, so L2 writes the MSR itself; the nested exit leaves it there (no VMCS
    field); L1's vcpu_put reads it into L1's msr_guest_fred_rsp0 and syncs L1's cache, and
    L1's exit to user mode writes its own stack top; L1's next entry into L2 puts it back."""
    m = Machine(design("nested-v9"))
    s, obs = run(m, in_l2(m), NestedEv.L2_WRMSR, slot=Slot.RSP0, value=G1)
    assert obs.direct and m.get(s, HW[0, Slot.RSP0]) == G1
    s = go(m, s, NestedEv.NESTED_EXIT, Ev.VM_ENTRY)
    assert m.get(s, HW[0, Slot.RSP0]) == G1 and m.get(s, L1_LOADED) == 1
    s = go(m, s, NestedEv.L1_KVM_RUN_RETURN)
    assert (m.get(s, L1_SOFT_RSP0), m.get(s, L1_CACHE)) == (G1, L1_TOP)
    assert m.get(s, HW[0, Slot.RSP0]) == L1_TOP
    s = go(m, s, NestedEv.L1_KVM_RUN, NestedEv.L1_VMRESUME)
    assert m.get(s, HW[0, Slot.RSP0]) == G1


def test_under_upstream_l0_emulates_l2s_rsp0_write_into_the_msr() -> None:
    """Without RSP0 in the merge list, L2's WRMSR exits to L0, L1 does not want it, and L0's
    __kvm_set_msr writes the vCPU's RSP0: the MSR itself while the guest state is loaded."""
    m = Machine(design("nested-upstream"))
    s, obs = run(m, in_l2(m), NestedEv.L2_WRMSR, slot=Slot.RSP0, value=G1)
    assert not obs.direct and not obs.faulted and obs.kind is NestedObs.L2_WRITE
    assert m.get(s, HW[0, Slot.RSP0]) == m.get(s, SOFT_RSP0) == G1


def test_l0_preempted_while_in_l2_keeps_l2s_rsp0_and_pl0_ssp_for_the_vcpu() -> None:
    """L0's vcpu_put saves the vCPU's RSP0 (L2's) and CET state whatever level runs; the
    other task's exit to user mode writes its own stack top; VM entry restores L2's."""
    m = Machine(design("nested-v9"))
    s = go(m, in_l2(m), NestedEv.L2_WRMSR, slot=Slot.PL0_SSP, value=G1)
    s = go(m, s, NestedEv.L2_WRMSR, slot=Slot.RSP0, value=G1)
    s = go(m, s, Ev.VM_EXIT, Ev.CONTEXT_SWITCH, task=1)
    assert (m.get(s, SOFT_RSP0), m.get(s, XSAVE_PL0)) == (G1, G1)
    assert m.get(s, HW[0, Slot.RSP0]) == m.get(s, CACHE[0]) == stack_top(1)
    s = go(m, s, Ev.CONTEXT_SWITCH, task=0)
    s = go(m, s, Ev.VM_ENTRY)
    assert (m.get(s, HW[0, Slot.RSP0]), m.get(s, HW[0, Slot.PL0_SSP])) == (G1, G1)


# -- L0's filter while L2 runs --------------------------------------------------------------------


@pytest.mark.parametrize(("name", "direct"), [("nested-filter-window", True),
                                              ("nested-filter-rebuilt", False)],
                         ids=["v6.19 leaves vmcs02 passing RSP1 until L1's next entry",
                              "rebuilding vmcs02 at the recomputation intercepts it at once"])
def test_a_filter_change_while_l2_runs(name: str, direct: bool) -> None:
    """vmx_recalc_msr_intercepts changes vmcs01 and sets force_msr_bitmap_recalc; vmcs02 is
    rebuilt by nested_vmx_prepare_msr_bitmap at the next nested entry only."""
    m = Machine(design(name))
    s = go(m, in_l2(m), Ev.VM_EXIT)
    s = go(m, s, NestedEv.L0_SET_FILTER, choice=L0Filter.DENY)
    s = go(m, s, Ev.VM_ENTRY)
    _, obs = run(m, s, NestedEv.L2_RDMSR, slot=Slot.RSP1)
    assert obs.direct is direct


def test_the_filter_changes_only_out_of_l2_in_the_other_designs() -> None:
    m = Machine(design("nested-fred-all"))
    s = go(m, in_l2(m), Ev.VM_EXIT)
    assert Event(kind=NestedEv.L0_SET_FILTER, cpu=0, choice=L0Filter.DENY) not in m.events(s)


def test_a_policy_that_intercepts_l1s_rsp0_is_refused() -> None:
    """L1's own RSP0 and CET state switching is modelled on the CPU (vmcs01 passes them)."""
    d = dataclasses.replace(design("nested-v9"), policy=policy("intercept-all"))
    with pytest.raises(ValueError, match=r"needs vmcs01 \(intercept-all\) to pass IA32_FRED_RSP0"):
        Machine(d)


@pytest.mark.parametrize("name", NESTED)
def test_every_event_of_a_nested_design_has_a_label(name: str) -> None:
    m = Machine(design(name))
    labels = {event_label(decl.event) for decl in m.model.events}
    assert len(labels) == len(m.model.events)  # each in words, and no two alike
    assert {decl.event.kind for decl in m.model.events} >= set(NestedEv)

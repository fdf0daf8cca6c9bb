"""The machine model: its bitmap comes from the policy module, and each step does what the
facts say (kvm-msr-facts.md sections 5-8, fred-arch-facts.md section 3)."""

from __future__ import annotations

import pytest

from msrvirt.arch.kvm import Access
from msrvirt.errors import UnknownNameError, UsageError
from msrvirt.machine.designs import DESIGNS, Verdict, design
from msrvirt.machine.model import (
    BELIEF,
    CACHE,
    FALLBACK,
    HOST_CONFIG,
    HOST_PL0_SSP,
    HOST_SSP,
    HOST_STKLVLS,
    HW,
    INVALID,
    LOADED,
    MODE_OF,
    OTHER_STACK,
    SLOTS,
    SOFT_RSP0,
    TASK_OF,
    VCPU_TASK,
    VMCS_CPU,
    VMCS_HOST,
    XSAVE_PL0,
    Bounds,
    Ev,
    Event,
    FilterChoice,
    GuestCpu,
    Machine,
    Mode,
    ObsKind,
    Slot,
    State,
    exc_stack,
    guest_value,
    stack_top,
    vcpu_put,
)

G0, G1 = guest_value(0), guest_value(1)


def hw(m: Machine, s: State, cpu: int, slot: Slot) -> int:
    return m.get(s, HW[cpu, slot])


def run(m: Machine, *events: Event) -> State:
    """Step through ``events`` from the initial state, each of which must be enabled."""
    s = m.initial()
    for ev in events:
        assert ev in m.events(s), f"{ev} not enabled"
        s = m.step(s, ev)
    return s


def ev(kind: Ev, cpu: int = 0, *, slot: Slot | None = None, value: int = 0, task: int = -1,
       choice: int = -1) -> Event:
    return Event(kind=kind, cpu=cpu, slot=slot, value=value, task=task, choice=choice)


KVM_RUN, ENTRY, EXIT, RETURN = (ev(Ev.KVM_RUN), ev(Ev.VM_ENTRY), ev(Ev.VM_EXIT),
                                ev(Ev.KVM_RUN_RETURN))


@pytest.fixture(scope="module")
def v9() -> Machine:
    return Machine(design("v9"))


# -- designs and bitmaps -------------------------------------------------------------------------


def test_every_design_is_named_and_the_planted_ones_are_expected_to_fail() -> None:
    assert DESIGNS["v9"].expected is Verdict.HOLDS
    holds = {n for n, d in DESIGNS.items() if d.expected is Verdict.HOLDS and d.nested is None}
    assert holds == {"v9", "minimal", "intercept-all", "invalidate-cache", "host-fields-from-msrs",
                     "v9@cet-xsaves"}
    assert len(DESIGNS) - len(holds) >= 6


def test_an_unknown_design_name_is_a_usage_error() -> None:
    with pytest.raises(UnknownNameError, match="design must be a known name, not 'v10'"):
        design("v10")


def _intercepted(m: Machine, cpu: GuestCpu, flt: FilterChoice) -> set[tuple[str, str]]:
    bits = m.mask_for(cpu, flt)
    return {(s.name, a.name) for s in SLOTS for a in (Access.R, Access.W)
            if bits >> (2 * s + (a is Access.W)) & 1}


ALL = {(s.name, a) for s in SLOTS for a in ("R", "W")}
PL0 = {("PL0_SSP", "R"), ("PL0_SSP", "W")}
STK_CFG = {(n, a) for n in ("STKLVLS", "CONFIG") for a in ("R", "W")}


@pytest.mark.parametrize(("name", "cpu", "flt", "expected"), [
    ("v9", GuestCpu.FRED_SHSTK, FilterChoice.NONE, set()),
    ("v9", GuestCpu.FRED, FilterChoice.NONE, PL0),
    ("v9", GuestCpu.FRED_SHSTK, FilterChoice.DENY_FRED, ALL - PL0),
    ("minimal", GuestCpu.FRED_SHSTK, FilterChoice.NONE, STK_CFG),
    ("minimal", GuestCpu.FRED, FilterChoice.NONE, STK_CFG | PL0),
    ("intercept-all", GuestCpu.FRED_SHSTK, FilterChoice.NONE, ALL),
    ("pl0-ssp-passthrough", GuestCpu.FRED, FilterChoice.NONE, set()),
], ids=[
    "v9 passes everything through for a FRED+SHSTK guest",
    "v9 intercepts PL0_SSP for a FRED-only guest (CET rule)",
    "a filter denial intercepts the nine FRED MSRs",
    "minimal keeps STKLVLS and CONFIG intercepted",
    "minimal with a FRED-only guest adds PL0_SSP",
    "intercept-all intercepts everything",
    "the v6 policy passes PL0_SSP through without shadow stacks",
])
def test_the_bitmap_comes_from_the_designs_policy(
        name: str, cpu: GuestCpu, flt: FilterChoice, expected: set[tuple[str, str]]) -> None:
    assert _intercepted(Machine(design(name)), cpu, flt) == expected


@pytest.mark.parametrize(("kw", "message"), [
    ({"cpus": 0}, "cpus must be between 1 and 8, not 0"),
    ({"cpus": 3, "tasks": 2}, "tasks must be between cpus"),
    ({"values": 0}, "values must be between 1 and 8, not 0"),
])
def test_bad_bounds_are_usage_errors(kw: dict[str, int], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        Bounds(**kw)


# -- the initial state and events ----------------------------------------------------------------


def test_initial_state_has_host_values_and_a_consistent_cache(v9: Machine) -> None:
    s = v9.initial()
    assert len(v9.unpack(s)) == len(v9.fields)
    for c in range(2):
        assert v9.get(s, TASK_OF[c]) == c
        assert v9.get(s, MODE_OF[c]) == Mode.HOST_USER
        assert v9.get(s, CACHE[c]) == hw(v9, s, c, Slot.RSP0) == stack_top(c)
        assert hw(v9, s, c, Slot.RSP1) == exc_stack(c)
        assert hw(v9, s, c, Slot.STKLVLS) == HOST_STKLVLS
        assert hw(v9, s, c, Slot.CONFIG) == HOST_CONFIG
    assert [v9.get(s, BELIEF[slot]) for slot in SLOTS] == [G0] * len(SLOTS)


def test_events_are_enumerated_deterministically_and_step_is_pure(v9: Machine) -> None:
    s = run(v9, KVM_RUN, ENTRY)
    evs = v9.events(s)
    assert evs == Machine(design("v9")).events(s)
    after = [v9.step(s, e) for e in evs]
    assert after == [v9.step(s, e) for e in evs]
    assert s == run(v9, KVM_RUN, ENTRY)


def test_cpuid_can_change_only_before_the_vcpu_is_used(v9: Machine) -> None:
    kinds = {e.kind for e in v9.events(v9.initial())}
    assert Ev.SET_CPUID in kinds
    assert Ev.SET_CPUID not in {e.kind for e in v9.events(run(v9, KVM_RUN))}


def test_the_filter_changes_only_outside_guest_mode(v9: Machine) -> None:
    assert Ev.SET_FILTER in {e.kind for e in v9.events(run(v9, KVM_RUN))}
    assert Ev.SET_FILTER not in {e.kind for e in v9.events(run(v9, KVM_RUN, ENTRY))}


# -- v9 semantics ----------------------------------------------------------------------------------


def test_vm_entry_loads_guest_rsp0_in_software_and_the_rest_from_the_vmcs(v9: Machine) -> None:
    s = run(v9, KVM_RUN, ENTRY)
    assert v9.get(s, LOADED) == 0
    assert all(hw(v9, s, 0, slot) == G0 for slot in SLOTS)


def test_vm_exit_restores_the_eight_but_keeps_the_guest_rsp0(v9: Machine) -> None:
    s = run(v9, KVM_RUN, ENTRY, ev(Ev.GUEST_WRMSR, slot=Slot.RSP0, value=G1),
            ev(Ev.GUEST_WRMSR, slot=Slot.RSP1, value=G1), EXIT)
    assert hw(v9, s, 0, Slot.RSP0) == G1  # KVM runs with the guest's RSP0 (seed)
    assert hw(v9, s, 0, Slot.RSP1) == exc_stack(0)
    assert v9.kvm_get(s, Slot.RSP1) == G1  # saved in the VMCS guest field
    assert v9.kvm_get(s, Slot.RSP0) == G1  # loaded: read from the MSR


def test_kvm_run_return_syncs_the_cache_then_restores_host_rsp0(v9: Machine) -> None:
    s = run(v9, KVM_RUN, ENTRY, ev(Ev.GUEST_WRMSR, slot=Slot.RSP0, value=G1), EXIT, RETURN)
    assert v9.get(s, SOFT_RSP0) == G1
    assert v9.get(s, LOADED) == -1
    assert hw(v9, s, 0, Slot.RSP0) == v9.get(s, CACHE[0]) == stack_top(VCPU_TASK)


def test_preemption_syncs_the_cache_to_the_guest_value(v9: Machine) -> None:
    # Preempted inside KVM_RUN: vcpu_put runs, then task 2's exit to user rewrites RSP0.
    s = run(v9, KVM_RUN, ENTRY, EXIT)
    put = v9.execute(s, vcpu_put(v9.design, 0))
    assert v9.get(put, CACHE[0]) == hw(v9, put, 0, Slot.RSP0) == G0
    s = v9.step(s, ev(Ev.CONTEXT_SWITCH, task=2))
    assert hw(v9, s, 0, Slot.RSP0) == v9.get(s, CACHE[0]) == stack_top(2)


def test_invalidate_cache_sets_the_cache_to_zero_on_put() -> None:
    m = Machine(design("invalidate-cache"))
    s = run(m, KVM_RUN, ENTRY, EXIT)
    assert m.get(m.execute(s, vcpu_put(m.design, 0)), CACHE[0]) == INVALID


def test_migration_rewrites_the_host_rsp1_field(v9: Machine) -> None:
    s = run(v9, KVM_RUN, ev(Ev.CONTEXT_SWITCH, task=2), ev(Ev.CONTEXT_SWITCH, cpu=1, task=0))
    assert v9.get(s, VMCS_CPU) == 1
    assert v9.get(s, VMCS_HOST[Slot.RSP1]) == exc_stack(1)


def test_a_fred_only_guest_keeps_pl0_ssp_in_the_fallback(v9: Machine) -> None:
    s = run(v9, ev(Ev.SET_CPUID, cpu=-1, choice=GuestCpu.FRED), KVM_RUN, ENTRY,
            ev(Ev.GUEST_WRMSR, slot=Slot.PL0_SSP, value=G1))
    assert v9.get(s, MODE_OF[0]) == Mode.KVM  # intercepted: a VM exit
    assert v9.get(s, FALLBACK) == G1
    assert hw(v9, s, 0, Slot.PL0_SSP) == HOST_PL0_SSP


def test_a_filter_denied_write_exits_and_stores_nothing(v9: Machine) -> None:
    s = run(v9, KVM_RUN, ev(Ev.SET_FILTER, cpu=-1, choice=FilterChoice.DENY_FRED), ENTRY)
    write = ev(Ev.GUEST_WRMSR, slot=Slot.RSP1, value=G1)
    obs = v9.observe(s, write)
    assert obs is not None and obs.faulted and not obs.direct
    s = v9.step(s, write)
    assert v9.get(s, BELIEF[Slot.RSP1]) == G0
    assert v9.get(s, MODE_OF[0]) == Mode.KVM


def test_host_deliveries_observe_what_they_consume(v9: Machine) -> None:
    s = v9.initial()
    nmi = v9.observe(s, ev(Ev.HOST_EXCEPTION))
    assert nmi is not None and nmi.kind is ObsKind.HOST_DELIVERY
    assert dict(nmi.values) == {Slot.STKLVLS: HOST_STKLVLS, Slot.CONFIG: HOST_CONFIG,
                                Slot.RSP1: exc_stack(0)}
    user = v9.observe(s, ev(Ev.HOST_USER_EVENT))
    assert user is not None and dict(user.values)[Slot.RSP0] == stack_top(0)


def test_guest_deliveries_consume_pl0_ssp_only_with_shadow_stacks(v9: Machine) -> None:
    s = run(v9, KVM_RUN, ENTRY, ev(Ev.GUEST_ERETU))
    obs = v9.observe(s, ev(Ev.GUEST_EVENT_RING3))
    assert obs is not None and Slot.PL0_SSP in dict(obs.values)
    s = run(v9, ev(Ev.SET_CPUID, cpu=-1, choice=GuestCpu.FRED), KVM_RUN, ENTRY, ev(Ev.GUEST_ERETU))
    obs = v9.observe(s, ev(Ev.GUEST_EVENT_RING3))
    assert obs is not None and Slot.PL0_SSP not in dict(obs.values)


def test_the_literal_cache_invariant_is_broken_while_guest_state_is_loaded(v9: Machine) -> None:
    """A finding: between vmx_prepare_switch_to_guest and vcpu put, v9 runs host code with
    the cache equal to the task's stack top and the guest's RSP0 in the MSR.  hpa's
    invariant holds only outside that window, where the kernel can reach exit to user."""
    s = run(v9, KVM_RUN, ENTRY, EXIT)
    assert v9.get(s, MODE_OF[0]) == Mode.KVM and v9.get(s, LOADED) == 0
    assert v9.get(s, CACHE[0]) == stack_top(VCPU_TASK)
    assert hw(v9, s, 0, Slot.RSP0) == G0


# -- the host configuration (machine/hostconf.py) -------------------------------------------------


def test_v9_07_writes_the_db_stack_where_a_changed_map_wants_the_nmi_stack() -> None:
    # v9 07: HOST_IA32_FRED_RSP1 = __this_cpu_ist_top_va(ESTACK_DB); the changed kernel runs
    # NMIs at level 1 on its NMI stack, so the field holds another stack than level 1's.
    m = Machine(design("v9@stack-map-changed"))
    s = run(m, KVM_RUN, ENTRY, EXIT)
    assert m.get(s, VMCS_HOST[Slot.RSP1]) == OTHER_STACK
    nmi = m.observe(s, ev(Ev.HOST_EXCEPTION))
    assert nmi is not None and dict(nmi.values)[Slot.RSP1] == OTHER_STACK
    # Read from the MSRs instead (Sean), the field holds the kernel's own stack.
    msrs = Machine(design("host-fields-from-msrs@stack-map-changed"))
    assert msrs.get(run(msrs, KVM_RUN), VMCS_HOST[Slot.RSP1]) == exc_stack(0)


def test_a_host_with_supervisor_shadow_stacks_gets_ssp1_0_from_v9_07() -> None:
    m = Machine(design("v9@host-supervisor-shstk"))
    s = run(m, KVM_RUN, ENTRY, EXIT)
    assert m.get(s, VMCS_HOST[Slot.SSP1]) == INVALID  # v9 07: HOST_IA32_FRED_SSP1 = 0
    # fred-arch-facts.md 3: with supervisor shadow stacks a ring-0 delivery loads SSPn, a
    # delivery from user mode PL0_SSP.
    nmi = m.observe(s, ev(Ev.HOST_EXCEPTION))
    assert nmi is not None and dict(nmi.values)[Slot.SSP1] == INVALID
    user = m.observe(m.initial(), ev(Ev.HOST_USER_EVENT))
    assert user is not None and dict(user.values)[Slot.PL0_SSP] == HOST_PL0_SSP


def test_linux_host_deliveries_consume_no_ssp(v9: Machine) -> None:
    s = run(v9, KVM_RUN, ENTRY, EXIT)
    nmi, user = v9.observe(s, ev(Ev.HOST_EXCEPTION)), v9.observe(run(v9), ev(Ev.HOST_USER_EVENT))
    assert nmi is not None and user is not None
    assert set(dict(nmi.values)) == {Slot.STKLVLS, Slot.CONFIG, Slot.RSP1}
    assert set(dict(user.values)) == {Slot.RSP0, Slot.CONFIG}
    assert v9.get(s, VMCS_HOST[Slot.SSP1]) == HOST_SSP  # Linux's own SSP1-3: 0, as v9 07's


def test_the_cet_hosts_xrstors_restores_pl0_ssp_at_put_and_keeps_the_guests_value() -> None:
    # Linux v6.19 on a CET host: the guest's XSAVE state is saved with CET_KERNEL and the host
    # task's XRSTORS (XFEATURE_MASK_FPSTATE) puts PL0_SSP in its init state.
    m = Machine(design("v9@cet-xsaves"))
    s = run(m, KVM_RUN, ENTRY, ev(Ev.GUEST_WRMSR, slot=Slot.PL0_SSP, value=G1), EXIT, RETURN)
    assert hw(m, s, 0, Slot.PL0_SSP) == HOST_PL0_SSP
    assert m.get(s, XSAVE_PL0) == G1 and m.kvm_get(s, Slot.PL0_SSP) == G1
    s = run(m, KVM_RUN, ENTRY, ev(Ev.GUEST_WRMSR, slot=Slot.PL0_SSP, value=G1), EXIT, RETURN,
            KVM_RUN, ENTRY)
    assert hw(m, s, 0, Slot.PL0_SSP) == G1
    # The default host leaves the guest's value in the MSR after put.
    v9 = Machine(design("v9"))
    s = run(v9, KVM_RUN, ENTRY, ev(Ev.GUEST_WRMSR, slot=Slot.PL0_SSP, value=G1), EXIT, RETURN)
    assert hw(v9, s, 0, Slot.PL0_SSP) == G1


def test_on_a_cet_host_every_guests_fpu_state_moves_pl0_ssp() -> None:
    # guest_default_mask: a FRED-only guest's FPU state carries CET_KERNEL too, so a value it
    # wrote to a passed-through PL0_SSP follows the vCPU to another CPU.
    m = Machine(design("pl0-ssp-passthrough@cet-xsaves"))
    s = run(m, ev(Ev.SET_CPUID, cpu=-1, choice=GuestCpu.FRED), KVM_RUN, ENTRY,
            ev(Ev.GUEST_WRMSR, slot=Slot.PL0_SSP, value=G1), EXIT, ev(Ev.CONTEXT_SWITCH, task=2),
            ev(Ev.CONTEXT_SWITCH, cpu=1, task=VCPU_TASK), ev(Ev.VM_ENTRY, cpu=1))
    assert hw(m, s, 1, Slot.PL0_SSP) == G1
    assert m.kvm_get(s, Slot.PL0_SSP) == G0  # v9 10: KVM_GET_MSRS reads fred_ssp0_fallback

"""The counts come from the machine: each workload event driven through Machine.step/observe."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from msrvirt.arch.hosts import host
from msrvirt.arch.kvm import Access
from msrvirt.cost.model import COST_DESIGNS, COST_POLICIES
from msrvirt.cost.units import (
    BRINGUP_WRITES,
    COST_BOUNDS,
    FRED_MSRS,
    PL0_SSP,
    RSP0,
    SLOT_OF,
    Count,
    ModelError,
    Unit,
    enabled_step,
    explore_units,
    run_unit,
    unit_counts,
    warm_state,
)
from msrvirt.cost.workload import RATE_FIELDS
from msrvirt.machine.designs import Design, Verdict, design
from msrvirt.machine.model import CPUID, RING_OF, Ev, Event, GuestCpu, Machine, Ring, Slot
from msrvirt.policy.intercepts import compute_intercepts
from msrvirt.policy.policies import Rule, policy
from msrvirt.policy.scenario import Scenario


def nonzero(counts: tuple[Count, ...]) -> dict[int, tuple[int, int]]:
    """{msr: (exits, direct)} for the MSRs a unit touched."""
    return {c.msr: (c.exits, c.direct) for c in counts if c.exits or c.direct}


def test_every_unit_is_a_workload_rate() -> None:
    assert {u.value for u in Unit} == set(RATE_FIELDS)


def test_the_warm_state_is_a_resting_state_with_the_chosen_cpuid() -> None:
    m = Machine(design("v9"), COST_BOUNDS)
    for shstk, cpuid in ((True, GuestCpu.FRED_SHSTK), (False, GuestCpu.FRED)):
        s = warm_state(m, shstk)
        assert m.get(s, CPUID) == cpuid and m.get(s, RING_OF) == Ring.KERNEL


@pytest.mark.parametrize("shstk", [True, False], ids=["FRED+SHSTK guest", "FRED-only guest"])
def test_under_v9_a_context_switch_writes_rsp0_directly(shstk: bool) -> None:
    counts = unit_counts(design("v9"), shstk)
    assert nonzero(counts[Unit.CONTEXT_SWITCH]) == {RSP0: (0, 1)}


def test_under_intercept_all_a_context_switch_is_one_exit() -> None:
    counts = unit_counts(design("intercept-all"), True)
    assert nonzero(counts[Unit.CONTEXT_SWITCH]) == {RSP0: (1, 0)}
    assert all(c.emulations == c.exits for c in counts[Unit.CONTEXT_SWITCH])  # no filter


@pytest.mark.parametrize("unit", [Unit.SYSCALL, Unit.INTERRUPT, Unit.NMI, Unit.DEBUG_TRAP,
                                  Unit.HOST_PREEMPTION, Unit.HOST_MIGRATION, Unit.KVM_RUN_RETURN])
@pytest.mark.parametrize("name", list(COST_DESIGNS.values()))
def test_events_that_write_no_msr_cost_nothing_under_any_design(unit: Unit, name: str) -> None:
    assert nonzero(unit_counts(design(name), True)[unit]) == {}


def test_bringup_writes_what_linux_fred_c_writes() -> None:
    expected = {msr: BRINGUP_WRITES.count(msr) for msr in set(BRINGUP_WRITES)}
    assert expected == {0x1D4: 1, 0x1D0: 2, RSP0: 1, 0x1CD: 2, 0x1CE: 2, 0x1CF: 2}
    v9 = unit_counts(design("v9"), True)[Unit.CPU_BRINGUP]
    assert nonzero(v9) == {m: (0, n) for m, n in expected.items()}
    minimal = nonzero(unit_counts(design("minimal"), True)[Unit.CPU_BRINGUP])
    assert minimal[0x1D0] == (2, 0) and minimal[0x1D4] == (1, 0)  # STKLVLS, CONFIG exit
    assert all(minimal[m] == (0, n) for m, n in expected.items() if m not in (0x1D0, 0x1D4))


@pytest.mark.parametrize(("name", "shstk", "expected"), [
    ("v9", False, (1, 0)),
    ("pl0-ssp-passthrough", False, (0, 1)),
    ("v9", True, (0, 1)),
    ("intercept-all", True, (1, 0)),
], ids=["FRED-only guest under fred-v9: intercepted",
        "FRED-only guest under fred-v6: direct",
        "shadow-stack guest under fred-v9: direct (the CET rule)",
        "shadow-stack guest under intercept-all: intercepted"])
def test_a_pl0_ssp_write(name: str, shstk: bool, expected: tuple[int, int]) -> None:
    assert nonzero(unit_counts(design(name), shstk)[Unit.PL0_SSP_WRITE]) == {PL0_SSP: expected}


@pytest.mark.parametrize("shstk", [True, False], ids=["FRED+SHSTK guest", "FRED-only guest"])
@pytest.mark.parametrize("name", list(COST_DESIGNS.values()))
def test_every_unit_costs_the_same_from_every_resting_state(name: str, shstk: bool) -> None:
    """Scaling per unit is sound: each unit's counts are the same from all reachable states."""
    m = Machine(design(name), COST_BOUNDS)
    counts, states = explore_units(m, shstk)
    assert counts == unit_counts(design(name), shstk)
    assert states > 50  # the exploration really moved (tasks, CPUs, values, caches)


@given(st.lists(st.sampled_from(list(Unit)), max_size=40))
def test_any_sequence_of_units_costs_the_sum_of_its_units(units: list[Unit]) -> None:
    """Driving a sequence through the machine gives the per-unit counts added up."""
    d = design("minimal")
    m = Machine(d, COST_BOUNDS)
    s = warm_state(m, False)
    total = [0] * len(FRED_MSRS)
    for unit in units:
        s, got = run_unit(m, s, unit)
        total = [t + c.exits for t, c in zip(total, got, strict=True)]
    per_unit = unit_counts(d, False)
    assert total == [sum(per_unit[u][i].exits for u in units) for i in range(len(FRED_MSRS))]


@pytest.mark.parametrize("cpu", list(GuestCpu))
@pytest.mark.parametrize("name", COST_POLICIES)
def test_rsp1_3_and_ssp1_3_share_one_intercept_rule_so_one_slot_stands_for_them(
        name: str, cpu: GuestCpu) -> None:
    found = compute_intercepts(Scenario(host=host("intel-fred"), guest=cpu.features,
                                        policy=policy(name)))
    for group in ((0x1CD, 0x1CE, 0x1CF), (0x1D1, 0x1D2, 0x1D3)):
        for access in (Access.R, Access.W):
            assert len({found.intercepted(msr, access) for msr in group}) == 1
        assert len({SLOT_OF[msr] for msr in group}) == 1


def _rsp0_intercepted() -> Design:
    """A planted design: fred-v9 plus a last rule that intercepts FRED_RSP0."""
    base = policy("fred-v9")
    rule = Rule(id="planted", msrs=(0x1CC,), access=Access.RW, runs=lambda s: True,
                intercept=lambda s: True, runs_when="always", intercept_when="always",
                pass_when="never", source="test", rationale="planted")
    return Design(name="planted-rsp0", summary="intercepts RSP0",
                  policy=replace(base, name="planted", rules=(*base.rules, rule)),
                  expected=Verdict.HOLDS, source="test")


def test_a_design_that_intercepts_rsp0_makes_context_switches_exit() -> None:
    counts = unit_counts(_rsp0_intercepted(), True)
    assert nonzero(counts[Unit.CONTEXT_SWITCH]) == {RSP0: (1, 0)}
    assert nonzero(unit_counts(design("v9"), True)[Unit.CONTEXT_SWITCH]) == {RSP0: (0, 1)}


def test_a_unit_from_a_state_that_is_not_resting_is_a_model_error() -> None:
    m = Machine(design("v9"), COST_BOUNDS)
    with pytest.raises(ModelError, match="exactly one CPU"):
        run_unit(m, m.initial(), Unit.NMI)


def test_an_event_the_machine_does_not_enable_is_a_model_error() -> None:
    m = Machine(design("v9"), COST_BOUNDS)
    in_kernel = warm_state(m, True)  # an interrupt from ring 3 is not enabled there
    with pytest.raises(ModelError, match="not enabled"):
        enabled_step(m, in_kernel, Event(kind=Ev.GUEST_EVENT_RING3, cpu=0))


def test_slots_cover_every_modelled_msr() -> None:
    assert set(SLOT_OF.values()) == set(Slot)
    assert [SLOT_OF[m].msr for m in (0x1CC, 0x1CD, 0x1D0, 0x1D1, 0x1D4, 0x6A4)] == [
        0x1CC, 0x1CD, 0x1D0, 0x1D1, 0x1D4, 0x6A4]

"""Estimates for the built-in workloads, linearity in the rates, and the CPU-time formula."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from msrvirt.cost.constants import DEFAULT_COSTS, ExitCosts, Figure
from msrvirt.cost.model import (
    COST_POLICIES,
    PolicyCost,
    design_for,
    estimate,
    estimate_design,
    sweep,
)
from msrvirt.cost.units import BRINGUP_WRITES, FRED_MSRS
from msrvirt.cost.workload import RATE_FIELDS, WORKLOADS, Rate, Workload
from msrvirt.errors import UnknownNameError
from msrvirt.machine.designs import design

LINUX = WORKLOADS["linux-fred"]
CS = LINUX.guest_context_switches.per_second
BRINGUP = LINUX.cpu_bringups.per_second


def row(c: PolicyCost, name: str) -> tuple[float, float]:
    """(exits/s, direct/s) of the row whose MSR is called IA32_<name>."""
    (r,) = [r for r in c.rows if r.name == f"IA32_{name}"]
    return r.exits_per_s, r.direct_per_s


def test_cost_policies_are_those_with_a_machine_design() -> None:
    assert COST_POLICIES == ("fred-v9", "fred-minimal", "fred-v6", "intercept-all")
    assert [design_for(p).policy.name for p in COST_POLICIES] == list(COST_POLICIES)


def test_linux_fred_is_a_100k_context_switch_guest() -> None:
    assert CS == 100_000 and LINUX.guest_shstk


def test_fred_v9_makes_no_exit_at_all_for_linux_fred() -> None:
    c = estimate(LINUX, "fred-v9")
    assert (c.policy, c.design, c.workload) == ("fred-v9", "v9", "linux-fred")
    assert row(c, "FRED_RSP0") == (0, pytest.approx(CS + BRINGUP, rel=1e-12))
    assert c.exits_per_s == 0 and c.cpu_percent == 0
    assert [r.msr for r in c.rows] == list(FRED_MSRS)


def test_fred_minimal_exits_only_for_stklvls_and_config_at_bringup() -> None:
    c = estimate(LINUX, "fred-minimal")
    assert row(c, "FRED_RSP0")[0] == 0
    assert row(c, "FRED_STKLVLS") == (pytest.approx(2 * BRINGUP), 0)  # fred.c writes it twice
    assert row(c, "FRED_CONFIG") == (pytest.approx(BRINGUP), 0)
    assert c.exits_per_s == pytest.approx(3 * BRINGUP, rel=1e-12)
    stklvls = next(r for r in c.rows if r.name == "IA32_FRED_STKLVLS")
    assert stklvls.exits_by_event == (("cpu_bringups", pytest.approx(2 * BRINGUP)),)


def test_intercept_all_exits_once_per_context_switch() -> None:
    c = estimate(LINUX, "intercept-all")
    exits, direct = row(c, "FRED_RSP0")
    assert exits == pytest.approx(CS + BRINGUP, rel=1e-12) and direct == 0
    rsp0 = c.rows[0]
    assert dict(rsp0.exits_by_event)["guest_context_switches"] == CS
    assert rsp0.emulations_per_s == rsp0.exits_per_s
    # 100,000 x 1,300 cycles / 3 GHz = 4.33 % of one CPU
    assert rsp0.cpu_percent == pytest.approx(CS * 1300 / 3e9 * 100, rel=1e-5)
    assert c.exits_per_s == pytest.approx(CS + len(BRINGUP_WRITES) * BRINGUP, rel=1e-12)


def test_every_rate_of_the_builtin_profiles_is_costed_without_error() -> None:
    for w in WORKLOADS.values():
        for p in COST_POLICIES:
            assert estimate(w, p).cpu_percent >= 0


def test_pl0_ssp_of_a_fred_only_guest_exits_under_v9_and_not_under_v6() -> None:
    w = replace(LINUX, guest_shstk=False,
                guest_pl0_ssp_writes=Rate(per_second=1000, source="test"))
    assert row(estimate(w, "fred-v9"), "PL0_SSP") == (1000, 0)
    assert row(estimate(w, "fred-v6"), "PL0_SSP") == (0, 1000)
    assert row(estimate(replace(w, guest_shstk=True), "fred-v9"), "PL0_SSP") == (0, 1000)


def test_context_switch_rate_can_be_changed() -> None:
    w = LINUX.with_context_switches(25_000)
    assert w.guest_context_switches.per_second == 25_000
    assert estimate(w, "intercept-all").context_switches_per_s == 25_000
    assert row(estimate(w, "intercept-all"), "FRED_RSP0")[0] == pytest.approx(25_000 + BRINGUP)


def test_sweep_gives_one_estimate_per_policy_and_rate() -> None:
    rates = [0.0, 50_000.0, 200_000.0]
    got = sweep(LINUX, ["intercept-all", "fred-v9"], rates)
    assert list(got) == ["intercept-all", "fred-v9"]
    assert [c.context_switches_per_s for c in got["intercept-all"]] == rates
    assert [c.exits_per_s for c in got["fred-v9"]] == [0, 0, 0]
    assert got["intercept-all"][2].exits_per_s == pytest.approx(200_000 + 10 * BRINGUP, rel=1e-12)


@pytest.mark.parametrize(("name", "message"), [
    ("fred-v10", "policy must be a known name, not 'fred-v10' (one of fred-v9, fred-minimal,"
                 " fred-v6, intercept-all; the other policies cannot be costed)"),
    ("upstream", "policy must be a known name, not 'upstream' (one of fred-v9, fred-minimal,"
                 " fred-v6, intercept-all; the other known policies without a machine design"
                 " cannot be costed)"),
])
def test_a_policy_without_a_design_is_refused(name: str, message: str) -> None:
    with pytest.raises(UnknownNameError) as exc:
        estimate(LINUX, name)
    assert str(exc.value) == message
    with pytest.raises(UnknownNameError):
        sweep(LINUX, ["fred-v9", name], [0.0])


def test_cpu_time_uses_the_costs_given() -> None:
    costs = replace(DEFAULT_COSTS,
                    cpu_ghz=Figure(value=2.0, unit="GHz", source="t", measured=True),
                    in_kernel_exit_cycles=Figure(value=2000, unit="cycles", source="t",
                                                 measured=True))
    c = estimate(LINUX.with_context_switches(1000), "intercept-all", costs)
    # 1,000 exits/s x 2,000 cycles = 2e6 cycles/s of 2e9: 0.1 %
    assert c.rows[0].cpu_percent == pytest.approx(0.1, rel=1e-3)


_rate = st.floats(min_value=0, max_value=1e6, allow_nan=False)


def _workload(values: list[float], shstk: bool) -> Workload:
    rates = {name: Rate(per_second=v, source="test")
             for name, v in zip(RATE_FIELDS, values, strict=True)}
    return Workload(name="t", description="t", guest_shstk=shstk, **rates)


@given(st.lists(_rate, min_size=len(RATE_FIELDS), max_size=len(RATE_FIELDS)),
       st.lists(_rate, min_size=len(RATE_FIELDS), max_size=len(RATE_FIELDS)),
       st.booleans(), st.sampled_from(COST_POLICIES))
def test_estimates_are_additive_in_the_rates(
        a: list[float], b: list[float], shstk: bool, policy: str) -> None:
    both = estimate(_workload([x + y for x, y in zip(a, b, strict=True)], shstk), policy)
    ea, eb = estimate(_workload(a, shstk), policy), estimate(_workload(b, shstk), policy)
    for r, ra, rb in zip(both.rows, ea.rows, eb.rows, strict=True):
        assert math.isclose(r.exits_per_s, ra.exits_per_s + rb.exits_per_s, rel_tol=1e-9,
                            abs_tol=1e-6)
        assert math.isclose(r.direct_per_s, ra.direct_per_s + rb.direct_per_s, rel_tol=1e-9,
                            abs_tol=1e-6)


@given(st.floats(min_value=0, max_value=1e3, allow_nan=False))
def test_estimates_scale_with_the_rates(k: float) -> None:
    scaled = _workload([getattr(LINUX, f).per_second * k for f in RATE_FIELDS], True)
    base = estimate(LINUX, "intercept-all")
    got = estimate(scaled, "intercept-all")
    assert math.isclose(got.exits_per_s, k * base.exits_per_s, rel_tol=1e-9, abs_tol=1e-9)
    assert math.isclose(got.cpu_percent, k * base.cpu_percent, rel_tol=1e-9, abs_tol=1e-12)


def test_a_planted_design_is_costed_by_estimate_design() -> None:
    c = estimate_design(LINUX, design("no-sync"))
    assert (c.design, c.policy, c.exits_per_s) == ("no-sync", "fred-v9", 0)


def test_exit_costs_percent_formula() -> None:
    costs = ExitCosts(host="t", cpu_ghz=Figure(value=1.0, unit="GHz", source="", measured=False),
                      in_kernel_exit_cycles=Figure(value=1e3, unit="cycles", source="",
                                                   measured=False),
                      userspace_exit_cycles=Figure(value=5e3, unit="cycles", source="",
                                                   measured=False))
    assert costs.cpu_percent(1e6) == pytest.approx(100.0)

"""The nested cost model (cost/nested.py) and `msrvirt cost --nested`.

Expected values: which MSRs each merge list merges (Linux v6.19 nested.c
nested_vmx_prepare_msr_bitmap; FRED v9 patch 19 adds FRED_RSP0; the review's fred-all adds
the nine), what Linux's FRED code writes (fred_update_rsp0 once per switch to a user task;
cpu_init_fred_exceptions and cpu_init_fred_rsps at bring-up: CONFIG, STKLVLS, RSP0, RSP1-3,
then STKLVLS and RSP1-3 again, arch/x86/kernel/fred.c), and the workload's rates.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from msrvirt.arch.kvm import Access, ExitReason
from msrvirt.arch.nested import merge_list
from msrvirt.cli import main
from msrvirt.cost.constants import DEFAULT_COSTS, L1_ROUND_TRIP
from msrvirt.cost.nested import estimate_nested, exit_cycles, kvm_nested
from msrvirt.cost.workload import workload
from msrvirt.machine.nested import L0Filter, l0_scenario
from msrvirt.policy.decide import MsrAccess
from msrvirt.policy.nested import INTERCEPT_ALL_L1, L2Outcome, Nested, decide_l2
from msrvirt.policy.policies import policy

W = workload("linux-fred")
SWITCHES = W.guest_context_switches.per_second  # 100,000/s
BRINGUPS = W.cpu_bringups.per_second  # once per vCPU an hour
# Bring-up writes of the eight (all but RSP0): CONFIG, STKLVLS twice, RSP1-3 twice.
BRINGUP_EIGHT = 9
CYCLE = DEFAULT_COSTS.in_kernel_exit_cycles.value / (DEFAULT_COSTS.cpu_ghz.value * 1e9) * 100


@pytest.mark.parametrize(("merge", "exits"), [
    ("upstream", SWITCHES + (BRINGUP_EIGHT + 1) * BRINGUPS),
    ("v9", BRINGUP_EIGHT * BRINGUPS),
    ("fred-all", 0.0),
], ids=["upstream emulates every RSP0 write and the bring-up",
        "v9 passes RSP0 through and emulates the other eight's bring-up writes",
        "fred-all passes every FRED write through"])
def test_a_linux_l2_under_a_kvm_l1_exits_to_l0(merge: str, exits: float) -> None:
    c = estimate_nested(W, kvm_nested(W, merge_list(merge)))
    assert c.l0_exits_per_s == pytest.approx(exits)
    assert c.reflected_per_s == 0  # a KVM L1 passes its FRED L2 every FRED MSR
    assert c.cpu_percent == pytest.approx(exits * CYCLE)


def test_under_upstream_the_context_switches_cost_what_intercepting_rsp0_costs_l1() -> None:
    c = estimate_nested(W, kvm_nested(W, merge_list("upstream")))
    rsp0 = c.rows[0]
    assert (rsp0.name, rsp0.outcome) == ("IA32_FRED_RSP0", L2Outcome.EMULATED)
    assert dict(rsp0.exits_by_event)["guest_context_switches"] == SWITCHES
    assert rsp0.cpu_percent == pytest.approx((SWITCHES + BRINGUPS) * CYCLE)  # 4.33 %


def test_a_reflected_write_costs_the_exit_and_the_round_trip_through_l1() -> None:
    n = Nested(l0=l0_scenario(policy("fred-v9")), l1=INTERCEPT_ALL_L1, merge=merge_list("v9"))
    c = estimate_nested(W, n)
    assert c.reflected_per_s == c.l0_exits_per_s == pytest.approx(
        SWITCHES + (BRINGUP_EIGHT + 1) * BRINGUPS)
    per_write = DEFAULT_COSTS.in_kernel_exit_cycles.value + L1_ROUND_TRIP.value
    assert c.cpu_percent == pytest.approx(c.l0_exits_per_s * per_write / 3e9 * 100)


def test_an_exit_to_l0s_userspace_costs_the_userspace_round_trip() -> None:
    s = l0_scenario(policy("fred-v9"), L0Filter.DENY)
    n = kvm_nested(W, merge_list("v9"))
    n = replace(n, l0=replace(s, exits=ExitReason.FILTER))
    d = decide_l2(n, MsrAccess(0x1CD, Access.W, 0))  # FRED_RSP1, denied by L0's filter
    assert d.outcome is L2Outcome.EXIT
    assert exit_cycles(d, DEFAULT_COSTS) == DEFAULT_COSTS.userspace_exit_cycles.value


def test_the_nested_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost", "--nested"]) == 0
    out = capsys.readouterr().out
    assert "workload linux-fred in L2 (FRED+SHSTK) under L1 kvm:fred-v9, L0 fred-v9" in out
    rsp0 = next(line for line in out.splitlines() if "IA32_FRED_RSP0" in line)
    cells = [c.strip() for c in rsp0.split("│")[2:12]]
    assert cells == ["100,000", "emulated", "100,000", "4.33", "passthrough", "0", "0",
                     "passthrough", "0", "0"]
    assert "a reflected exit adds the round trip through L1: 13,000 cycles (default)" in out


def test_the_nested_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost", "--nested", "intercept-all", "--merge", "v9,fred-all", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert set(obj) == {"workload", "costs", "l1_round_trip_cycles", "nested", "merges"}
    assert obj["nested"] == {"l0_policy": "fred-v9", "l1": "intercept-all",
                             "l2_guest_shstk": True}
    assert [m["merge"] for m in obj["merges"]] == ["v9", "fred-all"]
    row = obj["merges"][0]["rows"][0]
    assert set(row) == {"index", "name", "writes_per_s", "outcome", "l0_exits_per_s",
                        "reflected_per_s", "cpu_percent", "exits_by_event"}
    assert (row["name"], row["outcome"]) == ("IA32_FRED_RSP0", "reflected")
    assert obj["l1_round_trip_cycles"]["value"] == L1_ROUND_TRIP.value


@pytest.mark.parametrize(("argv", "message"), [
    (["--merge", "v9"], "msrvirt: --merge needs --nested"),
    (["--nested", "--merge", "v8"], "msrvirt: merge list must be a known name, not 'v8'"),
    (["--nested", "kvm:nosuch"], "msrvirt: policy must be a known name, not 'nosuch'"),
    (["--nested", "--policy", "fred-v9,intercept-all"],
     "msrvirt: with --nested, --policy names L0's one policy, not fred-v9, intercept-all"),
    (["--nested", "--plot", "x.png"], "msrvirt: --plot draws the single-level policies"),
    (["--nested", "l1.yaml"], "msrvirt: L1 profile must be a known name, not 'l1.yaml'"),
])
def test_bad_nested_input_is_one_line_and_exit_2(
        argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1

"""The checker on the nested designs: every merge list keeps the nested invariants, the four
planted bugs are caught with their shortest counterexamples, and v6.19's filter window shows.

Each shortest length is argued from the events it needs (the comment on each row); the
traces are replayed step by step on the machine.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from msrvirt.check.explore import DesignCheck, check_design
from msrvirt.check.invariants import INVARIANTS, Applies
from msrvirt.cli import main
from msrvirt.machine.designs import DESIGNS, Verdict, design
from msrvirt.report.check import to_json, trace_lines

NESTED_INVARIANTS = {i.name for i in INVARIANTS if i.applies is not Applies.SINGLE}


@pytest.mark.parametrize("name", ["nested-upstream", "nested-v9", "nested-fred-all",
                                  "nested-filter-rebuilt"])
def test_the_nested_designs_keep_every_invariant(name: str) -> None:
    res = check_design(design(name)).result
    assert res.complete
    assert res.verdict is Verdict.HOLDS, res.first_counterexample()


# (design, the invariant its shortest counterexample breaks, that length, every invariant it
# breaks).  The lengths: entering L2 takes L1's VMRESUME and L0's VM entry (2 events); a
# nested exit, then L0's VM entry into L1 (2); an emulated L2 access needs a VM entry after
# it (1); L1's filter changes in L1's user mode (3: KVM_RUN returns, the filter, KVM_RUN);
# L0's filter changes outside guest mode (VM exit, the filter, VM entry: 3).
PLANTED = [
    # VMRESUME, entry, nested exit, entry into L1, L1's NMI consumes L2's RSP1.
    ("nested-exit-no-host-load", "l1-state", 5, {"l1-state"}),
    # VMRESUME, entry, L2 writes RSP1 (emulated by L0 under v9), entry, nested exit; then
    # (l2-integrity, 10) entry into L1, a VMWRITE, VMRESUME, entry, L2 reads the stale value.
    ("nested-exit-no-guest-save", "l2-via-l1", 5, {"l2-via-l1", "l2-integrity"}),
    # L1's filter (3), VMRESUME, entry, L2 reads RSP0 on the CPU.
    ("nested-merge-no-l1", "l1-intercepts", 6, {"l1-intercepts"}),
    # L0's filter (3), VMRESUME, entry, L2 reads RSP1 on the CPU.
    ("nested-merge-no-vmcs01", "l2-filter", 6, {"l2-filter"}),
    # VMRESUME, L0's filter while the vCPU is in L2 (it is in L0 after VMRESUME), entry
    # (vmcs01 recomputed, vmcs02 not), L2 reads RSP1 on the CPU: the finding.
    ("nested-filter-window", "l2-filter", 4, {"l2-filter"}),
]


def test_every_nested_design_expected_to_fail_is_in_the_table() -> None:
    failing = {n for n, d in DESIGNS.items() if d.nested is not None
               and d.expected is Verdict.FAILS}
    assert failing == {p[0] for p in PLANTED}


@pytest.mark.parametrize(("name", "inv", "length", "broken"), PLANTED,
                         ids=[f"{p[0]} breaks {p[1]} in {p[2]} events" for p in PLANTED])
def test_the_checker_finds_this_nested_bug(
        name: str, inv: str, length: int, broken: set[str],
        assert_replays: Callable[[DesignCheck, str], None]) -> None:
    chk = check_design(design(name))
    res = chk.result
    assert res.complete and res.verdict is Verdict.FAILS
    assert {n for n, v in res.verdicts.items() if v is Verdict.FAILS} == broken
    assert len(res.counterexamples[inv]) == length
    assert_replays(chk, inv)


def test_each_nested_invariant_is_broken_by_some_planted_bug() -> None:
    nested_only = {i.name for i in INVARIANTS if i.applies is Applies.NESTED}
    assert set().union(*(p[3] for p in PLANTED)) == nested_only


def test_the_window_trace_reads_as_the_kernel_does() -> None:
    chk = check_design(design("nested-filter-window"))
    lines = trace_lines(chk.machine, chk.result.counterexamples["l2-filter"])
    assert lines[0].startswith("1. cpu0: L1 VMRESUME: L0's nested VM entry")
    assert lines[1].startswith("2. cpu0: L0's VMM sets MSR filter: deny FRED_RSP1-3")
    assert "msr bitmap: intercepts none -> intercepts FRED_RSP1/rw" in lines[2]
    assert "vmcs02 msr bitmap" not in lines[2]
    assert lines[3].endswith("breaks l2-filter: L2 read of IA32_FRED_RSP1 reached the hardware"
                             " although L0's filter denies it")


def test_a_nested_designs_json_lists_the_invariants_that_judge_it() -> None:
    obj = to_json([check_design(design("nested-exit-no-host-load"))])
    (entry,) = obj["designs"]
    assert set(entry["invariants"]) == NESTED_INVARIANTS
    assert entry["invariants"]["l1-state"] == "fails"
    assert entry["counterexample"][-1].startswith("5. cpu0: L1 NMI/#DB")


def test_check_runs_a_nested_design_from_the_command_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--design", "nested-v9", "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)["designs"]
    assert (entry["verdict"], entry["expected"]) == ("holds", "holds")
    assert main(["check", "--design", "nested-filter-window"]) == 0
    out = capsys.readouterr().out
    assert "nested-filter-window: breaks l2-filter in 4 events" in out
    assert "1 finding shown" in out

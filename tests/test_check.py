"""The checker: the seed's design and the review's alternatives hold every invariant, and
each planted bug is found with its shortest counterexample ("the checker finds this bug")."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from msrvirt.check.explore import DesignCheck, Result, check_design, explore
from msrvirt.check.invariants import INVARIANTS, Applies, invariant
from msrvirt.check.parallel import CheckJob, check_all
from msrvirt.errors import UnknownNameError, UsageError
from msrvirt.machine.designs import DESIGNS, Verdict, design
from msrvirt.machine.model import (
    BITMAP,
    CPU_OR_NONE,
    FILTER_CHOICE,
    GUEST_CPU,
    MODE,
    OTHER_STACK,
    PARKED,
    RING,
    TASK,
    VALUE,
    Bounds,
    Ev,
    FilterChoice,
    GuestCpu,
    Machine,
    Mode,
    Parked,
    Ring,
    exc_stack,
    guest_value,
    stack_top,
)
from msrvirt.machine.spec import FLAG, Domain
from msrvirt.report.check import event_label, to_json, trace_lines


@pytest.fixture(scope="module")
def v9_result() -> Result:
    return explore(Machine(design("v9")))


def test_v9_is_explored_exhaustively(v9_result: Result) -> None:
    assert v9_result.complete
    assert v9_result.states == 273_860  # the default bounds: 2 CPUs, 3 tasks, 1 guest value
    assert v9_result.transitions > v9_result.states


@pytest.mark.parametrize("name", [i.name for i in INVARIANTS])
def test_each_invariant_holds_for_v9(v9_result: Result, name: str) -> None:
    assert v9_result.verdicts[name] is Verdict.HOLDS
    assert name not in v9_result.counterexamples


@pytest.mark.parametrize("name", ["minimal", "intercept-all", "invalidate-cache",
                                  "host-fields-from-msrs", "v9@cet-xsaves",
                                  "host-fields-from-msrs@stack-map-changed",
                                  "host-fields-from-msrs@host-supervisor-shstk"])
def test_the_review_alternatives_hold(name: str) -> None:
    res = check_design(design(name)).result
    assert res.complete
    assert res.verdict is Verdict.HOLDS, res.first_counterexample()


# (design, the invariant its shortest counterexample breaks, that length, every invariant it
# breaks within CAUGHT_DEPTH events).  All planted counterexamples are at most 6 events long.
CAUGHT_DEPTH = 8
PLANTED = [
    ("rsp1-no-host-load", "host-safety", 4, {"host-safety"}),
    ("stklvls-config-no-host-load", "host-safety", 4, {"host-safety"}),
    ("entry-no-guest-load", "guest-integrity", 3, {"guest-integrity", "migration"}),
    ("no-rsp0-restore", "host-safety", 5, {"host-safety"}),
    ("no-sync", "rsp0-cache", 4, {"rsp0-cache", "host-safety"}),
    ("get-soft-rsp0", "migration", 4, {"migration"}),
    ("pl0-ssp-passthrough", "pl0-ssp-virtual", 4,
     {"pl0-ssp-virtual", "guest-integrity", "migration"}),
    ("filter-no-recalc", "filter-compliance", 4, {"filter-compliance"}),
    ("cpuid-no-recalc", "pl0-ssp-virtual", 4, {"pl0-ssp-virtual", "guest-integrity", "migration"}),
    ("host-fields-once", "host-safety", 6, {"host-safety"}),
    # The planted hosts: KVM_RUN writes the host fields, VM entry, VM exit loads them, a host
    # NMI at level 1 uses RSP1 (the wrong stack) or SSP1 (0, not the host's shadow stack).
    ("v9@stack-map-changed", "host-safety", 4, {"host-safety"}),
    ("v9@host-supervisor-shstk", "host-safety", 4, {"host-safety"}),
]


def test_every_planted_single_level_design_is_in_the_table() -> None:
    planted = {n for n, d in DESIGNS.items() if d.expected is Verdict.FAILS and d.nested is None}
    assert planted == {p[0] for p in PLANTED}  # the nested ones: tests/test_check_nested.py


@pytest.mark.parametrize(("name", "inv", "length", "broken"), PLANTED, ids=[p[0] for p in PLANTED])
def test_the_checker_finds_this_bug(name: str, inv: str, length: int, broken: set[str],
                                    assert_replays: Callable[[DesignCheck, str], None]) -> None:
    chk = check_design(design(name), depth=CAUGHT_DEPTH)
    res = chk.result
    assert res.verdict is Verdict.FAILS
    assert {n for n, v in res.verdicts.items() if v is Verdict.FAILS} == broken
    assert len(res.counterexamples[inv]) == length
    assert_replays(chk, inv)


def test_each_single_level_invariant_is_broken_by_some_planted_bug() -> None:
    single = {i.name for i in INVARIANTS if i.applies is not Applies.NESTED}
    assert set().union(*(p[3] for p in PLANTED)) == single


def test_a_shallow_depth_misses_a_deep_bug_and_says_so() -> None:
    res = check_design(design("host-fields-once"), depth=5).result
    assert not res.complete and res.depth == 5
    assert res.verdict is Verdict.HOLDS


def test_exploration_is_deterministic() -> None:
    a = check_design(design("no-rsp0-restore"), depth=6).result
    b = check_design(design("no-rsp0-restore"), depth=6).result
    assert (a.states, a.transitions) == (b.states, b.transitions)
    assert a.counterexamples["host-safety"].events == b.counterexamples["host-safety"].events


def test_larger_bounds_explore_more_states() -> None:
    small = check_design(design("v9"), Bounds(cpus=1, tasks=2)).result
    assert small.complete and small.verdict is Verdict.HOLDS
    bigger = check_design(design("v9"), Bounds(cpus=2, tasks=3), depth=8).result
    assert bigger.states > small.states


def test_progress_is_reported() -> None:
    seen: list[tuple[int, int, int]] = []
    check_design(design("v9"), depth=12, progress=lambda *a: seen.append(a))
    assert seen and all(states > 0 for states, _, _ in seen)


def test_bad_depth_and_unknown_invariant_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="depth must be at least 1, not 0"):
        explore(Machine(design("v9")), depth=0)
    with pytest.raises(UnknownNameError):
        invariant("safety")


def test_the_trace_has_one_line_per_event_with_what_changed() -> None:
    chk = check_design(design("no-sync"), depth=CAUGHT_DEPTH)
    cx = chk.result.counterexamples["rsp0-cache"]
    lines = trace_lines(chk.machine, cx)
    assert len(lines) == len(cx) == 4
    assert lines[0].startswith("1. cpu0: vcpu thread calls KVM_RUN")
    assert "cpu0 FRED_RSP0: top(vcpu) -> g0" in lines[1]
    assert lines[-1].endswith("breaks rsp0-cache: cpu0: fred_rsp0 cache = top(vcpu)"
                              " (its task's stack top) but FRED_RSP0 = g0")
    assert event_label(cx.events[-1]) == "cpu0: KVM_RUN returns to user mode (vcpu_put)"


def test_json_has_exactly_the_issues_keys() -> None:
    checks = [check_design(design(n), depth=CAUGHT_DEPTH) for n in ("v9", "no-sync")]
    obj = to_json(checks)
    assert list(obj) == ["designs"]
    for entry in obj["designs"]:
        assert list(entry) == ["name", "expected", "verdict", "invariants", "counterexample",
                               "states", "seconds", "exhaustive", "depth"]
        # The invariants that judge single-level designs (nested ones have their own).
        assert list(entry["invariants"]) == [i.name for i in INVARIANTS
                                             if i.applies is not Applies.NESTED]
    v9, bug = obj["designs"]
    assert v9["counterexample"] is None and v9["verdict"] == "holds"
    # a depth-bounded "holds" says it is bounded (v9 has states deeper than CAUGHT_DEPTH)
    assert v9["exhaustive"] is False and v9["depth"] == CAUGHT_DEPTH
    assert bug["verdict"] == "fails" and len(bug["counterexample"]) == 4


@pytest.mark.parametrize(("domain", "value", "text"), [
    (VALUE, guest_value(1), "g1"),
    (VALUE, stack_top(0), "top(vcpu)"),
    (VALUE, exc_stack(1), "exc(cpu1)"),
    (VALUE, OTHER_STACK, "other-stack"),
    (GUEST_CPU, GuestCpu.FRED, "FRED"),
    (FILTER_CHOICE, FilterChoice.DENY_FRED, "deny FRED MSRs"),
    (BITMAP, 0, "intercepts none"),
    (BITMAP, 0b11 << 10, "intercepts PL0_SSP/rw"),
    (FLAG, 1, "1"),
    (CPU_OR_NONE, -1, "-"),
    (PARKED, Parked.KVM, "kvm"),
    (RING, Ring.USER, "ring 3"),
    (MODE, Mode.GUEST, "guest"),
    (TASK, 2, "T2"),
], ids=lambda x: x.name if isinstance(x, Domain) else None)
def test_every_domain_prints_in_words(domain: Domain, value: int, text: str) -> None:
    assert domain.text(value) == text


def test_every_event_kind_has_a_label() -> None:
    m = Machine(design("v9"))
    labels = {event_label(e) for e in m.events(m.initial())}
    assert "VMM sets CPUID: FRED" in labels
    assert "VMM sets MSR filter: deny FRED MSRs" in labels
    assert "cpu1: context switch to T2" in labels


def test_parallel_processes_give_the_sequential_results_in_order() -> None:
    names = ["no-sync", "v9", "host-fields-once"]
    jobs = [CheckJob(design=design(n), depth=CAUGHT_DEPTH) for n in names]
    finished: list[str] = []
    reported: set[str] = set()
    parallel = check_all(jobs, processes=2, done=lambda c: finished.append(c.design.name),
                         progress=lambda name, *_: reported.add(name))
    sequential = check_all(jobs, processes=1)
    assert [c.design.name for c in parallel] == names
    assert sorted(finished) == sorted(names)
    assert reported <= set(names) and reported  # v9 to depth 8 passes 20,000 states
    for par, seq in zip(parallel, sequential, strict=True):
        assert (par.result.states, par.result.transitions) == (seq.result.states,
                                                               seq.result.transitions)
        assert par.result.verdicts == seq.result.verdicts
        for name, cx in seq.result.counterexamples.items():
            assert trace_lines(par.machine, par.result.counterexamples[name]) == \
                trace_lines(seq.machine, cx)


def test_zero_processes_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="jobs must be at least 1, not 0"):
        check_all([CheckJob(design=design("v9"))], processes=0)


@pytest.mark.parametrize(("name", "message"), [
    ("v9@stack-map-changed",
     "host event on cpu0 used IA32_FRED_RSP1 = other-stack, the host needs exc(cpu0)"),
    ("v9@host-supervisor-shstk",
     "host event on cpu0 used IA32_FRED_SSP1 = 0, the host needs host-ssp"),
], ids=["a changed map runs the NMI on another stack", "supervisor shadow stacks get SSP1 = 0"])
def test_the_planted_hosts_break_the_field_v9_07_fills_wrongly(name: str, message: str) -> None:
    cx = check_design(design(name), depth=CAUGHT_DEPTH).result.counterexamples["host-safety"]
    assert cx.message == message
    assert [e.kind for e in cx.events] == [Ev.KVM_RUN, Ev.VM_ENTRY, Ev.VM_EXIT, Ev.HOST_EXCEPTION]


def test_on_a_cet_host_pl0_ssp_passthrough_breaks_integrity_only_through_kvm_set_msrs() -> None:
    """On a CET host the FPU switch moves a FRED-only guest's PL0_SSP at load and put, so the
    guest's own accesses keep their value; what breaks is that KVM_GET/SET_MSRS use
    fred_ssp0_fallback (v9 10/22)."""
    res = check_design(design("pl0-ssp-passthrough@cet-xsaves"), depth=CAUGHT_DEPTH).result
    assert set(res.counterexamples) == {"pl0-ssp-virtual", "migration", "guest-integrity"}
    integrity = res.counterexamples["guest-integrity"]
    assert len(integrity) == 5 and Ev.KVM_SET_MSRS in {e.kind for e in integrity.events}
    assert res.counterexamples["migration"].message == (
        "KVM_GET_MSRS would return IA32_PL0_SSP = g0, the guest's value is g1")


def test_the_default_host_keeps_the_state_counts_of_every_holding_design() -> None:
    # The host configuration is an input: on Linux v6.19 (the default) the declaration is the
    # one before it, state for state; Sean's host fields give the same machine there.
    assert check_design(design("host-fields-from-msrs")).result.states == 273_860
    assert check_design(design("minimal")).result.states == 244_700


def test_designs_with_equal_declarations_are_explored_once() -> None:
    # On any stack-level map, the host's own values in the host fields are v9's on Linux.
    names = ["v9", "host-fields-from-msrs@stack-map-changed", "no-sync"]
    finished: list[str] = []
    checks = check_all([CheckJob(design=design(n), depth=CAUGHT_DEPTH) for n in names],
                       processes=2, done=lambda c: finished.append(c.design.name))
    assert [c.design.name for c in checks] == names and sorted(finished) == sorted(names)
    assert checks[0].result is checks[1].result
    assert checks[2].result is not checks[0].result

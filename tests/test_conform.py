"""Probe scenarios, the model's predictions of what the kernel shows, and the comparison."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from msrvirt.arch.hosts import host
from msrvirt.arch.kvm import Access, ExitReason
from msrvirt.cli.options import parse_guest
from msrvirt.conform.predict import Prediction, Result, Scope, Seen, agrees, predict
from msrvirt.conform.scenario import GuestOps, ProbeScenario, ops_of, parse
from msrvirt.errors import UsageError
from msrvirt.policy.decide import Initiator, MsrAccess

PVM = host("pvm")
CORPUS = resources.files("msrvirt.conform") / "corpus"


def load(name: str) -> ProbeScenario:
    return parse(json.loads((CORPUS / name).read_text()))


def predictions(ps: ProbeScenario) -> list[Prediction]:
    return list(predict(PVM, parse_guest(ps.guest, PVM.features), ps))


def by_op(ps: ProbeScenario) -> list[tuple[object, Seen]]:
    return [(op, p.seen) for op, p in zip(ops_of(ps.steps), predictions(ps), strict=True)]


def test_every_corpus_file_parses_and_predicts_every_operation() -> None:
    files = sorted(f.name for f in CORPUS.iterdir() if f.name.endswith(".json"))
    assert len(files) >= 9
    for name in files:
        ps = load(name)
        assert len(predictions(ps)) == ps.op_count == len(ops_of(ps.steps)), name


def test_filter_allow_case_exits_for_the_three_denied_msrs() -> None:
    seen = [s for _, s in by_op(load("01-exit-test-filter-allow.json"))]
    # XSS read answered with 0, FLUSH_CMD answered #GP, 0x474f4f00 answered with its index
    assert seen[0] == Seen(result=Result.OK, exit=ExitReason.FILTER, value=0)
    assert seen[2] == Seen(result=Result.GP, exit=ExitReason.FILTER)
    assert seen[4] == Seen(result=Result.OK, exit=ExitReason.FILTER, value=0x474F4F00)
    # an unfiltered unknown MSR with only FILTER exits enabled: #GP, no exit
    assert seen[6] == Seen(result=Result.GP)


def test_filter_deny_then_replaced_leaves_only_the_unknown_msr_exiting() -> None:
    ps = load("02-exit-test-filter-deny.json")
    seen = by_op(ps)
    first, second = seen[:10], seen[11:]
    exits_before = {op.msr for op, s in first if s.exit is ExitReason.FILTER}  # type: ignore[attr-defined]
    assert exits_before == {0xC0000084, 0xC0000101, 0x1FC, 0xDEADBEF0}
    assert seen[10][1] == Seen(errno=None)  # the new filter is accepted
    after = {(op.msr, s.exit) for op, s in second if s.exit}  # type: ignore[attr-defined]
    assert after == {(0xDEADBEEF, ExitReason.UNKNOWN), (0xDEADBEEF, ExitReason.UNKNOWN),
                     (0xDEADBEF0, ExitReason.UNKNOWN), (0x808, ExitReason.INVAL)}


def test_invalid_flag_bits_are_einval_and_valid_ones_succeed() -> None:
    rows = by_op(load("04-exit-test-flags.json"))
    caps, filters, ranges = rows[:32], rows[32:64], rows[64:96]
    assert [s.errno for _, s in caps] == [None] * 3 + ["EINVAL"] * 29
    assert [s.errno for _, s in filters] == [None] + ["EINVAL"] * 31
    assert [s.errno for _, s in ranges] == [None] * 2 + ["EINVAL"] * 30


def test_fred_on_a_host_without_fred_is_unknown_whatever_the_guest_cpuid_asks() -> None:
    for name in ("06-fred-cpuid.json", "06-fred-nocpuid.json"):
        rows = [(op, s) for op, s in by_op(load(name)) if isinstance(op, MsrAccess)]
        guest = [(op, s) for op, s in rows if op.initiator is Initiator.GUEST]
        assert guest and all(s.result is Result.GP for _, s in guest)
        assert {s.exit for _, s in guest} == {None, ExitReason.UNKNOWN}
        host_rows = [(op, s) for op, s in rows if op.initiator is Initiator.HOST]
        # not advertised on this host: every host access fails, even a write of 0
        assert host_rows and all(s.result is Result.FAILED for _, s in host_rows)


def test_sweep_predicts_every_filter_exit_exactly() -> None:
    ps = load("09-sweep.json")
    preds = predictions(ps)
    ops = ops_of(ps.steps)
    assert len(ops) == 2 * 16384
    assert ps.filter is not None
    for op, p in zip(ops, preds, strict=True):
        assert isinstance(op, MsrAccess)
        filtered = not ps.filter.allows(op.msr, op.access)
        assert (p.seen.exit is ExitReason.FILTER) == filtered
        if filtered:
            assert p.scope is Scope.FULL


@pytest.mark.parametrize(("want", "scope", "seen", "ok"), [
    (Seen(result=Result.GP, exit=ExitReason.UNKNOWN), Scope.FULL,
     Seen(result=Result.GP, exit=ExitReason.UNKNOWN), True),
    (Seen(result=Result.GP, exit=ExitReason.UNKNOWN), Scope.FULL,
     Seen(result=Result.GP, exit=ExitReason.INVAL), False),
    (Seen(result=Result.OK, value=5), Scope.FULL, Seen(result=Result.OK, value=6), False),
    (Seen(result=Result.OK), Scope.FULL, Seen(result=Result.OK, value=6), True),
    (Seen(result=Result.GP, exit=ExitReason.UNKNOWN), Scope.FILTER,
     Seen(result=Result.OK), True),
    (Seen(result=Result.GP), Scope.FILTER, Seen(result=Result.GP, exit=ExitReason.FILTER), False),
    (Seen(errno="EINVAL"), Scope.FULL, Seen(errno=None), False),
    (Seen(errno=None), Scope.FULL, Seen(errno=None), True),
])
def test_agreement_within_the_predictions_scope(want: Seen, scope: Scope, seen: Seen,
                                               ok: bool) -> None:
    assert agrees(Prediction(seen=want, scope=scope, why=""), seen) is ok


@pytest.mark.parametrize(("obj", "message"), [
    ({"steps": []}, "must have a name"),
    ({"name": "x", "steps": []}, "non-empty list of steps"),
    ({"name": "x", "steps": [{"guest": [{"read": "FRED_RSP9"}]}]}, "MSR must be a known name"),
    ({"name": "x", "steps": [{"dance": []}]}, "kind must be guest, host"),
    ({"name": "x", "exits": ["sometimes"], "steps": [{"guest": []}]}, "exits must be among"),
    ({"name": "x", "answers": {"IA32_TSC": {"write": "0x5"}}, "steps": [{"guest": []}]},
     'must be "gp" or "ok" for a write'),
])
def test_bad_scenarios_name_the_bad_value(obj: object, message: str) -> None:
    with pytest.raises((UsageError, KeyError)) as info:
        parse(obj)
    assert message in str(info.value)


def test_writes_of_a_guest_op_keep_their_value() -> None:
    ps = parse({"name": "x", "steps": [{"guest": [{"write": "fred_rsp0", "value": "0x40"}]}]})
    assert ps.steps == (GuestOps(ops=(MsrAccess(0x1CC, Access.W, 0x40),)),)


def test_a_sweep_covers_the_ranges_it_names() -> None:
    ps = parse({"name": "s", "sweep": {"ranges": [["0x4b564d00", "0x4b564d0f"]],
                                       "filter": False}, "enforce_pv_cpuid": True})
    reads, writes = (step.ops for step in ps.steps)  # type: ignore[union-attr]
    assert [op.msr for op in reads] == list(range(0x4B564D00, 0x4B564D10))
    assert all(op.access is Access.W and op.value == 0 for op in writes)
    assert ps.filter is None and ps.enforce_pv_cpuid and not ps.hyperv


def test_the_builtin_sweep_keeps_its_filter_and_indices() -> None:
    ps = load("09-sweep.json")
    assert ps.filter is not None and 1 <= len(ps.filter.ranges) <= 16 and ps.op_count == 32768


@pytest.mark.parametrize(("obj", "bad"), [
    ({"name": "s", "sweep": {"ranges": [["0x10", "0x1"]]}}, "first <= last"),
    ({"name": "s", "sweep": {"ranges": "all"}}, "ranges"),
    ({"name": "s", "sweep": {"ranges": [["0x0", "0xffff"]]}}, "at most"),
    ({"name": "s", "sweep": {"nope": 1}}, "nope"),
    ({"name": "s", "sweep": {"filter": "yes"}}, "filter"),
    ({"name": "s", "hyperv": 1, "steps": [{"guest": [{"read": 16}]}]}, "hyperv"),
], ids=["a backwards range", "ranges not a list", "too many indices", "an unknown key",
        "filter not a boolean", "hyperv not a boolean"])
def test_bad_sweeps_are_refused_naming_the_value(obj: dict[str, object], bad: str) -> None:
    with pytest.raises(UsageError, match=bad):
        parse(obj)


def test_every_prediction_of_the_corpus_is_at_full_scope_on_pvm() -> None:
    # Since the MSR table covers every index KVM handles, no operation is filter-only.
    for f in sorted(f.name for f in CORPUS.iterdir() if f.name.endswith(".json")):
        ps = load(f)
        if ps.op_count > 5000:
            continue  # the 32k sweep is checked live (tests/live/test_live_conformance.py)
        assert all(p.scope is Scope.FULL for p in predictions(ps)), f


def test_the_probe_has_no_in_kernel_apic_so_x2apic_reads_fail() -> None:
    ps = parse({"name": "s", "exits": ["inval"], "steps": [{"guest": [{"read": "X2APIC_TPR"}]}]})
    (p,) = predictions(ps)
    assert p.seen == Seen(result=Result.GP, exit=ExitReason.INVAL) and p.scope is Scope.FULL


def test_a_write_stored_by_kvm_is_what_the_next_read_returns() -> None:
    ps = parse({"name": "s", "steps": [{"guest": [
        {"write": "IA32_MTRR_PHYSBASE0", "value": "0x1006"},
        {"read": "IA32_MTRR_PHYSBASE0"},
        {"write": "K7_HWCR", "value": "0x1000040"}, {"read": "K7_HWCR"}]}]})
    seen = [p.seen for p in predictions(ps)]
    assert seen[1].value == 0x1006
    assert seen[3].value == 0x1000000  # kvm_set_msr_common drops bit 6

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

"""The conformance corpus on this host's real KVM: every outcome the model predicts is seen."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from msrvirt.arch.cpuid import Feature
from msrvirt.cli import main
from msrvirt.cli.options import parse_guest
from msrvirt.conform.corpus import builtin, rows
from msrvirt.conform.predict import Scope, predict
from msrvirt.live import fingerprint
from msrvirt.live.conformance import edit_cpuid, run_scenario
from msrvirt.live.kvm import CpuidEntry, Kvm


@pytest.mark.kvm
def test_the_builtin_corpus_agrees_with_the_model_on_this_host(kvm: Kvm) -> None:
    host = fingerprint.host_profile(fingerprint.take(kvm))
    scenarios = builtin()
    all_rows = []
    for ps in scenarios:
        result = run_scenario(kvm, ps, parse_guest(ps.guest, host.features))
        all_rows += rows(ps, list(predict(host, result.guest_features, ps)), result.observed)
    disagree = [r.to_obj() for r in all_rows if not r.agree]
    assert disagree == []
    assert len(scenarios) >= 12 and len(all_rows) >= 36_000
    # Every operation is predicted at full scope: no abstaining past the filter.
    filter_only = [r.to_obj() for r in all_rows if r.predicted.scope is not Scope.FULL]
    assert filter_only == []


@pytest.mark.kvm
def test_a_wrong_prediction_is_caught(kvm: Kvm) -> None:
    host = fingerprint.host_profile(fingerprint.take(kvm))
    ps = next(p for p in builtin() if "permission bitmap" in p.name)
    result = run_scenario(kvm, ps, parse_guest(ps.guest, host.features))
    unfiltered = dataclasses.replace(ps, filter=None)  # the model forgets the initial filter
    wrong = rows(ps, list(predict(host, result.guest_features, unfiltered)), result.observed)
    assert [r.agree for r in wrong][:2] == [False, True]  # FS_BASE's FILTER exit is missed


@pytest.mark.kvm
def test_conformance_json_has_one_row_per_operation(kvm: Kvm,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conformance", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["host"]["backend"] == fingerprint.take(kvm).to_obj()["backend"]
    assert len(doc["results"]) == sum(ps.op_count for ps in builtin())
    row = doc["results"][0]
    assert set(row) == {"scenario", "op", "predicted", "observed", "agree"}
    assert all(r["agree"] for r in doc["results"])
    counts = {c["scenario"]: c for c in doc["summary"]}
    assert set(counts) == {ps.name for ps in builtin()}
    for c in counts.values():
        assert c["full"] + c["filter_only"] == c["operations"] and c["disagree"] == 0


@pytest.mark.kvm
def test_probe_writes_the_fingerprint_and_every_observation(
        kvm: Kvm, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "s.json"
    scenario.write_text(json.dumps({"name": "tiny", "exits": ["unknown"], "steps": [
        {"guest": [{"read": "IA32_FRED_RSP0"}, {"read": "IA32_EFER"}]},
        {"host": [{"read": "IA32_TSC"}]}]}))
    out = tmp_path / "out.json"
    assert main(["probe", str(scenario), "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["scenario"] == "tiny" and doc["host"]["kvm_api_version"] == 12
    observed = [r["observed"] for r in doc["results"]]
    assert observed[0] == {"result": "gp", "exit": "unknown", "value": None}
    assert observed[1] == {"result": "ok", "exit": None, "value": 0}
    assert observed[2]["result"] == "ok"
    capsys.readouterr()


def test_a_bad_scenario_file_is_one_line(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "bad.json"
    scenario.write_text(json.dumps({"name": "x", "steps": [{"guest": [{"read": "NOPE"}]}]}))
    assert main(["probe", str(scenario)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "NOPE" in err


@pytest.mark.parametrize(("wanted", "eax"), [
    (frozenset({Feature.FRED, Feature.LKGS}), (1 << 17) | (1 << 18) | 1),
    (frozenset(), 1),
])
def test_edit_cpuid_sets_and_clears_exactly_the_known_bits(wanted: frozenset[Feature],
                                                           eax: int) -> None:
    # leaf 7.1 EAX: bit 0 is not a feature msrvirt knows, so it is left alone
    entries = (CpuidEntry(function=7, index=1, eax=1 | (1 << 18)),
               CpuidEntry(function=0x80000008, index=0, ebx=1 << 12))
    edited = edit_cpuid(entries, wanted)
    assert edited[0].eax == eax
    assert edited[1].ebx == 0  # IBPB not wanted: cleared


def test_hyperv_leaves_move_kvms_leaves_behind_them() -> None:
    # cpuid.c kvm_cpuid_has_hyperv looks for "Hv#1" at 0x40000001; kvm_get_hypervisor_cpuid
    # then finds KVM's signature at 0x40000100.
    from msrvirt.arch.hosts import features_from_cpuid, kvm_cpuid_base
    from msrvirt.live.conformance import HYPERV_INTERFACE, with_hyperv_leaves
    kvm_sig = CpuidEntry(function=0x40000000, index=0, eax=0x40000001, ebx=0x4B4D564B,
                         ecx=0x564B4D56, edx=0x4D)
    kvm_features = CpuidEntry(function=0x40000001, index=0, eax=1 << 3)  # CLOCKSOURCE2
    entries = with_hyperv_leaves((kvm_sig, kvm_features))
    regs = {e.key: e.regs for e in entries}
    assert regs[(0x40000001, 0)][0] == HYPERV_INTERFACE
    assert kvm_cpuid_base(regs) == 0x40000100 and regs[(0x40000100, 0)][0] == 0x40000101
    assert Feature.KVM_CLOCK2 in features_from_cpuid(regs)

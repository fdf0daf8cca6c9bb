"""What a KVM engineer expects of the CLI: MSR patterns, a live or saved host, diffs across
hosts and guest CPUIDs, the Python API, one exit-status contract, and a quick start."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hostile import FINGERPRINT, assert_contract, run
from msrvirt import api
from msrvirt.arch.cpuid import Feature
from msrvirt.arch.hosts import host
from msrvirt.arch.kvm import Access, Backend, ExitReason
from msrvirt.arch.msrs import resolve_pattern
from msrvirt.cli import EXIT_STATUS_HELP, VERBS, chosen_verb
from msrvirt.errors import FilterError, UnknownNameError, UsageError
from msrvirt.live.errors import KvmError
from msrvirt.live.fingerprint import Fingerprint, host_profile
from msrvirt.policy.decide import Outcome

FRED = [0x1CC, 0x1CD, 0x1CE, 0x1CF, 0x1D0, 0x1D1, 0x1D2, 0x1D3, 0x1D4]  # msr-index.h
PL0_SSP = 0x6A4  # MSR_IA32_PL0_SSP, which the FRED spec also calls IA32_FRED_SSP0


# -- --msr patterns --------------------------------------------------------------------------

@pytest.mark.parametrize(("pattern", "indices"), [
    ("IA32_FRED_*", [*FRED, PL0_SSP]),
    ("fred_rsp?", FRED[:4]),
    ("msr_ia32_fred_ssp[123]", FRED[5:8]),
    ("*SSP*", [0x1D1, 0x1D2, 0x1D3, 0x6A4, 0x6A5, 0x6A6, 0x6A7, 0x6A8]),
    ("0x1cc", [0x1CC]),
], ids=["IA32_FRED_* is the nine FRED MSRs and FRED_SSP0, which is PL0_SSP",
        "a ? matches one character", "a [set] matches one of the set, prefixes ignored",
        "*SSP* is every shadow-stack pointer MSR", "an index is itself"])
def test_patterns_name_msrs_by_the_tables_names(pattern: str, indices: list[int]) -> None:
    got = list(resolve_pattern(pattern))
    # *SSP* may also match msrvirt-internal names (KVM_INTERNAL_GUEST_SSP); the real ones
    # are all there, in index order.
    assert got == sorted(got) and set(indices) <= set(got)
    if pattern != "*SSP*":
        assert got == indices


def test_a_pattern_matching_nothing_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UsageError, match="matches none"):
        resolve_pattern("*NOPE*")
    res = run(capsys, "explain", "--msr", "IA32_FRED_*,*NOPE*")
    assert_contract(res)
    assert res.status == 2 and "'*NOPE*'" in res.err


def test_explain_and_decide_take_patterns(capsys: pytest.CaptureFixture[str]) -> None:
    res = run(capsys, "explain", "--msr", "IA32_FRED_RSP*,tsc", "--json")
    assert res.status == 0
    assert [m["index"] for m in json.loads(res.out)["msrs"]] == [*FRED[:4], 0x10]
    res = run(capsys, "decide", "--msr", "fred_config*", "--read", "--json")
    assert res.status == 0 and json.loads(res.out)["access"]["index"] == 0x1D4
    res = run(capsys, "decide", "--msr", "IA32_FRED_*", "--read")
    assert_contract(res)
    assert res.status == 2 and "one MSR must be named, not 10" in res.err


# -- --host live and saved fingerprints ------------------------------------------------------

def test_a_saved_fingerprint_is_a_host(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bare = tmp_path / "fp.json"
    bare.write_text(json.dumps(FINGERPRINT))
    saved_run = tmp_path / "probe-out.json"  # as `msrvirt probe --json OUT` writes it
    saved_run.write_text(json.dumps({"host": FINGERPRINT, "scenario": "x", "results": []}))
    expected = host_profile(Fingerprint.from_obj(FINGERPRINT), name="fp")
    assert expected.backend is Backend.VMX and Feature.FRED in expected.features
    for path in (bare, saved_run):
        h = api.host(str(path))
        assert (h.backend, h.vendor, h.features, h.msr_index_list) == (
            expected.backend, expected.vendor, expected.features, expected.msr_index_list)
        res = run(capsys, "explain", "--host", str(path), "--msr", "fred_rsp0", "--json")
        assert res.status == 0
        # FRED in the fingerprint's supported CPUID: v9 passes FRED_RSP0 through
        assert json.loads(res.out)["msrs"][0]["read"]["outcome"] == "passthrough"


def test_host_live_is_this_machines_fingerprint(capsys: pytest.CaptureFixture[str]) -> None:
    from msrvirt.live.fingerprint import take
    from msrvirt.live.kvm import Kvm

    try:
        with Kvm() as kvm:
            expected = host_profile(take(kvm))
    except KvmError:
        res = run(capsys, "explain", "--host", "live")
        assert_contract(res)
        assert res.status == 2 and "/dev/kvm" in res.err
        return
    res = run(capsys, "bitmap", "--host", "live", "--json") if expected.backend is not \
        Backend.PVM else run(capsys, "explain", "--host", "live", "--json")
    assert res.status == 0, res.err
    assert json.loads(res.out)["scenario"]["backend"] == expected.backend.value
    assert api.host("live").features == expected.features


# -- --diff across hosts and guest CPUIDs -----------------------------------------------------

def test_bitmap_diff_against_a_host_without_fred(capsys: pytest.CaptureFixture[str]) -> None:
    res = run(capsys, "bitmap", "--diff", "host:intel-spr", "--json")
    assert res.status == 0
    diff = json.loads(res.out)["diff"]
    # intel-spr has no FRED: v9's rule 14 does not run, so the nine FRED MSRs intercept
    assert diff["against"] == "host intel-fred -> intel-spr"
    assert {(r["index"], r["access"]) for r in diff["rows"]} == {
        (m, a) for m in FRED for a in ("read", "write")}


def test_bitmap_diff_against_another_guest_and_policy(capsys: pytest.CaptureFixture[str]) -> None:
    rows = json.loads(run(capsys, "bitmap", "--diff", "guest:host,-shstk", "--json").out)[
        "diff"]["rows"]
    # vmx-12: PL0-3_SSP pass through only when the guest has SHSTK
    assert {r["index"] for r in rows} == {0x6A4, 0x6A5, 0x6A6, 0x6A7}
    rows = json.loads(run(capsys, "bitmap", "--diff", "policy:upstream", "--json").out)[
        "diff"]["rows"]
    assert {r["index"] for r in rows} == set(FRED)


def test_explain_diff_lists_what_a_guest_sees_change(capsys: pytest.CaptureFixture[str]) -> None:
    res = run(capsys, "explain", "--diff", "guest:host,-fred", "--msr", "IA32_FRED_*", "--json")
    assert res.status == 0
    doc = json.loads(res.out)
    assert "fred" not in doc["against"]["guest"]
    rows = {(r["index"], r["access"]): r for r in doc["diff"]["rows"]}
    assert set(rows) == {(m, a) for m in FRED for a in ("read", "write")}
    assert rows[(0x1CC, "read")]["before"]["outcome"] == "passthrough"
    assert rows[(0x1CC, "read")]["after"]["outcome"] == "gp"  # no FRED: UNSUPPORTED, no exits


@pytest.mark.parametrize("argv", [
    ["bitmap", "--diff", "host:amd-zen5"],
    ["explain", "--diff", "host:nope"],
    ["explain", "--diff", "cpu:x"],
    ["explain", "--diff", "host:amd-zen5", "--policy", "fred-v9"],
], ids=["a VMX page cannot be compared with an SVM one", "an unknown host",
        "an unknown kind of diff", "a policy the other host's backend cannot run"])
def test_bad_diffs_are_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    res = run(capsys, *argv)
    assert_contract(res)
    assert res.status == 2


# -- the Python API --------------------------------------------------------------------------

def test_the_api_answers_as_the_cli() -> None:
    s = api.scenario(host="intel-fred", guest="host,-fred", exits="unknown")
    assert Feature.FRED not in s.guest and s.exits is ExitReason.UNKNOWN
    d = api.decide(s, "IA32_FRED_RSP0")
    assert (d.outcome, d.exit_reason) == (Outcome.EXIT, ExitReason.UNKNOWN)
    assert api.decide(s, 0x1CC, write=0x1000, host_initiated=True).intercept
    rows = api.explain(api.scenario(), "IA32_FRED_*")
    assert [r.index for r in rows] == [*FRED, PL0_SSP]
    assert all(r.read.outcome is Outcome.PASSTHROUGH for r in rows)
    assert api.bitmap(s).intercepted(0x1CC, Access.R)
    assert api.msrs(["tsc", 0x1CC, "fred_rsp*"]) == [0x10, *FRED[:4]]
    assert api.host(host("amd-zen5")) is host("amd-zen5")
    assert api.scenario(host="amd-zen5").policy.name == "svm-fred"  # the backend's default


def test_the_api_raises_the_typed_errors() -> None:
    with pytest.raises(UnknownNameError):
        api.scenario(host="nope")
    with pytest.raises(UsageError):
        api.bitmap(api.scenario(host="pvm"))  # every access exits: no page
    with pytest.raises(FilterError, match="EINVAL"):
        api.filter({"default": "deny", "ranges": []})  # DEFAULT_DENY with no range
    with pytest.raises(UsageError, match="one MSR must be named"):
        api.decide(api.scenario(), "*")


# -- one contract, in --help, and a quick start ----------------------------------------------

@pytest.mark.parametrize("verb", VERBS)
def test_every_verbs_help_ends_with_the_exit_status_contract(
        verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [verb, "check", "--help"] if verb == "filter" else [verb, "--help"]
    res = run(capsys, *argv)
    assert res.status == 0 and res.out.rstrip().endswith(EXIT_STATUS_HELP.rstrip())
    assert "130" in res.out and "a filter KVM would reject" in res.out


def test_the_top_level_help_lists_every_verb(capsys: pytest.CaptureFixture[str]) -> None:
    res = run(capsys, "--help")
    assert res.status == 0 and all(v in res.out for v in VERBS) and "exit status" in res.out
    res = run(capsys, "nope")
    assert_contract(res)
    assert res.status == 2 and "invalid choice" in res.err


def test_only_the_verb_being_run_is_imported() -> None:
    assert chosen_verb(["decide", "--msr", "x"]) == "decide"
    assert chosen_verb(["--version"]) is None and chosen_verb(["nope"]) is None
    code = ("import sys; from msrvirt.cli import main;"
            " main(['decide', '--msr', 'fred_rsp0', '--read', '--json']);"
            " print(' '.join(sorted(sys.modules)), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    loaded = set(done.stderr.split())
    assert {f"msrvirt.cli.{v}" for v in VERBS} & loaded == {"msrvirt.cli.decide"}
    # nor what only other verbs, or rendering, need
    assert not {m for m in loaded if m.split(".")[0] in ("rich", "matplotlib")
                or m.startswith(("msrvirt.live", "msrvirt.machine", "msrvirt.check"))}


def test_only_the_cli_uses_the_api_and_the_writer() -> None:
    """msrvirt.api and msrvirt.output sit above every model layer, beside the CLI."""
    from test_layers import SRC, imported_packages

    offenders = [str(path.relative_to(SRC)) for path in sorted(SRC.rglob("*.py"))
                 if path.parent != SRC and path.parent.name != "cli"
                 and imported_packages(path) & {"api", "output"}]
    assert offenders == []

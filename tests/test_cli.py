"""The command line: outputs, JSON schemas, exact files, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hostile
from msrvirt.arch.hosts import host
from msrvirt.cli import main
from msrvirt.policy.intercepts import compute_intercepts
from msrvirt.policy.policies import policy
from msrvirt.policy.scenario import Scenario

FRED = ["IA32_FRED_RSP0", "IA32_FRED_RSP1", "IA32_FRED_RSP2", "IA32_FRED_RSP3",
        "IA32_FRED_STKLVLS", "IA32_FRED_SSP1", "IA32_FRED_SSP2", "IA32_FRED_SSP3",
        "IA32_FRED_CONFIG"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``msrvirt ARGV`` in this process (argparse's own exits give their status)."""
    res = hostile.run(capsys, *argv)
    return res.status, res.out, res.err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:  # type: ignore[type-arg]
    status, out, err = run(capsys, *argv, "--json")
    assert status == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


def by_name(doc: dict) -> dict:  # type: ignore[type-arg]
    return {row["name"]: row for row in doc["msrs"]}


@pytest.fixture
def deny_config_write(tmp_path: Path) -> str:
    path = tmp_path / "deny-config-write.json"
    path.write_text(json.dumps({"default": "allow", "ranges": [
        {"flags": ["write"], "base": "0x1d4", "nmsrs": 1, "deny": ["IA32_FRED_CONFIG"]}]}))
    return str(path)


def test_explain_default_scenario_prints_the_fred_v9_table(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "explain")
    assert status == 0
    assert "policy fred-v9" in out and "host intel-fred" in out
    line = next(x for x in out.splitlines() if "IA32_FRED_RSP0" in x)
    assert line.count("passthrough") == 2


def test_explain_json_schema_and_fred_passthrough(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, "explain")
    assert set(doc) == {"scenario", "msrs"}
    assert doc["scenario"]["policy"] == "fred-v9" and doc["scenario"]["host"] == "intel-fred"
    rows = by_name(doc)
    for name in FRED:
        for direction in ("read", "write"):
            d = rows[name][direction]
            assert set(d) == {"outcome", "exit_reason", "exit_reason_if_enabled", "intercept",
                              "exact", "missing", "reasons"}
            assert d["outcome"] == "passthrough" and d["intercept"] is False
    assert {"IA32_PL0_SSP", "IA32_U_CET", "IA32_TSC", "FS_BASE"} <= set(rows)


def test_explain_guest_without_fred(capsys: pytest.CaptureFixture[str]) -> None:
    rows = by_name(run_json(capsys, "explain", "--guest", "host,-fred"))
    assert all(rows[n]["read"]["intercept"] and rows[n]["write"]["intercept"] for n in FRED)
    assert rows["IA32_FRED_RSP0"]["read"]["outcome"] == "gp"
    rows = by_name(run_json(capsys, "explain", "--guest", "host,-fred", "--exits", "unknown"))
    assert rows["IA32_FRED_RSP0"]["read"]["outcome"] == "exit"
    assert rows["IA32_FRED_RSP0"]["read"]["exit_reason"] == "unknown"


def test_pl0_ssp_is_passthrough_only_with_shadow_stacks(capsys: pytest.CaptureFixture[str]) -> None:
    with_ss = by_name(run_json(capsys, "explain", "--msr", "pl0_ssp"))
    without = by_name(run_json(capsys, "explain", "--msr", "pl0_ssp", "--guest", "host,-shstk"))
    assert with_ss["IA32_PL0_SSP"]["read"]["outcome"] == "passthrough"
    assert without["IA32_PL0_SSP"]["read"]["outcome"] == "emulated"


def test_filter_denying_config_writes(capsys: pytest.CaptureFixture[str],
                                      deny_config_write: str) -> None:
    rows = by_name(run_json(capsys, "explain", "--filter", deny_config_write, "--exits", "filter"))
    cfg = rows["IA32_FRED_CONFIG"]
    assert (cfg["write"]["outcome"], cfg["write"]["exit_reason"]) == ("exit", "filter")
    assert cfg["read"]["outcome"] == "passthrough"
    rows = by_name(run_json(capsys, "explain", "--filter", deny_config_write))
    assert rows["IA32_FRED_CONFIG"]["write"]["outcome"] == "gp"


def test_explain_all_and_msr_lists(capsys: pytest.CaptureFixture[str]) -> None:
    everything = run_json(capsys, "explain", "--all")
    assert len(everything["msrs"]) > 90
    chosen = run_json(capsys, "explain", "--msr", "0x1cc,460,fred_config,0xdeadbeef")
    assert [r["index"] for r in chosen["msrs"]] == [0x1CC, 0x1D4, 0xDEADBEEF]


def test_decide_shows_the_chain(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "decide", "--msr", "fred_rsp0", "--write", "0x1001")
    assert status == 0 and "outcome: gp" in out and "hardware #GP" in out
    doc = run_json(capsys, "decide", "--msr", "fred_rsp0", "--read", "--host-initiated",
                   "--guest", "host,-fred")
    assert doc["decision"]["outcome"] == "emulated" and doc["decision"]["value"] == 0
    assert doc["access"]["initiator"] == "host"


def test_bitmap_out_writes_the_exact_page(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "page.bin"
    status, text, _ = run(capsys, "bitmap", "--out", str(out))
    assert status == 0 and "wrote 4096 bytes" in text
    h = host("intel-fred")
    expected = compute_intercepts(Scenario(host=h, guest=h.features, policy=policy("fred-v9")))
    assert expected.bitmap is not None
    assert out.read_bytes() == expected.bitmap.to_bytes()
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_bitmap_svm_page_is_8192_bytes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "msrpm.bin"
    assert run(capsys, "bitmap", "--host", "amd-zen5", "--out", str(out))[0] == 0
    assert len(out.read_bytes()) == 8192


def test_bitmap_diff_against_upstream(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, "bitmap", "--diff", "upstream")
    rows = doc["diff"]["rows"]
    assert len(rows) == 18 and {r["name"] for r in rows} == set(FRED)
    assert all(r["before"] == "passthrough" and r["after"] == "intercept" for r in rows)


def test_filter_check_valid(capsys: pytest.CaptureFixture[str], deny_config_write: str) -> None:
    status, out, _ = run(capsys, "filter", "check", deny_config_write)
    assert status == 0 and "valid" in out


def test_filter_check_invalid_names_errno_and_range(capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"ranges": [
        {"flags": ["read"], "base": 0, "nmsrs": 1, "deny": []},
        {"flags": 4, "base": 0, "nmsrs": 1, "deny": []}]}))
    status, out, err = run(capsys, "filter", "check", str(bad))
    assert status == 1 and out == ""  # a finding: KVM would reject it
    assert err.count("\n") == 1 and "EINVAL" in err and "range 1" in err


def test_filter_check_toml(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "f.toml"
    path.write_text('default = "deny"\n[[ranges]]\nflags = ["read"]\nbase = 0\nnmsrs = 32\n'
                    'allow = ["IA32_TSC"]\n')
    assert run(capsys, "filter", "check", str(path))[0] == 0


@pytest.mark.parametrize("argv", [
    ["explain", "--msr", "FRED_RSP9"],
    ["explain", "--guest", "host,-frde"],
    ["explain", "--host", "intel-frde"],
    ["explain", "--policy", "fred-v10"],
    ["explain", "--exits", "filter,oops"],
    ["explain", "--runtime", "warp_drive"],
    ["explain", "--host", "amd-zen5", "--policy", "fred-v9"],
    ["explain", "--filter", "/nonexistent/filter.json"],
    ["decide", "--msr", "fred_rsp0", "--write", "lots"],
    ["decide", "--msr", "fred_rsp0", "--write", "0x1_0000_0000_0000_0000"],
    ["bitmap", "--host", "pvm"],
    ["policies", "--show", "nope"],
    ["explain", "--bogus-option"],
    ["decide", "--msr", "fred_rsp0"],
])
def test_bad_input_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    status, _, err = run(capsys, *argv)
    assert status == 2
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("content", ["{not json", '{"default": "sometimes"}', "[1, 2]"])
def test_malformed_filter_files(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                content: str) -> None:
    path = tmp_path / "f.json"
    path.write_text(content)
    status, _, err = run(capsys, "explain", "--filter", str(path))
    assert status == 2 and err.count("\n") == 1 and str(path) in err


def test_host_profile_from_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "myhost.json"
    path.write_text(json.dumps({"name": "mine", "vendor": "intel", "backend": "vmx",
                                "features": ["fred", "lm"]}))
    rows = by_name(run_json(capsys, "explain", "--host", str(path), "--msr", "fred_rsp0,pl0_ssp"))
    assert rows["IA32_FRED_RSP0"]["read"]["outcome"] == "passthrough"
    assert rows["IA32_PL0_SSP"]["read"]["outcome"] == "emulated"


def test_listing_verbs(capsys: pytest.CaptureFixture[str]) -> None:
    pols = run_json(capsys, "policies")["policies"]
    assert {"upstream", "fred-v9", "fred-minimal", "fred-v6", "intercept-all"} <= {
        p["name"] for p in pols}
    hosts = run_json(capsys, "hosts")["hosts"]
    assert {"intel-fred", "intel-fred-nocet", "intel-spr", "amd-zen5", "pvm"} <= {
        h["name"] for h in hosts}
    feats = run_json(capsys, "hosts", "--features")["features"]
    assert {"name": "fred", "leaf": 7, "subleaf": 1, "reg": "eax", "bit": 17}.items() <= next(
        f for f in feats if f["name"] == "fred").items()
    assert run(capsys, "policies", "--show", "fred-v9")[0] == 0


def test_python_dash_m_runs_end_to_end() -> None:
    proc = subprocess.run([sys.executable, "-m", "msrvirt", "explain", "--msr", "fred_rsp0",
                           "--json"], capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout)["msrs"][0]["read"]["outcome"] == "passthrough"


def test_review_refuses_an_unwritable_report_path_before_doing_the_work(
        capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import msrvirt.cli.review as review_cli

    def must_not_run(**_: object) -> None:
        raise AssertionError("the review ran before checking its output path")

    monkeypatch.setattr(review_cli, "compute_inputs", must_not_run)
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["review", "--no-live", "--html", str(blocker / "review.html")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write" in err

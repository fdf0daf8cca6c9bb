"""`--nested` on explain, decide and bitmap: outputs, JSON schemas, the exact vmcs02 page, and
one-line errors with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from msrvirt.arch.vmcs12 import Control
from test_cli import FRED, run, run_json
from test_nested import kernel_vmcs02


@pytest.fixture
def l1_file(tmp_path: Path) -> Path:
    """An L1 that passes FS_BASE, FRED_RSP0-1 and CONFIG reads, and the x2APIC TPR."""
    path = tmp_path / "l1.json"
    path.write_text(json.dumps({
        "passthrough": {"rw": ["FS_BASE", "IA32_FRED_RSP0", "0x1cd", "X2APIC_TPR"],
                        "read": ["IA32_FRED_CONFIG"]},
        "controls": ["msr-bitmaps", "virtualize-x2apic"],
    }))
    return path


def test_explain_nested_kvm_v9_table(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "explain", "--nested", "kvm", "--msr", "fred_rsp0,fred_rsp1")
    assert status == 0
    assert "nested: L1 kvm:fred-v9" in out and "merge list v9" in out
    cells = {row[1]: row[3:6] for line in out.splitlines()
             if len(row := [c.strip() for c in line.split("│")]) > 6}
    assert cells["IA32_FRED_RSP0"] == ["00", "passthrough", "passthrough"]
    assert cells["IA32_FRED_RSP1"] == ["11", "emulated", "emulated"]


def test_explain_nested_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, "explain", "--nested", "kvm", "--merge", "fred-all", "--msr",
                   ",".join(FRED))
    assert set(doc) == {"scenario", "nested", "msrs"}
    assert doc["nested"]["l1"] == "kvm:fred-v9" and doc["nested"]["merge"]["name"] == "fred-all"
    assert doc["nested"]["vmcs12"]["controls"] == ["msr-bitmaps", "load-guest-fred",
                                                   "save-guest-fred", "load-host-fred"]
    assert doc["nested"]["vmcs12"]["fields"]["0x4002"] == hex(1 << 28)
    assert len(doc["nested"]["merge"]["msrs"]) == 14 + 9
    assert "nested_vmx_prepare_msr_bitmap" in doc["nested"]["merge"]["source"]
    for row in doc["msrs"]:
        for access in ("read", "write"):
            d = row[access]
            assert set(d) == {"outcome", "exit_reason", "exit_reason_if_enabled", "exact",
                              "missing", "vmcs02_intercept", "basis",
                              "vmcs01_intercept", "l1_intercept", "l1_wants_exit",
                              "nested_exit_reason", "reasons"}
            assert d["outcome"] == "passthrough" and d["basis"] == "merged"


def test_explain_nested_l2_without_fred_is_reflected(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, "explain", "--nested", "kvm:upstream", "--l2-guest", "host,-fred",
                   "--msr", "fred_rsp0")
    read = doc["msrs"][0]["read"]
    # upstream L0 lacks FRED, so L1 has none: L1's KVM intercepts it for L2.
    assert read["outcome"] == "reflected" and read["nested_exit_reason"] == 31
    assert doc["nested"]["l2_guest_caps"] is not None and "fred" not in doc["nested"]["l2_guest_caps"]


def test_decide_nested_chain(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "decide", "--nested", "kvm", "--msr", "fred_config",
                         "--write", "0")
    assert status == 0
    assert "L2 guest WRMSR IA32_FRED_CONFIG" in out and "outcome: emulated" in out
    for needle in ("merge list v9", "L1's bitmap", "nested_vmx_exit_handled_msr",
                   "emulated: stored"):
        assert needle in out


def test_decide_nested_json_filter_exit(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                        l1_file: Path) -> None:
    flt = tmp_path / "deny.json"
    flt.write_text(json.dumps({"default": "allow", "ranges": [
        {"flags": ["write"], "base": "0x1cc", "nmsrs": 1, "deny": ["IA32_FRED_RSP0"]}]}))
    doc = run_json(capsys, "decide", "--nested", str(l1_file), "--filter", str(flt),
                   "--exits", "filter", "--msr", "fred_rsp0", "--write", "0x1000")
    d = doc["decision"]
    assert d["outcome"] == "exit" and d["exit_reason"] == "filter" and d["kvm_ret"] == "FILTERED"
    assert d["vmcs01_intercept"] is True and d["l1_intercept"] is False
    assert doc["access"]["initiator"] == "guest" and doc["nested"]["kind"] == "file"


def test_bitmap_nested_out_is_the_kernels_merge(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                l1_file: Path) -> None:
    vmcs01, vmcs02 = tmp_path / "vmcs01.bin", tmp_path / "vmcs02.bin"
    assert run(capsys, "bitmap", "--out", str(vmcs01))[0] == 0
    doc = run_json(capsys, "bitmap", "--nested", str(l1_file), "--merge", "fred-all",
                   "--out", str(vmcs02))
    # L1's page, built from the file by hand: all ones, the listed bits cleared.
    l1 = bytearray(b"\xff" * 4096)
    for msr, reads, writes in ((0xC0000100, True, True), (0x1CC, True, True),
                               (0x1CD, True, True), (0x808, True, True), (0x1D4, True, False)):
        bit = msr & 0x1FFF
        base = 0x400 if msr >= 0xC0000000 else 0
        if reads:
            l1[base + bit // 8] &= ~(1 << bit % 8) & 0xFF
        if writes:
            l1[0x800 + base + bit // 8] &= ~(1 << bit % 8) & 0xFF
    expected = kernel_vmcs02(vmcs01.read_bytes(), bytes(l1),
                             Control.USE_MSR_BITMAPS | Control.VIRTUALIZE_X2APIC_MODE, "fred-all")
    assert vmcs02.read_bytes() == expected
    passed = {row["name"]: (row["read"], row["write"]) for row in doc["passthrough"]}
    assert passed == {"FS_BASE": (True, True), "IA32_FRED_RSP0": (True, True),
                      "IA32_FRED_RSP1": (True, True), "IA32_FRED_CONFIG": (True, False),
                      "X2APIC_TPR": (True, True)}
    assert doc["nested"]["l1"] == str(l1_file)


def test_bitmap_nested_diff_between_merge_lists(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "bitmap", "--nested", "kvm", "--diff", "fred-all")
    assert status == 0 and "v9 -> fred-all: 16 bit(s) differ" in out
    doc = run_json(capsys, "bitmap", "--nested", "kvm", "--merge", "upstream", "--diff", "v9")
    assert doc["diff"]["merge"] == "v9"
    assert [(r["name"], r["access"], r["after"]) for r in doc["diff"]["rows"]] == [
        ("IA32_FRED_RSP0", "read", "passthrough"), ("IA32_FRED_RSP0", "write", "passthrough")]


@pytest.mark.parametrize(("argv", "needle"), [
    (["explain", "--nested", "xen"], "'xen'"),
    (["explain", "--nested", "kvm:fred-v10"], "'fred-v10'"),
    (["explain", "--nested", "kvm:svm-fred"], "svm-fred"),
    (["explain", "--nested", "kvm", "--merge", "fred-some"], "'fred-some'"),
    (["explain", "--nested", "kvm", "--host", "amd-zen5"], "amd-zen5"),
    (["bitmap", "--nested", "intercept-all", "--host", "pvm"], "pvm"),
    (["explain", "--merge", "v9"], "--merge needs --nested"),
    (["explain", "--l2-guest", "host"], "--l2-guest needs --nested"),
    (["explain", "--vmcs12", "none"], "--vmcs12 needs --nested"),
    (["explain", "--nested", "intercept-all", "--l2-guest", "host"], "intercept-all"),
    (["explain", "--nested", "kvm", "--l2-guest", "host,-frde"], "'frde'"),
    (["explain", "--nested", "kvm", "--vmcs12", "apicv"], "'apicv'"),
    (["decide", "--nested", "kvm", "--msr", "fred_rsp0", "--read", "--host-initiated"],
     "host-initiated"),
    (["bitmap", "--nested", "no-bitmaps"], "no MSR bitmap"),
    (["bitmap", "--nested", "kvm", "--vmcs12=-msr-bitmaps"], "no MSR bitmap"),
    (["bitmap", "--nested", "kvm", "--diff", "fred-v9"], "'fred-v9'"),
    (["explain", "--nested", "/nonexistent/l1.json"], "/nonexistent/l1.json"),
])
def test_bad_nested_input_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str],
                                                 argv: list[str], needle: str) -> None:
    status, _, err = run(capsys, *argv)
    assert status == 2
    assert err.count("\n") == 1 and "Traceback" not in err and needle in err


@pytest.mark.parametrize(("content", "needle"), [
    ("{not json", "not valid json"), ("[1, 2]", "must be an object"),
    ('{"passthrough": {"rw": ["FRED_RSP9"]}}', "'FRED_RSP9'"),
    ('{"passthrough": {"rw": ["0x40000000"]}}', "0x40000000 is outside"),
    ('{"default": "sometimes"}', "'sometimes'"),
    ('{"controls": ["msr-bitmaps", "warp"]}', "'warp'"),
], ids=["not JSON", "not an object", "an unknown MSR", "an MSR outside the bitmap",
        "an unknown default", "an unknown control"])
def test_bad_l1_bitmap_files_name_the_file_and_the_value(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "l1.json"
    path.write_text(content)
    status, _, err = run(capsys, "bitmap", "--nested", str(path))
    assert status == 2 and err.count("\n") == 1
    assert err.startswith(f"msrvirt: {path}: ") and needle in err


def test_l1_bitmap_toml(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "l1.toml"
    path.write_text('default = "passthrough"\n[intercept]\nwrite = ["IA32_FRED_CONFIG"]\n')
    doc = run_json(capsys, "explain", "--nested", str(path), "--merge", "fred-all", "--msr",
                   "fred_config")
    row = doc["msrs"][0]
    assert row["read"]["outcome"] == "passthrough" and row["write"]["outcome"] == "reflected"

"""`msrvirt cost` and `msrvirt calibrate`: tables, JSON, the plot file, one-line errors."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from msrvirt.cli import calibrate as calibrate_cli
from msrvirt.cli import main
from msrvirt.cost.constants import DEFAULT_COSTS
from msrvirt.live.errors import KvmError
from msrvirt.report.cost import number


def test_the_default_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost"]) == 0
    out = capsys.readouterr().out
    assert "workload linux-fred: 100,000 guest context switches/s, guest FRED+SHSTK" in out
    rsp0 = next(line for line in out.splitlines() if "IA32_FRED_RSP0" in line)
    # fred-v9, fred-minimal, fred-v6: 0 exits; intercept-all: 100,000 exits, 4.33 % of a CPU
    assert [c.strip() for c in rsp0.split("│")[3:11]] == ["0"] * 6 + ["100,000", "4.33"]
    assert "cost per exit: 1,300 cycles (default) at 3 GHz (default)" in out
    for name in ("IA32_FRED_RSP1", "IA32_FRED_RSP2", "IA32_FRED_RSP3", "IA32_FRED_SSP3",
                 "IA32_PL0_SSP", "total"):
        assert name in out


def test_json_is_one_object_with_every_policy_and_row(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost", "--json", "--policy", "fred-v9", "intercept-all",
                 "--context-switches", "50000"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert set(obj) == {"workload", "costs", "policies"}
    assert obj["workload"]["rates"]["guest_context_switches"]["per_second"] == 50_000
    assert obj["costs"] == DEFAULT_COSTS.to_obj()
    v9, all_ = obj["policies"]
    assert (v9["policy"], v9["design"], v9["exits_per_s"]) == ("fred-v9", "v9", 0)
    assert all_["policy"] == "intercept-all"
    rsp0 = all_["rows"][0]
    assert set(rsp0) == {"index", "name", "exits_per_s", "emulations_per_s", "direct_per_s",
                         "cpu_percent", "exits_by_event"}
    assert (rsp0["index"], rsp0["name"]) == (0x1CC, "IA32_FRED_RSP0")
    assert rsp0["exits_by_event"]["guest_context_switches"] == 50_000
    assert len(all_["rows"]) == 10


def test_policies_may_be_comma_separated_and_repeated(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost", "--json", "--policy", "fred-v6,fred-minimal", "--policy", "fred-v6"]) == 0
    names = [p["policy"] for p in json.loads(capsys.readouterr().out)["policies"]]
    assert names == ["fred-v6", "fred-minimal"]


def test_the_idle_workload(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost", "--workload", "linux-fred-idle", "--policy", "intercept-all"]) == 0
    assert "workload linux-fred-idle: 20 guest context switches/s" in capsys.readouterr().out


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    width, height = struct.unpack(">II", data[16:24])
    assert data[-8:-4] == b"IEND"
    return width, height


def test_the_plot_is_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "sweep.png"
    assert main(["cost", "--plot", str(plot)]) == 0
    assert f"wrote {plot}" in capsys.readouterr().out
    assert _png_size(plot.read_bytes()) == (1000, 420)
    assert main(["cost", "--json", "--plot", str(plot)]) == 0
    assert json.loads(capsys.readouterr().out)["plot"] == str(plot)


def test_a_workload_file_and_a_costs_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    wfile, cfile = tmp_path / "w.json", tmp_path / "c.json"
    obj["workload"]["name"] = "mine"
    wfile.write_text(json.dumps(obj["workload"]))
    costs = obj["costs"]
    costs["in_kernel_exit_cycles"].update(value=2600, measured=True)
    cfile.write_text(json.dumps(costs))
    assert main(["cost", "--workload", str(wfile), "--costs", str(cfile), "--policy",
                 "intercept-all"]) == 0
    out = capsys.readouterr().out
    assert "workload mine" in out and "2,600 cycles (measured)" in out
    assert "8.67" in out  # twice the CPU time of 1,300 cycles


@pytest.mark.parametrize(("argv", "message"), [
    (["--workload", "oltp"], "msrvirt: workload must be a known name, not 'oltp'"),
    (["--policy", "svm-fred"], "msrvirt: policy must be a known name, not 'svm-fred'"),
    (["--policy", "nope"], "msrvirt: policy must be a known name, not 'nope'"),
    (["--context-switches", "-1"], "msrvirt: --context-switches must be a number >= 0, not -1"),
    (["--context-switches", "inf"], "msrvirt: --context-switches must be a number >= 0, not inf"),
    (["--workload", "missing.json"], "msrvirt: missing.json: cannot read"),
    (["--costs", "missing.json"], "msrvirt: missing.json: cannot read"),
], ids=["unknown workload", "policy without a design", "unknown policy", "negative rate",
        "infinite rate", "missing workload file", "missing costs file"])
def test_bad_input_is_one_line_and_exit_2(
        argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_malformed_files_are_one_line_and_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x"}')
    for option in ("--workload", "--costs"):
        assert main(["cost", option, str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"msrvirt: {bad}: ") and err.count("\n") == 1
    # a missing directory is not created (nobody asked for it); nor is a path through a file
    assert main(["cost", "--plot", str(tmp_path / "new" / "dir.png")]) == 2
    assert capsys.readouterr().err.startswith("msrvirt: cannot write")
    assert not (tmp_path / "new").exists()
    assert main(["cost", "--plot", str(bad / "x.png")]) == 2
    assert capsys.readouterr().err.startswith("msrvirt: cannot write")


def test_cost_runs_in_well_under_a_second() -> None:
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "msrvirt", "cost"], capture_output=True,
                          check=True, text=True)
    elapsed = time.perf_counter() - t
    assert "intercept-all" in done.stdout
    assert elapsed < 1.0, f"msrvirt cost took {elapsed:.2f} s"


def test_calibrate_without_kvm_prints_the_defaults(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    def no_kvm(iterations: int, repeats: int) -> None:
        raise KvmError("open /dev/kvm", 2)

    monkeypatch.setattr(calibrate_cli, "measure", no_kvm)
    out_file = tmp_path / "costs.json"
    assert main(["calibrate", "--out", str(out_file)]) == 0
    captured = capsys.readouterr()
    assert "nothing measured" in captured.err and captured.err.count("\n") == 1
    assert "built-in defaults" in captured.out and "default" in captured.out
    assert json.loads(out_file.read_text()) == DEFAULT_COSTS.to_obj()
    assert main(["calibrate", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == DEFAULT_COSTS.to_obj()


def test_calibrate_refuses_zero_iterations(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate", "--iterations", "0"]) == 2
    assert capsys.readouterr().err.startswith("msrvirt: --iterations and --repeats must be at least 1")


@pytest.mark.parametrize(("x", "text"), [
    (0, "0"), (0.000556, "0.000556"), (3.61e-8, "3.61e-08"), (4.3333, "4.33"),
    (999.4, "999"), (100_000.0028, "100,000"),
])
def test_numbers_are_readable(x: float, text: str) -> None:
    assert number(x) == text

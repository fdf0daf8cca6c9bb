"""`msrvirt calibrate` on the real /dev/kvm: both round trips measured, the file feeds `cost`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from msrvirt.cli import main
from msrvirt.live.calibrate import Calibration, calibrate, cpu_mhz, host_description
from msrvirt.live.kvm import Kvm


@pytest.mark.kvm
def test_both_round_trips_are_measured(kvm: Kvm) -> None:
    cal = calibrate(kvm, iterations=2000, repeats=2)
    assert isinstance(cal, Calibration)
    assert cal.host == host_description() and "KVM on" in cal.host
    # An emulated WRMSR costs something; an exit to this Python process costs more.
    assert 0 < cal.in_kernel_ns < cal.userspace_ns
    assert "best of 2 x 2,000" in cal.in_kernel_how and "best of 2 x 2,000" in cal.userspace_how


@pytest.mark.kvm
def test_calibrate_writes_a_file_cost_reads(
        kvm: Kvm, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "costs.json"
    assert main(["calibrate", "--iterations", "2000", "--repeats", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "measured" in printed and f"wrote {out}" in printed
    obj = json.loads(out.read_text())
    assert obj["host"].startswith("measured on ")
    assert obj["in_kernel_exit_cycles"]["measured"] and obj["userspace_exit_cycles"]["measured"]
    assert obj["cpu_ghz"]["measured"] == (cpu_mhz() is not None)
    assert main(["cost", "--costs", str(out), "--json", "--policy", "intercept-all"]) == 0
    cost = json.loads(capsys.readouterr().out)
    assert cost["costs"] == obj
    assert cost["policies"][0]["cpu_percent"] > 0


def test_cpu_mhz_reads_proc_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: X\ncpu MHz\t\t: 2596.124\n")
    assert cpu_mhz(str(info)) == 2596.124
    info.write_text("processor\t: 0\n")
    assert cpu_mhz(str(info)) is None
    assert cpu_mhz(str(tmp_path / "none")) is None

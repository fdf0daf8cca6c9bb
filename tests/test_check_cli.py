"""`msrvirt check`: exit statuses, JSON, one-line errors."""

from __future__ import annotations

import json

import pytest

from msrvirt.cli import main
from msrvirt.machine.designs import DESIGNS
from msrvirt.machine.hostconf import HOST_CONFIGS


def test_json_for_v9_and_a_planted_bug_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--design", "v9", "--design", "no-sync", "--depth", "8", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    v9, bug = obj["designs"]
    assert (v9["name"], v9["expected"], v9["verdict"]) == ("v9", "holds", "holds")
    assert (bug["name"], bug["expected"], bug["verdict"]) == ("no-sync", "fails", "fails")
    assert bug["invariants"]["rsp0-cache"] == "fails"
    assert bug["counterexample"][-1].startswith("4. cpu0: KVM_RUN returns to user mode")
    assert isinstance(bug["states"], int) and isinstance(bug["seconds"], float)


def test_all_designs_within_depth_8_are_as_expected(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--all-designs", "--depth", "8"]) == 0
    out = capsys.readouterr().out
    assert (f"all {len(DESIGNS)} verdicts as expected: 10 hold, 16 planted bugs caught,"
            " 1 finding shown") in out
    assert "host-fields-once: breaks host-safety in 6 events" in out
    assert "v9@host-supervisor-shstk: breaks host-safety in 4 events" in out


def test_a_missed_bug_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--design", "host-fields-once", "--depth", "3"]) == 1
    assert "not as expected: host-fields-once" in capsys.readouterr().out


def test_list_designs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--list-designs", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in obj["designs"]] == list(DESIGNS)
    assert [h["name"] for h in obj["hosts"]] == list(HOST_CONFIGS)
    assert {d["name"]: d["host"] for d in obj["designs"]}["v9@cet-xsaves"] == "cet-xsaves"


def test_a_design_on_another_host_is_checked_by_its_pair_name(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--design", "pl0-ssp-passthrough@cet-xsaves", "--depth", "8",
                 "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)["designs"]
    assert (entry["name"], entry["expected"], entry["verdict"]) == (
        "pl0-ssp-passthrough@cet-xsaves", "fails", "fails")


@pytest.mark.parametrize(("argv", "message"), [
    (["--design", "v10"], "msrvirt: design must be a known name, not 'v10'"),
    (["--design", "v9@mars"], "msrvirt: host configuration must be a known name, not 'mars'"),
    (["--cpus", "9"], "msrvirt: cpus must be between 1 and 8, not 9"),
    (["--tasks", "1"], "msrvirt: tasks must be between cpus (2) and 16, not 1"),
    (["--depth", "0"], "msrvirt: depth must be at least 1, not 0"),
    (["--jobs", "0"], "msrvirt: jobs must be at least 1, not 0"),
])
def test_bad_input_is_one_line_and_exit_2(
        argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_an_argument_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["check", "--cpus", "two"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_list_designs_as_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--list-designs"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in DESIGNS)

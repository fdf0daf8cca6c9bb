"""SPIN as the second engine: the Promela model, pan's answers read back, and the
differential test: both engines, reading one declaration, report the same states,
transitions, verdicts and counterexample lengths for every design at the default bounds
and at 4 tasks.

The tests that run spin skip with the reason where spin or a C compiler is missing
(`make test` installs them as root); CI sets MSRVIRT_REQUIRE_SPIN=1 so they must run.
"""

from __future__ import annotations

import os
import re

import pytest

from msrvirt.check.explore import DesignCheck, check_design
from msrvirt.check.parallel import CheckJob, check_all
from msrvirt.check.promela import EVENT_MARK, INVARIANT_MARK, parse_pan, promela, trail_events
from msrvirt.cli import main
from msrvirt.machine.designs import DESIGNS, design
from msrvirt.machine.model import Bounds, Machine
from msrvirt.report.check import trace_lines
from msrvirt.spin.run import SpinError, SpinRun, Tools, check_all_with_spin, check_with_spin, find_tools

BOUNDS = {"at the default bounds": Bounds(), "at 4 tasks": Bounds(tasks=4)}


@pytest.fixture(scope="module")
def tools() -> Tools:
    try:
        return find_tools()
    except SpinError as err:
        if os.environ.get("MSRVIRT_REQUIRE_SPIN"):
            pytest.fail(f"MSRVIRT_REQUIRE_SPIN is set but {err}")
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def both_engines(tools: Tools) -> dict[tuple[str, str], tuple[DesignCheck, SpinRun]]:
    jobs = [CheckJob(design=d, bounds=b) for b in BOUNDS.values() for d in DESIGNS.values()]
    keys = [(where, name) for where in BOUNDS for name in DESIGNS]
    python = check_all(jobs)
    spin = check_all_with_spin(jobs)
    return dict(zip(keys, zip(python, spin, strict=True), strict=True))


@pytest.mark.parametrize("where", BOUNDS)
@pytest.mark.parametrize("name", DESIGNS)
def test_both_engines_explore_the_same_states_with_the_same_verdicts(
        both_engines: dict[tuple[str, str], tuple[DesignCheck, SpinRun]], name: str,
        where: str) -> None:
    python, spin = both_engines[where, name]
    py, sp = python.result, spin.check.result
    assert sp.complete and py.complete
    assert spin.pan.stored == py.states + 1  # pan also stores the state before its first step
    assert (sp.states, sp.transitions, sp.depth) == (py.states, py.transitions, py.depth)
    assert sp.verdicts == py.verdicts
    assert {n: len(c) for n, c in sp.counterexamples.items()} == \
        {n: len(c) for n, c in py.counterexamples.items()}  # both shortest


def test_a_spin_trail_is_replayed_on_msrvirts_machine(tools: Tools) -> None:
    run = check_with_spin(CheckJob(design=design("no-sync")), tools=tools)
    cx = run.check.result.counterexamples["rsp0-cache"]
    lines = trace_lines(run.check.machine, cx)
    assert lines[0].startswith("1. cpu0: vcpu thread calls KVM_RUN")
    assert lines[-1].endswith("breaks rsp0-cache: cpu0: fred_rsp0 cache = top(vcpu)"
                              " (its task's stack top) but FRED_RSP0 = g0")


@pytest.mark.parametrize("name", ["host-fields-once", "entry-no-guest-load", "v9"])
def test_a_depth_bound_cuts_both_engines_at_the_same_states(tools: Tools, name: str) -> None:
    job = CheckJob(design=design(name), depth=5)
    spin = check_with_spin(job, tools=tools).check.result
    python = check_design(job.design, depth=5).result
    assert not spin.complete and not python.complete
    assert (spin.states, spin.depth, spin.verdicts) == (python.states, python.depth,
                                                        python.verdicts)


def test_the_cli_runs_spin_and_exits_as_the_python_engine_does(
        tools: Tools, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--engine", "spin", "--design", "filter-no-recalc", "--depth", "8"]) == 0
    out = capsys.readouterr().out
    assert "engine: spin" in out
    assert "filter-no-recalc: breaks filter-compliance in 4 events" in out


def test_missing_tools_are_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("CC", raising=False)
    assert main(["check", "--engine", "spin"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("msrvirt: the spin engine needs spin and a C compiler on PATH")
    assert err.count("\n") == 1


# -- the model's text and pan's output, without running spin -------------------------------------


def test_the_model_has_a_global_per_variable_and_a_d_step_per_event() -> None:
    m = Machine(design("v9"))
    text = promela(m).text
    assert len(re.findall(r"^(?:byte|short|int) \w+ = -?\d+;", text, re.MULTILINE)) == len(m.fields)
    assert text.count(":: d_step {") == len(m.model.events)
    assert "byte cpu1_task = 1;" in text  # task i starts on CPU i
    assert "short vmcs_on = -1;" in text


def test_the_model_follows_the_designs_faults() -> None:
    v9, once = (promela(Machine(design(n))).text for n in ("v9", "host-fields-once"))
    assert "(vmcs_on == -1)" not in v9
    assert "(vmcs_on == -1)" in once  # the host RSP1 field is written at the first load only


# What pan 6.5.2 printed for a model with two invariants broken (lines cut).
PAN_OUTPUT = f"""\
{INVARIANT_MARK} 2
pan:1: assertion violated 0 (at depth 4)
pan: wrote model.pml1.trail
{INVARIANT_MARK} 0
pan: wrote model.pml2.trail
Depth=      20 States= 2.69e+05 Transitions= 2.52e+06 Memory=   162.766	t=      0.8 R=   3e+05

(Spin Version 6.5.2 -- 6 December 2019)
State-vector 60 byte, depth reached 28, errors: 2
   644421 states, stored
          644421 nominal states (stored-atomic)
  5361297 states, matched
  6005718 transitions (= stored+matched)
   70.796	actual memory usage for states
pan: elapsed time 2.33 seconds
"""


def test_pans_report_is_read_with_each_errors_invariant_and_trail() -> None:
    report = parse_pan(PAN_OUTPUT)
    assert report.stored == 644_421 and report.transitions == 6_005_718
    assert report.depth == 28 and not report.truncated
    assert report.errors == ((2, "model.pml1.trail"), (0, "model.pml2.trail"))
    assert report.seconds == 2.33
    assert report.state_bytes == pytest.approx(70.796 * 2**20 / 644_421)
    assert parse_pan(PAN_OUTPUT + "error: max search depth too small\n").truncated


def test_a_replayed_trail_gives_its_events_in_order() -> None:
    replay = f"{EVENT_MARK} 23\n{EVENT_MARK} 21\n{INVARIANT_MARK} 2\n{EVENT_MARK} 17\n" \
             "spin: trail ends after 4 steps\n"
    assert trail_events(replay) == [23, 21, 17]


def test_pan_output_without_counts_is_an_error() -> None:
    with pytest.raises(ValueError, match="states, stored"):
        parse_pan("pan: elapsed time 0 seconds\n")

"""Hypothesis drives the machine with long random event sequences and checks the checker's
invariants after every event: for the designs that hold, none may ever break."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from msrvirt.check.explore import violations
from msrvirt.machine.designs import DESIGNS, Verdict
from msrvirt.machine.model import Bounds, Machine, State

HOLDING = [name for name, d in DESIGNS.items() if d.expected is Verdict.HOLDS]


def make_run(name: str, bounds: Bounds) -> type[RuleBasedStateMachine]:
    machine = Machine(DESIGNS[name], bounds)  # pure: one compilation serves every run

    class Run(RuleBasedStateMachine):
        machine: Machine
        state: State

        @initialize()
        def start(self) -> None:
            self.machine = machine
            self.state = self.machine.initial()

        @rule(data=st.data())
        def one_event(self, data: st.DataObject) -> None:
            m, s = self.machine, self.state
            ev = data.draw(st.sampled_from(m.events(s)))
            broken = violations(m, s, ev)
            assert not broken, broken
            self.state = m.step(s, ev)

        @invariant()
        def state_invariants_hold(self) -> None:
            if not hasattr(self, "machine"):
                return
            broken = violations(self.machine, self.state)
            assert not broken, broken

    Run.__name__ = f"Run_{name.replace('-', '_')}"
    return Run


@pytest.mark.parametrize("name", HOLDING)
@pytest.mark.parametrize("bounds", [Bounds(), Bounds(cpus=3, tasks=5, values=3)],
                         ids=["default bounds", "3 cpus 5 tasks 3 values"])
def test_random_long_runs_never_break_an_invariant(name: str, bounds: Bounds) -> None:
    run = make_run(name, bounds)
    run.TestCase.settings = settings(max_examples=30, stateful_step_count=400, deadline=None)
    run.TestCase().runTest()


def test_random_runs_find_a_planted_bug() -> None:
    """The same driver fails on a planted bug: the invariants are live, not vacuous."""
    run = make_run("rsp1-no-host-load", Bounds())
    run.TestCase.settings = settings(max_examples=200, stateful_step_count=100, deadline=None,
                                     database=None, derandomize=True)
    with pytest.raises(AssertionError, match="host-safety"):
        run.TestCase().runTest()

"""Explore a machine breadth-first, exhaustively, with the shortest counterexample per invariant.

States are deduplicated in a dict that also records each state's parent, so the first
violation of an invariant found in breadth-first order comes with a shortest trace.
Events are enumerated in the machine's fixed order, so runs are deterministic.
Violations are values (`Counterexample`), never exceptions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from msrvirt.check.invariants import INVARIANTS, Invariant, Scope, TransitionCheck
from msrvirt.errors import UsageError
from msrvirt.machine.designs import Design, Verdict
from msrvirt.machine.model import DEFAULT_BOUNDS, Bounds, Ev, Event, Machine, ObsKind, State

# Events that consume or return MSR values; the others have no observation.
OBSERVABLE = frozenset({Ev.HOST_USER_EVENT, Ev.HOST_EXCEPTION, Ev.GUEST_EVENT_RING3,
                        Ev.GUEST_EVENT_RING0, Ev.GUEST_RDMSR, Ev.GUEST_WRMSR})

Progress = Callable[[int, int, int], None]  # (states, depth done, frontier size)
PROGRESS_EVERY = 20_000  # states between two progress callbacks


@dataclass(frozen=True, slots=True, kw_only=True)
class Counterexample:
    """The shortest sequence of events from the initial state that breaks one invariant."""

    invariant: str
    message: str
    initial: State
    events: tuple[Event, ...]
    states: tuple[State, ...]  # states[i] is the state after events[i]

    def __len__(self) -> int:
        return len(self.events)


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """The outcome of one exploration."""

    verdicts: dict[str, Verdict]  # invariant name -> verdict, in INVARIANTS order
    counterexamples: dict[str, Counterexample]  # for each failing invariant
    states: int
    transitions: int
    depth: int  # BFS levels fully explored
    complete: bool  # False when the depth bound cut the exploration short
    seconds: float

    @property
    def verdict(self) -> Verdict:
        fails = any(v is Verdict.FAILS for v in self.verdicts.values())
        return Verdict.FAILS if fails else Verdict.HOLDS

    @property
    def states_per_second(self) -> float:
        return self.states / self.seconds if self.seconds > 0 else float(self.states)

    def first_counterexample(self) -> Counterexample | None:
        """The shortest counterexample (ties: the invariant listed first)."""
        ordered = [self.counterexamples[n] for n in self.verdicts if n in self.counterexamples]
        return min(ordered, key=len) if ordered else None


Parents = dict[State, tuple[State, Event] | None]


def _trace(parents: Parents, last: State) -> list[tuple[Event, State]]:
    out = []
    state = last
    link = parents[state]
    while link is not None:
        prev, ev = link
        out.append((ev, state))
        state = prev
        link = parents[state]
    out.reverse()
    return out


def explore(machine: Machine, *, depth: int | None = None,
            invariants: Sequence[Invariant] = INVARIANTS,
            progress: Progress | None = None) -> Result:
    """Explore every state reachable from ``machine.initial()`` within ``depth`` events.

    Checks every state invariant on each new state and every transition invariant on each
    (state, event) pair; an invariant is no longer checked once it has a counterexample.
    """
    if depth is not None and depth < 1:
        raise UsageError(f"depth must be at least 1, not {depth}")
    start = time.perf_counter()
    init = machine.initial()
    parents: Parents = {init: None}
    found: dict[str, Counterexample] = {}
    state_pending = [i for i in invariants if i.scope is Scope.STATE]
    trans_pending = [i for i in invariants if i.scope is Scope.TRANSITION]

    def record(inv: Invariant, message: str, last: State) -> None:
        steps = _trace(parents, last)
        found[inv.name] = Counterexample(
            invariant=inv.name, message=message, initial=init,
            events=tuple(e for e, _ in steps), states=tuple(s for _, s in steps))

    def check_state(state: State) -> None:
        for inv in list(state_pending):
            assert inv.state_check is not None
            message = inv.state_check(machine, state)
            if message is not None:
                record(inv, message, state)
                state_pending.remove(inv)

    check_state(init)
    # Transition invariants still pending, with their checks, by the observation kind judged.
    judges: list[list[tuple[Invariant, TransitionCheck]]] = [
        [(i, i.transition_check) for i in trans_pending
         if k in i.observes and i.transition_check is not None]
        for k in ObsKind]
    events, step, observe = machine.events, machine.step, machine.observe
    frontier = [init]
    level = transitions = 0
    next_report = PROGRESS_EVERY
    while frontier and (depth is None or level < depth):
        following: list[State] = []
        add = following.append
        for state in frontier:
            enabled = events(state)
            transitions += len(enabled)
            for ev in enabled:
                after = step(state, ev)
                if ev.kind in OBSERVABLE:
                    obs = observe(state, ev)
                    assert obs is not None
                    caught = len(found)
                    for inv, judge in judges[obs.kind]:
                        message = judge(machine, state, ev, obs)
                        if message is not None:
                            # The trace ends with this event, wherever it leads.
                            steps_to = [*_trace(parents, state), (ev, after)]
                            found[inv.name] = Counterexample(
                                invariant=inv.name, message=message, initial=init,
                                events=tuple(e for e, _ in steps_to),
                                states=tuple(s for _, s in steps_to))
                    if len(found) != caught:
                        # Pruned after the loop, not during it, so that every invariant
                        # this transition breaks is recorded at this (shortest) length.
                        for judged in judges:
                            judged[:] = [p for p in judged if p[0].name not in found]
                if after is not state and after not in parents:
                    parents[after] = (state, ev)
                    add(after)
                    if state_pending:
                        check_state(after)
            if progress is not None and len(parents) >= next_report:
                progress(len(parents), level, len(frontier))
                next_report = len(parents) + PROGRESS_EVERY
        frontier = following
        level += 1
    seconds = time.perf_counter() - start
    verdicts = {i.name: Verdict.FAILS if i.name in found else Verdict.HOLDS for i in invariants}
    return Result(verdicts=verdicts, counterexamples=found, states=len(parents),
                  transitions=transitions, depth=level, complete=not frontier,
                  seconds=seconds)


@dataclass(frozen=True, slots=True, kw_only=True)
class DesignCheck:
    """One design explored at some bounds."""

    design: Design
    machine: Machine
    result: Result

    @property
    def as_expected(self) -> bool:
        """Whether the verdict is the design's expected one."""
        return self.result.verdict is self.design.expected


def check_design(design: Design, bounds: Bounds = DEFAULT_BOUNDS, *, depth: int | None = None,
                 progress: Progress | None = None) -> DesignCheck:
    """Build ``design``'s machine at ``bounds`` and explore it (see `explore`)."""
    machine = Machine(design, bounds)
    return DesignCheck(design=design, machine=machine,
                       result=explore(machine, depth=depth, progress=progress))

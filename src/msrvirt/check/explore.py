"""Explore a machine breadth-first, exhaustively, with the shortest counterexample per invariant.

The machine's declaration is compiled together with the invariants' checks
(`msrvirt.machine.codegen`): one call of an event's function is one step of the event,
judged at its observation point.  States are packed ints kept in one set and one list
per breadth-first level.  What makes it fast:

- a transition is memoised on the bits its effect and its checks read or write: the
  first (state, event) pair with given bits computes the change (an xor mask) and the
  verdicts; every later pair with the same bits only applies the mask, since its
  verdicts are the same and were judged first in breadth-first order;
- an event that writes nothing (a delivery at ring 0, a direct read) costs that lookup
  only, and nothing at all once every invariant it feeds has a counterexample;
- a state invariant is re-judged only when a transition changed the bits it reads, and
  then memoised on them;
- the enabled events are cached by the bits the guards read.

Counterexamples are rebuilt after the search from the level lists: the parent of a state
at level k+1 is the first state of level k, in order, with an event (in the machine's
order) leading to it, which is the pair that found it, so the trace is the one a
parent-pointer search in the same order keeps.  Violations are values
(`Counterexample`), never exceptions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from msrvirt.check.invariants import INVARIANTS, Invariant, Scope
from msrvirt.errors import UsageError
from msrvirt.machine.codegen import Program, Violation, compile_program
from msrvirt.machine.designs import Design, Verdict
from msrvirt.machine.model import DEFAULT_BOUNDS, Bounds, Event, Machine, State, machine

Progress = Callable[[int, int, int], None]  # (states, depth done, frontier size)
# The set and the level lists hold each packed state times this odd constant (an injection).
# CPython hashes an int modulo 2**61 - 1 and indexes its tables by the hash's low bits;
# packed states differ mostly in bits that add up to a few low-bit patterns (545,380
# states of rsp1-no-host-load share 8,259 values of the low 21 bits), so their probe
# chains grow long.  The product's hash is the state's hash times the constant, modulo
# 2**61 - 1, whose low bits are spread evenly (466,156 values).
_SPREAD = 0x9E3779B97F4A7C15
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


def verdicts_of(invariants: Sequence[Invariant],
                counterexamples: Mapping[str, Counterexample]) -> dict[str, Verdict]:
    """Each invariant's verdict, in ``invariants`` order: FAILS where it has a counterexample."""
    return {i.name: Verdict.FAILS if i.name in counterexamples else Verdict.HOLDS
            for i in invariants}


@lru_cache(maxsize=16)
def judged_program(machine: Machine, invariants: tuple[Invariant, ...] = INVARIANTS) -> Program:
    """``machine``'s declaration compiled with the checks of ``invariants``."""
    return compile_program(
        machine.model,
        judges=lambda o: [(k, inv.checks(machine, o)) for k, inv in enumerate(invariants)
                          if inv.scope is Scope.TRANSITION],
        state_checks=[(k, inv.checks(machine)) for k, inv in enumerate(invariants)
                      if inv.scope is Scope.STATE])


def _render(program: Program, found: Violation) -> tuple[int, str]:
    """(invariant index, message) of one failed check."""
    inv, req = program.checks[found[0]]
    return inv, req.says.render(found[1])


def violations(machine: Machine, s: State, ev: Event | None = None,
               invariants: tuple[Invariant, ...] = INVARIANTS) -> dict[str, str]:
    """The invariants ``s`` breaks (``ev`` None) or event ``ev`` breaks in ``s``, with messages."""
    prog = judged_program(machine, invariants)
    if ev is None:
        found = [f for fn in prog.state_checks if (f := fn(s)) is not None]
    else:
        found = prog.effects[machine.index(ev)](s)[2]
    return {invariants[k].name: text for k, text in (_render(prog, f) for f in found)}


@dataclass(slots=True)
class _Found:
    """A first violation: at which level, in which state, by which event (None: the state)."""

    level: int
    state: State
    event: int | None
    message: str


def explore(machine: Machine, *, depth: int | None = None,
            invariants: Sequence[Invariant] = INVARIANTS,
            progress: Progress | None = None) -> Result:
    """Explore every state reachable from ``machine.initial()`` within ``depth`` events.

    Judges every state invariant on each new state and every transition invariant on each
    (state, event) pair; an invariant is no longer judged once it has a counterexample.
    """
    if depth is not None and depth < 1:
        raise UsageError(f"depth must be at least 1, not {depth}")
    start = time.perf_counter()
    invs = tuple(invariants)
    prog = judged_program(machine, invs)
    events = machine.model.events
    found: dict[int, _Found] = {}  # invariant index -> first violation, in discovery order
    memos: list[dict[int, int]] = [{} for _ in events]
    init = prog.initial
    # State checks still pending: (invariant index, check, bits it reads, projections judged OK)
    state_pending = [(k, fn, mask, set[int]())
                     for k, fn, mask in zip([k for k, i in enumerate(invs) if i.scope is Scope.STATE],
                                            prog.state_checks, prog.check_masks, strict=True)]

    def judge_state(s: State, level: int, changed: int) -> None:
        nonlocal state_pending
        broken = False
        for k, fn, mask, ok in state_pending:
            if changed & mask:
                p = s & mask
                if p not in ok:
                    v = fn(s)
                    if v is None:
                        ok.add(p)
                    else:
                        found[k] = _Found(level=level, state=s, event=None,
                                          message=_render(prog, v)[1])
                        broken = True
        if broken:
            state_pending = [p for p in state_pending if p[0] not in found]

    judge_state(init, 0, -1)
    cache: dict[int, tuple[int, tuple[tuple[int, int, dict[int, int]], ...]]] = {}
    dead: set[int] = set()

    def refresh_dead() -> None:
        """Events that write nothing and feed only invariants with a counterexample."""
        dead.clear()
        dead.update(i for i in range(len(events))
                    if not prog.write_masks[i] and prog.judged[i] <= found.keys())
        cache.clear()

    refresh_dead()
    enabled_of, gmask, effects, kmasks = prog.enabled, prog.guard_mask, prog.effects, prog.key_masks
    seen = {init * _SPREAD}
    levels: list[list[int]] = [[init * _SPREAD]]
    frontier = levels[0]
    level = transitions = 0
    n = 1
    next_report = PROGRESS_EVERY
    while frontier and (depth is None or level < depth):
        following: list[int] = []
        add = following.append
        for spread in frontier:
            s = spread // _SPREAD
            key = s & gmask
            entry = cache.get(key)
            if entry is None:
                on = enabled_of(s)
                entry = cache[key] = (len(on), tuple((i, kmasks[i], memos[i]) for i in on
                                                     if i not in dead))
            count, todo = entry
            transitions += count
            for i, km, memo in todo:
                k = s & km
                d = memo.get(k)
                if d is None:
                    after, _, fails = effects[i](s)
                    d = memo[k] = after ^ s
                    if fails:
                        new = False
                        for f in fails:
                            inv, text = _render(prog, f)
                            if inv not in found:
                                found[inv] = _Found(level=level, state=s, event=i, message=text)
                                new = True
                        if new:
                            refresh_dead()
                if d:
                    after = s ^ d
                    spread = after * _SPREAD
                    seen.add(spread)
                    if len(seen) != n:
                        n += 1
                        add(spread)
                        if state_pending:
                            judge_state(after, level + 1, d)
            if progress is not None and n >= next_report:
                progress(n, level, len(frontier))
                next_report = n + PROGRESS_EVERY
        frontier = following
        levels.append(following)
        level += 1
    seconds = time.perf_counter() - start
    counterexamples = {invs[k].name: _counterexample(machine, prog, memos, levels, invs[k].name, f)
                       for k, f in found.items()}
    return Result(verdicts=verdicts_of(invs, counterexamples), counterexamples=counterexamples, states=n,
                  transitions=transitions, depth=level, complete=not frontier, seconds=seconds)


def _counterexample(machine: Machine, prog: Program, memos: list[dict[int, int]],
                    levels: list[list[int]], name: str, f: _Found) -> Counterexample:
    """The trace to ``f``: each state's parent is the first pair of the level before reaching it."""
    events = machine.model.events
    path: list[tuple[int, State]] = []  # (event index, state after it)
    if f.event is not None:
        path.append((f.event, prog.effects[f.event](f.state)[0]))
    target = f.state
    for lvl in range(f.level - 1, -1, -1):
        target = _parent(prog, memos, levels[lvl], target, path)
    path.reverse()
    return Counterexample(invariant=name, message=f.message, initial=prog.initial,
                          events=tuple(events[i].event for i, _ in path),
                          states=tuple(s for _, s in path))


def _parent(prog: Program, memos: list[dict[int, int]], level: list[int], target: State,
            path: list[tuple[int, State]]) -> State:
    for spread in level:
        p = spread // _SPREAD
        for i in prog.enabled(p):
            d = memos[i].get(p & prog.key_masks[i])
            after = p ^ d if d is not None else prog.effects[i](p)[0]
            if after == target:
                path.append((i, target))
                return p
    raise AssertionError("a state of level k+1 has a parent in level k")


@dataclass(frozen=True, slots=True, kw_only=True)
class DesignCheck:
    """One design explored at some bounds."""

    design: Design
    bounds: Bounds
    result: Result

    @property
    def machine(self) -> Machine:
        """The design's machine at these bounds (to replay and print the counterexamples)."""
        return machine(self.design, self.bounds)

    @property
    def as_expected(self) -> bool:
        """Whether the verdict is the design's expected one."""
        return self.result.verdict is self.design.expected


def check_design(design: Design, bounds: Bounds = DEFAULT_BOUNDS, *, depth: int | None = None,
                 progress: Progress | None = None) -> DesignCheck:
    """Build ``design``'s machine at ``bounds`` and explore it (see `explore`)."""
    return DesignCheck(design=design, bounds=bounds,
                       result=explore(machine(design, bounds), depth=depth, progress=progress))

"""The machine's declaration and the invariants as a Promela model for SPIN, and pan's answers read back.

`promela` writes the same transition system the Python explorer runs: every variable of
the declaration is a global (with its initial value), one process loops over one
``d_step`` per event instance, guarded by the event's enabling condition, running its
effect and, at each observation point and after the effect, the invariants' checks.  A
check that fails for the first time records its invariant in a C variable outside the
state vector (so it is reported once, by the first violation breadth-first search
meets: the shortest), prints ``MSRVIRT-INVARIANT k`` and fails an assertion; pan runs on
(``-c0``) and writes one trail per invariant (``-e``).  Each ``d_step`` prints
``MSRVIRT-EVENT i`` so that a replayed trail names msrvirt's events.

State counts: SPIN stores one state more than msrvirt, the process before its first
step, which judges the state invariants on the initial state; after that step the
globals are the initial state's.  So ``msrvirt states = pan's "states, stored" - 1``,
``msrvirt transitions = pan's "transitions" - 2`` (that first step and the initial
state, which pan counts as a transition target), and a trail has one step more than the
counterexample.  The pure parts live here; running spin, the C compiler and pan is OS
work, in `msrvirt.spin`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from msrvirt.check.explore import Counterexample, Result, verdicts_of, violations
from msrvirt.check.invariants import INVARIANTS, Invariant, Scope
from msrvirt.machine.model import Machine
from msrvirt.machine.spec import Assign, Expr, If, Observe, Require, Stmt, Syntax, Var, render

EVENT_MARK = "MSRVIRT-EVENT"
INVARIANT_MARK = "MSRVIRT-INVARIANT"
_FOUND = "msrvirt_found"  # C bit set of the invariants already reported


@dataclass(frozen=True, slots=True, kw_only=True)
class PromelaModel:
    """A generated model: its text and what its indices stand for."""

    text: str
    invariants: tuple[Invariant, ...]  # MSRVIRT-INVARIANT k names invariants[k]


def _name(var: Var) -> str:
    return re.sub(r"\W+", "_", var.name).strip("_")


def _type(values: Sequence[int]) -> str:
    lo, hi = min(values), max(values)
    if lo >= 0 and hi <= 255:
        return "byte"
    if lo >= -32768 and hi <= 32767:
        return "short"
    return "int"


_PROMELA = Syntax(var=_name, conjunction=" && ", disjunction=" || ", true="1", false="0",
                  negation="!{}", conditional="({test} -> {then} : {orelse})",
                  has_bits="(({value} & {mask}) != 0)")


def expr(e: Expr) -> str:
    """``e`` in Promela."""
    return render(e, _PROMELA)


class _Writer:
    def __init__(self, machine: Machine, invariants: tuple[Invariant, ...]) -> None:
        self.machine = machine
        self.invariants = invariants
        self.lines: list[str] = []

    def emit(self, indent: int, text: str) -> None:
        self.lines.append("  " * indent + text)

    def report(self, indent: int, k: int, reqs: Sequence[Require]) -> None:
        """Record invariant k's first violation: once, then fail an assertion."""
        if not reqs:
            return
        holds = " && ".join(expr(r.holds) for r in reqs)
        self.emit(indent, f"if /* {self.invariants[k].name} */")
        self.emit(indent, f":: !({holds}) && c_expr {{ !({_FOUND} & (1UL << {k})) }} ->")
        self.emit(indent + 1, f'c_code {{ {_FOUND} |= 1UL << {k}; printf("{INVARIANT_MARK} {k}\\n"); }};')
        self.emit(indent + 1, "assert(false)")
        self.emit(indent, ":: else -> skip")
        self.emit(indent, "fi;")

    def state_checks(self, indent: int) -> None:
        for k, inv in enumerate(self.invariants):
            if inv.scope is Scope.STATE:
                self.report(indent, k, inv.checks(self.machine))

    def stmts(self, indent: int, stmts: Sequence[Stmt]) -> None:
        if not stmts:
            self.emit(indent, "skip;")
        for st in stmts:
            if isinstance(st, Assign):
                self.emit(indent, f"{_name(st.target)} = {expr(st.value)};")
            elif isinstance(st, If):
                self.emit(indent, "if")
                self.emit(indent, f":: {expr(st.test)} ->")
                self.stmts(indent + 1, st.then)
                self.emit(indent, ":: else ->")
                self.stmts(indent + 1, st.orelse)
                self.emit(indent, "fi;")
            elif isinstance(st, Observe):
                self.emit(indent, f"skip;  /* observe: {st.kind.name.lower()} on cpu{st.cpu} */")
                for k, inv in enumerate(self.invariants):
                    if inv.scope is Scope.TRANSITION:
                        self.report(indent, k, inv.checks(self.machine, st))
            else:
                raise TypeError(f"not a statement: {st!r}")


def promela(machine: Machine, invariants: Sequence[Invariant] = INVARIANTS) -> PromelaModel:
    """The Promela model of ``machine`` checking ``invariants`` (see the module docstring)."""
    invs = tuple(invariants)
    if len(invs) > 64:
        raise ValueError("the C bit set of reported invariants holds 64")
    model = machine.model
    w = _Writer(machine, invs)
    b = machine.bounds
    w.emit(0, f"/* msrvirt: design {machine.design.name}, cpus={b.cpus} tasks={b.tasks}"
              f" values={b.values}; generated from msrvirt.machine.model, do not edit */")
    w.emit(0, f"c_decl {{ unsigned long {_FOUND}; }}")
    for var, initial in zip(model.variables, model.initial, strict=True):
        values = var.domain.values(b)
        w.emit(0, f"{_type(values)} {_name(var)} = {initial};  /* {var.name}: {var.domain.name} */")
    w.emit(0, "")
    w.emit(0, "active proctype machine() {")
    w.emit(1, "d_step {  /* the initial state's checks */")
    w.state_checks(2)
    w.emit(2, "skip")
    w.emit(1, "};")
    w.emit(1, "do")
    for i, decl in enumerate(model.events):
        w.emit(1, f":: d_step {{  /* {i}: {decl.event} */")
        w.emit(2, f"{expr(decl.guard)} ->")
        w.emit(2, f'printf("{EVENT_MARK} {i}\\n");')
        w.stmts(2, decl.effect)
        w.state_checks(2)
        w.emit(2, "skip")
        w.emit(1, "}")
    w.emit(1, "od")
    w.emit(0, "}")
    return PromelaModel(text="\n".join(w.lines) + "\n", invariants=invs)


# -- pan's answers -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PanReport:
    """What one pan run printed: its counts and, in order, the invariant of each error."""

    stored: int  # "states, stored": msrvirt's states + 1
    transitions: int  # "transitions (= stored+matched)": msrvirt's transitions + 2
    depth: int  # "depth reached": steps, the first (initial checks) included
    truncated: bool  # the depth bound (-m) cut the search
    errors: tuple[tuple[int, str], ...]  # (invariant index, trail file), in pan's order
    seconds: float
    state_bytes: float  # "actual memory usage for states" per stored state


def _count(text: str, pattern: str) -> int:
    found = re.search(pattern, text, re.MULTILINE)
    if found is None:
        raise ValueError(f"pan's output lacks {pattern!r}")
    return int(found.group(1))


def parse_pan(text: str) -> PanReport:
    """Read a pan run's standard output (and each error's trail file, ``-e``)."""
    errors = []
    pending: int | None = None
    for line in text.splitlines():
        if line.startswith(INVARIANT_MARK):
            pending = int(line.split()[1])
        elif (wrote := re.match(r"pan: wrote (\S+\.trail)$", line)) is not None:
            if pending is None:
                raise ValueError(f"a trail without {INVARIANT_MARK}: {line}")
            errors.append((pending, wrote.group(1)))
            pending = None
    elapsed = re.search(r"pan: elapsed time ([\d.e+]+) seconds", text)
    memory = re.search(r"^\s*([\d.]+)\s+actual memory usage for states", text, re.MULTILINE)
    stored = _count(text, r"^\s*(\d+) states, stored")
    return PanReport(
        stored=stored, state_bytes=float(memory.group(1)) * 2**20 / stored if memory else 0.0,
        transitions=_count(text, r"^\s*(\d+) transitions \(= stored\+matched\)"),
        depth=_count(text, r"depth reached (\d+)"),
        truncated="max search depth too small" in text,
        errors=tuple(errors), seconds=float(elapsed.group(1)) if elapsed else 0.0)


def trail_events(text: str) -> list[int]:
    """The event indices a replayed trail (``pan -S -rN``) printed, in order."""
    return [int(line.split()[1]) for line in text.splitlines() if line.startswith(EVENT_MARK)]


def result(machine: Machine, pan: PanReport, trails: Sequence[str], seconds: float,
           invariants: Sequence[Invariant] = INVARIANTS) -> Result:
    """msrvirt's `Result` from a pan run and its replayed trails (one per ``pan.errors``).

    Each trail is replayed on the Python machine, which must break the same invariant at
    its end (else the engines disagree: AssertionError); its message comes from there.
    """
    invs = tuple(invariants)
    events = machine.model.events
    found: dict[str, Counterexample] = {}
    for (k, _), trail in zip(pan.errors, trails, strict=True):
        name = invs[k].name
        if name in found:
            continue
        evs = [events[i].event for i in trail_events(trail)]
        states, s = [], machine.initial()
        for ev in evs[:-1]:
            s = machine.step(s, ev)
            states.append(s)
        if invs[k].scope is Scope.STATE:
            if evs:
                s = machine.step(s, evs[-1])
                states.append(s)
            broken = violations(machine, s, None, invs)
        else:
            broken = violations(machine, s, evs[-1], invs)
            states.append(machine.step(s, evs[-1]))
        if name not in broken:
            raise AssertionError(f"SPIN's trail for {name} does not break it in msrvirt's machine")
        found[name] = Counterexample(invariant=name, message=broken[name], initial=machine.initial(),
                                     events=tuple(evs), states=tuple(states))
    # pan's depth counts its first step: an exhaustive search's deepest state is at msrvirt's
    # level depth-1, pan's depth; a search cut at msrvirt's depth d stops at pan's d + 1.
    return Result(verdicts=verdicts_of(invs, found), counterexamples=found, states=pan.stored - 1,
                  transitions=pan.transitions - 2,
                  depth=pan.depth - 1 if pan.truncated else pan.depth,
                  complete=not pan.truncated, seconds=seconds)

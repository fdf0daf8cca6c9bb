"""Compile a declared model (`msrvirt.machine.spec`) into Python functions over packed states.

A state is one int: every variable takes the bits its domain needs (its values coded
0..n-1), in the model's variable order.  Compilation writes Python source for

- ``enabled(s)``: the indices of the events whose guard holds, in declaration order;
- one effect function per event: ``f(s) -> (s', observations, violations)``, running
  the statements in order on local variables and packing the written ones back;
  at each `Observe` point it records the values moved and judges the checks a caller
  hands in (``judges``), so one call is one step of the event with its verdicts;
- one function per state check list: the first failing `Require`, or None;

and ``exec``s it once.  Each function knows which bits it reads and writes (``key_masks``,
``guard_mask``, ``check_masks``), which is what lets the explorer memoise a transition
on the bits it depends on and re-judge a state check only when its bits changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from msrvirt.machine.spec import (
    Assign,
    Expr,
    If,
    Model,
    Observe,
    Require,
    Stmt,
    Syntax,
    Var,
    expr_reads,
    render,
    writes,
)

# (observation id, the values of its items)
Observed = tuple[int, tuple[int, ...]]
# (check id, the values of its message's arguments)
Violation = tuple[int, tuple[int, ...]]
Effect = Callable[[int], tuple[int, list[Observed], list[Violation]]]
# For an observation point: (invariant index, its checks, first failing one wins) pairs.
Judges = Callable[[Observe], Sequence[tuple[int, Sequence[Require]]]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Placement:
    """Where a variable sits in the packed state and how its values are coded."""

    var: Var
    offset: int
    width: int
    values: tuple[int, ...]  # code -> value
    base: int | None  # values are base, base+1, ...: code = value - base (no table)

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.offset


class Layout:
    """The packing of a model's variables into one int."""

    def __init__(self, model: Model) -> None:
        self.placements: list[Placement] = []
        self.index: dict[Var, int] = {}
        offset = 0
        for i, var in enumerate(model.variables):
            values = tuple(var.domain.values(model.bounds))
            contiguous = values == tuple(range(values[0], values[0] + len(values)))
            width = max(1, (len(values) - 1).bit_length())
            self.placements.append(Placement(var=var, offset=offset, width=width, values=values,
                                             base=values[0] if contiguous else None))
            self.index[var] = i
            offset += width
        self.bits = offset
        self._codes = [{v: c for c, v in enumerate(p.values)} for p in self.placements]

    def pack(self, values: Sequence[int]) -> int:
        s = 0
        for p, codes, value in zip(self.placements, self._codes, values, strict=True):
            if value not in codes:
                raise ValueError(f"{p.var.name} cannot hold {value}")
            s |= codes[value] << p.offset
        return s

    def unpack(self, s: int) -> tuple[int, ...]:
        return tuple(p.values[(s >> p.offset) & ((1 << p.width) - 1)] for p in self.placements)

    def get(self, s: int, var: Var) -> int:
        p = self.placements[self.index[var]]
        return p.values[(s >> p.offset) & ((1 << p.width) - 1)]

    def mask(self, variables: Sequence[Var] | set[Var]) -> int:
        out = 0
        for v in variables:
            out |= self.placements[self.index[v]].mask
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Program:
    """A model compiled for the Python explorer."""

    model: Model
    layout: Layout
    initial: int
    enabled: Callable[[int], tuple[int, ...]]
    guard_mask: int  # the bits every guard together reads
    effects: tuple[Effect, ...]  # per event
    key_masks: tuple[int, ...]  # per event: bits its effect (and judges) read or write
    write_masks: tuple[int, ...]  # per event: bits its effect may write (0: a self-loop)
    judged: tuple[frozenset[int], ...]  # per event: the invariants its observations feed
    observes: tuple[Observe, ...]  # by observation id
    checks: tuple[tuple[int, Require], ...]  # by check id: (invariant index, the check)
    state_checks: tuple[Callable[[int], Violation | None], ...]  # per state check list
    check_masks: tuple[int, ...]  # per state check list: bits it reads

    def evaluate(self, expr: Expr) -> Callable[[int], int]:
        """A function computing ``expr`` in a packed state."""
        gen = _Gen(self.layout)
        reads = expr_reads(expr, set())
        body = [*gen.loads(reads, "    "), f"    return {gen.expr(expr)}"]
        return gen.build("def _expr(s):", body, "_expr")  # type: ignore[no-any-return]

    def execute(self, stmts: Sequence[Stmt]) -> Callable[[int], int]:
        """A function running the statements ``stmts`` on a packed state (no checks)."""
        gen = _Gen(self.layout)
        reads: set[Var] = set()
        body: list[str] = []
        gen.stmts(stmts, "    ", body, reads, [], [], None)
        written = writes(stmts)
        lines = [*gen.loads(reads | written, "    "), "    O = []", *body,
                 f"    return {gen.store(written)}"]
        return gen.build("def _run(s):", lines, "_run")  # type: ignore[no-any-return]


def compile_program(model: Model, *, judges: Judges | None = None,
                    state_checks: Sequence[tuple[int, Sequence[Require]]] = ()) -> Program:
    """Compile ``model``; ``judges`` and ``state_checks`` are the invariants' checks, if any."""
    layout = Layout(model)
    gen = _Gen(layout)
    observes: list[Observe] = []
    checks: list[tuple[int, Require]] = []
    effects, key_masks, write_masks, judged = [], [], [], []
    for i, ev in enumerate(model.events):
        first_check = len(checks)
        written = writes(ev.effect)
        reads: set[Var] = set()
        body: list[str] = []
        gen.stmts(ev.effect, "    ", body, reads, observes, checks, judges)
        touched = reads | written
        lines = [*gen.loads(touched, "    "), "    O = []", "    V = []", *body,
                 f"    return {gen.store(written)}, O, V"]
        effects.append(gen.build(f"def _event_{i}(s):", lines, f"_event_{i}"))
        key_masks.append(layout.mask(touched))
        write_masks.append(layout.mask(written))
        judged.append(frozenset(inv for inv, _ in checks[first_check:]))
    guard_reads: set[Var] = set()
    for ev in model.events:
        expr_reads(ev.guard, guard_reads)
    lines = [*gen.loads(guard_reads, "    "), "    out = []"]
    for i, ev in enumerate(model.events):
        lines.append(f"    if {gen.expr(ev.guard)}: out.append({i})")
    lines.append("    return tuple(out)")
    enabled = gen.build("def _enabled(s):", lines, "_enabled")
    state_fns, check_masks = [], []
    for k, (inv, reqs) in enumerate(state_checks):
        reads = set()
        lines = []
        for req in reqs:
            fails, violation = gen.check(inv, req, checks, reads)
            lines.append(f"    if {fails}: return {violation}")
        lines = [*gen.loads(reads, "    "), *lines, "    return None"]
        state_fns.append(gen.build(f"def _check_{k}(s):", lines, f"_check_{k}"))
        check_masks.append(layout.mask(reads))
    return Program(
        model=model, layout=layout, initial=layout.pack(model.initial),
        enabled=enabled, guard_mask=layout.mask(guard_reads), effects=tuple(effects),
        key_masks=tuple(key_masks), write_masks=tuple(write_masks), judged=tuple(judged),
        observes=tuple(observes),
        checks=tuple(checks), state_checks=tuple(state_fns), check_masks=tuple(check_masks))


class _Gen:
    """Python source for expressions and statements over one layout's local variables."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.namespace: dict[str, Any] = {}
        self.syntax = Syntax(var=self.local, conjunction=" and ", disjunction=" or ", true="True",
                             false="False", negation="(not {})",
                             conditional="({then} if {test} else {orelse})",
                             has_bits="({value} & {mask} != 0)")

    def local(self, var: Var) -> str:
        return f"v{self.layout.index[var]}"

    def loads(self, variables: set[Var], indent: str) -> list[str]:
        out = []
        for var in sorted(variables, key=self.layout.index.__getitem__):
            i = self.layout.index[var]
            p = self.layout.placements[i]
            bits = f"s >> {p.offset} & {(1 << p.width) - 1}" if p.offset else f"s & {(1 << p.width) - 1}"
            if p.base is None:
                self.namespace[f"DEC{i}"] = p.values
                out.append(f"{indent}v{i} = DEC{i}[{bits}]")
            elif p.base:
                out.append(f"{indent}v{i} = ({bits}) + {p.base}")
            else:
                out.append(f"{indent}v{i} = {bits}")
        return out

    def store(self, written: set[Var]) -> str:
        """The packed state after the effect: unwritten bits kept, written ones replaced."""
        if not written:
            return "s"
        keep = ((1 << self.layout.bits) - 1) & ~self.layout.mask(written)
        parts = [f"(s & {keep})"]
        for var in sorted(written, key=self.layout.index.__getitem__):
            i = self.layout.index[var]
            p = self.layout.placements[i]
            if p.base is None:
                self.namespace[f"ENC{i}"] = {v: c for c, v in enumerate(p.values)}
                code = f"ENC{i}[v{i}]"
            elif p.base:
                code = f"(v{i} - {p.base})"
            else:
                code = f"v{i}"
            parts.append(f"({code} << {p.offset})" if p.offset else code)
        return " | ".join(parts)

    def expr(self, e: Expr) -> str:
        return render(e, self.syntax)

    def stmts(self, stmts: Sequence[Stmt], indent: str, out: list[str], reads: set[Var],
              observes: list[Observe], checks: list[tuple[int, Require]],
              judges: Judges | None) -> None:
        if not stmts:
            out.append(f"{indent}pass")
        for st in stmts:
            if isinstance(st, Assign):
                expr_reads(st.value, reads)
                out.append(f"{indent}{self.local(st.target)} = {self.expr(st.value)}")
            elif isinstance(st, If):
                expr_reads(st.test, reads)
                out.append(f"{indent}if {self.expr(st.test)}:")
                self.stmts(st.then, indent + "    ", out, reads, observes, checks, judges)
                if st.orelse:
                    out.append(f"{indent}else:")
                    self.stmts(st.orelse, indent + "    ", out, reads, observes, checks, judges)
            elif isinstance(st, Observe):
                oid = len(observes)
                observes.append(st)
                for _, e in st.items:
                    expr_reads(e, reads)
                out.append(f"{indent}O.append(({oid}, {self.values(e for _, e in st.items)}))")
                for inv, reqs in (judges(st) if judges is not None else ()):
                    keyword = "if"
                    for req in reqs:
                        fails, violation = self.check(inv, req, checks, reads)
                        out.append(f"{indent}{keyword} {fails}:")
                        out.append(f"{indent}    V.append({violation})")
                        keyword = "elif"
            else:
                raise TypeError(f"not a statement: {st!r}")

    def values(self, exprs: Iterable[Expr]) -> str:
        """A tuple of the expressions' values, as source."""
        parts = [self.expr(e) for e in exprs]
        return f"({', '.join(parts)}{',' if parts else ''})"

    def check(self, inv: int, req: Require, checks: list[tuple[int, Require]],
              reads: set[Var]) -> tuple[str, str]:
        """Number check ``req`` of invariant ``inv`` (appended to ``checks``) and add what it
        reads to ``reads``: the source of its failure test and of its `Violation`."""
        cid = len(checks)
        checks.append((inv, req))
        expr_reads(req.holds, reads)
        for _, e in req.says.args:
            expr_reads(e, reads)
        return f"not {self.expr(req.holds)}", f"({cid}, {self.values(e for _, e in req.says.args)})"

    def build(self, head: str, body: list[str], name: str) -> Any:
        source = "\n".join([head, *body]) + "\n"
        exec(compile(source, f"<msrvirt model {name}>", "exec"), self.namespace)
        return self.namespace[name]


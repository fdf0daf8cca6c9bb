"""The language the stateful model is declared in: domains, fields, expressions, statements, events.

A model is one declaration, the way a Promela model or a TLA+ spec is one text:

- **fields** (`Field`): a name, a `Domain` of values and a `Group` (one per machine, or one
  per physical CPU), optionally a family over keys (one per modelled MSR, say), each with
  its initial value.  Every concrete state variable is a `Var`;
- **events** (`EventDecl`): an enabling condition (an `Expr` over the variables) and an
  effect (a sequence of `Stmt`: assignments, conditionals, and `Observe` points where an
  event delivery or an MSR access exposes values to the invariants);
- **checks** (`Require`): a condition and the message that says what went wrong.

Everything is a frozen value; nothing here runs.  `msrvirt.machine.codegen` turns a
declaration into Python functions over packed integer states, and
`msrvirt.check.promela` into a Promela model for SPIN, so both engines explore the same
transition system.  The semantics are sequential: a statement sees the writes of the
statements before it in the same effect (as a Promela ``d_step`` does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Domain:
    """The values a field may hold, as a function of the bounds, and how each reads in words."""

    name: str
    values: Callable[[Any], Sequence[int]]  # bounds -> every value, in a fixed order
    text: Callable[[int], str] = str


def enum_domain(cls: type[Enum], text: Callable[[int], str] | None = None) -> Domain:
    """The domain of an IntEnum's members (its values in definition order)."""
    members = tuple(int(m.value) for m in cls)
    return Domain(name=cls.__name__, values=lambda _b: members,
                  text=text or (lambda v: cls(v).name.lower()))


FLAG = Domain(name="flag", values=lambda _b: (0, 1))


class Group(Enum):
    """Where a field lives: once per machine or once per physical CPU."""

    MACHINE = "machine"
    CPU = "cpu"


@dataclass(frozen=True, slots=True, kw_only=True)
class Field:
    """A declared field: one variable, or a family of variables over ``keys`` and/or CPUs.

    ``name`` may contain ``{key}`` (the key's ``label``, or an enum member's name); per-CPU
    variables are named ``cpu<N> <name>``.  ``initial`` is a value, or a function of
    (cpu, key) for families.
    """

    name: str
    domain: Domain
    group: Group = Group.MACHINE
    keys: tuple[Any, ...] = ()  # e.g. the modelled MSRs
    initial: int | Callable[[int | None, Any], int]
    doc: str

    def __getitem__(self, index: Any) -> Var:
        """The variable at ``index``: a key, a CPU, or (cpu, key)."""
        per_cpu = self.group is Group.CPU
        if per_cpu and self.keys:
            cpu, key = index
        elif per_cpu:
            cpu, key = index, None
        else:
            cpu, key = None, index
        return Var(field=self, cpu=cpu, key=key)

    @property
    def var(self) -> Var:
        """The one variable of a machine-wide field without keys."""
        return Var(field=self, cpu=None, key=None)

    def variables(self, cpu: int | None = None) -> list[Var]:
        """The field's variables on ``cpu`` (None for a machine-wide field), keys in order."""
        return [Var(field=self, cpu=cpu, key=k) for k in self.keys or (None,)]

    def initial_value(self, cpu: int | None, key: Any) -> int:
        return self.initial if isinstance(self.initial, int) else self.initial(cpu, key)


# -- expressions ---------------------------------------------------------------------------------


class Expr:
    """An expression over the state variables; every node is a frozen dataclass."""

    __slots__ = ()

    @property
    def domain(self) -> Domain | None:
        """The domain of the value (used to print it), if it has one."""
        return None


@dataclass(frozen=True, slots=True)
class Var(Expr):
    """One state variable: a field, at a CPU and/or key."""

    field: Field
    cpu: int | None = None
    key: Any = None

    @property
    def name(self) -> str:
        key = self.key
        label = getattr(key, "label", key.name if isinstance(key, Enum) else key)
        base = self.field.name.format(key=label)
        return base if self.cpu is None else f"cpu{self.cpu} {base}"

    @property
    def domain(self) -> Domain:
        return self.field.domain


@dataclass(frozen=True, slots=True)
class Const(Expr):
    value: int
    of: Domain | None = None

    @property
    def domain(self) -> Domain | None:
        return self.of


class Op(Enum):
    """Comparison and arithmetic operators (Python and Promela spell them alike)."""

    EQ = "=="
    NE = "!="
    GE = ">="
    ADD = "+"


@dataclass(frozen=True, slots=True)
class Binary(Expr):
    op: Op
    left: Expr
    right: Expr
    of: Domain | None = None  # the result's domain (arithmetic on symbols)

    @property
    def domain(self) -> Domain | None:
        return self.of


@dataclass(frozen=True, slots=True)
class AllOf(Expr):
    """Conjunction; true when empty."""

    terms: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class AnyOf(Expr):
    """Disjunction; false when empty."""

    terms: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Not(Expr):
    term: Expr


@dataclass(frozen=True, slots=True)
class Cond(Expr):
    """``then`` if ``test`` else ``orelse``."""

    test: Expr
    then: Expr
    orelse: Expr

    @property
    def domain(self) -> Domain | None:
        return self.then.domain or self.orelse.domain


@dataclass(frozen=True, slots=True)
class HasBits(Expr):
    """Whether ``value & mask`` is not zero."""

    value: Expr
    mask: int


Operand = Expr | int


def _expr(x: Operand, like: Expr | None = None) -> Expr:
    if isinstance(x, Expr):
        return x
    return Const(int(x), like.domain if like is not None else None)


def eq(a: Operand, b: Operand) -> Expr:
    left = _expr(a)
    return Binary(Op.EQ, left, _expr(b, left))


def ne(a: Operand, b: Operand) -> Expr:
    left = _expr(a)
    return Binary(Op.NE, left, _expr(b, left))


def ge(a: Operand, b: Operand) -> Expr:
    left = _expr(a)
    return Binary(Op.GE, left, _expr(b, left))


def add(a: Operand, b: Operand, of: Domain) -> Expr:
    """``a + b`` as a value of domain ``of`` (e.g. a symbol computed from a task number)."""
    return Binary(Op.ADD, _expr(a), _expr(b), of)


def all_of(*terms: Expr) -> Expr:
    return terms[0] if len(terms) == 1 else AllOf(tuple(terms))


def any_of(*terms: Expr) -> Expr:
    return terms[0] if len(terms) == 1 else AnyOf(tuple(terms))


def not_(term: Expr) -> Expr:
    return Not(term)


def cond(test: Expr, then: Operand, orelse: Operand) -> Expr:
    t = _expr(then)
    return Cond(test, t, _expr(orelse, t))


def select(index: Expr, cases: Sequence[tuple[int, Expr]]) -> Expr:
    """The case whose key equals ``index`` (the last case when none does): a dynamic index."""
    *rest, (_, last) = cases
    out = last
    for key, value in reversed(rest):
        out = cond(eq(index, key), value, out)
    return out


def table(keys: Sequence[Expr], values: dict[tuple[int, ...], int], of: Domain | None = None) -> Expr:
    """The value ``values[tuple(keys)]`` as an expression (a lookup in a constant table)."""
    items = sorted(values.items())
    if len({v for _, v in items}) == 1:
        return Const(items[0][1], of)
    (*rest, (_, last)) = items
    out: Expr = Const(last, of)
    for key, value in reversed(rest):
        out = Cond(all_of(*(eq(k, v) for k, v in zip(keys, key, strict=True))), Const(value, of), out)
    return out


# -- statements ----------------------------------------------------------------------------------


class Stmt:
    """A statement of an effect."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Assign(Stmt):
    target: Var
    value: Expr


@dataclass(frozen=True, slots=True)
class If(Stmt):
    test: Expr
    then: tuple[Stmt, ...]
    orelse: tuple[Stmt, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Observe(Stmt):
    """A point where the event exposes values to the invariants (consumed, read or written).

    ``items`` pairs a key (the MSR) with the value moved, evaluated in the state reached
    so far; ``direct``: the access ran on the hardware MSR; ``faulted``: it got #GP.
    """

    kind: Enum
    cpu: int
    items: tuple[tuple[Any, Expr], ...] = ()
    direct: bool = False
    faulted: bool = False


def assign(target: Var, value: Operand) -> Assign:
    return Assign(target, _expr(value, target))


def when(test: Expr, *then: Stmt | Iterable[Stmt], orelse: Iterable[Stmt] = ()) -> If:
    """``If(test, then, orelse)``, flattening nested statement lists."""
    return If(test, flatten(then), flatten(orelse))


def flatten(parts: Iterable[Stmt | Iterable[Stmt]]) -> tuple[Stmt, ...]:
    out: list[Stmt] = []
    for part in parts:
        if isinstance(part, Stmt):
            out.append(part)
        else:
            out.extend(flatten(part))
    return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class EventDecl:
    """One event instance: its identity (the model's event value), when it is enabled, its effect."""

    event: Any
    guard: Expr
    effect: tuple[Stmt, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """What a failed check says: a ``str.format`` template and the expressions it prints."""

    template: str
    args: tuple[tuple[str, Expr], ...] = ()

    def render(self, values: Sequence[int]) -> str:
        named = {}
        for (name, expr), value in zip(self.args, values, strict=True):
            dom = expr.domain
            named[name] = dom.text(value) if dom is not None else str(value)
        return self.template.format(**named)


def message(template: str, **args: Expr) -> Message:
    return Message(template=template, args=tuple(args.items()))


@dataclass(frozen=True, slots=True, kw_only=True)
class Require:
    """A check: ``holds`` must be true; otherwise ``says`` describes the violation."""

    holds: Expr
    says: Message


# -- rendering ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Syntax:
    """How a target language spells expressions: Python (the compiler), Promela (SPIN)."""

    var: Callable[[Var], str]
    conjunction: str  # " and "
    disjunction: str  # " or "
    true: str
    false: str
    negation: str  # "(not {})"
    conditional: str  # "({then} if {test} else {orelse})"
    has_bits: str  # "({value} & {mask} != 0)"


def render(e: Expr, syntax: Syntax) -> str:
    """``e`` in the target language of ``syntax``, fully parenthesised."""
    if isinstance(e, Var):
        return syntax.var(e)
    if isinstance(e, Const):
        return str(e.value)
    if isinstance(e, Binary):
        return f"({render(e.left, syntax)} {e.op.value} {render(e.right, syntax)})"
    if isinstance(e, AllOf | AnyOf):
        if not e.terms:
            return syntax.true if isinstance(e, AllOf) else syntax.false
        joint = syntax.conjunction if isinstance(e, AllOf) else syntax.disjunction
        return "(" + joint.join(render(t, syntax) for t in e.terms) + ")"
    if isinstance(e, Not):
        return syntax.negation.format(render(e.term, syntax))
    if isinstance(e, Cond):
        return syntax.conditional.format(test=render(e.test, syntax), then=render(e.then, syntax),
                                         orelse=render(e.orelse, syntax))
    if isinstance(e, HasBits):
        return syntax.has_bits.format(value=render(e.value, syntax), mask=e.mask)
    raise TypeError(f"not an expression: {e!r}")


# -- analysis ------------------------------------------------------------------------------------


def expr_reads(e: Expr, out: set[Var]) -> set[Var]:
    """Add every variable ``e`` reads to ``out``."""
    if isinstance(e, Var):
        out.add(e)
    elif isinstance(e, Binary):
        expr_reads(e.left, out)
        expr_reads(e.right, out)
    elif isinstance(e, AllOf | AnyOf):
        for t in e.terms:
            expr_reads(t, out)
    elif isinstance(e, Not):
        expr_reads(e.term, out)
    elif isinstance(e, Cond):
        expr_reads(e.test, out)
        expr_reads(e.then, out)
        expr_reads(e.orelse, out)
    elif isinstance(e, HasBits):
        expr_reads(e.value, out)
    return out


def walk(stmts: Iterable[Stmt]) -> Iterable[Stmt]:
    """Every statement, nested ones included, in order."""
    for s in stmts:
        yield s
        if isinstance(s, If):
            yield from walk(s.then)
            yield from walk(s.orelse)


def writes(stmts: Iterable[Stmt]) -> set[Var]:
    return {s.target for s in walk(stmts) if isinstance(s, Assign)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Model:
    """A declaration made concrete for some bounds: its variables, their initial values, its events.

    ``variables`` lists the machine-wide fields' variables, then one block per CPU (the
    order traces print changes in, see `layout`); ``events`` are every event instance in
    the fixed order the explorers enumerate them.
    """

    variables: tuple[Var, ...]
    initial: tuple[int, ...]
    events: tuple[EventDecl, ...]
    bounds: Any


def layout(fields: Sequence[Field], cpus: int) -> tuple[Var, ...]:
    """Every variable of ``fields``: machine-wide fields first, in order, then each CPU's block."""
    out = [v for f in fields if f.group is Group.MACHINE for v in f.variables()]
    per_cpu = [f for f in fields if f.group is Group.CPU]
    for c in range(cpus):
        out += [v for f in per_cpu for v in f.variables(c)]
    return tuple(out)

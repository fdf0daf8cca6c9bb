"""The declaration language and its compiler, on a small model of their own: packing,
sequential effects, guards, observations judged by checks, and the bits each function
touches (what the explorer memoises on)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import pytest
from hypothesis import given
from hypothesis import strategies as st

from msrvirt.machine.codegen import Layout, compile_program
from msrvirt.machine.spec import (
    FLAG,
    Domain,
    EventDecl,
    Field,
    Group,
    Model,
    Observe,
    Require,
    add,
    all_of,
    assign,
    cond,
    enum_domain,
    eq,
    layout,
    message,
    ne,
    select,
    table,
    when,
)


@dataclass(frozen=True, slots=True)
class Sizes:
    cpus: int = 2


class Color(IntEnum):
    RED = 0
    GREEN = 3  # not contiguous: coded through a table


class Seen(IntEnum):
    SOMETHING = 0


SPARSE = Domain(name="sparse", values=lambda _b: (0, 10, 20, 30), text=lambda v: f"s{v}")
CPU_OR_NONE = Domain(name="cpu", values=lambda b: tuple(range(-1, b.cpus)))
COLOR = Field(name="color", domain=enum_domain(Color), initial=Color.RED, doc="a color")
OWNER = Field(name="owner", domain=CPU_OR_NONE, initial=-1, doc="a CPU or none")
LAMP = Field(name="lamp {key}", domain=FLAG, keys=tuple(Color), initial=0, doc="per color")
VALUE = Field(name="value", domain=SPARSE, group=Group.CPU, initial=lambda c, _k: 10 * (c or 0),
              doc="per CPU")
FIELDS = (COLOR, OWNER, LAMP, VALUE)


def declare(events: list[EventDecl]) -> Model:
    variables = layout(FIELDS, 2)
    return Model(variables=variables, bounds=Sizes(), events=tuple(events),
                 initial=tuple(v.field.initial_value(v.cpu, v.key) for v in variables))


def test_variables_come_machine_wide_first_then_one_block_per_cpu() -> None:
    names = [v.name for v in layout(FIELDS, 2)]
    assert names == ["color", "owner", "lamp RED", "lamp GREEN", "cpu0 value", "cpu1 value"]


def test_each_variable_takes_the_bits_its_domain_needs() -> None:
    lay = Layout(declare([]))
    assert [p.width for p in lay.placements] == [1, 2, 1, 1, 2, 2]
    assert [p.base for p in lay.placements] == [None, -1, 0, 0, None, None]
    assert lay.bits == 9


@given(st.tuples(st.sampled_from(list(Color)), st.integers(-1, 1), st.integers(0, 1),
                 st.integers(0, 1), st.sampled_from([0, 10, 20, 30]),
                 st.sampled_from([0, 10, 20, 30])))
def test_packing_round_trips(values: tuple[int, ...]) -> None:
    lay = Layout(declare([]))
    s = lay.pack(values)
    assert lay.unpack(s) == tuple(values)
    assert lay.get(s, VALUE[1]) == values[5]


def test_a_value_outside_its_domain_is_refused() -> None:
    with pytest.raises(ValueError, match="cpu0 value cannot hold 15"):
        Layout(declare([])).pack((0, -1, 0, 0, 15, 0))


def test_an_effect_runs_in_order_and_reads_its_own_writes() -> None:
    # owner := 1, then value[owner] := value[1] + 10 (a dynamic index), then color := GREEN
    ev = EventDecl(event="grab", guard=eq(OWNER.var, -1), effect=(
        assign(OWNER.var, 1),
        when(eq(OWNER.var, 1), assign(VALUE[1], add(VALUE[1], 10, SPARSE))),
        assign(COLOR.var, cond(eq(VALUE[1], 20), Color.GREEN, Color.RED))))
    prog = compile_program(declare([ev]))
    after, observed, failed = prog.effects[0](prog.initial)
    assert prog.layout.unpack(after) == (Color.GREEN, 1, 0, 0, 0, 20)
    assert observed == [] and failed == []
    assert prog.enabled(prog.initial) == (0,)
    assert prog.enabled(after) == ()


def test_guards_keep_the_declared_order() -> None:
    events = [EventDecl(event=n, guard=g, effect=()) for n, g in (
        ("a", eq(COLOR.var, Color.RED)), ("b", ne(COLOR.var, Color.RED)), ("c", all_of()))]
    prog = compile_program(declare(events))
    assert prog.enabled(prog.initial) == (0, 2)


def test_an_observation_is_judged_where_it_happens_with_the_first_failing_check() -> None:
    peek = Observe(kind=Seen.SOMETHING, cpu=0, items=(("v", VALUE[0]),))
    ev = EventDecl(event="peek", guard=all_of(), effect=(peek, assign(VALUE[0], 30)))

    def judges(o: Observe) -> list[tuple[int, list[Require]]]:
        value = o.items[0][1]
        return [(7, [Require(holds=ne(value, 0), says=message("saw {v}", v=value)),
                     Require(holds=ne(value, 30), says=message("never reached"))])]

    prog = compile_program(declare([ev]), judges=judges)
    _, observed, failed = prog.effects[0](prog.initial)
    assert observed == [(0, (0,))]  # the value before the write that follows
    ((cid, args),) = failed
    inv, req = prog.checks[cid]
    assert inv == 7 and req.says.render(args) == "saw s0"
    assert prog.judged == (frozenset({7}),)


def test_each_function_knows_the_bits_it_touches() -> None:
    lay = Layout(declare([]))
    look = EventDecl(event="look", guard=all_of(),
                     effect=(Observe(kind=Seen.SOMETHING, cpu=1, items=(("v", VALUE[1]),)),))
    light = EventDecl(event="light", guard=eq(OWNER.var, 0),
                      effect=(assign(LAMP[Color.GREEN], 1),))
    prog = compile_program(declare([look, light]), state_checks=[
        (0, [Require(holds=ne(COLOR.var, Color.GREEN), says=message("green"))])])
    assert prog.write_masks[0] == 0  # a self-loop
    assert prog.key_masks[0] == lay.mask([VALUE[1]])
    assert prog.key_masks[1] == prog.write_masks[1] == lay.mask([LAMP[Color.GREEN]])
    assert prog.guard_mask == lay.mask([OWNER.var])
    assert prog.check_masks == (lay.mask([COLOR.var]),)
    assert prog.state_checks[0](prog.initial) is None


@pytest.mark.parametrize(("owner", "expected"), [(-1, 10), (0, 0), (1, 10)],
                         ids=["no match reads the last case", "cpu0", "cpu1"])
def test_select_indexes_a_variable_by_a_value(owner: int, expected: int) -> None:
    prog = compile_program(declare([]))
    s = prog.layout.pack((0, owner, 0, 0, 0, 10))
    expr = select(OWNER.var, [(0, VALUE[0]), (1, VALUE[1])])
    assert prog.evaluate(expr)(s) == expected


def test_table_is_a_constant_lookup() -> None:
    prog = compile_program(declare([]))
    expr = table((COLOR.var, OWNER.var), {(0, -1): 5, (0, 0): 6, (3, -1): 7})
    assert prog.evaluate(expr)(prog.initial) == 5
    assert prog.evaluate(expr)(prog.layout.pack((3, -1, 0, 0, 0, 10))) == 7


def test_statements_can_be_run_on_a_state() -> None:
    prog = compile_program(declare([]))
    s = prog.execute([assign(LAMP[Color.RED], 1), assign(VALUE[0], 30)])(prog.initial)
    assert prog.layout.unpack(s) == (0, -1, 1, 0, 30, 10)

"""Render `msrvirt check` results: event labels, counterexample traces, the verdict table, JSON.

Rendering only: every number and verdict comes from msrvirt.check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table

from msrvirt.check.explore import Counterexample, DesignCheck
from msrvirt.check.invariants import INVARIANTS, Invariant
from msrvirt.machine.designs import Design, Verdict
from msrvirt.machine.hostconf import HostConfig
from msrvirt.machine.model import (
    FILTER_CHOICE,
    GUEST_CPU,
    VALUE,
    Ev,
    Event,
    Machine,
    State,
    task_name,
)
from msrvirt.machine.nested import L0_FILTER_CHOICE, NestedEv


def _short(slot_label: str) -> str:
    return slot_label.removeprefix("IA32_")


def event_label(ev: Event) -> str:
    """One event in words, e.g. ``cpu0: guest WRMSR FRED_RSP0 = g1``."""
    slot = _short(ev.slot.label) if ev.slot is not None else ""
    match ev.kind:
        case Ev.HOST_USER_EVENT:
            text = "host interrupt/syscall from user mode"
        case Ev.HOST_EXCEPTION:
            text = "host NMI/#DB in kernel mode"
        case Ev.CONTEXT_SWITCH:
            text = f"context switch to {task_name(ev.task)}"
        case Ev.KVM_RUN:
            text = "vcpu thread calls KVM_RUN (vcpu_load)"
        case Ev.KVM_RUN_RETURN:
            text = "KVM_RUN returns to user mode (vcpu_put)"
        case Ev.VM_ENTRY:
            text = "VM entry"
        case Ev.VM_EXIT:
            text = "VM exit"
        case Ev.GUEST_RDMSR:
            text = f"guest RDMSR {slot}"
        case Ev.GUEST_WRMSR:
            text = f"guest WRMSR {slot} = {VALUE.text(ev.value)}"
        case Ev.GUEST_ERETU:
            text = "guest ERETU to user mode"
        case Ev.GUEST_EVENT_RING3:
            text = "guest interrupt/syscall from user mode"
        case Ev.GUEST_EVENT_RING0:
            text = "guest NMI/#DB in kernel mode"
        case Ev.KVM_SET_MSRS:
            text = f"VMM KVM_SET_MSRS {slot} = {VALUE.text(ev.value)}"
        case Ev.SET_FILTER:
            text = f"VMM sets MSR filter: {FILTER_CHOICE.text(ev.choice)}"
        case Ev.SET_CPUID:
            text = f"VMM sets CPUID: {GUEST_CPU.text(ev.choice)}"
        case _:
            text = _nested_label(ev, slot)
    return f"cpu{ev.cpu}: {text}" if ev.cpu >= 0 else text


def _nested_label(ev: Event, slot: str) -> str:
    """A nested design's own event in words."""
    match ev.kind:
        case NestedEv.L2_RDMSR:
            return f"L2 RDMSR {slot}"
        case NestedEv.L2_WRMSR:
            return f"L2 WRMSR {slot} = {VALUE.text(ev.value)}"
        case NestedEv.L2_EVENT_RING0:
            return "L2 NMI/#DB in kernel mode"
        case NestedEv.L2_ERETU:
            return "L2 ERETU to user mode"
        case NestedEv.L2_EVENT_RING3:
            return "L2 interrupt/syscall from user mode"
        case NestedEv.NESTED_EXIT:
            return "L2 exit L1 wants: nested VM exit to L1"
        case NestedEv.L1_EVENT_RING0:
            return "L1 NMI/#DB"
        case NestedEv.L1_EVENT_RING3:
            return "L1 interrupt/syscall from user mode"
        case NestedEv.L1_KVM_RUN:
            return "L1's VMM calls KVM_RUN"
        case NestedEv.L1_KVM_RUN_RETURN:
            return "L1's KVM_RUN returns to L1 user mode (L1's vcpu_put)"
        case NestedEv.L1_SET_FILTER:
            return f"L1's VMM sets L1's MSR filter: {FILTER_CHOICE.text(ev.choice)}"
        case NestedEv.L1_VMWRITE:
            return "L1 VMWRITEs a vmcs12 field that is not shadowed"
        case NestedEv.L1_VMRESUME:
            return "L1 VMRESUME: L0's nested VM entry (vmcs02 from vmcs12, bitmaps merged)"
        case NestedEv.L0_SET_FILTER:
            return f"L0's VMM sets MSR filter: {L0_FILTER_CHOICE.text(ev.choice)}"
    raise ValueError(f"no label for event kind {ev.kind!r}")


def changes(machine: Machine, before: State, after: State) -> list[str]:
    """``name: old -> new`` for every variable that differs, in the words of its domain."""
    out = []
    for var, old, new in zip(machine.fields, machine.unpack(before), machine.unpack(after),
                             strict=True):
        if old != new:
            text = var.domain.text
            out.append(f"{var.name.replace('IA32_', '')}: {text(old)} -> {text(new)}")
    return out


def trace_lines(machine: Machine, cx: Counterexample) -> list[str]:
    """One line per event with what it changed; the last line names the broken invariant."""
    lines = []
    before = cx.initial
    width = max(len(event_label(ev)) for ev in cx.events)
    for i, (ev, after) in enumerate(zip(cx.events, cx.states, strict=True), start=1):
        changed = "; ".join(changes(machine, before, after)) or "no state change"
        line = f"{i}. {event_label(ev):<{width}}  | {changed}"
        if i == len(cx.events):
            line += f"  => breaks {cx.invariant}: {cx.message}"
        lines.append(line)
        before = after
    return lines


def designs_table(designs: Sequence[Design]) -> Table:
    """The `--list-designs` table."""
    table = Table(title="designs (DESIGN@HOST: a design on another host configuration)")
    for column in ("design", "expected", "policy", "host", "what it is"):
        table.add_column(column)
    for d in designs:
        table.add_row(d.name, d.expected.value, d.policy.name, d.host.name, d.summary)
    return table


def hosts_table(hosts: Sequence[HostConfig]) -> Table:
    """The host configurations `--list-designs` lists after the designs."""
    table = Table(title="host configurations")
    for column in ("host", "stack-level map", "shadow stacks", "what it is"):
        table.add_column(column)
    for h in hosts:
        table.add_row(h.name, h.map_text, h.shadow_stacks.value, h.summary)
    return table


def verdict_table(checks: Sequence[DesignCheck]) -> Table:
    """Designs x invariants: each cell 'holds' or 'FAILS/n' (n = shortest counterexample)."""
    table = Table(title="msrvirt check: designs x invariants",
                  caption="-: the invariant judges the other kind of design (single-level or"
                  " nested)")
    table.add_column("design", no_wrap=True)
    table.add_column("expected")
    table.add_column("verdict")
    for inv in INVARIANTS:
        table.add_column(inv.name)
    for column in ("states", "states/s", "seconds"):
        table.add_column(column, justify="right")
    for chk in checks:
        res = chk.result
        cells = []
        for inv in INVARIANTS:
            cx = res.counterexamples.get(inv.name)
            cells.append("-" if not _applies(inv, chk) else
                         "holds" if cx is None else f"FAILS/{len(cx)}")
        mark = "" if chk.as_expected else " (unexpected)"
        verdict = res.verdict.value + ("" if res.complete else f" (depth {res.depth})")
        table.add_row(chk.design.name, chk.design.expected.value, verdict + mark, *cells,
                      f"{res.states:,}", f"{res.states_per_second:,.0f}", f"{res.seconds:.1f}")
    return table


def _applies(inv: Invariant, chk: DesignCheck) -> bool:
    return inv.applies.to(chk.machine)


def judged_by(chk: DesignCheck) -> list[str]:
    """The names of the invariants that judge ``chk``'s design (single-level or nested)."""
    return [inv.name for inv in INVARIANTS if _applies(inv, chk)]


def counterexample_text(chk: DesignCheck) -> list[str]:
    """The shortest counterexample of a failing design, with a heading line."""
    cx = chk.result.first_counterexample()
    if cx is None:
        return []
    others = ", ".join(f"{name} ({len(c)} events)"
                       for name, c in chk.result.counterexamples.items() if c is not cx)
    head = f"{chk.design.name}: breaks {cx.invariant} in {len(cx)} events"
    if others:
        head += f"; also breaks {others}"
    return [head, *("  " + line for line in trace_lines(chk.machine, cx))]


def to_json(checks: Sequence[DesignCheck]) -> dict[str, Any]:
    """The `--json` object (docs/check.md)."""
    designs = []
    for chk in checks:
        res = chk.result
        cx = res.first_counterexample()
        designs.append({
            "name": chk.design.name,
            "expected": chk.design.expected.value,
            "verdict": res.verdict.value,
            "invariants": {name: res.verdicts[name].value for name in judged_by(chk)},
            "counterexample": trace_lines(chk.machine, cx) if cx is not None else None,
            "states": res.states,
            "seconds": round(res.seconds, 3),
            # A depth-bounded run's "holds" covers only the states within that depth.
            "exhaustive": res.complete,
            "depth": res.depth,
        })
    return {"designs": designs}


def summary_line(checks: Sequence[DesignCheck]) -> str:
    """The closing line: all as expected, or which designs are not."""
    wrong = [c.design.name for c in checks if not c.as_expected]
    if not wrong:
        held = sum(c.result.verdict is Verdict.HOLDS for c in checks)
        found = sum(bool(c.design.finding) for c in checks)
        caught = len(checks) - held - found
        line = (f"all {len(checks)} verdicts as expected: {held} hold,"
                f" {caught} planted bug{'' if caught == 1 else 's'} caught")
        if found:
            line += f", {found} finding{'' if found == 1 else 's'} shown"
        return line
    return "not as expected: " + ", ".join(wrong)

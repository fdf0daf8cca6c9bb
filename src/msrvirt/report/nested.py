"""Rendering of the nested-VMX model (policy/nested.py): JSON forms and terminal tables.

docs/json.md documents the JSON schemas.  Computes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

from msrvirt.arch.msrs import display_name
from msrvirt.arch.vmcs12 import encode, names
from msrvirt.policy.nested import L2Decision, L2Outcome, Nested
from msrvirt.policy.scenario import Scenario
from msrvirt.report.jsonout import reason_json
from msrvirt.report.tables import outcome_text, scenario_line

# Outcomes without L0's involvement (L0's own are styled by report/tables.py).
_STYLE = {L2Outcome.PASSTHROUGH: "green", L2Outcome.REFLECTED: "magenta", L2Outcome.GP: "red"}


def nested_json(n: Nested) -> dict[str, Any]:
    """How L1 runs L2 and L0's merge list."""
    l2 = n.l1.l2
    return {
        "l1": n.l1.name,
        "kind": n.l1.kind.value,
        "l2_guest": None if l2 is None else sorted(f.value for f in l2.guest),
        "l2_guest_caps": None if l2 is None else sorted(f.value for f in l2.guest_caps),
        "vmcs12": {
            "controls": names(n.l1.controls),
            "fields": {f"{enc:#06x}": f"{value:#x}" for enc, value in encode(n.l1.controls).items()},
        },
        "merge": {"name": n.merge.name, "description": n.merge.description,
                  "source": n.merge.source,
                  "msrs": [{"index": msr, "name": display_name(msr), "access": access.label}
                           for msr, access in n.merge.entries]},
    }


def l2_decision_json(d: L2Decision) -> dict[str, Any]:
    return {
        "outcome": d.outcome.value,
        "exit_reason": reason_json(d.exit_reason),
        "exit_reason_if_enabled": reason_json(d.would_exit),
        "exact": d.exact,
        "missing": d.missing or None,
        "vmcs02_intercept": d.bit.intercept,
        "basis": d.bit.basis.value,
        "vmcs01_intercept": d.bit.vmcs01,
        "l1_intercept": d.l1_intercept,
        "l1_wants_exit": d.l1_wants_exit,
        "nested_exit_reason": d.nested_exit_reason,
        "reasons": list(d.reasons),
    }


def l2_outcome_text(d: L2Decision) -> Text:
    if d.l0 is not None:  # L0 kept the exit: its outcome is the single-level one
        return outcome_text(d.l0)
    return Text(d.outcome.value, style=_STYLE[d.outcome])


def nested_line(n: Nested) -> str:
    """One line: who L1 is, what vmcs12 enables, and L0's merge list."""
    l2 = n.l1.l2
    who = n.l1.name
    if l2 is not None:
        removed = sorted(f.value for f in l2.host.features - l2.guest)
        who += " (L2 guest " + ",".join(["host", *(f"-{f}" for f in removed)]) + ")"
    controls = ",".join(names(n.l1.controls)) or "none"
    return f"nested: L1 {who}; vmcs12 {controls}; merge list {n.merge.name}"


def explain_l2_table(s: Scenario, n: Nested,
                     rows: Sequence[tuple[int, L2Decision, L2Decision]]) -> Table:
    """L2's read and write of each MSR, vmcs02's bits, and why."""
    table = Table(title=f"{scenario_line(s)}\n{nested_line(n)}", title_justify="left")
    for name in ("MSR", "index", "vmcs02 R/W", "read", "write"):
        table.add_column(name, no_wrap=True, justify="right" if name == "index" else "left")
    table.add_column("why")
    for index, rd, wr in rows:
        bits = "".join("1" if d.bit.intercept else "0" for d in (rd, wr))
        why = rd.summary if rd.summary == wr.summary else f"R: {rd.summary}\nW: {wr.summary}"
        table.add_row(display_name(index), f"{index:#x}", bits, l2_outcome_text(rd),
                      l2_outcome_text(wr), why)
    return table

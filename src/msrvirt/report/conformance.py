"""Rendering of conformance rows and probe observations.  Computes nothing."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from msrvirt.conform.corpus import Counts, Row
from msrvirt.conform.predict import Seen
from msrvirt.conform.scenario import EnableExits, SetFilter, describe
from msrvirt.policy.decide import MsrAccess


def op_text(op: MsrAccess | SetFilter | EnableExits) -> str:
    d = describe(op)
    kind = d["kind"]
    if kind in ("set_filter", "enable_exits"):
        return kind if kind == "set_filter" else f"enable_exits {d['mask']:#x}"
    text = f"{kind} {d['name']}"
    if "value" in d:
        text += f" = {d['value']:#x}"
    return text


def seen_text(s: Seen) -> str:
    if s.result is None:
        return f"errno {s.errno}" if s.errno else "ok"
    text = s.result.value
    if s.exit is not None and s.exit.name:
        text = f"exit {s.exit.name.lower()}, {text}"
    if s.value is not None:
        text += f" {s.value:#x}"
    return text


def rows_table(rows: Sequence[Row], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("scenario", "operation", "predicted", "observed", "agree"):
        table.add_column(col)
    for r in rows:
        pred = seen_text(r.predicted.seen)
        if r.predicted.scope.value == "filter":
            pred = f"{'exit filter' if 'exit filter' in pred else 'no filter exit'} (only)"
        table.add_row(r.scenario, op_text(r.op), pred, seen_text(r.observed),
                      Text("yes", style="green") if r.agree else Text("NO", style="bold red"))
    return table


def summary_table(per_scenario: Sequence[Counts]) -> Table:
    """Per scenario: operations, full-scope and filter-only predictions, disagreements."""
    table = Table(title="conformance summary", title_justify="left")
    table.add_column("scenario")
    for col in ("operations", "full scope", "filter only", "disagree"):
        table.add_column(col, justify="right")
    for c in per_scenario:
        table.add_row(c.scenario, str(c.operations), str(c.full),
                      Text(str(c.filter_only), style="yellow" if c.filter_only else "green"),
                      Text(str(c.disagree), style="bold red" if c.disagree else "green"))
    return table

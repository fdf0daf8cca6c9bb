"""Terminal rendering with rich: tables and decision chains.  Computes nothing."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from msrvirt.arch.msrs import display_name
from msrvirt.policy.bitmap import BitmapDiff
from msrvirt.policy.decide import Decision, Outcome
from msrvirt.policy.scenario import Scenario
from msrvirt.report.jsonout import exits_list

_STYLE = {
    Outcome.PASSTHROUGH: "green",
    Outcome.EMULATED: "cyan",
    Outcome.GP: "red",
    Outcome.EXIT: "yellow",
    Outcome.REJECTED: "red",
}


def console() -> Console:
    # Off a terminal (pipes, CI logs) rich assumes 80 columns; tables here need more.
    probe = Console()
    # markup=False: reasons contain [brackets] (sources) that are text, not rich markup.
    return Console(highlight=False, markup=False, width=None if probe.is_terminal else 160)


def outcome_text(d: Decision) -> Text:
    label = d.outcome.value
    if d.outcome is Outcome.EXIT and d.exit_reason is not None and d.exit_reason.name:
        label = f"exit {d.exit_reason.name.lower()}"
    return Text(label, style=_STYLE[d.outcome])


def scenario_line(s: Scenario) -> str:
    removed = sorted(f.value for f in s.host.features - s.guest)
    extra = sorted(f.value for f in s.guest - s.host.features)
    guest = "host" + "".join(f",-{f}" for f in removed) + "".join(f",{f}" for f in extra)
    flt = "none" if s.filter.is_empty and s.filter.default_allow else (
        f"{'deny' if not s.filter.default_allow else 'allow'} by default,"
        f" {sum(1 for r in s.filter.ranges if r.nmsrs)} range(s)")
    parts = [
        f"host {s.host.name} ({s.host.backend.value})",
        f"guest {guest}",
        f"policy {s.policy.name}",
        f"filter {flt}",
        f"exits {','.join(exits_list(s.exits)) or 'none'}",
    ]
    if s.runtime.set_names():
        parts.append("runtime " + ",".join(s.runtime.set_names()))
    return "; ".join(parts)


def explain_table(s: Scenario, rows: Sequence[tuple[int, Decision, Decision]]) -> Table:
    table = Table(title=scenario_line(s), title_justify="left", expand=False)
    table.add_column("MSR", no_wrap=True)
    table.add_column("index", justify="right", no_wrap=True)
    table.add_column("read", no_wrap=True)
    table.add_column("write", no_wrap=True)
    table.add_column("why")
    for index, rd, wr in rows:
        why = rd.summary if rd.summary == wr.summary else f"R: {rd.summary}\nW: {wr.summary}"
        table.add_row(display_name(index), f"{index:#x}", outcome_text(rd), outcome_text(wr), why)
    return table


def decision_lines(reasons: Sequence[str]) -> list[str]:
    return [f"  {i + 1}. {reason}" for i, reason in enumerate(reasons)]


def decision_diff_table(title: str, rows: Sequence[tuple[int, str, Decision, Decision]]) -> Table:
    """(MSR, direction, before, after) rows of `explain --diff`, with the reason after."""
    table = Table(title=title, title_justify="left")
    for col in ("MSR", "index", "access", "before", "after"):
        table.add_column(col, no_wrap=True, justify="right" if col == "index" else "left")
    table.add_column("why, after")
    for index, direction, before, after in rows:
        table.add_row(display_name(index), f"{index:#x}", direction, outcome_text(before),
                      outcome_text(after), after.summary)
    return table


def diff_table(title: str, rows: Sequence[BitmapDiff]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("MSR", no_wrap=True)
    table.add_column("index", justify="right")
    table.add_column("access")
    table.add_column("before")
    table.add_column("after")
    for r in rows:
        table.add_row(
            display_name(r.msr), f"{r.msr:#x}", r.access.label,
            "intercept" if r.before_intercept else "passthrough",
            "intercept" if r.after_intercept else "passthrough",
        )
    return table

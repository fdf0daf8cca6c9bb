"""`msrvirt check`: explore the FRED save/restore designs and judge every invariant.

Exit status 0 when every checked design gets its expected verdict (v9 and the review's
alternatives hold, each planted bug is caught), 1 otherwise, 2 for bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from msrvirt.check.explore import DesignCheck
from msrvirt.check.parallel import CheckJob, DesignProgress, check_all, default_processes
from msrvirt.cli import EXIT_FINDING, EXIT_OK
from msrvirt.errors import UsageError
from msrvirt.machine.designs import DESIGNS, Design, design
from msrvirt.machine.hostconf import HOST_CONFIGS
from msrvirt.machine.model import DEFAULT_BOUNDS, Bounds
from msrvirt.machine.nested import nested_bounds
from msrvirt.report.check import (
    counterexample_text,
    designs_table,
    hosts_table,
    summary_line,
    to_json,
    verdict_table,
)
from msrvirt.spin.run import check_all_with_spin


class Engine(StrEnum):
    """Which model checker explores the designs (docs/check.md: both read one declaration)."""

    PYTHON = "python"  # msrvirt.check.explore
    SPIN = "spin"  # the Promela model, run by spin and pan (msrvirt.spin)


_WIDE = 200  # table width when stdout is not a terminal (pipes, CI logs)


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "check", help="prove the FRED save/restore invariants or print the shortest trace"
        " that breaks one", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--design", action="append", metavar="NAME",
                       help="check this design, or DESIGN@HOST: a design on another host"
                       " configuration (repeatable; default: v9; --list-designs lists both)")
    which.add_argument("--all-designs", action="store_true", help="check every design")
    which.add_argument("--list-designs", action="store_true", help="list the designs and exit")
    parser.add_argument("--cpus", type=int, default=DEFAULT_BOUNDS.cpus,
                        help="physical CPUs (default %(default)s)")
    parser.add_argument("--tasks", type=int, default=DEFAULT_BOUNDS.tasks,
                        help="host tasks, the vCPU thread included (default %(default)s)")
    parser.add_argument("--values", type=int, default=DEFAULT_BOUNDS.values,
                        help="guest values besides the reset value (default %(default)s)")
    parser.add_argument("--depth", type=int, default=None,
                        help="explore at most this many events deep (default: exhaustive)")
    parser.add_argument("--engine", choices=[e.value for e in Engine], default=Engine.PYTHON.value,
                        help="msrvirt's explorer, or SPIN on the generated Promela model"
                        " (needs spin and a C compiler; default %(default)s)")
    add_jobs_option(parser)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.set_defaults(run=run)


def add_jobs_option(parser: Any) -> None:
    """``--jobs N``: designs checked in parallel processes (check and review)."""
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="check up to N designs at once, in parallel processes"
                        f" (default: the CPU count, {default_processes()} here)")


def jobs_of(args: argparse.Namespace) -> int | None:
    """The ``--jobs`` value, checked (UsageError unless at least 1)."""
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"jobs must be at least 1, not {args.jobs}")
    jobs: int | None = args.jobs
    return jobs


@contextmanager
def _progress(enabled: bool) -> Iterator[Progress | None]:
    if not enabled:
        yield None
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        yield bar


def _callbacks(bar: Progress | None) -> tuple[DesignProgress | None,
                                             Callable[[DesignCheck], None] | None]:
    """One progress line per design being explored, removed when it is done."""
    if bar is None:
        return None, None
    tasks: dict[str, TaskID] = {}

    def report(name: str, states: int, depth: int, frontier: int) -> None:
        if name not in tasks:
            tasks[name] = bar.add_task(name, total=None)
        tail = f", frontier {frontier:,}" if frontier >= 0 else ""  # pan does not say
        bar.update(tasks[name], description=f"{name}: depth {depth}, {states:,} states{tail}")

    def done(chk: DesignCheck) -> None:
        if chk.design.name in tasks:
            bar.remove_task(tasks.pop(chk.design.name))

    return report, done


def run(args: argparse.Namespace) -> int:
    """Run the verb; return the exit status."""
    out = Console(width=None if sys.stdout.isatty() else _WIDE)
    if args.list_designs:
        if args.json:
            print(json.dumps({"designs": [
                {"name": d.name, "expected": d.expected.value, "policy": d.policy.name,
                 "host": d.host.name, "summary": d.summary} for d in DESIGNS.values()],
                "hosts": [{"name": h.name, "stack_map": h.map_text,
                           "shadow_stacks": h.shadow_stacks.value,
                           "cet_state": h.cet_state.value, "summary": h.summary}
                          for h in HOST_CONFIGS.values()]}, indent=2))
        else:
            out.print(designs_table(list(DESIGNS.values())))
            out.print(hosts_table(list(HOST_CONFIGS.values())))
        return EXIT_OK
    bounds = Bounds(cpus=args.cpus, tasks=args.tasks, values=args.values)
    if args.depth is not None and args.depth < 1:
        raise UsageError(f"depth must be at least 1, not {args.depth}")
    jobs = jobs_of(args)
    chosen: list[Design] = (list(DESIGNS.values()) if args.all_designs
                            else [design(n) for n in (args.design or ["v9"])])
    todo = [CheckJob(design=d, bounds=bounds, depth=args.depth) for d in chosen]
    engine = Engine(args.engine)
    with _progress(sys.stderr.isatty()) as bar:
        report, done = _callbacks(bar)
        if engine is Engine.SPIN:
            checks = [r.check for r in check_all_with_spin(todo, processes=jobs, progress=report,
                                                            done=done)]
        else:
            checks = check_all(todo, processes=jobs, progress=report, done=done)
    if args.json:
        print(json.dumps(to_json(checks), indent=2))
    else:
        depth = "exhaustive" if args.depth is None else f"depth {args.depth}"
        out.print(f"bounds: cpus={bounds.cpus} tasks={bounds.tasks} values={bounds.values},"
                  f" {depth}; engine: {engine.value}", highlight=False)
        if any(d.nested is not None for d in chosen):
            nb = nested_bounds(bounds)
            out.print(f"nested designs: cpus={nb.cpus} tasks={nb.tasks} values={nb.values}"
                      " (one CPU, the vCPU thread and one other task: docs/check.md)",
                      highlight=False)
        out.print(verdict_table(checks))
        for chk in checks:
            lines = counterexample_text(chk)
            if lines:
                out.print()
                for line in lines:
                    out.print(line, highlight=False, markup=False, soft_wrap=True)
        out.print()
        out.print(summary_line(checks), highlight=False)
    return EXIT_OK if all(c.as_expected for c in checks) else EXIT_FINDING

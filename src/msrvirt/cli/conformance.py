"""`msrvirt conformance`: run the probe corpus on this host's KVM and hold the model to it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from msrvirt.arch.hosts import HostProfile
from msrvirt.cli import EXIT_FINDING, EXIT_OK, InputPath
from msrvirt.cli.options import parse_guest, print_json
from msrvirt.conform.corpus import Row, builtin, rows, scenario_counts
from msrvirt.conform.predict import predict
from msrvirt.conform.scenario import ProbeScenario, parse
from msrvirt.dataio import load
from msrvirt.live import fingerprint as fp_mod
from msrvirt.live.conformance import run_scenario
from msrvirt.live.kvm import Kvm
from msrvirt.report.conformance import rows_table, summary_table
from msrvirt.report.tables import console

SWEEP_ROWS = 1000  # a scenario with more operations is summarised unless --full


def register(sub: Any) -> None:
    p = sub.add_parser("conformance", help="run the probe corpus on this host and compare"
                       " every outcome with the model", description=__doc__)
    p.add_argument("--scenario", metavar="FILE", action="append", type=InputPath,
                   help="run these scenario files instead of the built-in corpus (repeatable;"
                   " '-': standard input)")
    p.add_argument("--full", action="store_true",
                   help=f"print every row, also of scenarios over {SWEEP_ROWS} operations")
    p.add_argument("--json", action="store_true", help="print one JSON object (docs/json.md)")
    p.set_defaults(run=run)


def load_scenarios(paths: list[str] | None) -> list[ProbeScenario]:
    if not paths:
        return builtin()
    return [load(path, parse) for path in paths]


def compare(kvm: Kvm, host: HostProfile, ps: ProbeScenario,
            progress: Callable[[int], None] | None = None) -> list[Row]:
    """Run ``ps`` in a probe VM on ``kvm`` (``host``'s KVM) and pair each observed outcome
    with the model's prediction."""
    result = run_scenario(kvm, ps, parse_guest(ps.guest, host.features), progress=progress)
    return rows(ps, list(predict(host, result.guest_features, ps)), result.observed)


def run(args: argparse.Namespace) -> int:
    scenarios = load_scenarios(args.scenario)
    with Kvm() as kvm:
        fingerprint = fp_mod.take(kvm)
        host = fp_mod.host_profile(fingerprint)
        all_rows: list[Row] = []
        summary = []
        total = sum(ps.op_count for ps in scenarios)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=Console(stderr=True), transient=True,
                      disable=not sys.stderr.isatty()) as bar:
            task = bar.add_task("conformance", total=total)
            for ps in scenarios:
                bar.update(task, description=ps.name[:40])
                got = compare(kvm, host, ps, progress=lambda n: bar.advance(task, n))
                all_rows.extend(got)
                summary.append(scenario_counts(ps.name, got))
    bad = sum(c.disagree for c in summary)
    if args.json:
        print_json({"host": fingerprint.to_obj(),
                    "summary": [c.to_obj() for c in summary],
                    "results": [r.to_obj() for r in all_rows]})
        return EXIT_FINDING if bad else EXIT_OK
    out = console()
    small = {c.scenario for c in summary if c.operations <= SWEEP_ROWS}
    shown = [r for r in all_rows if args.full or not r.agree or r.scenario in small]
    out.print(rows_table(shown, f"conformance on {host.description}"))
    out.print(summary_table(summary))
    full = sum(c.full for c in summary)
    out.print(f"{len(scenarios)} scenarios, {len(all_rows)} operations ({full} predicted at full"
              f" scope, {len(all_rows) - full} for the filter only), {len(all_rows) - bad} agree,"
              f" {bad} disagree")
    return EXIT_FINDING if bad else EXIT_OK

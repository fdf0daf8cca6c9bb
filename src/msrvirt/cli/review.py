"""`msrvirt review`: every claim of the seed patch and its review, with msrvirt's evidence."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from msrvirt.cli import InputPath, OutputPath
from msrvirt.cli.check import add_jobs_option, jobs_of
from msrvirt.cli.conformance import compare
from msrvirt.cli.cost import load_costs
from msrvirt.cli.options import print_json
from msrvirt.conform.corpus import builtin, scenario_counts
from msrvirt.cost.constants import ExitCosts
from msrvirt.cost.model import PolicyCost
from msrvirt.live import fingerprint as fp_mod
from msrvirt.live.errors import KvmError
from msrvirt.live.kvm import Kvm
from msrvirt.output import check_output, write_output
from msrvirt.report.cost import cost_json, sweep_plot_png
from msrvirt.report.review import checks_json, claim_json, claims_table, counts_line, html_report
from msrvirt.report.tables import console
from msrvirt.review.evidence import SWEEP_RATES, ConformanceSummary, compute_inputs
from msrvirt.review.judge import judge_all, load_claims
from msrvirt.review.kinds import designs_needed

DEFAULT_HTML = "out/review.html"


def register(sub: Any) -> None:
    p = sub.add_parser("review", help="judge every claim of the seed patch and its review,"
                       " with the evidence (terminal, JSON and HTML)", description=__doc__)
    p.add_argument("--html", metavar="FILE", default=DEFAULT_HTML, type=OutputPath,
                   help=f"where to write the HTML report (default {DEFAULT_HTML}, whose"
                   " directory is created; '-': stdout)")
    p.add_argument("--no-live", action="store_true",
                   help="do not run the conformance corpus on /dev/kvm")
    p.add_argument("--costs", metavar="FILE", type=InputPath,
                   help="per-exit costs from `msrvirt calibrate --out FILE`")
    add_jobs_option(p)
    p.add_argument("--json", action="store_true", help="print one JSON object (docs/json.md)")
    p.set_defaults(run=run)


def live_conformance(status: Any) -> tuple[ConformanceSummary | None, dict[str, Any] | None,
                                           str]:
    """Run the built-in corpus on /dev/kvm; (summary, fingerprint JSON, note)."""
    try:
        kvm = Kvm()
    except KvmError as err:
        return None, None, f"conformance not run: {err}"
    with kvm:
        fp = fp_mod.take(kvm)
        host = fp_mod.host_profile(fp)
        per = []
        for ps in builtin():
            status.update(f"conformance: {ps.name[:50]}")
            per.append(scenario_counts(ps.name, compare(kvm, host, ps)))
    summary = ConformanceSummary(host=host.description, kernel=fp.kernel_release,
                                 scenarios=tuple(per))
    return summary, fp.to_obj(), f"conformance on {host.description}"


def _cost_table_rows(costs: dict[str, PolicyCost]) -> tuple[list[tuple[str, str, float, float]],
                                                             list[tuple[str, float, float]]]:
    per_msr = [(c.policy, row.name, row.exits_per_s, row.cpu_percent)
               for c in costs.values() for row in c.rows if row.exits_per_s > 0]
    totals = [(c.policy, c.exits_per_s, c.cpu_percent) for c in costs.values()]
    return per_msr, totals


def _figures(exit_costs: ExitCosts) -> list[tuple[str, str, str]]:
    return [(name, f"{fig.value:,.4g} {fig.unit} ({'measured' if fig.measured else 'default'})",
             fig.source) for name, fig in exit_costs.figures()]


def run(args: argparse.Namespace) -> int:
    # Before 20 s of work, not after; only the default's directory is made (out/).
    parents = args.html == DEFAULT_HTML
    check_output(args.html, parents=parents)
    jobs = jobs_of(args)
    exit_costs = load_costs(args.costs)
    table = load_claims()
    err = Console(stderr=True)
    with err.status("msrvirt review", spinner="dots") as status:
        conformance, fingerprint, note = (None, None, "conformance not run (--no-live)") \
            if args.no_live else live_conformance(status)
        inputs = compute_inputs(designs=designs_needed(table.claims), conformance=conformance,
                                exit_costs=exit_costs, progress=lambda what: status.update(what),
                                jobs=jobs)
        status.update("claims")
        claims = judge_all(table.claims, inputs)
        status.update("report")
        per_msr, totals = _cost_table_rows(inputs.costs)
        host_line = note if conformance is None else (
            f"Conformance host: {conformance.host}, Linux {conformance.kernel}.")
        page = html_report(
            claims=claims, checks=inputs.checks, cost_rows=per_msr, cost_totals=totals,
            workload=f"{inputs.workload.name} at {inputs.workload.guest_context_switches.per_second:,.0f}"
            " context switches/s", exit_costs=_figures(exit_costs),
            plot_png=sweep_plot_png(inputs.sweep, SWEEP_RATES), conformance=conformance,
            host_line=host_line)
    write_output(args.html, page.encode(), parents=parents)
    if args.json:
        print_json({
            "claims": [claim_json(c) for c in claims],
            "host": fingerprint,
            "checks": checks_json(inputs.checks),
            "cost": cost_json(list(inputs.costs.values()), exit_costs),
            "conformance": None if conformance is None else {
                "scenarios": [{"scenario": sc.scenario, "operations": sc.operations,
                               "full_scope": sc.full, "filter_only": sc.filter_only,
                               "disagree": sc.disagree}
                              for sc in conformance.scenarios],
                "operations": conformance.operations,
                "full_scope": conformance.full_scope,
                "filter_only": conformance.filter_only,
                "disagreements": conformance.disagreements},
            "html": args.html,
        })
        return 0
    out = console()
    out.print(claims_table(claims))
    out.print(counts_line(claims) + f"; {note}")
    out.print(f"HTML report: {args.html}")
    return 0


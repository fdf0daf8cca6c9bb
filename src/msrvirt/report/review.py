"""Rendering of `msrvirt review`: the terminal summary, the JSON object and the HTML report.

The HTML report is one self-contained file: inline CSS, the plot embedded as a data URI,
no script or font loaded from anywhere.  A tiny inline script marks the page as loaded
and counts the claims it shows (the browser test reads both).
"""

from __future__ import annotations

import base64
import datetime
import html
from collections.abc import Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

from msrvirt import __version__
from msrvirt.check.explore import DesignCheck

_VERDICT_STYLE = {"holds": "green", "fails": "bold red", "undecided": "yellow"}


def verdict_text(verdict: str) -> Text:
    return Text(verdict, style=_VERDICT_STYLE.get(verdict, ""))


def claims_table(claims: Sequence[Any]) -> Table:
    table = Table(title="msrvirt review: the claims of \"KVM: VMX: Set FRED MSR intercepts\""
                  " (v9 08/22) and its review", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("claim")
    table.add_column("who")
    table.add_column("verdict", no_wrap=True)
    table.add_column("why")
    for i, c in enumerate(claims, 1):
        table.add_row(str(i), c.claim, c.who, verdict_text(c.verdict.value), c.why)
    return table


def counts_line(claims: Sequence[Any]) -> str:
    by = {v: sum(1 for c in claims if c.verdict.value == v) for v in ("holds", "fails",
                                                                        "undecided")}
    return (f"{len(claims)} claims: {by['holds']} hold, {by['fails']} fail,"
            f" {by['undecided']} undecided")


def claim_json(c: Any) -> dict[str, Any]:
    return {
        "id": c.id,
        "claim": c.claim,
        "who": c.who,
        "source": c.source,
        "verdict": c.verdict.value,
        "why": c.why,
        "evidence": [{"kind": e.kind.value, "summary": e.summary, "supports": e.supports,
                      "detail": list(e.detail)} for e in c.evidence],
    }


def checks_json(checks: dict[str, DesignCheck]) -> dict[str, Any]:
    return {name: {"verdict": chk.result.verdict.value, "expected": chk.design.expected.value,
                   "states": chk.result.states, "complete": chk.result.complete,
                   "seconds": round(chk.result.seconds, 3),
                   "invariants": {k: v.value for k, v in chk.result.verdicts.items()}}
            for name, chk in checks.items()}


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:70rem;
color:#1d2330;line-height:1.45;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #ccd;
padding-bottom:.2rem}h3{margin:.2rem 0 .4rem 0;font-size:1.05rem}
.meta{color:#556;font-size:.9rem}
table{border-collapse:collapse;width:100%;font-size:.9rem;margin:.6rem 0}
th,td{border:1px solid #d6d9e0;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f1f3f7}
.verdict{font-weight:600;padding:.05rem .45rem;border-radius:.3rem;white-space:nowrap}
.holds{background:#dff3e4;color:#14632b}.fails{background:#fbe0e0;color:#8a1010}
.undecided{background:#fff3cd;color:#7a5a00}
.claim{border:1px solid #d6d9e0;border-radius:.5rem;padding:.8rem 1rem;margin:1rem 0}
.why{margin:.3rem 0 .6rem 0}.source{color:#556;font-size:.85rem}
.ev{margin:.4rem 0 .4rem 1rem}.kind{font-size:.75rem;text-transform:uppercase;
letter-spacing:.04em;background:#eef;border-radius:.25rem;padding:0 .3rem;margin-right:.4rem}
.sup-true{border-left:3px solid #2e9e4f;padding-left:.5rem}
.sup-false{border-left:3px solid #c62828;padding-left:.5rem}
.sup-none{border-left:3px solid #a0a7b4;padding-left:.5rem}
pre{background:#f7f8fa;border:1px solid #e3e6ec;padding:.5rem;overflow-x:auto;font-size:.78rem;
white-space:pre}
img{max-width:100%;border:1px solid #e3e6ec}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _verdict_html(verdict: str) -> str:
    return f'<span class="verdict {_e(verdict)}">{_e(verdict)}</span>'


def html_report(*, claims: Sequence[Any], checks: dict[str, DesignCheck],
                cost_rows: Sequence[tuple[str, str, float, float]],
                cost_totals: Sequence[tuple[str, float, float]], workload: str,
                exit_costs: Sequence[tuple[str, str, str]], plot_png: bytes,
                conformance: Any, host_line: str) -> str:
    """The whole report as one HTML document (see the module docstring)."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>msrvirt review: KVM: VMX: Set FRED MSR intercepts (v9 08/22)</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>msrvirt review: “KVM: VMX: Set FRED MSR intercepts” (v9 08/22)</h1>",
        f'<p class="meta">msrvirt {_e(__version__)}, {_e(now)}. {_e(host_line)}</p>',
        f"<p><strong>{_e(counts_line(claims))}.</strong> Each claim of the patch and its"
        " review thread, msrvirt's verdict, and the evidence: intercept decisions and the"
        " rules behind them, the exhaustive checker's verdicts and shortest counterexamples,"
        " exit costs, and the real kernel of this machine.</p>",
        "<h2>Summary</h2><table><thead><tr><th>#</th><th>claim</th><th>who</th>"
        "<th>verdict</th><th>why</th></tr></thead><tbody>",
    ]
    for i, c in enumerate(claims, 1):
        parts.append(f'<tr><td>{i}</td><td><a href="#{_e(c.id)}">{_e(c.claim)}</a></td>'
                     f"<td>{_e(c.who)}</td><td>{_verdict_html(c.verdict.value)}</td>"
                     f"<td>{_e(c.why)}</td></tr>")
    parts.append("</tbody></table><h2>Claims and evidence</h2>")
    for i, c in enumerate(claims, 1):
        parts.append(f'<div class="claim" id="{_e(c.id)}" data-verdict="{_e(c.verdict.value)}">'
                     f"<h3>{i}. {_e(c.claim)}</h3>"
                     f'<div class="source">{_e(c.who)} — {_e(c.source)}</div>'
                     f'<div class="why">{_verdict_html(c.verdict.value)} {_e(c.why)}</div>')
        for ev in c.evidence:
            sup = {True: "true", False: "false", None: "none"}[ev.supports]
            parts.append(f'<div class="ev sup-{sup}"><span class="kind">{_e(ev.kind.value)}'
                         f"</span>{_e(ev.summary)}")
            if ev.detail:
                parts.append("<pre>" + _e("\n".join(ev.detail)) + "</pre>")
            parts.append("</div>")
        parts.append("</div>")
    parts.append(f"<h2>Exit costs: {_e(workload)}</h2>")
    parts.append("<table><thead><tr><th>policy</th><th>exits/s</th><th>CPU % of one CPU</th>"
                 "</tr></thead><tbody>")
    for pol, exits, cpu in cost_totals:
        parts.append(f"<tr><td>{_e(pol)}</td><td>{exits:,.1f}</td><td>{cpu:.4f}</td></tr>")
    parts.append("</tbody></table><table><thead><tr><th>policy</th><th>MSR</th>"
                 "<th>exits/s</th><th>CPU %</th></tr></thead><tbody>")
    for pol, msr, exits, cpu in cost_rows:
        parts.append(f"<tr><td>{_e(pol)}</td><td>{_e(msr)}</td><td>{exits:,.1f}</td>"
                     f"<td>{cpu:.4f}</td></tr>")
    parts.append("</tbody></table>")
    parts.append('<img alt="exits per second and CPU % against the context-switch rate, per'
                 ' policy" src="data:image/png;base64,'
                 + base64.b64encode(plot_png).decode() + '">')
    parts.append("<table><thead><tr><th>cost figure</th><th>value</th><th>source</th></tr>"
                 "</thead><tbody>")
    for name, value, source in exit_costs:
        parts.append(f"<tr><td>{_e(name)}</td><td>{_e(value)}</td><td>{_e(source)}</td></tr>")
    parts.append("</tbody></table><h2>Checker</h2><table><thead><tr><th>design</th>"
                 "<th>expected</th><th>verdict</th>")
    inv_names = list(next(iter(checks.values())).result.verdicts) if checks else []
    parts.extend(f"<th>{_e(n)}</th>" for n in inv_names)
    parts.append("<th>states</th></tr></thead><tbody>")
    for name, chk in checks.items():
        res = chk.result
        cells = "".join(
            f"<td>{_verdict_html(res.verdicts[n].value)}"
            + (f" ({len(res.counterexamples[n])} events)" if n in res.counterexamples else "")
            + "</td>" for n in inv_names)
        parts.append(f"<tr><td>{_e(name)}</td><td>{_e(chk.design.expected.value)}</td>"
                     f"<td>{_verdict_html(res.verdict.value)}</td>{cells}"
                     f"<td>{res.states:,}{'' if res.complete else ' (bounded)'}</td></tr>")
    parts.append("</tbody></table><h2>Conformance on this machine</h2>")
    if conformance is None:
        parts.append("<p>Not run: /dev/kvm was not used.</p>")
    else:
        parts.append(f"<p>{_e(conformance.host)}, Linux {_e(conformance.kernel)}:"
                     f" {conformance.operations:,} operations,"
                     f" {conformance.disagreements} disagreements.</p><table><thead><tr>"
                     "<th>scenario</th><th>operations</th><th>disagree</th></tr></thead><tbody>")
        for name, n, bad in conformance.scenarios:
            parts.append(f"<tr><td>{_e(name)}</td><td>{n:,}</td><td>{bad}</td></tr>")
        parts.append("</tbody></table>")
    parts.append("<h2>Reproduce</h2><pre>make run            # this report\n"
                 "msrvirt explain     # intercept decisions\nmsrvirt check --all-designs\n"
                 "msrvirt cost\nmsrvirt conformance</pre>")
    parts.append('<script>document.body.dataset.loaded = "yes";'
                 'document.body.dataset.claims = String(document.querySelectorAll(".claim")'
                 '.length);</script>')
    parts.append("</body></html>")
    return "\n".join(parts)

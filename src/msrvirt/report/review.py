"""Rendering of `msrvirt review`: the terminal summary, the JSON object and the HTML report.

The HTML report is one self-contained file: inline CSS, the plot embedded as a data URI,
no script or font loaded from anywhere (the only addresses in it are links to the lore
archive copies of the messages the claims quote).  A tiny inline script marks the page as loaded
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
from msrvirt.report.check import judged_by

_VERDICT_STYLE = {"holds": "green", "fails": "bold red", "partly": "dark_orange",
                  "undecided": "yellow"}
VERDICTS = ("holds", "partly", "fails", "undecided")


def verdict_text(verdict: str) -> Text:
    return Text(verdict, style=_VERDICT_STYLE.get(verdict, ""))


def _flag_line(link: Any, *, quote: bool = True) -> str:
    m = link.message
    head = f"{link.relation.value.replace('-', ' ')} {m.who} ({m.date})"
    return head + (f": \u201c{link.quote}\u201d" if quote else "")


def why_text(result: Any) -> Text:
    """Each scope's verdict and its first deciding finding, then the flags."""
    out = Text()
    if result.whole:
        out.append(result.scopes[0].lead)
    else:
        for i, s in enumerate(result.scopes):
            if i:
                out.append("\n")
            out.append(f"{s.scope.label}: ")
            out.append(s.judgement.value, style=_VERDICT_STYLE.get(s.judgement.value, ""))
            out.append(f", {s.lead}")
    for link in result.flags:
        out.append("\n")
        out.append(_flag_line(link), style="italic")
    return out


def claims_table(results: Sequence[Any]) -> Table:
    table = Table(title="msrvirt review: the claims of \"KVM: VMX: Set FRED MSR intercepts\""
                  " (v9 08/22) and its review", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("claim")
    table.add_column("who")
    table.add_column("verdict", no_wrap=True)
    table.add_column("why")
    for r in results:
        c = r.claim
        who = c.message.who + (f"\n{c.message.date}" if c.message.date else "")
        # Text, not a markup string: the id's brackets are not a style.
        table.add_row(str(c.number), Text(f"{c.text}\n[{c.id}]"), Text(who),
                      verdict_text(r.judgement.value), why_text(r))
    return table


def counts_line(results: Sequence[Any]) -> str:
    by = {v: sum(1 for r in results if r.judgement.value == v) for v in VERDICTS}
    return (f"{len(results)} claims: {by['holds']} hold, {by['partly']} hold in part,"
            f" {by['fails']} fail, {by['undecided']} undecided")


def _message_json(m: Any) -> dict[str, Any]:
    return {"key": m.key, "who": m.who, "date": m.date, "message_id": m.message_id,
            "subject": m.subject, "lore": m.lore}


def _evidence_json(e: Any) -> dict[str, Any]:
    return {"kind": e.kind.value, "scope": e.scope.label, "bearing": e.bearing.value,
            "summary": e.summary, "detail": list(e.detail), "figures": dict(e.figures)}


def claim_json(r: Any) -> dict[str, Any]:
    c = r.claim
    return {
        "number": c.number,
        "id": c.id,
        "claim": c.text,
        "quote": c.quote,
        "who": c.message.who,
        "date": c.message.date,
        "source": c.message.cite,
        "message": _message_json(c.message),
        "verdict": r.judgement.value,
        "why": r.why,
        "scopes": [{"axis": s.scope.axis.value, "label": s.scope.label,
                    "verdict": s.judgement.value, "reason": s.reason} for s in r.scopes],
        "links": [{"relation": link.relation.value, "flag": link.relation.flags,
                   "message": _message_json(link.message), "quote": link.quote,
                   "claim": link.claim} for link in c.links],
        "evidence": [_evidence_json(e) for e in r.evidence],
    }


def checks_json(checks: dict[str, DesignCheck]) -> dict[str, Any]:
    return {name: {"verdict": chk.result.verdict.value, "expected": chk.design.expected.value,
                   "states": chk.result.states, "complete": chk.result.complete,
                   "seconds": round(chk.result.seconds, 3),
                   "invariants": {k: chk.result.verdicts[k].value for k in judged_by(chk)}}
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
.undecided{background:#fff3cd;color:#7a5a00}.partly{background:#ffe4cc;color:#8a4300}
blockquote{margin:.4rem 0 .5rem 0;padding:.3rem .8rem;border-left:3px solid #8899bb;
background:#f5f7fb;font-style:italic}
.msg{color:#556;font-size:.85rem;margin-bottom:.5rem}.msg code{font-size:.8rem}
.flag{margin:.2rem 0;padding:.2rem .6rem;background:#fff6e0;border-left:3px solid #d08a00;
font-size:.88rem}.link{margin:.2rem 0;font-size:.88rem;color:#445}
.sup-pending{border-left:3px dashed #d08a00;padding-left:.5rem}
.claim{border:1px solid #d6d9e0;border-radius:.5rem;padding:.8rem 1rem;margin:1rem 0}
.why{margin:.3rem 0 .6rem 0}.source{color:#556;font-size:.85rem}
.ev{margin:.4rem 0 .4rem 1rem}.kind{font-size:.75rem;text-transform:uppercase;
letter-spacing:.04em;background:#eef;border-radius:.25rem;padding:0 .3rem;margin-right:.4rem}
.sup-supports{border-left:3px solid #2e9e4f;padding-left:.5rem}
.sup-contradicts{border-left:3px solid #c62828;padding-left:.5rem}
.sup-informs{border-left:3px solid #a0a7b4;padding-left:.5rem}
pre{background:#f7f8fa;border:1px solid #e3e6ec;padding:.5rem;overflow-x:auto;font-size:.78rem;
white-space:pre}
img{max-width:100%;border:1px solid #e3e6ec}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _verdict_html(verdict: str) -> str:
    return f'<span class="verdict {_e(verdict)}">{_e(verdict)}</span>'


def _message_html(m: Any) -> str:
    """Who, when, the message's subject and its Message-ID, linked to its lore archive copy."""
    text = _e(m.who) + (f", {_e(m.date)}" if m.date else "") + f", {_e(m.subject)}"
    if m.message_id:
        ident = _e(f"<{m.message_id}>")
        text += f', Message-ID <a href="{_e(m.lore)}"><code>{ident}</code></a>'
    return text


def _claim_html(r: Any) -> list[str]:
    """One claim: its text and verdict, the message it quotes, the flags, each scope's verdict
    and reason, and every piece of evidence by scope."""
    c = r.claim
    out = [f'<div class="claim" id="{_e(c.id)}" data-verdict="{_e(r.judgement.value)}">'
           f"<h3>{c.number}. {_e(c.text)} {_verdict_html(r.judgement.value)}</h3>",
           f'<blockquote class="quote">{_e(c.quote)}</blockquote>',
           f'<div class="msg">{_message_html(c.message)}</div>']
    for link in c.links:
        cls = "flag" if link.relation.flags else "link"
        out.append(f'<div class="{cls}">{_e(link.relation.value.replace("-", " "))}'
                   f" {_message_html(link.message)}: \u201c{_e(link.quote)}\u201d"
                   + (f' (<a href="#{_e(link.claim)}">claim</a>)' if link.claim else "") + "</div>")
    out.append("<table><thead><tr><th>scope</th><th>verdict</th><th>reason</th></tr></thead>"
               "<tbody>")
    for sv in r.scopes:
        out.append(f"<tr><td>{_e(sv.scope.label)}</td><td>{_verdict_html(sv.judgement.value)}"
                   f"</td><td>{_e(sv.reason)}</td></tr>")
    out.append("</tbody></table>")
    for sv in r.scopes:
        if len(r.scopes) > 1:
            out.append(f'<div class="ev"><strong>{_e(sv.scope.label)}</strong></div>')
        for ev in sv.evidence:
            out.append(f'<div class="ev sup-{_e(ev.bearing.value)}"><span class="kind">'
                       f"{_e(ev.kind.value)}</span><span class=\"kind\">{_e(ev.bearing.value)}"
                       f"</span>{_e(ev.summary)}")
            if ev.detail:
                out.append("<pre>" + _e("\n".join(ev.detail)) + "</pre>")
            out.append("</div>")
    out.append("</div>")
    return out


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
        "<th>verdict</th><th>scopes and flags</th></tr></thead><tbody>",
    ]
    for r in claims:
        c = r.claim
        scopes = "<br>".join(f"{_e(sv.scope.label)}: {_verdict_html(sv.judgement.value)}"
                             for sv in r.scopes if sv.scope.axis.value != "all")
        flags = "".join(f'<div class="flag">{_e(_flag_line(link, quote=False))}</div>'
                        for link in r.flags)
        parts.append(f'<tr><td>{c.number}</td><td><a href="#{_e(c.id)}">{_e(c.text)}</a></td>'
                     f"<td>{_e(c.message.who)}<br>{_e(c.message.date or '')}</td>"
                     f"<td>{_verdict_html(r.judgement.value)}</td><td>{scopes}{flags}</td></tr>")
    parts.append("</tbody></table><h2>Claims and evidence</h2>")
    for r in claims:
        parts.extend(_claim_html(r))
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
        judged = judged_by(chk)
        cells = "".join(
            "<td>-</td>" if n not in judged else
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
                     f" {conformance.operations:,} operations, {conformance.full_scope:,}"
                     f" predicted at full scope, {conformance.filter_only:,}"
                     f" checked only for the filter decision;"
                     f" {conformance.disagreements} disagreements.</p><table><thead><tr>"
                     "<th>scenario</th><th>operations</th><th>full scope</th>"
                     "<th>filter only</th><th>disagree</th></tr></thead><tbody>")
        for sc in conformance.scenarios:
            parts.append(f"<tr><td>{_e(sc.scenario)}</td><td>{sc.operations:,}</td>"
                         f"<td>{sc.full:,}</td><td>{sc.filter_only:,}</td>"
                         f"<td>{sc.disagree}</td></tr>")
        parts.append("</tbody></table>")
    parts.append("<h2>Reproduce</h2><pre>make run            # this report\n"
                 "msrvirt explain     # intercept decisions\nmsrvirt check --all-designs\n"
                 "msrvirt cost\nmsrvirt conformance</pre>")
    parts.append('<script>document.body.dataset.loaded = "yes";'
                 'document.body.dataset.claims = String(document.querySelectorAll(".claim")'
                 '.length);</script>')
    parts.append("</body></html>")
    return "\n".join(parts)

"""Judge the claims table: one function for every claim.

For each claim, every need is turned into evidence by its kind's producer (review/kinds.py).
Each scope of the claim is judged on the
evidence asked for it (`scope_judgement`: any contradiction fails it, support otherwise
holds it, else it is undecided), and the claim's judgement combines its scopes'
(`combine`).  The reason of a scope is the findings of the evidence that decided it, so
every number in it comes from the results.
"""

from __future__ import annotations

from collections.abc import Sequence

from msrvirt.review.evidence import Inputs
from msrvirt.review.kinds import produce, validate
from msrvirt.review.table import Claim, Table, load_table
from msrvirt.review.verdicts import ClaimResult, ScopedVerdict, combine, scope_judgement


def load_claims() -> Table:
    """The built-in claims table, every need checked against its evidence kind."""
    table = load_table()
    for claim in table.claims:
        validate(claim)
    return table


def judge(claim: Claim, inputs: Inputs) -> ClaimResult:
    """The review's verdict on ``claim``, per scope and overall, with its evidence."""
    evidence = [produce(need, inputs) for need in claim.needs]
    scopes = []
    for scope in claim.scopes:
        asked = tuple(e for e in evidence if e.scope == scope)
        judgement, deciding = scope_judgement(asked)
        scopes.append(ScopedVerdict(scope=scope, judgement=judgement, deciding=deciding,
                                    evidence=asked))
    return ClaimResult(claim=claim, judgement=combine([s.judgement for s in scopes]),
                       scopes=tuple(scopes))


def judge_all(claims: Sequence[Claim], inputs: Inputs) -> list[ClaimResult]:
    """Every claim, judged on ``inputs``, in table order."""
    return [judge(claim, inputs) for claim in claims]

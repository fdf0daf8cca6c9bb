"""The review's result values: evidence, scoped verdicts and a judged claim.

The review's verdict type is `Judgement`, named apart from the checker's `Verdict`
(machine/designs.py), which says whether a design keeps every invariant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from msrvirt.review.table import Axis, Claim, EvidenceKind, Link, Scope


class Judgement(StrEnum):
    """What the review concludes about a claim, or about one scope of it."""

    HOLDS = "holds"
    FAILS = "fails"
    PARTLY = "partly"  # holds in some scopes; fails or is undecided in others (never per scope)
    UNDECIDED = "undecided"


class Bearing(StrEnum):
    """How one piece of evidence bears on the claim's scope it was asked for."""

    SUPPORTS = "supports"
    CONTRADICTS = "contradicts"
    INFORMS = "informs"  # shown, not counted
    PENDING = "pending"  # the evidence does not exist yet; it says what would decide


@dataclass(frozen=True, slots=True, kw_only=True)
class Evidence:
    """One piece of evidence: what it found (a sentence built from the results), details,
    and the figures the sentence states, by name, so tests can hold the prose to them."""

    kind: EvidenceKind
    scope: Scope
    bearing: Bearing
    summary: str
    detail: tuple[str, ...] = ()
    figures: tuple[tuple[str, float], ...] = ()

    def figure(self, name: str) -> float:
        for key, value in self.figures:
            if key == name:
                return value
        raise KeyError(name)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScopedVerdict:
    """The verdict on one scope, the reason (the findings of the evidence that decided it)
    and all the evidence asked for that scope."""

    scope: Scope
    judgement: Judgement
    deciding: tuple[Evidence, ...]
    evidence: tuple[Evidence, ...]

    @property
    def reason(self) -> str:
        return "; ".join(e.summary for e in self.deciding) or "no evidence bears on it"

    @property
    def lead(self) -> str:
        """The first deciding finding, and how many more there are."""
        if not self.deciding:
            return self.reason
        more = len(self.deciding) - 1
        return self.deciding[0].summary + (f" (+{more} more)" if more else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimResult:
    """A claim of the table, judged: overall, per scope, and the links the review flags."""

    claim: Claim
    judgement: Judgement
    scopes: tuple[ScopedVerdict, ...]

    @property
    def flags(self) -> tuple[Link, ...]:
        return tuple(link for link in self.claim.links if link.relation.flags)

    @property
    def evidence(self) -> tuple[Evidence, ...]:
        return tuple(e for s in self.scopes for e in s.evidence)

    @property
    def whole(self) -> bool:
        """Whether the claim is judged whole: one scope, the whole claim (not split)."""
        return len(self.scopes) == 1 and self.scopes[0].scope.axis is Axis.ALL

    @property
    def why(self) -> str:
        """One paragraph: each scope's verdict and reason (the reason alone if judged whole)."""
        if self.whole:
            return self.scopes[0].reason
        return " | ".join(f"{s.scope.label}: {s.judgement.value}, {s.reason}" for s in self.scopes)

    def scope(self, label: str) -> ScopedVerdict:
        for s in self.scopes:
            if s.scope.label == label:
                return s
        raise KeyError(label)


def scope_judgement(evidence: Sequence[Evidence]) -> tuple[Judgement, tuple[Evidence, ...]]:
    """A scope fails on any contradicting evidence, holds on supporting evidence otherwise,
    and is undecided when none bears (pending evidence then says what would decide it)."""
    against = tuple(e for e in evidence if e.bearing is Bearing.CONTRADICTS)
    if against:
        return Judgement.FAILS, against
    for_ = tuple(e for e in evidence if e.bearing is Bearing.SUPPORTS)
    if for_:
        return Judgement.HOLDS, for_
    return Judgement.UNDECIDED, tuple(e for e in evidence if e.bearing is Bearing.PENDING)


def combine(judgements: Sequence[Judgement]) -> Judgement:
    """The claim's judgement from its scopes': all alike -> that one; some hold and others
    fail or are undecided -> partly; none holds but some fail -> fails."""
    kinds = set(judgements)
    if len(kinds) == 1:
        return judgements[0]
    if Judgement.HOLDS in kinds:
        return Judgement.PARTLY
    if Judgement.FAILS in kinds:
        return Judgement.FAILS
    return Judgement.UNDECIDED

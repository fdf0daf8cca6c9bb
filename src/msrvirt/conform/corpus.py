"""The built-in conformance corpus (conform/corpus/*.json) and loading scenario files."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

from msrvirt.conform.predict import Prediction, Scope, Seen, agrees
from msrvirt.conform.scenario import EnableExits, ProbeScenario, SetFilter, describe, ops_of, parse
from msrvirt.dataio import built, parse_text
from msrvirt.policy.decide import MsrAccess


def builtin_files() -> list[tuple[str, str]]:
    """(file name, text) of every built-in scenario, in order."""
    root = resources.files("msrvirt.conform") / "corpus"
    return sorted((f.name, f.read_text()) for f in root.iterdir() if f.name.endswith(".json"))


def builtin() -> list[ProbeScenario]:
    """Every built-in scenario, in order, read by the same rules as a user's scenario file."""
    return [built(name, parse_text(text, toml=False, name=name), parse)
            for name, text in builtin_files()]


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One operation of one scenario: what the model predicted, what the kernel did."""

    scenario: str
    op: MsrAccess | SetFilter | EnableExits
    predicted: Prediction
    observed: Seen

    @property
    def agree(self) -> bool:
        return agrees(self.predicted, self.observed)

    def to_obj(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "op": describe(self.op),
            "predicted": {**self.predicted.seen.to_obj(), "scope": self.predicted.scope.value,
                          "why": self.predicted.why},
            "observed": self.observed.to_obj(),
            "agree": self.agree,
        }


def rows(ps: ProbeScenario, predicted: list[Prediction], observed: tuple[Seen, ...]) -> list[Row]:
    """Zip a scenario's operations, predictions and observations into rows."""
    ops = ops_of(ps.steps)
    return [Row(scenario=ps.name, op=op, predicted=p, observed=o)
            for op, p, o in zip(ops, predicted, observed, strict=True)]


@dataclass(frozen=True, slots=True, kw_only=True)
class Counts:
    """One scenario's operations: how many predicted at full scope, for the filter only, and
    how many disagree (at either scope, and at full scope)."""

    scenario: str
    operations: int
    full: int
    disagree: int
    full_disagree: int

    @property
    def filter_only(self) -> int:
        return self.operations - self.full

    def to_obj(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "operations": self.operations, "full": self.full,
                "filter_only": self.filter_only, "disagree": self.disagree}


def scenario_counts(name: str, got: list[Row]) -> Counts:
    """The counts of one scenario's rows."""
    full = [r for r in got if r.predicted.scope is Scope.FULL]
    return Counts(scenario=name, operations=len(got), full=len(full),
                  disagree=sum(not r.agree for r in got),
                  full_disagree=sum(not r.agree for r in full))

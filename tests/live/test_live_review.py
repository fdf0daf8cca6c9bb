"""The review's conformance evidence on this host's real KVM: full-scope and filter-only
operations are counted from the results, and the model-matches-kernel claim is judged on them."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from msrvirt.cli.options import parse_guest
from msrvirt.cli.review import live_conformance
from msrvirt.conform.corpus import builtin, rows
from msrvirt.conform.predict import Scope, predict
from msrvirt.live import fingerprint
from msrvirt.live.conformance import run_scenario
from msrvirt.live.kvm import Kvm
from msrvirt.review.judge import judge, load_claims
from msrvirt.review.verdicts import Judgement


class _Status:
    def update(self, what: str) -> None:
        pass


@pytest.mark.kvm
def test_the_review_splits_the_corpus_by_prediction_scope_as_the_rows_say(kvm: Kvm) -> None:
    summary, fp, _ = live_conformance(_Status())
    assert summary is not None and fp is not None
    host = fingerprint.host_profile(fingerprint.take(kvm))
    for ps, counted in zip(builtin(), summary.scenarios, strict=True):
        result = run_scenario(kvm, ps, parse_guest(ps.guest, host.features))
        got = rows(ps, list(predict(host, result.guest_features, ps)), result.observed)
        full = [r for r in got if r.predicted.scope is Scope.FULL]
        assert (counted.scenario, counted.operations, counted.full) == (ps.name, len(got), len(full))
        assert counted.filter_only == len(got) - len(full)
    inputs: Any = SimpleNamespace(conformance=summary)
    r = judge(load_claims().claim("model-matches-kernel"), inputs)
    assert r.judgement is Judgement.HOLDS
    full_reason = r.scope("operations predicted at full scope").reason
    assert full_reason.startswith(f"{summary.full_scope:,} operations predicted at full scope")

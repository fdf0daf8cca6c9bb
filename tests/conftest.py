"""Shared test settings and helpers."""

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, settings

from msrvirt.check.explore import DesignCheck, violations
from msrvirt.check.invariants import Scope, invariant

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("default")


def _replays(chk: DesignCheck, inv: str) -> None:
    """Replaying ``inv``'s counterexample reaches the same states and breaks ``inv`` at its end."""
    cx = chk.result.counterexamples[inv]
    m = chk.machine
    state = prev = m.initial()
    for ev, after in zip(cx.events, cx.states, strict=True):
        assert ev in m.events(state)
        prev, state = state, m.step(state, ev)
        assert state == after
    if invariant(inv).scope is Scope.STATE:
        assert violations(m, state)[inv] == cx.message
    else:
        assert violations(m, prev, cx.events[-1])[inv] == cx.message


@pytest.fixture
def assert_replays() -> Callable[[DesignCheck, str], None]:
    """The check that a design's counterexample for an invariant replays on its machine."""
    return _replays

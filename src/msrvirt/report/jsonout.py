"""JSON forms of model values (docs/json.md documents each schema)."""

from __future__ import annotations

from typing import Any

from msrvirt.arch.kvm import ExitReason
from msrvirt.arch.msrs import display_name
from msrvirt.policy.bitmap import BitmapDiff
from msrvirt.policy.decide import Decision
from msrvirt.policy.policies import Policy, Rule
from msrvirt.policy.scenario import Scenario


def exits_list(reasons: ExitReason) -> list[str]:
    return [r.name.lower() for r in ExitReason if r in reasons and r.name]


def scenario_json(s: Scenario) -> dict[str, Any]:
    return {
        "host": s.host.name,
        "vendor": s.host.vendor.value,
        "backend": s.host.backend.value,
        "policy": s.policy.name,
        "guest": sorted(f.value for f in s.guest),
        "guest_caps": sorted(f.value for f in s.guest_caps),
        "filter": None if s.filter.is_empty and s.filter.default_allow else s.filter.to_obj(),
        "exits": exits_list(s.exits),
        "runtime": s.runtime.set_names(),
    }


def reason_json(r: ExitReason | None) -> str | None:
    return r.name.lower() if r and r.name else None


def decision_json(d: Decision) -> dict[str, Any]:
    return {
        "outcome": d.outcome.value,
        "exit_reason": reason_json(d.exit_reason),
        "exit_reason_if_enabled": reason_json(d.would_exit),
        "intercept": d.intercept,
        "exact": d.exact,
        "missing": d.missing or None,
        "reasons": list(d.reasons),
    }


def rule_json(r: Rule) -> dict[str, Any]:
    return {
        "id": r.id,
        "msrs": [{"index": m, "name": display_name(m)} for m in r.msrs],
        "access": r.access.label,
        "runs_when": r.runs_when,
        "intercept_when": r.intercept_when,
        "source": r.source,
        "rationale": r.rationale,
    }


def policy_json(p: Policy, *, rules: bool) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "name": p.name,
        "backends": sorted(b.value for b in p.backends),
        "description": p.description,
        "source": p.source,
        "kvm_lacks": sorted(f.value for f in p.kvm_lacks),
    }
    if rules:
        obj["rules"] = [rule_json(r) for r in p.rules]
    return obj


def diff_json(row: BitmapDiff) -> dict[str, Any]:
    return {
        "index": row.msr,
        "name": display_name(row.msr),
        "access": row.access.label,
        "before": "intercept" if row.before_intercept else "passthrough",
        "after": "intercept" if row.after_intercept else "passthrough",
    }

"""Run a policy's recomputation for a scenario: the exact bitmap, and which rule set each bit.

Follows `vmx_set_intercept_for_msr` (kvm-msr-facts.md section 2): for each direction of a
rule, the bit is cleared only if the rule does not intercept AND the userspace filter
allows that direction; otherwise it is set.  Bits no rule touches stay set (KVM creates
the page all ones).  On PVM there is no bitmap: every access exits.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from msrvirt.arch.kvm import Access, Backend
from msrvirt.errors import UsageError
from msrvirt.policy.bitmap import MsrBitmap, SvmMsrpm, VmxMsrBitmap
from msrvirt.policy.policies import Policy, Rule
from msrvirt.policy.scenario import Scenario


@dataclass(frozen=True, slots=True, kw_only=True)
class Setting:
    """The last rule that set one (MSR, direction), and what it asked for."""

    rule: Rule
    wanted_intercept: bool
    filter_denied: bool  # the rule asked for passthrough but the filter forced an intercept

    @property
    def intercept(self) -> bool:
        return self.wanted_intercept or self.filter_denied


@dataclass(frozen=True, slots=True, kw_only=True)
class Intercepts:
    """The outcome of one recomputation."""

    bitmap: MsrBitmap | None  # None: the backend has no MSR bitmap (PVM)
    settings: dict[tuple[int, Access], Setting]
    skipped: tuple[Rule, ...]  # rules whose condition did not hold

    def intercepted(self, msr: int, access: Access) -> bool:
        """Whether a guest access (R or W) exits."""
        if self.bitmap is None:
            return True
        return self.bitmap.intercepted(msr, access)

    def setting(self, msr: int, access: Access) -> Setting | None:
        return self.settings.get((msr, access))


def check_backend(policy: Policy, backend: Backend) -> None:
    """Raise UsageError if ``policy`` does not describe KVM on ``backend``."""
    if backend not in policy.backends:
        names = ", ".join(sorted(b.value for b in policy.backends))
        raise UsageError(f"policy {policy.name} is for {names} hosts, not {backend.value}")


@lru_cache(maxsize=4096)
def compute_intercepts(scenario: Scenario) -> Intercepts:
    """Run ``scenario.policy``'s rules in order against the scenario's caps and filter."""
    policy = scenario.policy
    backend = scenario.host.backend
    check_backend(policy, backend)
    changes: list[tuple[int, Access, bool]] = []
    settings: dict[tuple[int, Access], Setting] = {}
    skipped = []
    allows = scenario.filter.allows
    for rule in policy.rules:
        if not rule.runs(scenario):
            skipped.append(rule)
            continue
        want = rule.intercept(scenario)
        for msr in rule.msrs:
            for direction in (Access.R, Access.W):
                if not rule.access & direction:
                    continue
                denied = not want and not allows(msr, direction)
                settings[(msr, direction)] = Setting(
                    rule=rule, wanted_intercept=want, filter_denied=denied
                )
                changes.append((msr, direction, want or denied))
    bitmap: MsrBitmap | None
    if backend is Backend.VMX:
        bitmap = VmxMsrBitmap.from_changes(changes)
    elif backend is Backend.SVM:
        bitmap = SvmMsrpm.from_changes(changes)
    else:
        bitmap = None
    return Intercepts(bitmap=bitmap, settings=settings, skipped=tuple(skipped))

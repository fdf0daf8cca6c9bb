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
from msrvirt.policy.bitmap import DIRECTIONS_OF, MsrBitmap, SvmMsrpm, VmxMsrBitmap
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
    # (msr, direction) -> (last rule that set it, rule wanted intercept, filter denied); plain
    # tuples because a recomputation makes dozens of them.
    settings: dict[tuple[int, Access], tuple[Rule, bool, bool]]
    skipped: tuple[Rule, ...]  # rules whose condition did not hold
    # The (msr, direction) pairs whose bit is clear: the page's clear bits as a set, so the
    # per-access test is one hash lookup (tests check it against the page).
    clear: frozenset[tuple[int, Access]]

    def intercepted(self, msr: int, access: Access) -> bool:
        """Whether a guest access (R or W) exits."""
        return (msr, access) not in self.clear

    def setting(self, msr: int, access: Access) -> Setting | None:
        """The last rule that set (msr, access), or None if no rule touched it."""
        found = self.settings.get((msr, access))
        if found is None:
            return None
        rule, wanted, denied = found
        return Setting(rule=rule, wanted_intercept=wanted, filter_denied=denied)


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
    # Later rules override earlier ones bit by bit, as in the kernel; the page itself is
    # built from the final settings (equivalent, and cheaper than replaying every change).
    settings: dict[tuple[int, Access], tuple[Rule, bool, bool]] = {}
    skipped = []
    flt = scenario.filter
    # With no filter ranges and DEFAULT_ALLOW every access is allowed: skip the lookups.
    unfiltered = flt.default_allow and flt.is_empty
    allows = flt.allows
    for rule in policy.rules:
        if not rule.runs(scenario):
            skipped.append(rule)
            continue
        want = rule.intercept(scenario)
        directions = DIRECTIONS_OF[rule.access]
        for msr in rule.msrs:
            for direction in directions:
                denied = not want and not unfiltered and not allows(msr, direction)
                settings[(msr, direction)] = (rule, want, denied)
    bitmap: MsrBitmap | None
    changes = [(msr, d, want or denied) for (msr, d), (_, want, denied) in settings.items()]
    if backend is Backend.VMX:
        bitmap = VmxMsrBitmap.from_changes(changes)
    elif backend is Backend.SVM:
        bitmap = SvmMsrpm.from_changes(changes)
    else:
        bitmap = None
    # Every rule MSR lies inside its backend's bitmap ranges (tests/test_policies.py checks
    # it), so a pair no rule intercepts is exactly a clear bit.
    clear: frozenset[tuple[int, Access]] = frozenset() if bitmap is None else frozenset(
        (msr, d) for msr, d, intercept in changes if not intercept)
    return Intercepts(bitmap=bitmap, settings=settings, skipped=tuple(skipped), clear=clear)

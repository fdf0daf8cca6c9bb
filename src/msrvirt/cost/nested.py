"""What an L2's FRED MSR accesses cost under each merge list: nested exits, counted and timed.

The workload runs in L2 (its CPUID FRED+SHSTK or FRED only, as the workload says), under
an L1 (a profile of policy/nested.py: KVM with a policy, intercept-all, no-bitmaps or a
bitmap file) on L0 (the nested model's: the intel-fred host, L1 FRED+SHSTK, L0's policy).  Each
unit's guest writes (`msrvirt.cost.units.guest_writes`: RSP0 per context switch, Linux's
FRED bring-up) are decided by the nested policy model (`policy.nested.decide_l2`) under
each merge list, and scaled by the workload's rates.  An access that exits costs an exit
to L0 (`ExitCosts.in_kernel_exit_cycles`: the exit, L0's handling on vmcs02, the entry),
or L0's userspace round trip for an exit to userspace; one reflected to L1 costs that
exit plus the round trip through L1 (`L1_ROUND_TRIP`: L0's nested exit and entry, L1's
handler and its VMRESUME).  The outcome of an access depends on the bitmaps only, which
a Linux L2's writes never change, so one decision per MSR is exact; the stateful nested
model (machine/nested.py) reaches the same outcomes (tests/test_machine_nested.py).
docs/cost.md has the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from msrvirt.arch.cpuid import Feature
from msrvirt.arch.kvm import Access
from msrvirt.arch.msrs import display_name
from msrvirt.arch.nested import MergeList
from msrvirt.cost.constants import DEFAULT_COSTS, L1_ROUND_TRIP, ExitCosts, Figure
from msrvirt.cost.units import FRED_MSRS, Unit, guest_writes, unit_rates
from msrvirt.cost.workload import Workload
from msrvirt.machine.model import GuestCpu
from msrvirt.machine.nested import l0_scenario
from msrvirt.policy.decide import MsrAccess
from msrvirt.policy.nested import L2Decision, L2Outcome, Nested, decide_l2, kvm_l1
from msrvirt.policy.policies import policy

DEFAULT_L0_POLICY = "fred-v9"


def l2_features(w: Workload) -> frozenset[Feature]:
    """L2's CPUID: the workload's guest, FRED with or without shadow stacks."""
    return (GuestCpu.FRED_SHSTK if w.guest_shstk else GuestCpu.FRED).features


def kvm_nested(w: Workload, merge: MergeList, l1_policy: str = DEFAULT_L0_POLICY,
               l0_policy: str = DEFAULT_L0_POLICY) -> Nested:
    """L1 is KVM with ``l1_policy`` running the workload's L2, on L0 with ``l0_policy``."""
    l0 = l0_scenario(policy(l0_policy))
    return Nested(l0=l0, l1=kvm_l1(l0, policy(l1_policy), l2_features(w)), merge=merge)


@dataclass(frozen=True, slots=True, kw_only=True)
class L2MsrCost:
    """One FRED MSR's writes by L2, per second, where they end, and what they cost."""

    msr: int
    name: str
    writes_per_s: float
    outcome: L2Outcome  # where a write ends under this merge list
    l0_exits_per_s: float  # writes that exit to L0 (all but passthrough and the CPU's #GP)
    reflected_per_s: float  # of those, the ones reflected to L1
    cpu_percent: float  # of one CPU, for the exits and the L1 round trips
    exits_by_event: tuple[tuple[str, float], ...]  # (workload rate, exits/s), non-zero only


@dataclass(frozen=True, slots=True, kw_only=True)
class NestedCost:
    """A merge list's cost under a workload run by L2: one row per FRED MSR and totals."""

    merge: str
    l1: str
    l0_policy: str
    workload: str
    guest_shstk: bool
    context_switches_per_s: float
    rows: tuple[L2MsrCost, ...]
    l0_exits_per_s: float
    reflected_per_s: float
    cpu_percent: float


@cache
def _write(n: Nested, msr: int) -> L2Decision:
    """L2's WRMSR of ``msr`` (a valid value: the outcome is the bitmaps')."""
    return decide_l2(n, MsrAccess(msr, Access.W, 0))


def exit_cycles(d: L2Decision, costs: ExitCosts, round_trip: Figure = L1_ROUND_TRIP) -> float:
    """What one L2 access costs the CPU: nothing without an exit, else the exit to L0 (to L0's
    userspace for an exit there), plus the round trip through L1 when it is reflected."""
    if not d.bit.intercept:
        return 0.0  # the CPU ran it (or refused the value itself)
    if d.outcome is L2Outcome.EXIT:
        return costs.userspace_exit_cycles.value
    extra = round_trip.value if d.outcome is L2Outcome.REFLECTED else 0.0
    return costs.in_kernel_exit_cycles.value + extra


def estimate_nested(w: Workload, n: Nested, costs: ExitCosts = DEFAULT_COSTS,
                    round_trip: Figure = L1_ROUND_TRIP) -> NestedCost:
    """The L0 exits, reflections and CPU time of the workload's L2 writes under ``n``."""
    rates = unit_rates(w)
    rows = []
    for msr in FRED_MSRS:
        d = _write(n, msr)
        per_unit = {unit: guest_writes(unit).count(msr) * rates[unit] for unit in Unit}
        writes = sum(per_unit.values())
        exits = writes if d.bit.intercept else 0.0
        rows.append(L2MsrCost(
            msr=msr, name=display_name(msr), writes_per_s=writes, outcome=d.outcome,
            l0_exits_per_s=exits,
            reflected_per_s=exits if d.outcome is L2Outcome.REFLECTED else 0.0,
            cpu_percent=costs.cycles_percent(writes * exit_cycles(d, costs, round_trip)),
            exits_by_event=tuple((unit.value, r) for unit, r in per_unit.items()
                                 if r and d.bit.intercept)))
    return NestedCost(
        merge=n.merge.name, l1=n.l1.name, l0_policy=n.l0.policy.name, workload=w.name,
        guest_shstk=w.guest_shstk, context_switches_per_s=w.guest_context_switches.per_second,
        rows=tuple(rows), l0_exits_per_s=sum(r.l0_exits_per_s for r in rows),
        reflected_per_s=sum(r.reflected_per_s for r in rows),
        cpu_percent=sum(r.cpu_percent for r in rows))

"""Estimate the VM exits and CPU time an intercept policy costs under a workload.

Counts come from the checker's machine (`msrvirt.cost.units`: one unit of each workload
event driven through `Machine.step`/`observe`), scaled by the workload's rates; CPU time
is exits/s x cycles per exit / (GHz x 1e9) x 100, the share of the one CPU running the
vCPU (`ExitCosts.cpu_percent`).  Only guest accesses to the ten FRED MSRs are counted:
the exits every policy shares (preemption, interrupts, KVM_RUN returns) are left out,
as is KVM's own RDMSR/WRMSR of RSP0 at vCPU load/put, the same under every policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from msrvirt.arch.msrs import display_name
from msrvirt.cost.constants import DEFAULT_COSTS, ExitCosts
from msrvirt.cost.units import FRED_MSRS, Unit, unit_counts, unit_rates
from msrvirt.cost.workload import Workload
from msrvirt.errors import UnknownNameError
from msrvirt.machine.designs import Design, design
from msrvirt.policy.policies import POLICIES

# The policies with a machine design (msrvirt.machine.designs), and that design.  fred-v6's
# design is the planted pl0-ssp-passthrough: it fails pl0-ssp-virtual, but its bitmap is
# exactly fred-v6's, which is all the counts depend on.
COST_DESIGNS: dict[str, str] = {
    "fred-v9": "v9",
    "fred-minimal": "minimal",
    "fred-v6": "pl0-ssp-passthrough",
    "intercept-all": "intercept-all",
}
COST_POLICIES: tuple[str, ...] = tuple(COST_DESIGNS)


@dataclass(frozen=True, slots=True, kw_only=True)
class MsrCost:
    """One MSR's guest accesses under a policy and workload, per second, and their CPU time."""

    msr: int
    name: str
    exits_per_s: float  # intercepted accesses: each a VM exit
    emulations_per_s: float  # of those, the ones KVM emulated (no filter: all of them)
    direct_per_s: float  # accesses that ran on the hardware MSR without an exit
    cpu_percent: float  # of one CPU, for the exits
    exits_by_event: tuple[tuple[str, float], ...]  # (workload rate, exits/s), non-zero only


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyCost:
    """A policy's cost under a workload: one row per FRED MSR (FRED_MSRS order) and totals."""

    policy: str
    design: str
    workload: str
    guest_shstk: bool
    context_switches_per_s: float
    rows: tuple[MsrCost, ...]
    exits_per_s: float
    cpu_percent: float


def design_for(policy: str) -> Design:
    """The machine design that runs ``policy``; UnknownNameError if it has none."""
    if policy not in COST_DESIGNS:
        what = "known policies without a machine design" if policy in POLICIES else "policies"
        raise UnknownNameError("policy", policy,
                               f"one of {', '.join(COST_POLICIES)}; the other {what} cannot be costed")
    return design(COST_DESIGNS[policy])


def estimate(w: Workload, policy: str, costs: ExitCosts = DEFAULT_COSTS) -> PolicyCost:
    """The exits and CPU time ``policy`` costs under ``w`` (counts from the machine)."""
    return estimate_design(w, design_for(policy), costs)


def estimate_design(w: Workload, d: Design, costs: ExitCosts = DEFAULT_COSTS) -> PolicyCost:
    """As `estimate`, for any design (a planted one too): rows scale its per-unit counts."""
    per_unit = unit_counts(d, w.guest_shstk)
    rates = unit_rates(w)
    rows = []
    for i, msr in enumerate(FRED_MSRS):
        by_event = tuple((unit.value, per_unit[unit][i].exits * rates[unit]) for unit in Unit
                         if per_unit[unit][i].exits and rates[unit])
        exits = sum(per_unit[unit][i].exits * rates[unit] for unit in Unit)
        rows.append(MsrCost(
            msr=msr, name=display_name(msr), exits_per_s=exits,
            emulations_per_s=sum(per_unit[unit][i].emulations * rates[unit] for unit in Unit),
            direct_per_s=sum(per_unit[unit][i].direct * rates[unit] for unit in Unit),
            cpu_percent=costs.cpu_percent(exits), exits_by_event=by_event))
    total = sum(r.exits_per_s for r in rows)
    return PolicyCost(policy=d.policy.name, design=d.name, workload=w.name,
                      guest_shstk=w.guest_shstk,
                      context_switches_per_s=w.guest_context_switches.per_second,
                      rows=tuple(rows), exits_per_s=total, cpu_percent=costs.cpu_percent(total))


def sweep(w: Workload, policies: Sequence[str], rates: Sequence[float],
          costs: ExitCosts = DEFAULT_COSTS) -> dict[str, list[PolicyCost]]:
    """`estimate` of each policy at each guest context-switch rate, in the order given."""
    designs = {p: design_for(p) for p in policies}  # unknown names fail before any work
    return {p: [estimate_design(w.with_context_switches(r), d, costs) for r in rates]
            for p, d in designs.items()}

"""The results a review is judged on, computed once: checker verdicts, costs, conformance."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from msrvirt.check.explore import DesignCheck
from msrvirt.check.parallel import CheckJob, check_all
from msrvirt.conform.corpus import Counts
from msrvirt.cost.constants import DEFAULT_COSTS, ExitCosts
from msrvirt.cost.model import PolicyCost, estimate, sweep
from msrvirt.cost.workload import Workload, workload
from msrvirt.machine.designs import Verdict, design

PLANTED_DEPTH = 8  # every planted counterexample is at most 6 events (docs/check.md)
COST_POLICIES = ("fred-v9", "fred-minimal", "fred-v6", "intercept-all")
REVIEW_WORKLOAD = "linux-fred"
REVIEW_RATE = 100_000.0  # context switches per second (the figure)
SWEEP_RATES = tuple(float(r) for r in range(0, 200_001, 20_000))

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConformanceSummary:
    """What `msrvirt conformance` found on this host (measured by the CLI through live/):
    each built-in scenario's counts, and their totals."""

    host: str  # the host profile's description
    kernel: str
    scenarios: tuple[Counts, ...]

    @property
    def operations(self) -> int:
        return sum(s.operations for s in self.scenarios)

    @property
    def disagreements(self) -> int:
        return sum(s.disagree for s in self.scenarios)

    @property
    def full_scope(self) -> int:
        """Operations predicted in full: result, exit reason and value."""
        return sum(s.full for s in self.scenarios)

    @property
    def full_scope_disagreements(self) -> int:
        return sum(s.full_disagree for s in self.scenarios)

    @property
    def filter_only(self) -> int:
        """Operations of which only the filter decision is predicted."""
        return self.operations - self.full_scope


@dataclass(frozen=True, slots=True, kw_only=True)
class Inputs:
    """Everything the claims are judged on, computed once."""

    checks: dict[str, DesignCheck]
    workload: Workload
    costs: dict[str, PolicyCost]  # policy -> the workload at REVIEW_RATE, shadow-stack guest
    costs_fred_only: dict[str, PolicyCost]  # the same for a FRED-only guest (no CET)
    sweep: dict[str, list[PolicyCost]]
    exit_costs: ExitCosts
    conformance: ConformanceSummary | None


def check_designs(names: Iterable[str], progress: Progress | None = None,
                  jobs: int | None = None) -> dict[str, DesignCheck]:
    """The checker on each design: the holding ones exhaustively, planted ones to PLANTED_DEPTH.

    The designs are checked ``jobs`` at a time in parallel processes (default: the CPU
    count; `msrvirt.check.parallel`).
    """
    todo = []
    for name in names:
        d = design(name)
        todo.append(CheckJob(design=d, depth=None if d.expected is Verdict.HOLDS else PLANTED_DEPTH))
    finished: list[str] = []

    def done(chk: DesignCheck) -> None:
        finished.append(chk.design.name)
        if progress:
            progress(f"check: {len(finished)}/{len(todo)} designs ({chk.design.name})")

    return {chk.design.name: chk for chk in check_all(todo, processes=jobs, done=done)}


def compute_inputs(*, designs: Iterable[str], conformance: ConformanceSummary | None,
                   exit_costs: ExitCosts = DEFAULT_COSTS,
                   progress: Progress | None = None, jobs: int | None = None) -> Inputs:
    """Run the checker on ``designs`` (``jobs`` processes) and the cost model on the review's workload."""
    checks = check_designs(designs, progress, jobs)
    if progress:
        progress(f"cost {REVIEW_WORKLOAD}")
    w = workload(REVIEW_WORKLOAD).with_context_switches(REVIEW_RATE)
    fred_only = replace(w, guest_shstk=False)
    return Inputs(
        checks=checks,
        workload=w,
        costs={p: estimate(w, p, exit_costs) for p in COST_POLICIES},
        costs_fred_only={p: estimate(fred_only, p, exit_costs) for p in COST_POLICIES},
        sweep=sweep(w, COST_POLICIES, SWEEP_RATES, exit_costs),
        exit_costs=exit_costs,
        conformance=conformance,
    )

"""Evidence values and the inputs a review is computed from."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from msrvirt.arch.cpuid import Feature
from msrvirt.arch.hosts import host
from msrvirt.arch.msrs import display_name
from msrvirt.check.explore import DesignCheck
from msrvirt.check.parallel import CheckJob, check_all
from msrvirt.cost.constants import DEFAULT_COSTS, ExitCosts
from msrvirt.cost.model import PolicyCost, estimate, sweep
from msrvirt.cost.workload import Workload, workload
from msrvirt.machine.designs import design
from msrvirt.policy.decide import Decision, explain_msr
from msrvirt.policy.intercepts import compute_intercepts
from msrvirt.policy.policies import policy
from msrvirt.policy.scenario import Scenario


class Verdict(StrEnum):
    """What msrvirt concludes about a claim."""

    HOLDS = "holds"
    FAILS = "fails"
    UNDECIDED = "undecided"


class Kind(StrEnum):
    """Where a piece of evidence comes from."""

    FACT = "fact"  # the reference facts / the MSR table
    BITMAP = "bitmap"  # intercept decisions and the rules behind them
    CHECK = "check"  # the exhaustive checker
    COST = "cost"  # the exit-cost model
    CONFORMANCE = "conformance"  # the real kernel of this machine


@dataclass(frozen=True, slots=True, kw_only=True)
class Evidence:
    """One piece of evidence: a one-line summary, whether it supports the claim, details."""

    kind: Kind
    summary: str
    supports: bool | None  # True supports, False contradicts, None informs
    detail: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ConformanceSummary:
    """What `msrvirt conformance` found on this host (measured by the CLI through live/)."""

    host: str  # the host profile's description
    kernel: str
    scenarios: tuple[tuple[str, int, int], ...]  # (scenario, operations, disagreements)

    @property
    def operations(self) -> int:
        return sum(n for _, n, _ in self.scenarios)

    @property
    def disagreements(self) -> int:
        return sum(bad for _, _, bad in self.scenarios)


HOLDING_DESIGNS = ("v9", "minimal", "intercept-all", "invalidate-cache")
PLANTED_DESIGNS = ("rsp1-no-host-load", "stklvls-config-no-host-load", "no-rsp0-restore",
                   "no-sync", "get-soft-rsp0", "pl0-ssp-passthrough", "host-fields-once",
                   "filter-no-recalc")
PLANTED_DEPTH = 8  # every planted counterexample is at most 6 events (docs/check.md)
COST_POLICIES = ("fred-v9", "fred-minimal", "fred-v6", "intercept-all")
REVIEW_RATE = 100_000.0  # context switches per second (the figure)
SWEEP_RATES = tuple(float(r) for r in range(0, 200_001, 20_000))


@dataclass(frozen=True, slots=True, kw_only=True)
class Inputs:
    """Everything the claims are judged on, computed once."""

    checks: dict[str, DesignCheck]
    workload: Workload
    costs: dict[str, PolicyCost]  # policy -> linux-fred at REVIEW_RATE, shadow-stack guest
    costs_fred_only: dict[str, PolicyCost]  # the same for a FRED-only guest (no CET)
    sweep: dict[str, list[PolicyCost]]
    exit_costs: ExitCosts
    conformance: ConformanceSummary | None


Progress = Callable[[str], None]


def compute_inputs(*, conformance: ConformanceSummary | None,
                   exit_costs: ExitCosts = DEFAULT_COSTS,
                   progress: Progress | None = None, jobs: int | None = None) -> Inputs:
    """Run the checker on the designs the claims need and the cost model on linux-fred.

    The designs are checked ``jobs`` at a time in parallel processes (default: the CPU
    count; `msrvirt.check.parallel`).
    """
    todo = [CheckJob(design=design(n)) for n in HOLDING_DESIGNS]
    todo += [CheckJob(design=design(n), depth=PLANTED_DEPTH) for n in PLANTED_DESIGNS]
    finished: list[str] = []

    def done(chk: DesignCheck) -> None:
        finished.append(chk.design.name)
        if progress:
            progress(f"check: {len(finished)}/{len(todo)} designs ({chk.design.name})")

    checks = {chk.design.name: chk for chk in check_all(todo, processes=jobs, done=done)}
    if progress:
        progress("cost linux-fred")
    w = workload("linux-fred").with_context_switches(REVIEW_RATE)
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


# -- helpers the claims share ---------------------------------------------------------------

def scenario(host_name: str = "intel-fred", *, drop: Sequence[Feature] = (),
             policy_name: str = "fred-v9") -> Scenario:
    h = host(host_name)
    return Scenario(host=h, guest=h.features - frozenset(drop), policy=policy(policy_name))


def decision_rows(s: Scenario, msrs: Sequence[int]) -> list[tuple[int, Decision, Decision]]:
    ints = compute_intercepts(s)
    return [(m, *explain_msr(s, m, ints)) for m in msrs]


def bitmap_evidence(title: str, s: Scenario, msrs: Sequence[int],
                    want_passthrough: bool | None) -> Evidence:
    """Decisions for ``msrs``; supports the claim when all match ``want_passthrough``."""
    rows = decision_rows(s, msrs)
    lines = tuple(
        f"{display_name(m)} ({m:#x}): read {rd.outcome.value}, write {wr.outcome.value}"
        f" -- {rd.summary}" for m, rd, wr in rows)
    supports = None if want_passthrough is None else all(
        (not rd.intercept and not wr.intercept) == want_passthrough for _, rd, wr in rows)
    guest = "host" + "".join(f",-{f.value}" for f in sorted(s.host.features - s.guest))
    return Evidence(kind=Kind.BITMAP, supports=supports, detail=lines,
                    summary=f"{title} [host {s.host.name}, guest {guest}, policy {s.policy.name}]")


def check_evidence(inputs: Inputs, name: str, counterexample: Sequence[str],
                   *, expect_holds: bool) -> Evidence:
    """The checker's verdict on a design; ``counterexample`` is its rendered trace."""
    chk = inputs.checks[name]
    res = chk.result
    holds = not res.counterexamples
    fails = ", ".join(f"{n} in {len(c)} events" for n, c in res.counterexamples.items())
    scope = (f"{res.states:,} states, exhaustive" if res.complete
             else f"{res.states:,} states within {PLANTED_DEPTH} events")
    summary = (f"design {name} ({chk.design.summary}): "
               + ("every invariant holds" if holds else f"breaks {fails}") + f" [{scope}]")
    return Evidence(kind=Kind.CHECK, summary=summary, supports=holds == expect_holds,
                    detail=tuple(counterexample))


def cost_row(c: PolicyCost, msr: int) -> tuple[float, float]:
    """(exits/s, CPU %) of ``msr`` in ``c`` (0 when the MSR never exits)."""
    for row in c.rows:
        if row.msr == msr:
            return row.exits_per_s, row.cpu_percent
    return 0.0, 0.0

"""Benchmark the policy layer: one full decision table + bitmap, and 10,000 random scenarios.

Run: .venv/bin/python bench/bench_policy.py [--scenarios N] [--seed S]
Each scenario is fresh (random host, guest CPUID and filter), so the recomputation cache
never hits; per scenario we build the bitmap and decide read and write of every MSR in
explain's default set.  Prints median / p90 / max per scenario in microseconds.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

from msrvirt.arch.cpuid import Feature
from msrvirt.arch.hosts import HOSTS
from msrvirt.arch.kvm import Backend
from msrvirt.cli.explain import default_msrs
from msrvirt.policy.decide import explain_msr
from msrvirt.policy.filter import FilterRange, MsrFilter, bitmap_from_bits
from msrvirt.policy.intercepts import compute_intercepts
from msrvirt.policy.policies import POLICIES, policy
from msrvirt.policy.scenario import Scenario

FEATURES = sorted(Feature)


def random_filter(rnd: random.Random) -> MsrFilter:
    ranges = []
    for _ in range(rnd.randint(0, 4)):
        base = rnd.choice([0, 0x1C0, 0x6A0, 0xC0000000, rnd.randrange(0, 0x2000)])
        nmsrs = rnd.randint(1, 0x300)
        denied = rnd.sample(range(nmsrs), k=min(nmsrs, rnd.randint(0, 8)))
        ranges.append(FilterRange(flags=rnd.choice([1, 2, 3]), base=base, nmsrs=nmsrs,
                                  allow_bits=bitmap_from_bits(nmsrs, denied, set_listed=False)))
    return MsrFilter(flags=int(bool(ranges) and rnd.random() < 0.3), ranges=tuple(ranges))


def random_scenario(rnd: random.Random) -> Scenario:
    h = rnd.choice(list(HOSTS.values()))
    pols = [p for p in POLICIES.values() if h.backend in p.backends]
    guest = frozenset(f for f in sorted(h.features) if rnd.random() < 0.8) | frozenset(
        rnd.sample(FEATURES, k=2))
    return Scenario(host=h, guest=guest, policy=rnd.choice(pols), filter=random_filter(rnd))


def one(s: Scenario) -> int:
    """Bitmap and full decision table for ``s``; returns the number of decisions."""
    ints = compute_intercepts.__wrapped__(s)  # bypass the cache: measure the work
    msrs = default_msrs(s)
    for index in msrs:
        explain_msr(s, index, ints)
    return 2 * len(msrs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenarios", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    h = HOSTS["intel-fred"]
    default = Scenario(host=h, guest=h.features, policy=policy("fred-v9"))
    single = []
    for _ in range(2000):
        t0 = time.perf_counter_ns()
        decisions = one(default)
        single.append(time.perf_counter_ns() - t0)

    rnd = random.Random(args.seed)
    scenarios = [random_scenario(rnd) for _ in range(args.scenarios)]
    sweep = []
    total_decisions = 0
    t_all = time.perf_counter_ns()
    for s in scenarios:
        t0 = time.perf_counter_ns()
        total_decisions += one(s)
        sweep.append(time.perf_counter_ns() - t0)
    wall = (time.perf_counter_ns() - t_all) / 1e9

    def stats(xs: list[int]) -> dict[str, float]:
        xs = sorted(xs)
        return {"median_us": statistics.median(xs) / 1e3, "p90_us": xs[len(xs) * 9 // 10] / 1e3,
                "max_us": xs[-1] / 1e3}

    result = {
        "default_scenario": {**stats(single), "decisions": decisions},
        "random_sweep": {**stats(sweep), "scenarios": len(scenarios), "wall_s": wall,
                         "decisions": total_decisions,
                         "backends": {b.value: sum(s.host.backend is b for s in scenarios)
                                      for b in Backend}},
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    d, r = result["default_scenario"], result["random_sweep"]
    print(f"default scenario (intel-fred, fred-v9, {d['decisions']} decisions + bitmap):"
          f" median {d['median_us']:.0f} us, p90 {d['p90_us']:.0f} us")
    print(f"{r['scenarios']} random scenarios: median {r['median_us']:.0f} us, p90"
          f" {r['p90_us']:.0f} us, max {r['max_us']:.0f} us per scenario; {r['wall_s']:.1f} s total")


if __name__ == "__main__":
    main()

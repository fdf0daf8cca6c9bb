"""Benchmark the checker: states/s and wall time of the exhaustive v9 check.

Run: .venv/bin/python bench/bench_check.py [--repeat N] [--larger]
Prints, for the default bounds (2 CPUs, 3 tasks, 1 guest value) and with --larger also
for the next larger bound (4 host tasks), the states, transitions, wall time and
states per second of each run and the median.  Target (issue 4): the default check
under 60 s at 50,000 states/s or more on this 2-core machine.
"""

from __future__ import annotations

import argparse
import statistics

from msrvirt.check.explore import check_design
from msrvirt.machine.designs import design
from msrvirt.machine.model import Bounds

DEFAULT = Bounds()
LARGER = Bounds(tasks=4)


def measure(bounds: Bounds, repeat: int) -> None:
    rates, walls = [], []
    for _ in range(repeat):
        res = check_design(design("v9"), bounds).result
        assert res.complete and res.verdict.value == "holds"
        rates.append(res.states_per_second)
        walls.append(res.seconds)
        print(f"  cpus={bounds.cpus} tasks={bounds.tasks} values={bounds.values}:"
              f" {res.states:,} states, {res.transitions:,} transitions, depth {res.depth},"
              f" {res.seconds:.2f} s, {res.states_per_second:,.0f} states/s")
    print(f"median: {statistics.median(walls):.2f} s, {statistics.median(rates):,.0f} states/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--larger", action="store_true", help="also the next larger bound")
    args = parser.parse_args()
    print("v9, default bounds")
    measure(DEFAULT, args.repeat)
    if args.larger:
        print("v9, next larger bound (tasks=4)")
        measure(LARGER, 1)


if __name__ == "__main__":
    main()

"""Benchmark the CLI's start-up: whole-process time of `msrvirt decide ... --json` against a
bare `python -c "import rich"` in the same venv, measured in one run.

Run: .venv/bin/python bench/bench_cli.py [--runs N]
The two commands are run alternately, N times each (default 15, after one warm-up run of
each so that the page cache and bytecode are warm); each figure is the median of its N
wall-clock times.  Prints both medians and their ratio; the target is a ratio
of at most 3.5.  Also times `msrvirt --help` and `msrvirt explain --json` for reference.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_RATIO = 3.5
BIN = Path(sys.executable).parent
BASELINE = [sys.executable, "-c", "import rich"]
DECIDE = [str(BIN / "msrvirt"), "decide", "--msr", "fred_rsp0", "--read", "--json"]
OTHERS = {
    "msrvirt explain --json": [str(BIN / "msrvirt"), "explain", "--json"],
    "msrvirt --help": [str(BIN / "msrvirt"), "--help"],
}


def wall(argv: list[str]) -> float:
    """Seconds one run of ``argv`` takes, start to exit (its output discarded)."""
    t = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def medians(commands: dict[str, list[str]], runs: int) -> dict[str, float]:
    """Median wall time of each command, the commands interleaved run by run."""
    for argv in commands.values():
        wall(argv)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            times[name].append(wall(argv))
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="runs of each command")
    args = parser.parse_args()
    got = medians({"import rich": BASELINE, "decide --json": DECIDE, **OTHERS}, args.runs)
    base = got["import rich"]
    print(f"python {sys.version.split()[0]}, median of {args.runs} runs each, interleaved")
    for name, seconds in got.items():
        print(f"  {name:<24} {seconds * 1000:7.1f} ms  {seconds / base:5.2f}x")
    ratio = got["decide --json"] / base
    verdict = "met" if ratio <= TARGET_RATIO else "missed"
    print(f"decide --json / import rich = {ratio:.2f} (target <= {TARGET_RATIO}: {verdict})")


if __name__ == "__main__":
    main()

"""Benchmark the checker: both engines on v9, all designs, and the review, in one run.

Run: .venv/bin/python bench/bench_check.py [--repeat N] [--skip-spin] [--skip-cli]

Prints the date, the machine (CPUs, Python) and its load average before each part, then
medians of N runs (default 3) of:

1. v9 with msrvirt's explorer at the default bounds and at --cpus 3 --tasks 4: states,
   seconds, states/s and bytes per stored state (peak RSS of a fresh process minus its
   RSS before exploring, divided by the states);
2. the same with SPIN, measured in the same run: pan's own seconds and states/s, its
   bytes per state ("actual memory usage for states"), the compile time apart, and the
   ratio of the two engines' seconds;
3. `msrvirt check --all-designs` and `msrvirt review` (conformance included when
   /dev/kvm is usable) wall times, as a user runs them (the default --jobs: CPU count).

Targets: >= 150,000 states/s and <= 200 bytes per state on v9 at the default
bounds; all-designs < 30 s and review < 8 s on this 2-core machine.  Judge them only
from a quiet machine: the load average is printed for that reason.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BOUNDS = {"default bounds": (2, 3), "--cpus 3 --tasks 4": (3, 4)}


def _one_python(cpus: int, tasks: int) -> dict[str, float]:
    """In a fresh process: explore v9 once; states, seconds, bytes per state."""
    import resource

    from msrvirt.check.explore import explore, judged_program
    from msrvirt.machine.designs import design
    from msrvirt.machine.model import Bounds, Machine

    m = Machine(design("v9"), Bounds(cpus=cpus, tasks=tasks))
    judged_program(m)
    status = Path("/proc/self/status").read_text()
    before = int(status.split("VmRSS:")[1].split()[0]) * 1024
    res = explore(m)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert res.complete and res.verdict.value == "holds"
    return {"states": res.states, "seconds": res.seconds, "bytes": (peak - before) / res.states}


def _one_spin(cpus: int, tasks: int) -> dict[str, float]:
    from msrvirt.check.parallel import CheckJob
    from msrvirt.machine.designs import design
    from msrvirt.machine.model import Bounds
    from msrvirt.spin.run import check_with_spin

    run = check_with_spin(CheckJob(design=design("v9"), bounds=Bounds(cpus=cpus, tasks=tasks)))
    assert run.check.result.complete and run.check.result.verdict.value == "holds"
    return {"states": run.check.result.states, "seconds": run.pan_seconds,
            "compile": run.compile_seconds, "bytes": run.pan.state_bytes}


def fresh(engine: str, cpus: int, tasks: int) -> dict[str, float]:
    """One measurement in a fresh interpreter (so peak RSS is this exploration's)."""
    out = subprocess.run([sys.executable, __file__, "--one", engine, str(cpus), str(tasks)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def engines(repeat: int, spin: bool) -> None:
    for label, (cpus, tasks) in BOUNDS.items():
        print(f"v9, {label} [{load()}]")
        py = [fresh("python", cpus, tasks) for _ in range(repeat)]
        for r in py:
            print(f"  msrvirt: {r['states']:,.0f} states, {r['seconds']:.2f} s,"
                  f" {r['states'] / r['seconds']:,.0f} states/s, {r['bytes']:.0f} bytes/state")
        py_s = median(py, "seconds")
        print(f"  msrvirt median: {py_s:.2f} s, {py[0]['states'] / py_s:,.0f} states/s,"
              f" {median(py, 'bytes'):.0f} bytes/state")
        if not spin:
            continue
        sp = [fresh("spin", cpus, tasks) for _ in range(repeat)]
        for r in sp:
            print(f"  SPIN: {r['states']:,.0f} states, pan {r['seconds']:.2f} s"
                  f" (compile {r['compile']:.2f} s), {r['states'] / r['seconds']:,.0f} states/s,"
                  f" {r['bytes']:.0f} bytes/state")
        sp_s = median(sp, "seconds")
        print(f"  SPIN median: pan {sp_s:.2f} s, {sp[0]['states'] / sp_s:,.0f} states/s,"
              f" {median(sp, 'bytes'):.0f} bytes/state; compile {median(sp, 'compile'):.2f} s")
        print(f"  ratio msrvirt / SPIN (pan) seconds: {py_s / sp_s:.2f}")


def wall(argv: list[str], repeat: int, ok: tuple[int, ...] = (0,)) -> None:
    print(f"{' '.join(argv)} [{load()}]")
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        status = subprocess.run([sys.executable, "-m", "msrvirt", *argv],
                                stdout=subprocess.DEVNULL, check=False).returncode
        times.append(time.perf_counter() - start)
        assert status in ok, f"exit status {status}"
        print(f"  {times[-1]:.2f} s")
    print(f"  median: {statistics.median(times):.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-spin", action="store_true", help="msrvirt's engine only")
    parser.add_argument("--skip-cli", action="store_true", help="no all-designs, no review")
    parser.add_argument("--one", nargs=3, metavar=("ENGINE", "CPUS", "TASKS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        engine, cpus, tasks = args.one[0], int(args.one[1]), int(args.one[2])
        print(json.dumps((_one_python if engine == "python" else _one_spin)(cpus, tasks)))
        return
    print(f"{datetime.datetime.now().isoformat(timespec='seconds')}, {os.cpu_count()} CPUs,"
          f" Python {platform.python_version()}, {args.repeat} runs each")
    engines(args.repeat, not args.skip_spin)
    if not args.skip_cli:
        wall(["check", "--all-designs"], args.repeat)
        with tempfile.TemporaryDirectory() as tmp:
            wall(["review", "--html", str(Path(tmp) / "review.html")], args.repeat)


if __name__ == "__main__":
    main()

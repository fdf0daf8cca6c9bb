"""Benchmark the conformance sweep end to end: 16,384 indices x read/write on /dev/kvm,
predicted by the model and compared.

Run: .venv/bin/python bench/bench_conformance.py [--repeat N]
Prints, per repetition, the time to run the probe VM, to predict, and to compare.
"""

from __future__ import annotations

import argparse
import statistics
import time

from msrvirt.cli.options import parse_guest
from msrvirt.conform.corpus import builtin, rows
from msrvirt.conform.predict import predict
from msrvirt.live import fingerprint
from msrvirt.live.conformance import run_scenario
from msrvirt.live.kvm import Kvm


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    ps = next(p for p in builtin() if p.name.startswith("sweep"))
    totals = []
    with Kvm() as kvm:
        host = fingerprint.host_profile(fingerprint.take(kvm))
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            result = run_scenario(kvm, ps, parse_guest(ps.guest, host.features))
            t1 = time.perf_counter()
            predicted = list(predict(host, result.guest_features, ps))
            t2 = time.perf_counter()
            bad = sum(not r.agree for r in rows(ps, predicted, result.observed))
            t3 = time.perf_counter()
            totals.append(t3 - t0)
            print(f"{ps.op_count} ops: run {t1 - t0:.3f} s, predict {t2 - t1:.3f} s,"
                  f" compare {t3 - t2:.3f} s, total {t3 - t0:.3f} s, {bad} disagree")
    print(f"median total {statistics.median(totals):.3f} s over {len(totals)} runs")


if __name__ == "__main__":
    main()

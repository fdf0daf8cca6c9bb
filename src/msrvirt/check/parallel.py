"""Check independent designs in parallel processes.

Each design's exploration is independent and CPU-bound, so `check_all` runs them in a
pool of worker processes (``processes``, default: the CPU count) and hands the results
back in the order given.  The workers are forked, so they inherit the jobs (a design's
policy holds functions, which do not pickle); only the results travel back.  The
parent compiles a design's `Machine` only if it prints a counterexample
(`DesignCheck.machine`; machines are pure and deterministic, so the packed states read
the same).  Progress from the workers comes through a queue.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from msrvirt.check.explore import DesignCheck, Result, check_design, explore
from msrvirt.errors import UsageError
from msrvirt.machine.designs import Design
from msrvirt.machine.model import DEFAULT_BOUNDS, Bounds, declare, machine
from msrvirt.machine.spec import Model

# (design name, states, depth done, frontier size)
DesignProgress = Callable[[str, int, int, int], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckJob:
    """One design to explore, at some bounds, to some depth (None: exhaustively)."""

    design: Design
    bounds: Bounds = DEFAULT_BOUNDS
    depth: int | None = None


def default_processes() -> int:
    """The number of CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_all(jobs: Sequence[CheckJob], *, processes: int | None = None,
              progress: DesignProgress | None = None,
              done: Callable[[DesignCheck], None] | None = None) -> list[DesignCheck]:
    """Explore every job, ``processes`` at a time; the results in the order of ``jobs``.

    ``progress`` is called during each exploration, ``done`` when a design is finished
    (in the order they finish).  Jobs whose declarations and depths are equal (a design on
    a host configuration its choices do not depend on, say) are explored once and share
    the result.
    """
    groups: dict[tuple[Model, int | None], list[int]] = {}  # in order of first appearance
    for i, j in enumerate(jobs):
        groups.setdefault((declare(j.design, j.bounds), j.depth), []).append(i)
    copies = list(groups.values())  # per distinct job: the jobs sharing its result, it first

    def share(k: int, chk: DesignCheck) -> list[DesignCheck]:
        out = [chk, *(DesignCheck(design=jobs[i].design, bounds=jobs[i].bounds, result=chk.result)
                      for i in copies[k][1:])]
        if done is not None:
            for c in out:
                done(c)
        return out

    found = _explore_all([jobs[same[0]] for same in copies], processes, progress, share)
    results: dict[int, DesignCheck] = {}
    for same, group in zip(copies, found, strict=True):
        results.update(zip(same, group, strict=True))
    return [results[i] for i in range(len(jobs))]


def pool_size(processes: int | None) -> int:
    """How many jobs run at once: ``processes``, or the CPU count; UsageError below 1."""
    n = default_processes() if processes is None else processes
    if n < 1:
        raise UsageError(f"jobs must be at least 1, not {n}")
    return n


def _explore_all(jobs: Sequence[CheckJob], processes: int | None,
                 progress: DesignProgress | None,
                 share: Callable[[int, DesignCheck], list[DesignCheck]]) -> list[list[DesignCheck]]:
    """Explore distinct jobs; ``share(k, check)`` turns job k's check into its copies'."""
    n = pool_size(processes)
    if n == 1 or len(jobs) <= 1:
        return [share(k, check_design(
            job.design, job.bounds, depth=job.depth,
            progress=None if progress is None else _named(progress, job.design.name)))
            for k, job in enumerate(jobs)]
    ctx = multiprocessing.get_context("fork")
    queue: Any = ctx.Queue() if progress is not None else None
    drain = None
    if progress is not None:
        drain = threading.Thread(target=_drain, args=(queue, jobs, progress), daemon=True)
        drain.start()
    results: list[list[DesignCheck] | None] = [None] * len(jobs)
    try:
        with ctx.Pool(min(n, len(jobs)), initializer=_start_worker, initargs=(jobs, queue)) as pool:
            for i, res in pool.imap_unordered(_explore_job, range(len(jobs))):
                job = jobs[i]
                chk = DesignCheck(design=job.design, bounds=job.bounds, result=res)
                results[i] = share(i, chk)
    finally:
        if queue is not None:
            queue.put(None)
            assert drain is not None
            drain.join()
    return [r for r in results if r is not None]


def _named(progress: DesignProgress, name: str) -> Callable[[int, int, int], None]:
    return lambda states, depth, frontier: progress(name, states, depth, frontier)


def _drain(queue: Any, jobs: Sequence[CheckJob], progress: DesignProgress) -> None:
    while (item := queue.get()) is not None:
        i, states, depth, frontier = item
        progress(jobs[i].design.name, states, depth, frontier)


_WORKER: dict[str, Any] = {}  # in a worker process: its jobs and the progress queue


def _start_worker(jobs: Sequence[CheckJob], queue: Any) -> None:
    _WORKER["jobs"], _WORKER["queue"] = jobs, queue


def _explore_job(i: int) -> tuple[int, Result]:
    job: CheckJob = _WORKER["jobs"][i]
    queue = _WORKER["queue"]
    cb = None if queue is None else (lambda states, depth, frontier: queue.put((i, states, depth, frontier)))
    return i, explore(machine(job.design, job.bounds), depth=job.depth, progress=cb)

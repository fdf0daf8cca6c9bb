"""Check a design with SPIN: generate Promela, run ``spin -a``, compile pan, run it breadth-first.

pan runs breadth-first (``-DBFS``), so the first violation of each invariant it meets is
a shortest one; ``-c0 -e`` keeps it going after errors and writes a trail for each (the
model reports each invariant once, `msrvirt.check.promela`).  Each trail is replayed with
``pan -S -A -r TRAIL``, which prints the events it takes; msrvirt replays them on its own machine
to name the states and the violation (``-A``: the replay goes on past the assertions of
invariants broken earlier on the way).  Everything happens in a private temporary
directory (``mkdtemp``), removed afterwards.

Multi-core: designs are checked side by side, one pan each (``--jobs``).  pan's own
multi-core breadth-first search (``-DBFS_PAR``) is not used: its workers each keep their
own record of the invariants reported, so a worker can report a longer trail than the
shortest, and at msrvirt's bounds (60-byte states, cheap transitions) two workers were no
faster than one on this 2-core machine (docs/check.md).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from msrvirt.check.explore import DesignCheck
from msrvirt.check.invariants import INVARIANTS, Invariant
from msrvirt.check.parallel import CheckJob, DesignProgress, pool_size
from msrvirt.check.promela import PanReport, parse_pan, promela, result
from msrvirt.errors import MsrvirtError
from msrvirt.machine.model import machine

CFLAGS = ("-O2", "-DBFS", "-DSAFETY", "-DNOCLAIM", "-DNOREDUCE")
PAN_FLAGS = ("-c0", "-e", "-E", "-n")  # go on after errors, a trail each, no end states
SPIN_PACKAGE = "Debian's spin (apt-get install spin)"


class SpinError(MsrvirtError, OSError):
    """SPIN or the C compiler is missing, or one of the tools failed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Tools:
    """The programs the engine runs."""

    spin: str
    cc: str


def find_tools() -> Tools:
    """spin and a C compiler ($CC, cc or gcc) on PATH; SpinError naming what is missing."""
    spin = shutil.which("spin")
    cc = next((found for name in (os.environ.get("CC"), "cc", "gcc")
               if name and (found := shutil.which(name))), None)
    missing = [what for what, path in (("spin", spin), ("a C compiler", cc)) if path is None]
    if missing:
        raise SpinError(f"the spin engine needs {' and '.join(missing)} on PATH"
                        f" ({SPIN_PACKAGE}, and gcc; `make spin` installs them as root)")
    assert spin is not None and cc is not None
    return Tools(spin=spin, cc=cc)


@dataclass(frozen=True, slots=True, kw_only=True)
class SpinRun:
    """One design checked by SPIN: the result, pan's report, and where the time went."""

    check: DesignCheck
    pan: PanReport
    generate_seconds: float  # writing the Promela text
    compile_seconds: float  # spin -a and the C compiler
    pan_seconds: float  # pan's own run, as pan reports it
    seconds: float  # everything, replaying the trails included


def _run(argv: Sequence[str], cwd: str, what: str) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    except OSError as err:
        raise SpinError(f"{what}: {err}") from err
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise SpinError(f"{what} failed (status {done.returncode}): {' / '.join(tail)}")
    return done.stdout


def _pan(argv: list[str], cwd: str, progress: Callable[[int, int], None] | None) -> str:
    """Run pan, passing its "Depth= ... States= ..." lines to ``progress`` as they come."""
    try:
        proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    except OSError as err:
        raise SpinError(f"pan: {err}") from err
    lines = []
    assert proc.stdout is not None
    with proc:
        for line in proc.stdout:
            lines.append(line)
            if progress is not None and line.startswith("Depth="):
                parts = line.split()
                progress(int(float(parts[3])), int(parts[1]))
    if proc.returncode != 0:
        raise SpinError(f"pan failed (status {proc.returncode}): {''.join(lines[-3:]).strip()}")
    return "".join(lines)


def check_with_spin(job: CheckJob, *, tools: Tools | None = None,
                    invariants: Sequence[Invariant] = INVARIANTS,
                    progress: Callable[[int, int], None] | None = None) -> SpinRun:
    """Check one design with SPIN (``progress(states, depth)`` while pan runs)."""
    tools = tools or find_tools()
    start = time.perf_counter()
    m = machine(job.design, job.bounds)
    model = promela(m, invariants)
    generated = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="msrvirt-spin-") as tmp:
        (Path(tmp) / "model.pml").write_text(model.text)
        _run([tools.spin, "-a", "model.pml"], tmp, "spin -a")
        _run([tools.cc, *CFLAGS, "-o", "pan", "pan.c"], tmp, "compiling pan")
        compiled = time.perf_counter()
        # msrvirt's depth d is pan's d + 1: pan's first step judges the initial state.
        depth = [f"-m{job.depth + 1}"] if job.depth is not None else []
        report = parse_pan(_pan(["./pan", *PAN_FLAGS, *depth], tmp, progress))
        trails = [_run(["./pan", "-S", "-A", "-r", trail], tmp, f"replaying {trail}")
                  for _, trail in report.errors]
    seconds = time.perf_counter() - start
    res = result(m, report, trails, seconds, invariants)
    return SpinRun(check=DesignCheck(design=job.design, bounds=job.bounds, result=res), pan=report,
                   generate_seconds=generated - start, compile_seconds=compiled - generated,
                   pan_seconds=report.seconds, seconds=seconds)


def check_all_with_spin(jobs: Sequence[CheckJob], *, processes: int | None = None,
                        progress: DesignProgress | None = None,
                        done: Callable[[DesignCheck], None] | None = None) -> list[SpinRun]:
    """`check_with_spin` of every job, ``processes`` pan runs at a time; results in order."""
    n = pool_size(processes)
    tools = find_tools()

    def one(job: CheckJob) -> SpinRun:
        name = job.design.name
        cb = None if progress is None else (lambda states, depth: progress(name, states, depth, -1))
        run = check_with_spin(job, tools=tools, progress=cb)
        if done is not None:
            done(run.check)
        return run

    with ThreadPoolExecutor(max_workers=min(n, max(1, len(jobs)))) as pool:
        return list(pool.map(one, jobs))

"""Ctrl-C mid-run and a reader that goes away: the contract holds for the long verbs.

SIGINT while a verb works: exit status 130, exactly "msrvirt: interrupted" on stderr,
nothing on stdout, no output file and no temporary file left.  A closed pipe on stdout:
no message, and the exit status the verb would have had (0, or 1 for a finding).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import pytest

from hostile import CORPUS, kvm_or_skip, leftovers

STARTED_S = 2.0  # a verb without /dev/kvm is well into its work by then (start-up is ~0.2 s)


def _uses_kvm(pid: int) -> bool:
    fds = Path(f"/proc/{pid}/fd")
    with suppress(OSError):
        return any(os.readlink(fd) == "/dev/kvm" for fd in fds.iterdir())
    return False


def interrupted(argv: list[str], cwd: Path, *, kvm: bool) -> subprocess.CompletedProcess[bytes]:
    """Run ``msrvirt ARGV``, send SIGINT once it works (it has /dev/kvm open, or STARTED_S
    has passed), and collect what it did."""
    proc = subprocess.Popen([sys.executable, "-m", "msrvirt", *argv], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + (60 if kvm else STARTED_S)
    while time.monotonic() < deadline and proc.poll() is None:
        if kvm and _uses_kvm(proc.pid):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the verb ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize(("argv", "kvm"), [
    (["check", "--all-designs"], False),
    (["check", "--all-designs", "--json"], False),
    (["review", "--no-live", "--html", "report.html"], False),
    (["review", "--html", "report.html", "--json"], True),
    (["conformance"], True),
    (["conformance", "--json"], True),
    (["probe", str(CORPUS / "09-sweep.json"), "--json", "probe.json"], True),
    (["calibrate", "--iterations", "4000000000", "--out", "costs.json"], True),
], ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_ctrl_c_is_one_line_exit_130_and_no_output(argv: list[str], kvm: bool,
                                                   tmp_path: Path) -> None:
    if kvm:
        kvm_or_skip()
    done = interrupted(argv, tmp_path, kvm=kvm)
    assert done.returncode == 130, done.stderr
    assert done.stderr == b"msrvirt: interrupted\n"
    assert done.stdout == b""
    assert list(tmp_path.iterdir()) == [] and leftovers(tmp_path) == []


def closed_reader(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    """Run ``msrvirt ARGV`` with a stdout pipe whose reader has already gone."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, "-m", "msrvirt", *argv], cwd=cwd,
                              stdout=write_end, stderr=subprocess.PIPE, timeout=300,
                              check=False)
    finally:
        os.close(write_end)
    return proc


@pytest.mark.parametrize(("argv", "status", "kvm"), [
    (["explain", "--all"], 0, False),
    (["explain", "--all", "--json"], 0, False),
    (["bitmap", "--out", "-"], 0, False),
    (["policies", "--show", "fred-v9"], 0, False),
    (["check", "--design", "no-sync", "--depth", "6"], 0, False),
    (["conformance", "--scenario", str(CORPUS / "05-filter-validation.json")], 0, True),
], ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_a_closed_pipe_ends_quietly_with_the_verbs_status(
        argv: list[str], status: int, kvm: bool, tmp_path: Path) -> None:
    if kvm:
        kvm_or_skip()
    done = closed_reader(argv, tmp_path)
    assert done.returncode == status
    # nothing but the report `--out -` sends to stderr: no error, no traceback
    assert b"msrvirt:" not in done.stderr and b"Error" not in done.stderr
    assert done.stderr == b"" or argv[-1] == "-"


def test_a_finding_keeps_exit_1_through_a_closed_pipe(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"ranges": [{"flags": 4, "base": 0, "nmsrs": 1, "deny": []}]}))
    done = closed_reader(["filter", "check", str(bad), "--json"], tmp_path)
    assert done.returncode == 1
    assert done.stderr.decode().startswith(f"msrvirt: {bad}: EINVAL: range 0")


def test_head_reads_the_first_line_and_the_verb_still_ends_well(tmp_path: Path) -> None:
    done = subprocess.run(f"{sys.executable} -m msrvirt explain --all | head -1; "
                          "exit ${PIPESTATUS[0]}", shell=True, executable="/bin/bash",
                          capture_output=True, cwd=tmp_path, timeout=120, check=False)
    assert done.returncode == 0 and done.stderr == b""
    assert done.stdout.count(b"\n") == 1

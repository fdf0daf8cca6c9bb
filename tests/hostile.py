"""Helpers of the hostile-input suite (tests/test_hostile_*.py): run the CLI, hold it to the
exit-status contract, make device nodes and FIFOs inside tmp_path (never under /dev)."""

from __future__ import annotations

import io
import json
import os
import stat
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from msrvirt.cli import main
from msrvirt.cost.constants import DEFAULT_COSTS

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "src" / "msrvirt" / "conform" / "corpus"

# Character devices by (major, minor) as Linux numbers them (Documentation/admin-guide/
# devices.txt): made in tmp_path, so the machine's own /dev nodes are never written.
NULL = (1, 3)  # reads nothing, swallows writes
ZERO = (1, 5)  # reads zeros forever
FULL = (1, 7)  # every write fails with ENOSPC
# An unassigned block device (the loop major, a minor no loop device has): opening it fails,
# and msrvirt refuses block devices before it would try.
BLOCK = (7, 250)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="making device nodes needs root")


def kvm_or_skip() -> None:
    """Skip the test, saying why, where /dev/kvm cannot be used (fail under
    MSRVIRT_REQUIRE_KVM, as tests/live/conftest.py does)."""
    from msrvirt.live.errors import KvmError
    from msrvirt.live.kvm import Kvm

    try:
        Kvm().close()
    except KvmError as err:
        if os.environ.get("MSRVIRT_REQUIRE_KVM"):
            pytest.fail(f"MSRVIRT_REQUIRE_KVM is set but /dev/kvm is unusable: {err}")
        pytest.skip(f"/dev/kvm is not usable here: {err}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """One CLI run: exit status, standard output, standard error."""

    status: int
    out: str
    err: str


def run(capsys: pytest.CaptureFixture[str], *argv: str, stdin: bytes | None = None) -> Result:
    """Run ``msrvirt ARGV`` in this process (standard input from ``stdin`` if given)."""
    saved = sys.stdin
    if stdin is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    try:
        status = main(list(argv))
    except SystemExit as exc:  # argparse's own usage errors
        status = int(exc.code or 0)
    finally:
        sys.stdin = saved
    out, err = capsys.readouterr()
    return Result(status=status, out=out, err=err)


def assert_contract(res: Result, *, names: str | None = None) -> None:
    """The exit-status contract: 0 or 1 with no error line; 2 with exactly one line on
    stderr (naming ``names`` when given) and nothing on stdout; never a traceback."""
    assert "Traceback" not in res.err
    assert res.status in (0, 1, 2), res
    if res.status == 2:
        assert res.out == ""
        assert res.err.count("\n") == 1 and res.err.startswith("msrvirt"), res.err
        if names is not None:
            assert names in res.err, res.err


def char_device(path: Path, numbers: tuple[int, int]) -> Path:
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(*numbers))
    return path


def block_device(path: Path, numbers: tuple[int, int]) -> Path:
    os.mknod(path, 0o666 | stat.S_IFBLK, os.makedev(*numbers))
    return path


@contextmanager
def fifo_writer(path: Path, data: bytes) -> Iterator[Path]:
    """A FIFO at ``path`` whose writer (a thread) sends ``data`` and closes."""
    os.mkfifo(path)

    def feed() -> None:
        with suppress(BrokenPipeError), open(path, "wb") as f:  # blocks until a reader opens
            f.write(data)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    yield path
    # A writer still waiting for a reader is let go; a non-blocking open never waits itself
    # (a blocking one could, if the writer finished just now).
    os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
    thread.join(timeout=5)


@contextmanager
def fifo_reader(path: Path) -> Iterator[list[bytes]]:
    """A FIFO at ``path`` with a reader (a thread); the list holds what it read, once done."""
    os.mkfifo(path)
    got: list[bytes] = []

    def drain() -> None:
        with open(path, "rb") as f:
            got.append(f.read())

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    yield got
    # A reader still waiting for a writer is let go (ENXIO: no reader is waiting any more).
    with suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    thread.join(timeout=5)


def leftovers(directory: Path) -> list[str]:
    """Temporary files a writer left behind in ``directory``."""
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# -- one valid document per file format -----------------------------------------------------

def _cpuid_vendor(vendor: bytes) -> dict[str, str]:
    ebx, edx, ecx = (int.from_bytes(vendor[i:i + 4], "little") for i in (0, 4, 8))
    return {"function": "0x0", "index": 0, "flags": 0, "eax": "0x00000020",
            "ebx": f"{ebx:#010x}", "ecx": f"{ecx:#010x}", "edx": f"{edx:#010x}"}


# A saved fingerprint of an Intel host with FRED (CPUID.(7,1):EAX bit 17) and LM
# (CPUID.80000001H:EDX bit 29), as `msrvirt probe --json` records one.
FINGERPRINT: dict[str, Any] = {
    "cpu_model": "Intel test CPU", "kernel_release": "6.19.0", "kvm_api_version": 12,
    "kvm_modules": ["kvm_intel"], "backend": "vmx", "module_params": {"kvm.ignore_msrs": "N"},
    "cpuid": [
        _cpuid_vendor(b"GenuineIntel"),
        {"function": "0x7", "index": 1, "flags": 1, "eax": "0x00020000", "ebx": "0x00000000",
         "ecx": "0x00000000", "edx": "0x00000000"},
        {"function": "0x80000001", "index": 0, "flags": 0, "eax": "0x00000000",
         "ebx": "0x00000000", "ecx": "0x00000000", "edx": "0x20000000"},
    ],
    "msr_index_list": ["0x10", "0x1cc"], "feature_msr_index_list": [], "feature_msrs": {},
}

VALID: dict[str, Any] = {
    "filter": json.loads((ROOT / "examples" / "deny-fred-config-write.json").read_text()),
    "host": {"name": "mine", "vendor": "intel", "backend": "vmx", "features": ["fred", "lm"],
             "hw_caps": ["cpuid_fault"], "msr_index_list": ["0x10", "0x1cc"],
             "feature_msrs": {"0x345": "0x2000"}, "pmu": {"version": 2, "gp": 8, "fixed": 3},
             "phys_addr_bits": 46, "params": {"ignore_msrs": False, "pt_mode": 0}},
    # An L1 bitmap (`--nested FILE`, docs/formats.md).
    "l1": {"default": "intercept", "passthrough": {"rw": ["FS_BASE"], "read": ["0x10"]},
           "controls": ["msr-bitmaps"]},
    "fingerprint": FINGERPRINT,
    "scenario": json.loads((CORPUS / "01-exit-test-filter-allow.json").read_text()),
    "workload": json.loads((ROOT / "src" / "msrvirt" / "cost" / "workloads" /
                            "linux-fred.json").read_text()),
    "costs": DEFAULT_COSTS.to_obj(),
}

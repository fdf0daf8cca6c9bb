"""The probe guest's code: hand-encoded bytes agree with GNU as; layout invariants hold."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from msrvirt.errors import UsageError
from msrvirt.live.asm import Asm16
from msrvirt.live.probe import (
    CODE_ADDR,
    DIAG_ADDR,
    IVT,
    MAX_OPS_PER_RUN,
    MEMORY_BYTES,
    N_STUBS,
    PROGRAM,
    RECORD,
    STACK_TOP,
    STUB_SIZE,
    TABLE_ADDR,
)


def test_the_bytes_are_what_gnu_as_assembles_from_the_listing(tmp_path: Path) -> None:
    as_, objcopy = shutil.which("as"), shutil.which("objcopy")
    if as_ is None or objcopy is None:
        pytest.skip("GNU as/objcopy (binutils) not installed: cannot cross-check the encoding")
    (tmp_path / "probe.s").write_text(PROGRAM.gas_source())
    subprocess.run([as_, "--32", "-o", str(tmp_path / "probe.o"), str(tmp_path / "probe.s")],
                   check=True, capture_output=True)
    subprocess.run([objcopy, "-O", "binary", "-j", ".text", str(tmp_path / "probe.o"),
                    str(tmp_path / "probe.bin")], check=True, capture_output=True)
    assert (tmp_path / "probe.bin").read_bytes() == PROGRAM.code


def test_the_msr_instructions_are_where_the_gp_handler_looks_for_them() -> None:
    code, origin = PROGRAM.code, PROGRAM.origin
    assert code[PROGRAM.labels["rdmsr_at"] - origin:][:2] == b"\x0f\x32"
    assert code[PROGRAM.labels["wrmsr_at"] - origin:][:2] == b"\x0f\x30"


def test_the_ivt_sends_gp_to_its_handler_and_every_other_vector_to_a_stub() -> None:
    entries = [struct.unpack_from("<HH", IVT, 4 * v) for v in range(256)]
    assert entries[13] == (PROGRAM.labels["gp_handler"], 0)
    for vector, (offset, segment) in enumerate(entries):
        if vector != 13:
            assert segment == 0
            assert offset == PROGRAM.labels[f"stub{min(vector, N_STUBS - 1)}"]
    # The unexpected-fault handler turns the stub's return address back into the vector.
    stub0 = PROGRAM.labels["stub0"]
    for vector in range(N_STUBS):
        assert (PROGRAM.labels[f"stub{vector}"] + STUB_SIZE - stub0) // STUB_SIZE - 1 == vector


def test_the_memory_layout_does_not_overlap() -> None:
    assert len(IVT) == 0x400 <= DIAG_ADDR < DIAG_ADDR + 6 <= STACK_TOP - 16
    assert STACK_TOP <= CODE_ADDR and CODE_ADDR + len(PROGRAM.code) <= TABLE_ADDR
    assert TABLE_ADDR + MAX_OPS_PER_RUN * RECORD.size <= MEMORY_BYTES
    assert RECORD.size == 16


def test_the_listing_shows_every_instruction_with_its_address_and_bytes() -> None:
    listing = PROGRAM.listing().splitlines()
    assert listing[0].endswith("start:")
    assert f"{PROGRAM.labels['rdmsr_at']:04x}  0f 32" in PROGRAM.listing()
    assert any(line.endswith("rdmsr") for line in listing)


def test_a_short_jump_out_of_range_is_refused() -> None:
    a = Asm16(0)
    a.jump8(0xEB, "far", "jmp far")
    a.op(bytes(200), "nops")
    a.label("far")
    with pytest.raises(UsageError, match="must be short"):
        a.build()


def test_labels_must_be_defined_exactly_once() -> None:
    a = Asm16(0)
    a.jump8(0xEB, "nowhere", "jmp nowhere")
    with pytest.raises(UsageError, match="must be defined"):
        a.build()
    b = Asm16(0)
    b.label("x")
    b.label("x")
    with pytest.raises(UsageError, match="defined once"):
        b.build()

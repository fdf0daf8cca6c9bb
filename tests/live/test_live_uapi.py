"""The ctypes mirrors and ioctl numbers agree with the real kernel headers, compiled by gcc.

A C program prints sizeof/offsetof of every mirrored field and every constant the
live layer uses; the test compares each with the Python side.  Skips (saying
why) where gcc or the KVM uapi headers are missing.
"""

from __future__ import annotations

import ctypes
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from msrvirt.arch.kvm import (
    KVM_MSR_FILTER_DEFAULT_DENY,
    KVM_MSR_FILTER_MAX_BITMAP_SIZE,
    KVM_MSR_FILTER_MAX_RANGES,
    KVM_MSR_FILTER_READ,
    KVM_MSR_FILTER_WRITE,
    ExitReason,
)
from msrvirt.live import uapi
from msrvirt.live.exits import InternalSuberror
from msrvirt.policy.filter import (
    KVM_MSR_FILTER_RANGE_SIZE,
    KVM_MSR_FILTER_SIZE,
    FilterRange,
    MsrFilter,
)

HEADER = Path("/usr/include/linux/kvm.h")

# Python mirror -> C struct name.
STRUCTS: dict[type[ctypes.Structure], str] = {
    uapi.KvmRegs: "kvm_regs",
    uapi.KvmSegment: "kvm_segment",
    uapi.KvmDtable: "kvm_dtable",
    uapi.KvmSregs: "kvm_sregs",
    uapi.KvmEnableCap: "kvm_enable_cap",
    uapi.KvmCpuidEntry2: "kvm_cpuid_entry2",
    uapi.KvmCpuid2: "kvm_cpuid2",
    uapi.KvmMsrEntry: "kvm_msr_entry",
    uapi.KvmMsrs: "kvm_msrs",
    uapi.KvmMsrList: "kvm_msr_list",
    uapi.KvmUserspaceMemoryRegion: "kvm_userspace_memory_region",
    uapi.KvmRun: "kvm_run",
}


def expected() -> dict[str, int]:
    """Every C expression to check, with the value the Python side says it has."""
    out: dict[str, int] = {}
    for py, c in STRUCTS.items():
        out[f"sizeof(struct {c})"] = ctypes.sizeof(py)
        for name, _type in py._fields_:
            if py is uapi.KvmRun and name == "exit":
                continue
            out[f"offsetof(struct {c}, {name})"] = getattr(py, name).offset
    # The exit union is anonymous in C: its members are named directly on struct kvm_run.
    out["offsetof(struct kvm_run, padding)"] = uapi.KVM_RUN_EXIT_OFFSET
    for member, mtype in uapi.KvmRunExit._fields_:
        if member == "padding":
            continue
        for name, _type in mtype._fields_:
            out[f"offsetof(struct kvm_run, {member}.{name})"] = (
                uapi.KVM_RUN_EXIT_OFFSET + getattr(mtype, name).offset)
        out[f"sizeof(((struct kvm_run *)0)->{member})"] = ctypes.sizeof(mtype)
    out["sizeof(struct kvm_msr_filter)"] = KVM_MSR_FILTER_SIZE
    out["sizeof(struct kvm_msr_filter_range)"] = KVM_MSR_FILTER_RANGE_SIZE
    out["offsetof(struct kvm_msr_filter, ranges)"] = 8
    for name, off in (("flags", 0), ("nmsrs", 4), ("base", 8), ("bitmap", 16)):
        out[f"offsetof(struct kvm_msr_filter_range, {name})"] = off
    for request in uapi.Ioctl:
        out[request.name] = request.value
    for cap in uapi.Cap:
        out[cap.uapi_name] = cap.value
    for kind in uapi.ExitKind:
        out[f"KVM_EXIT_{kind.name}"] = kind.value
    for sub in InternalSuberror:
        out[f"KVM_INTERNAL_ERROR_{sub.name}"] = sub.value
    for reason in (ExitReason.INVAL, ExitReason.UNKNOWN, ExitReason.FILTER):
        out[f"KVM_MSR_EXIT_REASON_{reason.name}"] = reason.value
    out.update({
        "KVM_API_VERSION": uapi.KVM_API_VERSION,
        "KVM_CPUID_FLAG_SIGNIFCANT_INDEX": uapi.KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
        "KVM_EXIT_IO_IN": uapi.KVM_EXIT_IO_IN,
        "KVM_EXIT_IO_OUT": uapi.KVM_EXIT_IO_OUT,
        "KVM_NR_INTERRUPTS": uapi.KVM_NR_INTERRUPTS,
        "SYNC_REGS_SIZE_BYTES": uapi.SYNC_REGS_SIZE_BYTES,
        "KVMIO": uapi.KVMIO,
        "KVM_MSR_FILTER_MAX_RANGES": KVM_MSR_FILTER_MAX_RANGES,
        "KVM_MSR_FILTER_MAX_BITMAP_SIZE": KVM_MSR_FILTER_MAX_BITMAP_SIZE,
        "KVM_MSR_FILTER_READ": KVM_MSR_FILTER_READ,
        "KVM_MSR_FILTER_WRITE": KVM_MSR_FILTER_WRITE,
        "KVM_MSR_FILTER_DEFAULT_DENY": KVM_MSR_FILTER_DEFAULT_DENY,
    })
    return out


@pytest.fixture(scope="module")
def from_headers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """Compile and run the C program; skip with the reason if that is not possible here."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed: cannot compile the header layout check")
    if not HEADER.exists():
        pytest.skip(f"{HEADER} is missing (install the kernel uapi headers, linux-libc-dev)")
    names = list(expected())
    lines = "\n".join(
        f'    printf("%llu\\n", (unsigned long long)({name}));' for name in names)
    src = (
        "#include <stddef.h>\n#include <stdio.h>\n#include <linux/kvm.h>\n"
        f"int main(void) {{\n{lines}\n    return 0;\n}}\n"
    )
    folder = tmp_path_factory.mktemp("uapi")
    (folder / "layout.c").write_text(src)
    binary = folder / "layout"
    subprocess.run([gcc, "-o", str(binary), str(folder / "layout.c")], check=True,
                   capture_output=True)
    printed = subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout
    values = [int(v) for v in printed.split()]
    assert len(values) == len(names)
    return dict(zip(names, values, strict=True))


@pytest.mark.parametrize("name", list(expected()))
def test_the_python_mirror_matches_the_kernel_header(
        name: str, from_headers: dict[str, int]) -> None:
    assert expected()[name] == from_headers[name]


def test_the_documented_sizes_hold() -> None:
    sizes = {
        uapi.KvmRegs: 144, uapi.KvmSregs: 312, uapi.KvmEnableCap: 104,
        uapi.KvmCpuidEntry2: 40, uapi.KvmCpuid2: 8, uapi.KvmMsrEntry: 16, uapi.KvmMsrs: 8,
        uapi.KvmUserspaceMemoryRegion: 32,
    }
    for struct_type, size in sizes.items():
        assert ctypes.sizeof(struct_type) == size, struct_type.__name__
    assert uapi.KVM_RUN_EXIT_OFFSET == 32
    msr = uapi.ExitMsr
    assert (msr.error.offset, msr.reason.offset, msr.index.offset, msr.data.offset) == (
        0, 8, 12, 16)
    assert KVM_MSR_FILTER_SIZE == 392 and KVM_MSR_FILTER_RANGE_SIZE == 24


def test_filter_bytes_put_each_range_field_at_its_header_offset() -> None:
    flt = MsrFilter(flags=1, ranges=(
        FilterRange(flags=3, base=0xC0000000, nmsrs=7, allow_bits=b"\x05" + bytes(7)),))
    raw = flt.to_kvm_bytes([0x1122334455667788])
    assert struct.unpack_from("<I", raw, 0) == (1,)
    assert struct.unpack_from("<IIIxxxxQ", raw, 8) == (3, 7, 0xC0000000, 0x1122334455667788)
    assert raw[8 + 24:] == bytes(392 - 32)


@pytest.mark.parametrize(("direction", "nr", "size", "value"), [
    # Worked examples of asm-generic/ioctl.h: dir << 30 | size << 16 | type << 8 | nr.
    (uapi.IocDir.NONE, 0x80, 0, 0xAE80),
    (uapi.IocDir.WRITE, 0xC6, 392, 0x4188AEC6),
    (uapi.IocDir.READ_WRITE, 0x88, 8, 0xC008AE88),
    (uapi.IocDir.READ, 0x81, 144, 0x8090AE81),
], ids=["KVM_RUN has no argument", "KVM_X86_SET_MSR_FILTER writes 392 bytes",
        "KVM_GET_MSRS copies 8 bytes both ways", "KVM_GET_REGS reads 144 bytes"])
def test_ioc_encodes_direction_size_type_and_number(
        direction: uapi.IocDir, nr: int, size: int, value: int) -> None:
    assert uapi.ioc(direction, uapi.KVMIO, nr, size) == value


def test_ioc_refuses_a_size_that_does_not_fit_14_bits() -> None:
    with pytest.raises(ValueError, match="14 bits"):
        uapi.ioc(uapi.IocDir.READ, uapi.KVMIO, 1, 1 << 14)


def test_variable_length_structs_have_room_for_their_entries() -> None:
    assert ctypes.sizeof(uapi.cpuid2_type(3)) == 8 + 3 * 40
    assert ctypes.sizeof(uapi.msrs_type(2)) == 8 + 2 * 16
    assert ctypes.sizeof(uapi.msr_list_type(5)) == 4 + 5 * 4


def test_no_request_number_is_written_as_hex_in_the_source() -> None:
    source = Path(uapi.__file__).read_text().lower()
    for request in uapi.Ioctl:
        assert f"{request.value:#x}" not in source, request.name

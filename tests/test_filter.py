"""The KVM MSR filter: decision, validation (with KVM's errno), exact bytes, file format.

Cases come from kvm-msr-facts.md section 4, Documentation/virt/kvm/api.rst and
x86.c kvm_msr_allowed / kvm_vm_ioctl_set_msr_filter.
"""

from __future__ import annotations

import errno
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from msrvirt.arch.kvm import Access
from msrvirt.errors import FilterError, UsageError
from msrvirt.policy.filter import (
    KVM_MSR_FILTER_RANGE_SIZE,
    KVM_MSR_FILTER_SIZE,
    NO_FILTER,
    FilterRange,
    MsrFilter,
    bitmap_size_bytes,
)

R, W = Access.R, Access.W
READ, WRITE = 1, 2


def rng(flags: int, base: int, nmsrs: int, allowed: set[int] | None = None) -> FilterRange:
    """A range whose listed offsets are allowed (None: all allowed)."""
    size = bitmap_size_bytes(nmsrs)
    bits = bytearray(size)
    for i in range(nmsrs) if allowed is None else allowed:
        bits[i >> 3] |= 1 << (i & 7)
    return FilterRange(flags=flags, base=base, nmsrs=nmsrs, allow_bits=bytes(bits))


def flt(*ranges: FilterRange, deny: bool = False) -> MsrFilter:
    return MsrFilter(flags=1 if deny else 0, ranges=ranges)


DENY_1CC_WRITE = flt(rng(WRITE, 0x1CC, 9, allowed={1, 2, 3, 4, 5, 6, 7}))


@pytest.mark.parametrize(("name", "f", "msr", "access", "allowed"), [
    ("no filter allows everything", NO_FILTER, 0x1CC, W, True),
    ("write-denying range denies the write", DENY_1CC_WRITE, 0x1CC, W, False),
    ("write-only range leaves the read to the default", DENY_1CC_WRITE, 0x1CC, R, True),
    ("bit 1 of the range allows its MSR", DENY_1CC_WRITE, 0x1CD, W, True),
    ("the last MSR of the range is bit 8", DENY_1CC_WRITE, 0x1D4, W, False),
    ("an MSR past the range takes the default", DENY_1CC_WRITE, 0x1D5, W, True),
    ("default deny denies an uncovered MSR", flt(rng(READ, 0, 1), deny=True), 0x10, R, False),
    ("default deny: a covering range allows", flt(rng(READ, 0x10, 1), deny=True), 0x10, R, True),
    ("x2APIC MSRs are never filtered", flt(rng(READ | WRITE, 0x800, 256, set()), deny=True),
     0x808, R, True),
    ("x2APIC exemption ends at 0x8ff", flt(rng(READ, 0x900, 1, set())), 0x900, R, False),
    ("first matching range wins", flt(rng(READ, 0x10, 1, set()), rng(READ, 0x10, 1)),
     0x10, R, False),
    ("a range for the other direction does not match",
     flt(rng(WRITE, 0x10, 1, set()), rng(READ, 0x10, 1)), 0x10, R, True),
    ("an empty range is skipped", flt(rng(READ, 0x10, 0), rng(READ, 0x10, 1, set())),
     0x10, R, False),
    ("a range whose end wraps past 2^32 covers nothing (u32 end)",
     flt(rng(READ, 0xFFFFFFFF, 2, set())), 0xFFFFFFFF, R, True),
])
def test_filter_decision(name: str, f: MsrFilter, msr: int, access: Access, allowed: bool) -> None:
    assert f.allows(msr, access) is allowed


@pytest.mark.parametrize(("name", "f", "range_index"), [
    ("filter flags outside DEFAULT_DENY", MsrFilter(flags=2, ranges=(rng(READ, 0, 1),)), None),
    ("DEFAULT_DENY with every range empty", flt(rng(READ, 0, 0), deny=True), None),
    ("DEFAULT_DENY with no ranges", flt(deny=True), None),
    ("range flags outside READ|WRITE", flt(rng(READ, 0, 1), rng(4, 0, 1)), 1),
    ("a non-empty range with no flags", flt(rng(0, 0, 1)), 0),
    ("a bitmap larger than 0x600 bytes", flt(rng(READ, 0, 0x3000 + 1)), 0),
    ("the first bad range is the one reported", flt(rng(0, 0, 1), rng(7, 0, 1)), 0),
])
def test_kvm_rejects_with_einval(name: str, f: MsrFilter, range_index: int | None) -> None:
    with pytest.raises(FilterError) as info:
        f.validate()
    assert info.value.errno == errno.EINVAL and info.value.errno_name == "EINVAL"
    assert info.value.range_index == range_index
    assert str(info.value).startswith("EINVAL: ")


@pytest.mark.parametrize(("name", "f"), [
    ("no filter", NO_FILTER),
    ("DEFAULT_ALLOW with every range empty", flt(rng(READ, 0, 0))),
    ("bad flags on an empty range are ignored", flt(rng(7, 0, 0), rng(READ, 0, 1))),
    ("the largest bitmap, 0x3000 MSRs", flt(rng(READ | WRITE, 0, 0x3000))),
    ("sixteen ranges", flt(*(rng(READ, i * 0x10, 1) for i in range(16)))),
    ("overlapping ranges", flt(rng(READ, 0, 0x100), rng(READ, 0x80, 0x100))),
    ("x2APIC ranges", flt(rng(READ | WRITE, 0x800, 0x100, set()), deny=True)),
])
def test_kvm_accepts(name: str, f: MsrFilter) -> None:
    f.validate()


def test_seventeen_ranges_do_not_fit() -> None:
    with pytest.raises(FilterError):
        flt(*(rng(READ, i, 1) for i in range(17))).validate()


def test_struct_bytes_match_the_uapi_layout() -> None:
    f = flt(rng(READ, 0x1CC, 9), rng(WRITE, 0xC0000000, 64), deny=True)
    data = f.to_kvm_bytes([0x1000, 0x2000])
    assert len(data) == KVM_MSR_FILTER_SIZE == 392 and KVM_MSR_FILTER_RANGE_SIZE == 24
    assert struct.unpack_from("<I", data, 0) == (1,)
    assert struct.unpack_from("<IIIxxxxQ", data, 8) == (READ, 9, 0x1CC, 0x1000)
    assert struct.unpack_from("<IIIxxxxQ", data, 32) == (WRITE, 64, 0xC0000000, 0x2000)
    assert data[56:] == bytes(392 - 56)


ranges = st.builds(
    lambda flags, base, n, seed: rng(flags, base, n, {i for i in range(n) if (seed >> (i % 61)) & 1}),
    st.sampled_from([READ, WRITE, READ | WRITE]),
    st.one_of(st.integers(0, 0x2000), st.integers(0xC0000000, 0xC0002000),
              st.integers(0xFFFFFF00, 0xFFFFFFFF)),
    st.integers(0, 300),
    st.integers(0, 2**61),
)
filters = st.builds(lambda rs, deny: flt(*rs, deny=deny), st.lists(ranges, max_size=16),
                    st.booleans())


@given(filters)
def test_struct_bytes_round_trip(f: MsrFilter) -> None:
    memory = {0x10000 * (i + 1): r.allow_bits for i, r in enumerate(f.ranges)}
    data = f.to_kvm_bytes(list(memory))
    back = MsrFilter.from_kvm_bytes(data, lambda addr, size: memory[addr][:size])
    assert back == f


@given(filters)
def test_file_form_round_trips(f: MsrFilter) -> None:
    assert MsrFilter.from_obj(f.to_obj()) == f


def naive_allows(f: MsrFilter, msr: int, access: Access) -> bool:
    """kvm_msr_allowed written out the long way, from api.rst."""
    if 0x800 <= msr <= 0x8FF:
        return True
    packed = [r for r in f.ranges if r.nmsrs != 0]
    for r in packed:
        start, end = r.base, (r.base + r.nmsrs) % 2**32
        if start <= msr < end and r.flags & int(access):
            offset = msr - start
            return bool(r.allow_bits[offset // 8] & (1 << (offset % 8)))
    return not f.flags & 1


@given(filters, st.lists(st.tuples(st.integers(0, 0xFFFFFFFF) | st.integers(0, 0x2100),
                                   st.sampled_from([R, W])), min_size=1, max_size=50))
def test_decision_agrees_with_a_naive_reference(f: MsrFilter, probes: list[tuple[int, Access]]) -> None:
    for r in f.ranges:  # probe inside every range too
        probes.append((r.base, R))
        probes.append((min(r.base + r.nmsrs // 2, 0xFFFFFFFF), W))
    for msr, access in probes:
        assert f.allows(msr, access) == naive_allows(f, msr, access)


def test_file_form_with_a_deny_list() -> None:
    f = MsrFilter.from_obj({"default": "allow", "ranges": [
        {"flags": ["write"], "base": "0x1cc", "nmsrs": 9, "deny": ["fred_config", "0x1cc"]}]})
    assert not f.allows(0x1D4, W) and not f.allows(0x1CC, W)
    assert f.allows(0x1CD, W) and f.allows(0x1D4, R)


def test_file_form_with_an_allow_list_and_default_deny() -> None:
    f = MsrFilter.from_obj({"default": "deny", "ranges": [
        {"flags": ["read", "write"], "base": 0, "nmsrs": 0x2000, "allow": ["IA32_TSC", 0x1B]}]})
    assert f.allows(0x10, R) and f.allows(0x1B, W) and not f.allows(0x11, R)
    assert not f.allows(0xC0000100, R)


def test_file_form_with_a_bitmap() -> None:
    f = MsrFilter.from_obj({"ranges": [
        {"flags": ["read"], "base": "0x10", "nmsrs": 16, "bitmap": "fe7f"}]})
    assert not f.allows(0x10, R) and f.allows(0x11, R) and not f.allows(0x1F, R)


@pytest.mark.parametrize(("obj", "message"), [
    ({"default": "maybe"}, 'default must be "allow" or "deny", not \'maybe\''),
    ({"ranges": [{"flags": ["execute"], "base": 0, "nmsrs": 1, "deny": []}]},
     'flags must be "read" or "write"'),
    ({"ranges": [{"flags": ["read"], "base": 0, "nmsrs": 1}]}, "exactly one of bitmap, deny, allow"),
    ({"ranges": [{"flags": ["read"], "base": "0x1cc", "nmsrs": 2, "deny": ["fred_config"]}]},
     "entries must lie in [0x1cc, 0x1ce), not 0x1d4"),
    ({"ranges": [{"flags": ["read"], "base": 0, "nmsrs": 16, "bitmap": "ff"}]},
     "bitmap must cover nmsrs=16 (2 bytes), not 1 bytes"),
    ({"ranges": [{"flags": ["read"], "base": "zero", "nmsrs": 1, "deny": []}]},
     "range 0 base must be an integer, hex string or MSR name, not 'zero'"),
    ({"rangez": []}, "filter keys must be among"),
    ([], "a filter must be an object, not list"),
])
def test_bad_filter_files_name_the_bad_value(obj: object, message: str) -> None:
    with pytest.raises(UsageError) as info:
        MsrFilter.from_obj(obj)
    assert message in str(info.value)

"""VMX MSR bitmap and SVM MSRPM layouts (kvm-msr-facts.md section 1), round trips and diffs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msrvirt.arch.kvm import Access
from msrvirt.errors import UsageError
from msrvirt.policy.bitmap import MsrBitmap, SvmMsrpm, VmxMsrBitmap

R, W = Access.R, Access.W


# (msr, direction, byte offset, bit mask) straight from the section 1 table.
@pytest.mark.parametrize(("msr", "access", "byte", "mask"), [
    (0x00000000, R, 0x000, 0x01),
    (0x00001FFF, R, 0x3FF, 0x80),
    (0xC0000000, R, 0x400, 0x01),
    (0xC0001FFF, R, 0x7FF, 0x80),
    (0x00000000, W, 0x800, 0x01),
    (0x000001CC, W, 0x800 + 0x1CC // 8, 1 << (0x1CC % 8)),
    (0xC0000100, W, 0xC00 + 0x100 // 8, 1 << (0x100 % 8)),
    (0x000001CC, R, 0x1CC // 8, 1 << (0x1CC % 8)),
])
def test_vmx_bit_of_an_msr_is_where_the_sdm_puts_it(msr: int, access: Access, byte: int,
                                                    mask: int) -> None:
    page = VmxMsrBitmap.all_intercepted().with_intercept(msr, access, False).to_bytes()
    expected = bytearray(b"\xff" * 4096)
    expected[byte] &= ~mask & 0xFF
    assert page == bytes(expected)


@pytest.mark.parametrize(("msr", "access", "byte", "mask"), [
    (0x00000000, R, 0x000, 0x01),
    (0x00000000, W, 0x000, 0x02),
    (0x00000003, W, 0x000, 0x80),
    (0x000001CC, R, 0x1CC // 4, 1 << (2 * (0x1CC % 4))),
    (0xC0000000, R, 0x800, 0x01),
    (0xC0010000, W, 0x1000, 0x02),
    (0xC0011FFF, W, 0x17FF, 0x80),
])
def test_svm_bits_of_an_msr_are_where_the_apm_puts_them(msr: int, access: Access, byte: int,
                                                        mask: int) -> None:
    page = SvmMsrpm.all_intercepted().with_intercept(msr, access, False).to_bytes()
    expected = bytearray(b"\xff" * 8192)
    expected[byte] &= ~mask & 0xFF
    assert page == bytes(expected)


@pytest.mark.parametrize("cls", [VmxMsrBitmap, SvmMsrpm])
@pytest.mark.parametrize("msr", [0x2000, 0xBFFFFFFF, 0xC0002000, 0x4B564D00, 0xFFFFFFFF])
def test_msrs_outside_the_ranges_always_exit(cls: type[MsrBitmap], msr: int) -> None:
    cleared = cls.from_bytes(bytes(cls.SIZE))  # every bit clear
    assert cleared.intercepted(msr, R) and cleared.intercepted(msr, W)
    assert cls.all_intercepted().with_intercept(msr, Access.RW, False) == cls.all_intercepted()


def test_svm_reserved_quarter_is_not_an_msr() -> None:
    page = bytearray(b"\xff" * 8192)
    page[0x1800] = 0  # reserved range
    assert SvmMsrpm.from_bytes(bytes(page)).passthrough() == []
    assert SvmMsrpm.all_intercepted().diff(SvmMsrpm.from_bytes(bytes(page))) == []


def test_amd_k8_range_is_vmx_out_of_range() -> None:
    assert VmxMsrBitmap.bit_position(0xC0010000, R) is None
    assert SvmMsrpm.bit_position(0xC0010000, R) is not None


@pytest.mark.parametrize("cls", [VmxMsrBitmap, SvmMsrpm])
def test_a_page_of_the_wrong_size_is_refused(cls: type[MsrBitmap]) -> None:
    with pytest.raises(UsageError, match=f"must be {cls.SIZE} bytes, not 10"):
        cls.from_bytes(b"\x00" * 10)


vmx_msrs = st.one_of(st.integers(0, 0x1FFF), st.integers(0xC0000000, 0xC0001FFF))
svm_msrs = st.one_of(vmx_msrs, st.integers(0xC0010000, 0xC0011FFF))
any_msr = st.integers(0, 0xFFFFFFFF)
directions = st.sampled_from([R, W, Access.RW])


def pages(size: int) -> st.SearchStrategy[bytes]:
    """Pages of ``size`` bytes: a fill byte with sparse arbitrary bytes on top."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        page = bytearray([draw(st.sampled_from([0x00, 0xFF]))] * size)
        for pos, byte in draw(st.dictionaries(st.integers(0, size - 1), st.integers(0, 255),
                                              max_size=64)).items():
            page[pos] = byte
        return bytes(page)

    return build()


@settings(max_examples=30)
@given(pages(4096))
def test_vmx_page_round_trips_and_decodes_its_clear_bits(data: bytes) -> None:
    page = VmxMsrBitmap.from_bytes(data)
    assert page.to_bytes() == data
    assert VmxMsrBitmap.from_changes([(m, a, False) for m, a in page.passthrough()]) == page


@settings(max_examples=30)
@given(pages(8192))
def test_svm_page_round_trips_and_decodes_its_clear_bits(data: bytes) -> None:
    page = SvmMsrpm.from_bytes(data)
    assert page.to_bytes() == data
    rebuilt = SvmMsrpm.from_changes([(m, a, False) for m, a in page.passthrough()])
    # the reserved quarter (0x1800-0x1FFF) is not an MSR range: only it may differ
    assert rebuilt.to_bytes()[:0x1800] == data[:0x1800]


@pytest.mark.parametrize(("cls", "msrs"), [(VmxMsrBitmap, vmx_msrs), (SvmMsrpm, svm_msrs)])
def test_changes_agree_with_a_naive_set_of_intercepts(cls: type[MsrBitmap],
                                                      msrs: st.SearchStrategy[int]) -> None:
    @given(st.lists(st.tuples(st.one_of(msrs, any_msr), directions, st.booleans()), max_size=40),
           st.lists(st.tuples(any_msr, st.sampled_from([R, W])), max_size=40))
    def check(changes: list[tuple[int, Access, bool]], probes: list[tuple[int, Access]]) -> None:
        page = cls.from_changes(changes)
        naive: dict[tuple[int, Access], bool] = {}
        for msr, access, intercept in changes:
            for d in (R, W):
                if access & d and cls.bit_position(msr, d) is not None:
                    naive[(msr, d)] = intercept
        for msr, _access, _ in changes:
            for d in (R, W):
                assert page.intercepted(msr, d) == naive.get((msr, d), True)
        for msr, d in probes:
            assert page.intercepted(msr, d) == naive.get((msr, d), True)
        assert page.passthrough() == sorted(k for k, v in naive.items() if not v)

    check()


@given(st.lists(st.tuples(vmx_msrs, directions, st.booleans()), max_size=30),
       st.lists(st.tuples(vmx_msrs, directions, st.booleans()), max_size=30))
def test_diff_lists_exactly_the_bits_that_differ(a: list[tuple[int, Access, bool]],
                                                 b: list[tuple[int, Access, bool]]) -> None:
    before, after = VmxMsrBitmap.from_changes(a), VmxMsrBitmap.from_changes(b)
    rows = before.diff(after)
    for row in rows:
        assert before.intercepted(row.msr, row.access) == row.before_intercept
        assert after.intercepted(row.msr, row.access) == row.after_intercept
        assert row.before_intercept != row.after_intercept
    # applying the diff to `before` gives `after`
    patched = VmxMsrBitmap.from_changes(
        [(r.msr, r.access, r.after_intercept) for r in rows], base=before)
    assert patched == after
    assert [(r.msr, r.access) for r in after.diff(before)] == [(r.msr, r.access) for r in rows]

"""Nested VMX: vmcs02's MSR bitmap and L2's outcomes, against rules taken from the kernel.

The reference below is a transcript of Linux v6.19 (tree matankalina/linux-6.19.10-fork,
commit 094d869456d2bb93023e0ef9bf84a0758cbe8085):
- arch/x86/kvm/vmx/vmx.h __BUILD_VMX_MSR_BITMAP_HELPER: reads of 0x0-0x1fff at byte 0,
  of 0xc0000000-0xc0001fff at 0x400, writes at +0x800; bit n of a long array is byte n/8,
  bit n%8 (x86 is little-endian);
- vmx.c alloc_loaded_vmcs: the page starts as 0xff bytes;
- nested.c enable_x2apic_msr_intercepts, nested_vmx_disable_intercept_for_x2apic_msr,
  nested_vmx_set_msr_{read,write}_intercept and nested_vmx_prepare_msr_bitmap's list;
- FRED v9 patch 19 adds MSR_IA32_FRED_RSP0 (RW) to that list; fred-all adds the nine FRED
  MSRs of msr-index.h (0x1cc-0x1d4).
It is written from the C, word by word, and shares no code with msrvirt's merge.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msrvirt.arch.cpuid import Feature
from msrvirt.arch.hosts import host
from msrvirt.arch.kvm import Access, ExitReason, KvmRet
from msrvirt.arch.nested import MERGE_LISTS, merge_list
from msrvirt.arch.vmcs12 import CONTROL_BITS, FRED_CONTROLS, Control, control, encode, names
from msrvirt.errors import UnknownNameError, UsageError
from msrvirt.policy.bitmap import VmxMsrBitmap
from msrvirt.policy.decide import Initiator, MsrAccess
from msrvirt.policy.filter import NO_FILTER, FilterRange, MsrFilter, bitmap_from_bits
from msrvirt.policy.intercepts import compute_intercepts
from msrvirt.policy.nested import (
    INTERCEPT_ALL_L1,
    L1,
    NO_BITMAPS_L1,
    L1Kind,
    L2Decision,
    L2Outcome,
    Nested,
    decide_l2,
    explain_l2,
    kvm_l1,
    l1_from_obj,
    l1_host,
    merge_bitmaps,
    parse_controls,
    vmcs02_bitmap,
)
from msrvirt.policy.policies import policy
from msrvirt.policy.scenario import NO_EXITS, Runtime, Scenario

R, W, RW = Access.R, Access.W, Access.RW
F = Feature
C = Control

# -- the kernel, transcribed ---------------------------------------------------------------------

# nested_vmx_prepare_msr_bitmap's calls of nested_vmx_set_intercept_for_msr, in order.
KERNEL_UPSTREAM = [
    (0xC0000100, RW),  # MSR_FS_BASE
    (0xC0000101, RW),  # MSR_GS_BASE
    (0xC0000102, RW),  # MSR_KERNEL_GS_BASE
    (0x48, RW),  # MSR_IA32_SPEC_CTRL
    (0x49, W),  # MSR_IA32_PRED_CMD
    (0x10B, W),  # MSR_IA32_FLUSH_CMD
    (0xE8, R),  # MSR_IA32_APERF
    (0xE7, R),  # MSR_IA32_MPERF
    (0x6A0, RW),  # MSR_IA32_U_CET
    (0x6A2, RW),  # MSR_IA32_S_CET
    (0x6A4, RW),  # MSR_IA32_PL0_SSP
    (0x6A5, RW),  # MSR_IA32_PL1_SSP
    (0x6A6, RW),  # MSR_IA32_PL2_SSP
    (0x6A7, RW),  # MSR_IA32_PL3_SSP
]
KERNEL_LISTS = {
    "upstream": KERNEL_UPSTREAM,
    "v9": [*KERNEL_UPSTREAM, (0x1CC, RW)],  # + MSR_IA32_FRED_RSP0
    "fred-all": [*KERNEL_UPSTREAM, *((msr, RW) for msr in range(0x1CC, 0x1D5))],
}
APIC_TASKPRI, APIC_EOI, APIC_SELF_IPI = 0x80, 0xB0, 0x3F0  # apicdef.h


def x2apic_msr(reg: int) -> int:
    return 0x800 + (reg >> 4)  # lapic.h X2APIC_MSR


def _offset(msr: int, write: bool) -> int | None:
    base = 0x800 if write else 0
    if msr <= 0x1FFF:
        return base * 8 + msr
    if 0xC0000000 <= msr <= 0xC0001FFF:
        return (base + 0x400) * 8 + (msr & 0x1FFF)
    return None


def k_test(page: bytes | bytearray, msr: int, write: bool) -> bool:
    bit = _offset(msr, write)
    return True if bit is None else bool(page[bit // 8] >> (bit % 8) & 1)


def k_set(page: bytearray, msr: int, write: bool, value: bool) -> None:
    bit = _offset(msr, write)
    assert bit is not None
    if value:
        page[bit // 8] |= 1 << (bit % 8)
    else:
        page[bit // 8] &= ~(1 << (bit % 8)) & 0xFF


def kernel_vmcs02(vmcs01: bytes, l1: bytes, controls: Control, merge: str) -> bytes:
    """nested_vmx_prepare_msr_bitmap on a page that was allocated all ones."""
    l0 = bytearray(b"\xff" * 4096)
    long = 8  # BITS_PER_LONG / 8 on x86-64
    for msr in range(0x800, 0x900, 64):  # enable_x2apic_msr_intercepts
        word = msr // 64
        l0[word * long:(word + 1) * long] = b"\xff" * long
        word += 0x800 // long
        l0[word * long:(word + 1) * long] = b"\xff" * long
    if C.VIRTUALIZE_X2APIC_MODE in controls:
        if C.APIC_REGISTER_VIRT in controls:
            for msr in range(0x800, 0x900, 64):
                word = msr // 64
                l0[word * long:(word + 1) * long] = l1[word * long:(word + 1) * long]
        disable = [(x2apic_msr(APIC_TASKPRI), RW)]
        if C.VIRTUAL_INTR_DELIVERY in controls:
            disable += [(x2apic_msr(APIC_EOI), W), (x2apic_msr(APIC_SELF_IPI), W)]
        for msr, types in disable:  # nested_vmx_disable_intercept_for_x2apic_msr
            for write in (False, True):
                if types & (W if write else R) and not k_test(l1, msr, write):
                    k_set(l0, msr, write, False)
    for msr, types in KERNEL_LISTS[merge]:  # nested_vmx_set_intercept_for_msr
        for write in (False, True):
            if types & (W if write else R):
                k_set(l0, msr, write, k_test(vmcs01, msr, write) or k_test(l1, msr, write))
    return bytes(l0)


def differing_bits(a: bytes, b: bytes) -> list[tuple[str, str]]:
    """(MSR, direction) of every bit that differs between two pages."""
    if a == b:
        return []
    out = []
    for pos in range(4096 * 8):
        if (a[pos // 8] ^ b[pos // 8]) >> (pos % 8) & 1:
            decoded = VmxMsrBitmap.decode(pos)
            assert decoded is not None
            out.append((f"{decoded[0]:#x}", decoded[1].label))
    return out


# -- scenarios ------------------------------------------------------------------------------------

INTEL = host("intel-fred")
APIC = C.VIRTUALIZE_X2APIC_MODE | C.APIC_REGISTER_VIRT | C.VIRTUAL_INTR_DELIVERY
BITMAPS = C.USE_MSR_BITMAPS


def l0(*, drop: frozenset[Feature] = frozenset(), pol: str = "fred-v9", flt: MsrFilter = NO_FILTER,
       exits: ExitReason = NO_EXITS, runtime: Runtime | None = None) -> Scenario:
    return Scenario(host=INTEL, guest=INTEL.features - drop, policy=policy(pol), filter=flt,
                    exits=exits, runtime=runtime or Runtime())


def deny(msr: int, access: Access) -> MsrFilter:
    return MsrFilter(ranges=(FilterRange(flags=int(access), base=msr, nmsrs=1,
                                         allow_bits=bitmap_from_bits(1, [], set_listed=True)),))


def l1_page(*, passthrough: tuple[tuple[int, Access], ...] = (), default_pass: bool = False,
            intercept: tuple[tuple[int, Access], ...] = ()) -> VmxMsrBitmap:
    base = VmxMsrBitmap(intercept_bits=bytes(4096)) if default_pass else None
    return VmxMsrBitmap.from_changes([(m, a, False) for m, a in passthrough]
                                     + [(m, a, True) for m, a in intercept], base=base)


def file_l1(page: VmxMsrBitmap, controls: Control = BITMAPS) -> L1:
    return L1(kind=L1Kind.FILE, name="test-l1.json", controls=controls, bitmap=page)


PASS_ALL = file_l1(l1_page(default_pass=True))


def nested(l1: L1 = PASS_ALL, merge: str = "v9", **l0_args: object) -> Nested:
    return Nested(l0=l0(**l0_args), l1=l1, merge=merge_list(merge))  # type: ignore[arg-type]


# -- the merge lists are the kernel's ---------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(KERNEL_LISTS))
def test_merge_list_is_the_kernels(name: str) -> None:
    assert list(MERGE_LISTS[name].entries) == KERNEL_LISTS[name]


def test_unknown_merge_list_is_a_name_error() -> None:
    with pytest.raises(UnknownNameError, match="fred-some"):
        merge_list("fred-some")


# -- vmcs02, bit by bit -----------------------------------------------------------------------------


CONTROL_SETS = [BITMAPS | extra for extra in (
    C(0), C.VIRTUALIZE_X2APIC_MODE, C.VIRTUALIZE_X2APIC_MODE | C.APIC_REGISTER_VIRT,
    C.VIRTUALIZE_X2APIC_MODE | C.VIRTUAL_INTR_DELIVERY, APIC, C.APIC_REGISTER_VIRT)]
L0_CASES = {
    "fred-v9 L0, FRED L1": l0(),
    "fred-v9 L0, L1 without FRED or CET": l0(drop=frozenset({F.FRED, F.SHSTK, F.IBT})),
    "upstream L0": l0(pol="upstream"),
    "fred-minimal L0 after SPEC_CTRL and APERF go to L1": l0(pol="fred-minimal", runtime=Runtime(
        spec_ctrl_nonzero=True, aperfmperf_in_guest=True)),
    "fred-v9 L0 whose filter denies FRED_CONFIG writes": l0(flt=deny(0x1D4, W)),
}


def _kvm_l1s(s: Scenario) -> dict[str, L1]:
    caps = l1_host(s).features
    return {
        "KVM L1 (its policy), FRED L2": kvm_l1(s, s.policy, caps),
        "KVM L1, L2 without FRED": kvm_l1(s, s.policy, caps - {F.FRED}),
        "pass-everything L1": PASS_ALL,
        "intercept-all L1": INTERCEPT_ALL_L1,
        "L1 passing the x2APIC page but TPR": file_l1(l1_page(
            passthrough=tuple((m, RW) for m in range(0x800, 0x900) if m != 0x808))),
    }


@pytest.mark.parametrize("merge", sorted(KERNEL_LISTS))
@pytest.mark.parametrize("l0_case", sorted(L0_CASES))
def test_vmcs02_page_equals_the_kernels_merge_bit_by_bit(merge: str, l0_case: str) -> None:
    s = L0_CASES[l0_case]
    vmcs01 = compute_intercepts(s).bitmap
    assert vmcs01 is not None
    for l1_case, l1 in _kvm_l1s(s).items():
        for controls in CONTROL_SETS:
            n = Nested(l0=s, l1=replace(l1, controls=controls), merge=merge_list(merge))
            page = vmcs02_bitmap(n)
            assert page is not None
            expected = kernel_vmcs02(vmcs01.to_bytes(), l1.bitmap.to_bytes(), controls, merge)
            assert differing_bits(page.to_bytes(), expected) == [], (l1_case, names(controls))


# The bytes the merge reads: the x2APIC read and write words and each merged MSR's bytes.
_MERGE_BYTES = sorted({*range(0x100, 0x120), *range(0x900, 0x920), *(
    bit // 8 for merge in KERNEL_LISTS.values() for msr, _ in merge for write in (False, True)
    if (bit := _offset(msr, write)) is not None)})


@st.composite
def pages(draw: st.DrawFn) -> bytes:
    """A fill byte with arbitrary bytes on top, mostly where the merge reads."""
    page = bytearray([draw(st.sampled_from([0x00, 0xFF]))] * 4096)
    where = st.sampled_from(_MERGE_BYTES) | st.integers(0, 4095)
    for pos, byte in draw(st.dictionaries(where, st.integers(0, 255), max_size=48)).items():
        page[pos] = byte
    return bytes(page)


@settings(max_examples=80)
@given(vmcs01=pages(), l1=pages(),
       extra=st.sampled_from([C(0), *CONTROL_SETS]), merge=st.sampled_from(sorted(KERNEL_LISTS)))
def test_merge_of_any_two_pages_equals_the_kernels(vmcs01: bytes, l1: bytes, extra: Control,
                                                   merge: str) -> None:
    page = merge_bitmaps(VmxMsrBitmap(intercept_bits=vmcs01), VmxMsrBitmap(intercept_bits=l1),
                         BITMAPS | extra, merge_list(merge))
    assert differing_bits(page.to_bytes(), kernel_vmcs02(vmcs01, l1, BITMAPS | extra, merge)) == []


# Each case: (merge list, L0, L1's page, vmcs12 controls, MSR, direction, vmcs02 intercepts);
# the expectation is the kernel rule the id states.
TPR, EOI, SELF_IPI, X2APIC_ID = 0x808, 0x80B, 0x83F, 0x802
BIT_CASES = [
    ("FRED_RSP0 passes to L2 under v9 when vmcs01 and L1 both pass it",
     "v9", l0(), PASS_ALL, BITMAPS, 0x1CC, R, False),
    ("FRED_RSP0 stays intercepted under upstream, which does not merge it",
     "upstream", l0(), PASS_ALL, BITMAPS, 0x1CC, W, True),
    ("FRED_RSP1 stays intercepted under v9 though both levels pass it",
     "v9", l0(), PASS_ALL, BITMAPS, 0x1CD, R, True),
    ("FRED_RSP1 passes to L2 under fred-all when both levels pass it",
     "fred-all", l0(), PASS_ALL, BITMAPS, 0x1CD, R, False),
    ("FRED_CONFIG writes stay intercepted under fred-all when L0's filter denies them",
     "fred-all", l0(flt=deny(0x1D4, W)), PASS_ALL, BITMAPS, 0x1D4, W, True),
    ("FRED_CONFIG reads pass under fred-all when L0's filter denies only writes",
     "fred-all", l0(flt=deny(0x1D4, W)), PASS_ALL, BITMAPS, 0x1D4, R, False),
    ("FRED_STKLVLS under fred-all is intercepted when vmcs01 intercepts it (L1 lacks FRED)",
     "fred-all", l0(drop=frozenset({F.FRED})), PASS_ALL, BITMAPS, 0x1D0, R, True),
    ("FS_BASE is intercepted for L2 when L1 intercepts it",
     "upstream", l0(), file_l1(l1_page(default_pass=True, intercept=((0xC0000100, R),))),
     BITMAPS, 0xC0000100, R, True),
    ("FS_BASE writes pass when L1 intercepts only reads",
     "upstream", l0(), file_l1(l1_page(default_pass=True, intercept=((0xC0000100, R),))),
     BITMAPS, 0xC0000100, W, False),
    ("SPEC_CTRL is intercepted while vmcs01 intercepts it, though L1 passes it",
     "upstream", l0(), PASS_ALL, BITMAPS, 0x48, W, True),
    ("SPEC_CTRL passes after L1's first non-zero write when L1 passes it",
     "upstream", l0(runtime=Runtime(spec_ctrl_nonzero=True)), PASS_ALL, BITMAPS, 0x48, W, False),
    ("PRED_CMD reads are intercepted: only its writes are merged",
     "upstream", l0(), PASS_ALL, BITMAPS, 0x49, R, True),
    ("PRED_CMD writes pass when both levels pass them",
     "upstream", l0(), PASS_ALL, BITMAPS, 0x49, W, False),
    ("APERF writes are intercepted: only its reads are merged",
     "upstream", l0(runtime=Runtime(aperfmperf_in_guest=True)), PASS_ALL, BITMAPS, 0xE8, W, True),
    ("APERF reads pass when APERF/MPERF are in L1 and L1 passes them",
     "upstream", l0(runtime=Runtime(aperfmperf_in_guest=True)), PASS_ALL, BITMAPS, 0xE8, R, False),
    ("IA32_TSC reads are intercepted for L2: v6.19 does not merge them",
     "fred-all", l0(), PASS_ALL, BITMAPS, 0x10, R, True),
    ("SYSENTER_CS is intercepted for L2: not merged",
     "fred-all", l0(), PASS_ALL, BITMAPS, 0x174, W, True),
    ("PL0_SSP passes under upstream when L1 has shadow stacks and passes it",
     "upstream", l0(), PASS_ALL, BITMAPS, 0x6A4, W, False),
    ("x2APIC TPR passes under virtualize x2APIC mode when L1 passes it; vmcs01 is ignored",
     "v9", l0(), PASS_ALL, BITMAPS | C.VIRTUALIZE_X2APIC_MODE, TPR, R, False),
    ("x2APIC TPR is intercepted without virtualize x2APIC mode, whatever L1 says",
     "v9", l0(), PASS_ALL, BITMAPS | C.APIC_REGISTER_VIRT | C.VIRTUAL_INTR_DELIVERY, TPR, W, True),
    ("x2APIC TPR stays intercepted when L1 intercepts it",
     "v9", l0(), file_l1(l1_page(default_pass=True, intercept=((TPR, W),))),
     BITMAPS | APIC, TPR, W, True),
    ("x2APIC EOI writes pass with virtual-interrupt delivery when L1 passes them",
     "v9", l0(), PASS_ALL, BITMAPS | C.VIRTUALIZE_X2APIC_MODE | C.VIRTUAL_INTR_DELIVERY,
     EOI, W, False),
    ("x2APIC EOI writes are intercepted without virtual-interrupt delivery",
     "v9", l0(), PASS_ALL, BITMAPS | C.VIRTUALIZE_X2APIC_MODE | C.APIC_REGISTER_VIRT, EOI, W, True),
    ("x2APIC SELF_IPI writes pass with virtual-interrupt delivery when L1 passes them",
     "v9", l0(), PASS_ALL, BITMAPS | APIC, SELF_IPI, W, False),
    ("x2APIC ID reads pass with APIC-register virtualization when L1 passes them",
     "v9", l0(), PASS_ALL, BITMAPS | C.VIRTUALIZE_X2APIC_MODE | C.APIC_REGISTER_VIRT,
     X2APIC_ID, R, False),
    ("x2APIC ID reads are intercepted without APIC-register virtualization",
     "v9", l0(), PASS_ALL, BITMAPS | C.VIRTUALIZE_X2APIC_MODE | C.VIRTUAL_INTR_DELIVERY,
     X2APIC_ID, R, True),
    ("x2APIC ID writes are intercepted even when L1 passes them",
     "v9", l0(), PASS_ALL, BITMAPS | APIC, X2APIC_ID, W, True),
    ("x2APIC reads L1 intercepts stay intercepted under APIC-register virtualization",
     "v9", l0(), INTERCEPT_ALL_L1, BITMAPS | APIC, X2APIC_ID, R, True),
    ("x2APIC MSR 0x8ff reads take L1's bit under APIC-register virtualization",
     "v9", l0(), PASS_ALL, BITMAPS | APIC, 0x8FF, R, False),
    ("x2APIC ICR writes are intercepted: the merge has no rule for them",
     "v9", l0(), PASS_ALL, BITMAPS | APIC, 0x830, W, True),
]


@pytest.mark.parametrize(("merge", "s", "l1", "controls", "msr", "access", "expected"),
                         [c[1:] for c in BIT_CASES], ids=[c[0] for c in BIT_CASES])
def test_vmcs02_bit(merge: str, s: Scenario, l1: L1, controls: Control, msr: int, access: Access,
                    expected: bool) -> None:
    n = Nested(l0=s, l1=replace(l1, controls=controls), merge=merge_list(merge))
    page = vmcs02_bitmap(n)
    assert page is not None
    assert page.intercepted(msr, access) is expected
    assert decide_l2(n, MsrAccess(msr, access)).bit.intercept is expected


def test_no_bitmaps_in_vmcs12_means_no_vmcs02_page() -> None:
    assert vmcs02_bitmap(nested(NO_BITMAPS_L1)) is None
    assert vmcs02_bitmap(nested(replace(PASS_ALL, controls=C.VIRTUALIZE_X2APIC_MODE))) is None


# -- L2's outcomes ----------------------------------------------------------------------------------


def label(d: L2Decision) -> str:
    if d.outcome is L2Outcome.EXIT:
        assert d.exit_reason is not None and d.exit_reason.name is not None
        return f"exit {d.exit_reason.name.lower()}"
    return d.outcome.value


def kvm_nested(merge: str = "v9", *, l2_drop: frozenset[Feature] = frozenset(),
               **l0_args: object) -> Nested:
    s = l0(**l0_args)  # type: ignore[arg-type]
    return Nested(l0=s, l1=kvm_l1(s, s.policy, l1_host(s).features - l2_drop),
                  merge=merge_list(merge))


def rd(n: Nested, msr: int) -> L2Decision:
    return decide_l2(n, MsrAccess(msr, R))


def wr(n: Nested, msr: int, value: int = 0) -> L2Decision:
    return decide_l2(n, MsrAccess(msr, W, value))


ALL_EXITS = ExitReason.INVAL | ExitReason.UNKNOWN | ExitReason.FILTER
OUTCOME_CASES = [
    ("a FRED L2 of a KVM L1 reads FRED_RSP0 on the CPU under v9",
     rd(kvm_nested("v9"), 0x1CC), "passthrough"),
    ("a FRED L2 of a KVM L1 writing FRED_RSP1 under v9 is emulated by L0 without L1",
     wr(kvm_nested("v9"), 0x1CD, 0x1000), "emulated"),
    ("a FRED L2 of a KVM L1 writes FRED_RSP1 on the CPU under fred-all",
     wr(kvm_nested("fred-all"), 0x1CD, 0x1000), "passthrough"),
    ("a FRED L2 reading FRED_CONFIG under upstream is emulated by L0",
     rd(kvm_nested("upstream"), 0x1D4), "emulated"),
    ("an L2 without FRED reading FRED_RSP0 goes to L1, which intercepts it",
     rd(kvm_nested("v9", l2_drop=frozenset({F.FRED})), 0x1CC), "reflected"),
    ("an L2's SPEC_CTRL write goes to L1 while L1 intercepts it",
     wr(kvm_nested("upstream"), 0x48, 1), "reflected"),
    ("every access goes to L1 when vmcs12 does not use MSR bitmaps",
     rd(nested(NO_BITMAPS_L1), 0xC0000100), "reflected"),
    ("an index outside both ranges goes to L1 even when L1 passes everything",
     rd(nested(PASS_ALL), 0x4B564D00), "reflected"),
    ("L0's filter still denies L2 the FRED_CONFIG writes it denies L1 (filter exits)",
     wr(nested(PASS_ALL, "fred-all", flt=deny(0x1D4, W), exits=ExitReason.FILTER), 0x1D4),
     "exit filter"),
    ("L0's filter denial is a #GP in L2 without filter exits",
     wr(nested(PASS_ALL, "fred-all", flt=deny(0x1D4, W)), 0x1D4), "gp"),
    ("a FRED MSR is unknown to L0 when L1 lacks FRED: #GP in L2",
     rd(nested(PASS_ALL, "fred-all", drop=frozenset({F.FRED})), 0x1D0), "gp"),
    ("a FRED MSR is unknown to L0 when L1 lacks FRED: unknown exit when enabled",
     rd(nested(PASS_ALL, "fred-all", drop=frozenset({F.FRED}), exits=ALL_EXITS), 0x1D0),
     "exit unknown"),
    ("a passed-through FRED_RSP0 write with bits 5:0 set is a hardware #GP in L2",
     wr(kvm_nested("v9"), 0x1CC, 0x1001), "gp"),
    ("an x2APIC TPR read under virtualize x2APIC mode runs on L2's virtual APIC",
     rd(nested(replace(PASS_ALL, controls=BITMAPS | C.VIRTUALIZE_X2APIC_MODE)), TPR),
     "passthrough"),
    ("an x2APIC TPR read L1 passes without virtualize x2APIC mode reaches L1's APIC via L0",
     rd(nested(PASS_ALL, runtime=Runtime(x2apic_mode=True)), TPR), "emulated"),
    ("the same read fails in L0 while L1's APIC is not in x2APIC mode",
     rd(nested(PASS_ALL), TPR), "gp"),
]


@pytest.mark.parametrize(("d", "expected"), [c[1:] for c in OUTCOME_CASES],
                         ids=[c[0] for c in OUTCOME_CASES])
def test_l2_outcome(d: L2Decision, expected: str) -> None:
    assert label(d) == expected


def test_a_reflected_read_and_write_carry_exit_reasons_31_and_32() -> None:
    n = kvm_nested("v9", l2_drop=frozenset({F.FRED}))
    assert rd(n, 0x1CC).nested_exit_reason == 31
    assert wr(n, 0x1CC).nested_exit_reason == 32
    assert rd(kvm_nested("v9"), 0x1CC).nested_exit_reason is None


def test_the_chain_names_vmcs01_l1s_bitmap_and_the_merge_list() -> None:
    d = wr(kvm_nested("upstream"), 0x48, 1)
    text = "\n".join(d.reasons)
    assert "merge list upstream" in text and "vmcs01" in text and "L1's bitmap" in text
    assert "nested_vmx_set_intercept_for_msr" in text and "nested_vmx_exit_handled_msr" in text
    assert d.bit.vmcs01 is True and d.l1_intercept is True and d.l1_wants_exit is True


def test_l0s_part_is_the_single_level_emulation() -> None:
    d = wr(kvm_nested("v9"), 0x1CD, 0x1001)  # bits 5:0 set: KVM refuses the value
    assert d.outcome is L2Outcome.GP and d.kvm_ret is KvmRet.ERR and d.l1_wants_exit is False
    assert d.exit_reason is None and d.would_exit is ExitReason.INVAL
    assert "reserved bits" in d.summary


def test_host_initiated_accesses_are_not_l2s() -> None:
    with pytest.raises(UsageError, match="host-initiated"):
        decide_l2(nested(), MsrAccess(0x1CC, R, initiator=Initiator.HOST))


def test_explain_gives_a_read_and_a_valid_write() -> None:
    read, write = explain_l2(kvm_nested("fred-all"), 0x1D4)
    assert (read.outcome, write.outcome) == (L2Outcome.PASSTHROUGH, L2Outcome.PASSTHROUGH)


def test_nested_vmx_needs_a_vmx_host() -> None:
    amd = host("amd-zen5")
    with pytest.raises(UsageError, match="VMX hosts only, not on amd-zen5"):
        Nested(l0=Scenario(host=amd, guest=amd.features, policy=policy("svm-fred")),
               l1=PASS_ALL, merge=merge_list("v9"))


SWEEP = [*range(0x1C0, 0x1E0), *range(0x6A0, 0x6A9), 0x10, 0x48, 0x49, 0x10B, 0xE7, 0xE8,
         0x174, 0x175, 0x176, *range(0x800, 0x840), 0xC0000080, 0xC0000100, 0xC0000101,
         0xC0000102, 0xC0000103, 0x4B564D00]


@settings(max_examples=40)
@given(denied=st.lists(st.tuples(st.sampled_from(SWEEP), st.sampled_from([R, W])), max_size=8),
       merge=st.sampled_from(sorted(KERNEL_LISTS)), extra=st.sampled_from(CONTROL_SETS))
def test_a_direction_l0s_filter_denies_never_reaches_l2s_hardware(
        denied: list[tuple[int, Access]], merge: str, extra: Control) -> None:
    flt = MsrFilter(ranges=tuple(
        FilterRange(flags=int(a), base=m, nmsrs=1,
                    allow_bits=bitmap_from_bits(1, [], set_listed=True)) for m, a in denied))
    n = nested(replace(PASS_ALL, controls=extra), merge, flt=flt)
    for msr, access in denied:
        if not 0x800 <= msr <= 0x8FF:  # x2APIC MSRs cannot be filtered
            assert decide_l2(n, MsrAccess(msr, access)).outcome is not L2Outcome.PASSTHROUGH


@pytest.mark.parametrize("merge", sorted(KERNEL_LISTS))
def test_decisions_agree_with_the_page(merge: str) -> None:
    n = kvm_nested(merge)
    n = replace(n, l1=replace(n.l1, controls=n.l1.controls | APIC))
    page = vmcs02_bitmap(n)
    assert page is not None
    for msr in SWEEP:
        for access in (R, W):
            d = decide_l2(n, MsrAccess(msr, access))
            assert d.bit.intercept is page.intercepted(msr, access), (hex(msr), access)
            assert (d.outcome is L2Outcome.PASSTHROUGH) is not page.intercepted(msr, access)


# -- inputs ---------------------------------------------------------------------------------------------


def test_kvm_l1_sets_the_fred_controls_only_for_a_fred_l2() -> None:
    assert kvm_nested().l1.controls == BITMAPS | FRED_CONTROLS
    assert kvm_nested(l2_drop=frozenset({F.FRED})).l1.controls == BITMAPS


def test_kvm_l1_sees_what_l0_gives_it() -> None:
    n = kvm_nested(drop=frozenset({F.FRED}))
    assert F.FRED not in l1_host(n.l0).features
    assert n.l1.l2 is not None and F.FRED not in n.l1.l2.guest_caps


def test_control_encoding_sets_the_activation_bits() -> None:
    fields = encode(C.VIRTUALIZE_X2APIC_MODE | C.LOAD_HOST_FRED | C.USE_MSR_BITMAPS)
    assert fields[0x4002] == (1 << 28) | (1 << 31)  # USE_MSR_BITMAPS | ACTIVATE_SECONDARY
    assert fields[0x401E] == 1 << 4
    assert fields[0x400C] == 1 << 31 and fields[0x2044] == 1 << 1 and fields[0x4012] == 0
    assert encode(C(0)) == {0x2044: 0, 0x4002: 0, 0x400C: 0, 0x4012: 0, 0x401E: 0}


def test_controls_by_either_name_and_edits() -> None:
    assert control("CPU_BASED_USE_MSR_BITMAPS") is C.USE_MSR_BITMAPS
    assert control("Virtualize_X2APIC") is C.VIRTUALIZE_X2APIC_MODE
    assert parse_controls("virtual-interrupt-delivery,-msr-bitmaps", BITMAPS) == \
        C.VIRTUAL_INTR_DELIVERY
    assert parse_controls("none,load-guest-fred", BITMAPS) == C.LOAD_GUEST_FRED
    assert [c.name for c in CONTROL_BITS] == names(~C(0))
    with pytest.raises(UnknownNameError, match="apicv"):
        parse_controls("apicv", BITMAPS)


def test_l1_bitmap_file_passthrough_lists() -> None:
    l1 = l1_from_obj({"passthrough": {"rw": ["FS_BASE"], "read": ["0x10"], "write": [0x48]},
                      "controls": ["msr-bitmaps", "virtualize-x2apic"]}, "l1.json")
    assert l1.controls == BITMAPS | C.VIRTUALIZE_X2APIC_MODE
    assert l1.bitmap.passthrough() == [(0x10, R), (0x48, W), (0xC0000100, R), (0xC0000100, W)]


def test_l1_bitmap_file_default_passthrough_with_intercepts() -> None:
    l1 = l1_from_obj({"default": "passthrough", "intercept": {"write": ["IA32_FRED_CONFIG"]}},
                     "l1.toml")
    assert l1.controls == BITMAPS
    assert l1.bitmap.intercepted(0x1D4, W) and not l1.bitmap.intercepted(0x1D4, R)
    assert len(l1.bitmap.passthrough()) == 4 * 8192 - 1


@pytest.mark.parametrize(("obj", "message"), [
    ([], "must be an object"),
    ({"pass": {}}, "not 'pass'"),
    ({"default": "maybe"}, "intercept or passthrough"),
    ({"intercept": {"rw": ["FS_BASE"]}}, "list the exceptions under 'passthrough'"),
    ({"passthrough": ["FS_BASE"]}, "must map read/write/rw"),
    ({"passthrough": {"both": ["FS_BASE"]}}, "read, write or rw"),
    ({"passthrough": {"rw": "FS_BASE"}}, "must be a list"),
    ({"passthrough": {"rw": [1.5]}}, "names or indices"),
    ({"passthrough": {"rw": [0x40000000]}}, "outside the VMX bitmap's ranges"),
    ({"controls": "msr-bitmaps"}, "list of names"),
], ids=["a list", "an unknown key", "an unknown default", "the default's own key",
        "a list instead of directions", "an unknown direction", "a name instead of a list",
        "a float MSR", "an MSR outside the ranges", "controls as a string"])
def test_bad_l1_bitmap_objects(obj: object, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        l1_from_obj(obj, "bad.json")


def test_unknown_msr_name_in_an_l1_bitmap() -> None:
    with pytest.raises(UnknownNameError, match="FRED_RSP9"):
        l1_from_obj({"passthrough": {"rw": ["FRED_RSP9"]}}, "bad.json")

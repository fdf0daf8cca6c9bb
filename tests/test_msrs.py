"""The MSR table against the reference facts: every MSR they name is there, with their numbers."""

from __future__ import annotations

import pytest

from msrvirt.arch import msrs
from msrvirt.arch.cpuid import CPUID_BITS, Feature, Reg, feature
from msrvirt.errors import UnknownNameError

# (index, a name the reference uses) from kvm-msr-facts.md sections 3, 6, 8, 11,
# fred-arch-facts.md section 2, and the list of common architectural MSRs.
REFERENCE_MSRS = [
    (0x10, "IA32_TSC"), (0xC0000100, "FS_BASE"), (0xC0000101, "GS_BASE"),
    (0xC0000102, "KERNEL_GS_BASE"), (0x174, "SYSENTER_CS"), (0x175, "SYSENTER_ESP"),
    (0x176, "SYSENTER_EIP"), (0x660, "CORE_C1_RES"), (0x3FC, "CORE_C3_RESIDENCY"),
    (0x3FD, "CORE_C6_RESIDENCY"), (0x3FE, "CORE_C7_RESIDENCY"), (0xE8, "APERF"), (0xE7, "MPERF"),
    (0x570, "RTIT_CTL"), (0x1C4, "IA32_XFD"), (0x48, "IA32_SPEC_CTRL"), (0x1C5, "IA32_XFD_ERR"),
    (0x49, "IA32_PRED_CMD"), (0x10B, "IA32_FLUSH_CMD"), (0x6A4, "PL0_SSP"), (0x6A5, "PL1_SSP"),
    (0x6A6, "PL2_SSP"), (0x6A7, "PL3_SSP"), (0x6A0, "U_CET"), (0x6A2, "S_CET"),
    (0x1CC, "FRED_RSP0"), (0x1CD, "FRED_RSP1"), (0x1CE, "FRED_RSP2"), (0x1CF, "FRED_RSP3"),
    (0x1D0, "FRED_STKLVLS"), (0x1D1, "FRED_SSP1"), (0x1D2, "FRED_SSP2"), (0x1D3, "FRED_SSP3"),
    (0x1D4, "FRED_CONFIG"), (0x6A4, "IA32_FRED_SSP0"), (0x6A8, "INT_SSP_TAB"),
    (0xDA0, "IA32_XSS"), (0x1FC, "POWER_CTL"), (0xC0000084, "SYSCALL_MASK"),
    (0xC0000080, "EFER"), (0xC0000081, "STAR"), (0xC0000082, "LSTAR"), (0xC0000083, "CSTAR"),
    (0xC0000084, "SFMASK"), (0x277, "PAT"), (0x1B, "APIC_BASE"), (0x1A0, "MISC_ENABLE"),
    (0xC0000103, "TSC_AUX"), (0x2FF, "MTRR_DEF_TYPE"), (0xFE, "MTRRCAP"),
    *((0x4B564D00 + i, None) for i in range(8)),
]


@pytest.mark.parametrize(("index", "name"), REFERENCE_MSRS,
                         ids=[f"{i:#x} {n or ''}".strip() for i, n in REFERENCE_MSRS])
def test_reference_msr_is_in_the_table_under_its_name(index: int, name: str | None) -> None:
    row = msrs.lookup(index)
    assert row is not None
    if name is not None:
        assert msrs.resolve_index(name) == index


def test_table_is_sorted_and_unique() -> None:
    indices = [m.index for m in msrs.MSRS]
    assert indices == sorted(indices)
    assert len(set(indices)) == len(indices)


def test_every_name_and_alias_resolves_to_its_own_row() -> None:
    for row in msrs.MSRS:
        for name in row.names:
            assert msrs.resolve_index(name) == row.index, name


@pytest.mark.parametrize("text", ["0x1cc", "460", "IA32_FRED_RSP0", "fred_rsp0",
                                  "MSR_IA32_FRED_RSP0", "  Fred-Rsp0 ", "0X1CC"])
def test_forgiving_names_of_fred_rsp0(text: str) -> None:
    assert msrs.resolve_index(text) == 0x1CC


def test_fred_ssp0_is_pl0_ssp() -> None:
    assert msrs.resolve(0x6A4) is msrs.resolve("IA32_FRED_SSP0") is msrs.resolve("MSR_IA32_PL0_SSP")


def test_an_unknown_index_resolves_without_a_row() -> None:
    assert msrs.resolve_index("0x474f4f00") == 0x474F4F00
    assert msrs.lookup(0x474F4F00) is None


@pytest.mark.parametrize("text", ["FRED_RSP9", "", "0x1_0000_0000", "-1"])
def test_bad_msr_names_are_refused_with_the_name(text: str) -> None:
    with pytest.raises(UnknownNameError) as info:
        msrs.resolve_index(text)
    assert isinstance(info.value, KeyError)
    assert "MSR must be a known name" in str(info.value)


# kvm-msr-facts.md section 8: (MSR, guest encoding, host encoding)
VMCS_FRED = [
    ("IA32_FRED_CONFIG", 0x281A, 0x2C08), ("IA32_FRED_RSP1", 0x281C, 0x2C0A),
    ("IA32_FRED_RSP2", 0x281E, 0x2C0C), ("IA32_FRED_RSP3", 0x2820, 0x2C0E),
    ("IA32_FRED_STKLVLS", 0x2822, 0x2C10), ("IA32_FRED_SSP1", 0x2824, 0x2C12),
    ("IA32_FRED_SSP2", 0x2826, 0x2C14), ("IA32_FRED_SSP3", 0x2828, 0x2C16),
]


@pytest.mark.parametrize(("name", "guest", "host"), VMCS_FRED)
def test_fred_vmcs_fields_match_section_8(name: str, guest: int, host: int) -> None:
    row = msrs.resolve(name)
    assert row is not None and row.vmcs_guest is not None and row.vmcs_host is not None
    assert (row.vmcs_guest.encoding, row.vmcs_host.encoding) == (guest, host)


def test_no_vmcs_field_for_rsp0_or_ssp0() -> None:
    for name in ("FRED_RSP0", "PL0_SSP"):
        row = msrs.resolve(name)
        assert row is not None and row.vmcs_guest is None and row.vmcs_host is None


# fred-arch-facts.md section 2 / kvm-msr-facts.md section 6: reserved-bit masks.
@pytest.mark.parametrize(("name", "reserved", "canonical"), [
    ("FRED_RSP0", 0x3F, True), ("FRED_RSP3", 0x3F, True), ("FRED_STKLVLS", 0, False),
    ("FRED_SSP1", 0x7, True), ("FRED_CONFIG", 0x834, True), ("PL0_SSP", 0x3, True),
    ("PL3_SSP", 0x3, True), ("INT_SSP_TAB", 0, True),
])
def test_write_rules_match_the_reference(name: str, reserved: int, canonical: bool) -> None:
    row = msrs.resolve(name)
    assert row is not None
    assert (row.write.reserved, row.write.canonical) == (reserved, canonical)


@pytest.mark.parametrize(("name", "leaf", "subleaf", "reg", "bit"), [
    ("fred", 7, 1, Reg.EAX, 17), ("lkgs", 7, 1, Reg.EAX, 18), ("shstk", 7, 0, Reg.ECX, 7),
    ("ibt", 7, 0, Reg.EDX, 20), ("xfd", 0xD, 1, Reg.EAX, 4), ("flush_l1d", 7, 0, Reg.EDX, 28),
    ("ibpb", 0x80000008, 0, Reg.EBX, 12), ("lm", 0x80000001, 0, Reg.EDX, 29),
    ("la57", 7, 0, Reg.ECX, 16),
])
def test_cpuid_bits_of_the_features_policies_need(
    name: str, leaf: int, subleaf: int, reg: Reg, bit: int
) -> None:
    b = feature(name).cpuid
    assert (b.leaf, b.subleaf, b.reg, b.bit) == (leaf, subleaf, reg, bit)


def test_no_two_features_share_a_cpuid_bit() -> None:
    places = [(b.leaf, b.subleaf, b.reg, b.bit) for b in CPUID_BITS.values()]
    assert len(places) == len(set(places))
    assert set(CPUID_BITS) == set(Feature)


# -- families: every index KVM routes to a family handler has a row (arch/msrs.py) -----------

@pytest.mark.parametrize(("first", "last", "what"), [
    (0x800, 0x8FF, "the x2APIC range (kvm_{get,set}_msr_common APIC_BASE_MSR ... + 0xff)"),
    (0x200, 0x26F, "the MTRR range (MTRRphysBase_MSR(0) ... MSR_MTRRfix4K_F8000)"),
    (0x400, 0x47F, "32 machine-check banks (KVM_MAX_MCE_BANKS x 4)"),
    (0x280, 0x29F, "32 MCi_CTL2 (MSR_IA32_MC0_CTL2 ... MCx_CTL2(KVM_MAX_MCE_BANKS) - 1)"),
    (0x480, 0x491, "VMX capabilities (KVM_FIRST_EMULATED_VMX_MSR ... KVM_LAST_EMULATED_VMX_MSR)"),
    (0x40000000, 0x4000009F, "Hyper-V GUEST_OS_ID ... SINT15 (kvm_hv_{get,set}_msr_common)"),
    (0x40000100, 0x40000105, "Hyper-V CRASH_P0 ... CRASH_CTL"),
    (0x400000B0, 0x400000B7, "Hyper-V STIMER0_CONFIG ... STIMER3_COUNT"),
], ids=lambda v: v if isinstance(v, str) else hex(v))
def test_a_family_range_has_a_row_for_every_index(first: int, last: int, what: str) -> None:
    missing = [hex(i) for i in range(first, last + 1) if msrs.lookup(i) is None]
    assert not missing, f"{what}: no row for {missing[:5]}"


@pytest.mark.parametrize(("name", "index"), [
    ("IA32_MC3_STATUS", 0x40D), ("IA32_MC31_MISC", 0x47F), ("IA32_MC7_CTL2", 0x287),
    ("IA32_MTRR_PHYSMASK3", 0x207), ("IA32_MTRRFIX16K_A0000", 0x259),
    ("IA32_MTRRFIX4K_F8000", 0x26F), ("X2APIC_ICR", 0x830), ("X2APIC_SELF_IPI", 0x83F),
    ("IA32_PERFEVTSEL5", 0x18B), ("IA32_FIXED_CTR1", 0x30A), ("F15H_PERF_CTR5", 0xC001020B),
    ("IA32_VMX_VMFUNC", 0x491), ("IA32_VMX_TRUE_ENTRY_CTLS", 0x490),
    ("HV_X64_MSR_STIMER3_COUNT", 0x400000B7), ("HV_X64_MSR_TSC_INVARIANT_CONTROL", 0x40000118),
    ("HV_X64_MSR_SYNDBG_OPTIONS", 0x400000FF), ("KVM_ASYNC_PF_ACK", 0x4B564D07),
], ids=lambda v: v if isinstance(v, str) else hex(v))
def test_family_members_have_the_indices_of_msr_index_h(name: str, index: int) -> None:
    # arch/x86/include/asm/msr-index.h, include/hyperv/hvgdk_mini.h, uapi kvm_para.h (v6.19)
    assert msrs.index_of(name) == index


# -- provenance: every rule cites the kernel file and function it follows ----------------------

def test_every_row_cites_the_kernel_at_a_pinned_tree() -> None:
    from msrvirt.arch.kernel import TREES
    for row in msrs.MSRS:
        assert row.kernel, f"{row} cites no kernel function"
        for c in row.kernel:
            assert c.tree in TREES and c.file.startswith(("arch/", "include/")) and c.functions
        for over in row.overrides:
            assert all(c.tree in TREES for c in over.kernel)


def test_every_builtin_intercept_rule_cites_the_kernel() -> None:
    from msrvirt.arch.kernel import TREES
    from msrvirt.policy.policies import POLICIES
    for pol in POLICIES.values():
        for rule in pol.rules:
            assert rule.kernel and all(c.tree in TREES for c in rule.kernel), rule.id


def test_docs_kernel_sources_names_every_tree() -> None:
    from pathlib import Path

    from msrvirt.arch.kernel import TREES
    text = (Path(__file__).parents[1] / "docs" / "kernel-sources.md").read_text()
    for tree in TREES:
        assert tree.repo in text and tree.ref in text, tree


# -- one place: MSR indices are written only in the MSR table ----------------------------------

_NAMED_THROUGH_THE_TABLE = ("policy/policies.py", "policy/intercepts.py", "policy/decide.py",
                            "policy/filter.py", "policy/scenario.py", "conform/predict.py",
                            "conform/corpus.py", "cost/units.py", "cost/model.py",
                            "live/conformance.py", "live/calibrate.py", "arch/hosts.py",
                            "arch/nested.py", "arch/vmcs12.py", "policy/nested.py",
                            "machine/model.py", "machine/nested.py", "machine/designs.py",
                            "review/kinds.py", "review/evidence.py")


@pytest.mark.parametrize("path", _NAMED_THROUGH_THE_TABLE)
def test_no_msr_index_is_written_outside_the_table(path: str) -> None:
    import ast
    from pathlib import Path

    source = (Path(msrs.__file__).parents[1] / path).read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, int) \
                and not isinstance(node.value, bool) and node.value >= 0x10:
            text = ast.get_source_segment(source, node) or ""
            if text.lower().startswith("0x") and msrs.lookup(node.value) is not None:
                raise AssertionError(f"{path}:{node.lineno} writes {text}, an index of"
                                     f" {msrs.display_name(node.value)}: name it through the table")

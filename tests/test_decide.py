"""Per-access outcomes (kvm-msr-facts.md sections 4-6, kvm-svm-common-pvm-facts.md 2.0-2d)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from msrvirt.arch.cpuid import Feature
from msrvirt.arch.hosts import host
from msrvirt.arch.kvm import Access, ExitReason, KvmRet
from msrvirt.policy.decide import Decision, Initiator, MsrAccess, Outcome, decide
from msrvirt.policy.emulate import canonical
from msrvirt.policy.filter import NO_FILTER, FilterRange, MsrFilter, bitmap_from_bits
from msrvirt.policy.policies import policy
from msrvirt.policy.scenario import NO_EXITS, Scenario

F = Feature
R, W = Access.R, Access.W
ALL_EXITS = ExitReason.INVAL | ExitReason.UNKNOWN | ExitReason.FILTER
NO_LA57 = replace(host("intel-fred"), name="intel-fred-4level",
                  features=host("intel-fred").features - {F.LA57})


def sc(host_name: str = "intel-fred", *, drop: frozenset[Feature] | set[Feature] = frozenset(),
       pol: str | None = None, flt: MsrFilter = NO_FILTER,
       exits: ExitReason = NO_EXITS) -> Scenario:
    h = NO_LA57 if host_name == NO_LA57.name else host(host_name)
    default = {"vmx": "fred-v9", "svm": "svm-fred", "pvm": "pvm"}[h.backend.value]
    return Scenario(host=h, guest=h.features - drop, policy=policy(pol or default), filter=flt,
                    exits=exits)


def deny(msr: int, access: Access, n: int = 1) -> MsrFilter:
    return MsrFilter(ranges=(FilterRange(flags=int(access), base=msr, nmsrs=n,
                                         allow_bits=bitmap_from_bits(n, [], set_listed=True)),))


def rd(s: Scenario, msr: int, host_initiated: bool = False) -> Decision:
    return decide(s, MsrAccess(msr=msr, access=R,
                               initiator=Initiator.HOST if host_initiated else Initiator.GUEST))


def wr(s: Scenario, msr: int, value: int, host_initiated: bool = False) -> Decision:
    return decide(s, MsrAccess(msr=msr, access=W, value=value,
                               initiator=Initiator.HOST if host_initiated else Initiator.GUEST))


def outcome(d: Decision) -> str:
    if d.outcome is Outcome.EXIT:
        assert d.exit_reason is not None and d.exit_reason.name is not None
        return f"exit {d.exit_reason.name.lower()}"
    return d.outcome.value


FRED_RSP0, FRED_SSP1, FRED_STKLVLS, FRED_CONFIG, PL0_SSP, U_CET = (
    0x1CC, 0x1D1, 0x1D0, 0x1D4, 0x6A4, 0x6A0)
NONCANON_48 = 0x0000_8000_0000_0000
NONCANON_57 = 0x0100_0000_0000_0000

CASES = [
    # the examples
    ("FRED_RSP0 read, guest lacks FRED, no exits -> gp", rd(sc(drop={F.FRED}), FRED_RSP0), "gp"),
    ("FRED_RSP0 read, guest lacks FRED, unknown exits -> exit unknown",
     rd(sc(drop={F.FRED}, exits=ExitReason.UNKNOWN), FRED_RSP0), "exit unknown"),
    ("FRED_CONFIG write, filter denies write, filter exits -> exit filter",
     wr(sc(flt=deny(FRED_CONFIG, W), exits=ExitReason.FILTER), FRED_CONFIG, 0), "exit filter"),
    ("FRED_CONFIG write, filter denies write, no exits -> gp",
     wr(sc(flt=deny(FRED_CONFIG, W)), FRED_CONFIG, 0), "gp"),
    ("FRED_CONFIG read, filter denies write -> passthrough",
     rd(sc(flt=deny(FRED_CONFIG, W), exits=ExitReason.FILTER), FRED_CONFIG), "passthrough"),
    # section 6 value checks, on hardware (passthrough) and in KVM (intercept-all)
    ("FRED_RSP0 write of an aligned canonical value, passthrough -> passthrough",
     wr(sc(), FRED_RSP0, 0xFFFF_8000_0000_0040), "passthrough"),
    ("FRED_RSP0 write with bits 5:0 set, passthrough -> hardware gp",
     wr(sc(), FRED_RSP0, 0x1001), "gp"),
    ("FRED_RSP0 write with bits 5:0 set, intercept-all, inval exits -> exit inval",
     wr(sc(pol="intercept-all", exits=ALL_EXITS), FRED_RSP0, 0x1001), "exit inval"),
    ("FRED_RSP0 write non-canonical at 57 bits, intercept-all -> gp",
     wr(sc(pol="intercept-all"), FRED_RSP0, NONCANON_57), "gp"),
    ("FRED_RSP0 write canonical at 57 but not 48 bits, LA57 host -> emulated",
     wr(sc(pol="intercept-all"), FRED_RSP0, NONCANON_48), "emulated"),
    ("FRED_RSP0 write canonical at 57 but not 48 bits, 4-level host -> gp",
     wr(sc(NO_LA57.name, pol="intercept-all"), FRED_RSP0, NONCANON_48), "gp"),
    ("FRED_SSP1 write with bit 2 set, intercept-all -> gp",
     wr(sc(pol="intercept-all"), FRED_SSP1, 0x1004), "gp"),
    ("FRED_SSP1 write 8-byte aligned, intercept-all -> emulated",
     wr(sc(pol="intercept-all"), FRED_SSP1, 0x1008), "emulated"),
    ("FRED_STKLVLS write of all ones, intercept-all -> emulated (never invalid)",
     wr(sc(pol="intercept-all"), FRED_STKLVLS, 2**64 - 1), "emulated"),
    *((f"FRED_CONFIG write with reserved bit {b}, intercept-all -> gp",
       wr(sc(pol="intercept-all"), FRED_CONFIG, 1 << b), "gp") for b in (2, 4, 5, 11)),
    ("FRED_CONFIG write with CSL, shadow-stack space, red zone and level, intercept-all -> emulated",
     wr(sc(pol="intercept-all"), FRED_CONFIG, 0xFFFF_8000_0000_1000 | 0x7CB), "emulated"),
    # PL0_SSP: SHSTK or FRED (v9 patch 10)
    ("PL0_SSP read, FRED guest without SHSTK -> emulated (fred_ssp0_fallback)",
     rd(sc(drop={F.SHSTK}), PL0_SSP), "emulated"),
    ("PL0_SSP write with bit 1 set, FRED guest without SHSTK -> gp",
     wr(sc(drop={F.SHSTK}), PL0_SSP, 0x1002), "gp"),
    ("PL0_SSP read, guest with neither SHSTK nor FRED, unknown exits -> exit unknown",
     rd(sc(drop={F.SHSTK, F.FRED}, exits=ALL_EXITS), PL0_SSP), "exit unknown"),
    ("PL0_SSP read, FRED guest without SHSTK under upstream (no FRED in KVM) -> gp",
     rd(sc(drop={F.SHSTK}, pol="upstream"), PL0_SSP), "gp"),
    ("PL1_SSP read, FRED guest without SHSTK -> gp (SHSTK only)",
     rd(sc(drop={F.SHSTK}), 0x6A5), "gp"),
    # CET control MSRs (section 6)
    ("U_CET write with bit 6 (reserved 9:6), intercept-all -> gp",
     wr(sc(pol="intercept-all"), U_CET, 1 << 6), "gp"),
    ("U_CET write SH_STK_EN, IBT-only guest, intercepted -> gp (KVM checks guest CPUID)",
     wr(sc(drop={F.SHSTK}, pol="intercept-all"), U_CET, 1), "gp"),
    ("U_CET write SH_STK_EN, IBT-only guest, passthrough -> passthrough (the CPU has SHSTK)",
     wr(sc(drop={F.SHSTK}), U_CET, 1), "passthrough"),
    ("U_CET write ENDBR_EN, SHSTK-only guest, intercepted -> gp",
     wr(sc(drop={F.IBT}, pol="intercept-all"), U_CET, 1 << 2), "gp"),
    ("U_CET write SUPPRESS and WAIT_ENDBR -> gp", wr(sc(pol="intercept-all"), U_CET, 0xC00), "gp"),
    ("U_CET write with legacy bitmap base bit 12 -> gp",
     wr(sc(pol="intercept-all"), U_CET, 1 << 12), "gp"),
    ("U_CET write with legacy bitmap base bit 14 -> emulated",
     wr(sc(pol="intercept-all"), U_CET, 1 << 14), "emulated"),
    # filter, exits and the unknown MSR (section 4, 5, 11)
    ("x2APIC TPR read, deny filter over 0x800-0x8ff, all exits -> exit inval (never filtered)",
     rd(sc(flt=deny(0x800, R, 256), exits=ALL_EXITS), 0x808), "exit inval"),
    ("x2APIC TPR read, no exits -> gp", rd(sc(), 0x808), "gp"),
    ("unknown MSR 0x474f4f00 read, unknown exits -> exit unknown",
     rd(sc(exits=ExitReason.UNKNOWN), 0x474F4F00), "exit unknown"),
    ("unknown MSR 0x474f4f00 read, filter denies it, filter exits -> exit filter",
     rd(sc(flt=deny(0x474F4F00, R), exits=ALL_EXITS), 0x474F4F00), "exit filter"),
    ("filtered read with only unknown exits enabled -> gp",
     rd(sc(flt=deny(0xDA0, R), exits=ExitReason.UNKNOWN), 0xDA0), "gp"),
    ("FLUSH_CMD write, guest lacks FLUSH_L1D, all exits -> exit inval",
     wr(sc(drop={F.FLUSH_L1D}, exits=ALL_EXITS), 0x10B, 1), "exit inval"),
    ("TSC_AUX read, guest lacks RDTSCP and RDPID, all exits -> exit inval",
     rd(sc(drop={F.RDTSCP, F.RDPID}, exits=ALL_EXITS), 0xC0000103), "exit inval"),
    ("TSC_AUX write of bit 32, Intel guest -> gp", wr(sc(), 0xC0000103, 1 << 32), "gp"),
    ("XSS read on pvm (no XSAVES), all exits -> exit inval",
     rd(sc("pvm", exits=ALL_EXITS), 0xDA0), "exit inval"),
    ("XSS write on pvm (no XSAVES), all exits -> exit unknown",
     wr(sc("pvm", exits=ALL_EXITS), 0xDA0, 0), "exit unknown"),
    ("FRED_RSP0 read on pvm (no FRED), all exits -> exit unknown",
     rd(sc("pvm", exits=ALL_EXITS), FRED_RSP0), "exit unknown"),
    ("EFER read on pvm -> emulated", rd(sc("pvm"), 0xC0000080), "emulated"),
    ("PAT write of type 2 in entry 0 -> gp", wr(sc(pol="intercept-all"), 0x277, 2), "gp"),
    ("PAT write of the reset value -> emulated",
     wr(sc(pol="intercept-all"), 0x277, 0x0007040600070406), "emulated"),
    ("RTIT_CTL read on svm -> gp (only VMX vendor code knows it)",
     rd(sc("amd-zen5"), 0x570), "gp"),
    # host-initiated (section 5: filter bypassed, advertised-MSR zero rule)
    ("host KVM_SET_MSRS of FRED_CONFIG, filter denies write -> emulated (filter bypassed)",
     wr(sc(flt=deny(FRED_CONFIG, W)), FRED_CONFIG, 0x1000, True), "emulated"),
    ("host KVM_GET_MSRS of FRED_RSP0, guest lacks FRED, KVM has FRED -> emulated (reads 0)",
     rd(sc(drop={F.FRED}), FRED_RSP0, True), "emulated"),
    ("host KVM_SET_MSRS of 0 to FRED_RSP0, guest lacks FRED -> emulated",
     wr(sc(drop={F.FRED}), FRED_RSP0, 0, True), "emulated"),
    ("host KVM_SET_MSRS of non-zero to FRED_RSP0, guest lacks FRED -> rejected",
     wr(sc(drop={F.FRED}), FRED_RSP0, 0x1000, True), "rejected"),
    ("host KVM_GET_MSRS of FRED_RSP0 on a host without FRED -> rejected (not advertised)",
     rd(sc("intel-spr"), FRED_RSP0, True), "rejected"),
    ("host KVM_SET_MSRS of a misaligned FRED_RSP0 -> rejected",
     wr(sc(), FRED_RSP0, 0x1001, True), "rejected"),
    ("host KVM_GET_MSRS of TSC_AUX, guest lacks RDTSCP -> emulated (gate is guest-only)",
     rd(sc(drop={F.RDTSCP, F.RDPID}), 0xC0000103, True), "emulated"),
]


@pytest.mark.parametrize(("d", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_outcome(d: Decision, expected: str) -> None:
    assert outcome(d) == expected


def test_host_read_of_an_advertised_unsupported_msr_returns_zero() -> None:
    d = rd(sc(drop={F.FRED}), FRED_RSP0, True)
    assert d.value == 0 and d.kvm_ret is KvmRet.OK


def test_passthrough_never_involves_kvm() -> None:
    d = rd(sc(), FRED_RSP0)
    assert not d.intercept and d.kvm_ret is None and d.exit_reason is None


def test_a_filtered_access_is_marked_filtered_whatever_the_exit_mask() -> None:
    for exits in (ExitReason(0), ExitReason.FILTER):
        d = wr(sc(flt=deny(FRED_CONFIG, W), exits=exits), FRED_CONFIG, 0)
        assert d.filtered and d.would_exit is ExitReason.FILTER and d.intercept
        assert d.exit_reason is (ExitReason.FILTER if exits else None)


def test_an_index_kvm_does_not_know_is_exactly_unsupported() -> None:
    # The table has a row for every index KVM v6.19 handles, so no row means UNSUPPORTED.
    d = rd(sc(exits=ALL_EXITS), 0x474F4F00)
    assert d.exact and d.kvm_ret is KvmRet.UNSUPPORTED and d.exit_reason is ExitReason.UNKNOWN
    assert rd(sc(), FRED_RSP0).exact


def test_ignore_msrs_makes_unknown_msrs_read_zero() -> None:
    s = sc()
    s = replace(s, host=replace(s.host, params=replace(s.host.params, ignore_msrs=True)))
    d = rd(s, 0x474F4F00)
    assert d.outcome is Outcome.EMULATED and d.value == 0


@pytest.mark.parametrize(("value", "bits", "expected"), [
    (0, 48, True), (0x0000_7FFF_FFFF_FFFF, 48, True), (0x0000_8000_0000_0000, 48, False),
    (0xFFFF_8000_0000_0000, 48, True), (0xFFFF_7FFF_FFFF_FFFF, 48, False),
    (0x00FF_FFFF_FFFF_FFFF, 57, True), (0x0100_0000_0000_0000, 57, False),
    (0xFF00_0000_0000_0000, 57, True), (2**64 - 1, 48, True),
])
def test_canonical(value: int, bits: int, expected: bool) -> None:
    assert canonical(value, bits) is expected


def test_every_decision_names_its_reasons() -> None:
    for _, d, _ in CASES:
        assert d.reasons and d.summary

"""Intercept policies: the reference's rules (kvm-msr-facts.md sections 2, 3, 10) as named cases,
and properties that hold for every host, guest and filter."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from msrvirt.arch.cpuid import Feature
from msrvirt.arch.hosts import HOSTS, host
from msrvirt.arch.kvm import Access, Backend
from msrvirt.errors import UsageError
from msrvirt.policy.filter import NO_FILTER, FilterRange, MsrFilter, bitmap_from_bits
from msrvirt.policy.intercepts import compute_intercepts
from msrvirt.policy.policies import POLICIES, policy
from msrvirt.policy.scenario import Runtime, Scenario

F = Feature
R, W = Access.R, Access.W
FRED_MSRS = [0x1CC, 0x1CD, 0x1CE, 0x1CF, 0x1D0, 0x1D1, 0x1D2, 0x1D3, 0x1D4]
PL0_SSP = 0x6A4


FRESH = Runtime()


def scenario(host_name: str = "intel-fred", *, drop: frozenset[Feature] | set[Feature] = frozenset(),
             pol: str = "fred-v9", flt: MsrFilter = NO_FILTER, runtime: Runtime = FRESH) -> Scenario:
    h = host(host_name)
    return Scenario(host=h, guest=h.features - drop, policy=policy(pol), filter=flt,
                    runtime=runtime)


def deny(msr: int, access: Access) -> MsrFilter:
    return MsrFilter(ranges=(FilterRange(flags=int(access), base=msr, nmsrs=1,
                                         allow_bits=bitmap_from_bits(1, [], set_listed=True)),))


def passes(s: Scenario, msr: int, access: Access) -> bool:
    return not compute_intercepts(s).intercepted(msr, access)


CASES = [
    # (id, scenario, msr, access, passthrough?)
    ("FRED_RSP0 read, intel-fred, FRED guest -> passthrough", scenario(), 0x1CC, R, True),
    ("FRED_CONFIG write, intel-fred, FRED guest -> passthrough", scenario(), 0x1D4, W, True),
    ("FRED_RSP0 read, guest lacks FRED -> intercept", scenario(drop={F.FRED}), 0x1CC, R, False),
    ("FRED_STKLVLS write, upstream policy -> intercept", scenario(pol="upstream"), 0x1D0, W, False),
    ("FRED_RSP0 read, host without FRED -> intercept (rule 14 does not run)",
     scenario("intel-spr"), 0x1CC, R, False),
    ("PL0_SSP, FRED guest with SHSTK -> passthrough (rule 12)", scenario(), PL0_SSP, R, True),
    ("PL0_SSP, FRED guest without SHSTK -> intercept (CET rule, not FRED)",
     scenario(drop={F.SHSTK}), PL0_SSP, W, False),
    ("PL0_SSP, intel-fred-nocet host -> intercept (rule 12 does not run)",
     scenario("intel-fred-nocet"), PL0_SSP, R, False),
    ("PL0_SSP under fred-v6, FRED guest without SHSTK -> passthrough",
     scenario(drop={F.SHSTK}, pol="fred-v6"), PL0_SSP, R, True),
    ("FRED_STKLVLS under fred-minimal -> intercept", scenario(pol="fred-minimal"), 0x1D0, R, False),
    ("FRED_CONFIG under fred-minimal -> intercept", scenario(pol="fred-minimal"), 0x1D4, W, False),
    ("FRED_RSP0 under fred-minimal -> passthrough", scenario(pol="fred-minimal"), 0x1CC, W, True),
    ("FRED_SSP3 under fred-minimal -> passthrough", scenario(pol="fred-minimal"), 0x1D3, R, True),
    ("FRED_RSP0 under intercept-all -> intercept", scenario(pol="intercept-all"), 0x1CC, R, False),
    ("FRED_CONFIG write, filter denies it -> intercept", scenario(flt=deny(0x1D4, W)), 0x1D4, W, False),
    ("FRED_CONFIG read, filter denies only writes -> passthrough",
     scenario(flt=deny(0x1D4, W)), 0x1D4, R, True),
    ("TSC read -> passthrough (rule 1)", scenario(), 0x10, R, True),
    ("TSC write -> intercept (rule 1 is read only)", scenario(), 0x10, W, False),
    ("KERNEL_GS_BASE write -> passthrough (rule 2)", scenario(), 0xC0000102, W, True),
    ("SYSENTER_EIP write -> passthrough (rule 3)", scenario(), 0x176, W, True),
    ("C6 residency read, C-states not in guest -> intercept", scenario(), 0x3FD, R, False),
    ("C6 residency read, C-states in guest -> passthrough",
     scenario(runtime=Runtime(cstates_in_guest=True)), 0x3FD, R, True),
    ("APERF read with aperfmperf in guest -> passthrough",
     scenario(runtime=Runtime(aperfmperf_in_guest=True)), 0xE8, R, True),
    ("XFD before the first non-zero write -> intercept", scenario(), 0x1C4, W, False),
    ("XFD after the first non-zero write -> passthrough",
     scenario(runtime=Runtime(xfd_no_write_intercept=True)), 0x1C4, W, True),
    ("SPEC_CTRL before the first non-zero write -> intercept", scenario(), 0x48, R, False),
    ("SPEC_CTRL after the first non-zero write -> passthrough",
     scenario(runtime=Runtime(spec_ctrl_nonzero=True)), 0x48, W, True),
    ("XFD_ERR read, guest has XFD -> passthrough", scenario(), 0x1C5, R, True),
    ("XFD_ERR write -> intercept (rule 9 is read only)", scenario(), 0x1C5, W, False),
    ("PRED_CMD write, guest has SPEC_CTRL -> passthrough", scenario(), 0x49, W, True),
    ("PRED_CMD read -> intercept", scenario(), 0x49, R, False),
    ("FLUSH_CMD write, guest lacks FLUSH_L1D -> intercept",
     scenario(drop={F.FLUSH_L1D}), 0x10B, W, False),
    ("U_CET, IBT-only guest -> passthrough (rule 13)", scenario(drop={F.SHSTK}), 0x6A0, R, True),
    ("U_CET, guest with neither IBT nor SHSTK -> intercept",
     scenario(drop={F.SHSTK, F.IBT}), 0x6A0, W, False),
    ("INT_SSP_TAB -> intercept (never passed through)", scenario(), 0x6A8, R, False),
    ("x2APIC TPR -> intercept (not in the recomputation)", scenario(), 0x808, R, False),
    ("FRED_RSP0 on amd-zen5 svm-fred without FRED hardware -> intercept",
     scenario("amd-zen5", pol="svm-fred"), 0x1CC, R, False),
    ("LSTAR on amd-zen5 -> passthrough (VMSAVE/VMLOAD)",
     scenario("amd-zen5", pol="svm-upstream"), 0xC0000082, W, True),
    ("SYSENTER_ESP on amd-zen5, AMD guest -> passthrough",
     scenario("amd-zen5", pol="svm-upstream"), 0x175, W, True),
    ("U_CET on amd-zen5 with SHSTK guest -> passthrough (svm CET rule)",
     scenario("amd-zen5", pol="svm-upstream"), 0x6A0, R, True),
    ("TSC read on amd-zen5 -> intercept (SVM keeps TSC intercepted)",
     scenario("amd-zen5", pol="svm-upstream"), 0x10, R, False),
    ("EFER on amd-zen5, not SEV-ES -> intercept", scenario("amd-zen5", pol="svm-upstream"),
     0xC0000080, W, False),
    ("EFER on amd-zen5, SEV-ES -> passthrough",
     scenario("amd-zen5", pol="svm-upstream", runtime=Runtime(sev_es=True)), 0xC0000080, W, True),
    ("every access on pvm exits", scenario("pvm", pol="pvm"), 0x10, R, False),
]


@pytest.mark.parametrize(("s", "msr", "access", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_intercept(s: Scenario, msr: int, access: Access, expected: bool) -> None:
    assert passes(s, msr, access) is expected


def test_svm_fred_passes_fred_through_on_a_fred_capable_amd_host() -> None:
    amd = host("amd-zen5")
    zen6 = replace(amd, name="amd-zen6", features=amd.features | {F.FRED, F.LKGS})
    s = Scenario(host=zen6, guest=zen6.features, policy=policy("svm-fred"))
    assert all(passes(s, m, a) for m in FRED_MSRS for a in (R, W))
    assert not passes(replace(s, policy=policy("svm-upstream")), 0x1CC, R)


def test_a_vmx_policy_on_an_svm_host_is_refused() -> None:
    with pytest.raises(UsageError, match="policy fred-v9 is for vmx hosts, not svm"):
        compute_intercepts(scenario("amd-zen5", pol="fred-v9"))


def test_every_bit_no_rule_touches_stays_set() -> None:
    s = scenario()
    ints = compute_intercepts(s)
    assert ints.bitmap is not None
    touched = {(m, d) for (m, d) in ints.settings}
    for msr, access in ints.bitmap.passthrough():
        assert (msr, access) in touched


# -- properties over random scenarios ---------------------------------------------------------

fred_hosts = [n for n, h in HOSTS.items() if h.backend is Backend.VMX]
features = st.frozensets(st.sampled_from(sorted(Feature)))
vmx_policies = [n for n, p in POLICIES.items() if Backend.VMX in p.backends]
msrs_of_interest = sorted({m for p in POLICIES.values() for r in p.rules for m in r.msrs})


@st.composite
def filters(draw: st.DrawFn) -> MsrFilter:
    out = []
    for _ in range(draw(st.integers(0, 4))):
        base = draw(st.sampled_from(msrs_of_interest))
        nmsrs = draw(st.integers(1, 16))
        allowed = draw(st.sets(st.integers(0, nmsrs - 1)))
        out.append(FilterRange(flags=draw(st.sampled_from([1, 2, 3])), base=base, nmsrs=nmsrs,
                               allow_bits=bitmap_from_bits(nmsrs, allowed, set_listed=True)))
    deny_default = draw(st.booleans()) and bool(out)
    return MsrFilter(flags=int(deny_default), ranges=tuple(out))


@st.composite
def scenarios(draw: st.DrawFn, policy_names: list[str]) -> Scenario:
    h = HOSTS[draw(st.sampled_from(fred_hosts))]
    guest = draw(st.sampled_from([h.features, h.features - {F.FRED}, h.features - {F.SHSTK}]))
    guest = guest ^ draw(features)
    return Scenario(host=h, guest=guest, policy=POLICIES[draw(st.sampled_from(policy_names))],
                    filter=draw(filters()),
                    runtime=Runtime(**{k: draw(st.booleans()) for k in Runtime.names()}))


@given(scenarios(vmx_policies))
def test_a_direction_the_filter_denies_is_never_passthrough(s: Scenario) -> None:
    ints = compute_intercepts(s)
    assert ints.bitmap is not None
    for msr, access in ints.bitmap.passthrough():
        assert s.filter.allows(msr, access)


@given(scenarios(["upstream"]))
def test_fred_v9_differs_from_upstream_exactly_in_the_fred_msrs(s: Scenario) -> None:
    up = compute_intercepts(s).bitmap
    v9 = compute_intercepts(replace(s, policy=policy("fred-v9"))).bitmap
    assert up is not None and v9 is not None
    changed = {(r.msr, r.access) for r in up.diff(v9)}
    both_fred = F.FRED in s.host.features and F.FRED in s.guest
    expected = {(m, a) for m in FRED_MSRS for a in (R, W) if s.filter.allows(m, a)} \
        if both_fred else set()
    assert changed == expected
    for row in up.diff(v9):  # v9 only ever removes intercepts
        assert row.before_intercept and not row.after_intercept


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_rule_msr_lies_inside_its_backends_bitmap(name: str) -> None:
    from msrvirt.policy.bitmap import SvmMsrpm, VmxMsrBitmap

    pol = POLICIES[name]
    pages = {Backend.VMX: VmxMsrBitmap, Backend.SVM: SvmMsrpm}
    for backend in pol.backends & set(pages):
        for rule in pol.rules:
            for msr in rule.msrs:
                assert pages[backend].bit_position(msr, R) is not None, (rule.id, hex(msr))


@given(scenarios(vmx_policies))
def test_the_clear_set_is_the_pages_clear_bits(s: Scenario) -> None:
    ints = compute_intercepts(s)
    assert ints.bitmap is not None
    assert sorted(ints.clear) == ints.bitmap.passthrough()

"""The claims of the seed patch and its review thread, each judged on msrvirt's evidence.

Claims are quoted or closely paraphrased from the seed (../shared/seed/, "KVM: VMX: Set
FRED MSR intercepts", v9 08/22) and the review positions in kvm-msr-facts.md section 10.
A claim holds when every piece of evidence that bears on it supports it, fails when any
contradicts it, and is undecided when msrvirt has nothing that decides it (the claim
says what would).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from msrvirt.arch.cpuid import Feature
from msrvirt.arch.kvm import Access
from msrvirt.arch.msrs import FRED_MSRS, display_name
from msrvirt.arch.vmcs import GUEST_FIELDS, HOST_FIELDS
from msrvirt.policy.bitmap import VmxMsrBitmap
from msrvirt.policy.decide import Initiator, MsrAccess, decide
from msrvirt.policy.intercepts import compute_intercepts
from msrvirt.report.check import counterexample_text
from msrvirt.review.evidence import (
    REVIEW_RATE,
    Evidence,
    Inputs,
    Kind,
    Verdict,
    bitmap_evidence,
    check_evidence,
    cost_row,
    scenario,
)

F = Feature
RSP0, RSP1, RSP2, RSP3, STKLVLS, SSP1, SSP2, SSP3, CONFIG = (m.index for m in FRED_MSRS)
PL0_SSP = 0x6A4
EIGHT = (RSP1, RSP2, RSP3, STKLVLS, SSP1, SSP2, SSP3, CONFIG)
FRED_MSRS_SET = frozenset(m.index for m in FRED_MSRS)
SEED = "seed v9 08/22 (commit message and comment)"
REVIEW = "review thread; kvm-msr-facts.md section 10"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimResult:
    """A claim, who made it and where, msrvirt's verdict with the reason, and the evidence."""

    id: str
    claim: str
    who: str
    source: str
    verdict: Verdict
    why: str
    evidence: tuple[Evidence, ...]


def _judge(evidence: list[Evidence], holds: str, fails: str) -> tuple[Verdict, str]:
    bearing = [e for e in evidence if e.supports is not None]
    if any(e.supports is False for e in bearing):
        return Verdict.FAILS, fails
    if bearing:
        return Verdict.HOLDS, holds
    return Verdict.UNDECIDED, "no evidence bears on it"


def _cx(inputs: Inputs, name: str) -> list[str]:
    return counterexample_text(inputs.checks[name])


def _planted(inputs: Inputs, name: str, why: str) -> Evidence:
    ev = check_evidence(inputs, name, _cx(inputs, name), expect_holds=False)
    return Evidence(kind=ev.kind, summary=f"{why}: {ev.summary}", supports=ev.supports,
                    detail=ev.detail)


def _holds(inputs: Inputs, name: str) -> Evidence:
    return check_evidence(inputs, name, (), expect_holds=True)


def _fact(summary: str, lines: tuple[str, ...] = (), supports: bool | None = True) -> Evidence:
    return Evidence(kind=Kind.FACT, summary=summary, supports=supports, detail=lines)


def _cost_lines(inputs: Inputs, msrs: tuple[int, ...], fred_only: bool = False) -> tuple[str, ...]:
    table = inputs.costs_fred_only if fred_only else inputs.costs
    out = []
    for pol, c in table.items():
        cells = []
        for m in msrs:
            exits, cpu = cost_row(c, m)
            cells.append(f"{display_name(m)} {exits:,.0f} exits/s ({cpu:.3f}% CPU)")
        out.append(f"{pol}: " + "; ".join(cells) + f"; total {c.exits_per_s:,.0f} exits/s"
                   f" ({c.cpu_percent:.3f}% CPU)")
    return tuple(out)


# -- the claims -----------------------------------------------------------------------------

def vmcs_fields_make_eight_safe(inputs: Inputs) -> ClaimResult:
    fields = [f"{display_name(m)}: guest field {GUEST_FIELDS[display_name(m)].encoding:#06x},"
              f" host field {HOST_FIELDS[display_name(m)].encoding:#06x}"
              for m in EIGHT if display_name(m) in GUEST_FIELDS and display_name(m) in HOST_FIELDS]
    rsp0_has_field = "IA32_FRED_RSP0" in GUEST_FIELDS or "IA32_FRED_RSP0" in HOST_FIELDS
    ev = [
        _fact("each of the eight has a VMCS guest and host field; FRED_RSP0 has neither",
              (*fields, "IA32_FRED_RSP0: no VMCS field"),
              supports=len(fields) == len(EIGHT) and not rsp0_has_field),
        bitmap_evidence("fred-v9 passes all eight through for a FRED guest (rule v9-14)",
                        scenario(), EIGHT, want_passthrough=True),
        _holds(inputs, "v9"),
        _planted(inputs, "rsp1-no-host-load",
                 "without the VMCS host load the host runs on a guest RSP1"),
    ]
    verdict, why = _judge(
        ev, "the VMCS switches them atomically with entry and exit, and v9 holds every"
        " invariant; take the host load away and host-safety breaks",
        "some evidence contradicts the claim")
    return ClaimResult(
        id="vmcs-eight-safe", who="Xin Li (author)", source=SEED,
        claim="The eight FRED MSRs RSP1-3, STKLVLS, SSP1-3 and CONFIG are all safe to pass"
        " through, because each has a corresponding host and guest field in the VMCS.",
        verdict=verdict, why=why, evidence=tuple(ev))


def rsp0_ssp0_user_only(inputs: Inputs) -> ClaimResult:
    ev = [
        _fact("FRED_RSP0 and PL0_SSP are consumed only by events taken in ring 3; RSP1-3,"
              " SSP1-3, STKLVLS and CONFIG by events at ring 0 (fred-arch-facts.md 3)",
              ("the model's host NMI/#DB after a VM exit consumes STKLVLS, CONFIG and RSP1,"
               " never RSP0 (machine/model.py observe)",)),
        _holds(inputs, "v9"),
    ]
    verdict, why = _judge(
        ev, "the checker delivers host NMIs and #DBs in every state KVM runs in, also right"
        " after VM exit with the guest's RSP0 and PL0_SSP in the MSRs, and host-safety holds"
        " (the Linux host has no supervisor shadow stacks, so host events use no SSP)",
        "the checker found a host event on a guest value")
    return ClaimResult(
        id="rsp0-ssp0-user-only", who="Xin Li (author)", source=SEED,
        claim="FRED_RSP0 and FRED_SSP0 (PL0_SSP) are used only for event delivery from user"
        " space, so KVM can run safely with the guest's values in them.",
        verdict=verdict, why=why, evidence=tuple(ev))


def host_rsp0_restored(inputs: Inputs) -> ClaimResult:
    ev = [
        _holds(inputs, "v9"),
        _planted(inputs, "no-rsp0-restore", "without fred_update_rsp0 on the way out"),
        _planted(inputs, "no-sync", "without fred_sync_rsp0 at vCPU put"),
    ]
    verdict, why = _judge(
        ev, "v9's put syncs the cache to the guest value, so the exit to user mode rewrites"
        " the host's RSP0; leave either step out and a host event from user mode uses a guest"
        " or stale stack", "the checker found the host returning with a wrong RSP0")
    return ClaimResult(
        id="host-rsp0-restored", who="Xin Li (author)", source=SEED,
        claim="Host FRED_RSP0 is restored upon returning to userspace.",
        verdict=verdict, why=why, evidence=tuple(ev))


def hpa_cache_invariant(inputs: Inputs) -> ClaimResult:
    ev = [
        _holds(inputs, "v9"),
        _planted(inputs, "no-sync", "a put that leaves the cache alone"),
        _fact("scope: the invariant is checked on CPUs without guest state loaded; between"
              " vmx_prepare_switch_to_guest and vCPU put the literal statement is false (cache ="
              " the vCPU thread's stack top, MSR = the guest's RSP0) but harmless, since the"
              " thread cannot reach user mode without the put (docs/check.md)", supports=None),
    ]
    verdict, why = _judge(
        ev, "holds wherever the host can return to user mode; the literal form is false only"
        " while guest state is loaded, where it cannot be observed",
        "the checker found a CPU with cache = stack top and a different RSP0")
    return ClaimResult(
        id="hpa-cache-invariant", who="H. Peter Anvin", source=REVIEW,
        claim="If the cached rsp0 equals the running task's initial stack pointer, the MSR must"
        " equal the cached value; anything that changes either from a context that may have"
        " interrupted the kernel must keep this true.",
        verdict=verdict, why=why, evidence=tuple(ev))


def hpa_invalidate(inputs: Inputs) -> ClaimResult:
    ev = [_holds(inputs, "invalidate-cache")]
    verdict, why = _judge(
        ev, "a put that sets the cache to 0 keeps every invariant, at the same state count"
        " as v9: the next exit to user mode rewrites RSP0 either way",
        "the checker breaks the invalidate-cache design")
    return ClaimResult(
        id="hpa-invalidate", who="H. Peter Anvin", source=REVIEW,
        claim="Setting the cached value to an invalid value (e.g. 0) should work; there should"
        " be no need to read the MSR for the cache.",
        verdict=verdict, why=why, evidence=tuple(ev))


def pl0_ssp_intercepted_without_cet(inputs: Inputs) -> ClaimResult:
    ev = [
        bitmap_evidence("PL0_SSP for a FRED guest without shadow stacks: intercepted",
                        scenario(drop=(F.SHSTK,)), (PL0_SSP,), want_passthrough=False),
        bitmap_evidence("PL0_SSP on a FRED host without CET: intercepted",
                        scenario("intel-fred-nocet"), (PL0_SSP,), want_passthrough=False),
        bitmap_evidence("PL0_SSP for a guest with shadow stacks: passed through (rule 12)",
                        scenario(), (PL0_SSP,), want_passthrough=True),
        _holds(inputs, "v9"),
        _planted(inputs, "pl0-ssp-passthrough", "v6's passthrough with FRED alone"),
    ]
    verdict, why = _judge(
        ev, "rule 12 keeps PL0_SSP intercepted unless the guest has SHSTK, so the hardware"
        " PL0_SSP never holds a guest value of a FRED-only guest (pl0-ssp-virtual); the v6"
        " policy breaks it in 4 events", "PL0_SSP leaks to hardware")
    return ClaimResult(
        id="pl0-ssp-intercept", who="Xin Li (author)", source=SEED,
        claim="Intercept PL0_SSP when CET shadow stack is not supported, regardless of FRED"
        " support, so the guest value remains fully virtual.",
        verdict=verdict, why=why, evidence=tuple(ev))


def pl0_ssp_no_change(inputs: Inputs) -> ClaimResult:
    rows = []
    same = True
    for host_name in ("intel-fred", "intel-fred-nocet", "intel-spr"):
        for drop in ((), (F.SHSTK,), (F.FRED,), (F.SHSTK, F.FRED)):
            a = compute_intercepts(scenario(host_name, drop=drop, policy_name="upstream")).bitmap
            b = compute_intercepts(scenario(host_name, drop=drop)).bitmap
            assert isinstance(a, VmxMsrBitmap) and isinstance(b, VmxMsrBitmap)
            diff = a.diff(b)
            changed = sorted({display_name(r.msr) for r in diff})
            same &= all(r.msr in FRED_MSRS_SET for r in diff)
            guest = "host" + "".join(f",-{f.value}" for f in drop)
            rows.append(f"{host_name}, guest {guest}: upstream -> fred-v9 changes"
                        f" {', '.join(changed) or 'nothing'}")
    ev = [Evidence(kind=Kind.BITMAP, supports=same, detail=tuple(rows),
                   summary="the bitmaps of upstream and fred-v9 differ only in FRED MSRs,"
                   " never in PL0_SSP, on every host and guest tried")]
    verdict, why = _judge(ev, "v9 leaves PL0_SSP to the existing CET rule (rule 12)",
                          "v9 changes PL0_SSP's intercept")
    return ClaimResult(
        id="pl0-ssp-no-change", who="Xin Li (author)", source=SEED,
        claim="The PL0_SSP behaviour is consistent with the current vmx_recalc_msr_intercepts(),"
        " so no change is needed to its interception logic.",
        verdict=verdict, why=why, evidence=tuple(ev))


def ssp_msrs_without_cet(inputs: Inputs) -> ClaimResult:
    nocet = scenario("intel-fred-nocet")
    ev = [
        bitmap_evidence("on a FRED host without CET, a FRED guest's FRED_SSP1-3 run on the"
                        " CPU", nocet, (SSP1, SSP2, SSP3), want_passthrough=True),
    ]
    d = decide(nocet, MsrAccess(PL0_SSP, Access.R))
    ev.append(Evidence(kind=Kind.BITMAP, supports=d.outcome.value == "emulated",
                       summary=f"PL0_SSP read by that guest: {d.outcome.value} ({d.summary})",
                       detail=d.reasons))
    c = inputs.conformance
    if c is not None:
        fred = [s for s in c.scenarios if "FRED" in s[0]]
        ev.append(Evidence(
            kind=Kind.CONFORMANCE, supports=None,
            summary=f"on this host ({c.host}), without FRED, every FRED MSR and PL0_SSP access"
            f" is refused as the model predicts: {sum(n for _, n, _ in fred)} operations,"
            f" {sum(b for _, _, b in fred)} disagreements"))
    verdict, why = _judge(
        ev, "with FRED enumerated the SSP MSRs stay accessible by RDMSR/WRMSR without CET (v9"
        " patch 10's gate: SHSTK or FRED for PL0_SSP)", "an SSP MSR is refused")
    return ClaimResult(
        id="ssp-msrs-without-cet", who="Xin Li (author)", source=SEED,
        claim="FRED SSP MSRs, including PL0_SSP, exist on any processor that enumerates FRED;"
        " without CET, FRED does not use them but RDMSR/WRMSR still work.",
        verdict=verdict, why=why, evidence=tuple(ev))


def hansen_rsp0_special(inputs: Inputs) -> ClaimResult:
    rsp0_all, _ = cost_row(inputs.costs["intercept-all"], RSP0)
    rsp1_all, _ = cost_row(inputs.costs["intercept-all"], RSP1)
    ev = [Evidence(
        kind=Kind.COST, supports=rsp0_all > 100 * max(rsp1_all, 1.0),
        summary=f"a Linux FRED guest at {REVIEW_RATE:,.0f} context switches/s writes FRED_RSP0"
        f" {rsp0_all:,.0f} times/s (each an exit if intercepted) and FRED_RSP1"
        f" {rsp1_all:,.3f} times/s",
        detail=_cost_lines(inputs, (RSP0, RSP1)))]
    verdict, why = _judge(
        ev, "RSP0 is rewritten on return to user mode whenever the task changed; RSP1-3 only"
        " at CPU bring-up, so RSP0's handling is what matters for performance",
        "RSP1-3 are written as often as RSP0")
    return ClaimResult(
        id="rsp0-special", who="Dave Hansen", source=REVIEW,
        claim="Is it worth making FRED_RSP0 special versus RSP1-3? Is it because RSP0 is"
        " rewritten all the time as CPUs switch between threads, while RSP1-3 are not?",
        verdict=verdict, why=why, evidence=tuple(ev))


def hpa_no_gap(inputs: Inputs) -> ClaimResult:
    ev = [
        _planted(inputs, "rsp1-no-host-load", "a gap for RSP1"),
        _planted(inputs, "host-fields-once", "stale host RSP1 after migration"),
        _holds(inputs, "v9"),
    ]
    verdict, why = _judge(
        ev, "RSP1-3/SSP1-3 are consumed by the host's own NMIs and #DBs, so any gap after VM"
        " exit (or a stale per-CPU host value) breaks host-safety; RSP0 can wait for the exit"
        " to user mode", "a gap went unnoticed")
    return ClaimResult(
        id="no-gap", who="H. Peter Anvin", source=REVIEW,
        claim="RSP1-3 and SSP1-3 are used by the kernel itself, so VMX must switch them with no"
        " gap; RSP0/SSP0 are used only when entering from user space, so their management is"
        " left to software, and KVM often does not return to user space after a VM exit.",
        verdict=verdict, why=why, evidence=tuple(ev))


def gao_stklvls_config(inputs: Inputs) -> ClaimResult:
    v9 = inputs.costs["fred-v9"]
    minimal = inputs.costs["fred-minimal"]
    extra = minimal.exits_per_s - v9.exits_per_s
    ev = [
        Evidence(kind=Kind.COST, supports=None,
                 summary=f"intercepting STKLVLS and CONFIG (fred-minimal) costs {extra:,.3f}"
                 " more exits/s than fred-v9 for a Linux FRED guest: they are written only at"
                 " CPU bring-up", detail=_cost_lines(inputs, (STKLVLS, CONFIG))),
        _holds(inputs, "minimal"),
    ]
    verdict, why = _judge(
        ev, "no performance reason to pass them through (bring-up writes only), and keeping"
        " them intercepted is safe (the minimal design holds every invariant)",
        "the minimal design breaks an invariant")
    return ClaimResult(
        id="stklvls-config-reason", who="Chao Gao", source=REVIEW,
        claim="Pass an MSR through only when there is a reason: there may be no reason to pass"
        " STKLVLS and CONFIG through.",
        verdict=verdict, why=why, evidence=tuple(ev))


def rsps_context_switched(inputs: Inputs) -> ClaimResult:
    ssp_rsp = (RSP1, SSP1)
    lines = _cost_lines(inputs, ssp_rsp)
    rates = [cost_row(inputs.costs["intercept-all"], m)[0] for m in ssp_rsp]
    ev = [Evidence(kind=Kind.COST, supports=not all(r < 1.0 for r in rates),
                   summary="a Linux FRED guest writes RSP1-3 and SSP1-3 only at CPU bring-up"
                   f" ({rates[0]:,.3f} and {rates[1]:,.3f} writes/s): only RSP0 changes per"
                   " task", detail=lines)]
    verdict, why = _judge(ev, "RSP1-3 and SSP1-3 are written often",
                          "for Linux only FRED_RSP0 is per task; RSP1-3 and SSP1-3 hold"
                          " per-CPU exception stacks written once at CPU bring-up")
    return ClaimResult(
        id="rsps-per-task", who="Chao Gao", source=REVIEW,
        claim="RSPs and SSPs are per task and are context-switched frequently, so they need to"
        " be passed through.",
        verdict=verdict, why=why, evidence=tuple(ev))


def sean_nmi_atomic(inputs: Inputs) -> ClaimResult:
    ev = [
        _planted(inputs, "stklvls-config-no-host-load",
                 "STKLVLS and CONFIG switched in software after VM exit"),
        _holds(inputs, "minimal"),
    ]
    verdict, why = _judge(
        ev, "a host NMI right after VM exit consumes STKLVLS and CONFIG: without the atomic"
        " VMCS switch host-safety breaks in 4 events, whether or not they are intercepted",
        "no NMI consumed them")
    return ClaimResult(
        id="stklvls-config-atomic", who="Sean Christopherson (maintainer)", source=REVIEW,
        claim="STKLVLS and CONFIG must be switched atomically with VM entry/exit anyway,"
        " because an NMI right after VM exit consumes them.",
        verdict=verdict, why=why, evidence=tuple(ev))


def sean_free_passthrough(inputs: Inputs) -> ClaimResult:
    v9, minimal = inputs.costs["fred-v9"], inputs.costs["fred-minimal"]
    ev = [
        Evidence(kind=Kind.COST, supports=v9.exits_per_s <= minimal.exits_per_s,
                 summary=f"fred-v9 {v9.exits_per_s:,.3f} exits/s vs fred-minimal"
                 f" {minimal.exits_per_s:,.3f}: passing the VMCS-switched MSRs through removes"
                 " exits and adds no switching, since the VMCS switches them either way",
                 detail=_cost_lines(inputs, (STKLVLS, CONFIG, RSP1))),
        _holds(inputs, "v9"), _holds(inputs, "minimal"),
    ]
    verdict, why = _judge(
        ev, "for MSRs the VMCS context-switches, passthrough is free in this model (no extra"
        " work on entry/exit) and never slower; both choices are safe",
        "passthrough costs more than intercepting")
    return ClaimResult(
        id="free-passthrough", who="Sean Christopherson (maintainer)", source=REVIEW,
        claim="Pass MSRs through when needed for performance or when completely free; all FRED"
        " MSRs that hardware context-switches should be passed through.",
        verdict=verdict, why=why, evidence=tuple(ev))


def gao_pl0_ssp_complexity(inputs: Inputs) -> ClaimResult:
    exits, cpu = cost_row(inputs.costs_fred_only["fred-v9"], PL0_SSP)
    ev = [
        Evidence(kind=Kind.COST, supports=exits < 1.0,
                 summary=f"a FRED-only Linux guest exits on PL0_SSP {exits:,.3f} times/s under"
                 f" fred-v9 ({cpu:.4f}% CPU): it is not accessed often without CET",
                 detail=_cost_lines(inputs, (PL0_SSP,), fred_only=True)),
        _planted(inputs, "pl0-ssp-passthrough",
                 "passing it through without the extra load/put switching"),
    ]
    verdict, why = _judge(
        ev, "intercepting costs nothing measurable, and passthrough would need KVM to switch"
        " PL0_SSP at vCPU load/put (without it, guest values leak to hardware)",
        "PL0_SSP is hot without CET")
    return ClaimResult(
        id="pl0-ssp-complexity", who="Chao Gao", source=REVIEW,
        claim="Without CET the guest rarely accesses PL0_SSP and never through XSAVES, so there"
        " is no reason to pass it through; passing it through means KVM must context-switch it"
        " at vCPU load/put: more code and complexity.",
        verdict=verdict, why=why, evidence=tuple(ev))


def gao_intercept_more_work(inputs: Inputs) -> ClaimResult:
    s = scenario()
    d = decide(s, MsrAccess(CONFIG, Access.W, 0x1000, Initiator.HOST))
    ev = [Evidence(kind=Kind.BITMAP, supports=None,
                   summary="host-initiated KVM_SET_MSRS of FRED_CONFIG goes through KVM's"
                   f" emulation under every policy ({d.outcome.value}): the emulation code is"
                   " needed whether or not the guest's accesses are intercepted",
                   detail=d.reasons)]
    return ClaimResult(
        id="intercept-more-work", who="Chao Gao", source=REVIEW,
        claim="Intercepting is more work than passthrough, since KVM must handle userspace"
        " accesses anyway.",
        verdict=Verdict.UNDECIDED,
        why="a claim about code size and maintenance, which msrvirt does not measure; what"
        " would decide it is the size of the two KVM patches (the emulation path exists"
        " either way, as the evidence shows)", evidence=tuple(ev))


def nested_merge(inputs: Inputs) -> ClaimResult:
    return ClaimResult(
        id="nested-merge", who="reviewer, agreed by the author", source="kvm-msr-facts.md"
        " section 9 (v9 patch 19)",
        claim="For nested VMX, the other FRED MSRs need to be merged into the L2 bitmap like"
        " FRED_RSP0.", verdict=Verdict.UNDECIDED,
        why="msrvirt does not model nested VMX; a model of the L0/L1 bitmap merge"
        " (kvm-msr-facts.md section 9) with an L2 guest would decide it",
        evidence=(_fact("v9 adds only FRED_RSP0 to the fixed list of merged MSRs",
                        supports=None),))


def conformance_on_this_host(inputs: Inputs) -> ClaimResult:
    c = inputs.conformance
    if c is None:
        return ClaimResult(
            id="model-matches-kernel", who="msrvirt", source="docs/conformance.md",
            claim="The model's filter, exit, #GP and KVM_GET/SET_MSRS predictions match the"
            " real kernel.", verdict=Verdict.UNDECIDED,
            why="/dev/kvm was not used (--no-live, or not accessible); running msrvirt review"
            " on a KVM host decides it", evidence=())
    ev = [Evidence(kind=Kind.CONFORMANCE, supports=c.disagreements == 0,
                   summary=f"{len(c.scenarios)} scenarios, {c.operations:,} operations on"
                   f" {c.host} (Linux {c.kernel}): {c.disagreements} disagreements",
                   detail=tuple(f"{name}: {n} operations, {bad} disagree"
                                for name, n, bad in c.scenarios))]
    verdict, why = _judge(ev, "every operation of the corpus behaves as predicted",
                          "the kernel disagrees with the model")
    return ClaimResult(
        id="model-matches-kernel", who="msrvirt", source="docs/conformance.md",
        claim="The model's filter, exit, #GP and KVM_GET/SET_MSRS predictions match the real"
        " kernel on this host.", verdict=verdict, why=why, evidence=tuple(ev))


CLAIMS: tuple[Callable[[Inputs], ClaimResult], ...] = (
    vmcs_fields_make_eight_safe, rsp0_ssp0_user_only, host_rsp0_restored,
    pl0_ssp_intercepted_without_cet, pl0_ssp_no_change, ssp_msrs_without_cet,
    hansen_rsp0_special, hpa_no_gap, hpa_cache_invariant, hpa_invalidate,
    gao_stklvls_config, rsps_context_switched, gao_pl0_ssp_complexity, gao_intercept_more_work,
    sean_free_passthrough, sean_nmi_atomic, nested_merge, conformance_on_this_host,
)


def judge_all(inputs: Inputs) -> list[ClaimResult]:
    """Every claim, judged on ``inputs``, in the order of the patch and the thread."""
    return [claim(inputs) for claim in CLAIMS]


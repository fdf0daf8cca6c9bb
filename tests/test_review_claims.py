"""The review's claims: one test per claim pinning its verdict, per scope, and the facts its
reason states, with the expected values taken from the kernel source, the architecture or
the thread (each test says which), never from msrvirt's own output.  A change in the model
that flips a verdict, or a reason that stops saying what the evidence found, fails here."""

from __future__ import annotations

import re

import pytest

from msrvirt.conform.corpus import Counts
from msrvirt.cost.workload import workload
from msrvirt.review.evidence import (
    REVIEW_RATE,
    REVIEW_WORKLOAD,
    ConformanceSummary,
    Inputs,
    compute_inputs,
)
from msrvirt.review.judge import judge, judge_all, load_claims
from msrvirt.review.kinds import designs_needed
from msrvirt.review.table import Relation
from msrvirt.review.verdicts import Bearing, ClaimResult, Evidence, Judgement

H, F, P, U = Judgement.HOLDS, Judgement.FAILS, Judgement.PARTLY, Judgement.UNDECIDED
TABLE = load_claims()
# Linux's FRED bring-up of a CPU (arch/x86/kernel/fred.c, v6.19): cpu_init_fred_exceptions
# writes CONFIG, STKLVLS = 0, RSP0 and RSP1-3 = 0; cpu_init_fred_rsps writes STKLVLS and
# RSP1-3 again.  No SSP MSR is ever written (no supervisor shadow stacks).
BRINGUP = workload(REVIEW_WORKLOAD).cpu_bringups.per_second
CONFORMANCE = ConformanceSummary(host="a test host", kernel="6.19", scenarios=(
    Counts(scenario="one", operations=10, full=7, disagree=0, full_disagree=0),
    Counts(scenario="sweep", operations=100, full=0, disagree=0, full_disagree=0),
))


@pytest.fixture(scope="module")
def inputs() -> Inputs:
    return compute_inputs(designs=designs_needed(TABLE.claims), conformance=CONFORMANCE)


@pytest.fixture(scope="module")
def results(inputs: Inputs) -> dict[str, ClaimResult]:
    return {r.claim.id: r for r in judge_all(TABLE.claims, inputs)}


# (claim id, overall verdict, {scope label: verdict}); scope labels as in claims.toml.
VERDICTS = [
    ("vmcs-eight-safe", P, {"a Linux v6.19 host": H,
                            "a host kernel with another stack-level map or supervisor shadow"
                            " stacks": F}),
    ("rsp0-ssp0-user-only", H, {"the claim": H}),
    ("host-rsp0-restored", H, {"the claim": H}),
    ("pl0-ssp-intercept", P, {"the rule": H,
                              "the reason (a guest value must not reach the hardware MSR),"
                              " Linux host": F,
                              "the reason, on a host with supervisor shadow stacks": F}),
    ("pl0-ssp-no-change", H, {"the claim": H}),
    ("ssp-msrs-without-cet", H, {"the claim": H}),
    ("rsp0-special", P, {"the premise (how often each is written)": H,
                         "the reason (the write rate)": F}),
    ("no-gap", P, {"RSP1-3": H, "SSP1-3, on a Linux v6.19 host": F,
                   "SSP1-3, on a host with supervisor shadow stacks": H, "RSP0 and SSP0": H}),
    ("hpa-cache-invariant", P, {"where the host can reach user mode (no guest state loaded)": H,
                                "literally, in every state (guest state loaded too)": F}),
    ("hpa-invalidate", H, {"the claim": H}),
    ("stklvls-config-reason", H, {"the claim": H}),
    ("rsps-per-task", P, {"RSP0": H, "RSP1-3": F, "SSP1-3": F}),
    ("pl0-ssp-complexity", P, {"without CET the guest rarely accesses it": H,
                               "modifying the hardware MSR is no problem (Linux host)": H,
                               "passthrough needs load/put switching, on a FRED host without"
                               " CET": H,
                               "passthrough needs load/put switching, on a CET host": F,
                               "passthrough needs more code, on a CET host": H}),
    ("intercept-more-work", F, {"the claim": F}),
    ("free-passthrough", H, {"the eight the VMCS switches (free)": H,
                             "RSP0 (needed for performance)": H}),
    ("stklvls-config-atomic", H, {"the claim": H}),
    ("nested-merge", F, {"correctness (L1's and L2's FRED state)": F,
                         "speed, a Linux FRED L2": F}),
    ("model-matches-kernel", H, {"operations predicted at full scope": H,
                                 "operations checked only for the filter decision": H}),
    ("host-pl0-ssp-xrstors", P, {"a CET host (Linux v6.19)": H, "a FRED host without CET": F}),
    ("int-ssp-tab", P, {"it has a VMCS field": H,
                        "it needs atomic switching, on a Linux FRED host": F,
                        "under Sean's rule KVM passes it through like STKLVLS and CONFIG": F}),
    ("functionally-safe", P, {"RSP1-3, STKLVLS, SSP1-3, CONFIG (the VMCS switches them)": H,
                              "RSP0 (KVM switches it in software)": H,
                              "PL0_SSP, a guest with shadow stacks": H,
                              "PL0_SSP, a guest without shadow stacks": H,
                              "a host kernel with another stack-level map or supervisor shadow"
                              " stacks": F}),
    ("document-why", H, {"the claim": H}),
    ("host-fields-stack-map", H, {"v9 07 relies on the kernel's stack-level map": H,
                                  "relying on it breaks when the kernel changes its map": H,
                                  "filling the fields with the host's own values does not rely"
                                  " on it": H}),
    ("rsp0-no-vmcs-field", H, {"RSP0": H, "SSP1-3": H}),
    ("filter-change", H, {"the claim": H}),
    ("v9-host-assumptions", H, {"a kernel with another stack-level map": H,
                                "a kernel with supervisor shadow stacks": H,
                                "the host's XRSTORS of PL0_SSP, either way": H}),
    ("nested-rsp0-only", H, {"RSP0 merged for speed": H,
                             "the other eight not needed, for speed": H,
                             "the other eight not needed, for correctness": H}),
    ("nested-passthrough-concern", P, {"L1's and L2's FRED state": H,
                                       "L0's userspace filter, changed while L2 runs": F}),
    ("nested-host-load", H, {"the claim": H}),
    ("nested-guest-save", H, {"the claim": H}),
]


def test_the_table_of_verdicts_covers_every_claim_once() -> None:
    assert [v[0] for v in VERDICTS] == [c.id for c in TABLE.claims]


@pytest.mark.parametrize(("claim_id", "overall", "scopes"), VERDICTS, ids=[v[0] for v in VERDICTS])
def test_each_claim_gets_its_verdict_in_every_scope(
        results: dict[str, ClaimResult], claim_id: str, overall: Judgement,
        scopes: dict[str, Judgement]) -> None:
    r = results[claim_id]
    assert {s.scope.label: s.judgement for s in r.scopes} == scopes
    assert r.judgement is overall


def _one(r: ClaimResult, scope: str, kind: str, *, contains: str = "") -> Evidence:
    found = [e for e in r.scope(scope).evidence if e.kind.value == kind and contains in e.summary]
    assert len(found) == 1, [e.summary for e in r.scope(scope).evidence]
    return found[0]


def _msg_ids(r: ClaimResult, relation: Relation) -> list[str | None]:
    return [link.message.message_id for link in r.claim.links if link.relation is relation]


# -- the seed ---------------------------------------------------------------------------------------

def test_eight_safe_names_their_vmcs_fields_and_what_breaks_without_the_host_load(
        results: dict[str, ClaimResult]) -> None:
    r = results["vmcs-eight-safe"]
    fields = _one(r, "a Linux v6.19 host", "vmcs-fields")
    # kvm-msr-facts.md section 8 (v9 patches 01, 02): guest/host encodings.
    assert "IA32_FRED_RSP1: guest field GUEST_IA32_FRED_RSP1 (0x281c), host field" \
        " HOST_IA32_FRED_RSP1 (0x2c0a)" in fields.detail
    assert "IA32_FRED_CONFIG: guest field GUEST_IA32_FRED_CONFIG (0x281a), host field" \
        " HOST_IA32_FRED_CONFIG (0x2c08)" in fields.detail
    planted = _one(r, "a Linux v6.19 host", "check", contains="rsp1-no-host-load")
    # KVM_RUN, VM entry (the guest's reset RSP1 in the MSR), VM exit without the host load,
    # a host NMI on the guest's RSP1: four events.
    assert planted.figure("events host-safety") == 4
    assert "breaks host-safety in 4 events" in r.scope("a Linux v6.19 host").reason
    other = r.scope("a host kernel with another stack-level map or supervisor shadow stacks")
    assert [e.bearing for e in other.evidence] == [Bearing.CONTRADICTS, Bearing.CONTRADICTS]
    # v9 07 fills host RSP1 with the #DB stack where the changed kernel runs NMIs, and host
    # SSP1-3 with 0: KVM_RUN, VM entry, VM exit, a host NMI.
    changed, shstk = other.evidence
    assert changed.figure("events host-safety") == shstk.figure("events host-safety") == 4
    assert "IA32_FRED_RSP1 = other-stack, the host needs exc(cpu0)" in changed.summary
    assert "IA32_FRED_SSP1 = 0, the host needs host-ssp" in shstk.summary


def test_rsp0_and_ssp0_are_not_consumed_by_a_host_nmi_right_after_vm_exit(
        results: dict[str, ClaimResult]) -> None:
    r = results["rsp0-ssp0-user-only"]
    ev = _one(r, "the claim", "consumes", contains="NMI")
    # fred-arch-facts.md 3: an event at ring 0 uses STKLVLS, CONFIG and the RSP of its level;
    # RSP0 and PL0_SSP only from ring 3.  The guest's values are in them after the VM exit.
    assert "consumes FRED_STKLVLS (host-stklvls), FRED_CONFIG (host-config), FRED_RSP1-3" in ev.summary
    assert "not FRED_RSP0 (g0, the guest's), PL0_SSP (g0, the guest's)" in ev.summary


def test_host_rsp0_is_the_next_tasks_stack_top_after_a_preemption(
        results: dict[str, ClaimResult]) -> None:
    ev = _one(results["host-rsp0-restored"], "the claim", "machine-state")
    # fred_update_rsp0 on the switched-in task's exit to user mode writes its stack top.
    assert "FRED_RSP0 holds top(T2)" in ev.summary and ev.bearing is Bearing.SUPPORTS


def test_pl0_ssp_rule_holds_but_its_reason_is_disputed_by_chao(
        results: dict[str, ClaimResult]) -> None:
    r = results["pl0-ssp-intercept"]
    reason = r.scope("the reason (a guest value must not reach the hardware MSR), Linux host")
    # No host event consumes PL0_SSP: Linux runs without supervisor shadow stacks.
    assert all("not PL0_SSP (g0, the guest's)" in e.summary for e in reason.deciding)
    # With supervisor shadow stacks a host event from user mode loads PL0_SSP, but the host's
    # XRSTORS has put its own value back by then (vCPU put comes before any return to user).
    shstk = r.scope("the reason, on a host with supervisor shadow stacks")
    assert shstk.reason.startswith("host-fields-from-msrs on host-supervisor-shstk")
    assert "keeps every invariant" in shstk.reason
    used = _one(r, shstk.scope.label, "consumes")
    assert used.bearing is Bearing.INFORMS and "PL0_SSP (host-pl0)" in used.summary
    assert _msg_ids(r, Relation.DISPUTED_BY) == ["aRQf1sQZ9Z3CTB8i@intel.com"]
    assert [link.claim for link in r.flags] == ["pl0-ssp-complexity"]


def test_v9_changes_only_the_nine_fred_msrs_never_pl0_ssp(results: dict[str, ClaimResult]) -> None:
    reason = results["pl0-ssp-no-change"].scope("the claim").reason
    # The seed's vmx_set_intercept_for_fred_msr sets the nine FRED MSRs' intercepts only.
    assert "changes FRED_RSP0-3, FRED_STKLVLS, FRED_SSP1-3 and FRED_CONFIG and nothing else" in reason
    assert "PL0_SSP keeps its bits" in reason


def test_without_cet_pl0_ssp_is_emulated_and_fred_delivery_uses_no_ssp(
        results: dict[str, ClaimResult]) -> None:
    r = results["ssp-msrs-without-cet"]
    # v9 patch 10: PL0_SSP needs SHSTK or FRED, so a FRED guest's read is emulated.
    assert "a guest RDMSR of PL0_SSP on intel-fred-nocet" in r.scope("the claim").reason
    assert "emulated in every case" in r.scope("the claim").reason
    assert "not FRED_SSP1-3" in r.scope("the claim").reason


# -- Dave Hansen and H. Peter Anvin -------------------------------------------------------------------

def test_rsp0_is_written_per_switch_but_special_because_no_kernel_event_uses_it(
        results: dict[str, ClaimResult]) -> None:
    r = results["rsp0-special"]
    premise = r.scope("the premise (how often each is written)")
    rsp0 = _one(r, premise.scope.label, "writes", contains="FRED_RSP0")
    # Linux writes RSP0 once per switch to another task's user mode, and once at bring-up.
    assert rsp0.figure("IA32_FRED_RSP0 writes/s") == pytest.approx(REVIEW_RATE + BRINGUP)
    rsp13 = _one(r, premise.scope.label, "writes", contains="FRED_RSP1-3")
    assert rsp13.figure("IA32_FRED_RSP2 writes/s") == pytest.approx(2 * BRINGUP)
    assert "linux-fred at 100,000 context switches/s" in premise.reason
    reason = r.scope("the reason (the write rate)").reason
    assert "FRED_RSP0 has no VMCS guest or host field" in reason
    assert "not FRED_RSP0 (g0, the guest's)" in reason
    assert _msg_ids(r, Relation.DISPUTED_BY) == ["f0768546-a767-4d74-956e-b40128272a09@zytor.com",
                                                 "aamfka09bDZV0iUO@google.com"]


def test_no_gap_holds_for_rsp1_3_and_says_linux_hosts_consume_no_ssp(
        results: dict[str, ClaimResult]) -> None:
    r = results["no-gap"]
    shstk = r.scope("SSP1-3, on a host with supervisor shadow stacks")
    assert "v9 on host-supervisor-shstk" in shstk.reason and "IA32_FRED_SSP1 = 0" in shstk.reason
    assert "host-fields-from-msrs on host-supervisor-shstk" in shstk.reason
    ssp = r.scope("SSP1-3, on a Linux v6.19 host")
    assert "not FRED_SSP1-3 (host-ssp)" in ssp.reason
    assert "vmx_set_constant_host_state" in ssp.reason
    assert not re.search(r"consumes[^;]*SSP1-3", ssp.reason)
    assert "host-safety in 6 events" in r.scope("RSP1-3").reason  # host-fields-once


def test_the_literal_cache_invariant_fails_inside_kvm_run(results: dict[str, ClaimResult]) -> None:
    literal = results["hpa-cache-invariant"].scope("literally, in every state (guest state loaded too)")
    # After a VM exit: the cache is the vCPU thread's stack top (set by its last exit to user
    # mode) while the MSR holds the guest's value, until vCPU put.
    assert "FRED_RSP0 holds g1, the guest's, the fred_rsp0 cache top(vcpu)" in literal.reason


def test_hpas_invalidation_keeps_every_invariant(results: dict[str, ClaimResult]) -> None:
    assert results["hpa-invalidate"].scope("the claim").reason.startswith(
        "invalidate-cache keeps every invariant")


# -- Chao Gao, November -------------------------------------------------------------------------------

def test_stklvls_and_config_are_written_at_bring_up_only_and_the_rule_was_superseded(
        results: dict[str, ClaimResult]) -> None:
    r = results["stklvls-config-reason"]
    ev = _one(r, "the claim", "writes")
    assert ev.figure("IA32_FRED_STKLVLS writes/s") == pytest.approx(2 * BRINGUP)
    assert ev.figure("IA32_FRED_CONFIG writes/s") == pytest.approx(BRINGUP)
    delta = _one(r, "the claim", "exits-delta")
    assert delta.figure("fred-minimal exits/s") == pytest.approx(3 * BRINGUP)
    assert [link.claim for link in r.flags] == ["free-passthrough"]


def test_only_rsp0_is_per_task(results: dict[str, ClaimResult]) -> None:
    r = results["rsps-per-task"]
    assert _one(r, "SSP1-3", "writes").figure("IA32_FRED_SSP1 writes/s") == 0
    assert "never written" in r.scope("SSP1-3").reason
    assert "per CPU, not per task" in r.scope("RSP1-3").reason
    assert _one(r, "RSP0", "writes").figure("IA32_FRED_RSP0 writes/s") >= REVIEW_RATE


def test_pl0_ssp_passthrough_needs_switching_without_cet_and_more_code_on_a_cet_host(
        results: dict[str, ClaimResult]) -> None:
    r = results["pl0-ssp-complexity"]
    # Linux never writes PL0_SSP (no supervisor shadow stacks).
    assert _one(r, "without CET the guest rarely accesses it", "writes").figure(
        "IA32_PL0_SSP writes/s") == 0
    nocet = r.scope("passthrough needs load/put switching, on a FRED host without CET")
    assert "breaks guest-integrity in 4 events" in nocet.reason
    # Without CET nothing moves the value: migrated to CPU 1, the guest finds the host's.
    assert "CPU 1's PL0_SSP holds host-pl0" in nocet.reason
    # On a CET host every guest FPU state carries CET_KERNEL (guest_default_mask): the value
    # follows the vCPU; what passthrough lacks is KVM_GET/SET_MSRS on the XSAVE state.
    cet = r.scope("passthrough needs load/put switching, on a CET host")
    assert "CPU 1's PL0_SSP holds g1, the guest's" in cet.reason
    assert any("fpu_swap_kvm_fpstate" in e.summary for e in cet.evidence)
    more = r.scope("passthrough needs more code, on a CET host")
    assert "KVM_GET_MSRS would return IA32_PL0_SSP = g0, the guest's value is g1" in more.reason


# -- Sean Christopherson and the others ----------------------------------------------------------------

def test_more_work_is_seans_and_fails_because_kvm_emulates_host_writes_anyway(
        results: dict[str, ClaimResult]) -> None:
    r = results["intercept-more-work"]
    assert (r.claim.message.who, r.claim.message.date, r.claim.message.message_id) == (
        "Sean Christopherson", "2026-03-04", "aajS9HFx5HabmCTq@google.com")
    ev = _one(r, "the claim", "access")
    # kvm-msr-facts.md 4: KVM_SET_MSRS bypasses the bitmap; every policy emulates it.
    assert len(ev.detail) == 3 * 8 and all(": emulated --" in line for line in ev.detail)
    assert "also under fred-v9, which passes the guest's own accesses through" in ev.summary
    assert _msg_ids(r, Relation.DISPUTED_BY) == ["aao8SbZMHT302dDS@intel.com"]
    assert _msg_ids(r, Relation.WITHDRAWN_BY) == ["aar4s6pGYOlKQp4Q@google.com"]


def test_free_passthrough_saves_the_bring_up_exits_of_stklvls_and_config(
        results: dict[str, ClaimResult]) -> None:
    r = results["free-passthrough"]
    ev = _one(r, "the eight the VMCS switches (free)", "exits-delta")
    assert ev.figure("fred-v9 exits/s") == 0
    assert ev.figure("fred-minimal exits/s") == pytest.approx(3 * BRINGUP)


def test_an_nmi_after_vm_exit_consumes_stklvls_and_config(results: dict[str, ClaimResult]) -> None:
    reason = results["stklvls-config-atomic"].scope("the claim").reason
    assert "FRED_STKLVLS (host-stklvls), FRED_CONFIG (host-config)" in reason
    assert "stklvls-config-no-host-load" in reason and "host-safety in 4 events" in reason


# -- nested VMX (v9 19) ------------------------------------------------------------------------------

# Linux's bring-up writes the eight (all but RSP0) nine times: CONFIG once, STKLVLS and RSP1-3
# twice (cpu_init_fred_exceptions, cpu_init_fred_rsps); RSP0 once per switch to a user task and
# once at bring-up.  v9 19 merges RSP0 (so the eight exit to L0 under it); fred-all all nine.
BRINGUP_EIGHT = 9


def test_merging_the_other_fred_msrs_is_neither_correctness_nor_speed_for_linux(
        results: dict[str, ClaimResult]) -> None:
    r = results["nested-merge"]
    state = _one(r, "correctness (L1's and L2's FRED state)", "nested")
    assert state.bearing is Bearing.CONTRADICTS
    assert "merge list v9 keeps every nested invariant" in state.summary
    assert "FRED_SSP1-3 and FRED_CONFIG exit to L0, which handles them on vmcs02" in state.summary
    assert "is not needed for correctness" in state.summary
    window = _one(r, "correctness (L1's and L2's FRED state)", "check",
                  contains="nested-filter-window")
    assert window.bearing is Bearing.INFORMS and "breaks l2-filter in 4 events" in window.summary
    speed = _one(r, "speed, a Linux FRED L2", "nested")
    assert speed.figure("v9 exits/s") == pytest.approx(BRINGUP_EIGHT * BRINGUP)
    assert speed.figure("fred-all exits/s") == 0
    assert speed.figure("saved exits/s") == pytest.approx(BRINGUP_EIGHT * BRINGUP)
    assert speed.summary.startswith(f"{REVIEW_WORKLOAD} at 100,000 context switches/s, run by L2")
    assert "saves 0.0025 exits/s (its writes: cpu_bringups)" in speed.summary


def test_rsp0_alone_is_the_merge_that_saves_exits(results: dict[str, ClaimResult]) -> None:
    r = results["nested-rsp0-only"]
    speed = _one(r, "RSP0 merged for speed", "nested")
    assert speed.figure("saved exits/s") == pytest.approx(REVIEW_RATE + BRINGUP)
    assert "merging FRED_RSP0 saves 100,000 exits/s" in speed.summary
    assert [link.claim for link in r.flags] == ["nested-merge"]  # withdrawn by Xin Li


def test_passing_them_to_l2_widens_v619s_filter_window(results: dict[str, ClaimResult]) -> None:
    r = results["nested-passthrough-concern"]
    s = r.scope("L0's userspace filter, changed while L2 runs")
    assert "nested-filter-window" in s.reason and "breaks l2-filter in 4 events" in s.reason
    fix = _one(r, s.scope.label, "check", contains="nested-filter-rebuilt")
    assert fix.bearing is Bearing.INFORMS and "keeps every invariant" in fix.summary
    assert "force_msr_bitmap_recalc" in _one(r, s.scope.label, "source").summary


@pytest.mark.parametrize(("claim_id", "planted", "inv", "events"), [
    ("nested-host-load", "nested-exit-no-host-load", "l1-state", 5),
    ("nested-guest-save", "nested-exit-no-guest-save", "l2-via-l1", 5),
], ids=["without the host load L1 runs on L2's RSP1 (VMRESUME, entry, exit, entry, L1 NMI)",
        "without the save L1 reads a stale field (VMRESUME, entry, WRMSR, entry, exit)"])
def test_patch_19s_nested_exit_claims(results: dict[str, ClaimResult], claim_id: str,
                                      planted: str, inv: str, events: int) -> None:
    ev = _one(results[claim_id], "the claim", "check", contains=planted)
    assert ev.figure(f"events {inv}") == events and ev.bearing is Bearing.SUPPORTS


def test_conformance_reports_full_scope_and_filter_only_operations_apart(
        results: dict[str, ClaimResult]) -> None:
    r = results["model-matches-kernel"]
    full = _one(r, "operations predicted at full scope", "conformance")
    only = _one(r, "operations checked only for the filter decision", "conformance")
    assert (full.figure("operations"), only.figure("operations")) == (7, 103)
    assert full.summary.startswith("7 operations predicted at full scope")


def test_conformance_disagreement_at_full_scope_fails_only_that_part(inputs: Inputs) -> None:
    bad = ConformanceSummary(host="h", kernel="k", scenarios=(
        Counts(scenario="s", operations=10, full=4, disagree=1, full_disagree=1),))
    from dataclasses import replace
    r = judge(TABLE.claim("model-matches-kernel"), replace(inputs, conformance=bad))
    assert [s.judgement for s in r.scopes] == [F, H] and r.judgement is P
    r = judge(TABLE.claim("model-matches-kernel"), replace(inputs, conformance=None))
    assert r.judgement is U and "/dev/kvm was not used" in r.why


def test_host_pl0_ssp_is_restored_by_xrstors_on_cet_hosts_only(
        results: dict[str, ClaimResult]) -> None:
    r = results["host-pl0-ssp-xrstors"]
    cet = r.scope("a CET host (Linux v6.19)")
    assert "restore_fpregs_from_fpstate" in cet.reason
    model = _one(r, cet.scope.label, "machine-state")
    # With the CET host's XRSTORS, vCPU put leaves the host's value, not the guest's.
    assert model.bearing is Bearing.SUPPORTS and "PL0_SSP holds host-pl0" in model.summary
    assert "v9 on cet-xsaves" in cet.reason and "keeps every invariant" in cet.reason
    assert "xsave_cpuid_features" in r.scope("a FRED host without CET").reason


def test_int_ssp_tab_has_vmcs_fields_but_kvm_intercepts_it(results: dict[str, ClaimResult]) -> None:
    r = results["int-ssp-tab"]
    fields = _one(r, "it has a VMCS field", "vmcs-fields")
    # Linux vmx.h: GUEST_INTR_SSP_TABLE 0x682c, HOST_INTR_SSP_TABLE 0x6c1c.
    assert fields.detail == ("IA32_INT_SSP_TAB: guest field GUEST_INTR_SSP_TABLE (0x682c), host"
                             " field HOST_INTR_SSP_TABLE (0x6c1c)",)
    rule = r.scope("under Sean's rule KVM passes it through like STKLVLS and CONFIG")
    # v6.19 vmx_recalc_msr_intercepts has no rule for INT_SSP_TAB.
    assert rule.reason.count("INT_SSP_TAB intercepted (no passthrough rule") == 2


def test_functional_safety_bites_for_pl0_ssp_without_shadow_stacks(
        results: dict[str, ClaimResult]) -> None:
    r = results["functionally-safe"]
    s = r.scope("PL0_SSP, a guest without shadow stacks")
    assert "pl0-ssp-passthrough" in s.reason and "PL0_SSP intercepted" in s.reason
    # On another host v9 is not safe, and intercepting every access does not make it so: the
    # VM exit loads the host fields whatever the bitmap.
    host = r.scope("a host kernel with another stack-level map or supervisor shadow stacks")
    assert [e.bearing for e in host.evidence] == [Bearing.CONTRADICTS, Bearing.CONTRADICTS,
                                                  Bearing.INFORMS]
    assert host.evidence[2].summary.startswith("intercept-all on stack-map-changed")
    assert "breaks host-safety in 4 events" in host.evidence[2].summary


def test_document_why_is_agreed_by_dave(results: dict[str, ClaimResult]) -> None:
    r = results["document-why"]
    assert _msg_ids(r, Relation.AGREED_BY) == ["32096607-8426-4743-9d56-3ebf27d278cf@intel.com"]
    assert r.flags == ()


def test_the_stack_map_coupling_breaks_the_host_and_seans_fields_do_not(
        results: dict[str, ClaimResult]) -> None:
    r = results["host-fields-stack-map"]
    s = r.scope("relying on it breaks when the kernel changes its map")
    assert "v9 on stack-map-changed" in s.reason and "breaks host-safety in 4 events" in s.reason
    sean = r.scope("filling the fields with the host's own values does not rely on it")
    # Read from the MSRs, the host fields hold the kernel's own stacks on any map: the
    # machine is v9's on Linux, state for state.
    assert _one(r, sean.scope.label, "host-check").figure("states") == 273_860


def test_the_review_reports_what_v9_relies_on(results: dict[str, ClaimResult]) -> None:
    r = results["v9-host-assumptions"]
    assert (r.claim.message.who, r.claim.message.subject) == ("msrvirt", "docs/check.md")
    xrstors = r.scope("the host's XRSTORS of PL0_SSP, either way")
    assert [e.summary.split(" (")[0] for e in xrstors.deciding] == [
        "v9 keeps every invariant", "v9 on cet-xsaves"]


def test_rsp0_has_no_vmcs_field_because_no_kernel_event_uses_it(
        results: dict[str, ClaimResult]) -> None:
    reason = results["rsp0-no-vmcs-field"].scope("RSP0").reason
    assert "FRED_RSP0 has no VMCS guest or host field" in reason
    assert "a host event from user mode (v9, guest with shadow stacks) consumes FRED_RSP0" in reason


def test_a_filter_change_without_recomputation_breaks_filter_compliance(
        results: dict[str, ClaimResult]) -> None:
    assert "filter-no-recalc" in results["filter-change"].scope("the claim").reason


# -- every claim -----------------------------------------------------------------------------------------

def test_every_claim_cites_who_when_and_the_message(results: dict[str, ClaimResult]) -> None:
    for r in results.values():
        m = r.claim.message
        if m.who == "msrvirt":
            continue
        assert re.fullmatch(r"20\d\d-\d\d-\d\d", m.date or ""), r.claim.id
        assert m.message_id and "@" in m.message_id, r.claim.id
        assert m.lore and m.lore.startswith("https://lore.kernel.org/all/"), r.claim.id
        assert r.claim.quote and r.claim.text


def test_every_reason_is_the_findings_of_the_evidence_that_decided_it(
        results: dict[str, ClaimResult]) -> None:
    for r in results.values():
        for s in r.scopes:
            want = {H: Bearing.SUPPORTS, F: Bearing.CONTRADICTS, U: Bearing.PENDING}[s.judgement]
            assert all(e.bearing is want for e in s.deciding), (r.claim.id, s.scope.label)
            assert s.reason == "; ".join(e.summary for e in s.deciding) or not s.deciding


def test_a_workload_verdict_names_the_workload(results: dict[str, ClaimResult]) -> None:
    for r in results.values():
        for e in r.evidence:
            if e.kind.value in ("writes", "exits-delta"):
                assert e.summary.startswith(f"{REVIEW_WORKLOAD} at 100,000 context switches/s")


def test_the_terminal_table_shows_every_claim_its_scopes_and_flags(
        results: dict[str, ClaimResult]) -> None:
    from rich.console import Console

    from msrvirt.report.review import claims_table, counts_line

    rows = list(results.values())
    console = Console(record=True, width=200)
    console.print(claims_table(rows))
    text = console.export_text()
    for r in rows:
        assert f"[{r.claim.id}]" in text
    assert "RSP1-3: fails" in text and "superseded by Sean Christopherson (2026-03-06)" in text
    by = {j: sum(r.judgement is j for r in rows) for j in Judgement}
    assert counts_line(rows) == (f"{len(rows)} claims: {by[H]} hold, {by[P]} hold in part,"
                                 f" {by[F]} fail, {by[U]} undecided")

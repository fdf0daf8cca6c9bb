"""The probe guest on the real /dev/kvm: each behaviour the reference facts describe.

kvm-msr-facts.md sections 4 and 5 (filter, userspace exits and their reasons,
#GP), kvm-svm-common-pvm-facts.md 2c-2d (unknown MSRs, x2APIC without x2APIC
mode), shared/reference/README.md (what was observed on KVM on the PVM machines).
Guest CPUID is the host's supported CPUID with FRED cleared, so the FRED rows
hold on hosts with and without FRED.
"""

from __future__ import annotations

import time

import pytest

from msrvirt.arch.cpuid import Feature
from msrvirt.arch.kvm import Access, ExitReason
from msrvirt.conform.predict import Result
from msrvirt.live.errors import GuestFault, GuestTimeout, UnexpectedExit
from msrvirt.live.exits import ANSWER_GP, MsrAnswer, MsrExit, Reply, X86Rdmsr, X86Wrmsr
from msrvirt.live.kvm import CpuidEntry, Kvm
from msrvirt.live.probe import CODE_ADDR, PROGRAM, Probe
from msrvirt.policy.decide import Initiator, MsrAccess
from msrvirt.policy.filter import NO_FILTER, FilterRange, MsrFilter

pytestmark = pytest.mark.kvm

R, W = Access.R, Access.W
TSC, EFER, FRED_RSP0, X2APIC_TPR = 0x10, 0xC0000080, 0x1CC, 0x808
FS_BASE, GS_BASE = 0xC0000100, 0xC0000101
NONEXISTENT_MSR = 0x474F4F00
ALL = ExitReason.INVAL | ExitReason.UNKNOWN | ExitReason.FILTER


def read(index: int) -> MsrAccess:
    return MsrAccess(msr=index, access=R)


def write(index: int, value: int = 0) -> MsrAccess:
    return MsrAccess(msr=index, access=W, value=value)


def without(cpuid: tuple[CpuidEntry, ...], feature: Feature) -> tuple[CpuidEntry, ...]:
    """``cpuid`` with ``feature``'s bit cleared."""
    bit = feature.cpuid
    out = []
    for e in cpuid:
        if e.key == (bit.leaf, bit.subleaf):
            regs = dict(zip(("eax", "ebx", "ecx", "edx"), e.regs, strict=True))
            regs[bit.reg.value] &= ~(1 << bit.bit)
            e = CpuidEntry(function=e.function, index=e.index, flags=e.flags, **regs)
        out.append(e)
    return tuple(out)


def with_feature(cpuid: tuple[CpuidEntry, ...], feature: Feature) -> tuple[CpuidEntry, ...]:
    """``cpuid`` with ``feature``'s bit set (KVM takes CPUID bits it cannot virtualize)."""
    bit = feature.cpuid
    out = []
    for e in cpuid:
        if e.key == (bit.leaf, bit.subleaf):
            regs = dict(zip(("eax", "ebx", "ecx", "edx"), e.regs, strict=True))
            regs[bit.reg.value] |= 1 << bit.bit
            e = CpuidEntry(function=e.function, index=e.index, flags=e.flags, **regs)
        out.append(e)
    return tuple(out)


@pytest.fixture
def no_fred(kvm: Kvm) -> tuple[CpuidEntry, ...]:
    return without(kvm.supported_cpuid(), Feature.FRED)


def deny(*indices: int, flags: int = 3) -> MsrFilter:
    """DEFAULT_ALLOW with one single-MSR range per index, its bit clear (denied)."""
    return MsrFilter(ranges=tuple(
        FilterRange(flags=flags, base=i, nmsrs=1, allow_bits=bytes(8)) for i in indices))


def test_tsc_and_efer_reads_are_handled_in_the_kernel(kvm: Kvm, no_fred: tuple) -> None:
    with Probe.create(kvm, cpuid=no_fred, exits=ALL) as probe:
        obs = probe.run([read(TSC), read(EFER), read(TSC)])
        assert [o.result for o in obs] == [Result.OK] * 3
        assert all(o.exits == () for o in obs)
        assert obs[1].value == 0  # real mode: EFER is clear
        assert obs[0].value is not None and obs[2].value is not None
        assert obs[2].value > obs[0].value  # the TSC ticks
        assert probe.vcpu.runs == 1  # one KVM_RUN, ended by the HLT


def test_fred_rsp0_without_guest_fred_exits_unknown_when_enabled(
        kvm: Kvm, no_fred: tuple) -> None:
    with Probe.create(kvm, cpuid=no_fred, exits=ExitReason.UNKNOWN) as probe:
        (obs,) = probe.run([read(FRED_RSP0)], answer=lambda e: MsrAnswer(value=0xABC0))
        (rec,) = obs.exits
        assert rec.exit == X86Rdmsr(reason=ExitReason.UNKNOWN, index=FRED_RSP0, data=0)
        assert (obs.result, obs.value) == (Result.OK, 0xABC0)  # the guest got our answer


def test_fred_rsp0_without_the_unknown_exit_is_gp(kvm: Kvm, no_fred: tuple) -> None:
    with Probe.create(kvm, cpuid=no_fred) as probe:
        obs = probe.run([read(FRED_RSP0), write(FRED_RSP0, 0x1000)])
        assert [(o.result, o.value, o.exits) for o in obs] == [(Result.GP, None, ())] * 2


def test_asking_for_fred_on_a_host_without_it_changes_nothing(kvm: Kvm) -> None:
    supported = kvm.supported_cpuid()
    if _has(supported, Feature.FRED):
        pytest.skip("this host supports FRED: the guest would really have it")
    with Probe.create(kvm, cpuid=with_feature(supported, Feature.FRED),
                      exits=ExitReason.UNKNOWN) as probe:
        (obs,) = probe.run([read(FRED_RSP0)])
        assert [r.exit.reason for r in obs.exits] == [ExitReason.UNKNOWN]
        assert obs.result is Result.GP  # answered with an error


def test_the_probe_reports_the_cpuid_the_guest_really_has(kvm: Kvm) -> None:
    with Probe.create(kvm) as probe:
        assert probe.guest_cpuid == probe.vcpu.get_cpuid()
        assert probe.guest_cpuid  # KVM kept (possibly rewrote) the entries it was given


def _has(cpuid: tuple[CpuidEntry, ...], feature: Feature) -> bool:
    bit = feature.cpuid
    return any(e.key == (bit.leaf, bit.subleaf)
               and dict(zip(("eax", "ebx", "ecx", "edx"), e.regs, strict=True))[bit.reg.value]
               >> bit.bit & 1 for e in cpuid)


def test_a_write_exit_carries_the_value_and_an_error_answer_is_gp(
        kvm: Kvm, no_fred: tuple) -> None:
    seen: list[MsrExit] = []

    def answer(exit_: MsrExit) -> MsrAnswer:
        seen.append(exit_)
        return ANSWER_GP

    with Probe.create(kvm, cpuid=no_fred, exits=ExitReason.UNKNOWN) as probe:
        (obs,) = probe.run([write(NONEXISTENT_MSR, 0x1122334455667788)], answer=answer)
    assert seen == [X86Wrmsr(reason=ExitReason.UNKNOWN, index=NONEXISTENT_MSR,
                             data=0x1122334455667788)]
    assert obs.result is Result.GP
    assert obs.exits[0].answer.reply is Reply.GP


def test_a_filter_denial_exits_with_reason_filter(kvm: Kvm, no_fred: tuple) -> None:
    flt = deny(TSC, EFER)
    with Probe.create(kvm, cpuid=no_fred, exits=ExitReason.FILTER, msr_filter=flt) as probe:
        obs = probe.run([read(TSC), write(EFER, 0), read(0x3B)])
    assert [[r.exit.reason for r in o.exits] for o in obs] == [
        [ExitReason.FILTER], [ExitReason.FILTER], []]
    assert [o.result for o in obs] == [Result.GP, Result.GP, Result.OK]


def test_a_filter_denial_without_the_filter_exit_is_gp(kvm: Kvm, no_fred: tuple) -> None:
    with Probe.create(kvm, cpuid=no_fred, exits=ExitReason.UNKNOWN,
                      msr_filter=deny(TSC)) as probe:
        (obs,) = probe.run([read(TSC)])
    assert (obs.result, obs.exits) == (Result.GP, ())


def test_an_x2apic_read_is_not_filtered_and_exits_inval(kvm: Kvm, no_fred: tuple) -> None:
    everything_denied = MsrFilter(flags=1, ranges=(
        FilterRange(flags=3, base=0x800, nmsrs=256, allow_bits=bytes(32)),))
    with Probe.create(kvm, cpuid=no_fred, exits=ALL, msr_filter=everything_denied) as probe:
        (obs,) = probe.run([read(X2APIC_TPR)])
    assert [r.exit for r in obs.exits] == [
        X86Rdmsr(reason=ExitReason.INVAL, index=X2APIC_TPR, data=0)]


def test_host_accesses_bypass_the_filter_and_report_zero_processed(
        kvm: Kvm, no_fred: tuple) -> None:
    ops = [MsrAccess(msr=TSC, access=R, initiator=Initiator.HOST),
           MsrAccess(msr=NONEXISTENT_MSR, access=R, initiator=Initiator.HOST),
           MsrAccess(msr=NONEXISTENT_MSR, access=W, value=1, initiator=Initiator.HOST),
           read(TSC)]
    with Probe.create(kvm, cpuid=no_fred, exits=ALL, msr_filter=deny(TSC)) as probe:
        obs = probe.run(ops)
    assert [(o.position, o.result) for o in obs] == [
        (0, Result.OK), (1, Result.FAILED), (2, Result.FAILED), (3, Result.GP)]
    assert obs[0].value is not None and obs[0].value > 0
    assert [r.exit.reason for r in obs[3].exits] == [ExitReason.FILTER]


def test_replacing_the_filter_between_runs_moves_the_exit(kvm: Kvm, no_fred: tuple) -> None:
    # userspace_msr_exit_test "permission bitmap": deny FS_BASE reads, then GS_BASE, then none.
    ops = [read(FS_BASE), read(GS_BASE)]
    with Probe.create(kvm, cpuid=no_fred, exits=ExitReason.FILTER) as probe:
        exited = []
        for flt in (deny(FS_BASE, flags=1), deny(GS_BASE, flags=1), NO_FILTER):
            probe.vm.set_msr_filter(flt)
            exited.append([o.op.msr for o in probe.run(ops) if o.exits])
    assert exited == [[FS_BASE], [GS_BASE], []]


def test_thousands_of_ops_take_one_kvm_run_plus_one_per_userspace_exit(
        kvm: Kvm, no_fred: tuple) -> None:
    ops = [read(EFER), write(0x3B, 0), read(TSC)] * 2000 + [read(NONEXISTENT_MSR)] * 7
    with Probe.create(kvm, cpuid=no_fred, exits=ExitReason.UNKNOWN) as probe:
        obs = probe.run(ops)
        assert probe.vcpu.runs == 1 + 7
    assert len(obs) == len(ops)
    assert [o.position for o in obs] == list(range(len(ops)))
    assert sum(len(o.exits) for o in obs) == 7
    assert all(o.exits[0].position == o.position for o in obs[-7:])


def test_a_table_longer_than_one_segment_is_walked_across_segments(
        kvm: Kvm, no_fred: tuple) -> None:
    ops = [write(0x3B, i) if i % 2 else read(0x3B) for i in range(5000)]
    with Probe.create(kvm, cpuid=no_fred) as probe:
        obs = probe.run(ops)
        assert probe.vcpu.runs == 1
    # Each read sees the TSC_ADJUST value the write before it stored.
    assert [o.value for o in obs[2::2]] == list(range(1, 4999, 2))


def test_an_unexpected_guest_exception_is_a_guest_fault(kvm: Kvm, no_fred: tuple) -> None:
    with Probe.create(kvm, cpuid=no_fred) as probe:
        probe.memory.write(CODE_ADDR, b"\x0f\x0b")  # ud2 in place of the first instruction
        with pytest.raises(GuestFault) as caught:
            probe.run([read(TSC)])
    assert (caught.value.vector, caught.value.cs, caught.value.ip) == (6, 0, CODE_ADDR)


def test_an_exit_the_probe_does_not_make_is_unexpected(kvm: Kvm, no_fred: tuple) -> None:
    with Probe.create(kvm, cpuid=no_fred) as probe:
        probe.memory.write(CODE_ADDR, b"\xe6\x80")  # out 0x80, al
        with pytest.raises(UnexpectedExit, match="only makes MSR exits and HLT"):
            probe.run([read(TSC)])


def test_a_guest_that_loops_forever_times_out_within_the_bound(
        kvm: Kvm, no_fred: tuple) -> None:
    with Probe.create(kvm, cpuid=no_fred) as probe:
        probe.memory.write(CODE_ADDR, b"\xeb\xfe")  # jmp $
        started = time.monotonic()
        with pytest.raises(GuestTimeout) as caught:
            probe.run([read(TSC)], time_limit_s=0.3)
        elapsed = time.monotonic() - started
        assert 0.3 <= elapsed < 0.8
        assert caught.value.time_limit_s == 0.3
        # The vCPU is usable again afterwards (immediate_exit was cleared).
        probe.memory.write(CODE_ADDR, PROGRAM.code[:2])
        assert probe.run([read(TSC)])[0].result is Result.OK


def test_a_timeout_in_the_answer_callback_stops_the_next_kvm_run(
        kvm: Kvm, no_fred: tuple) -> None:
    def slow(exit_: MsrExit) -> MsrAnswer:
        time.sleep(0.2)
        return ANSWER_GP

    with Probe.create(kvm, cpuid=no_fred, exits=ExitReason.UNKNOWN) as probe:
        started = time.monotonic()
        with pytest.raises(GuestTimeout):
            probe.run([read(NONEXISTENT_MSR)] * 100, answer=slow, time_limit_s=0.3)
        assert time.monotonic() - started < 0.8
        assert [o.result for o in probe.run([read(TSC), read(NONEXISTENT_MSR)])] == [
            Result.OK, Result.GP]



def test_a_gp_not_raised_by_the_probe_msr_instructions_is_a_guest_fault(
        kvm: Kvm, no_fred: tuple) -> None:
    with Probe.create(kvm, cpuid=no_fred) as probe:
        probe.memory.write(CODE_ADDR, b"\xcd\x0d")  # int 13: vector 13 from elsewhere
        with pytest.raises(GuestFault) as caught:
            probe.run([read(TSC)])
    assert (caught.value.vector, caught.value.ip) == (13, CODE_ADDR + 2)


def test_a_run_that_raised_mid_exit_leaves_the_probe_usable(kvm: Kvm, no_fred: tuple) -> None:
    def refuse(exit_: MsrExit) -> MsrAnswer:
        raise RuntimeError("the scenario has no answer")

    with Probe.create(kvm, cpuid=no_fred, exits=ExitReason.UNKNOWN) as probe:
        with pytest.raises(RuntimeError):
            probe.run([read(NONEXISTENT_MSR)], answer=refuse)
        # KVM finishes the half-done RDMSR before the new run sets the registers.
        obs = probe.run([write(0x3B, 5), read(0x3B), read(NONEXISTENT_MSR)])
        assert [(o.result, o.value) for o in obs] == [
            (Result.OK, None), (Result.OK, 5), (Result.GP, None)]
        assert probe.vcpu.runs == 1 + 1 + 1

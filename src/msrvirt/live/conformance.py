"""Run a probe scenario (conform/scenario.py) on this host's KVM and record what userspace sees.

The probe VM gets the host's supported CPUID with each feature msrvirt knows set or
cleared as the scenario asks; what the guest actually got (KVM or its backend may rewrite
CPUID on KVM_SET_CPUID2) is read back and returned, so the model predicts for the CPUID
that was really in force (docs/live.md, "Where this kernel differs").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from msrvirt.arch.cpuid import CPUID_BITS, HYPERVISOR_LEAVES, Feature, Reg
from msrvirt.arch.hosts import cpuid_leaf, features_from_cpuid, kvm_cpuid_base
from msrvirt.arch.kvm import Access
from msrvirt.conform.predict import Seen, errno_name
from msrvirt.conform.scenario import (
    Answers,
    EnableExits,
    GuestOps,
    HostOps,
    ProbeScenario,
    SetFilter,
)
from msrvirt.live.errors import KvmError
from msrvirt.live.exits import ANSWER_GP, MsrAnswer, MsrExit, X86Rdmsr
from msrvirt.live.kvm import CpuidEntry, Kvm
from msrvirt.live.probe import DEFAULT_TIME_LIMIT_S, Observation, Probe
from msrvirt.live.uapi import Cap

Progress = Callable[[int], None]  # called with the number of operations just done


@dataclass(frozen=True, slots=True, kw_only=True)
class ScenarioRun:
    """What one scenario did on this host, one `Seen` per operation in order."""

    guest_features: frozenset[Feature]  # read back from the vCPU after KVM_SET_CPUID2
    observed: tuple[Seen, ...]


def edit_cpuid(entries: Sequence[CpuidEntry], wanted: frozenset[Feature]) -> tuple[CpuidEntry, ...]:
    """``entries`` with every known feature bit set iff the feature is in ``wanted``."""
    by_key = {e.key: e for e in entries}
    base = kvm_cpuid_base({e.key: e.regs for e in entries})
    for feat, bit in CPUID_BITS.items():
        leaf = cpuid_leaf(bit.leaf, base)
        entry = None if leaf is None else by_key.get((leaf, bit.subleaf))
        if entry is None:
            continue
        field = bit.reg.value
        regs = dict(zip((r.value for r in Reg), entry.regs, strict=True))
        value = regs[field] | (1 << bit.bit) if feat in wanted else regs[field] & ~(1 << bit.bit)
        by_key[entry.key] = dataclasses.replace(entry, **{field: value})
    return tuple(by_key[e.key] for e in entries)


# Hyper-V's leaves (TLFS: "Microsoft Hv" at 0x40000000, the "Hv#1" interface at 0x40000001,
# which is what cpuid.c kvm_cpuid_has_hyperv looks for); KVM's own then move up by 0x100.
HYPERV_VENDOR = (HYPERVISOR_LEAVES.start + 5,  # max leaf
                 0x7263694D, 0x666F736F, 0x76482074)  # "Microsoft Hv"
HYPERV_INTERFACE = 0x31237648  # "Hv#1"
KVM_LEAVES_MOVED = 0x100


def with_hyperv_leaves(entries: Sequence[CpuidEntry]) -> tuple[CpuidEntry, ...]:
    """``entries`` with Hyper-V's vendor and interface leaves first and KVM's moved behind."""
    out = []
    for e in entries:
        if e.function in HYPERVISOR_LEAVES:
            moved = e.function + KVM_LEAVES_MOVED
            eax = e.eax + KVM_LEAVES_MOVED if e.function == HYPERVISOR_LEAVES.start else e.eax
            out.append(dataclasses.replace(e, function=moved, eax=eax))
        else:
            out.append(e)
    eax, ebx, ecx, edx = HYPERV_VENDOR
    base = HYPERVISOR_LEAVES.start
    out.append(CpuidEntry(function=base, index=0, flags=0, eax=eax, ebx=ebx, ecx=ecx, edx=edx))
    out.append(CpuidEntry(function=base + 1, index=0, flags=0, eax=HYPERV_INTERFACE, ebx=0,
                          ecx=0, edx=0))
    return tuple(out)


def _answerer(answers: Answers) -> Callable[[MsrExit], MsrAnswer]:
    def answer(exit_: MsrExit) -> MsrAnswer:
        ans = answers.answer(exit_.index, Access.R if isinstance(exit_, X86Rdmsr) else Access.W)
        return ANSWER_GP if ans.error else MsrAnswer(value=ans.value)

    return answer


def seen(obs: Observation) -> Seen:
    """What userspace saw of one probe operation."""
    return Seen(result=obs.result, exit=obs.exits[0].exit.reason if obs.exits else None,
                value=obs.value)


def run_scenario(kvm: Kvm, ps: ProbeScenario, guest: frozenset[Feature], *,
                 progress: Progress | None = None,
                 time_limit_s: float = DEFAULT_TIME_LIMIT_S) -> ScenarioRun:
    """Run every step of ``ps`` in one fresh probe VM whose CPUID asks for ``guest``."""
    cpuid = edit_cpuid(kvm.supported_cpuid(), guest)
    if ps.hyperv:
        cpuid = with_hyperv_leaves(cpuid)
    answer = _answerer(ps.answers)
    observed: list[Seen] = []
    with Probe.create(kvm, cpuid=cpuid, exits=ps.exits, msr_filter=ps.filter) as probe:
        if ps.enforce_pv_cpuid:
            probe.vcpu.enable_cap(Cap.ENFORCE_PV_FEATURE_CPUID, 1)
        got = features_from_cpuid({e.key: e.regs for e in probe.guest_cpuid})
        for step in ps.steps:
            if isinstance(step, GuestOps | HostOps):
                observed.extend(seen(o) for o in probe.run(step.ops, answer=answer,
                                                           time_limit_s=time_limit_s))
                done = len(step.ops)
            else:
                try:
                    if isinstance(step, SetFilter):
                        probe.vm.set_msr_filter(step.filter)
                    else:
                        assert isinstance(step, EnableExits)
                        probe.vm.enable_user_space_msr(step.mask)
                    observed.append(Seen(errno=None))
                except KvmError as err:
                    observed.append(Seen(errno=errno_name(err.errno)))
                done = 1
            if progress is not None:
                progress(done)
    return ScenarioRun(guest_features=got, observed=tuple(observed))

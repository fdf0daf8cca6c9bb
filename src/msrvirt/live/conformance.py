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

from msrvirt.arch.cpuid import CPUID_BITS, Feature, Reg
from msrvirt.arch.hosts import features_from_cpuid
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

Progress = Callable[[int], None]  # called with the number of operations just done


@dataclass(frozen=True, slots=True, kw_only=True)
class ScenarioRun:
    """What one scenario did on this host, one `Seen` per operation in order."""

    guest_features: frozenset[Feature]  # read back from the vCPU after KVM_SET_CPUID2
    observed: tuple[Seen, ...]


def edit_cpuid(entries: Sequence[CpuidEntry], wanted: frozenset[Feature]) -> tuple[CpuidEntry, ...]:
    """``entries`` with every known feature bit set iff the feature is in ``wanted``."""
    by_key = {e.key: e for e in entries}
    for feat, bit in CPUID_BITS.items():
        entry = by_key.get((bit.leaf, bit.subleaf))
        if entry is None:
            continue
        field = bit.reg.value
        regs = dict(zip((r.value for r in Reg), entry.regs, strict=True))
        value = regs[field] | (1 << bit.bit) if feat in wanted else regs[field] & ~(1 << bit.bit)
        by_key[entry.key] = dataclasses.replace(entry, **{field: value})
    return tuple(by_key[e.key] for e in entries)


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
    answer = _answerer(ps.answers)
    observed: list[Seen] = []
    with Probe.create(kvm, cpuid=cpuid, exits=ps.exits, msr_filter=ps.filter) as probe:
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

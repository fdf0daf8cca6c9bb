"""Predict, with the model, what a real kernel does for each operation of a probe scenario,
and compare a prediction with what was observed.  Pure: the live layer observes.

What can be seen from userspace (kvm-msr-facts.md sections 4 and 5): for a guest access,
whether it exited to userspace and with which reason, then whether the guest completed
the instruction or took #GP, and the value a read returned; for a host access, whether
KVM_GET/SET_MSRS processed the entry and the value read; for an ioctl, its errno.
"""

from __future__ import annotations

import errno as _errno
from collections.abc import Iterator
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from msrvirt.arch.hosts import HostProfile
from msrvirt.arch.kvm import EXIT_REASON_VALID_MASK, Access, ExitReason
from msrvirt.conform.scenario import (
    Answers,
    EnableExits,
    GuestOps,
    HostOps,
    ProbeScenario,
    SetFilter,
)
from msrvirt.errors import FilterError
from msrvirt.policy.decide import Decision, Initiator, MsrAccess, Outcome, decide
from msrvirt.policy.filter import NO_FILTER
from msrvirt.policy.intercepts import compute_intercepts
from msrvirt.policy.policies import DEFAULT_POLICY, policy
from msrvirt.policy.scenario import Runtime, Scenario


class Result(StrEnum):
    """How an MSR operation ended, as userspace can see it."""

    OK = "ok"  # guest: the instruction completed; host: the entry was processed
    GP = "gp"  # guest: #GP was delivered
    FAILED = "failed"  # host: KVM_GET/SET_MSRS processed 0 entries


class Scope(StrEnum):
    """How much of an MSR prediction the model stands behind."""

    FULL = "full"  # result, exit reason and (where predicted) value
    FILTER = "filter"  # only whether the access exits with reason FILTER


@dataclass(frozen=True, slots=True, kw_only=True)
class Seen:
    """What userspace sees of one operation (predicted or observed)."""

    result: Result | None = None  # MSR operations
    exit: ExitReason | None = None  # guest MSR operations that exited to userspace
    value: int | None = None  # reads, where known
    errno: str | None = None  # ioctls (set_filter, enable_exits): None = success

    def to_obj(self) -> dict[str, Any]:
        if self.result is None:
            return {"errno": self.errno}
        return {"result": self.result.value,
                "exit": self.exit.name.lower() if self.exit and self.exit.name else None,
                "value": self.value}


@dataclass(frozen=True, slots=True, kw_only=True)
class Prediction:
    """The model's expectation for one operation, how far it vouches for it, and why."""

    seen: Seen
    scope: Scope
    why: str


def probe_scenario_for(host: HostProfile, guest: frozenset[Any], *,
                       enforce_pv_cpuid: bool = False, hyperv: bool = False) -> Scenario:
    """The model scenario of a probe VM: the host's default policy, no filter, no exits, and
    no in-kernel local APIC (the probe makes no KVM_CREATE_IRQCHIP; live/probe.py)."""
    runtime = Runtime(lapic_in_kernel=False, enforce_pv_cpuid=enforce_pv_cpuid, hyperv=hyperv)
    return Scenario(host=host, guest=guest, policy=policy(DEFAULT_POLICY[host.backend]),
                    runtime=runtime)


def predict(host: HostProfile, guest: frozenset[Any], ps: ProbeScenario) -> Iterator[Prediction]:
    """One prediction per operation of ``ps`` (in order), for a VM on ``host``.

    Decisions are per access; what earlier writes in the same VM left in an MSR is tracked
    here (the value a write stores, where the model knows it) and handed to the next
    access as its current value.
    """
    s = replace(probe_scenario_for(host, guest, enforce_pv_cpuid=ps.enforce_pv_cpuid,
                                   hyperv=ps.hyperv),
                filter=ps.filter or NO_FILTER, exits=ps.exits)
    stored: dict[int, int | None] = {}  # MSR -> value now (None: changed to an unknown value)
    for step in ps.steps:
        if isinstance(step, GuestOps | HostOps):
            ints = compute_intercepts(s)
            for op in step.ops:
                known = op.msr in stored
                current = stored.get(op.msr)
                d = decide(s, op._replace(current=current) if current is not None else op, ints)
                if op.access is Access.W and d.changes:
                    stored[op.msr] = d.stored
                elif op.access is Access.R and known and current is None and d.value is not None:
                    d = d._replace(value=None)  # an earlier write left a value we do not know
                yield _predict_msr(s, op, d, ps.answers)
            if isinstance(step, GuestOps) and not s.runtime.vcpu_has_run:
                s = replace(s, runtime=replace(s.runtime, vcpu_has_run=True))
        elif isinstance(step, SetFilter):
            try:
                step.filter.validate()
            except FilterError as err:
                yield Prediction(seen=Seen(errno=err.errno_name), scope=Scope.FULL,
                                 why=str(err))
                continue
            s = replace(s, filter=step.filter)
            yield Prediction(seen=Seen(errno=None), scope=Scope.FULL,
                             why="a valid filter: KVM installs it and recomputes intercepts")
        else:
            assert isinstance(step, EnableExits)
            if step.mask & ~EXIT_REASON_VALID_MASK:
                yield Prediction(seen=Seen(errno="EINVAL"), scope=Scope.FULL,
                                 why=f"mask bits {step.mask & ~EXIT_REASON_VALID_MASK:#x} are"
                                 " outside INVAL|UNKNOWN|FILTER")
                continue
            s = replace(s, exits=ExitReason(step.mask))
            yield Prediction(seen=Seen(errno=None), scope=Scope.FULL,
                             why="valid exit mask: KVM_CAP_X86_USER_SPACE_MSR enabled")


def _predict_msr(s: Scenario, op: MsrAccess, d: Decision, answers: Answers) -> Prediction:
    scope = Scope.FULL if d.exact or d.filtered else Scope.FILTER
    why = d.summary
    if op.initiator is Initiator.HOST:
        ok = d.outcome is Outcome.EMULATED
        return Prediction(seen=Seen(result=Result.OK if ok else Result.FAILED,
                                    value=d.value if ok else None), scope=scope, why=why)
    if d.outcome is Outcome.EXIT:
        ans = answers.answer(op.msr, op.access)
        if ans.error:
            seen = Seen(result=Result.GP, exit=d.exit_reason)
        else:
            seen = Seen(result=Result.OK, exit=d.exit_reason,
                        value=ans.value if op.access is Access.R else None)
        return Prediction(seen=seen, scope=scope,
                          why=f"{why}; userspace answers {'#GP' if ans.error else 'ok'}")
    if d.outcome is Outcome.GP:
        return Prediction(seen=Seen(result=Result.GP), scope=scope, why=why)
    return Prediction(seen=Seen(result=Result.OK,
                                value=d.value if op.access is Access.R else None),
                      scope=scope, why=why)


def agrees(p: Prediction, observed: Seen) -> bool:
    """Whether ``observed`` matches ``p`` within the prediction's scope."""
    want = p.seen
    if want.result is None:
        return want.errno == observed.errno
    if p.scope is Scope.FILTER:
        return (observed.exit is ExitReason.FILTER) == (want.exit is ExitReason.FILTER)
    if want.result is not observed.result or want.exit != observed.exit:
        return False
    return want.value is None or want.value == observed.value


def errno_name(code: int | None) -> str | None:
    """'EINVAL' for 22; None for success."""
    return None if code is None else _errno.errorcode.get(code, str(code))

"""The invariants of the FRED save/restore design, each a named, documented predicate.

A state invariant judges one reachable state; a transition invariant judges what one
event consumed or returned (an `Observation` of the machine).  Each check returns None
when it holds and a one-line description of what went wrong otherwise.  The claims come
from the seed and its review thread (kvm-msr-facts.md sections 7 and 10); docs/check.md
gives each one's scope.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from msrvirt.arch.kvm import Access
from msrvirt.errors import UnknownNameError
from msrvirt.machine.model import (
    BELIEF,
    C_CACHE,
    C_HW,
    C_MODE,
    C_TASK,
    CPU_BASE,
    CPU_STRIDE,
    G_CPUID,
    G_LOADED,
    SLOTS,
    Event,
    GuestCpu,
    Machine,
    Mode,
    Observation,
    ObsKind,
    Slot,
    State,
    is_guest_value,
    stack_top,
    value_name,
)

StateCheck = Callable[[Machine, State], str | None]
TransitionCheck = Callable[[Machine, State, Event, Observation], str | None]


class Scope(Enum):
    """What an invariant judges."""

    STATE = "every reachable state"
    TRANSITION = "every event's observation"


@dataclass(frozen=True, slots=True, kw_only=True)
class Invariant:
    """One named invariant with its claim and where the claim comes from."""

    name: str
    claim: str
    source: str
    scope: Scope
    state_check: StateCheck | None = None
    transition_check: TransitionCheck | None = None
    observes: frozenset[ObsKind] = frozenset()  # the observations a transition check judges


def _host_safety(m: Machine, s: State, ev: Event, obs: Observation) -> str | None:
    if obs.kind is not ObsKind.HOST_DELIVERY:
        return None
    wanted = m.host_values(s, obs.cpu)
    for slot, value in obs.values:
        want = wanted[slot]
        if value != want:
            return (f"host event on cpu{obs.cpu} used {slot.label} = {value_name(value)},"
                    f" the host needs {value_name(want)}")
    return None


def _guest_integrity(m: Machine, s: State, ev: Event, obs: Observation) -> str | None:
    if obs.kind is ObsKind.GUEST_DELIVERY:
        what = "guest event delivery used"
    elif obs.kind is ObsKind.GUEST_READ:
        what = "guest RDMSR returned"
    else:
        return None
    for slot, value in obs.values:
        want = s[BELIEF + slot]
        if value != want:
            return (f"{what} {slot.label} = {value_name(value)} on cpu{obs.cpu},"
                    f" the guest's value is {value_name(want)}")
    return None


def _filter_compliance(m: Machine, s: State, ev: Event, obs: Observation) -> str | None:
    if not obs.direct:
        return None
    access = Access.R if obs.kind is ObsKind.GUEST_READ else Access.W
    for slot, _ in obs.values:
        if not m.filter_allows(s, slot, access):
            return (f"guest {access.label} of {slot.label} reached the hardware on cpu{obs.cpu}"
                    " although the filter denies it")
    return None


def _rsp0_cache(m: Machine, s: State) -> str | None:
    loaded = s[G_LOADED]
    for c in range(m.bounds.cpus):
        base = CPU_BASE + c * CPU_STRIDE
        if loaded == c or s[base + C_MODE] == Mode.GUEST:
            continue
        cache = s[base + C_CACHE]
        msr = s[base + C_HW]  # + Slot.RSP0
        if cache == stack_top(s[base + C_TASK]) and msr != cache:
            return (f"cpu{c}: fred_rsp0 cache = {value_name(cache)} (its task's stack top)"
                    f" but FRED_RSP0 = {value_name(msr)}")
    return None


def _pl0_ssp_virtual(m: Machine, s: State) -> str | None:
    if s[G_CPUID] == GuestCpu.FRED_SHSTK:
        return None
    for c in range(m.bounds.cpus):
        value = s[CPU_BASE + c * CPU_STRIDE + C_HW + Slot.PL0_SSP]
        if is_guest_value(value):
            return (f"cpu{c}: PL0_SSP holds the guest value {value_name(value)}"
                    " but the guest has no shadow stacks")
    return None


def _migration(m: Machine, s: State) -> str | None:
    for c in range(m.bounds.cpus):
        if s[CPU_BASE + c * CPU_STRIDE + C_MODE] == Mode.GUEST:
            return None  # KVM cannot run while the vCPU is in guest mode
    got = m.kvm_get_all(s)
    if got == s[BELIEF:BELIEF + len(SLOTS)]:
        return None
    for slot in SLOTS:
        if got[slot] != s[BELIEF + slot]:
            return (f"KVM_GET_MSRS would return {slot.label} = {value_name(got[slot])},"
                    f" the guest's value is {value_name(s[BELIEF + slot])}")
    raise AssertionError("unreachable: the tuples differ in some slot")


INVARIANTS: tuple[Invariant, ...] = (
    Invariant(
        name="host-safety", scope=Scope.TRANSITION, transition_check=_host_safety,
        observes=frozenset({ObsKind.HOST_DELIVERY}),
        claim="every host event delivery consumes the host's values of the MSRs it uses"
        " (RSP of its stack level, STKLVLS, CONFIG); an event from host user mode uses the"
        " running task's stack top as RSP0",
        source="seed ('safe to passthrough', 'KVM can run safely with guest values in RSP0');"
        " kvm-msr-facts.md 7, 8; fred-arch-facts.md 3"),
    Invariant(
        name="guest-integrity", scope=Scope.TRANSITION, transition_check=_guest_integrity,
        observes=frozenset({ObsKind.GUEST_DELIVERY, ObsKind.GUEST_READ}),
        claim="every guest RDMSR returns the last value the guest or KVM_SET_MSRS wrote, and"
        " every guest event delivery uses the guest's values",
        source="kvm-msr-facts.md 5-7"),
    Invariant(
        name="rsp0-cache", scope=Scope.STATE, state_check=_rsp0_cache,
        claim="in host context (guest state not loaded on the CPU), if the CPU's cached rsp0"
        " equals its running task's stack top, FRED_RSP0 equals the cache",
        source="H. Peter Anvin in the seed's thread; kvm-msr-facts.md 7"),
    Invariant(
        name="filter-compliance", scope=Scope.TRANSITION, transition_check=_filter_compliance,
        observes=frozenset({ObsKind.GUEST_READ, ObsKind.GUEST_WRITE}),
        claim="a guest access the userspace filter denies never reaches the hardware MSR",
        source="kvm-msr-facts.md 2, 4"),
    Invariant(
        name="pl0-ssp-virtual", scope=Scope.STATE, state_check=_pl0_ssp_virtual,
        claim="when the guest lacks shadow stacks, no CPU's PL0_SSP holds a guest value",
        source="seed ('the guest value remains fully virtual'); kvm-msr-facts.md 6"),
    Invariant(
        name="migration", scope=Scope.STATE, state_check=_migration,
        claim="whenever KVM can run (the vCPU outside guest mode), KVM_GET_MSRS returns the"
        " guest's current value of every FRED MSR and PL0_SSP",
        source="kvm-msr-facts.md 6, 7 (KVM_GET/SET_MSRS of RSP0)"),
)

BY_NAME: dict[str, Invariant] = {i.name: i for i in INVARIANTS}


def invariant(name: str) -> Invariant:
    """Return the invariant called ``name``."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise UnknownNameError("invariant", name, "one of " + ", ".join(BY_NAME)) from None

"""The invariants of the FRED save/restore design, each a named, documented list of checks.

A state invariant is a list of `Require`s over the state variables, judged on every
reachable state; a transition invariant judges what one event consumed or returned at
its `Observe` point (an event delivery, an MSR read or write).  Both are expressions of
the model's declaration (`msrvirt.machine.model`), so the Python explorer and the
Promela model check the very same conditions; a check's `Message` says what went wrong.
The first failing check of an invariant gives its message.  The claims come from the
seed and its review thread (kvm-msr-facts.md sections 7 and 10); docs/check.md gives
each one's scope.  To add an invariant, append one to `INVARIANTS`.  The nested designs'
invariants (machine/nested.py) judge L1 and L2; an invariant's checks are empty for the
machines it does not apply to (`Applies`), so every engine can ask every invariant.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from msrvirt.arch.kvm import Access
from msrvirt.errors import UnknownNameError
from msrvirt.machine.model import (
    BELIEF,
    CACHE,
    HW,
    LOADED,
    SLOTS,
    TASK_OF,
    Machine,
    ObsKind,
    Slot,
    any_in_guest,
    filter_allows,
    host_needs,
    in_guest,
    is_written,
    kvm_get,
    shstk,
    top_of,
)
from msrvirt.machine.nested import (
    L2_ACCESS,
    L2_BELIEF,
    LEVEL_OF,
    NESTED_SLOTS,
    Level,
    NestedObs,
    l0_filter_allows,
    l1_intercepts,
    l1_needs,
    l1_view,
)
from msrvirt.machine.spec import Observe, Require, any_of, eq, message, ne, not_

StateChecks = Callable[[Machine], Sequence[Require]]
Judge = Callable[[Machine, Observe], Sequence[Require]]


class Scope(Enum):
    """What an invariant judges."""

    STATE = "every reachable state"
    TRANSITION = "every event's observation"


class Applies(Enum):
    """Which designs' machines an invariant judges."""

    SINGLE = "the single-level designs"
    NESTED = "the nested designs (L0, L1 and L2)"
    ALL = "every design"

    def to(self, m: Machine) -> bool:
        if self is Applies.ALL:
            return True
        return (m.design.nested is not None) == (self is Applies.NESTED)


@dataclass(frozen=True, slots=True, kw_only=True)
class Invariant:
    """One named invariant with its claim, where the claim comes from, and its checks."""

    name: str
    claim: str
    source: str
    scope: Scope
    state: StateChecks | None = None  # STATE: the checks of one state
    judge: Judge | None = None  # TRANSITION: the checks of one observation
    observes: frozenset[Enum] = frozenset()  # the observations a transition check judges
    applies: Applies = Applies.SINGLE

    def checks(self, m: Machine, obs: Observe | None = None) -> Sequence[Require]:
        """The checks of a state (``obs`` None) or of one observation point; none where the
        invariant does not apply to ``m``."""
        if not self.applies.to(m):
            return ()
        if obs is None:
            return self.state(m) if self.state is not None else ()
        if self.judge is None or obs.kind not in self.observes:
            return ()
        return self.judge(m, obs)


def _host_safety(m: Machine, o: Observe) -> list[Require]:
    return [Require(holds=eq(value, host_needs(slot, o.cpu)), says=message(
        f"host event on cpu{o.cpu} used {slot.label} = {{got}}, the host needs {{want}}",
        got=value, want=host_needs(slot, o.cpu))) for slot, value in o.items]


def _guest_integrity(m: Machine, o: Observe) -> list[Require]:
    what = ("guest event delivery used" if o.kind is ObsKind.GUEST_DELIVERY
            else "guest RDMSR returned")
    return [Require(holds=eq(value, BELIEF[slot]), says=message(
        f"{what} {slot.label} = {{got}} on cpu{o.cpu}, the guest's value is {{want}}",
        got=value, want=BELIEF[slot])) for slot, value in o.items]


def _filter_compliance(m: Machine, o: Observe) -> list[Require]:
    if not o.direct:
        return []
    access = _access(o)
    return [Require(holds=filter_allows(slot, access), says=message(
        f"guest {access.label} of {slot.label} reached the hardware on cpu{o.cpu}"
        " although the filter denies it")) for slot, _ in o.items]


def _rsp0_cache(m: Machine) -> list[Require]:
    out = []
    for c in range(m.bounds.cpus):
        cache, msr = CACHE[c], HW[c, Slot.RSP0]
        out.append(Require(
            holds=any_of(eq(LOADED, c), in_guest(c), ne(cache, top_of(TASK_OF[c])), eq(msr, cache)),
            says=message(f"cpu{c}: fred_rsp0 cache = {{cache}} (its task's stack top)"
                         " but FRED_RSP0 = {msr}", cache=cache, msr=msr)))
    return out


def _pl0_ssp_virtual(m: Machine) -> list[Require]:
    return [Require(holds=any_of(shstk(), not_(is_written(HW[c, Slot.PL0_SSP]))), says=message(
        f"cpu{c}: PL0_SSP holds the guest value {{value}} but the guest has no shadow stacks",
        value=HW[c, Slot.PL0_SSP])) for c in range(m.bounds.cpus)]


def _migration(m: Machine) -> list[Require]:
    # KVM cannot run while the vCPU is in guest mode.
    busy = any_in_guest(m.bounds)
    out = []
    for slot in SLOTS:
        got = kvm_get(m.design, m.bounds, slot)
        out.append(Require(holds=any_of(busy, eq(got, BELIEF[slot])), says=message(
            f"KVM_GET_MSRS would return {slot.label} = {{got}}, the guest's value is {{want}}",
            got=got, want=BELIEF[slot])))
    return out


def _access(o: Observe) -> Access:
    return Access.R if o.kind in (ObsKind.GUEST_READ, NestedObs.L2_READ) else Access.W


def _l1_state(m: Machine, o: Observe) -> list[Require]:
    return [Require(holds=eq(value, l1_needs(slot)), says=message(
        f"L1 event used {slot.label} = {{got}}, L1's own value is {{want}}",
        got=value, want=l1_needs(slot))) for slot, value in o.items]


def _l2_integrity(m: Machine, o: Observe) -> list[Require]:
    if o.kind not in (NestedObs.L2_DELIVERY, NestedObs.L2_READ):
        return []
    what = "L2 event delivery used" if o.kind is NestedObs.L2_DELIVERY else "L2 RDMSR returned"
    return [Require(holds=eq(value, L2_BELIEF[slot]), says=message(
        f"{what} {slot.label} = {{got}}, L2's value is {{want}}",
        got=value, want=L2_BELIEF[slot])) for slot, value in o.items]


def _l2_via_l1(m: Machine) -> list[Require]:
    out = []
    for slot in NESTED_SLOTS:
        got = l1_view(m.design, m.bounds, slot)
        out.append(Require(holds=any_of(eq(LEVEL_OF, Level.L2), eq(got, L2_BELIEF[slot])),
                           says=message(f"L1 reads L2's {slot.label} = {{got}}, L2 wrote {{want}}",
                                        got=got, want=L2_BELIEF[slot])))
    return out


def _l1_intercepts(m: Machine, o: Observe) -> list[Require]:
    access = _access(o)
    where = "ran on the CPU" if o.direct else "was handled by L0"
    return [Require(holds=not_(l1_intercepts(m.design, slot, access)), says=message(
        f"L2 {access.label} of {slot.label} {where} although L1's bitmap intercepts it"))
        for slot, _ in o.items]


def _l2_filter(m: Machine, o: Observe) -> list[Require]:
    if not o.direct:
        return []
    access = _access(o)
    return [Require(holds=l0_filter_allows(slot, access), says=message(
        f"L2 {access.label} of {slot.label} reached the hardware although L0's filter denies"
        " it")) for slot, _ in o.items]


INVARIANTS: tuple[Invariant, ...] = (
    Invariant(
        name="host-safety", scope=Scope.TRANSITION, judge=_host_safety,
        observes=frozenset({ObsKind.HOST_DELIVERY}), applies=Applies.ALL,
        claim="every host event delivery consumes the host's values of the MSRs it uses"
        " (RSP of its stack level, STKLVLS, CONFIG); an event from host user mode uses the"
        " running task's stack top as RSP0",
        source="seed ('safe to passthrough', 'KVM can run safely with guest values in RSP0');"
        " kvm-msr-facts.md 7, 8; fred-arch-facts.md 3"),
    Invariant(
        name="guest-integrity", scope=Scope.TRANSITION, judge=_guest_integrity,
        observes=frozenset({ObsKind.GUEST_DELIVERY, ObsKind.GUEST_READ}),
        claim="every guest RDMSR returns the last value the guest or KVM_SET_MSRS wrote, and"
        " every guest event delivery uses the guest's values",
        source="kvm-msr-facts.md 5-7"),
    Invariant(
        name="rsp0-cache", scope=Scope.STATE, state=_rsp0_cache, applies=Applies.ALL,
        claim="in host context (guest state not loaded on the CPU), if the CPU's cached rsp0"
        " equals its running task's stack top, FRED_RSP0 equals the cache",
        source="H. Peter Anvin in the seed's thread; kvm-msr-facts.md 7"),
    Invariant(
        name="filter-compliance", scope=Scope.TRANSITION, judge=_filter_compliance,
        observes=frozenset({ObsKind.GUEST_READ, ObsKind.GUEST_WRITE}),
        claim="a guest access the userspace filter denies never reaches the hardware MSR",
        source="kvm-msr-facts.md 2, 4"),
    Invariant(
        name="pl0-ssp-virtual", scope=Scope.STATE, state=_pl0_ssp_virtual,
        claim="when the guest lacks shadow stacks, no CPU's PL0_SSP holds a value the guest"
        " (or the VMM) wrote",
        source="seed ('the guest value remains fully virtual'); kvm-msr-facts.md 6"),
    Invariant(
        name="migration", scope=Scope.STATE, state=_migration,
        claim="whenever KVM can run (the vCPU outside guest mode), KVM_GET_MSRS returns the"
        " guest's current value of every FRED MSR and PL0_SSP",
        source="kvm-msr-facts.md 6, 7 (KVM_GET/SET_MSRS of RSP0)"),
    Invariant(
        name="l1-state", scope=Scope.TRANSITION, judge=_l1_state, applies=Applies.NESTED,
        observes=frozenset({NestedObs.L1_DELIVERY}),
        claim="L1 never runs on L2's FRED state after a nested exit: every L1 event delivery"
        " consumes L1's own values (its #DB stack at ring 0, its task's stack top from user mode)",
        source="v9 19/22 load_vmcs12_host_state; docs/nested.md"),
    Invariant(
        name="l2-integrity", scope=Scope.TRANSITION, judge=_l2_integrity, applies=Applies.NESTED,
        observes=frozenset({NestedObs.L2_DELIVERY, NestedObs.L2_READ}),
        claim="every L2 RDMSR returns what L2 last wrote, and every L2 event delivery uses L2's"
        " values, whoever holds them (the CPU, vmcs02, L0 or L1)",
        source="v9 19/22 prepare_vmcs02_rare, sync_vmcs02_to_vmcs12; docs/nested.md"),
    Invariant(
        name="l2-via-l1", scope=Scope.STATE, state=_l2_via_l1, applies=Applies.NESTED,
        claim="what L2 wrote is what L1 reads: whenever L2 is out, L1's view of L2's FRED MSRs"
        " (vmcs12's guest fields, L2's RSP0 and PL0_SSP) is L2's last write",
        source="v9 19/22 sync_vmcs02_to_vmcs12; docs/nested.md"),
    Invariant(
        name="l1-intercepts", scope=Scope.TRANSITION, judge=_l1_intercepts,
        applies=Applies.NESTED, observes=L2_ACCESS,
        claim="an MSR L1 intercepts never reaches L2's hardware without L1: every L2 access"
        " L1's bitmap intercepts is reflected to L1 (not run on the CPU, not handled by L0)",
        source="nested.c nested_vmx_prepare_msr_bitmap, nested_vmx_exit_handled_msr"),
    Invariant(
        name="l2-filter", scope=Scope.TRANSITION, judge=_l2_filter, applies=Applies.NESTED,
        observes=L2_ACCESS,
        claim="L0's userspace filter holds for L2: an L2 access L0's installed filter denies"
        " never reaches the hardware MSR",
        source="nested.c nested_vmx_prepare_msr_bitmap ('Always check vmcs01's bitmap to honor"
        " userspace MSR filters')"),
)

BY_NAME: dict[str, Invariant] = {i.name: i for i in INVARIANTS}


def invariant(name: str) -> Invariant:
    """Return the invariant called ``name``."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise UnknownNameError("invariant", name, "one of " + ", ".join(BY_NAME)) from None

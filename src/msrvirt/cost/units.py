"""Count the FRED MSR accesses one workload event causes, by driving the checker's machine.

Each kind of workload event (a `Unit`) is the event sequence it implies in the model of
`msrvirt.machine` (docs/check.md), run with `Machine.run` from a *resting state*: the
vCPU in guest mode, the guest in kernel mode.  For every guest RDMSR/WRMSR in it, the
observation of the same step says whether it ran on the hardware (``direct``) or was
intercepted (a VM exit, then KVM's emulation, or a #GP when the userspace filter refuses
it); the state is read through the declared fields (`Machine.get`); after
an intercepted access the driver re-enters the guest, as KVM does after emulating.

Why counting one unit per kind and scaling by the rates is sound: `explore_units`
starts from the warm state and applies every unit to every resting state it reaches,
until no new one appears (84 to 2,590 states, depending on design and guest CPUID).  It
checks that every unit ends in a resting state and that each unit's counts are the same
from every one of them, so any interleaving of units, in any order and number, costs
exactly the sum of its units' counts: the counts are linear in the rates.  That takes
up to half a second per design, so the tests run it (tests/test_cost_units.py) and
`unit_counts` runs each unit once, from the warm state.  The unit's event sequences follow
fred-arch-facts.md section 3, kvm-msr-facts.md section 7 and Linux's FRED code
(arch/x86/kernel/fred.c); docs/cost.md lists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import cache

from msrvirt.arch import msrs
from msrvirt.cost.workload import Workload
from msrvirt.machine.designs import Design
from msrvirt.machine.model import (
    BELIEF,
    CPUID,
    MODE_OF,
    RING_OF,
    TASK_OF,
    VCPU_TASK,
    Bounds,
    Ev,
    Event,
    GuestCpu,
    Machine,
    Mode,
    Observation,
    Ring,
    Slot,
    State,
    guest_value,
    machine,
)

# The ten FRED MSRs (fred-arch-facts.md section 2), reported one by one.  The machine
# keeps one representative of RSP1-3 and of SSP1-3: every design gives the three the same
# intercept rule and VMCS field pattern (docs/check.md, abstraction 1), so an access to
# RSP2 is driven as an access to the model's RSP1 and counted under RSP2.
FRED_MSRS: tuple[int, ...] = (*(m.index for m in msrs.FRED_MSRS), msrs.resolve_index("PL0_SSP"))
RSP0, RSP1, RSP2, RSP3, STKLVLS, SSP1, SSP2, SSP3, CONFIG, PL0_SSP = FRED_MSRS
SLOT_OF: dict[int, Slot] = {
    RSP0: Slot.RSP0, RSP1: Slot.RSP1, RSP2: Slot.RSP1, RSP3: Slot.RSP1,
    STKLVLS: Slot.STKLVLS, SSP1: Slot.SSP1, SSP2: Slot.SSP1, SSP3: Slot.SSP1,
    CONFIG: Slot.CONFIG, PL0_SSP: Slot.PL0_SSP,
}
_ROW = {msr: i for i, msr in enumerate(FRED_MSRS)}

# Two CPUs for migration, a third task for the vCPU thread to be preempted by, and two
# guest values so that every write changes the MSR (Linux writes RSP0 only when it changes).
COST_BOUNDS = Bounds(cpus=2, tasks=3, values=2)


class Unit(Enum):
    """A kind of workload event; the value is the `Workload` rate that counts it."""

    CONTEXT_SWITCH = "guest_context_switches"
    SYSCALL = "guest_syscalls"
    INTERRUPT = "guest_interrupts"
    NMI = "guest_nmis"
    DEBUG_TRAP = "guest_debug_traps"
    HOST_PREEMPTION = "host_preemptions"
    HOST_MIGRATION = "host_migrations"
    KVM_RUN_RETURN = "kvm_run_returns"
    CPU_BRINGUP = "cpu_bringups"
    PL0_SSP_WRITE = "guest_pl0_ssp_writes"


@dataclass(frozen=True, slots=True, kw_only=True)
class Write:
    """A guest WRMSR of ``msr``; the driver picks a guest value different from the current one."""

    msr: int


Action = Event | Write


def unit_rates(w: Workload) -> dict[Unit, float]:
    """How many of each unit ``w`` runs per second."""
    return {unit: getattr(w, unit.value).per_second for unit in Unit}

# Linux's FRED bring-up of a CPU, in order (arch/x86/kernel/fred.c, Linux 6.18):
# cpu_init_fred_exceptions writes CONFIG, STKLVLS = 0, RSP0 (from the per-CPU cache) and
# RSP1-3 = 0; cpu_init_fred_rsps then writes STKLVLS and RSP1-3 for real.  No SSP MSR:
# Linux enables no supervisor shadow stacks.
BRINGUP_WRITES: tuple[int, ...] = (CONFIG, STKLVLS, RSP0, RSP1, RSP2, RSP3, STKLVLS, RSP1, RSP2, RSP3)

@dataclass(frozen=True, slots=True, kw_only=True)
class Count:
    """Guest accesses of one MSR in one unit: intercepted (VM exits), emulated, direct."""

    msr: int
    exits: int  # intercepted: each a VM exit
    emulations: int  # exits KVM emulated (the rest the userspace filter refused with #GP)
    direct: int  # ran on the hardware MSR, no exit


class ModelError(RuntimeError):
    """The driver and the machine disagree (a bug in msrvirt, never bad input)."""


def _vcpu_cpu(m: Machine, s: State) -> int:
    """The CPU running the guest in a resting state."""
    found = [c for c in range(m.bounds.cpus) if m.get(s, MODE_OF[c]) == Mode.GUEST]
    if len(found) != 1:
        raise ModelError(f"a resting state has the guest on exactly one CPU, not {found}")
    return found[0]


def guest_writes(unit: Unit) -> tuple[int, ...]:
    """The FRED MSRs one ``unit`` makes the guest write, in order (docs/cost.md).

    A context switch writes the new task's stack top into RSP0 on the way back to user mode
    (fred_update_rsp0), a bring-up is Linux's FRED initialisation, and the rest write none.
    The nested cost model (cost/nested.py) counts an L2's writes from the same list.
    """
    if unit is Unit.CONTEXT_SWITCH:
        return (RSP0,)
    if unit is Unit.CPU_BRINGUP:
        return BRINGUP_WRITES
    if unit is Unit.PL0_SSP_WRITE:
        return (PL0_SSP,)
    return ()


def _actions(m: Machine, s: State, unit: Unit) -> list[Action]:
    """What one ``unit`` does, starting from resting state ``s`` (docs/cost.md has the table)."""
    c = _vcpu_cpu(m, s)
    writes: list[Action] = [Write(msr=msr) for msr in guest_writes(unit)]
    if unit is Unit.CONTEXT_SWITCH:
        # After the write, ERETU, and the task's next event from ring 3 brings the guest
        # back to kernel mode: a resting state again.
        return [*writes, Event(kind=Ev.GUEST_ERETU, cpu=c),
                Event(kind=Ev.GUEST_EVENT_RING3, cpu=c)]
    if unit in (Unit.SYSCALL, Unit.INTERRUPT):
        # Back to the same task (no write), then a syscall or an interrupt from ring 3.  An
        # interrupt at ring 0 uses stack level 0 in Linux and touches no MSR either.
        return [Event(kind=Ev.GUEST_ERETU, cpu=c), Event(kind=Ev.GUEST_EVENT_RING3, cpu=c)]
    if unit in (Unit.NMI, Unit.DEBUG_TRAP):
        # In the guest kernel: the machine's ring-0 event (RSP1 standing for RSP1-3).
        return [Event(kind=Ev.GUEST_EVENT_RING0, cpu=c)]
    if unit in (Unit.CPU_BRINGUP, Unit.PL0_SSP_WRITE):
        return writes
    if unit is Unit.KVM_RUN_RETURN:
        return [Event(kind=k, cpu=c) for k in (Ev.VM_EXIT, Ev.KVM_RUN_RETURN, Ev.KVM_RUN,
                                               Ev.VM_ENTRY)]
    # Preemption: the host switches to another task and back on the same CPU (vCPU put and
    # load through the preempt notifiers); migration: the vCPU thread resumes on the other CPU.
    running = {m.get(s, TASK_OF[cpu]) for cpu in range(m.bounds.cpus)}
    other_task = min(t for t in range(m.bounds.tasks) if t not in running)
    target = c if unit is Unit.HOST_PREEMPTION else (c + 1) % m.bounds.cpus
    return [Event(kind=Ev.VM_EXIT, cpu=c),
            Event(kind=Ev.CONTEXT_SWITCH, cpu=c, task=other_task),
            Event(kind=Ev.CONTEXT_SWITCH, cpu=target, task=VCPU_TASK),
            Event(kind=Ev.VM_ENTRY, cpu=target)]


def enabled_run(m: Machine, s: State, ev: Event) -> tuple[State, tuple[Observation, ...]]:
    """``Machine.run``, after checking that ``ev`` is enabled in ``s`` (ModelError if not)."""
    if ev not in m.events(s):
        raise ModelError(f"{ev} is not enabled in the state the unit reached")
    return m.run(s, ev)


def enabled_step(m: Machine, s: State, ev: Event) -> State:
    """``Machine.step``, after checking that ``ev`` is enabled in ``s`` (ModelError if not)."""
    return enabled_run(m, s, ev)[0]


def run_unit(m: Machine, s: State, unit: Unit) -> tuple[State, tuple[Count, ...]]:
    """Run one ``unit`` from resting state ``s``: the resting state after it, and its counts."""
    exits = [0] * len(FRED_MSRS)
    emulations = [0] * len(FRED_MSRS)
    direct = [0] * len(FRED_MSRS)
    for action in _actions(m, s, unit):
        if isinstance(action, Event):
            s = enabled_step(m, s, action)
            continue
        c = _vcpu_cpu(m, s)
        slot = SLOT_OF[action.msr]
        # Every write changes the value, as Linux's do (RSP0 is written only when it differs).
        value = guest_value(2) if m.get(s, BELIEF[slot]) == guest_value(1) else guest_value(1)
        ev = Event(kind=Ev.GUEST_WRMSR, cpu=c, slot=slot, value=value)
        s, seen = enabled_run(m, s, ev)
        if len(seen) != 1:
            raise ModelError(f"{ev} was not observed once")
        obs = seen[0]
        row = _ROW[action.msr]
        if obs.direct:
            direct[row] += 1
            continue
        exits[row] += 1
        emulations[row] += not obs.faulted
        s = enabled_step(m, s, Event(kind=Ev.VM_ENTRY, cpu=c))  # KVM resumes the guest
    if m.get(s, RING_OF) != Ring.KERNEL:
        raise ModelError(f"{unit.name} must end with the guest in kernel mode")
    _vcpu_cpu(m, s)
    return s, tuple(Count(msr=msr, exits=exits[i], emulations=emulations[i], direct=direct[i])
                    for i, msr in enumerate(FRED_MSRS))


def warm_state(m: Machine, guest_shstk: bool) -> State:
    """The first resting state: CPUID set, KVM_RUN on CPU 0, VM entry; guest kernel mode."""
    s = m.initial()
    cpuid = GuestCpu.FRED_SHSTK if guest_shstk else GuestCpu.FRED
    if m.get(s, CPUID) != cpuid:
        s = enabled_step(m, s, Event(kind=Ev.SET_CPUID, choice=cpuid))
    s = enabled_step(m, s, Event(kind=Ev.KVM_RUN, cpu=0))
    return enabled_step(m, s, Event(kind=Ev.VM_ENTRY, cpu=0))


def explore_units(m: Machine, guest_shstk: bool) -> tuple[dict[Unit, tuple[Count, ...]], int]:
    """Run every unit from every resting state reachable by units; its counts, and how many.

    Raises ModelError if a unit's counts differ between two resting states (then scaling
    per unit would not be sound) or a unit does not end in a resting state.
    """
    start = warm_state(m, guest_shstk)
    seen = {start}
    todo = [start]
    counts: dict[Unit, tuple[Count, ...]] = {}
    while todo:
        s = todo.pop()
        for unit in Unit:
            after, got = run_unit(m, s, unit)
            if counts.setdefault(unit, got) != got:
                raise ModelError(f"{unit.name} counts depend on the state: {counts[unit]} vs {got}")
            if after not in seen:
                seen.add(after)
                todo.append(after)
    return counts, len(seen)


@cache
def unit_counts(design: Design, guest_shstk: bool) -> dict[Unit, tuple[Count, ...]]:
    """One unit of each kind run from the warm state under ``design``: its counts (cached).

    Per unit, one Count per entry of FRED_MSRS.  `explore_units` shows (in the tests) that
    the warm state is no special case.
    """
    m = machine(design, COST_BOUNDS)  # compiled once for both guest CPUIDs
    start = warm_state(m, guest_shstk)
    return {unit: run_unit(m, start, unit)[1] for unit in Unit}

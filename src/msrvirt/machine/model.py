"""The stateful model: physical CPUs, the VMCS, the host kernel, KVM's vCPU and the guest.

Semantics follow kvm-msr-facts.md sections 2 and 5-8 and fred-arch-facts.md section 3;
docs/check.md lists every abstraction and why it is sound.  In short:

- MSRs: FRED_RSP0, FRED_RSP1 (standing for RSP1-3), FRED_STKLVLS, FRED_SSP1 (standing for
  SSP1-3), FRED_CONFIG and PL0_SSP (= FRED_SSP0).  RSP2/3 and SSP2/3 have the same VMCS
  fields, intercept rule and consumers as RSP1 and SSP1, so one of each is kept.
- Values are symbols: the host's own values (task stack tops, per-CPU exception stacks,
  the fixed STKLVLS/CONFIG), the invalid cache value 0, and guest values g0 (the reset
  value) to gN, disjoint from the host's.
- Every event delivery is modelled together with its return (ERETS/ERETU), so the current
  stack level between events is always the one of the interrupted context.

A state is a flat tuple of small ints (hashable, cheap to copy, so the explorer can keep
millions of them); `Machine.fields` names each position.  ``step`` is pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum
from operator import itemgetter
from typing import NamedTuple

from msrvirt.arch.cpuid import Feature
from msrvirt.arch.hosts import host
from msrvirt.arch.kvm import Access
from msrvirt.arch.msrs import display_name
from msrvirt.errors import UsageError
from msrvirt.machine.designs import Design, Fault, PutSync
from msrvirt.policy.filter import NO_FILTER, FilterRange, MsrFilter
from msrvirt.policy.intercepts import Intercepts, compute_intercepts
from msrvirt.policy.scenario import Scenario

State = tuple[int, ...]

HOST_PROFILE = "intel-fred"  # FRED with CET: the host the seed targets (fred-arch-facts.md 1)


class Slot(IntEnum):
    """A modelled MSR, by its position in a CPU's hardware block and in the guest's beliefs."""

    RSP0 = 0
    RSP1 = 1
    STKLVLS = 2
    SSP1 = 3
    CONFIG = 4
    PL0_SSP = 5

    @property
    def msr(self) -> int:
        """The architectural MSR index (fred-arch-facts.md section 2)."""
        return _SLOT_MSR[self]

    @property
    def label(self) -> str:
        return display_name(self.msr)


_SLOT_MSR = {Slot.RSP0: 0x1CC, Slot.RSP1: 0x1CD, Slot.STKLVLS: 0x1D0, Slot.SSP1: 0x1D1,
             Slot.CONFIG: 0x1D4, Slot.PL0_SSP: 0x6A4}
SLOTS = tuple(Slot)
# The MSRs with VMCS guest/host fields (kvm-msr-facts.md section 8); VMCS index = slot - 1.
VMCS_SLOTS = (Slot.RSP1, Slot.STKLVLS, Slot.SSP1, Slot.CONFIG)


class Mode(IntEnum):
    """What a physical CPU runs."""

    HOST_USER = 0  # the running task in user mode (its kernel work is atomic, see docs)
    KVM = 1  # the vCPU thread in the kernel inside KVM_RUN
    GUEST = 2  # VMX non-root: the guest, at the ring in ``Ring``


class Ring(IntEnum):
    """The guest's privilege level."""

    KERNEL = 0
    USER = 3


class Parked(IntEnum):
    """Where the vCPU thread is while no CPU runs it."""

    USER = 0  # preempted in its user mode (the VMM)
    KVM = 1  # preempted inside KVM_RUN (vcpu_put ran from the preempt notifier)


class GuestCpu(IntEnum):
    """The guest CPUID the VMM sets (KVM_SET_CPUID2)."""

    FRED_SHSTK = 0
    FRED = 1

    @property
    def features(self) -> frozenset[Feature]:
        if self is GuestCpu.FRED_SHSTK:
            return frozenset({Feature.FRED, Feature.LKGS, Feature.SHSTK})
        return frozenset({Feature.FRED, Feature.LKGS})

    @property
    def shstk(self) -> bool:
        return Feature.SHSTK in self.features


class FilterChoice(IntEnum):
    """The userspace MSR filters the VMM switches between."""

    NONE = 0
    DENY_FRED = 1

    @property
    def msr_filter(self) -> MsrFilter:
        return _FILTERS[self]


# DEFAULT_ALLOW with one R|W range over the nine FRED MSRs whose bits are all 0 (deny).
_FILTERS = {
    FilterChoice.NONE: NO_FILTER,
    FilterChoice.DENY_FRED: MsrFilter(ranges=(
        FilterRange(flags=int(Access.RW), base=0x1CC, nmsrs=9, allow_bits=bytes(8)),)),
}


class Ev(IntEnum):
    """Kinds of event."""

    HOST_USER_EVENT = 0  # interrupt/syscall from host ring 3, delivered, handled, exit to user
    HOST_EXCEPTION = 1  # NMI/#DB at host ring 0 (level 1), delivered and returned with ERETS
    CONTEXT_SWITCH = 2  # schedule() on a CPU; vCPU put/load through the preempt notifiers
    KVM_RUN = 3  # the vCPU thread enters KVM_RUN: vcpu_load
    KVM_RUN_RETURN = 4  # KVM_RUN returns: vcpu_put, exit to user mode (fred_update_rsp0)
    VM_ENTRY = 5
    VM_EXIT = 6  # an exit for any reason but an MSR access (interrupt, NMI, preemption timer)
    GUEST_RDMSR = 7
    GUEST_WRMSR = 8
    GUEST_ERETU = 9  # guest kernel returns to guest user mode
    GUEST_EVENT_RING3 = 10  # interrupt/syscall in guest user mode
    GUEST_EVENT_RING0 = 11  # NMI/#DB in guest kernel mode (level 1)
    KVM_SET_MSRS = 12  # host-initiated write from the VMM: load, write, put, exit to user
    SET_FILTER = 13  # KVM_X86_SET_MSR_FILTER from another VMM thread
    SET_CPUID = 14  # KVM_SET_CPUID2 (only before the vCPU is first used)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One event; fields that do not apply to ``kind`` keep their defaults."""

    kind: Ev
    cpu: int = -1
    slot: Slot | None = None
    value: int = 0  # the value a write stores
    task: int = -1  # CONTEXT_SWITCH: the task switched in
    choice: int = -1  # SET_FILTER: a FilterChoice; SET_CPUID: a GuestCpu


class ObsKind(IntEnum):
    """What an observable event exposes to the invariants."""

    HOST_DELIVERY = 0
    GUEST_DELIVERY = 1
    GUEST_READ = 2
    GUEST_WRITE = 3


class Observation(NamedTuple):
    """What one event consumed or returned: (slot, value) pairs, and how the access went.

    A NamedTuple rather than a frozen dataclass: the explorer builds one per observable
    transition (millions per run) and a tuple is several times cheaper to construct.
    """

    kind: ObsKind
    cpu: int
    values: tuple[tuple[Slot, int], ...]  # consumed by a delivery; returned/stored by an access
    direct: bool = False  # the access ran on the hardware MSR without a VM exit
    faulted: bool = False  # the access got #GP (filter denial), no value moved


# Module-level aliases: attribute lookups on an enum class cost ~50 ns each in the hot path.
_RSP0, _RSP1, _STKLVLS, _SSP1, _CONFIG, _PL0_SSP = SLOTS
_HOST_USER_EVENT, _HOST_EXCEPTION = Ev.HOST_USER_EVENT, Ev.HOST_EXCEPTION
_GUEST_RDMSR, _GUEST_WRMSR = Ev.GUEST_RDMSR, Ev.GUEST_WRMSR
_GUEST_EVENT_RING3, _GUEST_EVENT_RING0 = Ev.GUEST_EVENT_RING3, Ev.GUEST_EVENT_RING0
_HOST_DELIVERY, _GUEST_DELIVERY = ObsKind.HOST_DELIVERY, ObsKind.GUEST_DELIVERY
_GUEST_READ, _GUEST_WRITE = ObsKind.GUEST_READ, ObsKind.GUEST_WRITE
_FRED_SHSTK = int(GuestCpu.FRED_SHSTK)


# -- symbolic values ---------------------------------------------------------------------------

INVALID = 0  # the rsp0 cache's "invalid" value (fred-arch / kvm-msr-facts section 7)
HOST_STKLVLS = 1
HOST_CONFIG = 2
HOST_SSP = 3  # host FRED_SSP1-3 (0: the host kernel has no supervisor shadow stacks)
HOST_PL0_SSP = 4  # whatever the host leaves in PL0_SSP
_EXC, _TOP, _GUEST = 8, 16, 32
MAX_CPUS, MAX_TASKS, MAX_VALUES = _TOP - _EXC, _GUEST - _TOP, 8


def exc_stack(cpu: int) -> int:
    """The host value of FRED_RSP1 on ``cpu``: its per-CPU #DB/NMI/#DF stack."""
    return _EXC + cpu


def stack_top(task: int) -> int:
    """A host task's kernel stack top, the value FRED_RSP0 must hold while it runs user code."""
    return _TOP + task


def guest_value(k: int) -> int:
    """The guest's k-th value; k = 0 is the reset value."""
    return _GUEST + k


def is_guest_value(value: int) -> bool:
    return value >= _GUEST


VCPU_TASK = 0  # task 0 is the vCPU thread (its user mode is the VMM)


def value_name(value: int) -> str:
    """A symbol's name, as traces print it."""
    fixed = {INVALID: "0", HOST_STKLVLS: "host-stklvls", HOST_CONFIG: "host-config",
             HOST_SSP: "host-ssp", HOST_PL0_SSP: "host-pl0"}
    if value in fixed:
        return fixed[value]
    if value >= _GUEST:
        return f"g{value - _GUEST}"
    if value >= _TOP:
        return f"top({task_name(value - _TOP)})"
    return f"exc(cpu{value - _EXC})"


def task_name(task: int) -> str:
    return "vcpu" if task == VCPU_TASK else f"T{task}"


# -- state layout --------------------------------------------------------------------------------
# Globals, then VMCS guest fields, VMCS host fields, guest beliefs, then one block per CPU.
G_CPUID = 0  # GuestCpu
G_FILTER = 1  # FilterChoice installed
G_BITMAP = 2  # intercept bits of the slots: bit 2*slot = read, 2*slot+1 = write
G_REQ = 3  # 1: recomputation requested (KVM_REQ_MSR_FILTER_CHANGED), done at the next entry
G_LOCKED = 4  # 1: the vCPU ran or was configured, KVM_SET_CPUID2 may no longer change CPUID
G_VMCS_CPU = 5  # CPU the VMCS was last loaded on, -1 before the first load
G_LOADED = 6  # CPU holding the guest's RSP0/CET state (guest_state_loaded), -1 if none
G_PARKED = 7  # Parked: where the vCPU thread is while off-CPU (USER while on a CPU)
G_RING = 8  # Ring of the guest
G_SOFT_RSP0 = 9  # msr_guest_fred_rsp0
G_FALLBACK = 10  # fred_ssp0_fallback
G_XSAVE_PL0 = 11  # PL0_SSP in the guest's XSAVE CET supervisor state
VMCS_GUEST = 12  # + VMCS index (slot - 1)
VMCS_HOST = VMCS_GUEST + len(VMCS_SLOTS)
BELIEF = VMCS_HOST + len(VMCS_SLOTS)  # + slot: the guest's current value of each MSR
CPU_BASE = BELIEF + len(SLOTS)
C_MODE, C_TASK, C_CACHE, C_HW = 0, 1, 2, 3  # offsets in a CPU block; C_HW + slot
CPU_STRIDE = C_HW + len(SLOTS)



class FieldKind(Enum):
    """What a state position holds, so that traces can print it."""

    VALUE = "an MSR value symbol (value_name)"
    CPUID = "a GuestCpu"
    FILTER = "a FilterChoice"
    BITMAP = "intercept bits of the slots (G_BITMAP)"
    FLAG = "0 or 1"
    CPU = "a CPU number, -1 for none"
    PARKED = "a Parked"
    RING = "a Ring"
    MODE = "a Mode"
    TASK = "a task number (task_name)"


_GLOBAL_FIELDS = (
    ("guest cpuid", FieldKind.CPUID), ("msr filter", FieldKind.FILTER),
    ("msr bitmap", FieldKind.BITMAP), ("recalc request", FieldKind.FLAG),
    ("cpuid locked", FieldKind.FLAG), ("vmcs on", FieldKind.CPU),
    ("guest state loaded on", FieldKind.CPU), ("vcpu thread parked", FieldKind.PARKED),
    ("guest ring", FieldKind.RING), ("msr_guest_fred_rsp0", FieldKind.VALUE),
    ("fred_ssp0_fallback", FieldKind.VALUE), ("guest xsave PL0_SSP", FieldKind.VALUE),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Bounds:
    """The size of the modelled system: CPUs, host tasks (vCPU thread included), guest values."""

    cpus: int = 2
    tasks: int = 3
    values: int = 1  # guest values besides the reset value

    def __post_init__(self) -> None:
        if not 1 <= self.cpus <= MAX_CPUS:
            raise UsageError(f"cpus must be between 1 and {MAX_CPUS}, not {self.cpus}")
        if not self.cpus <= self.tasks <= MAX_TASKS:
            raise UsageError(
                f"tasks must be between cpus ({self.cpus}) and {MAX_TASKS}, not {self.tasks}")
        if not 1 <= self.values <= MAX_VALUES:
            raise UsageError(f"values must be between 1 and {MAX_VALUES}, not {self.values}")


DEFAULT_BOUNDS = Bounds()


def _mask_bit(slot: Slot, access: Access) -> int:
    return 1 << (2 * slot + (1 if access is Access.W else 0))


_READ_BIT = tuple(_mask_bit(slot, Access.R) for slot in Slot)  # indexed by slot
_BIT = {a: tuple(_mask_bit(slot, a) for slot in Slot) for a in (Access.R, Access.W)}


def _intercept_bits(found: Intercepts) -> int:
    """The G_BITMAP bits of the modelled MSRs in one recomputation's bitmap."""
    return sum(_mask_bit(slot, access) for slot in SLOTS for access in (Access.R, Access.W)
               if found.intercepted(slot.msr, access))


class Machine:
    """A design at some bounds: initial state, enabled events, ``step`` and ``observe``.

    Everything is pure; the object only holds precomputed tables (the bitmaps
    `compute_intercepts` gives for each guest CPUID and filter, and the event objects).
    """

    def __init__(self, design: Design, bounds: Bounds = DEFAULT_BOUNDS) -> None:
        self.design = design
        self.bounds = bounds
        self._sync = design.put_sync
        # Faults as plain booleans: the step functions test them millions of times.
        faults = design.faults
        # Host values a faulty VM exit leaves unloaded (the guest's stay in the MSRs).
        self._kept_on_exit = frozenset(
            ({Slot.RSP1} if Fault.EXIT_KEEPS_GUEST_RSP1 in faults else set())
            | ({Slot.STKLVLS, Slot.CONFIG}
               if Fault.EXIT_KEEPS_GUEST_STKLVLS_CONFIG in faults else set()))
        self._skip_guest_load = Fault.ENTRY_SKIPS_GUEST_FRED in faults
        self._no_restore_after_run = Fault.NO_RSP0_RESTORE_AFTER_RUN in faults
        self._get_soft_rsp0 = Fault.GET_RSP0_SOFT in faults
        self._filter_no_recalc = Fault.FILTER_NO_RECALC in faults
        self._cpuid_no_recalc = Fault.CPUID_NO_RECALC in faults
        self._host_fields_once = Fault.HOST_FIELDS_ONCE in faults
        hostp = host(HOST_PROFILE)
        # The model's bitmap bits for every (CPUID, filter), from the policy module.
        # Indexed [GuestCpu][FilterChoice]; bits as in G_BITMAP.
        self._masks = tuple(
            tuple(_intercept_bits(compute_intercepts(Scenario(
                host=hostp, guest=cpu.features, policy=design.policy, filter=flt.msr_filter)))
                for flt in FilterChoice)
            for cpu in GuestCpu)
        # Bits (as in G_BITMAP) of the accesses each filter denies.
        self._denied = tuple(
            sum(_mask_bit(slot, access) for slot in SLOTS for access in (Access.R, Access.W)
                if not flt.msr_filter.allows(slot.msr, access))
            for flt in FilterChoice)
        # The host's own value of each slot per CPU; RSP0 depends on the task (host_values).
        self._host_values = tuple(
            (INVALID, exc_stack(c), HOST_STKLVLS, HOST_SSP, HOST_CONFIG, HOST_PL0_SSP)
            for c in range(bounds.cpus))
        self._build_events()
        handlers = {
            Ev.HOST_USER_EVENT: self._host_user_event, Ev.HOST_EXCEPTION: self._nothing,
            Ev.CONTEXT_SWITCH: self._context_switch, Ev.KVM_RUN: self._kvm_run,
            Ev.KVM_RUN_RETURN: self._kvm_run_return, Ev.VM_ENTRY: self._vm_entry,
            Ev.VM_EXIT: self._vm_exit, Ev.GUEST_RDMSR: self._guest_rdmsr,
            Ev.GUEST_WRMSR: self._guest_wrmsr, Ev.GUEST_ERETU: self._guest_eretu,
            Ev.GUEST_EVENT_RING3: self._guest_event_ring3, Ev.GUEST_EVENT_RING0: self._nothing,
            Ev.KVM_SET_MSRS: self._kvm_set_msrs, Ev.SET_FILTER: self._set_filter,
            Ev.SET_CPUID: self._set_cpuid,
        }
        self._handlers = tuple(handlers[kind] for kind in Ev)  # indexed by kind: no hashing
        per_cpu = [CPU_BASE + c * CPU_STRIDE + f for c in range(bounds.cpus)
                   for f in (C_MODE, C_TASK)]
        self._event_key = itemgetter(G_CPUID, G_FILTER, G_LOCKED, G_RING, *per_cpu)
        self._event_cache: dict[tuple[int, ...], tuple[Event, ...]] = {}

    # -- structure ---------------------------------------------------------------------------

    @property
    def fields(self) -> tuple[tuple[str, FieldKind], ...]:
        """The name and kind of each state position."""
        value = FieldKind.VALUE
        out = list(_GLOBAL_FIELDS)
        out += [(f"vmcs guest {s.label}", value) for s in VMCS_SLOTS]
        out += [(f"vmcs host {s.label}", value) for s in VMCS_SLOTS]
        out += [(f"guest's {s.label}", value) for s in SLOTS]
        for c in range(self.bounds.cpus):
            out += [(f"cpu{c} runs", FieldKind.MODE), (f"cpu{c} task", FieldKind.TASK),
                    (f"cpu{c} fred_rsp0 cache", value)]
            out += [(f"cpu{c} {s.label}", value) for s in SLOTS]
        return tuple(out)

    def mask_for(self, cpu: GuestCpu, flt: FilterChoice) -> int:
        """The intercept bits compute_intercepts gives for this guest CPUID and filter."""
        return self._masks[cpu][flt]

    def initial(self) -> State:
        """The vCPU created with CPUID FRED+SHSTK, no filter, task i running on CPU i."""
        cpuid = GuestCpu.FRED_SHSTK
        s = [int(cpuid), int(FilterChoice.NONE), self.mask_for(cpuid, FilterChoice.NONE),
             0, 0, -1, -1, int(Parked.USER), int(Ring.KERNEL),
             guest_value(0), guest_value(0), guest_value(0)]
        s += [guest_value(0)] * len(VMCS_SLOTS)
        # Host fields KVM writes once at VMCS setup; RSP1 is per CPU, written at the first load.
        s += [INVALID, HOST_STKLVLS, HOST_SSP, HOST_CONFIG]
        s += [guest_value(0)] * len(SLOTS)
        for c in range(self.bounds.cpus):
            top = stack_top(c)
            s += [int(Mode.HOST_USER), c, top]
            s += [top, exc_stack(c), HOST_STKLVLS, HOST_SSP, HOST_CONFIG, HOST_PL0_SSP]
        return tuple(s)

    def _build_events(self) -> None:
        b = self.bounds
        vals = [guest_value(k) for k in range(1, b.values + 1)]
        self._ev_guest_kernel: list[list[Event]] = []
        self._ev_host: list[list[Event]] = []  # HOST_EXCEPTION, then HOST_USER_EVENT
        self._ev_kvm: list[list[Event]] = []
        self._ev_vmm: list[list[Event]] = []
        self._ev_switch: list[list[Event]] = []
        self._ev_exit: list[Event] = []
        self._ev_ring3: list[Event] = []
        for c in range(b.cpus):
            gk = [Event(kind=Ev.GUEST_RDMSR, cpu=c, slot=s) for s in SLOTS]
            gk += [Event(kind=Ev.GUEST_WRMSR, cpu=c, slot=s, value=v) for s in SLOTS for v in vals]
            gk += [Event(kind=Ev.GUEST_EVENT_RING0, cpu=c), Event(kind=Ev.GUEST_ERETU, cpu=c)]
            self._ev_guest_kernel.append(gk)
            self._ev_host.append([Event(kind=Ev.HOST_EXCEPTION, cpu=c),
                                  Event(kind=Ev.HOST_USER_EVENT, cpu=c)])
            self._ev_kvm.append([Event(kind=Ev.VM_ENTRY, cpu=c),
                                 Event(kind=Ev.KVM_RUN_RETURN, cpu=c)])
            vmm = [Event(kind=Ev.KVM_RUN, cpu=c)]
            vmm += [Event(kind=Ev.KVM_SET_MSRS, cpu=c, slot=s, value=v)
                    for s in SLOTS for v in vals]
            self._ev_vmm.append(vmm)
            self._ev_switch.append([Event(kind=Ev.CONTEXT_SWITCH, cpu=c, task=t)
                                    for t in range(b.tasks)])
            self._ev_exit.append(Event(kind=Ev.VM_EXIT, cpu=c))
            self._ev_ring3.append(Event(kind=Ev.GUEST_EVENT_RING3, cpu=c))
        self._ev_filter = [Event(kind=Ev.SET_FILTER, choice=f) for f in FilterChoice]
        self._ev_cpuid = [Event(kind=Ev.SET_CPUID, choice=g) for g in GuestCpu]

    def events(self, s: State) -> tuple[Event, ...]:
        """The events enabled in ``s``, in a fixed order (per CPU, then the VMM's VM ioctls)."""
        # Enabled events depend only on a few fields; many states share one tuple.
        key = self._event_key(s)
        found = self._event_cache.get(key)
        if found is None:
            found = self._event_cache[key] = self._enabled(s)
        return found

    def _enabled(self, s: State) -> tuple[Event, ...]:
        out: list[Event] = []
        ncpu = self.bounds.cpus
        running = {s[CPU_BASE + c * CPU_STRIDE + C_TASK] for c in range(ncpu)}
        off = [t for t in range(self.bounds.tasks) if t not in running]
        in_guest = False
        for c in range(ncpu):
            base = CPU_BASE + c * CPU_STRIDE
            mode = s[base + C_MODE]
            if mode == Mode.GUEST:
                in_guest = True
                out.append(self._ev_exit[c])
                if s[G_RING] == Ring.KERNEL:
                    out += self._ev_guest_kernel[c]
                else:
                    out.append(self._ev_ring3[c])
                continue
            host_evs = self._ev_host[c]
            out.append(host_evs[0])
            if mode == Mode.HOST_USER:
                out.append(host_evs[1])
            switch = self._ev_switch[c]
            out += [switch[t] for t in off]
            if s[base + C_TASK] == VCPU_TASK:
                out += self._ev_kvm[c] if mode == Mode.KVM else self._ev_vmm[c]
        # KVM kicks a vCPU out of guest mode when the filter changes, so the VMM's change is
        # modelled while the vCPU is outside guest mode (docs/check.md).
        if not in_guest:
            out += [e for e in self._ev_filter if e.choice != s[G_FILTER]]
            if not s[G_LOCKED]:
                out += [e for e in self._ev_cpuid if e.choice != s[G_CPUID]]
        return tuple(out)

    # -- step ------------------------------------------------------------------------------------

    def step(self, s: State, ev: Event) -> State:
        """The state after ``ev`` (which must be enabled in ``s``)."""
        kind = ev.kind
        # Fast paths for events that leave the state as it is (deliveries at ring 0, direct
        # reads, a host event whose exit to user finds the cache right): returning ``s``
        # itself lets the explorer skip hashing it.
        if kind in (_HOST_EXCEPTION, _GUEST_EVENT_RING0):
            return s
        if kind == _GUEST_RDMSR:
            slot = ev.slot
            assert slot is not None
            if not s[G_BITMAP] & _READ_BIT[slot]:
                return s
        elif kind == _HOST_USER_EVENT:
            base = CPU_BASE + ev.cpu * CPU_STRIDE
            if s[base + C_CACHE] == stack_top(s[base + C_TASK]):
                return s
        lst = list(s)
        self._handlers[kind](lst, ev)
        return tuple(lst)

    def _nothing(self, lst: list[int], ev: Event) -> None:
        """Deliveries at ring 0 change no modelled state (ERETS restores the stack level)."""

    @staticmethod
    def _shstk(lst: Sequence[int]) -> bool:
        return lst[G_CPUID] == _FRED_SHSTK

    @staticmethod
    def _intercepted(lst: Sequence[int], slot: Slot, access: Access) -> bool:
        return bool(lst[G_BITMAP] & _BIT[access][slot])

    def _filter_allows(self, lst: Sequence[int], slot: Slot, access: Access) -> bool:
        return not self._denied[lst[G_FILTER]] & _BIT[access][slot]

    def _exit_to_user(self, lst: list[int], c: int) -> None:
        """arch_exit_to_user_mode_prepare: rewrite RSP0 and the cache if the cache differs."""
        base = CPU_BASE + c * CPU_STRIDE
        top = stack_top(lst[base + C_TASK])
        if lst[base + C_CACHE] != top:
            lst[base + C_HW + Slot.RSP0] = top
            lst[base + C_CACHE] = top

    def _vcpu_load(self, lst: list[int], c: int) -> None:
        """vmx_vcpu_load: move the VMCS to ``c`` and write its per-CPU host fields."""
        if lst[G_VMCS_CPU] == c:
            return
        if not self._host_fields_once or lst[G_VMCS_CPU] == -1:
            lst[VMCS_HOST + Slot.RSP1 - 1] = exc_stack(c)
        lst[G_VMCS_CPU] = c

    def _vcpu_put(self, lst: list[int], c: int) -> None:
        """vmx_prepare_switch_to_host: save the guest's RSP0 (and CET state), fix the cache."""
        if lst[G_LOADED] != c:
            return
        hw = CPU_BASE + c * CPU_STRIDE + C_HW
        lst[G_SOFT_RSP0] = lst[hw + Slot.RSP0]
        if self._sync is PutSync.SYNC:
            lst[CPU_BASE + c * CPU_STRIDE + C_CACHE] = lst[G_SOFT_RSP0]
        elif self._sync is PutSync.INVALIDATE:
            lst[CPU_BASE + c * CPU_STRIDE + C_CACHE] = INVALID
        if self._shstk(lst):
            # XSAVES of the guest FPU state; the host's XRSTORS leaves CET_S alone, so the
            # guest value stays in the MSR (the host kernel does not use it).
            lst[G_XSAVE_PL0] = lst[hw + Slot.PL0_SSP]
        lst[G_LOADED] = -1

    def _load_guest_state(self, lst: list[int], c: int) -> None:
        """vmx_prepare_switch_to_guest, once per load: guest RSP0 (and CET state) to the MSRs."""
        if lst[G_LOADED] != -1:
            return
        hw = CPU_BASE + c * CPU_STRIDE + C_HW
        lst[hw + Slot.RSP0] = lst[G_SOFT_RSP0]
        if self._shstk(lst):
            lst[hw + Slot.PL0_SSP] = lst[G_XSAVE_PL0]
        lst[G_LOADED] = c

    def _hw_exit(self, lst: list[int], c: int) -> None:
        """VM exit: save the 8 FRED MSRs to the guest fields, load the host fields, atomically."""
        base = CPU_BASE + c * CPU_STRIDE
        hw = base + C_HW
        kept = self._kept_on_exit
        for slot in VMCS_SLOTS:
            lst[VMCS_GUEST + slot - 1] = lst[hw + slot]
            if slot not in kept:
                lst[hw + slot] = lst[VMCS_HOST + slot - 1]
        lst[base + C_MODE] = Mode.KVM

    def _host_user_event(self, lst: list[int], ev: Event) -> None:
        self._exit_to_user(lst, ev.cpu)

    def _context_switch(self, lst: list[int], ev: Event) -> None:
        c = ev.cpu
        base = CPU_BASE + c * CPU_STRIDE
        if lst[base + C_TASK] == VCPU_TASK:
            if lst[base + C_MODE] == Mode.KVM:
                self._vcpu_put(lst, c)  # kvm_sched_out
                lst[G_PARKED] = Parked.KVM
            else:
                lst[G_PARKED] = Parked.USER
        lst[base + C_TASK] = ev.task
        if ev.task == VCPU_TASK and lst[G_PARKED] == Parked.KVM:
            self._vcpu_load(lst, c)  # kvm_sched_in; guest state is loaded at the next entry
            lst[base + C_MODE] = Mode.KVM
        else:
            lst[base + C_MODE] = Mode.HOST_USER
            self._exit_to_user(lst, c)
        if ev.task == VCPU_TASK:
            lst[G_PARKED] = Parked.USER  # canonical while on a CPU

    def _kvm_run(self, lst: list[int], ev: Event) -> None:
        lst[G_LOCKED] = 1
        self._vcpu_load(lst, ev.cpu)
        lst[CPU_BASE + ev.cpu * CPU_STRIDE + C_MODE] = Mode.KVM

    def _kvm_run_return(self, lst: list[int], ev: Event) -> None:
        self._vcpu_put(lst, ev.cpu)
        if not self._no_restore_after_run:
            self._exit_to_user(lst, ev.cpu)
        lst[CPU_BASE + ev.cpu * CPU_STRIDE + C_MODE] = Mode.HOST_USER

    def _vm_entry(self, lst: list[int], ev: Event) -> None:
        c = ev.cpu
        if lst[G_REQ]:
            lst[G_BITMAP] = self._masks[lst[G_CPUID]][lst[G_FILTER]]
            lst[G_REQ] = 0
        self._load_guest_state(lst, c)
        if not self._skip_guest_load:
            hw = CPU_BASE + c * CPU_STRIDE + C_HW
            for slot in VMCS_SLOTS:
                lst[hw + slot] = lst[VMCS_GUEST + slot - 1]
        lst[CPU_BASE + c * CPU_STRIDE + C_MODE] = Mode.GUEST

    def _vm_exit(self, lst: list[int], ev: Event) -> None:
        self._hw_exit(lst, ev.cpu)

    def _guest_rdmsr(self, lst: list[int], ev: Event) -> None:
        assert ev.slot is not None
        if self._intercepted(lst, ev.slot, Access.R):
            self._hw_exit(lst, ev.cpu)  # emulation (or #GP) changes nothing else

    def _guest_wrmsr(self, lst: list[int], ev: Event) -> None:
        slot = ev.slot
        assert slot is not None
        if not self._intercepted(lst, slot, Access.W):
            lst[CPU_BASE + ev.cpu * CPU_STRIDE + C_HW + slot] = ev.value
            lst[BELIEF + slot] = ev.value
            return
        self._hw_exit(lst, ev.cpu)
        if self._filter_allows(lst, slot, Access.W):
            self._kvm_set(lst, slot, ev.value)
            lst[BELIEF + slot] = ev.value
        # else: KVM_MSR_RET_FILTERED, #GP injected, nothing stored

    def _guest_eretu(self, lst: list[int], ev: Event) -> None:
        lst[G_RING] = Ring.USER

    def _guest_event_ring3(self, lst: list[int], ev: Event) -> None:
        lst[G_RING] = Ring.KERNEL

    def _kvm_set_msrs(self, lst: list[int], ev: Event) -> None:
        assert ev.slot is not None
        lst[G_LOCKED] = 1
        self._vcpu_load(lst, ev.cpu)
        self._kvm_set(lst, ev.slot, ev.value)  # host-initiated: the filter does not apply
        lst[BELIEF + ev.slot] = ev.value
        self._vcpu_put(lst, ev.cpu)
        self._exit_to_user(lst, ev.cpu)

    def _set_filter(self, lst: list[int], ev: Event) -> None:
        lst[G_FILTER] = ev.choice
        if not self._filter_no_recalc:
            lst[G_REQ] = 1

    def _set_cpuid(self, lst: list[int], ev: Event) -> None:
        lst[G_CPUID] = ev.choice
        if not self._cpuid_no_recalc:
            lst[G_BITMAP] = self._masks[ev.choice][lst[G_FILTER]]

    # -- KVM's emulation of the FRED MSRs (kvm-msr-facts.md sections 6 and 7) ---------------

    def _kvm_set(self, lst: list[int], slot: Slot, value: int) -> None:
        """__kvm_set_msr for a FRED MSR or PL0_SSP, guest- or host-initiated."""
        loaded = lst[G_LOADED]
        if slot is Slot.RSP0:
            lst[G_SOFT_RSP0] = value
            if loaded != -1:
                lst[CPU_BASE + loaded * CPU_STRIDE + C_HW + Slot.RSP0] = value
        elif slot is Slot.PL0_SSP:
            if not self._shstk(lst):
                lst[G_FALLBACK] = value
            elif loaded != -1:
                lst[CPU_BASE + loaded * CPU_STRIDE + C_HW + Slot.PL0_SSP] = value
            else:
                lst[G_XSAVE_PL0] = value
        else:
            lst[VMCS_GUEST + slot - 1] = value

    def kvm_get(self, s: State, slot: Slot) -> int:
        """__kvm_get_msr for a FRED MSR or PL0_SSP: what KVM_GET_MSRS returns in ``s``."""
        loaded = s[G_LOADED]
        if slot is _RSP0:
            if loaded != -1 and not self._get_soft_rsp0:
                return s[CPU_BASE + loaded * CPU_STRIDE + C_HW + _RSP0]
            return s[G_SOFT_RSP0]
        if slot is _PL0_SSP:
            if s[G_CPUID] != _FRED_SHSTK:
                return s[G_FALLBACK]
            if loaded != -1:
                return s[CPU_BASE + loaded * CPU_STRIDE + C_HW + _PL0_SSP]
            return s[G_XSAVE_PL0]
        return s[VMCS_GUEST + slot - 1]

    def kvm_get_all(self, s: State) -> tuple[int, ...]:
        """``kvm_get`` of every slot, in slot order (compare with ``s[BELIEF:BELIEF + 6]``)."""
        get = self.kvm_get
        return (get(s, _RSP0), s[VMCS_GUEST], s[VMCS_GUEST + 1], s[VMCS_GUEST + 2],
                s[VMCS_GUEST + 3], get(s, _PL0_SSP))

    # -- observations ----------------------------------------------------------------------------

    def observe(self, s: State, ev: Event) -> Observation | None:
        """What ``ev`` consumes or returns in ``s`` (fred-arch-facts.md section 3), if anything.

        Host deliveries: from ring 3, RSP0 and CONFIG (entry point); at ring 0 (NMI/#DB at
        level 1), STKLVLS, CONFIG and RSP1.  The host kernel runs without supervisor shadow
        stacks (Linux), so it consumes no SSP.  Guest deliveries consume the same, plus
        PL0_SSP / SSP1 when the guest has shadow stacks (assumed enabled for its kernel).
        """
        kind = ev.kind
        c = ev.cpu
        hw = CPU_BASE + c * CPU_STRIDE + C_HW
        if kind == _HOST_EXCEPTION:
            return Observation(_HOST_DELIVERY, c, (
                (_STKLVLS, s[hw + 2]), (_CONFIG, s[hw + 4]), (_RSP1, s[hw + 1])))
        if kind == _HOST_USER_EVENT:
            return Observation(_HOST_DELIVERY, c, ((_RSP0, s[hw]), (_CONFIG, s[hw + 4])))
        if kind in (_GUEST_RDMSR, _GUEST_WRMSR):
            return self._observe_access(s, ev)
        shstk = s[G_CPUID] == _FRED_SHSTK
        if kind == _GUEST_EVENT_RING0:
            used: tuple[tuple[Slot, int], ...] = (
                (_STKLVLS, s[hw + 2]), (_CONFIG, s[hw + 4]), (_RSP1, s[hw + 1]))
            return Observation(_GUEST_DELIVERY, c, (*used, (_SSP1, s[hw + 3])) if shstk else used)
        if kind == _GUEST_EVENT_RING3:
            used = ((_RSP0, s[hw]), (_CONFIG, s[hw + 4]))
            return Observation(_GUEST_DELIVERY, c,
                               (*used, (_PL0_SSP, s[hw + 5])) if shstk else used)
        return None

    def _observe_access(self, s: State, ev: Event) -> Observation:
        slot = ev.slot
        assert slot is not None
        c = ev.cpu
        read = ev.kind == _GUEST_RDMSR
        access = Access.R if read else Access.W
        kind = _GUEST_READ if read else _GUEST_WRITE
        if not self._intercepted(s, slot, access):
            value = s[CPU_BASE + c * CPU_STRIDE + C_HW + slot] if read else ev.value
            return Observation(kind, c, ((slot, value),), True)
        if not self._filter_allows(s, slot, access):
            return Observation(kind, c, (), False, True)
        if not read:
            return Observation(kind, c, ((slot, ev.value),))
        return Observation(kind, c, ((slot, self.kvm_get(self.step(s, ev), slot)),))

    # -- queries the invariants use --------------------------------------------------------------

    def host_values(self, s: State, cpu: int) -> tuple[int, ...]:
        """The values the host kernel needs on ``cpu``, indexed by slot (kvm-msr-facts.md 7, 8).

        RSP0: the running task's stack top; RSP1: the CPU's exception stack; the rest fixed.
        """
        return (stack_top(s[CPU_BASE + cpu * CPU_STRIDE + C_TASK]), *self._host_values[cpu][1:])

    def filter_allows(self, s: State, slot: Slot, access: Access) -> bool:
        """Whether the installed userspace filter allows a guest ``access`` to ``slot``."""
        return self._filter_allows(s, slot, access)

    @staticmethod
    def cpu_field(cpu: int, offset: int) -> int:
        """Position of a per-CPU field (C_MODE, C_TASK, C_CACHE, C_HW + slot) of ``cpu``."""
        return CPU_BASE + cpu * CPU_STRIDE + offset

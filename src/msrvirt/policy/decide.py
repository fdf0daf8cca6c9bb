"""What one MSR access does: hardware, KVM's emulation, a userspace exit, or #GP, and why.

Guest RDMSR/WRMSR (kvm-msr-facts.md section 5; kvm-svm-common-pvm-facts.md 2.0):
bitmap clear -> the CPU executes it (a value the CPU refuses is a hardware #GP);
otherwise VM exit, then the userspace filter (denied -> FILTERED), then KVM's
emulation (gates, value checks; UNSUPPORTED for unknown MSRs), then on failure a
userspace exit if its reason is enabled, else #GP.
Host-initiated KVM_GET_MSRS / KVM_SET_MSRS skip the bitmap and the filter, and an
UNSUPPORTED MSR that KVM advertises reads 0 and accepts a write of 0 (section 5).
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from msrvirt.arch.cpuid import Feature
from msrvirt.arch.kvm import (
    EXIT_REASON_OF,
    KVM_MSR_FILTER_DEFAULT_DENY,
    U64,
    Access,
    ExitReason,
    KvmRet,
)
from msrvirt.arch.msrs import BY_INDEX, X2APIC_RANGE, Listed, Msr, lookup
from msrvirt.errors import UsageError
from msrvirt.policy.emulate import (
    Why,
    cond_holds,
    emulate,
    hardware_problem,
    render,
    reset_value,
    value_problem,
    view,
)
from msrvirt.policy.filter import MsrFilter
from msrvirt.policy.intercepts import Intercepts, compute_intercepts
from msrvirt.policy.policies import Rule
from msrvirt.policy.scenario import Scenario

__all__ = ["Decision", "Initiator", "MsrAccess", "Outcome", "advertised",
           "check_access", "decide", "explain_msr", "render", "reset_value", "value_problem"]


class Outcome(StrEnum):
    """Where an access ends."""

    PASSTHROUGH = "passthrough"  # the CPU executes it, no VM exit
    EMULATED = "emulated"  # KVM handles it and it succeeds
    GP = "gp"  # the guest gets #GP (from hardware or injected by KVM)
    EXIT = "exit"  # the vCPU exits to userspace (KVM_EXIT_X86_RDMSR/WRMSR)
    REJECTED = "rejected"  # host-initiated KVM_GET/SET_MSRS: KVM refuses the entry


class Initiator(StrEnum):
    GUEST = "guest"
    HOST = "host"


class MsrAccess(NamedTuple):
    """One access: MSR index, direction (R or W), value written, who makes it, and (where
    known) the MSR's value before it (None: the reset value).

    A NamedTuple for the same reason as Decision; `decide` checks its fields.
    """

    msr: int
    access: Access
    value: int = 0
    initiator: Initiator = Initiator.GUEST
    current: int | None = None


def check_access(req: MsrAccess) -> None:
    """Raise UsageError unless ``req`` reads or writes a u32 MSR index with a u64 value."""
    if req.access is not Access.R and req.access is not Access.W:
        raise UsageError(f"an access must be a read or a write, not {req.access!r}")
    if not 0 <= req.value <= U64:
        raise UsageError(f"an MSR value must be a u64, not {req.value:#x}")
    if not 0 <= req.msr <= 0xFFFF_FFFF:
        raise UsageError(f"an MSR index must be a u32, not {req.msr:#x}")


class Decision(NamedTuple):
    """The outcome of one access and the chain of reasons that leads there.

    A NamedTuple rather than a frozen dataclass: one is built per access on the hot path of
    every sweep, and CPython 3.11 builds a tuple about three times faster (docs/design.md).
    ``exit_reason`` is set only when the outcome is EXIT; ``would_exit`` is the reason a
    KVM failure exits with when userspace enables it (set for EXIT, GP from KVM, REJECTED).
    """

    outcome: Outcome
    exit_reason: ExitReason | None  # the userspace exit's reason (outcome EXIT only)
    would_exit: ExitReason | None  # the reason this failure has if userspace enables it
    intercept: bool  # the access causes a VM exit (always for host-initiated ones)
    kvm_ret: KvmRet | None  # KVM's emulation result, None when KVM was not involved
    value: int | None  # the value a read returns, where the model knows it
    missing: str  # what the model does not know about this access ("" when exact)
    steps: tuple[Why, ...]  # the chain of reasons, in order
    cause: Why  # the one reason that decides the outcome
    stored: int | None = None  # a successful write: what reads return afterwards, if known
    changes: bool = False  # a successful write can change what reads return

    @property
    def exact(self) -> bool:
        """Every kernel path of this access is modelled."""
        return not self.missing

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(render(w) for w in self.steps)

    @property
    def summary(self) -> str:
        return render(self.cause)

    @property
    def filtered(self) -> bool:
        """The userspace filter denied this access."""
        return self.kvm_ret is KvmRet.FILTERED


# Module-level aliases of enum members used per access: an attribute lookup on an enum
# class is a Python-level call in 3.11 (~0.1 us), and a decision makes a dozen of them.
_R = Access.R
_W = Access.W
_HOST = Initiator.HOST
_GUEST = Initiator.GUEST
_OK = KvmRet.OK
_UNSUP = KvmRet.UNSUPPORTED
_FILTERED = KvmRet.FILTERED
_PASSTHROUGH = Outcome.PASSTHROUGH
_EMULATED = Outcome.EMULATED
_GP = Outcome.GP
_EXIT = Outcome.EXIT
_REJECTED = Outcome.REJECTED
_INVAL = ExitReason.INVAL
_DEFAULT_DENY = KVM_MSR_FILTER_DEFAULT_DENY
# tuple.__new__ builds a NamedTuple without its Python-level __new__ (every field given).
_new = tuple.__new__


def _listed(s: Scenario, row: Msr, listed: Listed) -> bool:
    host = s.host
    if not listed.need.met(s.kvm_caps):
        return False
    if listed.vendors is not None and host.vendor not in listed.vendors:
        return False
    if listed.backends is not None and host.backend not in listed.backends:
        return False
    if listed.cond is not None and cond_holds(listed.cond, s) is False:
        return False
    if listed.pmu:
        # kvm_init_msr_lists: msrs_to_save_pmu only with enable_pmu; kvm_probe_msr_to_save
        # keeps Intel counters below KVM's counts and AMD's GLOBAL MSRs with PERFMON_V2.
        if not host.params.enable_pmu or not host.pmu.version:
            return False
        name = row.name
        if name.startswith(("IA32_PERFCTR", "IA32_PERFEVTSEL")):
            return row.unit < host.pmu.gp
        if name.startswith("IA32_FIXED_CTR") and name[-1].isdigit():
            return row.unit < host.pmu.fixed
        if name.startswith("AMD64_PERF_CNTR"):
            return Feature.PERFMON_V2 in s.kvm_caps
    return True


def advertised(scenario: Scenario, index: int) -> bool:
    """Whether ``index`` is in KVM_GET_MSR_INDEX_LIST for this host (x86.c kvm_init_msr_lists:
    msrs_to_save probed on the host, then the vendor's has_emulated_msr)."""
    if scenario.host.msr_index_list is not None:
        return index in scenario.host.msr_index_list
    row = lookup(index)
    return row is not None and row.listed is not None and _listed(scenario, row, row.listed)


def feature_listed(scenario: Scenario, index: int) -> bool:
    """Whether ``index`` is in KVM_GET_MSR_FEATURE_INDEX_LIST (kvm_probe_feature_msr)."""
    row = lookup(index)
    return row is not None and row.feature is not None and _listed(scenario, row, row.feature)


_RULE_PASSES = "rule {0.id} ran ({0.runs_when}) and passes through: {0.pass_when} [{0.source}]"
_RULE_INTERCEPTS = "rule {0.id} ran ({0.runs_when}) and intercepts: {0.intercept_when} [{0.source}]"


def _bit_clear_text(verb: str, index: int) -> str:
    return f"bitmap bit clear: the {verb} of {_msr_name(index)} runs on the CPU, no VM exit"


def _msr_name(index: int) -> str:
    row = lookup(index)
    return row.name if row else f"MSR {index:#x}"


def decide(scenario: Scenario, req: MsrAccess, intercepts: Intercepts | None = None) -> Decision:
    """The outcome of ``req`` under ``scenario``; ``intercepts`` may be passed to save work."""
    check_access(req)
    # Computed for host-initiated accesses too: it refuses a policy the backend cannot run.
    ints = intercepts if intercepts is not None else compute_intercepts(scenario)
    if req.initiator is _HOST:
        return _decide_host(scenario, req, lookup(req.msr))
    return _decide_guest(scenario, req, ints, lookup(req.msr))


def _decide_guest(scenario: Scenario, req: MsrAccess, ints: Intercepts,
                  row: Msr | None) -> Decision:
    """decide() for a checked guest RDMSR/WRMSR with its MSR's row (None: no row); explain_msr
    calls it directly."""
    msr, access = req.msr, req.access
    if (msr, access) in ints.clear:  # not ints.intercepted(), inlined: the hot path
        return _decide_passthrough(scenario, req, ints, row)
    steps: list[Why] = [(_intercept_text, (scenario, ints, req))]
    flt = scenario.filter
    # Without ranges the filter's flags alone decide (MsrFilter.allows): skip the call.
    if not (flt.allows(msr, access) if flt.ranges else not flt.flags & _DEFAULT_DENY):
        steps.append((_filter_text, (flt, req, False)))
        return _fail(scenario, _FILTERED, steps, missing="", cause=steps[-1])
    if flt.ranges:
        steps.append((_filter_text, (flt, req, True)))
    emu = emulate(scenario, msr, access, req.value, False, row, req.current)
    steps.append(emu.why)
    cause = (_cause_text, (scenario, ints, req, emu.why))
    if emu.ret is _OK:
        return _new(Decision, (_EMULATED, None, None, True, _OK, emu.value, emu.missing,
                               tuple(steps), cause, emu.stored, emu.changes))
    if emu.ret is _UNSUP and scenario.ignore_msrs:
        steps.append(("kvm.ignore_msrs=1: the access is ignored (reads return 0)", ()))
        return Decision(_EMULATED, None, None, True, _OK, 0 if req.access is _R else None,
                        emu.missing, tuple(steps), steps[-1])
    return _fail(scenario, emu.ret, steps, missing=emu.missing, cause=cause)


def _decide_passthrough(scenario: Scenario, req: MsrAccess, ints: Intercepts,
                        row: Msr | None) -> Decision:
    rule = ints.settings.get((req.msr, req.access))
    verb = "WRMSR" if req.access is _W else "RDMSR"
    first: Why = (_RULE_PASSES, (rule[0],)) if rule is not None else (
        "KVM passes it through on demand: {0}", (ints.on_demand.get((req.msr, req.access)),))
    steps: tuple[Why, ...] = (first, (_bit_clear_text, (verb, req.msr)))
    missing = ""
    if req.access is _W:
        problem, missing = hardware_problem(row, req.value, scenario)
        if problem is not None:
            refused: Why = ("the CPU refuses the value ({0}): hardware #GP", (problem,))
            return Decision(_GP, None, None, False, None, None, missing, (*steps, refused),
                            ("hardware #GP: {0}", (problem,)))
    elif row is None:
        missing = "the CPU's handling of an MSR KVM does not know"
    cause: Why = ("{0.id}: {0.pass_when}", (rule[0],)) if rule is not None else first
    return _new(Decision, (_PASSTHROUGH, None, None, False, None, None, missing, steps, cause,
                           None, False))


def _fail(scenario: Scenario, ret: KvmRet, steps: list[Why], *, missing: str,
          cause: Why) -> Decision:
    reason = EXIT_REASON_OF.get(ret, _INVAL)  # x86.c kvm_msr_reason
    if int(reason) & int(scenario.exits):
        steps.append(("exit reason {0.name} is enabled (KVM_CAP_X86_USER_SPACE_MSR): the vCPU"
                      " exits to userspace", (reason,)))
        return _new(Decision, (_EXIT, reason, reason, True, ret, None, missing, tuple(steps),
                               cause, None, False))
    steps.append(("exit reason {0.name} is not enabled: KVM injects #GP(0)", (reason,)))
    return _new(Decision, (_GP, None, reason, True, ret, None, missing, tuple(steps), cause,
                           None, False))


def _decide_host(scenario: Scenario, req: MsrAccess, row: Msr | None) -> Decision:
    verb = "KVM_SET_MSRS" if req.access is _W else "KVM_GET_MSRS"
    steps: list[Why] = [("host-initiated {0}: no bitmap, the userspace filter does not apply",
                         (verb,))]
    emu = emulate(scenario, req.msr, req.access, req.value, True, row, req.current)
    steps.append(emu.why)
    ret, value, cause = emu.ret, emu.value, emu.why
    if ret is _UNSUP and advertised(scenario, req.msr):
        # kvm_do_msr_access: "host_initiated && !*data && kvm_is_advertised_msr(msr)".
        if req.access is _R or req.value == 0:
            steps.append(("UNSUPPORTED but in KVM_GET_MSR_INDEX_LIST: a host read returns 0"
                          " and a host write of 0 succeeds", ()))
            ret, value, cause = _OK, 0 if req.access is _R else None, steps[-1]
        else:
            steps.append(("in KVM_GET_MSR_INDEX_LIST, but only a write of 0 is excused", ()))
    if ret is _UNSUP and scenario.ignore_msrs:
        steps.append(("kvm.ignore_msrs=1: ignored", ()))
        ret, value, cause = _OK, 0 if req.access is _R else None, steps[-1]
    ok = ret is _OK
    steps.append(("{0} processes the entry" if ok
                  else "{0} stops at this entry (0 processed)", (verb,)))
    return Decision(_EMULATED if ok else _REJECTED, None, None, True, ret, value, emu.missing,
                    tuple(steps), cause, emu.stored if ok else None, emu.changes and ok)


def _skipped_rules(ints: Intercepts, req: MsrAccess) -> list[Rule]:
    return [r for r in ints.skipped if req.msr in r.msrs and int(r.access) & int(req.access)]


def _why_intercepted(scenario: Scenario, ints: Intercepts, req: MsrAccess) -> tuple[str, str]:
    """Why the access exits: (in a few words, in a sentence).  One case analysis for both."""
    if ints.bitmap is None:
        return ("no MSR bitmap",
                f"{scenario.host.backend.value}: no MSR bitmap, every RDMSR/WRMSR traps to KVM")
    setting = ints.setting(req.msr, req.access)
    name = _msr_name(req.msr)
    if setting is not None:
        if setting.filter_denied:
            return ("filter forces intercept",
                    f"intercepted: rule {setting.rule.id} would pass it through, but the filter"
                    " denies this direction, so the bit stays set")
        return (f"{setting.rule.id}: {setting.rule.intercept_when}",
                render((_RULE_INTERCEPTS, (setting.rule,))))
    if skipped := _skipped_rules(ints, req):
        conds = "; ".join(r.runs_when for r in skipped)
        return (f"{skipped[0].id} did not run (needs {skipped[0].runs_when})",
                f"intercepted: rule {', '.join(r.id for r in skipped)} did not run"
                f" (needs: {conds}), so the bit stays set from vCPU creation")
    if ints.bitmap.bit_position(req.msr, req.access) is None:
        return ("outside the bitmap",
                f"intercepted: {name} is outside the bitmap's ranges, so it always exits")
    return ("no passthrough rule",
            f"intercepted: no rule of {scenario.policy.name} passes {name} through")


def _cause_text(scenario: Scenario, ints: Intercepts, req: MsrAccess, emu: Why) -> str:
    """Why the access exits, in a few words, then what KVM made of it."""
    return f"{_why_intercepted(scenario, ints, req)[0]} -> {render(emu)}"


def _intercept_text(scenario: Scenario, ints: Intercepts, req: MsrAccess) -> str:
    return _why_intercepted(scenario, ints, req)[1]


def _filter_text(flt: MsrFilter, req: MsrAccess, allowed: bool) -> str:
    verb = "allows" if allowed else "denies"
    if req.msr in X2APIC_RANGE:
        return "x2APIC MSRs cannot be filtered"
    i = flt.deciding_range(req.msr, req.access)
    if i is None:
        return f"the filter {verb} it by default (no range covers it for {req.access.label})"
    rng = flt.ranges[i]
    return (f"filter range {i} (base {rng.base:#x}, {rng.nmsrs} MSRs) {verb} the"
            f" {req.access.label}: bit {req.msr - rng.base} is {int(allowed)}")


def explain_msr(scenario: Scenario, index: int,
                intercepts: Intercepts | None = None) -> tuple[Decision, Decision]:
    """(read, write) decisions for a guest access to ``index``; the write uses a valid value
    (the MSR's reset value, or 0)."""
    if not 0 <= index <= 0xFFFF_FFFF:
        raise UsageError(f"an MSR index must be a u32, not {index:#x}")
    ints = intercepts if intercepts is not None else compute_intercepts(scenario)
    row = BY_INDEX.get(index)
    value = 0
    if row is not None:
        reset = row.reset if not (row.overrides or row.quirks) else \
            view(row, scenario.backend).reset
        value = reset if reset is not None else 0
    return (
        _decide_guest(scenario, _new(MsrAccess, (index, _R, 0, _GUEST, None)), ints, row),
        _decide_guest(scenario, _new(MsrAccess, (index, _W, value, _GUEST, None)), ints, row),
    )

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

from collections.abc import Callable
from enum import StrEnum
from typing import NamedTuple

from msrvirt.arch.cpuid import Feature
from msrvirt.arch.kvm import Access, Backend, ExitReason, KvmRet, Vendor, exit_reason_for
from msrvirt.arch.msrs import Check, Emul, Gate, Msr, QuirkKind, lookup
from msrvirt.errors import UsageError
from msrvirt.policy.filter import MsrFilter
from msrvirt.policy.intercepts import Intercepts, compute_intercepts
from msrvirt.policy.policies import Rule
from msrvirt.policy.scenario import Scenario

U64 = (1 << 64) - 1


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
    """One access: MSR index, direction (R or W), value written, and who makes it.

    A NamedTuple for the same reason as Decision; `decide` checks its fields.
    """

    msr: int
    access: Access
    value: int = 0
    initiator: Initiator = Initiator.GUEST


def check_access(req: MsrAccess) -> None:
    """Raise UsageError unless ``req`` reads or writes a u32 MSR index with a u64 value."""
    if req.access is not Access.R and req.access is not Access.W:
        raise UsageError(f"an access must be a read or a write, not {req.access!r}")
    if not 0 <= req.value <= U64:
        raise UsageError(f"an MSR value must be a u64, not {req.value:#x}")
    if not 0 <= req.msr <= 0xFFFF_FFFF:
        raise UsageError(f"an MSR index must be a u32, not {req.msr:#x}")


# A reason, kept as a template (or a function) and its arguments and turned into text only
# when shown: deciding is on the hot path of every sweep, formatting is not.
Why = tuple[str | Callable[..., str], tuple[object, ...]]


def render(why: Why) -> str:
    """The text of one reason."""
    template, args = why
    return template(*args) if callable(template) else template.format(*args)


class Decision(NamedTuple):
    """The outcome of one access and the chain of reasons that leads there.

    A NamedTuple rather than a frozen dataclass: one is built per access on the hot path of
    every sweep, and CPython 3.11 builds a tuple about three times faster (docs/design.md).
    """

    outcome: Outcome
    exit_reason: ExitReason | None  # for EXIT; also the reason a GP would have exited with
    intercept: bool  # the access causes a VM exit (always for host-initiated ones)
    kvm_ret: KvmRet | None  # KVM's emulation result, None when KVM was not involved
    value: int | None  # the value a read returns, where the model knows it
    exact: bool  # False: the model is not sure of the part after the filter
    steps: tuple[Why, ...]  # the chain of reasons, in order
    cause: Why  # the one reason that decides the outcome

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


class Emulation(NamedTuple):
    """What KVM's MSR code returns for an access it handles (a NamedTuple, as Decision)."""

    ret: KvmRet
    value: int | None
    exact: bool
    why: Why


# Module-level aliases of enum members used per access: an attribute lookup on an enum
# class is a Python-level call in 3.11 (~0.1 us), and a decision makes a dozen of them.
_R = Access.R
_W = Access.W
_HOST = Initiator.HOST
_OK = KvmRet.OK
_ERR = KvmRet.ERR
_UNSUP = KvmRet.UNSUPPORTED
_FILTERED = KvmRet.FILTERED
_PASSTHROUGH = Outcome.PASSTHROUGH
_EMULATED = Outcome.EMULATED
_GP = Outcome.GP
_EXIT = Outcome.EXIT
_REJECTED = Outcome.REJECTED
_E_UNSUP = Emul.UNSUPPORTED
_E_X2APIC = Emul.X2APIC
_E_COMMAND = Emul.COMMAND
_E_HOST_ONLY = Emul.HOST_ONLY
_E_READ_ZERO = Emul.READ_ZERO
_E_IGNORED = Emul.IGNORED
_E_READ_ONLY = Emul.READ_ONLY
_E_HOST_WRITE = Emul.HOST_WRITE
_Q_NO_GATE = QuirkKind.NO_GATE
_Q_NO_VALUE_CHECK = QuirkKind.NO_VALUE_CHECK
_Q_RESET = QuirkKind.RESET
_C_CANONICALIZE = Check.CANONICALIZE


def canonical(value: int, bits: int) -> bool:
    """Whether ``value`` is canonical for a ``bits``-wide linear address (sign-extended)."""
    top = value >> (bits - 1)
    return top == 0 or top == (1 << (65 - bits)) - 1


def _canonicalize(value: int, bits: int) -> int:
    shift = 64 - bits
    signed = (value << shift) & U64
    if signed >> 63:
        return ((signed | ~U64) >> shift) & U64
    return signed >> shift


_PAT_TYPES = frozenset({0, 1, 4, 5, 6, 7})
_MTRR_TYPES = frozenset({0, 1, 4, 5, 6})
_CET_RESERVED = 0x3C0  # bits 9:6
_CET_SHSTK_BITS = 0x3  # bits 1:0
_CET_IBT_BITS = 0x3C | (U64 & ~0x3FF)  # bits 5:2, 63:10
_CET_SUPPRESS = 1 << 10
_CET_WAIT_ENDBR = 1 << 11


def value_problem(row: Msr, value: int, scenario: Scenario, *, hardware: bool) -> str | None:
    """Why KVM (``hardware`` False) or the CPU (True) refuses writing ``value`` to ``row``.

    Returns None if the value is accepted.  KVM checks feature-dependent bits against the
    guest's CPUID; the CPU against what it implements (the host's features).  Canonical
    means fitting max_host_virt_addr_bits (57 with LA57, else 48) in both cases: KVM checks
    MSR values against the host width, as the CPU does (is_noncanonical_msr_address).
    """
    rule = row.write
    bits = scenario.host.virt_addr_bits
    if rule.canonical and not canonical(value, bits):
        return f"{value:#x} is not canonical ({bits}-bit linear addresses)"
    if value & rule.reserved:
        return f"reserved bits {value & rule.reserved:#x} are set (mask {rule.reserved:#x})"
    check = rule.check
    if check is Check.CET:
        caps = scenario.host.features if hardware else scenario.guest_caps
        if value & _CET_RESERVED:
            return "CET bits 9:6 are reserved"
        if Feature.SHSTK not in caps and value & _CET_SHSTK_BITS:
            return "CET shadow-stack bits 1:0 set but the guest lacks SHSTK"
        if Feature.IBT not in caps and value & _CET_IBT_BITS:
            return "CET IBT bits 5:2 / 63:10 set but the guest lacks IBT"
        if (value >> 12) & 3:
            return "CET legacy-bitmap base (bits 63:12) must be 16 KiB aligned (bits 13:12 clear)"
        if value & _CET_SUPPRESS and value & _CET_WAIT_ENDBR:
            return "CET SUPPRESS (bit 10) and WAIT_ENDBR (bit 11) both set"
    elif check is Check.PAT:
        bad = [i for i in range(8) if (value >> (8 * i)) & 0xFF not in _PAT_TYPES]
        if bad:
            return f"PAT entry {bad[0]} is not a valid memory type"
    elif check is Check.MTRR_DEF_TYPE:
        if value & ~0xCFF & U64:
            return "MTRRdefType bits outside 0xCFF are reserved"
        if value & 0xFF not in _MTRR_TYPES:
            return f"MTRRdefType type {value & 0xFF} is not a valid memory type"
    elif check is Check.TSC_AUX:
        if scenario.vendor is Vendor.INTEL and value >> 32:
            return "TSC_AUX bits 63:32 must be clear for an Intel-compatible guest"
    elif check is Check.EFER:
        return _efer_problem(value, scenario, scenario.host.features if hardware
                             else scenario.guest_caps)
    return None


_EFER_SCE, _EFER_LME, _EFER_LMA, _EFER_NX = 1 << 0, 1 << 8, 1 << 10, 1 << 11
_EFER_SVME, _EFER_FFXSR = 1 << 12, 1 << 14


def _efer_problem(value: int, scenario: Scenario, caps: frozenset[Feature]) -> str | None:
    known = _EFER_SCE | _EFER_LME | _EFER_LMA | _EFER_NX
    if scenario.host.backend is Backend.SVM:
        known |= _EFER_SVME | _EFER_FFXSR
    if value & ~known:
        return f"EFER bits {value & ~known:#x} are not supported"
    if value & (_EFER_LME | _EFER_LMA) and Feature.LM not in caps:
        return "EFER.LME/LMA need long mode (CPUID lm)"
    if value & _EFER_NX and Feature.NX not in caps:
        return "EFER.NXE needs NX"
    return None


def _gate_text(gate: Gate, caps: frozenset[Feature]) -> str:
    missing = ", ".join(sorted(f.value for f in (gate.need.any_of | gate.need.all_of) - caps))
    return f"{gate.error.name}: guest lacks {missing} (needs {gate.need})"


def _owners_text(row: Msr) -> str:
    owners = "/".join(sorted(b.value for b in row.handled_by or ()))
    return f"UNSUPPORTED: only {owners} vendor code handles {row.name}"


def _canonicalized_text(value: int, bits: int) -> str:
    return f"emulated: stored (made canonical: {_canonicalize(value, bits):#x})"


_UNKNOWN = "UNSUPPORTED: {0:#x} is not in msrvirt's table (assumed unknown to KVM; not exact)"


def emulate(scenario: Scenario, req: MsrAccess) -> Emulation:
    """KVM's __kvm_get_msr / __kvm_set_msr for ``req`` (no filter, no bitmap)."""
    return _emulate(scenario, req, lookup(req.msr))


def _emulate(scenario: Scenario, req: MsrAccess, row: Msr | None) -> Emulation:
    """emulate() with the MSR's row already looked up."""
    if row is None:
        return Emulation(_UNSUP, None, False,
                         (_UNKNOWN, (req.msr,)))
    host = req.initiator is _HOST
    write = req.access is _W
    if row.handled_by is not None and scenario.host.backend not in row.handled_by:
        return Emulation(_UNSUP, None, True,
                         (_owners_text, (row,)))
    caps = scenario.guest_caps
    direction = int(req.access)
    backend = scenario.host.backend
    # A backend quirk (arch/msrs.py) can drop the gate; only what was observed is exact.
    ungated = row.quirks and row.quirk(backend, _Q_NO_GATE) is not None
    for gate in () if ungated else row.gates:
        if not int(gate.access) & direction or (host and not gate.host):
            continue
        if gate.pv and not scenario.runtime.enforce_pv_cpuid:
            continue
        if not gate.need.met(caps):
            return Emulation(gate.error, None, True,
                             (_gate_text, (gate, caps)))
    emul = row.emul
    if emul is _E_UNSUP:
        return Emulation(_UNSUP, None, True,
                         ("UNSUPPORTED: KVM does not emulate {0}", (row.name,)))
    if emul is _E_X2APIC:
        if not scenario.runtime.x2apic_mode:
            return Emulation(_ERR, None, True, (
                "ERR: APIC not in x2APIC mode (kvm_x2apic_msr_read/write return 1)", ()))
        if write and req.value >> 32 and row.index != 0x830:
            return Emulation(_ERR, None, True,
                             ("ERR: x2APIC register write with bits 63:32 set", ()))
        return Emulation(_OK, None, False,
                         ("emulated by the in-kernel x2APIC", ()))
    if not write:
        if emul is _E_COMMAND:
            return Emulation(_UNSUP, None, True, (
                "UNSUPPORTED: write-only command MSR, KVM has no read handler", ()))
        if emul is _E_HOST_ONLY and not host:
            return Emulation(_ERR, None, True,
                             ("ERR: host-only MSR, a guest access fails", ()))
        value = 0 if emul in (_E_READ_ZERO, _E_IGNORED) else reset_value(row, backend)
        return Emulation(_OK, value, True,
                         ("emulated: {0} value", (emul.value,)))
    if emul is _E_READ_ZERO:
        return Emulation(_UNSUP, None, True,
                         ("UNSUPPORTED: KVM reads it as 0 but has no write handler", ()))
    if emul is _E_READ_ONLY:
        return Emulation(_ERR, None, row.write.exact,
                         ("ERR: read-only MSR", ()))
    if emul is _E_HOST_WRITE and not host:
        return Emulation(_UNSUP, None, True,
                         ("UNSUPPORTED: only userspace may write it", ()))
    if emul is _E_HOST_ONLY and not host:
        return Emulation(_ERR, None, True,
                         ("ERR: host-only MSR, a guest write fails", ()))
    checked = not (row.quirks and row.quirk(backend, _Q_NO_VALUE_CHECK))
    problem = value_problem(row, req.value, scenario, hardware=False) if checked else None
    if problem is not None:
        return Emulation(_ERR, None, True,
                         ("ERR: invalid value, {0}", (problem,)))
    if emul is _E_IGNORED:
        return Emulation(_OK, None, row.write.exact,
                         ("emulated: KVM accepts and drops the write", ()))
    if row.write.check is _C_CANONICALIZE:
        return Emulation(_OK, None, row.write.exact,
                         (_canonicalized_text, (req.value, scenario.host.virt_addr_bits)))
    exact = row.write.exact and not (ungated and req.value != 0)
    return Emulation(_OK, None, exact, ("emulated: stored", ()))


def reset_value(row: Msr, backend: Backend) -> int | None:
    """The MSR's value after vCPU creation on ``backend`` (None where the model does not know)."""
    quirk = row.quirk(backend, _Q_RESET) if row.quirks else None
    return quirk.value if quirk is not None else row.reset


def advertised(scenario: Scenario, index: int) -> bool:
    """Whether ``index`` is in KVM_GET_MSR_INDEX_LIST for this host."""
    if scenario.host.msr_index_list is not None:
        return index in scenario.host.msr_index_list
    row = lookup(index)
    return row is not None and row.listed is not None and row.listed.met(scenario.kvm_caps)


_RULE_PASSES = "rule {0.id} ran ({0.runs_when}) and passes through: {0.pass_when} [{0.source}]"
_RULE_INTERCEPTS = "rule {0.id} ran ({0.runs_when}) and intercepts: {0.intercept_when} [{0.source}]"
def _bit_clear_text(verb: str, index: int) -> str:
    return f"bitmap bit clear: the {verb} of {_msr_name(index)} runs on the CPU, no VM exit"


_BIT_CLEAR = _bit_clear_text


def _msr_name(index: int) -> str:
    row = lookup(index)
    return row.name if row else f"MSR {index:#x}"


def decide(scenario: Scenario, req: MsrAccess, intercepts: Intercepts | None = None) -> Decision:
    """The outcome of ``req`` under ``scenario``; ``intercepts`` may be passed to save work."""
    check_access(req)
    return _decide(scenario, req, intercepts if intercepts is not None
                   else compute_intercepts(scenario), lookup(req.msr))


def _decide(scenario: Scenario, req: MsrAccess, ints: Intercepts,
            row: Msr | None) -> Decision:
    """decide() for a request already checked, with its MSR's row (None: no row)."""
    if req.initiator is _HOST:
        return _decide_host(scenario, req)
    if not ints.intercepted(req.msr, req.access):
        return _decide_passthrough(scenario, req, ints, row)
    steps: list[Why] = [(_intercept_text, (scenario, ints, req))]
    flt = scenario.filter
    if not flt.allows(req.msr, req.access):
        steps.append((_filter_text, (flt, req, False)))
        return _fail(scenario, _FILTERED, steps, exact=True, cause=steps[-1])
    if flt.ranges:
        steps.append((_filter_text, (flt, req, True)))
    emu = _emulate(scenario, req, row)
    steps.append(emu.why)
    cause = (_cause_text, (scenario, ints, req, emu.why))
    if emu.ret is _OK:
        return Decision(_EMULATED, None, True, _OK, emu.value, emu.exact, tuple(steps), cause)
    if emu.ret is _UNSUP and scenario.host.ignore_msrs:
        steps.append(("kvm.ignore_msrs=1: the access is ignored (reads return 0)", ()))
        return Decision(_EMULATED, None, True, _OK,
                        0 if req.access is _R else None, emu.exact, tuple(steps), steps[-1])
    return _fail(scenario, emu.ret, steps, exact=emu.exact, cause=cause)


def _decide_passthrough(scenario: Scenario, req: MsrAccess, ints: Intercepts,
                        row: Msr | None) -> Decision:
    rule = ints.settings[(req.msr, req.access)][0]  # only a rule clears a bit
    verb = "WRMSR" if req.access is _W else "RDMSR"
    steps: tuple[Why, ...] = ((_RULE_PASSES, (rule,)), (_BIT_CLEAR, (verb, req.msr)))
    if req.access is _W and row is not None:
        problem = value_problem(row, req.value, scenario, hardware=True)
        if problem is not None:
            refused: Why = ("the CPU refuses the value ({0}): hardware #GP", (problem,))
            return Decision(_GP, None, False, None, None, row.write.exact,
                            (*steps, refused), ("hardware #GP: {0}", (problem,)))
    return Decision(_PASSTHROUGH, None, False, None, None,
                    row is not None and row.write.exact, steps, ("{0.id}: {0.pass_when}", (rule,)))


def _fail(scenario: Scenario, ret: KvmRet, steps: list[Why], *, exact: bool,
          cause: Why) -> Decision:
    reason = exit_reason_for(ret)
    if int(reason) & int(scenario.exits):
        steps.append(("exit reason {0.name} is enabled (KVM_CAP_X86_USER_SPACE_MSR): the vCPU"
                      " exits to userspace", (reason,)))
        outcome = _EXIT
    else:
        steps.append(("exit reason {0.name} is not enabled: KVM injects #GP(0)", (reason,)))
        outcome = _GP
    return Decision(outcome, reason, True, ret, None, exact, tuple(steps), cause)


def _decide_host(scenario: Scenario, req: MsrAccess) -> Decision:
    verb = "KVM_SET_MSRS" if req.access is _W else "KVM_GET_MSRS"
    steps: list[Why] = [("host-initiated {0}: no bitmap, the userspace filter does not apply",
                         (verb,))]
    emu = emulate(scenario, req)
    steps.append(emu.why)
    ret, value, cause = emu.ret, emu.value, emu.why
    if ret is _UNSUP and advertised(scenario, req.msr):
        if req.access is _R or req.value == 0:
            steps.append(("UNSUPPORTED but in KVM_GET_MSR_INDEX_LIST: a host read returns 0"
                              " and a host write of 0 succeeds", ()))
            ret, value, cause = _OK, 0 if req.access is _R else None, steps[-1]
        else:
            steps.append(("in KVM_GET_MSR_INDEX_LIST, but only a write of 0 is excused", ()))
    if ret is _UNSUP and scenario.host.ignore_msrs:
        steps.append(("kvm.ignore_msrs=1: ignored", ()))
        ret, value, cause = _OK, 0 if req.access is _R else None, steps[-1]
    ok = ret is _OK
    steps.append(("{0} processes the entry" if ok
                      else "{0} stops at this entry (0 processed)", (verb,)))
    return Decision(_EMULATED if ok else _REJECTED, None, True, ret, value,
                    emu.exact and lookup(req.msr) is not None, tuple(steps), cause)


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
    if 0x800 <= req.msr <= 0x8FF:
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
    ints = intercepts if intercepts is not None else compute_intercepts(scenario)
    row = lookup(index)
    value = row.reset if row is not None and row.reset is not None else 0
    if not 0 <= index <= 0xFFFF_FFFF:
        raise UsageError(f"an MSR index must be a u32, not {index:#x}")
    return (
        _decide(scenario, MsrAccess(index, _R), ints, row),
        _decide(scenario, MsrAccess(index, _W, value), ints, row),
    )

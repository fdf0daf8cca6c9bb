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

from dataclasses import dataclass
from enum import StrEnum

from msrvirt.arch.cpuid import Feature
from msrvirt.arch.kvm import Access, Backend, ExitReason, KvmRet, Vendor, exit_reason_for
from msrvirt.arch.msrs import Check, Emul, Msr, lookup
from msrvirt.errors import UsageError
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


@dataclass(frozen=True, slots=True, kw_only=True)
class MsrAccess:
    """One access: MSR index, direction (R or W), value written, and who makes it."""

    index: int
    access: Access
    value: int = 0
    initiator: Initiator = Initiator.GUEST

    def __post_init__(self) -> None:
        if self.access not in (Access.R, Access.W):
            raise UsageError(f"an access must be a read or a write, not {self.access!r}")
        if not 0 <= self.value <= U64:
            raise UsageError(f"an MSR value must be a u64, not {self.value:#x}")
        if not 0 <= self.index <= 0xFFFF_FFFF:
            raise UsageError(f"an MSR index must be a u32, not {self.index:#x}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """The outcome of one access and the chain of reasons that leads there."""

    outcome: Outcome
    exit_reason: ExitReason | None  # for EXIT; also the reason a GP would have exited with
    intercept: bool  # the access causes a VM exit (always for host-initiated ones)
    kvm_ret: KvmRet | None  # KVM's emulation result, None when KVM was not involved
    value: int | None  # the value a read returns, where the model knows it
    exact: bool  # False: the model is not sure of the part after the filter
    reasons: tuple[str, ...]
    summary: str  # the one reason that decides the outcome

    @property
    def filtered(self) -> bool:
        """The userspace filter denied this access."""
        return self.kvm_ret is KvmRet.FILTERED


@dataclass(frozen=True, slots=True, kw_only=True)
class Emulation:
    ret: KvmRet
    value: int | None
    exact: bool
    reasons: tuple[str, ...]


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


def emulate(scenario: Scenario, req: MsrAccess) -> Emulation:
    """KVM's __kvm_get_msr / __kvm_set_msr for ``req`` (no filter, no bitmap)."""
    row = lookup(req.index)
    host = req.initiator is Initiator.HOST
    write = req.access is Access.W
    if row is None:
        return Emulation(
            ret=KvmRet.UNSUPPORTED, value=None, exact=False,
            reasons=(f"UNSUPPORTED: {req.index:#x} is not in msrvirt's table (assumed unknown"
                     " to KVM; not exact)",),
        )
    backend = scenario.host.backend
    if row.handled_by is not None and backend not in row.handled_by:
        owners = "/".join(sorted(b.value for b in row.handled_by))
        return Emulation(ret=KvmRet.UNSUPPORTED, value=None, exact=True, reasons=(
            f"UNSUPPORTED: only {owners} vendor code handles {row.name}",))
    caps = scenario.guest_caps
    for gate in row.gates:
        if not gate.access & req.access or (host and not gate.host):
            continue
        if gate.pv and not scenario.runtime.enforce_pv_cpuid:
            continue
        if not gate.need.met(caps):
            missing = ", ".join(sorted(f.value for f in (gate.need.any_of | gate.need.all_of)
                                       - caps))
            return Emulation(ret=gate.error, value=None, exact=True, reasons=(
                f"{gate.error.name}: guest lacks {missing} (needs {gate.need})",))
    emul = row.emul
    value = row.reset
    if emul is Emul.UNSUPPORTED:
        return Emulation(ret=KvmRet.UNSUPPORTED, value=None, exact=True,
                         reasons=(f"UNSUPPORTED: KVM does not emulate {row.name}",))
    if emul is Emul.X2APIC:
        if not scenario.runtime.x2apic_mode:
            return Emulation(ret=KvmRet.ERR, value=None, exact=True, reasons=(
                "ERR: APIC not in x2APIC mode (kvm_x2apic_msr_read/write return 1)",))
        if write and req.value >> 32 and row.index != 0x830:
            return Emulation(ret=KvmRet.ERR, value=None, exact=True,
                             reasons=("ERR: x2APIC register write with bits 63:32 set",))
        return Emulation(ret=KvmRet.OK, value=None, exact=False,
                         reasons=("emulated by the in-kernel x2APIC",))
    if not write:
        if emul is Emul.COMMAND:
            return Emulation(ret=KvmRet.UNSUPPORTED, value=None, exact=True, reasons=(
                "UNSUPPORTED: write-only command MSR, KVM has no read handler",))
        if emul in (Emul.READ_ZERO, Emul.IGNORED):
            value = 0
        if emul is Emul.HOST_ONLY and not host:
            return Emulation(ret=KvmRet.ERR, value=None, exact=True,
                             reasons=("ERR: host-only MSR, a guest access fails",))
        return Emulation(ret=KvmRet.OK, value=value, exact=True,
                         reasons=(f"emulated: {row.emul.value} value",))
    # writes
    if emul is Emul.READ_ZERO:
        return Emulation(ret=KvmRet.UNSUPPORTED, value=None, exact=True, reasons=(
            "UNSUPPORTED: KVM reads it as 0 but has no write handler",))
    if emul is Emul.READ_ONLY:
        return Emulation(ret=KvmRet.ERR, value=None, exact=row.write.exact,
                         reasons=("ERR: read-only MSR",))
    if emul is Emul.HOST_WRITE and not host:
        return Emulation(ret=KvmRet.UNSUPPORTED, value=None, exact=True,
                         reasons=("UNSUPPORTED: only userspace may write it",))
    if emul is Emul.HOST_ONLY and not host:
        return Emulation(ret=KvmRet.ERR, value=None, exact=True,
                         reasons=("ERR: host-only MSR, a guest write fails",))
    problem = value_problem(row, req.value, scenario, hardware=False)
    if problem is not None:
        return Emulation(ret=KvmRet.ERR, value=None, exact=True,
                         reasons=(f"ERR: invalid value, {problem}",))
    if emul is Emul.IGNORED:
        return Emulation(ret=KvmRet.OK, value=None, exact=row.write.exact,
                         reasons=("emulated: KVM accepts and drops the write",))
    why = "emulated: stored"
    if row.write.check is Check.CANONICALIZE:
        bits = scenario.host.virt_addr_bits
        why += f" (made canonical: {_canonicalize(req.value, bits):#x})"
    return Emulation(ret=KvmRet.OK, value=None, exact=row.write.exact, reasons=(why,))


def advertised(scenario: Scenario, index: int) -> bool:
    """Whether ``index`` is in KVM_GET_MSR_INDEX_LIST for this host."""
    if scenario.host.msr_index_list is not None:
        return index in scenario.host.msr_index_list
    row = lookup(index)
    return row is not None and row.listed is not None and row.listed.met(scenario.kvm_caps)


def decide(scenario: Scenario, req: MsrAccess, intercepts: Intercepts | None = None) -> Decision:
    """The outcome of ``req`` under ``scenario``; ``intercepts`` may be passed to save work."""
    if req.initiator is Initiator.HOST:
        return _decide_host(scenario, req)
    ints = intercepts if intercepts is not None else compute_intercepts(scenario)
    reasons: list[str] = []
    row = lookup(req.index)
    name = row.name if row else f"MSR {req.index:#x}"
    verb = "WRMSR" if req.access is Access.W else "RDMSR"
    if not ints.intercepted(req.index, req.access):
        setting = ints.setting(req.index, req.access)
        assert setting is not None  # a clear bit was cleared by some rule
        reasons.append(_rule_reason(setting.rule, setting.wanted_intercept))
        reasons.append(f"bitmap bit clear: the {verb} of {name} runs on the CPU, no VM exit")
        if req.access is Access.W and row is not None:
            problem = value_problem(row, req.value, scenario, hardware=True)
            if problem is not None:
                reasons.append(f"the CPU refuses the value ({problem}): hardware #GP")
                return Decision(outcome=Outcome.GP, exit_reason=None, intercept=False,
                                kvm_ret=None, value=None, exact=row.write.exact,
                                reasons=tuple(reasons), summary=f"hardware #GP: {problem}")
        return Decision(outcome=Outcome.PASSTHROUGH, exit_reason=None, intercept=False,
                        kvm_ret=None, value=None, exact=row is not None and row.write.exact,
                        reasons=tuple(reasons),
                        summary=f"{setting.rule.id}: {setting.rule.pass_when}")
    reasons.append(_intercept_reason(scenario, ints, req, name))
    if not scenario.filter.allows(req.index, req.access):
        reasons.append(_filter_reason(scenario, req, allowed=False))
        return _fail(scenario, KvmRet.FILTERED, reasons, exact=True, summary=reasons[-1])
    if scenario.filter != type(scenario.filter)():
        reasons.append(_filter_reason(scenario, req, allowed=True))
    emu = emulate(scenario, req)
    reasons.extend(emu.reasons)
    cause = f"{_intercept_cause(ints, req)} -> {emu.reasons[0]}"
    if emu.ret is KvmRet.OK:
        return Decision(outcome=Outcome.EMULATED, exit_reason=None, intercept=True,
                        kvm_ret=KvmRet.OK, value=emu.value, exact=emu.exact,
                        reasons=tuple(reasons), summary=cause)
    if emu.ret is KvmRet.UNSUPPORTED and scenario.host.ignore_msrs:
        reasons.append("kvm.ignore_msrs=1: the access is ignored (reads return 0)")
        return Decision(outcome=Outcome.EMULATED, exit_reason=None, intercept=True,
                        kvm_ret=KvmRet.OK, value=0 if req.access is Access.R else None,
                        exact=emu.exact, reasons=tuple(reasons), summary=reasons[-1])
    return _fail(scenario, emu.ret, reasons, exact=emu.exact, summary=cause)


def _fail(scenario: Scenario, ret: KvmRet, reasons: list[str], *, exact: bool,
          summary: str) -> Decision:
    reason = exit_reason_for(ret)
    if reason & scenario.exits:
        reasons.append(f"exit reason {reason.name} is enabled (KVM_CAP_X86_USER_SPACE_MSR):"
                       " the vCPU exits to userspace")
        outcome = Outcome.EXIT
    else:
        reasons.append(f"exit reason {reason.name} is not enabled: KVM injects #GP(0)")
        outcome = Outcome.GP
    return Decision(outcome=outcome, exit_reason=reason, intercept=True, kvm_ret=ret,
                    value=None, exact=exact, reasons=tuple(reasons), summary=summary)


def _decide_host(scenario: Scenario, req: MsrAccess) -> Decision:
    row = lookup(req.index)
    verb = "KVM_SET_MSRS" if req.access is Access.W else "KVM_GET_MSRS"
    reasons = [f"host-initiated {verb}: no bitmap, the userspace filter does not apply"]
    emu = emulate(scenario, req)
    reasons.extend(emu.reasons)
    ret, value, summary = emu.ret, emu.value, emu.reasons[0]
    if ret is KvmRet.UNSUPPORTED and advertised(scenario, req.index):
        if req.access is Access.R or req.value == 0:
            reasons.append("UNSUPPORTED but in KVM_GET_MSR_INDEX_LIST: a host read returns 0"
                           " and a host write of 0 succeeds")
            ret, value, summary = KvmRet.OK, 0 if req.access is Access.R else None, reasons[-1]
        else:
            reasons.append("in KVM_GET_MSR_INDEX_LIST, but only a write of 0 is excused")
    if ret is KvmRet.UNSUPPORTED and scenario.host.ignore_msrs:
        reasons.append("kvm.ignore_msrs=1: ignored")
        ret, value, summary = KvmRet.OK, 0 if req.access is Access.R else None, reasons[-1]
    ok = ret is KvmRet.OK
    reasons.append(f"{verb} {'processes the entry' if ok else 'stops at this entry (0 processed)'}")
    return Decision(
        outcome=Outcome.EMULATED if ok else Outcome.REJECTED, exit_reason=None, intercept=True,
        kvm_ret=ret, value=value, exact=emu.exact and row is not None, reasons=tuple(reasons),
        summary=summary,
    )


def _rule_reason(rule: Rule, wanted: bool) -> str:
    verdict = f"intercepts: {rule.intercept_when}" if wanted else f"passes through: {rule.pass_when}"
    return f"rule {rule.id} ran ({rule.runs_when}) and {verdict} [{rule.source}]"


def _intercept_cause(ints: Intercepts, req: MsrAccess) -> str:
    """Why the access exits, in a few words."""
    if ints.bitmap is None:
        return "no MSR bitmap"
    setting = ints.setting(req.index, req.access)
    if setting is not None:
        if setting.filter_denied:
            return "filter forces intercept"
        return f"{setting.rule.id}: {setting.rule.intercept_when}"
    for rule in ints.skipped:
        if req.index in rule.msrs and rule.access & req.access:
            return f"{rule.id} did not run (needs {rule.runs_when})"
    if ints.bitmap.bit_position(req.index, req.access) is None:
        return "outside the bitmap"
    return "no passthrough rule"


def _intercept_reason(scenario: Scenario, ints: Intercepts, req: MsrAccess, name: str) -> str:
    if ints.bitmap is None:
        return f"{scenario.host.backend.value}: no MSR bitmap, every RDMSR/WRMSR traps to KVM"
    setting = ints.setting(req.index, req.access)
    if setting is None:
        skipped = [r.id for r in ints.skipped if req.index in r.msrs and r.access & req.access]
        if skipped:
            conds = "; ".join(r.runs_when for r in ints.skipped if r.id in skipped)
            return (f"intercepted: rule {', '.join(skipped)} did not run (needs: {conds}),"
                    " so the bit stays set from vCPU creation")
        if ints.bitmap.bit_position(req.index, req.access) is None:
            return f"intercepted: {name} is outside the bitmap's ranges, so it always exits"
        return f"intercepted: no rule of {scenario.policy.name} passes {name} through"
    if setting.filter_denied:
        return (f"intercepted: rule {setting.rule.id} would pass it through, but the filter"
                " denies this direction, so the bit stays set")
    return _rule_reason(setting.rule, setting.wanted_intercept)


def _filter_reason(scenario: Scenario, req: MsrAccess, *, allowed: bool) -> str:
    flt = scenario.filter
    verb = "allows" if allowed else "denies"
    if 0x800 <= req.index <= 0x8FF:
        return "x2APIC MSRs cannot be filtered"
    i = flt.deciding_range(req.index, req.access)
    if i is None:
        return f"the filter {verb} it by default (no range covers it for {req.access.label})"
    rng = flt.ranges[i]
    return (f"filter range {i} (base {rng.base:#x}, {rng.nmsrs} MSRs) {verb} the"
            f" {req.access.label}: bit {req.index - rng.base} is {int(allowed)}")


def explain_msr(scenario: Scenario, index: int,
                intercepts: Intercepts | None = None) -> tuple[Decision, Decision]:
    """(read, write) decisions for a guest access to ``index``; the write uses a valid value
    (the MSR's reset value, or 0)."""
    ints = intercepts if intercepts is not None else compute_intercepts(scenario)
    row = lookup(index)
    value = row.reset if row is not None and row.reset is not None else 0
    return (
        decide(scenario, MsrAccess(index=index, access=Access.R), ints),
        decide(scenario, MsrAccess(index=index, access=Access.W, value=value), ints),
    )

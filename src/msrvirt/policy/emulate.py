"""KVM's MSR emulation: what __kvm_get_msr / __kvm_set_msr return for one access.

`emulate` follows the kernel's order for an access that reached KVM (no bitmap, no filter):
the Xen hypercall MSR (kvm_set_msr_common's first check), the pre-checks of
__kvm_set_msr / __kvm_get_msr and the vendor code's gates (the row's ``gates``, in
order), then the handler of the row's kind (``Emul``) with its value rules (``Check``).
Every handler names the kernel function it follows (Linux v6.19, arch/kernel.py).  A
result the model cannot vouch for carries ``missing``: what it would need to know.

`hardware_problem` is the other half: what the CPU itself refuses when an MSR is passed
through (Intel SDM Vol. 4 and Vol. 3; AMD APM Vol. 2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from msrvirt.arch.cpuid import Feature
from msrvirt.arch.hosts import HwCap, PtMode
from msrvirt.arch.kvm import U64, Access, Backend, KvmRet, Vendor
from msrvirt.arch.msrs import (
    VMX_CAP_NOT_RESTORABLE,
    Check,
    Cond,
    Emul,
    Family,
    Gate,
    Msr,
    Override,
    QuirkKind,
    WriteRule,
    index_of,
)
from msrvirt.policy.scenario import Scenario

F = Feature
_OK, _ERR, _UNSUP = KvmRet.OK, KvmRet.ERR, KvmRet.UNSUPPORTED
_R, _W = Access.R, Access.W

# A reason, kept as a template (or a function) and its arguments and turned into text only
# when shown: deciding is on the hot path of every sweep, formatting is not.
Why = tuple[str | Callable[..., str], tuple[object, ...]]


def render(why: Why) -> str:
    """The text of one reason."""
    template, args = why
    return template(*args) if callable(template) else template.format(*args)


class Emulation(NamedTuple):
    """What KVM's MSR code returns for an access (a NamedTuple: built once per access).

    ``stored`` is the value reads return after a successful write, where known;
    ``changes`` says whether the write can change what reads return at all.
    """

    ret: KvmRet
    value: int | None  # what a read returns, where the model knows it
    missing: str  # "" when every kernel path of this access is modelled
    why: Why
    stored: int | None = None
    changes: bool = False


class View(NamedTuple):
    """A row as one backend's KVM sees it: the row with its Override and quirks applied."""

    handled: bool  # the backend's code reaches a handler for it (else UNSUPPORTED)
    gates: tuple[Gate, ...]
    # The gates with their direction mask as a plain int (IntFlag arithmetic is slow).
    gate_masks: tuple[tuple[int, Gate], ...]
    emul: Emul
    write: WriteRule
    reset: int | None
    no_gate: bool  # QuirkKind.NO_GATE
    gate_unsupported: bool  # QuirkKind.GATE_UNSUPPORTED
    no_value_check: bool  # QuirkKind.NO_VALUE_CHECK


_VIEWS: dict[tuple[int, Backend], View] = {}


def view(row: Msr, backend: Backend) -> View:
    """The row as ``backend``'s KVM sees it (computed once per row and backend)."""
    key = (row.index, backend)
    found = _VIEWS.get(key)
    if found is not None:
        return found
    over: Override | None = row.override(backend)
    no_gate = row.quirk(backend, QuirkKind.NO_GATE) is not None
    gates = () if no_gate else row.gates if over is None or over.gates is None else over.gates
    reset = row.reset if over is None or over.reset is None else over.reset
    quirk = row.quirk(backend, QuirkKind.RESET)
    if quirk is not None:
        reset = quirk.value
    made = View(
        handled=row.handled_by is None or backend in row.handled_by,
        gates=gates, gate_masks=tuple((int(g.access), g) for g in gates),
        emul=row.emul if over is None or over.emul is None else over.emul,
        write=row.write if over is None or over.write is None else over.write,
        reset=reset, no_gate=no_gate,
        gate_unsupported=row.quirk(backend, QuirkKind.GATE_UNSUPPORTED) is not None,
        no_value_check=row.quirk(backend, QuirkKind.NO_VALUE_CHECK) is not None,
    )
    _VIEWS[key] = made
    return made


class Access1(NamedTuple):
    """The access being emulated, with the row's view for this backend resolved."""

    s: Scenario
    msr: int
    write: bool
    host: bool
    value: int
    current: int | None  # the MSR's value before this access (None: its reset value)
    row: Msr
    v: View
    rule_check: Check  # v.write.check
    reset: int | None  # v.reset


# -- small helpers -------------------------------------------------------------------------------

def canonical(value: int, bits: int) -> bool:
    """Whether ``value`` is canonical for a ``bits``-wide linear address (sign-extended)."""
    top = value >> (bits - 1)
    return top == 0 or top == (1 << (65 - bits)) - 1


def canonicalize(value: int, bits: int) -> int:
    """__canonical_address: sign-extend bit ``bits``-1 into the bits above it."""
    shift = 64 - bits
    signed = (value << shift) & U64
    if signed >> 63:
        return ((signed | ~U64) >> shift) & U64
    return signed >> shift


_WHY_STORED: Why = ("emulated: stored", ())
# tuple.__new__ builds a NamedTuple without its Python-level __new__ (every field given):
# results are built once per access, on the hot path of every sweep.
_new = tuple.__new__


def _kept(value: int) -> Emulation:
    """A successful write that KVM keeps as ``value`` (the common case, built directly)."""
    return _new(Emulation, (_OK, None, "", _WHY_STORED, value, True))


def _ok(why: str, *args: object, value: int | None = None, missing: str = "",
        stored: int | None = None, changes: bool = False) -> Emulation:
    return _new(Emulation, (_OK, value, missing, (why, args), stored, changes))


def _err(why: str, *args: object, missing: str = "") -> Emulation:
    return _new(Emulation, (_ERR, None, missing, (why, args), None, False))


def _unsup(why: str, *args: object, missing: str = "") -> Emulation:
    return _new(Emulation, (_UNSUP, None, missing, (why, args), None, False))


def _current(a: Access1) -> int | None:
    return a.current if a.current is not None else a.reset


def _reserved_gpa(s: Scenario) -> int:
    """kvm_vcpu_reserved_gpa_bits_raw: bits MAXPHYADDR..63 (the guest's MAXPHYADDR is the
    host's as KVM reports it; guest CPUID edits of 0x80000008 are not an input)."""
    return U64 & ~((1 << s.host.phys_addr_bits) - 1)


_PERF_CAPABILITIES = index_of("IA32_PERF_CAPABILITIES")
_PAT_TYPES = frozenset({0, 1, 4, 5, 6, 7})
_MTRR_TYPES = frozenset({0, 1, 4, 5, 6})
_CET_RESERVED = 0x3C0  # bits 9:6
_CET_SHSTK_BITS = 0x3  # bits 1:0
_CET_IBT_BITS = 0x3C | (U64 & ~0x3FF)  # bits 5:2, 63:10
_CET_SUPPRESS = 1 << 10
_CET_WAIT_ENDBR = 1 << 11


def _cet_problem(value: int, caps: frozenset[Feature]) -> str | None:
    """kvm_is_valid_u_s_cet (x86.c)."""
    if value & _CET_RESERVED:
        return "CET bits 9:6 are reserved"
    if F.SHSTK not in caps and value & _CET_SHSTK_BITS:
        return "CET shadow-stack bits 1:0 set but the guest lacks SHSTK"
    if F.IBT not in caps and value & _CET_IBT_BITS:
        return "CET IBT bits 5:2 / 63:10 set but the guest lacks IBT"
    if (value >> 12) & 3:
        return "CET legacy-bitmap base (bits 63:12) must be 16 KiB aligned (bits 13:12 clear)"
    if value & _CET_SUPPRESS and value & _CET_WAIT_ENDBR:
        return "CET SUPPRESS (bit 10) and WAIT_ENDBR (bit 11) both set"
    return None


def _bad_type(value: int, types: frozenset[int]) -> int | None:
    """The first of ``value``'s eight bytes that is not one of the memory ``types``."""
    return next((i for i in range(8) if (value >> (8 * i)) & 0xFF not in types), None)


def _pat_problem(value: int) -> str | None:
    bad = _bad_type(value, _PAT_TYPES)
    return f"PAT entry {bad} is not a valid memory type" if bad is not None else None


def value_problem(row: Msr, value: int, s: Scenario, *, hardware: bool) -> str | None:
    """Why KVM (``hardware`` False) or the CPU (True) refuses writing ``value`` to ``row`` by
    its write rule's fixed checks (`rule_problem`).  None if accepted."""
    return rule_problem(row.write, value, s, hardware=hardware)


def rule_problem(rule: WriteRule, value: int, s: Scenario, *, hardware: bool) -> str | None:
    """Why KVM (``hardware`` False) or the CPU (True) refuses ``value`` by a write rule's fixed
    checks: canonical, reserved bits, CET, PAT, MTRRdefType.  None if accepted.

    Canonical means fitting max_host_virt_addr_bits (57 with LA57, else 48) in both cases:
    KVM checks MSR values against the host width, as the CPU does
    (x86.h is_noncanonical_msr_address; docs/reference-notes.md).
    """
    bits = s.addr_bits
    if rule.canonical and not canonical(value, bits):
        return f"{value:#x} is not canonical ({bits}-bit linear addresses)"
    if value & rule.reserved:
        return f"reserved bits {value & rule.reserved:#x} are set (mask {rule.reserved:#x})"
    check = rule.check
    if check is Check.CET:
        return _cet_problem(value, s.host.features if hardware else s.guest_caps)
    if check is Check.PAT:
        return _pat_problem(value)
    if check is Check.MTRR_DEF_TYPE:
        if value & ~0xCFF & U64:
            return "MTRRdefType bits outside 0xCFF are reserved"
        if value & 0xFF not in _MTRR_TYPES:
            return f"MTRRdefType type {value & 0xFF} is not a valid memory type"
    return None


# -- gates ---------------------------------------------------------------------------------------

def cond_holds(cond: Cond, s: Scenario) -> bool | None:
    """Whether ``cond`` holds in ``s`` (None: the model cannot tell)."""
    p = s.host.params
    if cond is Cond.PT_HOST_GUEST:
        return p.pt_mode is PtMode.HOST_GUEST
    if cond is Cond.NESTED:
        return p.nested
    if cond is Cond.SMM:
        return p.smm
    if cond is Cond.HYPERV:
        return p.hyperv
    if cond is Cond.LAPIC:
        return s.runtime.lapic_in_kernel
    if cond is Cond.MPX:
        return F.MPX in s.kvm_caps  # kvm_mpx_supported: host MPX + the VMCS BNDCFGS controls
    if cond is Cond.TSX_CTRL:
        # vcpu->arch.arch_capabilities is kvm_get_arch_capabilities() after vCPU creation.
        arch = s.host.feature_msr(index_of("IA32_ARCH_CAPABILITIES"))
        return None if arch is None else bool(arch & (1 << 7))
    if cond is Cond.LMCE:
        return bool(s.runtime.feat_ctl & (1 << 20))
    if cond is Cond.INTEL_HOST:
        return s.host.vendor is Vendor.INTEL
    if cond is Cond.PLATFORM_INFO_READ:
        return not s.runtime.platform_info_hidden
    raise AssertionError(cond)


def _gate_text(gate: Gate, caps: frozenset[Feature]) -> str:
    what = []
    if gate.need.never:
        what.append("only userspace may do this")
    elif gate.need.any_of or gate.need.all_of:
        missing = ", ".join(sorted(f.value for f in (gate.need.any_of | gate.need.all_of) - caps))
        what.append(f"guest lacks {missing} (needs {gate.need})")
    if gate.cond is not None:
        what.append(f"needs {gate.cond.value}")
    verdict = "accepted and dropped" if gate.error is _OK else gate.error.name
    return f"{verdict}: {'; '.join(what)}"


def _check_gates(s: Scenario, v: View, host: bool, direction: int) -> Emulation | str | None:
    """The first failing gate's result, or the text of what is not known, or None."""
    missing = ""
    for mask, gate in v.gate_masks:
        if not mask & direction or (host and not gate.host):
            continue
        if gate.pv and not s.runtime.enforce_pv_cpuid:
            continue
        caps = s.guest if gate.raw_cpuid else s.guest_caps
        ok = gate.need.met(caps)
        if ok and gate.cond is not None:
            holds = cond_holds(gate.cond, s)
            if holds is None:
                missing = f"whether {gate.cond.value} holds on this host"
            ok = holds is not False
        if not ok:
            error = gate.error
            if error is not _OK and v.gate_unsupported:
                error = _UNSUP
            return _new(Emulation, (error, None, missing, (_gate_text, (gate, caps)), None,
                                    False))
    return missing or None


# -- the handlers, by row kind -------------------------------------------------------------------

_WHY_VALUE: Why = ("emulated: stored value", ())


def _stored(a: Access1) -> Emulation:
    """A value KVM keeps: reads return it, writes pass the row's value checks."""
    if not a.write:
        return _new(Emulation, (_OK, a.current if a.current is not None else a.reset, "",
                                _WHY_VALUE, None, False))
    if not a.v.no_value_check:
        found = _check(a)
        if found is not None:
            return found
    return _kept(a.value)


def _read_zero(a: Access1) -> Emulation:
    if a.write:
        return _unsup("UNSUPPORTED: KVM reads it as 0 but has no write handler")
    return _ok("emulated: reads 0", value=0)


def _ignored(a: Access1) -> Emulation:
    if not a.write:
        return _ok("emulated: reads {0}", "0" if not a.reset else f"{a.reset:#x}", value=a.reset)
    problem = rule_problem(a.v.write, a.value, a.s, hardware=False)
    if problem is not None:
        return _err("ERR: invalid value, {0}", problem)
    return _ok("emulated: KVM accepts and drops the write")


def _sink(a: Access1) -> Emulation:
    if a.write:
        return _ok("emulated: KVM accepts and drops the write")
    return _unsup("UNSUPPORTED: KVM drops writes and has no read handler")


def _constant(a: Access1) -> Emulation:
    if a.write:
        return _unsup("UNSUPPORTED: KVM has no write handler (it reads a constant)")
    return _ok("emulated: reads the constant {0:#x}", a.reset or 0, value=a.reset)


def _command(a: Access1) -> Emulation:
    if not a.write:
        return _unsup("UNSUPPORTED: write-only command MSR, KVM has no read handler")
    found = _check(a)
    return found if found is not None else _ok("emulated: the command runs")


def _read_only(a: Access1) -> Emulation:
    if a.write:
        return _err("ERR: read-only MSR")
    return _ok("emulated: read-only value", value=_current(a))


def _unsupported(a: Access1) -> Emulation:
    return _unsup("UNSUPPORTED: KVM does not emulate {0}", a.row.name)


def _host_write(a: Access1) -> Emulation:
    if a.write and not a.host:
        return _unsup("UNSUPPORTED: only userspace may write it")
    return _feature_value(a) if not a.write else _host_feature_write(a)


def _host_stored(a: Access1) -> Emulation:
    if not a.write:
        return _ok("emulated: stored value", value=_current(a))
    if not a.host:
        return _ok("emulated: a guest write is accepted and dropped")
    return _host_feature_write(a)


def _host_only(a: Access1) -> Emulation:
    if not a.host:
        return _err("ERR: host-only MSR, a guest access fails")
    return _stored(a)


def _refused(a: Access1) -> Emulation:
    return _err("ERR: {0:#x} is in a range KVM handles but is no register there (returns 1)",
                a.msr)


def _feature_value(a: Access1) -> Emulation:
    """A feature MSR read: the value KVM stuffed at vCPU creation (the host's, as reported)."""
    value = _current(a)
    if value is None:
        value = a.s.host.feature_msr(a.msr)
    missing = "" if value is not None else "the value KVM reports for this feature MSR"
    return _ok("emulated: the value KVM reports to userspace", value=value, missing=missing)


def _host_feature_write(a: Access1) -> Emulation:
    """kvm_set_msr (host) of a feature MSR after KVM_RUN: only the same value (x86.c
    do_set_msr, kvm_is_immutable_feature_msr)."""
    s = a.s
    if a.row.feature is not None and s.runtime.vcpu_has_run and a.row.emul is not Emul.HOST_STORED:
        now = _current(a)
        if now is None:
            now = s.host.feature_msr(a.msr)
        if now is None:
            return _ok("immutable after KVM_RUN", missing="the MSR's current value")
        if a.value != now:
            return _err("ERR (-EINVAL): feature MSRs are immutable after KVM_RUN (do_set_msr)")
    found = _check(a)
    if found is not None:
        return found
    return _ok("emulated: userspace sets the value", stored=a.value, changes=True)


# -- value checks (the Check of a row) -----------------------------------------------------------

def _check(a: Access1) -> Emulation | None:
    """The row's value rules for a write: None if accepted (and nothing unknown)."""
    rule, value = a.v.write, a.value
    if value and (rule.canonical or rule.reserved or rule.check in _FIXED_CHECKS):
        problem = rule_problem(rule, value, a.s, hardware=False)
        if problem is not None:
            return _err("ERR: invalid value, {0}", problem)
    handler = _CHECKS.get(a.rule_check)
    if handler is not None:
        found = handler(a)
        if found is not None:
            return found
    if value & rule.unmodelled:
        return _ok("emulated: accepted as far as the model knows", missing=rule.missing,
                   changes=True)
    return None


def _check_tsc_aux(a: Access1) -> Emulation | None:
    # __kvm_set_msr: Intel-compatible guests may not set bits 63:32; others are truncated.
    if a.s.vendor is Vendor.INTEL and a.value >> 32:
        return _err("ERR: TSC_AUX bits 63:32 must be clear for an Intel-compatible guest")
    if a.value >> 32:
        return _ok("emulated: stored, truncated to 32 bits", stored=a.value & 0xFFFFFFFF,
                   changes=True)
    return None


def _check_canonicalize(a: Access1) -> Emulation:
    # __kvm_set_msr: SYSENTER_EIP/ESP are made canonical, never refused.
    bits = a.s.addr_bits
    value = canonicalize(a.value, bits)
    return _ok("emulated: stored (made canonical: {0:#x})", value, stored=value, changes=True)


def _check_sysenter_svm(a: Access1) -> Emulation:
    # svm_set_msr: the VMCB keeps 32 bits; the high half only for Intel-compatible guests.
    value = canonicalize(a.value, a.s.addr_bits)
    if a.s.vendor is not Vendor.INTEL:
        value &= 0xFFFFFFFF
    return _ok("emulated: stored in the VMCB ({0:#x})", value, stored=value, changes=True)


_EFER_SCE, _EFER_LME, _EFER_LMA, _EFER_NX = 1 << 0, 1 << 8, 1 << 10, 1 << 11
_EFER_SVME, _EFER_LMSLE, _EFER_FFXSR, _EFER_AUTOIBRS = 1 << 12, 1 << 13, 1 << 14, 1 << 21


def efer_supported(s: Scenario) -> int:
    """EFER bits KVM accepts at all: ~efer_reserved_bits after the vendor's hardware setup
    (x86.c efer_reserved_bits, kvm_enable_efer_bits; vmx_hardware_setup: NX;
    svm_hardware_setup: NX, FFXSR with FXSR_OPT, AUTOIBRS, SVME and LMSLE with nested)."""
    host = s.host
    bits = _EFER_SCE | _EFER_LME | _EFER_LMA
    if F.NX in host.features:
        bits |= _EFER_NX
    if host.backend is Backend.SVM:
        if F.FXSR_OPT in host.features:
            bits |= _EFER_FFXSR
        if F.AUTOIBRS in host.features:
            bits |= _EFER_AUTOIBRS
        if host.params.nested:
            # LMSLE too unless the CPU has EFER_LMSLE_MBZ (every Zen does; not an input).
            bits |= _EFER_SVME
    return bits


def _check_efer(a: Access1) -> Emulation | None:
    """set_efer (x86.c): reserved bits for everyone; CPUID gates and LME-while-paging only
    for the guest; LMA is kept from the current value."""
    s, value = a.s, a.value
    unsupported = value & ~efer_supported(s) & U64
    if unsupported:
        return _err("ERR: EFER bits {0:#x} are reserved (efer_reserved_bits)", unsupported)
    if not a.host:
        caps = s.guest_caps
        for bit, feat, name in ((_EFER_AUTOIBRS, F.AUTOIBRS, "AUTOIBRS"),
                                (_EFER_FFXSR, F.FXSR_OPT, "FFXSR"), (_EFER_SVME, F.SVM, "SVME"),
                                (_EFER_LME | _EFER_LMA, F.LM, "LME/LMA"), (_EFER_NX, F.NX, "NXE")):
            if value & bit and feat not in caps:
                return _err("ERR: EFER.{0} needs guest {1} (__kvm_valid_efer)", name, feat.value)
        # "is_paging(vcpu) && LME changes -> 1": the vCPU's paging state is not an input;
        # a fresh vCPU runs without paging.
    current = _current(a) or 0
    stored = (value & ~_EFER_LMA) | (current & _EFER_LMA)
    if s.host.backend is Backend.SVM and value & _EFER_SVME and not a.host:
        return _ok("emulated: set_efer (svm_set_efer allocates nested state)",
                   stored=stored, changes=True)
    return _ok("emulated: set_efer", stored=stored, changes=True)


_MISC_PMU_RO = (1 << 11) | (1 << 12)  # MSR_IA32_MISC_ENABLE_PMU_RO_MASK (BTS, PEBS unavailable)
_MISC_EMON = 1 << 7


def _check_misc_enable(a: Access1) -> Emulation | None:
    """kvm_set_msr_common MSR_IA32_MISC_ENABLE: a guest may not change BTS/PEBS_UNAVAILABLE,
    its EMON bit is ignored; the MWAIT check is off with KVM's default quirks
    (KVM_X86_QUIRK_MISC_ENABLE_NO_MWAIT)."""
    old = _current(a) or 0
    value = a.value
    if not a.host:
        if (old ^ value) & _MISC_PMU_RO:
            return _err("ERR: a guest write changes MISC_ENABLE bits 12:11 (read-only)")
        value = (value & ~_MISC_EMON) | (old & _MISC_EMON)
    return _kept(value)


_APIC_ENABLE, _X2APIC_ENABLE = 1 << 11, 1 << 10


def _apic_mode(value: int) -> str:
    en, ex = bool(value & _APIC_ENABLE), bool(value & _X2APIC_ENABLE)
    return {(False, False): "disabled", (True, False): "xapic", (True, True): "x2apic"}.get(
        (en, ex), "invalid")


def _check_apic_base(a: Access1) -> Emulation | None:
    """kvm_apic_set_base (lapic.c)."""
    s, value = a.s, a.value
    old = _current(a)
    if old is None:
        old = 0xFEE00D00 if s.runtime.x2apic_mode else 0xFEE00900
    if s.runtime.x2apic_mode:
        old |= _APIC_ENABLE | _X2APIC_ENABLE
    if value == old:
        return _ok("emulated: APIC_BASE unchanged", stored=value, changes=True)
    reserved = _reserved_gpa(s) | 0x2FF | (0 if F.X2APIC in s.guest_caps else _X2APIC_ENABLE)
    if value & reserved:
        return _err("ERR: APIC_BASE reserved bits {0:#x}", value & reserved)
    new_mode = _apic_mode(value)
    if new_mode == "invalid":
        return _err("ERR: x2APIC enable without the APIC enable bit")
    if not a.host:
        old_mode = _apic_mode(old)
        if old_mode == "x2apic" and new_mode == "xapic":
            return _err("ERR: x2APIC to xAPIC is not a valid transition")
        if old_mode == "disabled" and new_mode == "x2apic":
            return _err("ERR: disabled to x2APIC is not a valid transition")
    return _ok("emulated: kvm_apic_set_base", stored=value, changes=True)


def _check_hwcr(a: Access1) -> Emulation | None:
    # Bits 6, 8, 3 are dropped; only McStatusWrEn (18) and TscFreqSel (24) are kept.
    value = a.value & ~(0x40 | 0x100 | 0x8)
    if value & ~((1 << 18) | (1 << 24)):
        return _err("ERR: K7_HWCR bits {0:#x} are not emulated",
                    value & ~((1 << 18) | (1 << 24)))
    return _kept(value)


def _check_pred_cmd(a: Access1) -> Emulation | None:
    """kvm_set_msr_common MSR_IA32_PRED_CMD: IBPB (0) and SBPB (7) only, as far as the guest
    CPUID (guest writes) and the host CPU allow."""
    caps, host = a.s.guest_caps, a.s.host.features
    reserved = ~((1 << 0) | (1 << 7)) & U64
    if not a.host:
        if F.SPEC_CTRL not in caps and F.IBPB not in caps:
            reserved |= 1 << 0
        if F.SBPB not in caps:
            reserved |= 1 << 7
    if F.SPEC_CTRL not in host and F.IBPB not in host:  # boot_cpu_has(X86_FEATURE_IBPB)
        reserved |= 1 << 0
    if F.SBPB not in host:
        reserved |= 1 << 7
    if a.value & reserved:
        return _err("ERR: PRED_CMD bits {0:#x} are reserved here", a.value & reserved)
    return None


def _check_flush_cmd(a: Access1) -> Emulation | None:
    if F.FLUSH_L1D not in a.s.host.features or a.value & ~1:
        return _err("ERR: FLUSH_CMD needs host L1D_FLUSH and only bit 0")
    return None


def _check_tsc_adjust(a: Access1) -> Emulation | None:
    if F.TSC_ADJUST not in a.s.guest_caps:
        return _ok("emulated: without guest TSC_ADJUST the write is accepted and dropped")
    return None


def _check_misc_features(a: Access1) -> Emulation | None:
    # Only CPUID_FAULT (bit 0), and only if PLATFORM_INFO advertises it (it does after
    # vCPU creation: KVM_X86_QUIRK_STUFF_FEATURE_MSRS).
    if a.value & ~1:
        return _err("ERR: MISC_FEATURES_ENABLES bits {0:#x} are reserved", a.value & ~1)
    return None


def _check_async_pf_en(a: Access1) -> Emulation | None:
    """kvm_pv_enable_async_pf (x86.c)."""
    s, value = a.s, a.value
    pv = s.guest_caps if s.runtime.enforce_pv_cpuid else None
    if value & (1 << 2) and pv is not None and F.KVM_ASYNC_PF_VMEXIT not in pv:
        return _err("ERR: delivery as #PF VM exit needs KVM_FEATURE_ASYNC_PF_VMEXIT")
    if value & (1 << 3) and pv is not None and F.KVM_ASYNC_PF_INT not in pv:
        return _err("ERR: delivery as interrupt needs KVM_FEATURE_ASYNC_PF_INT")
    if not s.runtime.lapic_in_kernel:
        if value:
            return _err("ERR: no in-kernel APIC, only 0 may be written")
        return _ok("emulated: no in-kernel APIC, 0 accepted")
    if value & 1:
        return _ok("emulated: enabled", missing="whether KVM can map the area (guest memory)",
                   stored=value, changes=True)
    return None


def _check_async_pf_int(a: Access1) -> Emulation | None:
    if not a.s.runtime.lapic_in_kernel:
        return _err("ERR: ASYNC_PF_INT needs an in-kernel APIC")
    return None


def _check_pv_eoi(a: Access1) -> Emulation | None:
    # kvm_lapic_set_pv_eoi: the address must be 4-byte aligned; enabling maps guest memory.
    if (a.value & ~1) & 3:
        return _err("ERR: PV_EOI address must be 4-byte aligned")
    if a.value & 1:
        return _ok("emulated: enabled", missing="whether KVM can map the area (guest memory)",
                   stored=a.value, changes=True)
    return None


def _check_perf_cap(a: Access1) -> Emulation | None:
    supported = a.s.host.feature_msr(a.msr)
    if supported is None:
        if a.value:
            return _ok("emulated", missing="kvm_caps.supported_perf_cap", changes=True)
        return None
    if a.value & ~supported:
        return _err("ERR: PERF_CAPABILITIES bits {0:#x} are not supported",
                    a.value & ~supported)
    if a.s.host.backend is Backend.VMX and a.value & 0x3F | a.value & (0xF << 8):
        return _ok("emulated", missing="vmx_set_msr's LBR and PEBS format checks (CPUID"
                   " model, DS, DTES64)", changes=True)
    return None


def _check_tsx_ctrl(a: Access1) -> Emulation | None:
    return _ok("emulated: kept in a user-return slot", stored=a.value, changes=True)


def _check_feat_ctl(a: Access1) -> Emulation | None:
    """is_vmx_feature_control_msr_valid (vmx.c): a guest write fails once LOCKED; the host
    may set KVM_SUPPORTED_FEATURE_CONTROL, the guest only the bits its CPUID enables."""
    s, value = a.s, a.value
    if not a.host and s.runtime.feat_ctl & 1:
        return _err("ERR: FEAT_CTL is locked")
    supported = 1 | 1 << 1 | 1 << 2 | 1 << 17 | 1 << 18 | 1 << 20
    if a.host:
        valid = supported
    else:
        valid = 1
        if F.VMX in s.guest_caps:
            valid |= 1 << 1 | 1 << 2
        if F.SGX_LC in s.guest_caps:
            valid |= 1 << 17
        if s.runtime.mcg_cap & (1 << 27):  # MCG_LMCE_P (vmx_setup_mce)
            valid |= 1 << 20
    if value & ~valid:
        return _err("ERR: FEAT_CTL bits {0:#x} are not valid here", value & ~valid)
    return _ok("emulated: stored", stored=value, changes=True,
               missing="" if a.host or not value & (1 << 18) else "guest SGX (CPUID 0x7 EBX[2])")


def _check_debugctl_vmx(a: Access1) -> Emulation | None:
    """vmx_is_valid_debugctl / vmx_get_supported_debugctl: bus-lock detect and RTM debug need
    the host (and, for the guest, its CPUID); LBR and FREEZE_LBRS_ON_PMI need an LBR format
    in kvm_caps.supported_perf_cap (and, for the guest, LBR virtualization); an unsupported
    BTF or LBR is dropped, any other unsupported bit fails."""
    s, value = a.s, a.value
    host = s.host.features
    caps = host if a.host else s.guest_caps
    supported = 0
    if F.BUS_LOCK_DETECT in host and F.BUS_LOCK_DETECT in caps:
        supported |= 1 << 2
    if F.RTM in host and F.RTM in caps:
        supported |= 1 << 15
    lbr = (1 << 0) | (1 << 11)  # DEBUGCTLMSR_LBR | DEBUGCTLMSR_FREEZE_LBRS_ON_PMI
    perf_cap = s.host.feature_msr(_PERF_CAPABILITIES)
    if value & lbr and (perf_cap is None or perf_cap & 0x3F):
        # intel_pmu_lbr_is_enabled also needs a guest CPUID model consistent with the host's.
        return _ok("emulated", missing="whether the vCPU has LBR virtualization (the"
                   " host's LBR format and the guest's CPUID model)", changes=True)
    invalid = value & ~supported & ~0x3  # BTF (1) and LBR (0) are dropped, never refused
    if invalid:
        return _err("ERR: DEBUGCTL bits {0:#x} are not supported", invalid)
    return _kept(value & supported)


def _check_debugctl_svm(a: Access1) -> Emulation | None:
    """svm_set_msr MSR_IA32_DEBUGCTLMSR: ignored without lbrv; BTF dropped; only LBR."""
    s = a.s
    if not (s.host.params.lbrv and HwCap.LBRV in s.host.hw_caps):
        return _ok("emulated: kvm_amd.lbrv is off, the write is dropped")
    value = a.value & ~(1 << 1)
    if value & ~1:
        return _err("ERR: DEBUGCTL bits {0:#x} are reserved (only LBR)", value & ~1)
    return _ok("emulated: stored in the VMCB", stored=value, changes=True)


def _check_bndcfgs(a: Access1) -> Emulation | None:
    if not canonical(a.value & ~0xFFF & U64, a.s.addr_bits):
        return _err("ERR: BNDCFGS base is not canonical")
    return None


def _check_tsc_ratio(a: Access1) -> Emulation | None:
    """svm_set_msr MSR_AMD64_TSC_RATIO."""
    if F.TSCRATEMSR not in a.s.guest_caps:
        # Host-initiated only (the guest was gated): 0 or the current value, then dropped.
        current = _current(a)
        if a.value not in (0, current):
            return _err("ERR: without guest TSCRATEMSR only 0 or the current value")
        return _ok("emulated: accepted and dropped (TSC scaling not exposed)")
    if a.value & 0xFFFFFF0000000000:  # SVM_TSC_RATIO_RSVD
        return _err("ERR: TSC_RATIO reserved bits are set")
    return None


def _check_vm_cr(a: Access1) -> Emulation | None:
    # svm_set_vm_cr: LOCK and DIS are sticky once DIS is set (not after reset); DIS while
    # EFER.SVME is set fails (EFER.SVME is clear after reset).
    if a.value & (1 << 4):
        return _ok("emulated", missing="whether EFER.SVME is set", stored=a.value, changes=True)
    return None


def _check_hsave_pa(a: Access1) -> Emulation | None:
    # A guest write must be a page address below MAXPHYADDR (page_address_valid); stored
    # page-masked.
    if not a.host and (a.value & 0xFFF or a.value & _reserved_gpa(a.s)):
        return _err("ERR: VM_HSAVE_PA must be a valid page address")
    return _kept(a.value & ~0xFFF & U64)


def _check_de_cfg(a: Access1) -> Emulation | None:
    supported = 1 << 1 if F.LFENCE_RDTSC in a.s.host.features else 0
    if a.value & ~supported:
        return _err("ERR: DE_CFG bits {0:#x} are not supported", a.value & ~supported)
    return None


def _check_vmx_cap(a: Access1) -> Emulation | None:
    name = a.row.name.removeprefix("IA32_VMX_")
    if name in VMX_CAP_NOT_RESTORABLE:
        return _err("ERR (-EINVAL): vmx_set_vmx_msr does not restore {0}", a.row.name)
    return None


# The checks value_problem makes itself (0 passes every one of them).
_FIXED_CHECKS = frozenset({Check.CET, Check.PAT, Check.MTRR_DEF_TYPE})

_CHECKS: dict[Check, Callable[[Access1], Emulation | None]] = {
    Check.TSC_AUX: _check_tsc_aux,
    Check.CANONICALIZE: _check_canonicalize,
    Check.SYSENTER_SVM: _check_sysenter_svm,
    Check.EFER: _check_efer,
    Check.MISC_ENABLE: _check_misc_enable,
    Check.APIC_BASE: _check_apic_base,
    Check.HWCR: _check_hwcr,
    Check.PRED_CMD: _check_pred_cmd,
    Check.FLUSH_CMD: _check_flush_cmd,
    Check.TSC_ADJUST: _check_tsc_adjust,
    Check.MISC_FEATURES: _check_misc_features,
    Check.ASYNC_PF_EN: _check_async_pf_en,
    Check.ASYNC_PF_INT: _check_async_pf_int,
    Check.PV_EOI: _check_pv_eoi,
    Check.PERF_CAP: _check_perf_cap,
    Check.TSX_CTRL: _check_tsx_ctrl,
    Check.FEAT_CTL: _check_feat_ctl,
    Check.DEBUGCTL_VMX: _check_debugctl_vmx,
    Check.DEBUGCTL_SVM: _check_debugctl_svm,
    Check.BNDCFGS: _check_bndcfgs,
    Check.TSC_RATIO: _check_tsc_ratio,
    Check.VM_CR: _check_vm_cr,
    Check.HSAVE_PA: _check_hsave_pa,
    Check.DE_CFG: _check_de_cfg,
    Check.VMX_CAP: _check_vmx_cap,
}


# -- families ------------------------------------------------------------------------------------

_MCG_CTL_P, _MCG_CMCI_P = 1 << 8, 1 << 10


def _mce(a: Access1) -> Emulation:
    """set_msr_mce / get_msr_mce (x86.c); mcg_cap is the vCPU's (KVM_X86_SETUP_MCE input)."""
    s, check, value = a.s, a.rule_check, a.value
    mcg_cap = s.runtime.mcg_cap
    banks = mcg_cap & 0xFF
    # After KVM_X86_SETUP_MCE, MCG_CTL (with CTL_P) and MCi_CTL read all ones.
    setup = mcg_cap != 32
    if check is Check.MCG_CAP:
        if a.write:
            return _unsup("UNSUPPORTED: MCG_CAP has no write handler")
        return _ok("emulated: mcg_cap", value=mcg_cap)
    if check is Check.MCG_STATUS:
        return _kept(value) if a.write else \
            _ok("emulated: mcg_status", value=_current(a))
    if check is Check.MCG_CTL:
        if not mcg_cap & _MCG_CTL_P and (not a.host or (a.write and value)):
            return _err("ERR: MCG_CTL needs MCG_CTL_P in MCG_CAP")
        if not a.write:
            reset = U64 if setup and mcg_cap & _MCG_CTL_P else 0
            return _ok("emulated: mcg_ctl", value=a.current if a.current is not None else reset)
        if value not in (0, U64):
            return _err("ERR: MCG_CTL must be 0 or all ones")
        return _kept(value)
    if a.row.unit >= banks:
        return _err("ERR: bank {0} is beyond MCG_CAP's {1} banks", a.row.unit, banks)
    if check is Check.MCI_CTL2:
        if not mcg_cap & _MCG_CMCI_P and (not a.host or (a.write and value)):
            return _err("ERR: MCi_CTL2 needs MCG_CMCI_P in MCG_CAP")
        if not a.write:
            return _ok("emulated: mci_ctl2", value=_current(a))
        if value & ~((1 << 30) | 0x7FFF):
            return _err("ERR: MCi_CTL2 reserved bits {0:#x}", value & ~((1 << 30) | 0x7FFF))
        return _kept(value)
    if not a.write:
        reset = U64 if setup and check is Check.MCI_CTL else 0
        return _ok("emulated: bank register", value=a.current if a.current is not None else reset)
    if check is Check.MCI_CTL and value and (value | (1 << 10) | 1) != U64:
        return _err("ERR: MCi_CTL must be 0 or all ones (bits 10 and 0 may be clear)")
    if check is Check.MCI_STATUS and not a.host and value and not (
            s.vendor is Vendor.AMD and s.runtime.mcstatuswren):
        return _err("ERR: a guest may write non-zero MCi_STATUS only on AMD with"
                    " HWCR.McStatusWrEn")
    return _kept(value)


def _mtrr(a: Access1) -> Emulation:
    """kvm_mtrr_get_msr / kvm_mtrr_set_msr (mtrr.c): eight variable pairs, fixed ranges."""
    if not a.write:
        return _ok("emulated: MTRR value", value=_current(a))
    value, check = a.value, a.rule_check
    if check is Check.MTRR_DEF_TYPE:
        problem = rule_problem(a.v.write, value, a.s, hardware=False)
        if problem is not None:
            return _err("ERR: invalid value, {0}", problem)
    elif check is Check.MTRR_FIXED:
        bad = _bad_type(value, _MTRR_TYPES)
        if bad is not None:
            return _err("ERR: fixed-range MTRR byte {0} is not a valid memory type", bad)
    else:
        mask = _reserved_gpa(a.s)
        if check is Check.MTRR_VAR_BASE:
            if value & 0xFF not in _MTRR_TYPES:
                return _err("ERR: variable MTRR type {0} is not valid", value & 0xFF)
            mask |= 0xF00
        else:
            mask |= 0x7FF
        if value & mask:
            return _err("ERR: variable MTRR reserved bits {0:#x} (MAXPHYADDR {1})",
                        value & mask, a.s.host.phys_addr_bits)
    return _kept(value)


_ICR_RESERVED = (0xFFF << 20) | (3 << 16) | (1 << 13)  # lapic.c X2APIC_ICR_RESERVED_BITS


def _x2apic(a: Access1) -> Emulation:
    """kvm_x2apic_msr_read / kvm_x2apic_msr_write (lapic.c)."""
    s = a.s
    if not s.runtime.lapic_in_kernel:
        return _err("ERR: no in-kernel local APIC (kvm_x2apic_msr_read/write return 1)")
    if not s.runtime.x2apic_mode:
        return _err("ERR: APIC not in x2APIC mode (kvm_x2apic_msr_read/write return 1)")
    check, value = a.rule_check, a.value
    if check is Check.X2APIC_CMCI:
        check = Check.X2APIC_RW if s.runtime.mcg_cap & _MCG_CMCI_P else Check.X2APIC_RESERVED
    if not a.write:
        if check in (Check.X2APIC_RESERVED, Check.X2APIC_EOI, Check.X2APIC_SELF_IPI):
            return _err("ERR: {0} is not readable in x2APIC mode", a.row.name)
        return _ok("emulated: APIC register (value not modelled)")
    if check is Check.X2APIC_ICR:
        if value & _ICR_RESERVED:
            return _err("ERR: ICR reserved bits set")
        return _ok("emulated: the IPI is sent")
    if value >> 32:
        return _err("ERR: x2APIC register write with bits 63:32 set")
    if check is Check.X2APIC_RW or check is Check.X2APIC_EOI:
        return _ok("emulated: APIC register written")
    if check is Check.X2APIC_ESR:
        return _err("ERR: only 0 may be written to ESR") if value else \
            _ok("emulated: ESR written")
    if check is Check.X2APIC_SELF_IPI:
        return _err("ERR: SELF_IPI bits 31:8 are reserved") if value & ~0xFF else \
            _ok("emulated: the self-IPI is sent")
    return _err("ERR: {0} is read-only or reserved in x2APIC mode", a.row.name)


def _pmu_fallback(a: Access1) -> Emulation:
    """What kvm_get/set_msr_common do with an index the PMU says is not valid."""
    check, unit = a.rule_check, a.row.unit
    legacy = check in (Check.AMD_K7_SEL, Check.AMD_K7_CTR) or (
        check in (Check.PMU_GP_CTR, Check.PMU_GP_SEL) and unit < 2)
    if legacy:  # the K7 and P6 ranges: read 0, writes dropped
        if a.write:
            return _ok("emulated: no vPMU counter here, the write is dropped")
        return _ok("emulated: no vPMU counter here, reads 0", value=0)
    return _unsup("UNSUPPORTED: the vCPU's PMU has no {0}", a.row.name)


def _pmu(a: Access1) -> Emulation:
    """kvm_pmu_is_valid_msr, then kvm_pmu_get_msr / kvm_pmu_set_msr with the vendor's PMU
    (Intel on VMX, AMD on SVM, the host vendor's on PVM)."""
    s, check, unit, value = a.s, a.rule_check, a.row.unit, a.value
    pmu = s.pmu
    amd_ops = s.host.vendor is Vendor.AMD
    # kvm_pmu_is_valid_msr's own cases: the Intel GLOBAL MSRs need version > 1, either vendor.
    if check in (Check.PMU_GLOBAL_STATUS, Check.PMU_GLOBAL_CTRL, Check.PMU_GLOBAL_OVF):
        if pmu.version <= 1:
            return _pmu_fallback(a)
        return _pmu_global(a, intel=True)
    if amd_ops:
        return _pmu_amd(a)
    if check in (Check.PMU_GP_CTR, Check.PMU_GP_SEL, Check.PMU_FW_CTR):
        if check is Check.PMU_FW_CTR:
            perf_cap = _perf_cap(s)
            if perf_cap is None:
                return _unsup("full-width counters need PERF_CAPABILITIES.FW_WRITES",
                              missing="the PERF_CAPABILITIES value KVM reports")
            if not perf_cap & (1 << 13):
                return _pmu_fallback(a)
        if unit >= pmu.gp:
            return _pmu_fallback(a)
        if not a.write:
            return _ok("emulated: PMU register", value=0 if check is Check.PMU_GP_SEL else None)
        if check is Check.PMU_GP_SEL:
            reserved = 0xFFFFFFFF00200000  # pmu->reserved_bits (pmu.c kvm_pmu_refresh)
            if F.RTM in s.guest_caps or F.HLE in s.guest_caps:
                reserved ^= 1 << 32  # HSW_IN_TX
                if unit == 2:
                    reserved ^= 1 << 33  # HSW_IN_TX_CHECKPOINTED on counter 2 only
            if value & reserved:
                return _err("ERR: event select reserved bits {0:#x}", value & reserved)
        if check is Check.PMU_FW_CTR and value >> 32:
            return _ok("emulated", missing="the counters' bit width (CPUID 0xA EAX[23:16])")
        return _ok("emulated: PMU register written")
    if check is Check.PMU_FIXED_CTR:
        if unit >= pmu.fixed:
            return _pmu_fallback(a)
        return _ok("emulated: fixed counter", value=None) if not a.write else \
            _ok("emulated: fixed counter written")
    if check is Check.PMU_FIXED_CTRL:
        if pmu.version <= 1:
            return _pmu_fallback(a)
        if not a.write:
            return _ok("emulated: FIXED_CTR_CTRL", value=_current(a))
        allowed = 0
        for i in range(pmu.fixed):
            allowed |= 0xB << (4 * i)  # KERNEL, USER, PMI per fixed counter
        if value & ~allowed:
            return _err("ERR: FIXED_CTR_CTRL bits {0:#x} are reserved", value & ~allowed)
        return _kept(value)
    if check is Check.PMU_DS_AREA:
        if F.DS not in s.guest_caps:
            return _pmu_fallback(a)
        if not a.write:
            return _ok("emulated: DS_AREA", value=_current(a))
        if not canonical(value, s.addr_bits):
            return _err("ERR: DS_AREA is not canonical")
        return _kept(value)
    if check in (Check.PMU_PEBS_ENABLE, Check.PMU_PEBS_DATA_CFG):
        perf_cap = _perf_cap(s)
        if perf_cap is None:
            return _unsup("PEBS MSRs need PERF_CAPABILITIES.PEBS_FORMAT",
                          missing="the PERF_CAPABILITIES value KVM reports")
        fmt = (perf_cap >> 8) & 0xF
        valid = fmt if check is Check.PMU_PEBS_ENABLE else perf_cap & (1 << 14) and fmt > 3
        if not valid:
            return _pmu_fallback(a)
        if not a.write:
            return _ok("emulated: PEBS register", value=_current(a))
        return _ok("emulated", missing="" if not value else "the PEBS reserved bits",
                   stored=value, changes=True)
    # AMD-only indices with Intel PMU ops: not valid.
    return _pmu_fallback(a)


def _perf_cap(s: Scenario) -> int | None:
    """vcpu_get_perf_capabilities: PERF_CAPABILITIES as stuffed at vCPU creation
    (kvm_caps.supported_perf_cap), and 0 for a guest without PDCM."""
    if F.PDCM not in s.guest_caps:
        return 0
    return s.host.feature_msr(_PERF_CAPABILITIES)


def _pmu_global(a: Access1, *, intel: bool) -> Emulation:
    """kvm_pmu_get_msr / kvm_pmu_set_msr for the GLOBAL MSRs (pmu.c)."""
    s, check, value = a.s, a.rule_check, a.value
    pmu = s.pmu
    gp_mask = (1 << pmu.gp) - 1
    ctrl_valid = gp_mask | (((1 << pmu.fixed) - 1) << 32)
    status_valid = ctrl_valid | (3 << 62) if intel else gp_mask  # OVF_BUF, COND_CHGD
    if check in (Check.PMU_GLOBAL_CTRL, Check.AMD_GLOBAL_CTL):
        if not a.write:
            # kvm_pmu_refresh: GLOBAL_CTRL starts with every GP counter enabled.
            return _ok("emulated: GLOBAL_CTRL", value=a.current if a.current is not None
                       else gp_mask)
        data = value & ctrl_valid if check is Check.AMD_GLOBAL_CTL else value
        if data & ~ctrl_valid:
            return _err("ERR: GLOBAL_CTRL bits {0:#x} are reserved", data & ~ctrl_valid)
        return _kept(data)
    if check in (Check.PMU_GLOBAL_STATUS, Check.AMD_GLOBAL_STATUS):
        if not a.write:
            return _ok("emulated: GLOBAL_STATUS", value=_current(a))
        if not a.host:
            if check is Check.PMU_GLOBAL_STATUS:
                return _err("ERR: GLOBAL_STATUS is read-only for the guest")
            return _ok("emulated: read-only, the write is ignored")
        if value & ~status_valid:
            return _err("ERR: GLOBAL_STATUS bits {0:#x} are reserved", value & ~status_valid)
        return _kept(value)
    if not a.write:
        return _ok("emulated: reads 0", value=0)
    if check is Check.PMU_GLOBAL_OVF and value & ~status_valid:
        return _err("ERR: GLOBAL_OVF_CTRL bits {0:#x} are reserved", value & ~status_valid)
    return _ok("emulated: status bits updated")


def _pmu_amd(a: Access1) -> Emulation:
    """amd_is_valid_msr / amd_pmu_get_msr / amd_pmu_set_msr (svm/pmu.c)."""
    s, check, unit = a.s, a.rule_check, a.row.unit
    pmu = s.pmu
    if check in (Check.AMD_K7_SEL, Check.AMD_K7_CTR):
        if not pmu.version:
            return _pmu_fallback(a)
        if unit >= pmu.gp:
            return _err("ERR: no counter {0} (amd_pmu_get/set_msr return 1)", unit)
        return _pmu_amd_counter(a)
    if check in (Check.AMD_F15_SEL, Check.AMD_F15_CTR):
        if F.PERFCTR_CORE not in s.guest_caps:
            return _pmu_fallback(a)
        if not pmu.version or unit >= pmu.gp:
            return _err("ERR: no counter {0} (amd_pmu_get/set_msr return 1)", unit)
        return _pmu_amd_counter(a)
    if check in (Check.AMD_GLOBAL_STATUS, Check.AMD_GLOBAL_CTL, Check.AMD_GLOBAL_CLR,
                 Check.AMD_GLOBAL_SET):
        if pmu.version <= 1:
            return _pmu_fallback(a)
        return _pmu_global(a, intel=False)
    return _pmu_fallback(a)


def _pmu_amd_counter(a: Access1) -> Emulation:
    sel = a.rule_check in (Check.AMD_K7_SEL, Check.AMD_F15_SEL)
    if not a.write:
        return _ok("emulated: PMU register", value=0 if sel else None)
    if sel:  # reserved bits are dropped, never refused
        return _ok("emulated: event select (reserved bits dropped)")
    return _ok("emulated: counter written")


def _vmx_cap(a: Access1) -> Emulation:
    """vmx_get_msr / vmx_set_msr for 0x480-0x491 (vmx_get_vmx_msr, vmx_set_vmx_msr)."""
    s = a.s
    if a.write and not a.host:
        return _err("ERR: VMX capability MSRs are read-only")
    if F.VMX not in s.guest_caps:
        return _err("ERR: the guest CPUID lacks VMX (or kvm_intel.nested is off)")
    if not a.write:
        return _ok("emulated: KVM's nested VMX capability", value=None)
    if s.runtime.vcpu_has_run:
        return _ok("immutable after KVM_RUN", missing="the MSR's current value")
    found = _check(a)
    return found if found is not None else _ok("emulated: restored")


_HV_VAPIC_REGS = {0x70: Check.X2APIC_EOI, 0x71: Check.X2APIC_ICR, 0x72: Check.X2APIC_RW}


def _hyperv(a: Access1) -> Emulation:
    """kvm_hv_get_msr_common / kvm_hv_set_msr_common (hyperv.c); hv_check_msr_access is
    true with KVM's default (KVM_CAP_HYPERV_ENFORCE_CPUID off)."""
    s, check, value, host = a.s, a.rule_check, a.value, a.host
    if not host and not s.runtime.hyperv:
        return _err("ERR: the guest CPUID has no Hyper-V interface (hyperv_enabled)")
    if not host and s.runtime.hyperv_enforce_cpuid and check is not Check.HV_UNKNOWN:
        # hv_check_msr_access: each MSR then needs its bit in the guest's Hyper-V CPUID.
        return _ok("emulated", missing="the guest's Hyper-V feature CPUID"
                   " (KVM_CAP_HYPERV_ENFORCE_CPUID)", changes=a.write)
    if check is Check.HV_UNKNOWN:
        return _err("ERR: Hyper-V MSR {0:#x} is not implemented (returns 1)", a.msr)
    if check is Check.HV_STORED:
        return _kept(value) if a.write else \
            _ok("emulated: stored value", value=_current(a))
    if check is Check.HV_HYPERCALL:
        if not a.write:
            return _ok("emulated: hypercall page MSR", value=_current(a))
        # Without a guest OS ID the write is dropped; with the enable bit KVM writes the
        # hypercall page into guest memory.
        if value & 1:
            return _ok("emulated", missing="GUEST_OS_ID and guest memory at the page",
                       changes=True)
        return _ok("emulated: stored unless GUEST_OS_ID is 0",
                   missing="" if not value else "whether GUEST_OS_ID is set", changes=True)
    if check is Check.HV_VP_INDEX:
        if not a.write:
            return _ok("emulated: vp_index", value=a.current if a.current is not None else 0)
        if not host:
            return _err("ERR: only userspace may set VP_INDEX")
        if value & 0xFFFFFFFF >= 4096:  # KVM_MAX_VCPUS
            return _err("ERR: VP_INDEX must be below KVM_MAX_VCPUS")
        return _kept(value & 0xFFFFFFFF)
    if check is Check.HV_RESET:
        return _ok("emulated: reads 0", value=0) if not a.write else \
            _ok("emulated: a write of 1 requests a reset")
    if check is Check.HV_HOST_WRITE:
        if not a.write:
            return _ok("emulated: read-only value", value=None)
        return _ok("emulated: ignored for userspace") if host else \
            _err("ERR: read-only for the guest")
    if check is Check.HV_VAPIC:
        if not s.runtime.lapic_in_kernel:
            return _err("ERR: no in-kernel local APIC")
        reg = _HV_VAPIC_REGS[a.row.unit]
        if not a.write:
            if reg is Check.X2APIC_EOI:
                return _err("ERR: EOI is not readable")
            return _ok("emulated: APIC register", value=None)
        if reg is Check.X2APIC_ICR:
            if value & _ICR_RESERVED:
                return _err("ERR: ICR reserved bits set")
        elif value >> 32:
            return _err("ERR: APIC register write with bits 63:32 set")
        return _ok("emulated: APIC register written")
    if check is Check.HV_VP_ASSIST:
        if not a.write:
            return _ok("emulated: stored value", value=_current(a))
        if value & 1:
            return _ok("emulated", missing="guest memory at the page", changes=True)
        return _kept(value)
    if check in (Check.HV_SYNIC, Check.HV_STIMER):
        if s.runtime.hyperv_synic:
            return _ok("emulated", missing="SynIC register semantics", changes=a.write)
        if not a.write:
            if check is Check.HV_SYNIC and not host:
                return _err("ERR: SynIC is not active")
            return _ok("emulated: reads 0", value=0)
        if not host or value:
            return _err("ERR: SynIC is not active")
        return _ok("emulated: userspace writes 0")
    if check is Check.HV_CRASH_CTL:
        if not a.write:
            return _ok("emulated: crash control", value=_current(a))
        if host:
            return _kept(value & (1 << 63))
        return _ok("emulated: a guest write with CRASH_NOTIFY reports a crash")
    if check is Check.HV_TSC_EMULATION_STATUS:
        if not a.write:
            return _ok("emulated: stored value", value=_current(a))
        if value and not host:
            return _err("ERR: a guest may only write 0")
        return _kept(value)
    if check is Check.HV_TSC_INVARIANT:
        if not a.write:
            return _ok("emulated: stored value", value=_current(a))
        if value & ~1:
            return _err("ERR: only bit 0 is supported")
        if not host and (_current(a) or 0) and not value:
            return _err("ERR: the guest cannot disable invariant TSC")
        return _kept(value)
    if check is Check.HV_SYNDBG:
        # syndbg_{get,set}_msr: the guest needs the debugging capability in Hyper-V CPUID.
        if not host:
            return _err("ERR: synthetic debugging is not enabled in the Hyper-V CPUID",
                        missing="the guest's Hyper-V syndbg CPUID leaf")
        return _kept(value) if a.write else \
            _ok("emulated: stored value", value=_current(a))
    raise AssertionError(check)


_HANDLERS: dict[Emul, Callable[[Access1], Emulation]] = {
    Emul.STORED: _stored,
    Emul.COMMAND: _command,
    Emul.READ_ZERO: _read_zero,
    Emul.IGNORED: _ignored,
    Emul.SINK: _sink,
    Emul.CONSTANT: _constant,
    Emul.READ_ONLY: _read_only,
    Emul.UNSUPPORTED: _unsupported,
    Emul.HOST_WRITE: _host_write,
    Emul.HOST_STORED: _host_stored,
    Emul.HOST_ONLY: _host_only,
    Emul.REFUSED: _refused,
    Emul.X2APIC: _x2apic,
    Emul.MCE: _mce,
    Emul.MTRR: _mtrr,
    Emul.PMU: _pmu,
    Emul.VMX_CAP: _vmx_cap,
    Emul.HYPERV: _hyperv,
}


# -- entry points --------------------------------------------------------------------------------

_XEN = "the Xen hypercall page MSR (KVM_XEN_HVM_CONFIG)"


# kvm_xen_write_hypercall_page (xen.c): a guest write fills the hypercall page.
_XEN_WRITE = Emulation(_OK, None, "the hypercall page source (intercept or userspace blobs) and"
                       " guest memory at the page", ("emulated: {0} writes the page", (_XEN,)),
                       None, False)


_UNKNOWN_TEXT = "UNSUPPORTED: KVM v6.19 has no handler for {0:#x} on {1}"


def unknown(s: Scenario, msr: int) -> Emulation:
    """An index with no row: every KVM path answers KVM_MSR_RET_UNSUPPORTED (the table has a
    row for every index KVM handles), except Intel LBR record MSRs of a vCPU with LBRs."""
    missing = ""
    perf_cap = s.host.feature_msr(_PERF_CAPABILITIES)
    if s.host.backend is Backend.VMX and F.PDCM in s.guest_caps and (
            perf_cap is None or perf_cap & 0x3F):
        missing = "the host's LBR record MSRs (valid when the guest has LBR virtualization)"
    return _new(Emulation, (_UNSUP, None, missing, (_UNKNOWN_TEXT, (msr, s.host.backend.value)),
                            None, False))


def _owners_text(row: Msr) -> str:
    owners = "/".join(sorted(b.value for b in row.handled_by or ()))
    return f"UNSUPPORTED: only {owners} vendor code handles {row.name}"


def emulate(s: Scenario, msr: int, access: Access, value: int, host: bool,
            row: Msr | None, current: int | None = None) -> Emulation:
    """__kvm_get_msr / __kvm_set_msr for one access that reached KVM (no filter, no bitmap)."""
    write = access is _W
    if msr and msr == s.xen_msr and write and not host and not (
            row is not None and row.handled_by is not None and s.backend in row.handled_by):
        return _XEN_WRITE
    if row is None:
        return unknown(s, msr)
    v = _VIEWS.get((msr, s.backend)) or view(row, s.backend)
    if not v.handled:
        if not row.precheck:
            return _new(Emulation, (_UNSUP, None, "", (_owners_text, (row,)), None, False))
        # __kvm_set_msr / __kvm_get_msr check first; then the vendor code does not know it.
        gated = _check_gates(s, v, host, 2 if write else 1)
        if isinstance(gated, Emulation):
            return gated
        problem = rule_problem(v.write, value, s, hardware=False) if write else None
        if problem is not None:
            return _err("ERR: invalid value, {0}", problem)
        return Emulation(_UNSUP, None, gated or "", (_owners_text, (row,)))
    missing = ""
    if v.gate_masks:
        gated = _check_gates(s, v, host, 2 if write else 1)
        if isinstance(gated, Emulation):
            return gated
        missing = gated or ""
    if write and v.no_gate:
        # The backend handles this MSR its own way; only a write of 0 was observed (accepted).
        if not value:
            return _ok("emulated: a write of 0 is accepted on {0} (observed quirk)",
                       s.host.backend.value)
        return _ok("emulated", missing="the backend's value checks (quirk: only a write of 0"
                   " was observed)")
    emu = _HANDLERS[v.emul](_new(Access1, (s, msr, write, host, value, current, row, v,
                                           v.write.check, v.reset)))
    if s.runtime.sev_es and s.backend is Backend.SVM and not emu.missing:
        # sev_es_prevent_msr_access: with protected state, an MSR whose writes are not
        # intercepted reads 0 and drops writes (or -EINVAL); the VMSA state is not modelled.
        emu = emu._replace(missing="SEV-ES protected guest state (sev_es_prevent_msr_access)")
    if missing and not emu.missing:
        emu = emu._replace(missing=missing)
    return emu


def reset_value(row: Msr, backend: Backend) -> int | None:
    """The MSR's value after vCPU creation on ``backend`` (None where the model does not know)."""
    return view(row, backend).reset


# -- what the CPU checks for a passed-through MSR ------------------------------------------------

_SYSENTER = frozenset({index_of("IA32_SYSENTER_ESP"), index_of("IA32_SYSENTER_EIP")})
_X2APIC_PASS_WRITES = {index_of("X2APIC_TPR"): ~0xFF & U64, index_of("X2APIC_EOI"): U64,
                       index_of("X2APIC_SELF_IPI"): ~0xFF & U64}


def hardware_problem(row: Msr | None, value: int, s: Scenario) -> tuple[str | None, str]:
    """Why the CPU refuses a passed-through WRMSR of ``value`` (#GP), and what is unknown.

    Intel SDM Vol. 4 (WRMSR of FS/GS/KERNEL_GS_BASE, SYSENTER_ESP/EIP, the SSP and CET
    MSRs: #GP unless canonical for the CPU's linear-address width; reserved bits); SDM
    Vol. 3C 30.5 (x2APIC virtualization: TPR and SELF IPI bits 63:8, EOI non-zero);
    AMD APM Vol. 2 (SYSENTER_ESP/EIP keep 32 bits and never fault).
    """
    if row is None:
        return None, "the CPU's handling of an MSR KVM does not know"
    if not value:  # 0 passes every check the CPU makes on the MSRs KVM passes through
        return None, ""
    if row.index in _X2APIC_PASS_WRITES:
        bad = value & _X2APIC_PASS_WRITES[row.index]
        return (f"x2APIC virtualization: bits {bad:#x} must be 0" if bad else None), ""
    if row.family is Family.APIC:
        return None, "how the CPU's APIC virtualization handles this write"
    if row.index in _SYSENTER:
        if s.host.backend is Backend.VMX and not canonical(value, s.addr_bits):
            return f"{value:#x} is not canonical (Intel WRMSR of SYSENTER_ESP/EIP)", ""
        return None, ""
    rule = row.write
    problem = rule_problem(rule, value, s, hardware=True)
    missing = rule.missing if value & rule.unmodelled else ""
    if problem is None and rule.check not in (Check.NONE, Check.CET, Check.PAT,
                                              Check.MTRR_DEF_TYPE):
        missing = missing or "the CPU's own check of this value"
    return problem, missing


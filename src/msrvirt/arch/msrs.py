"""The MSR table: one row per MSR msrvirt knows, with how KVM gates, checks and stores it.

Sources: Linux arch/x86/include/asm/msr-index.h (indices and names), Intel SDM
Vol. 4 (architectural MSRs), kvm-msr-facts.md sections 3, 6, 8 and 11,
fred-arch-facts.md section 2, kvm-svm-common-pvm-facts.md part 2 (KVM's common
MSR emulation) and part 3 (PVM).  Each row's ``source`` names its own.

An MSR index that has no row is still a valid input everywhere: KVM treats it
as unknown (KVM_MSR_RET_UNSUPPORTED).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from fnmatch import fnmatchcase

from msrvirt.arch.cpuid import Feature
from msrvirt.arch.kvm import Access, Backend, KvmRet
from msrvirt.arch.vmcs import GUEST_FIELDS, HOST_FIELDS, VmcsField
from msrvirt.errors import UnknownNameError, UsageError

F = Feature


class Family(StrEnum):
    """What an MSR is for; used to pick the default sets of `explain`."""

    FRED = "fred"
    CET = "cet"
    SYSCALL = "syscall"
    SEGMENT = "segment"
    TIME = "time"
    SPEC = "speculation"
    XSAVE = "xsave"
    TRACE = "trace"
    POWER = "power"
    APIC = "apic"
    MEMTYPE = "memtype"
    DEBUG = "debug"
    KVM_PV = "kvm-pv"
    PVM = "pvm"
    SVM = "svm"


class Emul(StrEnum):
    """How KVM handles an intercepted access that passed its gate (kvm-svm-common-pvm-facts 2a)."""

    STORED = "stored"  # KVM keeps the value (VMCS field, software copy, XSAVE state)
    COMMAND = "command"  # write-only command: writes act, reads are UNSUPPORTED
    READ_ZERO = "read-zero"  # reads return 0, writes are UNSUPPORTED
    IGNORED = "ignored"  # reads return 0, writes are accepted and dropped
    READ_ONLY = "read-only"  # reads return the value, writes fail (1)
    UNSUPPORTED = "unsupported"  # KVM does not emulate it: every access is UNSUPPORTED
    HOST_WRITE = "host-write"  # only host-initiated writes are accepted; guest writes UNSUPPORTED
    HOST_ONLY = "host-only"  # guest accesses fail (1); host-initiated ones are accepted
    X2APIC = "x2apic"  # lapic.c: fails (1) unless the in-kernel APIC is in x2APIC mode


class Check(StrEnum):
    """A value check that is more than canonical + reserved bits."""

    NONE = "none"
    CET = "cet"  # kvm_is_valid_u_s_cet (kvm-msr-facts.md section 6)
    PAT = "pat"  # kvm_pat_valid: every byte a valid memory type (0, 1, 4, 5, 6, 7)
    MTRR_DEF_TYPE = "mtrr-def-type"  # type in {0, 1, 4, 5, 6}, bits outside 0xCFF clear
    TSC_AUX = "tsc-aux"  # Intel-compatible guest: bits 63:32 must be clear
    CANONICALIZE = "canonicalize"  # SYSENTER_ESP/EIP: made canonical silently, never rejected
    EFER = "efer"  # set_efer: bit-by-bit CPUID gates


@dataclass(frozen=True, slots=True, kw_only=True)
class Need:
    """A CPUID requirement: every feature of ``all_of`` and, if given, one of ``any_of``."""

    any_of: frozenset[Feature] = frozenset()
    all_of: frozenset[Feature] = frozenset()

    def met(self, features: frozenset[Feature]) -> bool:
        if self.all_of and not self.all_of <= features:
            return False
        return not self.any_of or not self.any_of.isdisjoint(features)

    def __str__(self) -> str:
        parts = [" or ".join(sorted(self.any_of))] if self.any_of else []
        parts += sorted(self.all_of)
        return " and ".join(f"({p})" if " or " in p and len(parts) > 1 else p for p in parts)


ALWAYS = Need()


def need(*any_of: Feature, all_of: Iterable[Feature] = ()) -> Need:
    return Need(any_of=frozenset(any_of), all_of=frozenset(all_of))


@dataclass(frozen=True, slots=True, kw_only=True)
class Gate:
    """A guest-CPUID gate KVM applies before emulating (``guest_cpu_cap_has``)."""

    need: Need
    access: Access = Access.RW  # which directions the gate applies to
    host: bool = True  # host-initiated accesses are gated too
    error: KvmRet = KvmRet.UNSUPPORTED  # what a failed gate returns
    pv: bool = False  # KVM PV feature: enforced only with KVM_CAP_ENFORCE_PV_FEATURE_CPUID


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteRule:
    """Which values a WRMSR (hardware or KVM) refuses: error 1 / #GP."""

    canonical: bool = False  # must fit the linear-address width, sign-extended
    reserved: int = 0  # bits that must be clear (alignment included)
    check: Check = Check.NONE
    exact: bool = True  # False: KVM refuses more values than the model knows of


ANY_VALUE = WriteRule()
CANONICAL = WriteRule(canonical=True)


class QuirkKind(StrEnum):
    """How one backend's KVM departs from the common behaviour of an MSR."""

    RESET = "reset"  # a different value after vCPU creation
    NO_GATE = "no-gate"  # the guest-CPUID gate is not applied (values other than 0 unverified)
    NO_VALUE_CHECK = "no-value-check"  # written values are not checked


@dataclass(frozen=True, slots=True, kw_only=True)
class Quirk:
    """A backend-specific behaviour, observed on a real kernel (``evidence`` says where)."""

    backend: Backend
    kind: QuirkKind
    value: int = 0
    evidence: str


_PVM_6_18 = ("msrvirt conformance, scenario 08-common-msrs / 09-sweep, Linux 6.18.44 kvm_pvm,"
             " 2026-11-25 (docs/conformance.md)")


@dataclass(frozen=True, slots=True, kw_only=True)
class Msr:
    """One MSR: identity, KVM gating and checks, where KVM keeps it, and the source."""

    index: int
    name: str
    family: Family
    aliases: tuple[str, ...] = ()
    gates: tuple[Gate, ...] = ()
    write: WriteRule = ANY_VALUE
    emul: Emul = Emul.STORED
    # Backends whose vendor code handles this MSR; None = KVM's common code (every backend).
    handled_by: frozenset[Backend] | None = None
    reset: int | None = 0  # value after vCPU creation, where the model knows it
    listed: Need | None = None  # in KVM_GET_MSR_INDEX_LIST when KVM's caps meet this
    quirks: tuple[Quirk, ...] = ()
    source: str
    note: str = ""
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", (self.name, *self.aliases))

    def __str__(self) -> str:
        return f"{self.name} ({self.index:#x})"

    def quirk(self, backend: Backend, kind: QuirkKind) -> Quirk | None:
        """The quirk of ``kind`` this MSR has on ``backend``, if any."""
        for q in self.quirks:
            if q.backend is backend and q.kind is kind:
                return q
        return None

    @property
    def vmcs_guest(self) -> VmcsField | None:
        """The VMCS guest-state field that holds this MSR, if any (arch/vmcs.py)."""
        return GUEST_FIELDS.get(self.name)

    @property
    def vmcs_host(self) -> VmcsField | None:
        """The VMCS host-state field that holds this MSR, if any."""
        return HOST_FIELDS.get(self.name)


# -- row helpers ---------------------------------------------------------------------------------

_FACTS = "kvm-msr-facts.md"
_ARCH = "fred-arch-facts.md"
_COMMON = "kvm-svm-common-pvm-facts.md"


def _fred(index: int, name: str, write: WriteRule, aliases: tuple[str, ...] = ()) -> Msr:
    return Msr(
        index=index, name=name, family=Family.FRED, aliases=aliases,
        gates=(Gate(need=need(F.FRED)),), write=write, listed=need(F.FRED),
        source=f"{_ARCH} section 2; {_FACTS} sections 6 and 8 (v9 patch 10)",
    )


_FRED_RSP = WriteRule(canonical=True, reserved=0x3F)
_FRED_SSP = WriteRule(canonical=True, reserved=0x7)
_CET_SSP = WriteRule(canonical=True, reserved=0x3)
_CET_CTL = WriteRule(check=Check.CET)

_CET_SRC = f"{_FACTS} section 6; {_COMMON} 2.0 (__kvm_set_msr CET checks)"


def _x2apic(index: int, name: str) -> Msr:
    return Msr(
        index=index, name=name, family=Family.APIC, emul=Emul.X2APIC, reset=None,
        source=f"{_COMMON} 2d (lapic.c kvm_x2apic_msr_read/write); never filtered ({_FACTS} 4)",
    )


def _pv(index: int, name: str, feat: Feature, write: WriteRule = ANY_VALUE,
        reset: int | None = 0, aliases: tuple[str, ...] = ()) -> Msr:
    return Msr(
        index=index, name=name, family=Family.KVM_PV, aliases=aliases,
        gates=(Gate(need=need(feat), pv=True),), write=write, reset=reset, listed=ALWAYS,
        source=f"{_COMMON} 2a (KVM PV MSRs); Documentation/virt/kvm/x86/msr.rst",
    )


def _pvm(index: int, name: str) -> Msr:
    return Msr(
        index=index, name=name, family=Family.PVM, handled_by=frozenset({Backend.PVM}),
        write=WriteRule(exact=False), reset=None,
        source=f"{_COMMON} part 3 (PVM RFC 02/73 ABI, pvm.c)",
    )


_LBR_SRC = f"{_COMMON} 2a (read 0, write UNSUPPORTED); SVM reads them from the VMCB"

MSRS: tuple[Msr, ...] = tuple(sorted((
    # -- time -----------------------------------------------------------------------------------
    Msr(index=0x10, name="IA32_TSC", family=Family.TIME, aliases=("TSC",), reset=None,
        listed=ALWAYS, source=f"SDM Vol. 4 Table 2-2; {_FACTS} section 3 rule 1"),
    Msr(index=0x6E0, name="IA32_TSC_DEADLINE", family=Family.TIME, emul=Emul.IGNORED,
        listed=ALWAYS, write=WriteRule(exact=False),
        source=f"{_COMMON} 2a: ignored without an in-kernel APIC in TSC-deadline mode",
        note="reads 0 and drops writes unless LVTT is in TSC-deadline mode"),
    # -- KVM paravirtual ------------------------------------------------------------------------
    _pv(0x11, "KVM_WALL_CLOCK", F.KVM_CLOCK),
    _pv(0x12, "KVM_SYSTEM_TIME", F.KVM_CLOCK, write=WriteRule(exact=False)),
    _pv(0x4B564D00, "KVM_WALL_CLOCK_NEW", F.KVM_CLOCK2),
    _pv(0x4B564D01, "KVM_SYSTEM_TIME_NEW", F.KVM_CLOCK2, write=WriteRule(exact=False)),
    _pv(0x4B564D02, "KVM_ASYNC_PF_EN", F.KVM_ASYNC_PF,
        write=WriteRule(reserved=0x30, exact=False)),
    _pv(0x4B564D03, "KVM_STEAL_TIME", F.KVM_STEAL_TIME,
        write=WriteRule(reserved=0x3E, exact=False)),
    _pv(0x4B564D04, "KVM_PV_EOI_EN", F.KVM_PV_EOI, write=WriteRule(exact=False)),
    _pv(0x4B564D05, "KVM_POLL_CONTROL", F.KVM_POLL_CONTROL,
        write=WriteRule(reserved=~0x1 & (2**64 - 1)), reset=1),
    _pv(0x4B564D06, "KVM_ASYNC_PF_INT", F.KVM_ASYNC_PF_INT,
        write=WriteRule(reserved=~0xFF & (2**64 - 1), exact=False)),
    _pv(0x4B564D07, "KVM_ASYNC_PF_ACK", F.KVM_ASYNC_PF_INT, write=WriteRule(exact=False)),
    Msr(index=0x4B564DFF, name="KVM_INTERNAL_GUEST_SSP", family=Family.CET, emul=Emul.HOST_ONLY,
        gates=(Gate(need=need(F.SHSTK)),), write=_CET_SSP,
        source=f"{_COMMON} 2.0 (MSR_KVM_INTERNAL_GUEST_SSP: host-only)"),
    # -- speculation control --------------------------------------------------------------------
    Msr(index=0x48, name="IA32_SPEC_CTRL", family=Family.SPEC, aliases=("SPEC_CTRL",),
        gates=(Gate(need=need(F.SPEC_CTRL, F.AMD_STIBP, F.AMD_IBRS, F.AMD_SSBD), host=False,
                    error=KvmRet.ERR),),
        write=WriteRule(reserved=~0x7 & (2**64 - 1), exact=False), listed=ALWAYS,
        quirks=(Quirk(backend=Backend.PVM, kind=QuirkKind.NO_GATE, evidence=_PVM_6_18),),
        source=f"{_FACTS} section 3 rule 8; vmx_set_msr/svm_set_msr SPEC_CTRL",
        note="valid bits depend on the host (kvm_spec_ctrl_test_value)"),
    Msr(index=0x49, name="IA32_PRED_CMD", family=Family.SPEC, aliases=("PRED_CMD",),
        emul=Emul.COMMAND,
        gates=(Gate(need=need(F.SPEC_CTRL, F.IBPB), access=Access.W, host=False,
                    error=KvmRet.ERR),),
        write=WriteRule(reserved=~0x81 & (2**64 - 1), exact=False), reset=None,
        quirks=(Quirk(backend=Backend.PVM, kind=QuirkKind.NO_GATE, evidence=_PVM_6_18),),
        source=f"{_FACTS} section 3 rule 10; {_COMMON} 2a PRED_CMD"),
    Msr(index=0x10A, name="IA32_ARCH_CAPABILITIES", family=Family.SPEC,
        aliases=("ARCH_CAPABILITIES",), emul=Emul.HOST_WRITE,
        gates=(Gate(need=need(F.ARCH_CAPABILITIES), host=False),),
        write=WriteRule(exact=False), reset=None, listed=ALWAYS,
        source=f"{_COMMON} 2a ARCH_CAPABILITIES"),
    Msr(index=0x10B, name="IA32_FLUSH_CMD", family=Family.SPEC, aliases=("FLUSH_CMD",),
        emul=Emul.COMMAND,
        gates=(Gate(need=need(F.FLUSH_L1D), access=Access.W, host=False, error=KvmRet.ERR),),
        write=WriteRule(reserved=~0x1 & (2**64 - 1)), reset=None,
        quirks=(Quirk(backend=Backend.PVM, kind=QuirkKind.NO_GATE, evidence=_PVM_6_18),),
        source=f"{_FACTS} section 3 rule 11; {_COMMON} 2a FLUSH_CMD"),
    # -- syscall / sysenter / segments ----------------------------------------------------------
    Msr(index=0x174, name="IA32_SYSENTER_CS", family=Family.SYSCALL, aliases=("SYSENTER_CS",),
        listed=ALWAYS, source=f"SDM Vol. 4; {_FACTS} section 3 rule 3"),
    Msr(index=0x175, name="IA32_SYSENTER_ESP", family=Family.SYSCALL,
        aliases=("SYSENTER_ESP",), write=WriteRule(check=Check.CANONICALIZE), listed=ALWAYS,
        source=f"SDM Vol. 4; {_FACTS} section 3 rule 3; {_COMMON} 2.0 (canonicalised)"),
    Msr(index=0x176, name="IA32_SYSENTER_EIP", family=Family.SYSCALL,
        aliases=("SYSENTER_EIP",), write=WriteRule(check=Check.CANONICALIZE), listed=ALWAYS,
        source=f"SDM Vol. 4; {_FACTS} section 3 rule 3; {_COMMON} 2.0 (canonicalised)"),
    Msr(index=0xC0000080, name="IA32_EFER", family=Family.SYSCALL, aliases=("EFER",),
        write=WriteRule(check=Check.EFER, exact=False),
        source=f"SDM Vol. 4; {_COMMON} 2a EFER (set_efer)"),
    Msr(index=0xC0000081, name="IA32_STAR", family=Family.SYSCALL, aliases=("STAR",),
        listed=ALWAYS, source="SDM Vol. 4; msrs_to_save_base"),
    Msr(index=0xC0000082, name="IA32_LSTAR", family=Family.SYSCALL, aliases=("LSTAR",),
        write=CANONICAL, listed=ALWAYS, source=f"SDM Vol. 4; {_COMMON} 2.0 (canonical check)"),
    Msr(index=0xC0000083, name="IA32_CSTAR", family=Family.SYSCALL, aliases=("CSTAR",),
        write=CANONICAL, listed=ALWAYS, source=f"SDM Vol. 4; {_COMMON} 2.0 (canonical check)"),
    Msr(index=0xC0000084, name="IA32_FMASK", family=Family.SYSCALL,
        aliases=("SFMASK", "SYSCALL_MASK"), write=WriteRule(exact=False), listed=ALWAYS,
        source=f"SDM Vol. 4 (IA32_FMASK); msr-index.h MSR_SYSCALL_MASK; {_FACTS} section 11",
        note="kept in a user-return slot: the host CPU validates the value"),
    Msr(index=0xC0000100, name="FS_BASE", family=Family.SEGMENT, aliases=("IA32_FS_BASE",),
        write=CANONICAL, source=f"SDM Vol. 4; {_FACTS} section 3 rule 2"),
    Msr(index=0xC0000101, name="GS_BASE", family=Family.SEGMENT, aliases=("IA32_GS_BASE",),
        write=CANONICAL, source=f"SDM Vol. 4; {_FACTS} section 3 rule 2"),
    Msr(index=0xC0000102, name="KERNEL_GS_BASE", family=Family.SEGMENT,
        aliases=("IA32_KERNEL_GS_BASE", "SWAPGS"), write=CANONICAL, listed=ALWAYS,
        source=f"SDM Vol. 4; {_FACTS} section 3 rule 2"),
    Msr(index=0xC0000103, name="IA32_TSC_AUX", family=Family.TIME, aliases=("TSC_AUX",),
        gates=(Gate(need=need(F.RDTSCP, F.RDPID), host=False, error=KvmRet.ERR),),
        write=WriteRule(check=Check.TSC_AUX), listed=need(F.RDTSCP, F.RDPID),
        source=f"SDM Vol. 4; {_COMMON} 2.0 (TSC_AUX pre-checks)"),
    # -- XSAVE-managed --------------------------------------------------------------------------
    Msr(index=0x1C4, name="IA32_XFD", family=Family.XSAVE, aliases=("XFD",),
        gates=(Gate(need=need(F.XFD), host=False, error=KvmRet.ERR),),
        write=WriteRule(reserved=~(1 << 18) & (2**64 - 1), exact=False), listed=need(F.XFD),
        source=f"{_FACTS} section 3 rule 7; kvm_set_msr_common MSR_IA32_XFD"),
    Msr(index=0x1C5, name="IA32_XFD_ERR", family=Family.XSAVE, aliases=("XFD_ERR",),
        gates=(Gate(need=need(F.XFD), host=False, error=KvmRet.ERR),),
        write=WriteRule(exact=False), listed=need(F.XFD),
        source=f"{_FACTS} section 3 rule 9; kvm_set_msr_common MSR_IA32_XFD_ERR"),
    Msr(index=0xDA0, name="IA32_XSS", family=Family.XSAVE, aliases=("XSS",),
        gates=(Gate(need=need(F.XSAVES), access=Access.W, host=False),
               Gate(need=need(F.XSAVES), access=Access.R, host=False, error=KvmRet.ERR)),
        write=WriteRule(exact=False), listed=need(F.XSAVES),
        source=f"SDM Vol. 4; {_COMMON} 2a XSS; {_FACTS} section 11",
        note="writes need guest XSAVES (else UNSUPPORTED); reads without it fail with 1"),
    # -- FRED -----------------------------------------------------------------------------------
    _fred(0x1CC, "IA32_FRED_RSP0", _FRED_RSP),
    _fred(0x1CD, "IA32_FRED_RSP1", _FRED_RSP),
    _fred(0x1CE, "IA32_FRED_RSP2", _FRED_RSP),
    _fred(0x1CF, "IA32_FRED_RSP3", _FRED_RSP),
    _fred(0x1D0, "IA32_FRED_STKLVLS", ANY_VALUE),
    _fred(0x1D1, "IA32_FRED_SSP1", _FRED_SSP),
    _fred(0x1D2, "IA32_FRED_SSP2", _FRED_SSP),
    _fred(0x1D3, "IA32_FRED_SSP3", _FRED_SSP),
    _fred(0x1D4, "IA32_FRED_CONFIG", WriteRule(canonical=True, reserved=0x834)),
    # -- CET ------------------------------------------------------------------------------------
    Msr(index=0x6A0, name="IA32_U_CET", family=Family.CET, aliases=("U_CET",),
        gates=(Gate(need=need(F.SHSTK, F.IBT)),), write=_CET_CTL,
        listed=need(F.SHSTK, F.IBT), source=_CET_SRC),
    Msr(index=0x6A2, name="IA32_S_CET", family=Family.CET, aliases=("S_CET",),
        gates=(Gate(need=need(F.SHSTK, F.IBT)),), write=_CET_CTL,
        listed=need(F.SHSTK, F.IBT), source=_CET_SRC),
    Msr(index=0x6A4, name="IA32_PL0_SSP", family=Family.CET,
        aliases=("IA32_FRED_SSP0", "PL0_SSP"),
        gates=(Gate(need=need(F.SHSTK, F.FRED)),), write=_CET_SSP,
        listed=need(F.SHSTK, F.FRED),
        source=f"{_CET_SRC}; {_ARCH} section 2 (= FRED_SSP0, exists on every FRED CPU)",
        note="FRED-only guests: KVM keeps it in fred_ssp0_fallback, intercepted"),
    Msr(index=0x6A5, name="IA32_PL1_SSP", family=Family.CET, aliases=("PL1_SSP",),
        gates=(Gate(need=need(F.SHSTK)),), write=_CET_SSP, listed=need(F.SHSTK),
        source=_CET_SRC),
    Msr(index=0x6A6, name="IA32_PL2_SSP", family=Family.CET, aliases=("PL2_SSP",),
        gates=(Gate(need=need(F.SHSTK)),), write=_CET_SSP, listed=need(F.SHSTK),
        source=_CET_SRC),
    Msr(index=0x6A7, name="IA32_PL3_SSP", family=Family.CET, aliases=("PL3_SSP",),
        gates=(Gate(need=need(F.SHSTK)),), write=_CET_SSP, listed=need(F.SHSTK),
        source=_CET_SRC),
    Msr(index=0x6A8, name="IA32_INT_SSP_TAB", family=Family.CET, aliases=("INT_SSP_TAB",),
        gates=(Gate(need=need(all_of=(F.SHSTK, F.LM))),), write=CANONICAL,
        listed=need(all_of=(F.SHSTK, F.LM)),
        source=f"{_CET_SRC}; {_FACTS} section 3 (never passed through)"),
    # -- Intel PT (VMX vendor code) -------------------------------------------------------------
    *(Msr(index=idx, name=name, family=Family.TRACE, handled_by=frozenset({Backend.VMX}),
          gates=(Gate(need=need(F.INTEL_PT), error=KvmRet.ERR),), write=WriteRule(exact=False),
          listed=need(F.INTEL_PT),
          source=f"SDM Vol. 4; {_FACTS} section 3 rule 6; vmx_set_msr RTIT_*",
          note="fails (1) unless KVM runs PT in host-guest mode")
      for idx, name in (
          (0x560, "IA32_RTIT_OUTPUT_BASE"), (0x561, "IA32_RTIT_OUTPUT_MASK"),
          (0x570, "IA32_RTIT_CTL"), (0x571, "IA32_RTIT_STATUS"), (0x572, "IA32_RTIT_CR3_MATCH"),
          (0x580, "IA32_RTIT_ADDR0_A"), (0x581, "IA32_RTIT_ADDR0_B"),
          (0x582, "IA32_RTIT_ADDR1_A"), (0x583, "IA32_RTIT_ADDR1_B"),
      )),
    # -- power / performance --------------------------------------------------------------------
    Msr(index=0xE7, name="IA32_MPERF", family=Family.POWER, aliases=("MPERF",),
        emul=Emul.UNSUPPORTED, reset=None, source=f"SDM Vol. 4; {_FACTS} section 3 rule 5"),
    Msr(index=0xE8, name="IA32_APERF", family=Family.POWER, aliases=("APERF",),
        emul=Emul.UNSUPPORTED, reset=None, source=f"SDM Vol. 4; {_FACTS} section 3 rule 5"),
    Msr(index=0x3FC, name="CORE_C3_RESIDENCY", family=Family.POWER, emul=Emul.UNSUPPORTED,
        reset=None, source=f"SDM Vol. 4; {_FACTS} section 3 rule 4"),
    Msr(index=0x3FD, name="CORE_C6_RESIDENCY", family=Family.POWER, emul=Emul.UNSUPPORTED,
        reset=None, source=f"SDM Vol. 4; {_FACTS} section 3 rule 4"),
    Msr(index=0x3FE, name="CORE_C7_RESIDENCY", family=Family.POWER, emul=Emul.UNSUPPORTED,
        reset=None, source=f"SDM Vol. 4; {_FACTS} section 3 rule 4"),
    Msr(index=0x660, name="CORE_C1_RES", family=Family.POWER, emul=Emul.UNSUPPORTED,
        reset=None, source=f"SDM Vol. 4; {_FACTS} section 3 rule 4"),
    Msr(index=0x1FC, name="IA32_POWER_CTL", family=Family.POWER, aliases=("POWER_CTL",),
        listed=ALWAYS, source=f"{_COMMON} 2a POWER_CTL (stored); {_FACTS} section 11"),
    Msr(index=0x1A0, name="IA32_MISC_ENABLE", family=Family.POWER, aliases=("MISC_ENABLE",),
        write=WriteRule(exact=False), reset=0x1800, listed=ALWAYS,
        quirks=(Quirk(backend=Backend.PVM, kind=QuirkKind.RESET, value=0x1,
                      evidence=_PVM_6_18),),
        source=f"SDM Vol. 4; {_COMMON} 2a MISC_ENABLE; kvm_vcpu_reset (PEBS/BTS unavailable)"),
    # -- APIC -----------------------------------------------------------------------------------
    Msr(index=0x1B, name="IA32_APIC_BASE", family=Family.APIC, aliases=("APIC_BASE",),
        write=WriteRule(exact=False), reset=None,
        source=f"SDM Vol. 4; {_COMMON} 2a APIC_BASE (kvm_apic_set_base)"),
    _x2apic(0x802, "X2APIC_ID"),
    _x2apic(0x803, "X2APIC_VERSION"),
    _x2apic(0x808, "X2APIC_TPR"),
    _x2apic(0x80A, "X2APIC_PPR"),
    _x2apic(0x80B, "X2APIC_EOI"),
    _x2apic(0x80D, "X2APIC_LDR"),
    _x2apic(0x80F, "X2APIC_SIVR"),
    _x2apic(0x830, "X2APIC_ICR"),
    _x2apic(0x832, "X2APIC_LVTT"),
    _x2apic(0x839, "X2APIC_TMCCT"),
    _x2apic(0x83F, "X2APIC_SELF_IPI"),
    # -- memory types ---------------------------------------------------------------------------
    Msr(index=0x277, name="IA32_PAT", family=Family.MEMTYPE, aliases=("PAT", "CR_PAT"),
        write=WriteRule(check=Check.PAT), reset=0x0007040600070406, listed=ALWAYS,
        quirks=(Quirk(backend=Backend.PVM, kind=QuirkKind.NO_VALUE_CHECK, evidence=_PVM_6_18),),
        source=f"SDM Vol. 4; {_COMMON} 2a CR_PAT (kvm_pat_valid)"),
    Msr(index=0xFE, name="IA32_MTRRCAP", family=Family.MEMTYPE, aliases=("MTRRCAP",),
        emul=Emul.READ_ONLY, write=WriteRule(exact=False), reset=0x508,
        source=f"SDM Vol. 4; {_COMMON} 2a MTRRs (8 variable ranges, fixed, WC)"),
    Msr(index=0x2FF, name="IA32_MTRR_DEF_TYPE", family=Family.MEMTYPE,
        aliases=("MTRR_DEF_TYPE", "MTRRDEFTYPE"), write=WriteRule(check=Check.MTRR_DEF_TYPE),
        source=f"SDM Vol. 4; {_COMMON} 2a MTRRs (kvm_mtrr_set_msr)"),
    # -- debug / LBR ----------------------------------------------------------------------------
    Msr(index=0x1D9, name="IA32_DEBUGCTL", family=Family.DEBUG, aliases=("DEBUGCTL",),
        write=WriteRule(exact=False), listed=ALWAYS,
        source=f"SDM Vol. 4; {_COMMON} 1b (SVM LBRV) and 2a"),
    Msr(index=0x1DB, name="LASTBRANCHFROMIP", family=Family.DEBUG, emul=Emul.READ_ZERO,
        listed=ALWAYS, source=_LBR_SRC),
    Msr(index=0x1DC, name="LASTBRANCHTOIP", family=Family.DEBUG, emul=Emul.READ_ZERO,
        listed=ALWAYS, source=_LBR_SRC),
    Msr(index=0x1DD, name="LASTINTFROMIP", family=Family.DEBUG, emul=Emul.READ_ZERO,
        listed=ALWAYS, source=_LBR_SRC),
    Msr(index=0x1DE, name="LASTINTTOIP", family=Family.DEBUG, emul=Emul.READ_ZERO,
        listed=ALWAYS, source=_LBR_SRC),
    # -- SVM-only -------------------------------------------------------------------------------
    Msr(index=0xC0010130, name="SEV_ES_GHCB", family=Family.SVM, emul=Emul.UNSUPPORTED,
        handled_by=frozenset({Backend.SVM}), reset=None,
        source=f"{_COMMON} 1b (SEV-ES: always passed through)"),
    # -- PVM virtual MSRs -----------------------------------------------------------------------
    _pvm(0x4B564DF0, "PVM_LINEAR_ADDRESS_RANGE"),
    _pvm(0x4B564DF1, "PVM_VCPU_STRUCT"),
    _pvm(0x4B564DF2, "PVM_SUPERVISOR_RSP"),
    _pvm(0x4B564DF3, "PVM_SUPERVISOR_REDZONE"),
    _pvm(0x4B564DF4, "PVM_EVENT_ENTRY"),
    _pvm(0x4B564DF5, "PVM_RETU_RIP"),
    _pvm(0x4B564DF6, "PVM_RETS_RIP"),
    _pvm(0x4B564DF7, "PVM_SWITCH_CR3"),
), key=lambda m: m.index))


def _key(name: str) -> str:
    """Normalise a name: case, '-' vs '_', and the MSR_ / IA32_ / MSR_IA32_ prefixes."""
    key = name.strip().upper().replace("-", "_")
    key = key.removeprefix("MSR_")
    return key.removeprefix("IA32_")


BY_INDEX: dict[int, Msr] = {m.index: m for m in MSRS}
BY_NAME: dict[str, Msr] = {}
for _m in MSRS:
    for _n in _m.names:
        BY_NAME.setdefault(_key(_n), _m)
del _m, _n

FRED_MSRS: tuple[Msr, ...] = tuple(m for m in MSRS if m.family is Family.FRED)


def lookup(index: int) -> Msr | None:
    """The table row of MSR ``index``, or None if msrvirt has no row for it."""
    return BY_INDEX.get(index)


def resolve_index(text: str | int) -> int:
    """Turn ``0x1cc``, ``460``, ``IA32_FRED_RSP0``, ``fred_rsp0`` or ``MSR_IA32_FRED_RSP0`` into 0x1cc.

    A number is accepted whether or not the table has a row for it (an unknown MSR);
    a name must be in the table.  Raises UnknownNameError otherwise.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        raw = str(text).strip()
        try:
            value = int(raw, 0)
        except ValueError:
            row = BY_NAME.get(_key(raw))
            if row is None:
                raise UnknownNameError("MSR", raw, "a name from `msrvirt explain --all`"
                                       " or an index such as 0x1cc") from None
            return row.index
    if not 0 <= value <= 0xFFFF_FFFF:
        raise UnknownNameError("MSR", str(text), "indices are 32-bit")
    return value


def resolve_pattern(text: str) -> tuple[int, ...]:
    """The indices ``text`` names: one MSR (as resolve_index), or with ``*``, ``?`` or ``[``
    every table MSR with a name matching the shell-style pattern, in index order.

    Names are normalised as for resolve_index, so ``IA32_FRED_*``, ``fred_*`` and
    ``msr_ia32_fred_*`` match the same MSRs.  UsageError when nothing matches.
    """
    if not any(c in text for c in "*?["):
        return (resolve_index(text),)
    pattern = _key(text)
    found = tuple(m.index for m in MSRS if any(fnmatchcase(_key(n), pattern) for n in m.names))
    if not found:
        raise UsageError(f"MSR pattern {text.strip()!r} must match a name of"
                         " `msrvirt explain --all`, and it matches none")
    return found


def resolve(text: str | int) -> Msr | None:
    """resolve_index, then the row (None for a number with no row)."""
    return lookup(resolve_index(text))


def display_name(index: int) -> str:
    """The table name of ``index``, or its hex form."""
    row = BY_INDEX.get(index)
    return row.name if row else f"MSR_{index:#010x}"

"""Nested VMX: what L0 (KVM) does with the MSR accesses of L1's L2 guest, and why.

The ground truth is Linux v6.19 (tree matankalina/linux-6.19.10-fork, commit
094d869456d2bb93023e0ef9bf84a0758cbe8085), arch/x86/kvm/vmx/nested.c:

- nested_vmx_prepare_msr_bitmap builds vmcs02's MSR bitmap on every nested VM entry.
  Without "use MSR bitmaps" in vmcs12 it returns false and vmcs02 runs without a bitmap
  (every L2 RDMSR/WRMSR exits).  Otherwise the page (allocated all ones,
  vmx.c alloc_loaded_vmcs) keeps every bit set except: the x2APIC range, reset to
  intercept (enable_x2apic_msr_intercepts) and then taken from L1's bitmap under
  virtualize x2APIC mode (reads with APIC-register virtualization, TPR, EOI and SELF_IPI
  writes with virtual-interrupt delivery; nested_vmx_disable_intercept_for_x2apic_msr,
  which ignores vmcs01), and a fixed merge list, each bit = vmcs01's bit OR L1's bit
  (nested_vmx_set_intercept_for_msr), so L0's userspace filter still holds for L2.
- nested_vmx_reflect_vmexit: an L2 MSR exit goes to L1 when nested_vmx_l1_wants_exit says
  so (L0 never claims MSR exits in nested_vmx_l0_wants_exit); for EXIT_REASON_MSR_READ /
  WRITE that is nested_vmx_exit_handled_msr: always without MSR bitmaps in vmcs12, always
  for an index outside both bitmap ranges, else L1's bitmap bit.  Otherwise L0 handles the
  access itself, on vmcs02, exactly as for L1 (filter, emulation, userspace exit, #GP).

Out of scope (docs/nested.md): the Hyper-V enlightened VMCS and its clean-field early
return, a bitmap page L0 cannot map, a host CPU without MSR bitmaps, and state: the
bitmaps are those of the last nested VM entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from msrvirt.arch.cpuid import Feature
from msrvirt.arch.hosts import HostProfile
from msrvirt.arch.kvm import Access, Backend, ExitReason, KvmRet
from msrvirt.arch.msrs import X2APIC_RANGE, display_name, lookup, resolve_index
from msrvirt.arch.nested import MergeList
from msrvirt.arch.vmcs import EXIT_REASON_MSR_READ, EXIT_REASON_MSR_WRITE
from msrvirt.arch.vmcs12 import FRED_CONTROLS, NO_CONTROLS, Control, control
from msrvirt.errors import UsageError
from msrvirt.policy.bitmap import MsrBitmap, VmxMsrBitmap
from msrvirt.policy.decide import (
    Decision,
    Initiator,
    MsrAccess,
    Outcome,
    check_access,
    decide,
    reset_value,
    value_problem,
)
from msrvirt.policy.filter import NO_FILTER, MsrFilter
from msrvirt.policy.intercepts import Intercepts, check_backend, compute_intercepts
from msrvirt.policy.policies import Policy
from msrvirt.policy.scenario import Scenario

R, W = Access.R, Access.W
_NESTED_C = "nested.c"


def _cite(function: str, file: str = _NESTED_C) -> str:
    return f"[{file} {function}]"


# -- how L1 runs its L2 -------------------------------------------------------------------------


class L1Kind(StrEnum):
    """Where L1's MSR bitmap for L2 comes from."""

    KVM = "kvm"  # L1 is KVM: its policy's recomputation for an L2 with a given CPUID
    INTERCEPT_ALL = "intercept-all"  # every bit set
    NO_BITMAPS = "no-bitmaps"  # vmcs12 does not use MSR bitmaps
    FILE = "file"  # a bitmap file (docs/formats.md)


@dataclass(frozen=True, slots=True, kw_only=True)
class L1:
    """How L1 runs its L2: the vmcs12 controls and L1's MSR bitmap for L2."""

    kind: L1Kind
    name: str  # kvm:POLICY, intercept-all, no-bitmaps, or the file's path
    controls: Control
    bitmap: VmxMsrBitmap  # L1's page (all ones where L1 has none)
    l2: Scenario | None = None  # KVM: the scenario L1's KVM computes the page from


def l1_host(l0: Scenario) -> HostProfile:
    """The CPU L1's KVM sees: L0's VMX host with the features L0 gives L1 (L1's CPUID)."""
    return HostProfile(
        name=f"{l0.host.name}/L1", description=f"an L1 vCPU of {l0.host.name}",
        vendor=l0.host.vendor, backend=Backend.VMX, features=l0.guest_caps,
        source="L0's guest CPUID for L1 (kvm_cpu_cap_has in L1 = what L1's CPUID enumerates)",
    )


def kvm_l1(l0: Scenario, l1_policy: Policy, l2_guest: frozenset[Feature],
           l1_filter: MsrFilter = NO_FILTER) -> L1:
    """L1 is KVM applying ``l1_policy`` to an L2 whose CPUID asks for ``l2_guest``.

    L1's page is the policy's recomputation (policy/intercepts.py) on L1's CPU, with L1's
    userspace filter ``l1_filter`` (the stateful model's L1 switches it); vmcs12 uses MSR
    bitmaps, and the FRED entry/exit controls when L2 has FRED (the FRED series'
    vmx_vcpu_config_fred_after_set_cpuid sets them iff the guest has FRED).
    """
    check_backend(l1_policy, Backend.VMX)
    l2 = Scenario(host=l1_host(l0), guest=l2_guest, policy=l1_policy, filter=l1_filter)
    page = compute_intercepts(l2).bitmap
    assert isinstance(page, VmxMsrBitmap)  # a VMX host always has one
    controls = Control.USE_MSR_BITMAPS
    if Feature.FRED in l2.guest_caps:
        controls |= FRED_CONTROLS
    return L1(kind=L1Kind.KVM, name=f"kvm:{l1_policy.name}", controls=controls, bitmap=page,
              l2=l2)


INTERCEPT_ALL_L1 = L1(kind=L1Kind.INTERCEPT_ALL, name="intercept-all",
                      controls=Control.USE_MSR_BITMAPS, bitmap=VmxMsrBitmap.all_intercepted())
NO_BITMAPS_L1 = L1(kind=L1Kind.NO_BITMAPS, name="no-bitmaps", controls=NO_CONTROLS,
                   bitmap=VmxMsrBitmap.all_intercepted())

_FILE_KEYS = {"default", "passthrough", "intercept", "controls"}
_DIRECTIONS = {"read": R, "write": W, "rw": Access.RW}


def _msr_list(value: object, what: str) -> list[int]:
    if not isinstance(value, list):
        raise UsageError(f"{what} must be a list of MSR names or indices, not {value!r}")
    out = []
    for item in value:
        if not isinstance(item, (str, int)) or isinstance(item, bool):
            raise UsageError(f"{what} entries must be MSR names or indices, not {item!r}")
        msr = resolve_index(item)
        if VmxMsrBitmap.bit_position(msr, R) is None:
            raise UsageError(f"{what}: MSR {msr:#x} is outside the VMX bitmap's ranges"
                             " (0x0-0x1fff, 0xc0000000-0xc0001fff); its accesses always exit")
        out.append(msr)
    return out


def l1_from_obj(obj: object, name: str) -> L1:
    """L1's bitmap and vmcs12 controls from a file's object (docs/formats.md).

    Raises UsageError naming the bad key or value.
    """
    if not isinstance(obj, Mapping):
        raise UsageError(f"an L1 bitmap must be an object, not {type(obj).__name__}")
    extra = sorted(set(obj) - _FILE_KEYS)
    if extra:
        raise UsageError(f"L1 bitmap keys must be among {sorted(_FILE_KEYS)}, not {extra[0]!r}")
    default = obj.get("default", "intercept")
    if default not in ("intercept", "passthrough"):
        raise UsageError(f"L1 bitmap default must be intercept or passthrough, not {default!r}")
    other = "passthrough" if default == "intercept" else "intercept"
    if default in obj:
        raise UsageError(f"with default {default}, list the exceptions under {other!r},"
                         f" not {default!r}")
    exceptions = obj.get(other, {})
    if not isinstance(exceptions, Mapping):
        raise UsageError(f"L1 bitmap {other!r} must map read/write/rw to MSR lists,"
                         f" not {exceptions!r}")
    changes = []
    for key, msrs in exceptions.items():
        if key not in _DIRECTIONS:
            raise UsageError(f"L1 bitmap {other!r} keys must be read, write or rw, not {key!r}")
        changes += [(msr, _DIRECTIONS[key], other == "intercept")
                    for msr in _msr_list(msrs, f"L1 bitmap {other}.{key}")]
    base = VmxMsrBitmap.all_intercepted()
    if default == "passthrough":
        base = VmxMsrBitmap(intercept_bits=bytes(VmxMsrBitmap.SIZE))
    controls = Control.USE_MSR_BITMAPS
    if "controls" in obj:
        names_ = obj["controls"]
        if not isinstance(names_, list) or not all(isinstance(n, str) for n in names_):
            raise UsageError(f"L1 bitmap controls must be a list of names, not {names_!r}")
        controls = NO_CONTROLS
        for n in names_:
            controls |= control(n)
    return L1(kind=L1Kind.FILE, name=name, controls=controls,
              bitmap=VmxMsrBitmap.from_changes(changes, base=base))


def parse_controls(spec: str, base: Control) -> Control:
    """``base`` edited by ``NAME,-NAME,none,...`` (``--vmcs12``): add, remove, clear."""
    out = base
    for item in filter(None, (p.strip() for p in spec.split(","))):
        if item == "none":
            out = NO_CONTROLS
        elif item.startswith("-"):
            out &= ~control(item[1:])
        else:
            out |= control(item.lstrip("+"))
    return out


def check_host(h: HostProfile) -> None:
    """Raise UsageError unless ``h`` runs guests with VMX (nested SVM is not modelled)."""
    if h.backend is not Backend.VMX:
        raise UsageError(f"nested virtualization is modelled on VMX hosts only, not on {h.name}"
                         f" ({h.backend.value})")


# -- vmcs02 ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Nested:
    """L0's scenario (host, L1's CPUID, L0's policy, filter, exits), L1, and L0's merge list."""

    l0: Scenario
    l1: L1
    merge: MergeList

    def __post_init__(self) -> None:
        check_host(self.l0.host)

    @property
    def vmcs01(self) -> VmxMsrBitmap:
        """L0's bitmap for L1 (the single-level model of policy/intercepts.py)."""
        page = compute_intercepts(self.l0).bitmap
        assert isinstance(page, VmxMsrBitmap)
        return page


class Basis(StrEnum):
    """Which rule of nested_vmx_prepare_msr_bitmap decides one bit of vmcs02."""

    NO_BITMAP = "no-bitmap"  # vmcs12 without MSR bitmaps: vmcs02 runs without one
    OUTSIDE = "outside"  # an index outside both ranges always exits
    MERGED = "merged"  # in the merge list: vmcs01's bit OR L1's bit
    X2APIC = "x2apic"  # the x2APIC rules
    UNMERGED = "unmerged"  # in range, not merged: set since the page was allocated


@dataclass(frozen=True, slots=True, kw_only=True)
class Vmcs02Bit:
    """One (MSR, direction) of vmcs02: intercepted or not, by which rule, from which bits."""

    intercept: bool
    basis: Basis
    vmcs01: bool | None  # vmcs01's bit where the rule reads it
    l1: bool | None  # L1's bit where the rule reads it
    rule: str  # the rule, in words, with its source


_TPR = resolve_index("X2APIC_TPR")
_EOI = resolve_index("X2APIC_EOI")
_SELF_IPI = resolve_index("X2APIC_SELF_IPI")
_DISABLE_X2APIC = _cite("nested_vmx_disable_intercept_for_x2apic_msr")


def _x2apic_bit(l1_page: MsrBitmap, controls: Control, msr: int, access: Access) -> Vmcs02Bit:
    """nested_vmx_prepare_msr_bitmap's x2APIC part: vmcs01 is ignored, L1's bit is taken
    only where a control lets L2 reach the virtual APIC, every other bit is set."""
    if Control.VIRTUALIZE_X2APIC_MODE not in controls:
        return Vmcs02Bit(intercept=True, basis=Basis.X2APIC, vmcs01=None, l1=None, rule=(
            "x2APIC MSR: enable_x2apic_msr_intercepts sets it and, without virtualize x2APIC"
            f" mode in vmcs12, nothing clears it {_cite('nested_vmx_prepare_msr_bitmap')}"))
    if access is R and Control.APIC_REGISTER_VIRT in controls:
        rule = ("x2APIC read under APIC-register virtualization: vmcs02 takes L1's read bits"
                f" for 0x800-0x8ff, vmcs01 ignored {_cite('nested_vmx_prepare_msr_bitmap')}")
    elif msr == _TPR:
        rule = ("x2APIC TPR under virtualize x2APIC mode: cleared where L1's bitmap clears it,"
                f" vmcs01 ignored {_DISABLE_X2APIC}")
    elif access is W and msr in (_EOI, _SELF_IPI) and Control.VIRTUAL_INTR_DELIVERY in controls:
        rule = ("x2APIC EOI/SELF_IPI write under virtual-interrupt delivery: cleared where L1's"
                f" bitmap clears it, vmcs01 ignored {_DISABLE_X2APIC}")
    else:
        return Vmcs02Bit(intercept=True, basis=Basis.X2APIC, vmcs01=None, l1=None, rule=(
            "x2APIC MSR: enable_x2apic_msr_intercepts sets it and no x2APIC rule of vmcs12's"
            f" controls clears this {access.label} {_cite('nested_vmx_prepare_msr_bitmap')}"))
    l1 = l1_page.intercepted(msr, access)
    return Vmcs02Bit(intercept=l1, basis=Basis.X2APIC, vmcs01=None, l1=l1, rule=rule)


def vmcs02_bit(vmcs01: MsrBitmap, l1_page: MsrBitmap, controls: Control, merge: MergeList,
               msr: int, access: Access) -> Vmcs02Bit:
    """The bit of (msr, R or W) in vmcs02 when vmcs12 uses MSR bitmaps, and its rule."""
    if VmxMsrBitmap.bit_position(msr, access) is None:
        return Vmcs02Bit(intercept=True, basis=Basis.OUTSIDE, vmcs01=None, l1=None, rule=(
            f"{display_name(msr)} is outside the bitmap's ranges: every access exits"
            " (Intel SDM Vol. 3C, MSR-bitmap address)"))
    if msr in X2APIC_RANGE:
        return _x2apic_bit(l1_page, controls, msr, access)
    if (msr, access) in merge.merged:
        in_01 = vmcs01.intercepted(msr, access)
        in_l1 = l1_page.intercepted(msr, access)
        return Vmcs02Bit(intercept=in_01 or in_l1, basis=Basis.MERGED, vmcs01=in_01, l1=in_l1,
                         rule=(f"{display_name(msr)} {access.label} is in merge list"
                               f" {merge.name}: vmcs02's bit = vmcs01's bit OR L1's bit"
                               f" {_cite('nested_vmx_set_intercept_for_msr')}"))
    return Vmcs02Bit(intercept=True, basis=Basis.UNMERGED, vmcs01=None, l1=None, rule=(
        f"{display_name(msr)} {access.label} is not in merge list {merge.name}: vmcs02's bit"
        " stays set from the page's allocation (vmx.c alloc_loaded_vmcs fills it with ones;"
        f" only merged and x2APIC bits ever change) {_cite('nested_vmx_prepare_msr_bitmap')}"))


def merge_bitmaps(vmcs01: MsrBitmap, l1_page: MsrBitmap, controls: Control,
                  merge: MergeList) -> VmxMsrBitmap:
    """vmcs02's page as nested_vmx_prepare_msr_bitmap leaves it (vmcs12 uses MSR bitmaps)."""
    pairs = [(msr, d) for msr in X2APIC_RANGE for d in (R, W)]
    pairs += sorted(merge.merged)
    return VmxMsrBitmap.from_changes(
        (msr, d, vmcs02_bit(vmcs01, l1_page, controls, merge, msr, d).intercept)
        for msr, d in pairs)


@lru_cache(maxsize=256)
def vmcs02_bitmap(n: Nested) -> VmxMsrBitmap | None:
    """vmcs02's MSR bitmap, or None when vmcs12 does not use MSR bitmaps (vmcs02 has none)."""
    if Control.USE_MSR_BITMAPS not in n.l1.controls:
        return None
    return merge_bitmaps(n.vmcs01, n.l1.bitmap, n.l1.controls, n.merge)


# -- L2's accesses --------------------------------------------------------------------------------


class L2Outcome(StrEnum):
    """Where an L2 RDMSR/WRMSR ends."""

    PASSTHROUGH = "passthrough"  # the CPU runs it on L2's value (or L2's virtual APIC)
    EMULATED = "emulated"  # L0 handles it for L2 without involving L1
    REFLECTED = "reflected"  # a nested VM exit to L1 (exit reason MSR read / write)
    GP = "gp"  # L2 gets #GP, from the CPU or injected by L0
    EXIT = "exit"  # L0's vCPU exits to L0's userspace (KVM_EXIT_X86_RDMSR/WRMSR)


_FROM_L0 = {Outcome.EMULATED: L2Outcome.EMULATED, Outcome.GP: L2Outcome.GP,
            Outcome.EXIT: L2Outcome.EXIT}


@dataclass(frozen=True, slots=True, kw_only=True)
class L2Decision:
    """The outcome of one L2 access and the chain of reasons that leads there."""

    outcome: L2Outcome
    exit_reason: ExitReason | None  # L0's userspace exit reason (outcome EXIT only)
    would_exit: ExitReason | None  # the reason L0's failure would exit with, were it enabled
    bit: Vmcs02Bit  # vmcs02's bit and its rule
    l1_wants_exit: bool | None  # nested_vmx_exit_handled_msr; None when there is no VM exit
    l1_intercept: bool | None  # L1's bit, where the merge or the reflection reads it
    nested_exit_reason: int | None  # REFLECTED: the basic exit reason L1 sees (31 or 32)
    l0: Decision | None  # L0's handling when it keeps the exit
    value: int | None  # what a read returns, where the model knows it
    missing: str  # what the model does not know about this access ("" when exact)
    reasons: tuple[str, ...]
    summary: str

    @property
    def exact(self) -> bool:
        return not self.missing

    @property
    def kvm_ret(self) -> KvmRet | None:
        return self.l0.kvm_ret if self.l0 is not None else None


def _vmcs01_reason(n: Nested, msr: int, access: Access) -> str:
    return "vmcs01 (L0's bitmap for L1): " + decide(n.l0, MsrAccess(msr, access)).reasons[0]


def _l1_reason(l1: L1, msr: int, access: Access) -> str:
    if l1.l2 is not None:
        why = decide(l1.l2, MsrAccess(msr, access)).reasons[0]
        return f"L1's bitmap ({l1.name}, for an L2 with {_features(l1.l2)}): {why}"
    if l1.kind is L1Kind.INTERCEPT_ALL:
        return "L1's bitmap (intercept-all) has every bit set"
    state = "set" if l1.bitmap.intercepted(msr, access) else "clear"
    return f"L1's bitmap ({l1.name}) has this bit {state}"


def _features(s: Scenario) -> str:
    removed = sorted(f.value for f in s.host.features - s.guest_caps)
    return "L1's features" + "".join(f", -{f}" for f in removed)


_NO_EXIT_TO_L1 = ("L1 does not want the exit, so nested_vmx_reflect_vmexit keeps it: L0 handles"
                  f" the access for L2, on vmcs02, as for L1 {_cite('nested_vmx_reflect_vmexit')}")

# Every access exits: the state L0's exit handler is in when it keeps an L2 exit.
_ALL_EXIT = Intercepts(bitmap=VmxMsrBitmap.all_intercepted(), settings={}, skipped=(), on_demand={},
                       clear=frozenset())


def decide_l2(n: Nested, req: MsrAccess) -> L2Decision:
    """The outcome of L2's RDMSR/WRMSR ``req`` under ``n``, with the chain of reasons."""
    check_access(req)
    if req.initiator is not Initiator.GUEST:
        raise UsageError("nested decisions are for L2's own RDMSR/WRMSR, not host-initiated"
                         " KVM_GET/SET_MSRS")
    msr, access = req.msr, req.access
    exit_reason = EXIT_REASON_MSR_WRITE if access is W else EXIT_REASON_MSR_READ
    if Control.USE_MSR_BITMAPS not in n.l1.controls:
        bit = Vmcs02Bit(intercept=True, basis=Basis.NO_BITMAP, vmcs01=None, l1=None, rule=(
            "vmcs12 does not use MSR bitmaps: nested_vmx_prepare_msr_bitmap returns false and"
            " vmcs02 runs without one, so every L2 RDMSR/WRMSR exits"
            f" {_cite('nested_get_vmcs12_pages')}"))
    else:
        bit = vmcs02_bit(n.vmcs01, n.l1.bitmap, n.l1.controls, n.merge, msr, access)
    steps = [bit.rule]
    if bit.basis is Basis.MERGED:
        steps += [_vmcs01_reason(n, msr, access), _l1_reason(n.l1, msr, access)]
    elif bit.l1 is not None:
        steps.append(_l1_reason(n.l1, msr, access))
    if not bit.intercept:
        return _passthrough(n, req, bit, steps)
    steps.append(f"vmcs02 bit set: VM exit to L0 with exit reason {exit_reason}; L0 never"
                 f" claims MSR exits for itself {_cite('nested_vmx_l0_wants_exit')}")
    in_l1, why, short = _l1_wants_exit(n, bit, msr, access)
    if in_l1 is not None and bit.l1 is None:
        steps.append(_l1_reason(n.l1, msr, access))
    steps.append(why)
    if in_l1 is not False:
        steps.append(f"nested VM exit to L1 with exit reason {exit_reason}"
                     f" (EXIT_REASON_MSR_{'WRITE' if access is W else 'READ'}): L1 handles it"
                     f" {_cite('nested_vmx_reflect_vmexit')}")
        return L2Decision(outcome=L2Outcome.REFLECTED, exit_reason=None, would_exit=None, bit=bit,
                          l1_wants_exit=True, l1_intercept=in_l1, nested_exit_reason=exit_reason,
                          l0=None, value=None,
                          missing="", reasons=tuple(steps), summary=f"{short} -> reflected to L1")
    steps.append(_NO_EXIT_TO_L1)
    d = decide(n.l0, req, _ALL_EXIT)
    # decide()'s first step says why vmcs01 would intercept; here the exit has already
    # happened, and the steps above say why.
    steps += d.reasons[1:]
    # The step that decides L0's outcome: a failure (#GP or exit) adds the exit-mask step last.
    tail = d.reasons[-2] if d.outcome in (Outcome.GP, Outcome.EXIT) else d.reasons[-1]
    return L2Decision(outcome=_FROM_L0[d.outcome], exit_reason=d.exit_reason,
                      would_exit=d.would_exit, bit=bit,
                      l1_wants_exit=False, l1_intercept=False, nested_exit_reason=None, l0=d,
                      value=d.value,
                      missing=d.missing, reasons=tuple(steps), summary=f"{short} -> L0: {tail}")


def _passthrough(n: Nested, req: MsrAccess, bit: Vmcs02Bit, steps: list[str]) -> L2Decision:
    """vmcs02's bit is clear: the CPU runs the access (a value it refuses is a #GP in L2)."""
    row = lookup(req.msr)
    x2apic = bit.basis is Basis.X2APIC
    where = "L2's virtual APIC (the virtual-APIC page of vmcs12)" if x2apic else "L2's value"
    verb = "WRMSR" if req.access is W else "RDMSR"
    steps.append(f"vmcs02 bit clear: the {verb} of {display_name(req.msr)} runs on the CPU on"
                 f" {where}, no VM exit")
    missing = "" if row is not None and row.write.exact else "the CPU's value checks for this MSR"
    problem = None
    if req.access is W and row is not None and not x2apic:
        problem = value_problem(row, req.value, n.l0, hardware=True)
    if problem is not None:
        steps.append(f"the CPU refuses the value ({problem}): hardware #GP in L2")
        return L2Decision(outcome=L2Outcome.GP, exit_reason=None, would_exit=None, bit=bit,
                          l1_wants_exit=None, l1_intercept=bit.l1, nested_exit_reason=None, l0=None,
                          value=None, missing=missing,
                          reasons=tuple(steps), summary=f"vmcs02 passes it; hardware #GP: {problem}")
    summary = ("x2APIC: L1 passes it under virtualize x2APIC mode" if x2apic
               else f"merge list {n.merge.name}: neither vmcs01 nor L1 intercepts")
    return L2Decision(outcome=L2Outcome.PASSTHROUGH, exit_reason=None, would_exit=None, bit=bit,
                      l1_wants_exit=None, l1_intercept=bit.l1, nested_exit_reason=None, l0=None,
                      value=None, missing=missing,
                      reasons=tuple(steps), summary=summary)


def _l1_wants_exit(n: Nested, bit: Vmcs02Bit, msr: int,
                   access: Access) -> tuple[bool | None, str, str]:
    """nested_vmx_exit_handled_msr: (L1's bit, or None where it is not read; why; in a few
    words).  L1 wants the exit unless its bit is read and clear."""
    cite = _cite("nested_vmx_exit_handled_msr")
    if bit.basis is Basis.NO_BITMAP:
        return None, f"vmcs12 without MSR bitmaps: L1 wants every MSR exit {cite}", \
            "vmcs12 without MSR bitmaps"
    if bit.basis is Basis.OUTSIDE:
        return None, (f"{msr:#x} is outside both bitmap ranges: L0 lets L1 handle the wrong"
                      f" parameter {cite}"), "outside the bitmap's ranges"
    in_l1 = n.l1.bitmap.intercepted(msr, access)
    where = {Basis.MERGED: "merged", Basis.X2APIC: "x2APIC",
             Basis.UNMERGED: f"not in merge list {n.merge.name}"}[bit.basis]
    if in_l1:
        return True, f"L1's bitmap has the bit set: L1 wants the exit {cite}", \
            f"{where}, L1 intercepts"
    vmcs01 = "vmcs01 intercepts, " if bit.vmcs01 else ""
    return False, f"L1's bitmap has the bit clear {cite}", f"{where}, {vmcs01}L1 passes it"


def explain_l2(n: Nested, index: int) -> tuple[L2Decision, L2Decision]:
    """(read, write) decisions for L2's access to ``index``; the write uses the MSR's reset
    value (0 where the model does not know it)."""
    row = lookup(index)
    value = (reset_value(row, n.l0.host.backend) if row is not None else None) or 0
    return (decide_l2(n, MsrAccess(index, R)), decide_l2(n, MsrAccess(index, W, value)))

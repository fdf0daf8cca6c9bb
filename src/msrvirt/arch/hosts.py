"""Host profiles: what KVM reports on a host, and the KVM module parameters in force.

A profile is what KVM reports (docs/formats.md, "Host profile"): ``features`` is its
KVM_GET_SUPPORTED_CPUID view (``kvm_cpu_cap_has``), including the bits KVM emulates or
synthesizes whatever the CPU has (x86 cpuid.c kvm_set_cpu_caps: EMULATED_F X2APIC,
TSC_DEADLINE_TIMER, HYPERVISOR, TSC_ADJUST, ARCH_CAPABILITIES; the Intel and AMD
speculation-control bits derived from each other), its MSR index lists when known, its
PMU capability, and the module parameters and build options that gate MSRs
(`KvmParams`, with KVM's defaults).  Built-in profiles are named; a profile can also
come from a JSON object (`HostProfile.from_obj`), for example one written from a live
fingerprint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from dataclasses import replace as dataclasses_replace
from enum import IntEnum, StrEnum
from typing import Any

from msrvirt.arch.cpuid import CPUID_BITS, HYPERVISOR_LEAVES, IMPLIES, Feature, feature
from msrvirt.arch.kvm import Backend, Vendor
from msrvirt.arch.msrs import index_of
from msrvirt.dataio import parse_int
from msrvirt.errors import UnknownNameError, UsageError

F = Feature

# KVM's paravirtual features, offered on every backend (KVM_GET_SUPPORTED_CPUID 0x40000001).
KVM_PV_FEATURES = frozenset({
    F.KVM_CLOCK, F.KVM_CLOCK2, F.KVM_ASYNC_PF, F.KVM_STEAL_TIME, F.KVM_PV_EOI,
    F.KVM_POLL_CONTROL, F.KVM_ASYNC_PF_INT,
})


class HwCap(StrEnum):
    """Host capabilities that are not guest CPUID bits (SVM: CPUID 0x8000000A; VMX controls)."""

    V_SPEC_CTRL = "v_spec_ctrl"  # SPEC_CTRL virtualized in the VMCB
    V_TSC_AUX = "v_tsc_aux"  # TSC_AUX virtualized for SEV-ES guests
    LBRV = "lbrv"  # the CPU has LBR virtualization (used when kvm_amd.lbrv is on)
    X2AVIC = "x2avic"  # SVM: x2AVIC (x2APIC MSRs virtualized by AVIC)
    VIRT_X2APIC = "virtualize_x2apic_mode"  # VMX: the "virtualize x2APIC mode" control
    CPUID_FAULT = "cpuid_fault"  # the CPU has CPUID faulting (MISC_FEATURES_ENABLES bit 0)


class PtMode(IntEnum):
    """kvm_intel.pt_mode (vmx/capabilities.h): where Intel PT runs."""

    SYSTEM = 0  # PT_MODE_SYSTEM (default): the host owns PT, guest RTIT_* accesses fail
    HOST_GUEST = 1  # PT_MODE_HOST_GUEST: PT is virtualized for the guest


@dataclass(frozen=True, slots=True, kw_only=True)
class KvmParams:
    """KVM module parameters and build options that gate MSRs; defaults are KVM's (v6.19).

    x86.c (ignore_msrs, report_ignored_msrs, enable_pmu, enable_apicv, enable_ipiv),
    vmx/vmx.c (nested, pt_mode, enable_apicv, enable_ipiv), svm/svm.c (nested, lbrv),
    svm/avic.c (avic: "auto"), and the Kconfig options CONFIG_KVM_HYPERV, CONFIG_KVM_XEN
    and CONFIG_KVM_SMM (default y), seen from userspace as KVM_CAP_HYPERV,
    KVM_CAP_XEN_HVM and KVM_CAP_X86_SMM.
    """

    ignore_msrs: bool = False  # kvm.ignore_msrs
    report_ignored_msrs: bool = True  # kvm.report_ignored_msrs (logging only)
    enable_pmu: bool = True  # kvm.enable_pmu
    enable_apicv: bool = True  # kvm_intel.enable_apicv / kvm_amd.avic
    enable_ipiv: bool = True  # kvm_intel.enable_ipiv
    nested: bool = True  # kvm_intel.nested / kvm_amd.nested
    pt_mode: PtMode = PtMode.SYSTEM  # kvm_intel.pt_mode
    lbrv: bool = True  # kvm_amd.lbrv
    hyperv: bool = True  # CONFIG_KVM_HYPERV
    xen: bool = True  # CONFIG_KVM_XEN
    smm: bool = True  # CONFIG_KVM_SMM

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def to_obj(self) -> dict[str, Any]:
        return {f.name: (int(v) if isinstance(v := getattr(self, f.name), PtMode) else v)
                for f in fields(self)}

    @classmethod
    def from_obj(cls, obj: object) -> KvmParams:
        """Read ``{"name": value}``; UsageError names the bad key or value."""
        if not isinstance(obj, Mapping):
            raise UsageError(f"host params must be an object, not {obj!r}")
        values: dict[str, Any] = {}
        for key, value in obj.items():
            if key not in cls.names():
                raise UsageError(f"host params must be among {list(cls.names())}, not {key!r}")
            values[key] = parse_param(key, value)
        return cls(**values)

    def with_text(self, text: str) -> KvmParams:
        """These params with ``name=value,...`` applied (the CLI's --kvm-param)."""
        values: dict[str, Any] = {}
        for item in filter(None, (p.strip() for p in text.split(","))):
            key, sep, raw = item.partition("=")
            key = key.strip().replace("-", "_")
            if key not in self.names():
                raise UsageError(f"KVM parameter must be one of {', '.join(self.names())},"
                                 f" not {key!r}")
            values[key] = parse_param(key, raw.strip() if sep else "1")
        return dataclasses_replace(self, **values)


def parse_param(key: str, value: object) -> bool | PtMode:
    """One module parameter's value from JSON or text: Y/N, 1/0, true/false (pt_mode: 0/1)."""
    if key == "pt_mode":
        try:
            return PtMode(int(str(value), 0))
        except ValueError:
            raise UsageError(f"KVM parameter pt_mode must be 0 or 1, not {value!r}") from None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "y", "yes", "true", "on"):
        return True
    if text in ("0", "n", "no", "false", "off"):
        return False
    raise UsageError(f"KVM parameter {key} must be true or false, not {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class PmuCaps:
    """A PMU: architectural version and general-purpose / fixed counter numbers.

    For a host, KVM's kvm_pmu_cap (pmu.c kvm_init_pmu_capability: version at most 2, all
    zero when enable_pmu is off); for a guest, what its CPUID asks for.
    """

    version: int = 0
    gp: int = 0
    fixed: int = 0

    def to_obj(self) -> dict[str, int]:
        return {"version": self.version, "gp": self.gp, "fixed": self.fixed}

    @classmethod
    def from_obj(cls, obj: object) -> PmuCaps:
        if not isinstance(obj, Mapping) or set(obj) - {"version", "gp", "fixed"}:
            raise UsageError(f"a PMU must be {{\"version\", \"gp\", \"fixed\"}}, not {obj!r}")
        out = {}
        for key in ("version", "gp", "fixed"):
            value = obj.get(key, 0)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 255:
                raise UsageError(f"PMU {key} must be an integer 0-255, not {value!r}")
            out[key] = value
        return cls(**out)


NO_PMU = PmuCaps()


# Module parameters (as /sys/module shows them) behind each KvmParams field.
MODULE_PARAMS: dict[str, tuple[str, ...]] = {
    "ignore_msrs": ("kvm.ignore_msrs",),
    "report_ignored_msrs": ("kvm.report_ignored_msrs",),
    "enable_pmu": ("kvm.enable_pmu",),
    "enable_apicv": ("kvm_intel.enable_apicv", "kvm_amd.avic"),
    "enable_ipiv": ("kvm_intel.enable_ipiv",),
    "nested": ("kvm_intel.nested", "kvm_amd.nested"),
    "pt_mode": ("kvm_intel.pt_mode",),
    "lbrv": ("kvm_amd.lbrv",),
}


def params_from(module_params: Mapping[str, str], build: Mapping[str, bool]) -> KvmParams:
    """KvmParams from the module parameters {"module.param": text} a host shows and the
    build options ``build`` {field: on} its capabilities tell; KVM's default for the rest."""
    values: dict[str, object] = dict(build)
    for name, sources in MODULE_PARAMS.items():
        for source in sources:
            if source in module_params:
                values[name] = parse_param(name, module_params[source])
                break
    return KvmParams(**values)  # type: ignore[arg-type]  # each value parsed for its field


def reported_pmu(leaves: Mapping[tuple[int, int], tuple[int, int, int, int]], vendor: Vendor,
                 params: KvmParams, features: frozenset[Feature]) -> PmuCaps:
    """kvm_pmu_cap as KVM reports it from the supported CPUID ``leaves`` {(function, index):
    registers}: Intel CPUID 0xA; AMD 0x80000022 or the fixed counts."""
    if not params.enable_pmu:
        return NO_PMU
    if vendor is Vendor.INTEL:
        regs = leaves.get((0xA, 0))
        if regs is None or not regs[0] & 0xFF:
            return NO_PMU
        eax, _, _, edx = regs
        return PmuCaps(version=eax & 0xFF, gp=(eax >> 8) & 0xFF, fixed=edx & 0x1F)
    if Feature.PERFMON_V2 in features:
        regs = leaves.get((0x80000022, 0))
        return PmuCaps(version=2, gp=(regs[1] & 0xF) if regs else 0)
    return PmuCaps(version=1, gp=6 if Feature.PERFCTR_CORE in features else 4)


def reported_phys_addr_bits(leaves: Mapping[tuple[int, int], tuple[int, int, int, int]]) -> int:
    """MAXPHYADDR from CPUID.0x80000008:EAX[7:0] as KVM reports it; 36 without that leaf or
    with a value outside 32-52."""
    phys = leaves.get((0x80000008, 0))
    return (phys[0] & 0xFF) if phys and 32 <= phys[0] & 0xFF <= 52 else 36


@dataclass(frozen=True, slots=True, kw_only=True)
class HostProfile:
    """A host: vendor, KVM backend, what KVM reports, and KVM's module parameters."""

    name: str
    description: str
    vendor: Vendor
    backend: Backend
    features: frozenset[Feature]
    hw_caps: frozenset[HwCap] = frozenset()
    # KVM_GET_MSR_INDEX_LIST when known (a live fingerprint); None = derive from the MSR table.
    msr_index_list: frozenset[int] | None = None
    params: KvmParams = field(default_factory=KvmParams)
    pmu: PmuCaps = NO_PMU  # kvm_pmu_cap (zero when params.enable_pmu is off)
    phys_addr_bits: int = 46  # CPUID.0x80000008:EAX[7:0] as KVM reports it (MAXPHYADDR)
    # Values KVM reports for feature MSRs (KVM_GET_MSRS on /dev/kvm), where known.
    feature_msrs: tuple[tuple[int, int], ...] = ()
    source: str = ""

    @property
    def ignore_msrs(self) -> bool:
        """kvm.ignore_msrs (unknown MSRs read 0 and drop writes)."""
        return self.params.ignore_msrs

    @property
    def virt_addr_bits(self) -> int:
        """Linear-address width KVM checks MSR values against (max_host_virt_addr_bits)."""
        return 57 if F.LA57 in self.features else 48

    def feature_msr(self, index: int) -> int | None:
        """The value KVM reports for feature MSR ``index``, if known."""
        for i, value in self.feature_msrs:
            if i == index:
                return value
        return None

    def to_obj(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "vendor": self.vendor.value,
            "backend": self.backend.value,
            "features": sorted(f.value for f in self.features),
            "params": self.params.to_obj(),
            "pmu": self.pmu.to_obj(),
            "phys_addr_bits": self.phys_addr_bits,
        }
        if self.hw_caps:
            obj["hw_caps"] = sorted(c.value for c in self.hw_caps)
        if self.msr_index_list is not None:
            obj["msr_index_list"] = [f"{i:#x}" for i in sorted(self.msr_index_list)]
        if self.feature_msrs:
            obj["feature_msrs"] = {f"{i:#x}": f"{v:#x}" for i, v in self.feature_msrs}
        return obj

    @classmethod
    def from_obj(cls, obj: object, *, default_name: str = "file") -> HostProfile:
        """Read the JSON form (docs/formats.md); raises UsageError naming the bad value."""
        if not isinstance(obj, Mapping):
            raise UsageError(f"a host profile must be an object, not {type(obj).__name__}")
        known = {"name", "description", "vendor", "backend", "features", "msr_index_list",
                 "ignore_msrs", "source", "hw_caps", "params", "pmu", "phys_addr_bits",
                 "feature_msrs"}
        extra = sorted(set(obj) - known)
        if extra:
            raise UsageError(f"host profile keys must be among {sorted(known)}, not {extra[0]!r}")
        try:
            vendor = Vendor(obj.get("vendor", ""))
        except ValueError:
            raise UsageError(
                f"host vendor must be intel or amd, not {obj.get('vendor')!r}") from None
        try:
            backend = Backend(obj.get("backend", ""))
        except ValueError:
            raise UsageError(
                f"host backend must be vmx, svm or pvm, not {obj.get('backend')!r}") from None
        feats = obj.get("features", [])
        if not isinstance(feats, list):
            raise UsageError(f"host features must be a list, not {feats!r}")
        msr_list = obj.get("msr_index_list")
        indices: frozenset[int] | None = None
        if msr_list is not None:
            if not isinstance(msr_list, list):
                raise UsageError(f"host msr_index_list must be a list, not {msr_list!r}")
            indices = frozenset(parse_int(x, "host msr_index_list entry", bits=32) for x in msr_list)
        caps = obj.get("hw_caps", [])
        if not isinstance(caps, list):
            raise UsageError(f"host hw_caps must be a list, not {caps!r}")
        try:
            hw_caps = frozenset(HwCap(str(c)) for c in caps)
        except ValueError as err:
            raise UsageError(f"host hw_caps must be among {[c.value for c in HwCap]}: {err}") from None
        params = KvmParams.from_obj(obj.get("params", {}))
        if "ignore_msrs" in obj:  # the older top-level form of params.ignore_msrs
            params = dataclasses_replace(
                params, ignore_msrs=bool(parse_param("ignore_msrs", obj["ignore_msrs"])))
        phys = obj.get("phys_addr_bits", 46)
        if not isinstance(phys, int) or isinstance(phys, bool) or not 32 <= phys <= 52:
            raise UsageError(f"host phys_addr_bits must be an integer 32-52, not {phys!r}")
        values = obj.get("feature_msrs", {})
        if not isinstance(values, Mapping):
            raise UsageError(f"host feature_msrs must be an object, not {values!r}")
        feature_msrs = tuple(sorted((parse_int(k, "host feature_msrs index", bits=32),
                                     parse_int(v, "host feature_msrs value"))
                                    for k, v in values.items()))
        return cls(
            name=str(obj.get("name", default_name)),
            description=str(obj.get("description", "")),
            vendor=vendor,
            backend=backend,
            features=with_implied(feature(str(f)) for f in feats),
            hw_caps=hw_caps,
            msr_index_list=indices,
            params=params,
            pmu=PmuCaps.from_obj(obj.get("pmu", {})),
            phys_addr_bits=phys,
            feature_msrs=feature_msrs,
            source=str(obj.get("source", "")),
        )


def with_implied(features: Iterable[Feature]) -> frozenset[Feature]:
    """Close a feature set under IMPLIES (FRED implies LKGS)."""
    out = set(features)
    for feat in list(out):
        out |= IMPLIES.get(feat, frozenset())
    return frozenset(out)


# CPUID.(base):EBX,ECX,EDX of KVM's paravirtual leaves: "KVMKVMKVM\0\0\0" (kvm_para.h).
KVM_SIGNATURE = (0x4B4D564B, 0x564B4D56, 0x4D)


def kvm_cpuid_base(entries: Mapping[tuple[int, int], tuple[int, int, int, int]]) -> int | None:
    """The leaf with KVM's signature (cpuid.c kvm_get_hypervisor_cpuid scans 0x40000000 up
    to 0x4000ff00 in steps of 0x100: another hypervisor's leaves, e.g. Hyper-V's, may come
    first), or None."""
    for base in range(HYPERVISOR_LEAVES.start, HYPERVISOR_LEAVES.stop, 0x100):
        regs = entries.get((base, 0))
        if regs is not None and regs[1:] == KVM_SIGNATURE:
            return base
    return None


def cpuid_leaf(leaf: int, kvm_base: int | None) -> int | None:
    """Where a feature's leaf really is: KVM's PV leaves (written from 0x40000000) move with
    KVM's base; None when the CPUID has no KVM leaves."""
    if leaf in HYPERVISOR_LEAVES:
        return None if kvm_base is None else kvm_base + (leaf - HYPERVISOR_LEAVES.start)
    return leaf


def features_from_cpuid(
    entries: Mapping[tuple[int, int], tuple[int, int, int, int]],
) -> frozenset[Feature]:
    """The features set in CPUID entries {(leaf, subleaf): (eax, ebx, ecx, edx)}."""
    out = set()
    base = kvm_cpuid_base(entries)
    for feat, bit in CPUID_BITS.items():
        leaf = cpuid_leaf(bit.leaf, base)
        if leaf is None:
            continue
        regs = entries.get((leaf, bit.subleaf))
        if regs is None:
            continue
        value = regs[("eax", "ebx", "ecx", "edx").index(bit.reg.value)]
        if value >> bit.bit & 1:
            out.add(feat)
    return frozenset(out)


# What every KVM_GET_SUPPORTED_CPUID reports whatever the CPU has: the EMULATED_F bits of
# cpuid.c kvm_set_cpu_caps (X2APIC, TSC_DEADLINE_TIMER, HYPERVISOR, TSC_ADJUST,
# ARCH_CAPABILITIES) and the KVM paravirtual leaf (__do_cpuid_func KVM_CPUID_FEATURES).
KVM_EMULATED = frozenset({F.X2APIC, F.TSC_DEADLINE, F.HYPERVISOR, F.TSC_ADJUST,
                          F.ARCH_CAPABILITIES}) | KVM_PV_FEATURES | {F.KVM_ASYNC_PF_VMEXIT}
_COMMON = frozenset({F.LM, F.NX, F.XSAVE, F.XSAVES, F.SSE3, F.RDTSCP, F.RDPID,
                     F.APERFMPERF}) | KVM_EMULATED
# Intel: SPEC_CTRL/STIBP/SSBD, and the AMD bits KVM synthesizes from them (kvm_set_cpu_caps:
# AMD_IBPB from IBPB, AMD_IBRS from IBRS, AMD_STIBP from STIBP, AMD_SSBD from SPEC_CTRL_SSBD);
# VMX because kvm_intel.nested defaults on (vmx_set_cpu_caps).
_INTEL = _COMMON | {F.SPEC_CTRL, F.STIBP, F.SPEC_CTRL_SSBD, F.FLUSH_L1D, F.IBPB, F.AMD_IBRS,
                    F.AMD_STIBP, F.AMD_SSBD, F.WAITPKG, F.PDCM, F.DS, F.DTES64, F.XFD, F.LA57,
                    F.INTEL_PT, F.BUS_LOCK_DETECT, F.VMX}
_INTEL_PMU = PmuCaps(version=2, gp=8, fixed=3)  # KVM_MAX_NR_INTEL_GP_COUNTERS, 3 fixed
_INTEL_CAPS = frozenset({HwCap.VIRT_X2APIC, HwCap.CPUID_FAULT})
# vmx.c vmx_get_perf_capabilities: FW_WRITES always; no LBR format on CPUs with
# architectural LBRs (these all have them); PEBS left out (vmx_pebs_supported not modelled).
_INTEL_FEATURE_MSRS = ((index_of("IA32_PERF_CAPABILITIES"), 1 << 13),)

HOSTS: dict[str, HostProfile] = {
    p.name: p for p in (
        HostProfile(
            name="intel-fred",
            description="Intel with FRED, CET shadow stack and IBT (VMX)",
            vendor=Vendor.INTEL, backend=Backend.VMX,
            features=with_implied(_INTEL | {F.FRED, F.WRMSRNS, F.SHSTK, F.IBT}),
            hw_caps=_INTEL_CAPS, pmu=_INTEL_PMU, phys_addr_bits=46,
            feature_msrs=_INTEL_FEATURE_MSRS,
            source="FRED CPUs (Panther Lake / Diamond Rapids class); fred-arch-facts.md 1;"
            " synthesized bits per cpuid.c kvm_set_cpu_caps",
        ),
        HostProfile(
            name="intel-fred-nocet",
            description="Intel with FRED but no CET (VMX)",
            vendor=Vendor.INTEL, backend=Backend.VMX,
            features=with_implied(_INTEL | {F.FRED, F.WRMSRNS}),
            hw_caps=_INTEL_CAPS, pmu=_INTEL_PMU, phys_addr_bits=46,
            feature_msrs=_INTEL_FEATURE_MSRS,
            source="the seed's 'processors that support FRED but not CET'",
        ),
        HostProfile(
            name="intel-spr",
            description="Intel Sapphire Rapids: CET shadow stack and IBT, no FRED (VMX)",
            vendor=Vendor.INTEL, backend=Backend.VMX,
            features=frozenset(_INTEL | {F.SHSTK, F.IBT, F.RTM, F.HLE}),
            hw_caps=_INTEL_CAPS, pmu=_INTEL_PMU, phys_addr_bits=46,
            feature_msrs=_INTEL_FEATURE_MSRS,
            source="Sapphire Rapids CPUID (CET_SS, CET_IBT, AMX/XFD, LA57, TSX; no FRED/LKGS)",
        ),
        HostProfile(
            name="amd-zen5",
            description="AMD Zen 5: shadow stack, no IBT, no FRED (SVM)",
            vendor=Vendor.AMD, backend=Backend.SVM,
            # The Intel speculation bits are synthesized from AMD's (kvm_set_cpu_caps);
            # SVM and TSCRATEMSR come from svm_set_cpu_caps (nested, tsc_scaling default on).
            features=frozenset(_COMMON | {F.SHSTK, F.LA57, F.IBPB, F.AMD_IBRS, F.AMD_STIBP,
                                          F.AMD_SSBD, F.SPEC_CTRL, F.STIBP, F.SPEC_CTRL_SSBD,
                                          F.SVM, F.OSVW, F.PERFCTR_CORE, F.PERFMON_V2,
                                          F.FXSR_OPT, F.TSCRATEMSR, F.LFENCE_RDTSC,
                                          F.AUTOIBRS, F.SBPB}),
            hw_caps=frozenset({HwCap.V_SPEC_CTRL, HwCap.V_TSC_AUX, HwCap.LBRV, HwCap.X2AVIC}),
            pmu=PmuCaps(version=2, gp=6, fixed=0), phys_addr_bits=52,
            source="Zen 5 CPUID (shadow stack since Zen 3, LA57 since Zen 4; FRED from Zen 6);"
            " KVM_MAX_NR_AMD_GP_COUNTERS = 6",
        ),
        HostProfile(
            name="pvm",
            description="KVM on the PVM software backend: every MSR access exits",
            vendor=Vendor.AMD, backend=Backend.PVM,
            # KVM_GET_SUPPORTED_CPUID also lists ARCH_CAPABILITIES, but PVM clears it from the
            # guest CPUID on KVM_SET_CPUID2 (docs/live.md), so no guest has it.
            features=frozenset({F.LM, F.NX, F.X2APIC, F.TSC_ADJUST, F.TSC_DEADLINE,
                                F.HYPERVISOR, F.OSVW, F.FXSR_OPT, F.LFENCE_RDTSC,
                                F.KVM_ASYNC_PF_VMEXIT}) | KVM_PV_FEATURES,
            params=KvmParams(enable_pmu=False, hyperv=False, xen=False),
            phys_addr_bits=48,
            source="KVM_GET_SUPPORTED_CPUID, module parameters and KVM_CHECK_EXTENSION on"
            " kernel 6.18.44 with kvm_pvm, 2026-11; kvm-svm-common-pvm-facts.md part 3",
        ),
    )
}


def host(name: str) -> HostProfile:
    """The built-in host profile called ``name``."""
    try:
        return HOSTS[name]
    except KeyError:
        raise UnknownNameError("host", name, "one of " + ", ".join(HOSTS)) from None

"""Host profiles: what the CPU has and which KVM backend runs guests.

A profile's ``features`` are what KVM can offer a guest (its KVM_GET_SUPPORTED_CPUID
view, ``kvm_cpu_cap_has``).  Built-in profiles are named; a profile can also come
from a JSON object (`HostProfile.from_obj`), for example one written from a live
fingerprint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from msrvirt.arch.cpuid import CPUID_BITS, IMPLIES, Feature, feature
from msrvirt.arch.kvm import Backend, Vendor
from msrvirt.dataio import parse_int
from msrvirt.errors import UnknownNameError, UsageError

F = Feature

# KVM's paravirtual features, offered on every backend (KVM_GET_SUPPORTED_CPUID 0x40000001).
KVM_PV_FEATURES = frozenset({
    F.KVM_CLOCK, F.KVM_CLOCK2, F.KVM_ASYNC_PF, F.KVM_STEAL_TIME, F.KVM_PV_EOI,
    F.KVM_POLL_CONTROL, F.KVM_ASYNC_PF_INT,
})


class HwCap(StrEnum):
    """Host virtualization capabilities that are not guest CPUID bits (SVM: CPUID 0x8000000A)."""

    V_SPEC_CTRL = "v_spec_ctrl"  # SPEC_CTRL virtualized in the VMCB
    V_TSC_AUX = "v_tsc_aux"  # TSC_AUX virtualized for SEV-ES guests
    LBRV = "lbrv"  # LBR virtualization (kvm_amd.lbrv module parameter on)


@dataclass(frozen=True, slots=True, kw_only=True)
class HostProfile:
    """A host: vendor, KVM backend, the features KVM supports, and KVM module settings."""

    name: str
    description: str
    vendor: Vendor
    backend: Backend
    features: frozenset[Feature]
    hw_caps: frozenset[HwCap] = frozenset()
    # KVM_GET_MSR_INDEX_LIST when known (a live fingerprint); None = derive from the MSR table.
    msr_index_list: frozenset[int] | None = None
    ignore_msrs: bool = False  # kvm.ignore_msrs module parameter
    source: str = ""

    @property
    def virt_addr_bits(self) -> int:
        """Linear-address width KVM checks MSR values against (max_host_virt_addr_bits)."""
        return 57 if F.LA57 in self.features else 48

    def to_obj(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "vendor": self.vendor.value,
            "backend": self.backend.value,
            "features": sorted(f.value for f in self.features),
        }
        if self.hw_caps:
            obj["hw_caps"] = sorted(c.value for c in self.hw_caps)
        if self.msr_index_list is not None:
            obj["msr_index_list"] = [f"{i:#x}" for i in sorted(self.msr_index_list)]
        if self.ignore_msrs:
            obj["ignore_msrs"] = True
        return obj

    @classmethod
    def from_obj(cls, obj: object, *, default_name: str = "file") -> HostProfile:
        """Read the JSON form (docs/formats.md); raises UsageError naming the bad value."""
        if not isinstance(obj, Mapping):
            raise UsageError(f"a host profile must be an object, not {type(obj).__name__}")
        known = {"name", "description", "vendor", "backend", "features", "msr_index_list",
                 "ignore_msrs", "source", "hw_caps"}
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
        return cls(
            name=str(obj.get("name", default_name)),
            description=str(obj.get("description", "")),
            vendor=vendor,
            backend=backend,
            features=with_implied(feature(str(f)) for f in feats),
            hw_caps=hw_caps,
            msr_index_list=indices,
            ignore_msrs=bool(obj.get("ignore_msrs", False)),
            source=str(obj.get("source", "")),
        )


def with_implied(features: Iterable[Feature]) -> frozenset[Feature]:
    """Close a feature set under IMPLIES (FRED implies LKGS)."""
    out = set(features)
    for feat in list(out):
        out |= IMPLIES.get(feat, frozenset())
    return frozenset(out)


def features_from_cpuid(
    entries: Mapping[tuple[int, int], tuple[int, int, int, int]],
) -> frozenset[Feature]:
    """The features set in CPUID entries {(leaf, subleaf): (eax, ebx, ecx, edx)}."""
    out = set()
    for feat, bit in CPUID_BITS.items():
        regs = entries.get((bit.leaf, bit.subleaf))
        if regs is None:
            continue
        value = regs[("eax", "ebx", "ecx", "edx").index(bit.reg.value)]
        if value >> bit.bit & 1:
            out.add(feat)
    return frozenset(out)


_COMMON = frozenset({F.LM, F.NX, F.XSAVE, F.XSAVES, F.X2APIC, F.SSE3, F.RDTSCP, F.RDPID,
                     F.APERFMPERF}) | KVM_PV_FEATURES
_INTEL = _COMMON | {F.SPEC_CTRL, F.STIBP, F.SPEC_CTRL_SSBD, F.FLUSH_L1D, F.ARCH_CAPABILITIES,
                    F.TSC_ADJUST, F.WAITPKG, F.PDCM, F.XFD, F.LA57, F.INTEL_PT}

HOSTS: dict[str, HostProfile] = {
    p.name: p for p in (
        HostProfile(
            name="intel-fred",
            description="Intel with FRED, CET shadow stack and IBT (VMX)",
            vendor=Vendor.INTEL, backend=Backend.VMX,
            features=with_implied(_INTEL | {F.FRED, F.WRMSRNS, F.SHSTK, F.IBT}),
            source="FRED CPUs (Panther Lake / Diamond Rapids class); fred-arch-facts.md 1",
        ),
        HostProfile(
            name="intel-fred-nocet",
            description="Intel with FRED but no CET (VMX)",
            vendor=Vendor.INTEL, backend=Backend.VMX,
            features=with_implied(_INTEL | {F.FRED, F.WRMSRNS}),
            source="the seed's 'processors that support FRED but not CET'",
        ),
        HostProfile(
            name="intel-spr",
            description="Intel Sapphire Rapids: CET shadow stack and IBT, no FRED (VMX)",
            vendor=Vendor.INTEL, backend=Backend.VMX,
            features=frozenset(_INTEL | {F.SHSTK, F.IBT}),
            source="Sapphire Rapids CPUID (CET_SS, CET_IBT, AMX/XFD, LA57; no FRED/LKGS)",
        ),
        HostProfile(
            name="amd-zen5",
            description="AMD Zen 5: shadow stack, no IBT, no FRED (SVM)",
            vendor=Vendor.AMD, backend=Backend.SVM,
            features=frozenset(_COMMON | {F.SHSTK, F.LA57, F.IBPB, F.AMD_IBRS, F.AMD_STIBP,
                                          F.AMD_SSBD, F.VIRT_SSBD}),
            hw_caps=frozenset(HwCap),
            source="Zen 5 CPUID (shadow stack since Zen 3, LA57 since Zen 4; FRED from Zen 6)",
        ),
        HostProfile(
            name="pvm",
            description="KVM on the PVM software backend: every MSR access exits",
            vendor=Vendor.AMD, backend=Backend.PVM,
            # KVM_GET_SUPPORTED_CPUID also lists ARCH_CAPABILITIES, but PVM clears it from the
            # guest CPUID on KVM_SET_CPUID2 (docs/live.md), so no guest has it.
            features=frozenset({F.LM, F.NX, F.X2APIC, F.TSC_ADJUST})
            | KVM_PV_FEATURES,
            source="KVM_GET_SUPPORTED_CPUID on kernel 6.18.44 with kvm_pvm, 2026-11-25;"
            " kvm-svm-common-pvm-facts.md part 3",
        ),
    )
}


def host(name: str) -> HostProfile:
    """The built-in host profile called ``name``."""
    try:
        return HOSTS[name]
    except KeyError:
        raise UnknownNameError("host", name, "one of " + ", ".join(HOSTS)) from None

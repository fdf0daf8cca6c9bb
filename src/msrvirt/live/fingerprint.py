"""The host fingerprint: what this machine's KVM is, as JSON-able data, and its HostProfile.

Live checking goes probe -> fingerprint -> pure compare (DESIGN.md; Firecracker's
cpu-template-helper dumps and compares the same way).  The fingerprint holds the
CPU model (/proc/cpuinfo), the kernel release (uname), the KVM API version, the
backend (from the loaded vendor module: kvm_intel = vmx, kvm_amd = svm,
kvm_pvm = pvm), KVM_GET_SUPPORTED_CPUID, KVM_GET_MSR_INDEX_LIST,
KVM_GET_MSR_FEATURE_INDEX_LIST and the feature MSRs' values.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from msrvirt.arch.hosts import (
    HostProfile,
    KvmParams,
    features_from_cpuid,
    params_from,
    reported_phys_addr_bits,
    reported_pmu,
    with_implied,
)
from msrvirt.arch.kvm import Backend, Vendor
from msrvirt.dataio import parse_int
from msrvirt.errors import UsageError
from msrvirt.live.kvm import CpuidEntry, Kvm, MsrEntry
from msrvirt.live.uapi import Cap

PROC_CPUINFO = "/proc/cpuinfo"
SYS_MODULE = "/sys/module"

# The module whose presence says which backend /dev/kvm runs guests with.
BACKEND_MODULES: dict[str, Backend] = {
    "kvm_intel": Backend.VMX,
    "kvm_amd": Backend.SVM,
    "kvm_pvm": Backend.PVM,
}

# CPUID.0:EBX,EDX,ECX vendor strings (SDM Vol. 2A CPUID; APM Vol. 3 E.3.1).
VENDORS: dict[str, Vendor] = {
    "GenuineIntel": Vendor.INTEL,
    "AuthenticAMD": Vendor.AMD,
    "HygonGenuine": Vendor.AMD,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Fingerprint:
    """This host's KVM, as observed; `to_obj` / `from_obj` give its JSON form."""

    cpu_model: str
    kernel_release: str
    kvm_api_version: int
    kvm_modules: tuple[str, ...]  # the vendor modules found loaded
    backend: Backend | None  # None unless exactly one vendor module is loaded
    # Readable parameters of kvm and the vendor modules ("kvm.ignore_msrs" -> "N"), sorted.
    module_params: tuple[tuple[str, str], ...]
    cpuid: tuple[CpuidEntry, ...]
    msr_index_list: tuple[int, ...]
    feature_msr_index_list: tuple[int, ...]
    feature_msrs: tuple[MsrEntry, ...]
    # KVM_CHECK_EXTENSION of the capabilities that gate MSRs ("hyperv" -> 0), sorted.
    capabilities: tuple[tuple[str, int], ...] = ()

    @property
    def cpuid_vendor(self) -> str:
        """The CPUID leaf 0 vendor string KVM reports (EBX, EDX, ECX)."""
        for entry in self.cpuid:
            if entry.key == (0, 0):
                return struct.pack("<III", entry.ebx, entry.edx, entry.ecx).decode("latin-1")
        return ""

    def to_obj(self) -> dict[str, Any]:
        return {
            "cpu_model": self.cpu_model,
            "kernel_release": self.kernel_release,
            "kvm_api_version": self.kvm_api_version,
            "kvm_modules": list(self.kvm_modules),
            "backend": None if self.backend is None else self.backend.value,
            "module_params": dict(self.module_params),
            "cpuid": [
                {"function": f"{e.function:#x}", "index": e.index, "flags": e.flags,
                 "eax": f"{e.eax:#010x}", "ebx": f"{e.ebx:#010x}", "ecx": f"{e.ecx:#010x}",
                 "edx": f"{e.edx:#010x}"}
                for e in self.cpuid
            ],
            "msr_index_list": [f"{i:#x}" for i in self.msr_index_list],
            "feature_msr_index_list": [f"{i:#x}" for i in self.feature_msr_index_list],
            "feature_msrs": {f"{e.index:#x}": f"{e.data:#x}" for e in self.feature_msrs},
            "capabilities": dict(self.capabilities),
        }

    @classmethod
    def from_obj(cls, obj: object) -> Fingerprint:
        """Read the JSON form back; raises UsageError naming the bad value."""
        if not isinstance(obj, Mapping):
            raise UsageError(f"a fingerprint must be an object, not {type(obj).__name__}")
        need = ("cpu_model", "kernel_release", "kvm_api_version", "kvm_modules", "backend",
                "module_params", "cpuid", "msr_index_list", "feature_msr_index_list",
                "feature_msrs")
        missing = [k for k in need if k not in obj]
        if missing:
            raise UsageError(f"a fingerprint must have {missing[0]!r}")
        extra = sorted(set(obj) - set(need) - {"capabilities"})
        if extra:
            raise UsageError(f"fingerprint keys must be among {list(need)}, not {extra[0]!r}")
        backend = obj["backend"]
        # A list, not a set: any JSON value compares, where hashing a list or dict would fail.
        if backend is not None and backend not in [b.value for b in Backend]:
            raise UsageError(f"fingerprint backend must be vmx, svm, pvm or null, not {backend!r}")
        feature_msrs = obj["feature_msrs"]
        params = obj["module_params"]
        caps = obj.get("capabilities", {})
        for key, value in (("feature_msrs", feature_msrs), ("module_params", params),
                           ("capabilities", caps)):
            if not isinstance(value, Mapping):
                raise UsageError(f"fingerprint {key} must be an object, not {value!r}")
        return cls(
            cpu_model=str(obj["cpu_model"]),
            kernel_release=str(obj["kernel_release"]),
            kvm_api_version=parse_int(obj["kvm_api_version"], "kvm_api_version", bits=32),
            kvm_modules=tuple(str(m) for m in _list(obj["kvm_modules"], "kvm_modules")),
            backend=None if backend is None else Backend(backend),
            module_params=tuple(sorted((str(k), str(v)) for k, v in params.items())),
            cpuid=tuple(_cpuid_entry(e) for e in _list(obj["cpuid"], "cpuid")),
            msr_index_list=tuple(
                parse_int(i, "msr_index_list", bits=32)
                for i in _list(obj["msr_index_list"], "msr_index_list")),
            feature_msr_index_list=tuple(
                parse_int(i, "feature_msr_index_list", bits=32)
                for i in _list(obj["feature_msr_index_list"], "feature_msr_index_list")),
            feature_msrs=tuple(
                MsrEntry(index=parse_int(k, "feature_msrs", bits=32), data=parse_int(v, "feature_msrs"))
                for k, v in feature_msrs.items()),
            capabilities=tuple(sorted((str(k), parse_int(v, f"capabilities {k}"))
                                      for k, v in caps.items())),
        )


def _list(value: object, what: str) -> list[object]:
    if not isinstance(value, list):
        raise UsageError(f"fingerprint {what} must be a list, not {value!r}")
    return value


def _cpuid_entry(obj: object) -> CpuidEntry:
    if not isinstance(obj, Mapping):
        raise UsageError(f"a fingerprint cpuid entry must be an object, not {obj!r}")
    fields = ("function", "index", "flags", "eax", "ebx", "ecx", "edx")
    if set(obj) != set(fields):
        raise UsageError(f"a fingerprint cpuid entry must have exactly {list(fields)}, not"
                         f" {sorted(obj)}")
    f, i, fl, a, b, c, d = (parse_int(obj[k], f"cpuid {k}", bits=32) for k in fields)
    return CpuidEntry(function=f, index=i, flags=fl, eax=a, ebx=b, ecx=c, edx=d)


def cpu_model(path: str = PROC_CPUINFO) -> str:
    """The first "model name" in /proc/cpuinfo ("" when there is none)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return ""


def kvm_modules(sys_module: str = SYS_MODULE) -> tuple[str, ...]:
    """The KVM vendor modules loaded (present under /sys/module), sorted."""
    return tuple(sorted(m for m in BACKEND_MODULES if os.path.isdir(os.path.join(sys_module, m))))


def module_params(modules: tuple[str, ...], sys_module: str = SYS_MODULE) -> tuple[
        tuple[str, str], ...]:
    """The readable parameters of ``modules``, as ("module.param", value) pairs, sorted."""
    out = []
    for module in modules:
        folder = os.path.join(sys_module, module, "parameters")
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            try:
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    out.append((f"{module}.{name}", f.read().strip()))
            except (OSError, UnicodeDecodeError):
                continue  # write-only or binary parameters say nothing we use
    return tuple(sorted(out))


def take(
    kvm: Kvm, *, sys_module: str = SYS_MODULE, proc_cpuinfo: str = PROC_CPUINFO,
) -> Fingerprint:
    """Fingerprint the host behind ``kvm``."""
    modules = kvm_modules(sys_module)
    features = kvm.msr_feature_index_list() if kvm.check_extension(Cap.GET_MSR_FEATURES) else ()
    caps = tuple(sorted((name, kvm.check_extension(cap))
                        for name, (cap, _) in CAPABILITIES.items()))
    values = kvm.get_feature_msrs(features).entries if features else ()
    return Fingerprint(
        cpu_model=cpu_model(proc_cpuinfo),
        kernel_release=os.uname().release,
        kvm_api_version=kvm.api_version(),
        kvm_modules=modules,
        backend=BACKEND_MODULES[modules[0]] if len(modules) == 1 else None,
        module_params=module_params(("kvm", *modules), sys_module),
        cpuid=kvm.supported_cpuid(),
        msr_index_list=kvm.msr_index_list(),
        feature_msr_index_list=features,
        feature_msrs=values,
        capabilities=caps,
    )


# The capabilities that stand for KVM build options gating MSRs: the fingerprint's name of
# each -> the capability, and the KvmParams field it sets.
CAPABILITIES: dict[str, tuple[Cap, str]] = {"hyperv": (Cap.HYPERV, "hyperv"),
                                            "xen_hvm": (Cap.XEN_HVM, "xen"),
                                            "x86_smm": (Cap.X86_SMM, "smm")}
def kvm_params(fp: Fingerprint) -> KvmParams:
    """The module parameters and build options in force (KVM's default where not readable)."""
    caps = dict(fp.capabilities)
    return params_from(dict(fp.module_params),
                       {field: bool(caps[name]) for name, (_, field) in CAPABILITIES.items()
                        if name in caps})


def host_profile(fp: Fingerprint, *, name: str = "live") -> HostProfile:
    """The HostProfile the model should use for this host (features from its supported CPUID).

    Raises UsageError when the backend or the vendor cannot be told from the fingerprint.
    """
    if fp.backend is None:
        raise UsageError(
            "the KVM backend must be one loaded vendor module (kvm_intel, kvm_amd or kvm_pvm),"
            f" not {list(fp.kvm_modules) or 'none'}"
        )
    vendor = VENDORS.get(fp.cpuid_vendor)
    if vendor is None:
        raise UsageError(
            f"the CPUID vendor must be one of {sorted(VENDORS)}, not {fp.cpuid_vendor!r}")
    leaves = {e.key: e.regs for e in fp.cpuid}
    features = with_implied(features_from_cpuid(leaves))
    params = kvm_params(fp)
    return HostProfile(
        name=name,
        description=f"{fp.cpu_model or 'unknown CPU'}, Linux {fp.kernel_release},"
        f" KVM on {fp.backend.value}",
        vendor=vendor,
        backend=fp.backend,
        features=features,
        msr_index_list=frozenset(fp.msr_index_list),
        params=params,
        pmu=reported_pmu(leaves, vendor, params, features),
        phys_addr_bits=reported_phys_addr_bits(leaves),
        feature_msrs=tuple(sorted((e.index, e.data) for e in fp.feature_msrs)),
        source=f"live fingerprint: KVM_GET_SUPPORTED_CPUID and KVM_GET_MSR_INDEX_LIST on Linux"
        f" {fp.kernel_release}",
    )

"""A scenario: everything KVM's MSR decisions depend on, as one frozen value."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from msrvirt.arch.cpuid import Feature
from msrvirt.arch.hosts import NO_PMU, HostProfile, PmuCaps
from msrvirt.arch.kvm import Backend, ExitReason, Vendor
from msrvirt.errors import UsageError
from msrvirt.policy.filter import NO_FILTER, MsrFilter

if TYPE_CHECKING:
    from msrvirt.policy.policies import Policy


KVM_MAX_MCE_BANKS = 32  # x86.c kvm_arch_vcpu_create: mcg_cap = KVM_MAX_MCE_BANKS


@dataclass(frozen=True, slots=True, kw_only=True)
class Runtime:
    """VM and vCPU state the intercepts and the emulation depend on (default: a fresh vCPU
    of a VM with an in-kernel local APIC, before userspace changed anything).

    Names follow the KVM state they stand for (kvm-msr-facts.md section 3, rules 4-8;
    kvm-svm-common-pvm-facts.md 1b; docs/design.md, "The model of one access").
    """

    cstates_in_guest: bool = False  # rule 4: kvm_cstate_in_guest (KVM_CAP_X86_DISABLE_EXITS)
    aperfmperf_in_guest: bool = False  # rule 5: kvm_aperfmperf_in_guest
    pt_tracing: bool = False  # rule 6: guest RTIT_CTL.TraceEn set (needs kvm_intel.pt_mode=1)
    xfd_no_write_intercept: bool = False  # rule 7: after the guest's first non-zero XFD write
    spec_ctrl_nonzero: bool = False  # rule 8: after the guest's first non-zero SPEC_CTRL write
    lapic_in_kernel: bool = True  # KVM_CREATE_IRQCHIP (or split): lapic_in_kernel()
    x2apic_mode: bool = False  # the in-kernel local APIC is in x2APIC mode
    apicv_inhibited: bool = False  # kvm_vcpu_apicv_active() false although enable_apicv is on
    lbrv_active: bool = False  # SVM: LBR virtualization enabled in the current VMCB
    sev_es: bool = False  # SVM: the guest is SEV-ES
    enforce_pv_cpuid: bool = False  # KVM_CAP_ENFORCE_PV_FEATURE_CPUID enabled
    hyperv: bool = False  # guest CPUID 0x40000001 is "Hv#1" (vcpu->arch.hyperv_enabled)
    hyperv_synic: bool = False  # KVM_CAP_HYPERV_SYNIC(2) enabled (SynIC active)
    hyperv_enforce_cpuid: bool = False  # KVM_CAP_HYPERV_ENFORCE_CPUID enabled
    platform_info_hidden: bool = False  # KVM_CAP_MSR_PLATFORM_INFO disabled (args[0] = 0)
    vcpu_has_run: bool = False  # KVM_RUN happened: feature MSRs are immutable to userspace
    mcstatuswren: bool = False  # K7_HWCR bit 18 (McStatusWrEn) set by the guest
    mcg_cap: int = KVM_MAX_MCE_BANKS  # IA32_MCG_CAP: KVM_X86_SETUP_MCE, else 32 banks
    feat_ctl: int = 0  # the value of IA32_FEAT_CTL (LOCKED, LMCE_ENABLED...)
    pmu_version: int | None = None  # guest CPUID 0xA version (None: as KVM reports)
    pmu_gp: int | None = None  # guest CPUID GP counters (0xA or 0x80000022.EBX)
    pmu_fixed: int | None = None  # guest CPUID 0xA fixed counters
    xen_hypercall_msr: int = 0  # KVM_XEN_HVM_CONFIG .msr (0: no Xen hypercall page MSR)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def parse(cls, text: str) -> Runtime:
        """Parse ``name,name=0,mcg_cap=0x10a,...`` (a bare name means true)."""
        values: dict[str, Any] = {}
        defaults = {f.name: f.default for f in fields(cls)}
        for item in filter(None, (p.strip() for p in text.split(","))):
            key, sep, raw = item.partition("=")
            key = key.strip().replace("-", "_")
            if key not in defaults:
                known = ", ".join(cls.names())
                raise UsageError(f"runtime state must be one of {known}, not {key!r}")
            raw = raw.strip()
            if isinstance(defaults[key], bool):
                if raw.lower() in ("", "1", "true", "yes", "on"):
                    values[key] = True
                elif raw.lower() in ("0", "false", "no", "off"):
                    values[key] = False
                else:
                    raise UsageError(f"runtime {key} must be true or false, not {raw!r}")
                continue
            try:
                number = int(raw, 0) if sep else None
            except ValueError:
                number = None
            if number is None or not 0 <= number <= 0xFFFF_FFFF:
                raise UsageError(f"runtime {key} must be an integer such as 0x10, not {raw!r}")
            values[key] = number
        out = cls(**values)
        out.check()
        return out

    def check(self) -> None:
        """Raise UsageError for values KVM itself would refuse."""
        banks = self.mcg_cap & 0xFF
        if not 1 <= banks <= KVM_MAX_MCE_BANKS:
            # kvm_vcpu_ioctl_x86_setup_mce: -EINVAL unless 1 <= bank count <= 32.
            raise UsageError(f"runtime mcg_cap must have 1-{KVM_MAX_MCE_BANKS} banks in bits"
                             f" 7:0, not {self.mcg_cap:#x}")
        for name in ("pmu_version", "pmu_gp", "pmu_fixed"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 255:
                raise UsageError(f"runtime {name} must be 0-255, not {value}")

    def set_names(self) -> list[str]:
        defaults = {f.name: f.default for f in fields(self)}
        out = []
        for name, default in defaults.items():
            value = getattr(self, name)
            if value == default:
                continue
            if isinstance(value, bool):
                out.append(name if value else f"{name}=0")
            else:
                out.append(f"{name}={value:#x}")
        return out


def guest_pmu(host: HostProfile, guest_caps: frozenset[Feature], runtime: Runtime) -> PmuCaps:
    """The vCPU's PMU after kvm_pmu_refresh (pmu.c; vmx/pmu_intel.c intel_pmu_refresh,
    svm/pmu.c amd_pmu_refresh): nothing without kvm.enable_pmu; counters capped by KVM's."""
    cap = host.pmu
    if not host.params.enable_pmu or not cap.version:
        return NO_PMU
    if host.vendor is Vendor.AMD:
        if Feature.PERFMON_V2 in guest_caps:
            version, gp = 2, cap.gp if runtime.pmu_gp is None else runtime.pmu_gp
        else:
            version, gp = 1, 6 if Feature.PERFCTR_CORE in guest_caps else 4
        return PmuCaps(version=version, gp=min(gp, cap.gp), fixed=0)
    version = cap.version if runtime.pmu_version is None else runtime.pmu_version
    if not version:
        return NO_PMU
    gp = min(cap.gp if runtime.pmu_gp is None else runtime.pmu_gp, cap.gp)
    fixed = min(cap.fixed if runtime.pmu_fixed is None else runtime.pmu_fixed, cap.fixed)
    return PmuCaps(version=version, gp=gp, fixed=fixed if version > 1 else 0)


NO_EXITS = ExitReason(0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """Host, guest CPUID, userspace filter and exit mask, KVM policy, runtime state."""

    host: HostProfile
    guest: frozenset[Feature]  # the features the guest CPUID asks for
    policy: Policy
    filter: MsrFilter = NO_FILTER
    exits: ExitReason = NO_EXITS
    runtime: Runtime = field(default_factory=Runtime)
    guest_vendor: Vendor | None = None  # None: same as the host
    # Derived in __post_init__ (read on every decision, so computed once):
    # kvm_cpu_cap_has: the host's features minus what this KVM version lacks;
    kvm_caps: frozenset[Feature] = field(init=False, compare=False, repr=False)
    # guest_cpu_cap_has: the guest CPUID masked by KVM's caps.
    guest_caps: frozenset[Feature] = field(init=False, compare=False, repr=False)
    # The vCPU's PMU (version, counters) after kvm_pmu_refresh.
    pmu: PmuCaps = field(init=False, compare=False, repr=False)
    # The host's linear-address width, which KVM checks MSR values against (host.virt_addr_bits).
    addr_bits: int = field(init=False, compare=False, repr=False)
    # Read on every access, so copied out of host and runtime once:
    backend: Backend = field(init=False, compare=False, repr=False)
    ignore_msrs: bool = field(init=False, compare=False, repr=False)  # kvm.ignore_msrs
    xen_msr: int = field(init=False, compare=False, repr=False)  # 0 unless Xen's MSR is set

    def __post_init__(self) -> None:
        kvm = self.host.features - self.policy.kvm_lacks
        object.__setattr__(self, "kvm_caps", kvm)
        guest_caps = self.guest & kvm
        object.__setattr__(self, "guest_caps", guest_caps)
        object.__setattr__(self, "pmu", guest_pmu(self.host, guest_caps, self.runtime))
        object.__setattr__(self, "addr_bits", self.host.virt_addr_bits)
        object.__setattr__(self, "backend", self.host.backend)
        object.__setattr__(self, "ignore_msrs", self.host.ignore_msrs)
        object.__setattr__(self, "xen_msr", self.runtime.xen_hypercall_msr
                           if self.host.params.xen else 0)

    @property
    def vendor(self) -> Vendor:
        return self.guest_vendor or self.host.vendor

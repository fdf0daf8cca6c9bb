"""A scenario: everything KVM's MSR decisions depend on, as one frozen value."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

from msrvirt.arch.cpuid import Feature
from msrvirt.arch.hosts import HostProfile
from msrvirt.arch.kvm import ExitReason, Vendor
from msrvirt.errors import UsageError
from msrvirt.policy.filter import NO_FILTER, MsrFilter

if TYPE_CHECKING:
    from msrvirt.policy.policies import Policy


@dataclass(frozen=True, slots=True, kw_only=True)
class Runtime:
    """vCPU and VM state some intercept rules and emulation depend on (default: a fresh vCPU).

    Names follow the KVM state they stand for (kvm-msr-facts.md section 3, rules 4-8;
    kvm-svm-common-pvm-facts.md 1b).
    """

    cstates_in_guest: bool = False  # rule 4: kvm_cstate_in_guest (KVM_CAP_X86_DISABLE_EXITS)
    aperfmperf_in_guest: bool = False  # rule 5: kvm_aperfmperf_in_guest
    pt_host_guest: bool = False  # rule 6: Intel PT in host-guest mode (kvm_intel.pt_mode=1)
    pt_tracing: bool = False  # rule 6: guest RTIT_CTL.TraceEn set
    xfd_no_write_intercept: bool = False  # rule 7: after the guest's first non-zero XFD write
    spec_ctrl_nonzero: bool = False  # rule 8: after the guest's first non-zero SPEC_CTRL write
    x2apic_mode: bool = False  # in-kernel local APIC in x2APIC mode
    lbrv_active: bool = False  # SVM: LBR virtualization enabled in the current VMCB
    sev_es: bool = False  # SVM: the guest is SEV-ES
    enforce_pv_cpuid: bool = False  # KVM_CAP_ENFORCE_PV_FEATURE_CPUID enabled

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def parse(cls, text: str) -> Runtime:
        """Parse ``name,name=0,...`` (a bare name means true)."""
        values: dict[str, bool] = {}
        for item in filter(None, (p.strip() for p in text.split(","))):
            key, _, raw = item.partition("=")
            key = key.strip().replace("-", "_")
            if key not in cls.names():
                known = ", ".join(cls.names())
                raise UsageError(f"runtime state must be one of {known}, not {key!r}")
            if raw.strip().lower() in ("", "1", "true", "yes", "on"):
                values[key] = True
            elif raw.strip().lower() in ("0", "false", "no", "off"):
                values[key] = False
            else:
                raise UsageError(f"runtime {key} must be true or false, not {raw!r}")
        return cls(**values)

    def set_names(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name)]


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

    def __post_init__(self) -> None:
        kvm = self.host.features - self.policy.kvm_lacks
        object.__setattr__(self, "kvm_caps", kvm)
        object.__setattr__(self, "guest_caps", self.guest & kvm)

    @property
    def vendor(self) -> Vendor:
        return self.guest_vendor or self.host.vendor

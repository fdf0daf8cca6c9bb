"""Per-exit costs: the built-in figures with their sources, and figures measured on a host.

Every figure says whether it was measured and where.  The built-in ones describe a
VMX VM exit on a recent Intel CPU (assumed, not measured); `msrvirt calibrate` measures what this
host's /dev/kvm can show (msrvirt.live.calibrate), which on a software backend such as
PVM is that backend's exit path, not a VMX VM exit.  Both have the same JSON form
(`ExitCosts.to_obj`), which `msrvirt cost --costs FILE` reads back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from msrvirt.errors import FileFormatError


@dataclass(frozen=True, slots=True, kw_only=True)
class Figure:
    """One number with its unit, its source, and whether it was measured here."""

    value: float
    unit: str
    source: str
    measured: bool

    def to_obj(self) -> dict[str, Any]:
        return {"value": self.value, "unit": self.unit, "source": self.source,
                "measured": self.measured}


@dataclass(frozen=True, slots=True, kw_only=True)
class ExitCosts:
    """What one intercepted MSR access costs the CPU, and the clock that turns cycles into time.

    ``in_kernel_exit_cycles``: VM exit, KVM's emulation of the RDMSR/WRMSR, VM entry (every
    FRED MSR access KVM intercepts is emulated in the kernel: kvm-msr-facts.md section 6).
    ``userspace_exit_cycles``: the same access sent to the VMM (a userspace MSR exit) and
    back, the whole round trip; no modelled workload makes one, it is kept for comparison.
    """

    host: str  # what the figures describe
    cpu_ghz: Figure
    in_kernel_exit_cycles: Figure
    userspace_exit_cycles: Figure

    def cpu_percent(self, exits_per_s: float) -> float:
        """Share of one CPU (in %) that ``exits_per_s`` in-kernel exits take."""
        return self.cycles_percent(exits_per_s * self.in_kernel_exit_cycles.value)

    def cycles_percent(self, cycles_per_s: float) -> float:
        """Share of one CPU (in %) that ``cycles_per_s`` cycles take."""
        return cycles_per_s / (self.cpu_ghz.value * 1e9) * 100

    def figures(self) -> tuple[tuple[str, Figure], ...]:
        """Every figure by field name."""
        return tuple((name, getattr(self, name)) for name in _FIGURES)

    def to_obj(self) -> dict[str, Any]:
        """The JSON form: ``{"host": str, NAME: {"value", "unit", "source", "measured"}}``."""
        return {"host": self.host, **{name: f.to_obj() for name, f in self.figures()}}

    @classmethod
    def from_obj(cls, obj: object, *, origin: str) -> ExitCosts:
        """Read `to_obj`'s form back; FileFormatError naming ``origin`` and the bad key."""
        if not isinstance(obj, Mapping):
            raise FileFormatError(origin, f"exit costs must be an object, not {type(obj).__name__}")
        need = ("host", *_FIGURES)
        for key in need:
            if key not in obj:
                raise FileFormatError(origin, f"exit costs must have {key!r}")
        extra = sorted(set(obj) - set(need))
        if extra:
            raise FileFormatError(origin, f"exit cost keys must be among {list(need)}, not {extra[0]!r}")
        return cls(host=str(obj["host"]),
                   **{name: _figure(obj[name], name, _UNITS[name], origin) for name in _FIGURES})


_FIGURES = tuple(f.name for f in fields(ExitCosts) if f.type == "Figure")
_UNITS = {"cpu_ghz": "GHz", "in_kernel_exit_cycles": "cycles", "userspace_exit_cycles": "cycles"}


def _figure(obj: object, name: str, unit: str, origin: str) -> Figure:
    keys = {"value", "unit", "source", "measured"}
    if not isinstance(obj, Mapping) or set(obj) != keys:
        raise FileFormatError(origin, f"{name} must be an object with keys {sorted(keys)}")
    value, measured = obj["value"], obj["measured"]
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or value <= 0:
        raise FileFormatError(origin, f"{name} value must be a number > 0, not {value!r}")
    if obj["unit"] != unit:
        raise FileFormatError(origin, f"{name} unit must be {unit!r}, not {obj['unit']!r}")
    if not isinstance(measured, bool):
        raise FileFormatError(origin, f"{name} measured must be true or false, not {measured!r}")
    return Figure(value=float(value), unit=unit, source=str(obj["source"]), measured=measured)


_ASSUMED = "assumed, typical of recent Intel CPUs (not measured here)"
IN_KERNEL_EXIT_CYCLES = 1300.0
USERSPACE_EXTRA_CYCLES = 2500.0

DEFAULT_COSTS = ExitCosts(
    host="built-in defaults: a VMX guest on a recent Intel CPU (not measured)",
    cpu_ghz=Figure(value=3.0, unit="GHz", measured=False,
                   source="assumed core clock of a recent Intel server CPU"),
    in_kernel_exit_cycles=Figure(
        value=IN_KERNEL_EXIT_CYCLES, unit="cycles", measured=False,
        source=f"{_ASSUMED}: an in-kernel VM exit with WRMSR emulation takes about 1,000-1,600"
        " cycles on recent Intel; the middle of that range"),
    userspace_exit_cycles=Figure(
        value=IN_KERNEL_EXIT_CYCLES + USERSPACE_EXTRA_CYCLES, unit="cycles", measured=False,
        source=f"{_ASSUMED}: an exit to userspace adds at least about 2,500 cycles in the kernel"
        " to the in-kernel 1,300, plus the VMM's own work (not included: a lower bound)"),
)


# A nested exit reflected to L1 costs the L2 exit to L0 (an in-kernel exit) plus this round
# trip through L1 (docs/cost.md, "Nested").  Not measured: the machines msrvirt was built on have no VMX.
L1_ROUND_TRIP = Figure(
    value=10 * IN_KERNEL_EXIT_CYCLES, unit="cycles", measured=False,
    source="assumption: L0's nested VM exit (sync_vmcs02_to_vmcs12, prepare_vmcs12,"
    " load_vmcs12_host_state), the entry into L1, L1's exit handler, L1's VMRESUME (a second"
    " exit to L0) and L0's nested VM entry (prepare_vmcs02, the MSR bitmap merge): taken as"
    " ten in-kernel exits")


def measured_costs(*, host: str, cpu_ghz: Figure, in_kernel_ns: float, in_kernel_source: str,
                   userspace_ns: float, userspace_source: str) -> ExitCosts:
    """Exit costs from round trips measured in nanoseconds, converted with ``cpu_ghz``.

    The cycle figures are marked measured; their sources carry the nanoseconds, so the
    conversion can be undone.
    """
    def cycles(ns: float, source: str) -> Figure:
        return Figure(value=ns * cpu_ghz.value, unit="cycles", measured=True,
                      source=f"{source}: {ns:,.0f} ns x {cpu_ghz.value:.3f} GHz")

    return ExitCosts(host=host, cpu_ghz=cpu_ghz,
                     in_kernel_exit_cycles=cycles(in_kernel_ns, in_kernel_source),
                     userspace_exit_cycles=cycles(userspace_ns, userspace_source))

"""Workload profiles: how often a guest and its host do each thing that may touch a FRED MSR.

A profile is data (src/msrvirt/cost/workloads/NAME.json, or a user's JSON/TOML file):
one rate per event kind, each with the source of its figure.  Rates are per vCPU
(the model has one vCPU), so the costs derived from them are shares of the one
physical CPU that runs it.  Which MSRs each event touches is not data: it is the
event sequence `msrvirt.cost.units` drives through the machine (fred-arch-facts.md
section 3, kvm-msr-facts.md section 7).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from importlib import resources

from msrvirt.dataio import display_path, load, names_file
from msrvirt.errors import FileFormatError, UnknownNameError, UsageError


@dataclass(frozen=True, slots=True, kw_only=True)
class Rate:
    """Events per second (per vCPU), and where the figure comes from."""

    per_second: float
    source: str

    def __post_init__(self) -> None:
        if not (math.isfinite(self.per_second) and self.per_second >= 0):
            raise UsageError(f"a rate must be a finite number >= 0, not {self.per_second!r}")


_ZERO = Rate(per_second=0.0, source="not in the profile (0)")


@dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    """A guest's and its host's event rates, one vCPU; each rate carries its source."""

    name: str
    description: str
    # Switches to a user task whose kernel stack differs: Linux writes FRED_RSP0 on the way
    # back to user mode (kvm-msr-facts.md section 7), and only then.
    guest_context_switches: Rate
    guest_syscalls: Rate
    guest_interrupts: Rate
    guest_nmis: Rate
    guest_debug_traps: Rate
    host_preemptions: Rate
    host_migrations: Rate
    kvm_run_returns: Rate
    # FRED initialisation of a (v)CPU: Linux writes CONFIG, STKLVLS, RSP0-3 here (fred.c).
    cpu_bringups: Rate
    # Guest WRMSR of PL0_SSP outside bring-up; Linux never does (no supervisor shadow stacks),
    # a kernel with supervisor shadow stacks would on every switch.
    guest_pl0_ssp_writes: Rate = _ZERO
    guest_shstk: bool  # guest CPUID has CET shadow stacks (else FRED only)

    def with_context_switches(self, per_second: float) -> Workload:
        """This workload at another guest context-switch rate (for --context-switches, sweeps)."""
        return replace(self, guest_context_switches=Rate(
            per_second=per_second, source="set for this estimate"))

    def rates(self) -> tuple[tuple[str, Rate], ...]:
        """Every rate, by field name, in declaration order."""
        return tuple((name, getattr(self, name)) for name in RATE_FIELDS)

    @classmethod
    def from_obj(cls, obj: object, *, origin: str) -> Workload:
        """Read a profile object; FileFormatError naming ``origin`` and the bad key.

        Form: ``{"name", "description", "guest_shstk": bool, "rates": {FIELD:
        {"per_second": number, "source": str}}}``; every rate but guest_pl0_ssp_writes
        is required (docs/cost.md).
        """
        if not isinstance(obj, Mapping):
            raise FileFormatError(origin, f"a workload must be an object, not {type(obj).__name__}")
        need = ("name", "description", "guest_shstk", "rates")
        for key in need:
            if key not in obj:
                raise FileFormatError(origin, f"a workload must have {key!r}")
        extra = sorted(set(obj) - set(need))
        if extra:
            raise FileFormatError(origin, f"workload keys must be among {list(need)}, not {extra[0]!r}")
        if not isinstance(obj["guest_shstk"], bool):
            raise FileFormatError(origin, f"guest_shstk must be true or false, not {obj['guest_shstk']!r}")
        raw = obj["rates"]
        if not isinstance(raw, Mapping):
            raise FileFormatError(origin, "rates must be an object")
        unknown = sorted(set(raw) - set(RATE_FIELDS))
        if unknown:
            raise FileFormatError(origin, f"rates must be among {list(RATE_FIELDS)}, not {unknown[0]!r}")
        rates: dict[str, Rate] = {}
        for name in RATE_FIELDS:
            if name not in raw:
                if name in _OPTIONAL_RATES:
                    continue
                raise FileFormatError(origin, f"rates must have {name!r}")
            rates[name] = _rate(raw[name], name, origin)
        return cls(name=str(obj["name"]), description=str(obj["description"]),
                   guest_shstk=obj["guest_shstk"], **rates)


RATE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Workload) if f.type == "Rate")
_OPTIONAL_RATES = frozenset({"guest_pl0_ssp_writes"})


def _rate(obj: object, name: str, origin: str) -> Rate:
    if not isinstance(obj, Mapping) or set(obj) != {"per_second", "source"}:
        raise FileFormatError(origin, f"rate {name} must be {{\"per_second\": number, \"source\": str}}")
    value = obj["per_second"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FileFormatError(origin, f"rate {name} per_second must be a number, not {value!r}")
    try:
        return Rate(per_second=float(value), source=str(obj["source"]))
    except UsageError as err:
        raise FileFormatError(origin, f"rate {name}: {err}") from None


def _builtin() -> dict[str, Workload]:
    root = resources.files("msrvirt.cost") / "workloads"
    out: dict[str, Workload] = {}
    for entry in sorted(root.iterdir(), key=lambda e: e.name.removesuffix(".json")):
        if entry.name.endswith(".json"):
            w = Workload.from_obj(json.loads(entry.read_text()), origin=f"workloads/{entry.name}")
            out[w.name] = w
    return out


WORKLOADS: dict[str, Workload] = _builtin()
DEFAULT_WORKLOAD = "linux-fred"


def workload(name_or_file: str) -> Workload:
    """A built-in profile by name, or one read from a JSON/TOML file (a path).

    UnknownNameError for an unknown name; FileFormatError (one line) for a file that
    cannot be read or is malformed.
    """
    if name_or_file in WORKLOADS:
        return WORKLOADS[name_or_file]
    if not names_file(name_or_file):
        raise UnknownNameError("workload", name_or_file,
                               "one of " + ", ".join(WORKLOADS) + ", or a .json/.toml file")
    return load(name_or_file,
                lambda obj: Workload.from_obj(obj, origin=display_path(name_or_file)))

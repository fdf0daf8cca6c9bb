"""Probe scenarios: what to set up in a real VM, which MSR accesses to make, how userspace
answers exits.  Files are JSON (docs/formats.md, "Probe scenario"); the built-in corpus is
in conform/corpus/.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from msrvirt.arch.kvm import Access, ExitReason
from msrvirt.arch.msrs import resolve_index
from msrvirt.dataio import parse_int
from msrvirt.errors import UsageError
from msrvirt.policy.decide import Initiator, MsrAccess
from msrvirt.policy.filter import FilterRange, MsrFilter, bitmap_from_bits


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """How userspace answers a KVM_EXIT_X86_RDMSR/WRMSR: an error (the guest gets #GP) or
    success with ``value`` for a read."""

    error: bool
    value: int = 0


GP = Answer(error=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Answers:
    """Userspace's answers: per (MSR, direction), else ``default``."""

    default: Answer = GP
    specific: tuple[tuple[int, Access, Answer], ...] = ()

    def answer(self, msr: int, access: Access) -> Answer:
        for index, direction, ans in self.specific:
            if index == msr and direction is access:
                return ans
        return self.default


@dataclass(frozen=True, slots=True, kw_only=True)
class GuestOps:
    """Guest RDMSR/WRMSR, in order, in one guest run."""

    ops: tuple[MsrAccess, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class HostOps:
    """KVM_GET_MSRS / KVM_SET_MSRS, one entry each, in order."""

    ops: tuple[MsrAccess, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class SetFilter:
    """KVM_X86_SET_MSR_FILTER with ``filter`` (which may be invalid on purpose)."""

    filter: MsrFilter


@dataclass(frozen=True, slots=True, kw_only=True)
class EnableExits:
    """KVM_ENABLE_CAP(KVM_CAP_X86_USER_SPACE_MSR) with a raw mask (which may be invalid)."""

    mask: int


Step = GuestOps | HostOps | SetFilter | EnableExits


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeScenario:
    """One probe scenario: guest CPUID edits, initial exits and filter, answers, steps."""

    name: str
    source: str
    guest: str  # guest CPUID, in --guest syntax over the host's supported CPUID
    exits: ExitReason
    filter: MsrFilter | None
    answers: Answers
    steps: tuple[Step, ...]
    enforce_pv_cpuid: bool = False  # KVM_ENABLE_CAP(KVM_CAP_ENFORCE_PV_FEATURE_CPUID) on the vCPU
    hyperv: bool = False  # Hyper-V CPUID leaves at 0x40000000 (KVM's move to 0x40000100)

    @property
    def op_count(self) -> int:
        return sum(len(s.ops) if isinstance(s, GuestOps | HostOps) else 1 for s in self.steps)


def _exits(value: object, what: str) -> ExitReason:
    if isinstance(value, list):
        out = ExitReason(0)
        for name in value:
            try:
                out |= ExitReason[str(name).upper()]
            except KeyError:
                raise UsageError(
                    f"{what} must be among filter, unknown, inval; not {name!r}") from None
        return out
    raise UsageError(f"{what} must be a list of exit reasons, not {value!r}")


def _op(obj: object, initiator: Initiator, where: str) -> MsrAccess:
    if not isinstance(obj, Mapping) or len({"read", "write"} & set(obj)) != 1:
        raise UsageError(f"{where} must be {{\"read\": MSR}} or {{\"write\": MSR, \"value\": V}},"
                         f" not {obj!r}")
    extra = set(obj) - {"read", "write", "value"}
    if extra:
        raise UsageError(f"{where} keys must be read, write, value; not {sorted(extra)[0]!r}")
    if "read" in obj:
        return MsrAccess(resolve_index(obj["read"]), Access.R, 0, initiator)
    value = parse_int(obj.get("value", 0), f"{where} value")
    return MsrAccess(resolve_index(obj["write"]), Access.W, value, initiator)


def _answer(obj: object, access: Access, where: str) -> Answer:
    if obj == "gp":
        return GP
    if obj == "ok":
        return Answer(error=False)
    if access is Access.R:
        return Answer(error=False, value=parse_int(obj, where))
    raise UsageError(f'{where} must be "gp" or "ok" for a write, not {obj!r}')


def _answers(obj: object) -> Answers:
    if obj is None:
        return Answers()
    if not isinstance(obj, Mapping):
        raise UsageError(f"answers must be an object, not {obj!r}")
    default = GP
    specific = []
    for key, spec in obj.items():
        if key == "default":
            if spec not in ("gp", "ok"):
                raise UsageError(f'answers default must be "gp" or "ok", not {spec!r}')
            default = _answer(spec, Access.W, "answers default")
            continue
        index = resolve_index(key)
        if not isinstance(spec, Mapping):
            spec = {"read": spec, "write": spec if spec in ("gp", "ok") else "ok"}
        for direction, access in (("read", Access.R), ("write", Access.W)):
            if direction in spec:
                specific.append((index, access, _answer(spec[direction], access,
                                                        f"answer for {key} {direction}")))
    return Answers(default=default, specific=tuple(specific))


def _step(obj: object, i: int) -> Step:
    where = f"step {i}"
    if not isinstance(obj, Mapping) or len(obj) != 1:
        raise UsageError(f"{where} must be an object with one of guest, host, set_filter,"
                         f" enable_exits, not {obj!r}")
    ((kind, body),) = obj.items()
    if kind in ("guest", "host"):
        if not isinstance(body, list):
            raise UsageError(f"{where} {kind} must be a list of operations, not {body!r}")
        initiator = Initiator.GUEST if kind == "guest" else Initiator.HOST
        ops = tuple(_op(o, initiator, f"{where} op {j}") for j, o in enumerate(body))
        return GuestOps(ops=ops) if kind == "guest" else HostOps(ops=ops)
    if kind == "set_filter":
        return SetFilter(filter=MsrFilter.from_obj(body))
    if kind == "enable_exits":
        if isinstance(body, list):
            return EnableExits(mask=int(_exits(body, f"{where} enable_exits")))
        return EnableExits(mask=parse_int(body, f"{where} enable_exits"))
    raise UsageError(f"{where} kind must be guest, host, set_filter or enable_exits, not {kind!r}")


def parse(obj: object) -> ProbeScenario:
    """A ProbeScenario from its JSON object; UsageError names the bad value."""
    if not isinstance(obj, Mapping):
        raise UsageError(f"a probe scenario must be an object, not {type(obj).__name__}")
    known = {"name", "source", "guest", "exits", "filter", "answers", "steps", "sweep",
             "enforce_pv_cpuid", "hyperv"}
    extra = sorted(set(obj) - known)
    if extra:
        raise UsageError(f"probe scenario keys must be among {sorted(known)}, not {extra[0]!r}")
    if "name" not in obj:
        raise UsageError("a probe scenario must have a name")
    if "sweep" in obj:
        return sweep(obj)
    steps = obj.get("steps")
    if not isinstance(steps, list) or not steps:
        raise UsageError("a probe scenario must have a non-empty list of steps")
    return ProbeScenario(
        name=str(obj["name"]),
        source=str(obj.get("source", "")),
        guest=str(obj.get("guest", "host")),
        exits=_exits(obj.get("exits", []), "exits"),
        filter=None if obj.get("filter") is None else MsrFilter.from_obj(obj["filter"]),
        answers=_answers(obj.get("answers")),
        steps=tuple(_step(s, i) for i, s in enumerate(steps)),
        **_vcpu_options(obj),
    )


def _flag(obj: Mapping[str, Any], key: str, default: bool, what: str) -> bool:
    """The boolean ``obj[key]`` (``default`` when absent); UsageError naming ``what``."""
    value = obj.get(key, default)
    if not isinstance(value, bool):
        raise UsageError(f"{what} must be true or false, not {value!r}")
    return value


def _vcpu_options(obj: Mapping[str, Any]) -> dict[str, bool]:
    """The optional vCPU set-up keys: enforce_pv_cpuid and hyperv (booleans)."""
    return {key: _flag(obj, key, False, key) for key in ("enforce_pv_cpuid", "hyperv")}


# The two ranges of the VMX MSR bitmap (kvm-msr-facts.md section 1).
SWEEP_RANGES = ((0x0000_0000, 0x0000_1FFF), (0xC000_0000, 0xC000_1FFF))
MAX_SWEEP_OPS = 0x10000  # reads + writes; a sweep runs in one guest run of the probe


def random_filter(rnd: random.Random, lo: int, hi: int) -> MsrFilter:
    """A valid filter of up to 16 random ranges over [lo, hi], with random allow bits."""
    ranges = []
    for _ in range(rnd.randint(1, 16)):
        base = rnd.randint(lo, hi)
        nmsrs = rnd.randint(1, min(0x800, hi - base + 1))
        allowed = [i for i in range(nmsrs) if rnd.random() < 0.5]
        ranges.append(FilterRange(flags=rnd.choice([1, 2, 3]), base=base, nmsrs=nmsrs,
                                  allow_bits=bitmap_from_bits(nmsrs, allowed, set_listed=True)))
    return MsrFilter(flags=rnd.randint(0, 1), ranges=tuple(ranges))


def sweep(obj: Mapping[str, Any]) -> ProbeScenario:
    """Expand a sweep: read, then write 0 to, every index of its ranges (default: both VMX
    bitmap ranges) under a seeded random filter over them (or none), all exits enabled.

    ``{"name": ..., "sweep": {"seed": 7, "ranges": [["0x40000000", "0x400001ff"]],
    "filter": false}}``; writes go last so reads see reset values.
    """
    spec = obj["sweep"]
    if not isinstance(spec, Mapping):
        raise UsageError(f"sweep must be an object, not {spec!r}")
    extra = sorted(set(spec) - {"seed", "ranges", "filter"})
    if extra:
        raise UsageError(f"sweep keys must be among filter, ranges, seed; not {extra[0]!r}")
    seed = parse_int(spec.get("seed", 0), "sweep seed")
    ranges = _sweep_ranges(spec.get("ranges"))
    with_filter = _flag(spec, "filter", True, "sweep filter")
    rnd = random.Random(seed)
    flt: MsrFilter | None = None
    if with_filter:
        parts = [random_filter(rnd, lo, hi) for lo, hi in ranges]
        per = max(1, 16 // len(parts))
        flt = MsrFilter(flags=parts[0].flags,
                        ranges=tuple(r for p in parts for r in p.ranges[:per])[:16])
    indices = [i for lo, hi in ranges for i in range(lo, hi + 1)]
    if 2 * len(indices) > MAX_SWEEP_OPS:
        raise UsageError(f"a sweep may cover at most {MAX_SWEEP_OPS // 2} indices, not"
                         f" {len(indices)}")
    reads = tuple(MsrAccess(i, Access.R) for i in indices)
    writes = tuple(MsrAccess(i, Access.W, 0) for i in indices)
    return ProbeScenario(
        name=str(obj["name"]),
        source=str(obj.get("source", f"seeded random filter, seed {seed}")),
        guest=str(obj.get("guest", "host")),
        exits=ExitReason.INVAL | ExitReason.UNKNOWN | ExitReason.FILTER,
        filter=flt,
        answers=Answers(),
        steps=(GuestOps(ops=reads), GuestOps(ops=writes)),
        **_vcpu_options(obj),
    )


def _sweep_ranges(value: object) -> tuple[tuple[int, int], ...]:
    if value is None:
        return SWEEP_RANGES
    if not isinstance(value, list) or not value:
        raise UsageError(f"sweep ranges must be a non-empty list of [first, last], not {value!r}")
    out = []
    for item in value:
        if not isinstance(item, list) or len(item) != 2:
            raise UsageError(f"a sweep range must be [first, last], not {item!r}")
        lo, hi = (parse_int(x, "sweep range") for x in item)
        if not 0 <= lo <= hi <= 0xFFFF_FFFF:
            raise UsageError(f"a sweep range must be 32-bit indices, first <= last, not {item!r}")
        out.append((lo, hi))
    return tuple(out)


def describe(op: MsrAccess | SetFilter | EnableExits) -> dict[str, Any]:
    """The JSON form of one operation of a scenario (the conformance table's `op`)."""
    if isinstance(op, SetFilter):
        return {"kind": "set_filter", "filter": op.filter.to_obj()}
    if isinstance(op, EnableExits):
        return {"kind": "enable_exits", "mask": op.mask}
    from msrvirt.arch.msrs import display_name

    kind = ("guest_" if op.initiator is Initiator.GUEST else "host_") + (
        "rdmsr" if op.access is Access.R else "wrmsr")
    out: dict[str, Any] = {"kind": kind, "index": op.msr, "name": display_name(op.msr)}
    if op.access is Access.W:
        out["value"] = op.value
    return out


def ops_of(steps: Sequence[Step]) -> list[MsrAccess | SetFilter | EnableExits]:
    """Every operation of ``steps``, flattened in order."""
    out: list[MsrAccess | SetFilter | EnableExits] = []
    for s in steps:
        if isinstance(s, GuestOps | HostOps):
            out.extend(s.ops)
        else:
            out.append(s)
    return out

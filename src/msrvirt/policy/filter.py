"""The KVM userspace MSR filter (KVM_X86_SET_MSR_FILTER): decision, validation, exact bytes.

Follows arch/x86/kvm/x86.c (msrs.c in 2026 trees) `kvm_msr_allowed`,
`kvm_add_msr_filter` and `kvm_vm_ioctl_set_msr_filter`, and
Documentation/virt/kvm/api.rst; kvm-msr-facts.md section 4.

Polarity: in a range bitmap bit 1 ALLOWS the access (``allow_bits``), the
opposite of the VMX MSR bitmap.
"""

from __future__ import annotations

import errno as _errno
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from msrvirt.arch.kvm import (
    KVM_MSR_FILTER_DEFAULT_DENY,
    KVM_MSR_FILTER_MAX_BITMAP_SIZE,
    KVM_MSR_FILTER_MAX_RANGES,
    KVM_MSR_FILTER_RANGE_VALID_MASK,
    KVM_MSR_FILTER_VALID_MASK,
    Access,
)
from msrvirt.arch.msrs import X2APIC_RANGE, resolve_index
from msrvirt.dataio import parse_int
from msrvirt.errors import FilterError, UnknownNameError, UsageError

X2APIC_FIRST, X2APIC_LAST = X2APIC_RANGE[0], X2APIC_RANGE[-1]  # never filtered (kvm_msr_allowed)
U32 = 0xFFFF_FFFF

# struct kvm_msr_filter_range { __u32 flags; __u32 nmsrs; __u32 base; __u8 *bitmap; }
_RANGE = struct.Struct("<IIIxxxxQ")
# struct kvm_msr_filter { __u32 flags; (pad) struct kvm_msr_filter_range ranges[16]; }
_HEADER = struct.Struct("<Ixxxx")
KVM_MSR_FILTER_RANGE_SIZE = _RANGE.size  # 24
KVM_MSR_FILTER_SIZE = _HEADER.size + KVM_MSR_FILTER_MAX_RANGES * _RANGE.size  # 392


def bitmap_size_bytes(nmsrs: int) -> int:
    """Bytes KVM copies for a range of ``nmsrs``: BITS_TO_LONGS(nmsrs) * sizeof(long)."""
    return (nmsrs + 63) // 64 * 8


MAX_RANGE_NMSRS = KVM_MSR_FILTER_MAX_BITMAP_SIZE * 8  # 12288 MSRs per range


@dataclass(frozen=True, slots=True, kw_only=True)
class FilterRange:
    """One `struct kvm_msr_filter_range`; ``flags`` stays raw so invalid ranges can be modelled."""

    flags: int
    base: int
    nmsrs: int
    allow_bits: bytes  # KVM's bitmap: bit (msr - base) set = access allowed

    @property
    def access(self) -> Access:
        return Access(self.flags & KVM_MSR_FILTER_RANGE_VALID_MASK)

    def covers(self, msr: int) -> bool:
        """Whether ``msr`` lies in [base, base + nmsrs), with KVM's u32 end wrap-around."""
        end = (self.base + self.nmsrs) & U32
        return self.base <= msr < end

    def allows_bit(self, msr: int) -> bool:
        """The bitmap bit of ``msr`` (which must be covered)."""
        bit = msr - self.base
        byte = bit >> 3
        return byte < len(self.allow_bits) and bool(self.allow_bits[byte] >> (bit & 7) & 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class MsrFilter:
    """A `struct kvm_msr_filter`.  ``MsrFilter()`` is no filtering (DEFAULT_ALLOW, no ranges)."""

    flags: int = 0
    ranges: tuple[FilterRange, ...] = ()
    # Per direction (indexed by Access.R = 1 and Access.W = 2): (base, end, range index) of
    # each range that can decide it, in order; derived once, read on every filtered access.
    spans: tuple[tuple[tuple[int, int, int], ...], ...] = field(
        init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "spans", tuple(
            tuple((r.base, (r.base + r.nmsrs) & U32, i) for i, r in enumerate(self.ranges)
                  if r.nmsrs and r.flags & direction)
            for direction in (0, 1, 2)))

    @property
    def default_allow(self) -> bool:
        return not self.flags & KVM_MSR_FILTER_DEFAULT_DENY

    @property
    def is_empty(self) -> bool:
        """No range has MSRs: with DEFAULT_ALLOW that is no filtering at all."""
        return all(r.nmsrs == 0 for r in self.ranges)

    def allows(self, msr: int, access: Access) -> bool:
        """Whether a guest ``access`` (R or W) to ``msr`` passes the filter (kvm_msr_allowed)."""
        if X2APIC_FIRST <= msr <= X2APIC_LAST:
            return True
        # deciding_range(), inlined: this runs on every filtered access (docs/bench.md).
        for base, end, i in self.spans[access]:
            if base <= msr < end:
                return self.ranges[i].allows_bit(msr)
        return not self.flags & KVM_MSR_FILTER_DEFAULT_DENY

    def deciding_range(self, msr: int, access: Access) -> int | None:
        """Index (into ``ranges``) of the first range that covers ``msr`` for ``access``, or
        None (x2APIC MSRs, or no range: the default decides)."""
        if X2APIC_FIRST <= msr <= X2APIC_LAST:
            return None
        for base, end, i in self.spans[access]:  # with KVM's u32 end wrap-around
            if base <= msr < end:
                return i
        return None

    def validate(self) -> None:
        """Raise FilterError exactly where KVM_X86_SET_MSR_FILTER fails (first failure wins)."""
        if len(self.ranges) > KVM_MSR_FILTER_MAX_RANGES:
            raise FilterError(
                "EINVAL", _errno.EINVAL,
                f"a filter has at most {KVM_MSR_FILTER_MAX_RANGES} ranges, not {len(self.ranges)}",
                None,
            )
        if self.flags & ~KVM_MSR_FILTER_VALID_MASK:
            raise FilterError(
                "EINVAL", _errno.EINVAL,
                f"filter flags must be within {KVM_MSR_FILTER_VALID_MASK:#x}, not {self.flags:#x}",
                None,
            )
        if self.is_empty and not self.default_allow:
            raise FilterError(
                "EINVAL", _errno.EINVAL,
                "a DEFAULT_DENY filter must have at least one non-empty range", None,
            )
        for i, rng in enumerate(self.ranges):
            if not rng.nmsrs:
                continue
            if rng.flags & ~KVM_MSR_FILTER_RANGE_VALID_MASK:
                raise FilterError(
                    "EINVAL", _errno.EINVAL,
                    f"range flags must be within READ|WRITE ({KVM_MSR_FILTER_RANGE_VALID_MASK:#x}),"
                    f" not {rng.flags:#x}", i,
                )
            if not rng.flags:
                raise FilterError(
                    "EINVAL", _errno.EINVAL, "a non-empty range must have READ or WRITE set", i
                )
            size = bitmap_size_bytes(rng.nmsrs)
            if size > KVM_MSR_FILTER_MAX_BITMAP_SIZE:
                raise FilterError(
                    "EINVAL", _errno.EINVAL,
                    f"nmsrs must be at most {MAX_RANGE_NMSRS} (bitmap {size:#x} bytes exceeds"
                    f" {KVM_MSR_FILTER_MAX_BITMAP_SIZE:#x}), not {rng.nmsrs}", i,
                )

    # -- exact bytes -------------------------------------------------------------------------

    def to_kvm_bytes(self, bitmap_addrs: Sequence[int]) -> bytes:
        """The 392-byte `struct kvm_msr_filter`, with range i's bitmap at ``bitmap_addrs[i]``."""
        if len(self.ranges) > KVM_MSR_FILTER_MAX_RANGES:
            raise UsageError(f"a filter has at most 16 ranges, not {len(self.ranges)}")
        out = bytearray(KVM_MSR_FILTER_SIZE)
        _HEADER.pack_into(out, 0, self.flags & U32)
        for i, rng in enumerate(self.ranges):
            _RANGE.pack_into(
                out, _HEADER.size + i * _RANGE.size,
                rng.flags & U32, rng.nmsrs & U32, rng.base & U32, bitmap_addrs[i],
            )
        return bytes(out)

    @classmethod
    def from_kvm_bytes(
        cls, data: bytes, read_bitmap: Callable[[int, int], bytes]
    ) -> MsrFilter:
        """Parse a `struct kvm_msr_filter`; ``read_bitmap(addr, size)`` fetches each bitmap.

        Like KVM, ranges with nmsrs == 0 are kept (they are skipped by the decision), and
        trailing all-zero range slots are dropped.
        """
        if len(data) != KVM_MSR_FILTER_SIZE:
            raise UsageError(
                f"struct kvm_msr_filter must be {KVM_MSR_FILTER_SIZE} bytes, not {len(data)}"
            )
        (flags,) = _HEADER.unpack_from(data, 0)
        slots = []
        for i in range(KVM_MSR_FILTER_MAX_RANGES):
            rflags, nmsrs, base, addr = _RANGE.unpack_from(data, _HEADER.size + i * _RANGE.size)
            bits = read_bitmap(addr, bitmap_size_bytes(nmsrs)) if nmsrs else b""
            slots.append(FilterRange(flags=rflags, base=base, nmsrs=nmsrs, allow_bits=bits))
        while slots and slots[-1] == FilterRange(flags=0, base=0, nmsrs=0, allow_bits=b""):
            slots.pop()
        return cls(flags=flags, ranges=tuple(slots))

    # -- the file format ----------------------------------------------------------------------

    @classmethod
    def from_obj(cls, obj: object) -> MsrFilter:
        """Build a filter from the documented JSON/TOML object (docs/formats.md).

        Raises UsageError naming the bad value.  The result is not validated against KVM's
        rules (call validate()), so that invalid filters can be written down and tested.
        """
        if not isinstance(obj, Mapping):
            raise UsageError(f"a filter must be an object, not {type(obj).__name__}")
        _reject_unknown_keys(obj, {"default", "ranges", "flags"}, "filter")
        if "flags" in obj:
            flags = parse_int(obj["flags"], "filter flags", bits=32)
        else:
            default = obj.get("default", "allow")
            if default not in ("allow", "deny"):
                raise UsageError(f'filter default must be "allow" or "deny", not {default!r}')
            flags = KVM_MSR_FILTER_DEFAULT_DENY if default == "deny" else 0
        raw_ranges = obj.get("ranges", [])
        if not isinstance(raw_ranges, list):
            raise UsageError(f"filter ranges must be a list, not {type(raw_ranges).__name__}")
        return cls(
            flags=flags,
            ranges=tuple(_range_from_obj(r, i) for i, r in enumerate(raw_ranges)),
        )

    def to_obj(self) -> dict[str, Any]:
        """The file-format object (bitmap form) that from_obj reads back to this filter."""
        obj: dict[str, Any] = {}
        if self.flags & ~KVM_MSR_FILTER_VALID_MASK:
            obj["flags"] = self.flags
        else:
            obj["default"] = "allow" if self.default_allow else "deny"
        obj["ranges"] = [
            {
                "flags": _flag_names(r.flags),
                "base": f"{r.base:#x}",
                "nmsrs": r.nmsrs,
                "bitmap": r.allow_bits.hex(),
            }
            for r in self.ranges
        ]
        return obj


def _flag_names(flags: int) -> list[str] | int:
    if flags & ~KVM_MSR_FILTER_RANGE_VALID_MASK:
        return flags
    return [n for bit, n in ((1, "read"), (2, "write")) if flags & bit]


def _reject_unknown_keys(obj: Mapping[str, object], known: set[str], what: str) -> None:
    extra = sorted(set(obj) - known)
    if extra:
        raise UsageError(f"{what} keys must be among {sorted(known)}, not {extra[0]!r}")


def _range_flags(value: object, where: str) -> int:
    if isinstance(value, list):
        flags = 0
        for name in value:
            if name not in ("read", "write"):
                raise UsageError(f'{where} flags must be "read" or "write", not {name!r}')
            flags |= 1 if name == "read" else 2
        return flags
    return parse_int(value, f"{where} flags", bits=32)


def _range_from_obj(obj: object, i: int) -> FilterRange:
    where = f"range {i}"
    if not isinstance(obj, Mapping):
        raise UsageError(f"{where} must be an object, not {type(obj).__name__}")
    _reject_unknown_keys(obj, {"flags", "base", "nmsrs", "bitmap", "deny", "allow"}, where)
    for key in ("flags", "base", "nmsrs"):
        if key not in obj:
            raise UsageError(f"{where} must have {key!r}")
    flags = _range_flags(obj["flags"], where)
    raw_base = obj["base"]
    if isinstance(raw_base, str):
        try:
            base = resolve_index(raw_base)
        except UnknownNameError:
            raise UsageError(f"{where} base must be an integer, hex string or MSR name,"
                             f" not {raw_base!r}") from None
    else:
        base = parse_int(raw_base, f"{where} base", bits=32)
    nmsrs = parse_int(obj["nmsrs"], f"{where} nmsrs", bits=32)
    given = [k for k in ("bitmap", "deny", "allow") if k in obj]
    if len(given) != 1:
        raise UsageError(f"{where} must have exactly one of bitmap, deny, allow, not {given}")
    size = bitmap_size_bytes(nmsrs)
    if "bitmap" in obj:
        text = obj["bitmap"]
        if not isinstance(text, str):
            raise UsageError(f"{where} bitmap must be a hex string, not {text!r}")
        try:
            bits = bytes.fromhex(text.removeprefix("0x"))
        except ValueError:
            raise UsageError(f"{where} bitmap must be a hex string, not {text!r}") from None
        need = (nmsrs + 7) // 8
        if len(bits) < need:
            raise UsageError(
                f"{where} bitmap must cover nmsrs={nmsrs} ({need} bytes), not {len(bits)} bytes"
            )
        if len(bits) < size:
            bits += bytes(size - len(bits))
        return FilterRange(flags=flags, base=base, nmsrs=nmsrs, allow_bits=bits)
    key = given[0]
    listed = obj[key]
    if not isinstance(listed, list):
        raise UsageError(f"{where} {key} must be a list of MSRs, not {listed!r}")
    if size > KVM_MSR_FILTER_MAX_BITMAP_SIZE:
        raise UsageError(
            f"{where} nmsrs must be at most {MAX_RANGE_NMSRS} to use a {key} list, not {nmsrs}"
        )
    rng = FilterRange(flags=flags, base=base, nmsrs=nmsrs, allow_bits=b"")
    indices = []
    for item in listed:
        idx = resolve_index(item) if isinstance(item, str) else parse_int(item, f"{where} {key}",
                                                                           bits=32)
        if not rng.covers(idx):
            raise UsageError(
                f"{where} {key} entries must lie in [{base:#x}, {base + nmsrs:#x}), not {idx:#x}"
            )
        indices.append(idx - base)
    return FilterRange(
        flags=flags, base=base, nmsrs=nmsrs,
        allow_bits=bitmap_from_bits(nmsrs, indices, set_listed=(key == "allow")),
    )


def bitmap_from_bits(nmsrs: int, listed: Iterable[int], *, set_listed: bool) -> bytes:
    """A KVM range bitmap of ``nmsrs`` bits: ``listed`` bits set (or clear), the rest opposite."""
    size = bitmap_size_bytes(nmsrs)
    out = bytearray(size) if set_listed else bytearray(b"\xff" * size)
    for bit in listed:
        if set_listed:
            out[bit >> 3] |= 1 << (bit & 7)
        else:
            out[bit >> 3] &= ~(1 << (bit & 7)) & 0xFF
    if not set_listed:
        # Bits past nmsrs are never consulted; keep them clear so equal filters compare equal.
        for bit in range(nmsrs, size * 8):
            out[bit >> 3] &= ~(1 << (bit & 7)) & 0xFF
    return bytes(out)


NO_FILTER = MsrFilter()

"""Exact MSR intercept bitmaps: the VMX MSR bitmap (4 KiB) and the AMD MSR permission map (8 KiB).

Polarity: bit = 1 means the access is INTERCEPTED (causes a VM exit), the opposite of
the KVM filter.  Layouts: Intel SDM Vol. 3C "MSR-Bitmap Address", KVM vmx.h; AMD APM
Vol. 2 "MSR Intercepts", KVM svm.h; kvm-msr-facts.md section 1.
An MSR outside the covered ranges always exits, whatever the page says.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Self

from msrvirt.arch.kvm import Access
from msrvirt.errors import UsageError

# The single directions of an access, indexed by int(access): plain tuples keep IntFlag
# arithmetic (slow in Python 3.11) off the hot path.
DIRECTIONS_OF: tuple[tuple[Access, ...], ...] = ((), (Access.R,), (Access.W,), (Access.R, Access.W))


_POSITIONS: dict[str, dict[tuple[int, Access], int | None]] = {}


@dataclass(frozen=True, slots=True, kw_only=True)
class BitmapDiff:
    """One (MSR, direction) whose intercept bit differs between two bitmaps."""

    msr: int
    access: Access
    before_intercept: bool
    after_intercept: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class MsrBitmap(ABC):
    """An intercept bitmap page; subclasses give the layout."""

    intercept_bits: bytes
    SIZE: ClassVar[int]
    KIND: ClassVar[str]

    def __post_init__(self) -> None:
        if len(self.intercept_bits) != self.SIZE:
            raise UsageError(
                f"a {self.KIND} page must be {self.SIZE} bytes, not {len(self.intercept_bits)}"
            )

    @staticmethod
    @abstractmethod
    def bit_position(msr: int, access: Access) -> int | None:
        """Bit number of (msr, R or W) in the page, or None when outside every range."""

    @staticmethod
    @abstractmethod
    def decode(position: int) -> tuple[int, Access] | None:
        """The (msr, direction) of bit ``position``, or None for a reserved bit."""

    @classmethod
    def all_intercepted(cls) -> Self:
        """The page KVM starts every vCPU with: all ones."""
        return cls(intercept_bits=b"\xff" * cls.SIZE)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        return cls(intercept_bits=bytes(data))

    def to_bytes(self) -> bytes:
        return self.intercept_bits

    @classmethod
    def from_changes(
        cls, changes: Iterable[tuple[int, Access, bool]], base: MsrBitmap | None = None
    ) -> Self:
        """``base`` (default: all ones) with each (msr, R|W, intercept) applied in order.

        Out-of-range MSRs are ignored, as KVM's set/clear helpers ignore them.
        """
        page = bytearray(base.intercept_bits if base is not None else b"\xff" * cls.SIZE)
        pos_of = cls.bit_position
        # Bit positions are a pure function of (layout, msr, direction); policies ask for the
        # same few dozen on every recomputation, so they are memoised per layout.
        cache = _POSITIONS.setdefault(cls.KIND, {})
        for msr, access, intercept in changes:
            for direction in DIRECTIONS_OF[access]:
                key = (msr, direction)
                pos = cache.get(key, -1)
                if pos == -1:
                    pos = cache[key] = pos_of(msr, direction)
                if pos is None:
                    continue
                if intercept:
                    page[pos >> 3] |= 1 << (pos & 7)
                else:
                    page[pos >> 3] &= ~(1 << (pos & 7)) & 0xFF
        return cls(intercept_bits=bytes(page))

    def with_intercept(self, msr: int, access: Access, intercept: bool) -> Self:
        """This page with one (msr, access) set to ``intercept``."""
        return self.from_changes([(msr, access, intercept)], base=self)

    def intercepted(self, msr: int, access: Access) -> bool:
        """Whether a guest access (R or W) to ``msr`` causes a VM exit."""
        pos = self.bit_position(msr, access)
        if pos is None:
            return True
        return bool(self.intercept_bits[pos >> 3] >> (pos & 7) & 1)

    def _clear_positions(self) -> Iterable[int]:
        for byte_index, byte in enumerate(self.intercept_bits):
            if byte != 0xFF:
                for bit in range(8):
                    if not byte >> bit & 1:
                        yield byte_index * 8 + bit

    def passthrough(self) -> list[tuple[int, Access]]:
        """(msr, direction) pairs whose bit is clear, sorted by MSR then direction."""
        out = []
        for pos in self._clear_positions():
            decoded = self.decode(pos)
            if decoded is not None:
                out.append(decoded)
        return sorted(out)

    def diff(self, other: MsrBitmap) -> list[BitmapDiff]:
        """Rows (msr, direction, before, after) for every bit that differs, ``self`` before."""
        if type(other) is not type(self):
            raise UsageError(f"cannot diff a {self.KIND} page with a {other.KIND} page")
        rows = []
        for i, (a, b) in enumerate(zip(self.intercept_bits, other.intercept_bits, strict=True)):
            changed = a ^ b
            if not changed:
                continue
            for bit in range(8):
                if changed >> bit & 1:
                    decoded = self.decode(i * 8 + bit)
                    if decoded is None:
                        continue
                    msr, access = decoded
                    rows.append(BitmapDiff(
                        msr=msr, access=access,
                        before_intercept=bool(a >> bit & 1), after_intercept=bool(b >> bit & 1),
                    ))
        return sorted(rows, key=lambda r: (r.msr, r.access))


_LOW = 0x0000_0000
_HIGH = 0xC000_0000
_AMD_K8 = 0xC001_0000
_MASK = 0x1FFF


@dataclass(frozen=True, slots=True, kw_only=True)
class VmxMsrBitmap(MsrBitmap):
    """The 4 KiB VMX MSR bitmap: read-low, read-high, write-low, write-high quarters of 1 KiB."""

    SIZE: ClassVar[int] = 4096
    KIND: ClassVar[str] = "VMX MSR bitmap"

    @staticmethod
    def bit_position(msr: int, access: Access) -> int | None:
        base = msr & ~_MASK
        if base == _LOW:
            quarter = 0
        elif base == _HIGH:
            quarter = 1
        else:
            return None
        if access is Access.W:
            quarter += 2
        return quarter * 0x400 * 8 + (msr & _MASK)

    @staticmethod
    def decode(position: int) -> tuple[int, Access] | None:
        quarter, n = divmod(position, 0x400 * 8)
        base = _HIGH if quarter & 1 else _LOW
        return base + n, Access.W if quarter >= 2 else Access.R


_SVM_BASES = (_LOW, _HIGH, _AMD_K8)


@dataclass(frozen=True, slots=True, kw_only=True)
class SvmMsrpm(MsrBitmap):
    """The 8 KiB AMD MSR permission map: 2 bits per MSR (read, write) in three 2 KiB ranges."""

    SIZE: ClassVar[int] = 8192
    KIND: ClassVar[str] = "SVM MSR permission map"

    @staticmethod
    def bit_position(msr: int, access: Access) -> int | None:
        base = msr & ~_MASK
        if base == _LOW:
            rng = 0
        elif base == _HIGH:
            rng = 1
        elif base == _AMD_K8:
            rng = 2
        else:
            return None
        return rng * 2048 * 8 + (msr & _MASK) * 2 + (1 if access is Access.W else 0)

    @staticmethod
    def decode(position: int) -> tuple[int, Access] | None:
        rng, off = divmod(position, 2048 * 8)
        if rng >= len(_SVM_BASES):
            return None  # 0x1800-0x1FFF is reserved
        return _SVM_BASES[rng] + off // 2, Access.W if off & 1 else Access.R

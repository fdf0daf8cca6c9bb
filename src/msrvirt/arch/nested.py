"""L0's merge lists: the MSRs nested_vmx_prepare_msr_bitmap merges into vmcs02's bitmap.

Facts as data (docs/nested.md): Linux v6.19's list, transcribed from arch/x86/kvm/vmx/
nested.c nested_vmx_prepare_msr_bitmap at the pinned tree (docs/kernel-sources.md), and the
FRED series' variants.  policy/nested.py merges with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from msrvirt.arch.kvm import Access
from msrvirt.arch.msrs import FRED_MSRS, resolve_index
from msrvirt.errors import UnknownNameError

R, W = Access.R, Access.W
TREE = "Linux v6.19 (matankalina/linux-6.19.10-fork @094d869456d2)"
_PATCH19 = "FRED v9 patch 19 (nested.c nested_vmx_prepare_msr_bitmap, 2025-10-26)"


# -- merge lists --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class MergeList:
    """The MSRs nested_vmx_prepare_msr_bitmap merges from vmcs01 and L1's bitmap."""

    name: str
    entries: tuple[tuple[int, Access], ...]  # (MSR, MSR_TYPE_*) in the kernel's order
    description: str
    source: str
    # The single directions merged (derived from ``entries``).
    merged: frozenset[tuple[int, Access]] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "merged", frozenset(
            (msr, d) for msr, access in self.entries for d in (R, W) if d & access))


def _entries(*rows: tuple[str, Access]) -> tuple[tuple[int, Access], ...]:
    return tuple((resolve_index(name), access) for name, access in rows)


# nested_vmx_prepare_msr_bitmap, Linux v6.19, in its order (FS/GS/KERNEL_GS_BASE under
# CONFIG_X86_64, always on in this model).
_UPSTREAM = _entries(
    ("FS_BASE", Access.RW), ("GS_BASE", Access.RW), ("KERNEL_GS_BASE", Access.RW),
    ("IA32_SPEC_CTRL", Access.RW), ("IA32_PRED_CMD", W), ("IA32_FLUSH_CMD", W),
    ("IA32_APERF", R), ("IA32_MPERF", R), ("IA32_U_CET", Access.RW), ("IA32_S_CET", Access.RW),
    ("IA32_PL0_SSP", Access.RW), ("IA32_PL1_SSP", Access.RW), ("IA32_PL2_SSP", Access.RW),
    ("IA32_PL3_SSP", Access.RW),
)
_RSP0 = _entries(("IA32_FRED_RSP0", Access.RW))

MERGE_LISTS: dict[str, MergeList] = {m.name: m for m in (
    MergeList(name="upstream", entries=_UPSTREAM,
              description="Linux v6.19: segment bases, SPEC_CTRL, PRED_CMD, FLUSH_CMD,"
              " APERF/MPERF, CET", source=f"{TREE} nested.c nested_vmx_prepare_msr_bitmap"),
    MergeList(name="v9", entries=(*_UPSTREAM, *_RSP0),
              description="upstream plus FRED_RSP0 (the FRED series v9)", source=_PATCH19),
    MergeList(name="fred-all", entries=(*_UPSTREAM, *((m.index, Access.RW) for m in FRED_MSRS)),
              description="upstream plus all nine FRED MSRs (the review's request, agreed by"
              " the author)", source=f"{_PATCH19}; review (Chao Gao, Xin Li, Dec 2025)"),
)}


def merge_list(name: str) -> MergeList:
    """The built-in merge list called ``name``."""
    try:
        return MERGE_LISTS[name]
    except KeyError:
        raise UnknownNameError("merge list", name, "one of " + ", ".join(MERGE_LISTS)) from None

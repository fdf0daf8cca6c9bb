"""Host configurations: the stack-level maps and what v9 07 assumes of them, the named hosts,
and designs on other hosts (``DESIGN@HOST``)."""

from __future__ import annotations

import pytest

from msrvirt.errors import UnknownNameError
from msrvirt.machine.designs import DESIGNS, V9_07_STACKS, Verdict, design, on_host
from msrvirt.machine.hostconf import (
    HOST_CONFIGS,
    LINUX,
    CetState,
    ShadowStacks,
    Vector,
    host_config,
)

# arch/x86/kernel/fred.c (v6.19): FRED_DB_STACK_LEVEL 1, FRED_NMI_STACK_LEVEL 2,
# FRED_MC_STACK_LEVEL 2, FRED_DF_STACK_LEVEL 3.
LINUX_LEVELS = [(Vector.DB, 1), (Vector.NMI, 2), (Vector.MC, 2), (Vector.DF, 3)]


@pytest.mark.parametrize(("vector", "level"), LINUX_LEVELS,
                         ids=[f"linux puts {v.value} at level {lvl}" for v, lvl in LINUX_LEVELS])
def test_linux_uses_the_stack_levels_of_fred_c(vector: Vector, level: int) -> None:
    assert LINUX.level(vector) == level


def test_linux_writes_rsp1_3_with_the_stacks_v9_07_fills_in() -> None:
    # cpu_init_fred_rsps: RSP1 = ist DB, RSP2 = ist NMI, RSP3 = ist DF; v9 07 writes the host
    # fields from ESTACK_DB, ESTACK_NMI and ESTACK_DF.
    assert LINUX.stacks == (Vector.DB, Vector.NMI, Vector.DF) == V9_07_STACKS
    assert LINUX.mismatched_levels(V9_07_STACKS) == ()
    assert (LINUX.shadow_stacks, LINUX.cet_state) == (ShadowStacks.NONE, CetState.KEPT)


def test_a_changed_map_disagrees_with_v9_07_at_the_levels_it_swapped() -> None:
    changed = host_config("stack-map-changed")
    assert changed.level(Vector.NMI) == 1 and changed.level(Vector.DB) == 2
    assert changed.mismatched_levels(V9_07_STACKS) == (1, 2)


@pytest.mark.parametrize(("name", "expected"), [
    ("v9@stack-map-changed", Verdict.FAILS),
    ("v9@host-supervisor-shstk", Verdict.FAILS),
    ("v9@cet-xsaves", Verdict.HOLDS),
    ("host-fields-from-msrs@stack-map-changed", Verdict.HOLDS),
    ("host-fields-from-msrs@host-supervisor-shstk", Verdict.HOLDS),
    ("no-sync@cet-xsaves", Verdict.FAILS),
    ("intercept-all@stack-map-changed", Verdict.FAILS),
], ids=["v9's host fields are wrong on a changed map",
        "v9's host SSP1-3 = 0 are wrong with supervisor shadow stacks",
        "v9's host fields are right on a CET host", "the MSRs' values are right on a changed map",
        "the MSRs' values are right with supervisor shadow stacks",
        "a planted bug stays planted on any host", "intercepting does not fix the host fields"])
def test_a_design_on_another_host_expects_what_its_host_fields_give(
        name: str, expected: Verdict) -> None:
    d = design(name)
    assert d.name == name and d.expected is expected
    assert d.host is HOST_CONFIGS[name.partition("@")[2]]


def test_a_design_on_its_own_host_is_itself() -> None:
    assert on_host(DESIGNS["v9"], LINUX) is DESIGNS["v9"]
    assert design("v9@linux-6.19") is DESIGNS["v9"]


@pytest.mark.parametrize(("name", "says"), [
    ("v9@nowhere", "host configuration must be a known name, not 'nowhere'"),
    ("v10@cet-xsaves", "design must be a known name, not 'v10@cet-xsaves'"),
    ("v9@cet-xsaves@cet-xsaves", "host configuration must be a known name, not 'cet-xsaves@"),
], ids=["an unknown host", "an unknown design", "two hosts"])
def test_an_unknown_pair_is_refused_naming_it(name: str, says: str) -> None:
    with pytest.raises(UnknownNameError, match=says):
        design(name)

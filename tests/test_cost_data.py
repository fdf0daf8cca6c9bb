"""Workload profiles and exit-cost figures: built-in data, file forms, round trips, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from msrvirt.cost.constants import DEFAULT_COSTS, ExitCosts, Figure, measured_costs
from msrvirt.cost.workload import RATE_FIELDS, WORKLOADS, Rate, Workload, workload
from msrvirt.errors import FileFormatError, UnknownNameError, UsageError
from msrvirt.report.cost import workload_json


def test_builtin_profiles() -> None:
    assert list(WORKLOADS) == ["linux-fred", "linux-fred-idle"]
    assert workload("linux-fred") is WORKLOADS["linux-fred"]


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_every_rate_of_a_builtin_profile_has_a_source(name: str) -> None:
    w = WORKLOADS[name]
    assert [n for n, _ in w.rates()] == list(RATE_FIELDS)
    for field, rate in w.rates():
        assert len(rate.source) > 20, field
        assert rate.source != "not in the profile (0)", field


def test_a_profile_round_trips_through_its_file_form(tmp_path: Path) -> None:
    for w in WORKLOADS.values():
        path = tmp_path / f"{w.name}.json"
        path.write_text(json.dumps(workload_json(w)))
        assert workload(str(path)) == w


def test_a_toml_profile(tmp_path: Path) -> None:
    rates = "\n".join(f'[rates.{f}]\nper_second = 1\nsource = "s"' for f in RATE_FIELDS
                      if f != "guest_pl0_ssp_writes")
    path = tmp_path / "w.toml"
    path.write_text(f'name = "t"\ndescription = "d"\nguest_shstk = false\n{rates}\n')
    w = workload(str(path))
    assert w.guest_syscalls == Rate(per_second=1.0, source="s")
    assert w.guest_pl0_ssp_writes.per_second == 0  # optional, defaults to 0


def _obj(**changes: Any) -> dict[str, Any]:
    obj = workload_json(WORKLOADS["linux-fred"])
    obj.update(changes)
    return obj


def _rates(**changes: Any) -> dict[str, Any]:
    rates = dict(_obj()["rates"])
    rates.update(changes)
    return {k: v for k, v in rates.items() if v is not None}


@pytest.mark.parametrize(("obj", "message"), [
    ([], "w: a workload must be an object, not list"),
    ({"name": "x"}, "w: a workload must have 'description'"),
    (_obj(extra=1), "w: workload keys must be among ['name', 'description', 'guest_shstk', 'rates'],"
                    " not 'extra'"),
    (_obj(guest_shstk="yes"), "w: guest_shstk must be true or false, not 'yes'"),
    (_obj(rates=[]), "w: rates must be an object"),
    (_obj(rates=_rates(guest_vmcalls={"per_second": 1, "source": "s"})),
     "w: rates must be among ['guest_context_switches',"),
    (_obj(rates=_rates(guest_nmis=None)), "w: rates must have 'guest_nmis'"),
    (_obj(rates=_rates(guest_nmis=5)), 'w: rate guest_nmis must be {"per_second": number, "source": str}'),
    (_obj(rates=_rates(guest_nmis={"per_second": "5", "source": "s"})),
     "w: rate guest_nmis per_second must be a number, not '5'"),
    (_obj(rates=_rates(guest_nmis={"per_second": True, "source": "s"})),
     "w: rate guest_nmis per_second must be a number, not True"),
    (_obj(rates=_rates(guest_nmis={"per_second": -1, "source": "s"})),
     "w: rate guest_nmis: a rate must be a finite number >= 0, not -1.0"),
], ids=["not an object", "missing key", "extra key", "shstk not a bool", "rates not an object",
        "unknown rate", "missing rate", "rate not an object", "rate a string", "rate a bool",
        "negative rate"])
def test_malformed_profiles_are_one_line_errors(obj: object, message: str) -> None:
    with pytest.raises(FileFormatError) as exc:
        Workload.from_obj(obj, origin="w")
    assert str(exc.value).startswith(message)
    assert "\n" not in str(exc.value)


def test_unknown_names_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match="workload must be a known name, not 'db'"):
        workload("db")
    with pytest.raises(FileFormatError, match="cannot read"):
        workload(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(FileFormatError, match="not valid json"):
        workload(str(bad))


def test_a_rate_must_be_finite_and_not_negative() -> None:
    for value in (-1.0, float("inf"), float("nan")):
        with pytest.raises(UsageError):
            Rate(per_second=value, source="s")


def test_the_default_costs_are_marked_default_with_sources() -> None:
    assert [name for name, _ in DEFAULT_COSTS.figures()] == [
        "cpu_ghz", "in_kernel_exit_cycles", "userspace_exit_cycles"]
    assert not any(f.measured for _, f in DEFAULT_COSTS.figures())
    assert "assumed" in DEFAULT_COSTS.cpu_ghz.source
    assert "assumed" in DEFAULT_COSTS.in_kernel_exit_cycles.source
    assert "assumed" in DEFAULT_COSTS.userspace_exit_cycles.source
    assert DEFAULT_COSTS.in_kernel_exit_cycles.value == 1300
    assert DEFAULT_COSTS.userspace_exit_cycles.value == 1300 + 2500


_pos = st.floats(min_value=1e-3, max_value=1e9, allow_nan=False, allow_infinity=False)


@given(_pos, _pos, _pos, st.booleans(), st.text(max_size=20))
def test_exit_costs_round_trip_through_json(ghz: float, k: float, u: float, measured: bool,
                                            text: str) -> None:
    costs = ExitCosts(host=text,
                      cpu_ghz=Figure(value=ghz, unit="GHz", source=text, measured=measured),
                      in_kernel_exit_cycles=Figure(value=k, unit="cycles", source=text,
                                                   measured=measured),
                      userspace_exit_cycles=Figure(value=u, unit="cycles", source="",
                                                   measured=not measured))
    assert ExitCosts.from_obj(json.loads(json.dumps(costs.to_obj())), origin="c") == costs


def _costs(**changes: Any) -> dict[str, Any]:
    obj = DEFAULT_COSTS.to_obj()
    obj.update(changes)
    return obj


def _fig(**changes: Any) -> dict[str, Any]:
    obj = DEFAULT_COSTS.cpu_ghz.to_obj()
    obj.update(changes)
    return obj


@pytest.mark.parametrize(("obj", "message"), [
    ("x", "c: exit costs must be an object, not str"),
    ({"host": "h"}, "c: exit costs must have 'cpu_ghz'"),
    (_costs(more=1), "c: exit cost keys must be among"),
    (_costs(cpu_ghz=3), "c: cpu_ghz must be an object with keys"),
    (_costs(cpu_ghz=_fig(value=0)), "c: cpu_ghz value must be a number > 0, not 0"),
    (_costs(cpu_ghz=_fig(value="3")), "c: cpu_ghz value must be a number > 0, not '3'"),
    (_costs(cpu_ghz=_fig(unit="MHz")), "c: cpu_ghz unit must be 'GHz', not 'MHz'"),
    (_costs(cpu_ghz=_fig(measured="no")), "c: cpu_ghz measured must be true or false, not 'no'"),
])
def test_malformed_cost_files_are_one_line_errors(obj: object, message: str) -> None:
    with pytest.raises(FileFormatError) as exc:
        ExitCosts.from_obj(obj, origin="c")
    assert str(exc.value).startswith(message)


def test_measured_costs_convert_nanoseconds_with_the_clock() -> None:
    clock = Figure(value=2.5, unit="GHz", source="cpuinfo", measured=True)
    costs = measured_costs(host="h", cpu_ghz=clock, in_kernel_ns=400, in_kernel_source="k",
                           userspace_ns=10_000, userspace_source="u")
    assert costs.in_kernel_exit_cycles.value == 1000
    assert costs.userspace_exit_cycles.value == 25_000
    assert costs.in_kernel_exit_cycles.measured and costs.userspace_exit_cycles.measured
    assert costs.in_kernel_exit_cycles.source == "k: 400 ns x 2.500 GHz"
    # Measured cycles at the measured clock: the CPU time is the measured time.
    assert costs.cpu_percent(1000) == pytest.approx(1000 * 400e-9 * 100)

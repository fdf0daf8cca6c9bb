"""The claims table as data and the one judging function: parsing, checking each need
against its evidence kind, combining scoped verdicts, and new kinds plugging in."""

from __future__ import annotations

import copy
import tomllib
from dataclasses import replace
from importlib import resources
from typing import Any

import pytest

from msrvirt.errors import FileFormatError
from msrvirt.review.judge import judge, load_claims
from msrvirt.review.kinds import SPECS, names, num, validate
from msrvirt.review.table import Axis, EvidenceKind, Need, Scope, parse_table
from msrvirt.review.verdicts import Bearing, Evidence, Judgement, combine

H, F, P, U = Judgement.HOLDS, Judgement.FAILS, Judgement.PARTLY, Judgement.UNDECIDED
RAW = tomllib.loads((resources.files("msrvirt.review") / "claims.toml").read_text())


def _raw() -> dict[str, Any]:
    return copy.deepcopy(RAW)


def test_the_builtin_table_loads_and_every_need_fits_its_kind() -> None:
    table = load_claims()
    assert [c.number for c in table.claims] == list(range(1, len(table.claims) + 1))
    assert {n.kind for c in table.claims for n in c.needs} <= set(SPECS)


@pytest.mark.parametrize(("combined", "parts"), [
    (H, [H, H]), (F, [F]), (U, [U, U]), (P, [H, F]), (P, [H, U]), (P, [H, F, U]), (F, [F, U]),
], ids=["all holding scopes hold", "a failing scope alone fails", "nothing decided is undecided",
        "holding and failing scopes hold in part", "holding and undecided scopes hold in part",
        "all three kinds hold in part", "failing and undecided scopes fail"])
def test_scoped_verdicts_combine(combined: Judgement, parts: list[Judgement]) -> None:
    assert combine(parts) is combined


@pytest.mark.parametrize(("text", "axis", "label"), [
    ("msr:RSP1-3", Axis.MSR, "RSP1-3"), ("host: a CET host", Axis.HOST, "a CET host"),
    ("part:the rule: its text", Axis.PART, "the rule: its text"),
], ids=["an MSR scope", "a host scope, spaces trimmed", "a colon in the label is kept"])
def test_scopes_parse(text: str, axis: Axis, label: str) -> None:
    assert Scope.parse(text) == Scope(axis=axis, label=label)


def _mutate(path: str, value: Any) -> dict[str, Any]:
    raw = _raw()
    target: Any = raw
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target[key]
    last = keys[-1]
    if value is KeyError:
        del target[last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return raw


@pytest.mark.parametrize(("path", "value", "says"), [
    ("claims.0.needs.0.kind", "gossip", "gossip"),
    ("claims.0.needs.0.scope", "planet:mars", "planet"),
    ("claims.0.message", "nobody", "nobody"),
    ("claims.1.id", "vmcs-eight-safe", "unique"),
    ("claims.3.links.0.claim", "no-such-claim", "no-such-claim"),
    ("claims.3.links.0.relation", "likes", "likes"),
    ("claims.0.quote", "", "quote"),
    ("claims.0.needs", [], "must need some evidence"),
    ("claims.0.colour", "red", "colour"),
    ("messages.seed.who", KeyError, "who"),
], ids=["an unknown evidence kind", "an unknown scope axis", "an unknown message",
        "a duplicate claim id", "a link to an unknown claim", "an unknown relation",
        "an empty quote", "a claim needing nothing", "an unknown key", "a message without who"])
def test_a_malformed_table_is_refused_naming_the_problem(path: str, value: Any, says: str) -> None:
    with pytest.raises(FileFormatError, match=says):
        parse_table(_mutate(path, value))


@pytest.mark.parametrize(("need", "says"), [
    ({"kind": "check", "design": "v99", "expect": "holds"}, "v99"),
    ({"kind": "check", "expect": "holds"}, "design"),
    ({"kind": "check", "design": "v9", "expect": "maybe"}, "maybe"),
    ({"kind": "check", "design": "v9", "colour": "red"}, "colour"),
    ({"kind": "bitmap", "msrs": ["NO_SUCH_MSR"]}, "NO_SUCH_MSR"),
    ({"kind": "check", "design": "no-sync", "expect": "fails", "breaks": ["speed"]}, "speed"),
    ({"kind": "consumes", "event": "coffee", "msrs": ["FRED_RSP0"]}, "coffee"),
    ({"kind": "host-check", "variant": "mars"}, "mars"),
    ({"kind": "host-check", "variant": "cet-xsaves", "design": "v9@cet-xsaves"},
     "cet-xsaves@cet-xsaves"),
    ({"kind": "nested", "aspect": "speed", "without": "v9"}, r"aspect speed takes \['aspect',"),
    ({"kind": "nested", "aspect": "speed", "without": "v9", "with": "v8"}, "v8"),
    ({"kind": "nested", "aspect": "mood"}, "mood"),
    ({"kind": "nested", "aspect": "state", "merges": ["v9"], "msrs": ["FRED_RSP1"],
      "without": "upstream"}, "aspect state takes"),
], ids=["an unknown design", "a missing parameter", "an unknown expectation",
        "an unknown parameter", "an unknown MSR", "an unknown invariant", "an unknown event",
        "an unknown host configuration", "a design already on another host",
        "a nested speed need without the list it compares with", "an unknown merge list",
        "an unknown nested aspect", "a nested state need with a speed parameter"])
def test_a_need_that_does_not_fit_its_kind_is_refused(need: dict[str, Any], says: str) -> None:
    raw = _raw()
    raw["claims"][0]["needs"] = [need]
    table = parse_table(raw)
    with pytest.raises(FileFormatError, match=says):
        validate(table.claims[0])


def test_a_new_evidence_kind_plugs_in_without_touching_the_judge(
        monkeypatch: pytest.MonkeyPatch) -> None:
    claim = load_claims().claim("host-fields-stack-map")
    scope = "relying on it breaks when the kernel changes its map"

    def fake(need: Need, inputs: object) -> Evidence:
        assert need.get("variant") == "stack-map-changed"
        return Evidence(kind=need.kind, scope=need.scope, bearing=Bearing.SUPPORTS,
                        summary="stack-map-changed breaks host-safety")

    inputs: Any = None  # the source and check producers of this claim do not run below
    monkeypatch.setitem(SPECS, EvidenceKind.HOST_CHECK,
                        replace(SPECS[EvidenceKind.HOST_CHECK], produce=fake))
    monkeypatch.setitem(SPECS, EvidenceKind.CHECK, replace(
        SPECS[EvidenceKind.CHECK], produce=lambda need, _: Evidence(
            kind=need.kind, scope=need.scope, bearing=Bearing.INFORMS, summary="v9 holds")))
    r = judge(claim, inputs)
    assert r.scope(scope).judgement is H
    assert r.scope(scope).reason == "stack-map-changed breaks host-safety"
    assert r.judgement is H


@pytest.mark.parametrize(("indices", "text"), [
    ((0x1CD, 0x1CE, 0x1CF), "FRED_RSP1-3"),
    ((0x1CC, 0x1D0, 0x1D4), "FRED_RSP0, FRED_STKLVLS and FRED_CONFIG"),
    ((0x1CD, 0x1CF), "FRED_RSP1 and FRED_RSP3"),
    ((0x6A4,), "PL0_SSP"),
], ids=["consecutive numbers group", "others are listed", "a gap does not group", "one name"])
def test_msr_names_read_as_prose(indices: tuple[int, ...], text: str) -> None:
    assert names(indices) == text


@pytest.mark.parametrize(("value", "text"), [
    (100_000.000278, "100,000"), (12.34, "12.3"), (0.000556, "0.000556"), (0.0, "0"),
], ids=["large rates lose their fraction", "mid rates keep one decimal",
        "small rates keep three significant digits", "zero is zero"])
def test_rates_read_as_prose(value: float, text: str) -> None:
    assert num(value) == text

"""Hostile input on every FILE option of every verb: the contract holds for each.

Every option that reads a file gets: a missing file, a directory, empty input, binary
garbage, text that is not UTF-8, more than the size limit, deep nesting, a 5000-digit and
a 65-bit integer, NaN, the wrong top-level type, a FIFO, character devices (one that reads
nothing, one that reads zeros forever), symlinks (good and dangling), standard input
(`-`), and Hypothesis-made mutations of a valid document.  The contract: exit status 0
(or 1) for good input, 2 with exactly one line on stderr naming the file for bad input,
never a traceback.  Verbs that would then run a VM or the whole review stop at the point
where the input has been accepted (`reached`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostile import (
    NULL,
    VALID,
    ZERO,
    Result,
    assert_contract,
    char_device,
    fifo_writer,
    needs_root,
    run,
)
from msrvirt.dataio import MAX_DEPTH, MAX_INPUT_BYTES


class Reached(Exception):
    """Raised where a verb would start its real work: its input was accepted."""


@pytest.fixture(autouse=True)
def stop_before_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """probe and conformance stop before opening /dev/kvm, review before its 20 s of work."""
    def reached(*_: object, **__: object) -> None:
        raise Reached

    monkeypatch.setattr("msrvirt.cli.probe.Kvm", reached)
    monkeypatch.setattr("msrvirt.cli.conformance.Kvm", reached)
    monkeypatch.setattr("msrvirt.cli.review.compute_inputs", reached)


def cli(capsys: pytest.CaptureFixture[str], argv: list[str], stdin: bytes | None = None) -> Result:
    """Run the CLI; an accepted input that reached the work counts as exit status 0."""
    try:
        return run(capsys, *argv, stdin=stdin)
    except Reached:
        capsys.readouterr()
        return Result(status=0, out="", err="")


# option -> (format of its file, argv around the path, exit status for the valid document)
Argv = Callable[[str], list[str]]
OPTIONS: dict[str, tuple[str, Argv, int]] = {
    "explain --filter": ("filter", lambda p: ["explain", "--msr", "fred_config", "--filter", p], 0),
    "decide --filter": ("filter", lambda p: ["decide", "--msr", "fred_config", "--read",
                                             "--filter", p], 0),
    "bitmap --filter": ("filter", lambda p: ["bitmap", "--filter", p], 0),
    "filter check FILE": ("filter", lambda p: ["filter", "check", p], 0),
    "explain --host": ("host", lambda p: ["explain", "--msr", "fred_rsp0", "--host", p], 0),
    "decide --host": ("host", lambda p: ["decide", "--msr", "fred_rsp0", "--read", "--host", p], 0),
    "bitmap --host": ("host", lambda p: ["bitmap", "--host", p], 0),
    "explain --host (a saved fingerprint)": (
        "fingerprint", lambda p: ["explain", "--msr", "fred_rsp0", "--host", p], 0),
    "explain --diff host:FILE": ("host", lambda p: ["explain", "--diff", f"host:{p}"], 0),
    "bitmap --diff host:FILE": ("host", lambda p: ["bitmap", "--diff", f"host:{p}"], 0),
    "probe FILE": ("scenario", lambda p: ["probe", p], 0),
    "conformance --scenario": ("scenario", lambda p: ["conformance", "--scenario", p], 0),
    "cost --workload": ("workload", lambda p: ["cost", "--policy", "fred-v9", "--workload", p], 0),
    "cost --costs": ("costs", lambda p: ["cost", "--policy", "fred-v9", "--costs", p], 0),
    "review --costs": ("costs", lambda p: ["review", "--no-live", "--html", "-", "--costs", p], 0),
    "bitmap --nested FILE": ("l1", lambda p: ["bitmap", "--nested", p], 0),
    "explain --nested FILE": ("l1", lambda p: ["explain", "--msr", "fs_base", "--nested", p], 0),
}


def valid_bytes(option: str) -> bytes:
    return json.dumps(VALID[OPTIONS[option][0]]).encode()


# case -> (file content, what the one error line says)
BAD_CONTENT: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "not valid json"),
    "binary garbage": (bytes(range(256)) * 4, "must be UTF-8"),
    "Latin-1, not UTF-8": ('{"name": "caf\xe9"}'.encode("latin-1"), "must be UTF-8"),
    "more than the size limit": (b" " * (MAX_INPUT_BYTES + 1), "must be at most 16 MiB"),
    "deep nesting (100,000 levels)": (b"[" * 100_000 + b"]" * 100_000, "nest at most"),
    "nesting one past the limit": (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1),
                                   "nest at most"),
    "a 5000-digit integer": (b'{"a": ' + b"9" * 5000 + b"}", "wider than 64 bits"),
    "a 65-bit integer": (b'{"a": 36893488147419103232}', "wider than 64 bits"),
    "NaN": (b'{"a": NaN}', "not a number msrvirt accepts"),
    "a float that overflows": (b'{"a": 1e999}', "not finite"),
    "a list, not an object": (b"[1, 2, 3]", "must be an object"),
    "a string, not an object": (b'"filter"', "must be an object"),
    "NUL bytes": (b'{"a": 1}\x00\x00', "not valid json"),
}


def file_with(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "input.json"
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("case", BAD_CONTENT)
def test_bad_content_is_one_line_naming_the_file(
        option: str, case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, says = BAD_CONTENT[case]
    path = file_with(tmp_path, data)
    res = cli(capsys, OPTIONS[option][1](path))
    assert_contract(res, names=path)
    assert res.status == 2 and says in res.err, res.err


@pytest.mark.parametrize("option", OPTIONS)
def test_a_missing_file_and_a_directory_are_one_line(
        option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for path, says in ((tmp_path / "missing.json", "No such file"),
                       (tmp_path, "Is a directory")):
        res = cli(capsys, OPTIONS[option][1](str(path)))
        assert_contract(res, names=str(path))
        assert res.status == 2 and says in res.err


@pytest.mark.parametrize("option", OPTIONS)
def test_the_valid_document_is_accepted_through_a_file_a_symlink_and_stdin(
        option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.json"
    good.write_bytes(valid_bytes(option))
    link = tmp_path / "link.json"
    link.symlink_to(good)
    expected = OPTIONS[option][2]
    for argv, stdin in ((OPTIONS[option][1](str(good)), None),
                        (OPTIONS[option][1](str(link)), None),
                        (OPTIONS[option][1]("-"), valid_bytes(option))):
        res = cli(capsys, argv, stdin=stdin)
        assert_contract(res)
        assert res.status == expected, res.err
    assert link.is_symlink() and link.resolve() == good  # reading never replaces anything


@pytest.mark.parametrize("option", OPTIONS)
def test_a_dangling_symlink_and_garbage_on_stdin(
        option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "nowhere.json")
    res = cli(capsys, OPTIONS[option][1](str(dangling)))
    assert_contract(res, names=str(dangling))
    assert res.status == 2
    res = cli(capsys, OPTIONS[option][1]("-"), stdin=b"\xff\xfe garbage")
    assert_contract(res, names="standard input")
    assert res.status == 2 and "must be UTF-8" in res.err


@pytest.mark.parametrize("option", OPTIONS)
def test_a_fifo_is_read_to_its_end(option: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    with fifo_writer(tmp_path / "good.fifo", valid_bytes(option)) as fifo:
        res = cli(capsys, OPTIONS[option][1](str(fifo)))
    assert_contract(res)
    assert res.status == OPTIONS[option][2], res.err
    with fifo_writer(tmp_path / "bad.fifo", b"{") as fifo:
        res = cli(capsys, OPTIONS[option][1](str(fifo)))
    assert_contract(res, names=str(fifo))
    assert res.status == 2


@needs_root
@pytest.mark.parametrize("option", OPTIONS)
def test_character_devices_are_read_up_to_the_limit(
        option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = char_device(tmp_path / "null", NULL)
    endless = char_device(tmp_path / "zero", ZERO)
    res = cli(capsys, OPTIONS[option][1](str(empty)))
    assert_contract(res, names=str(empty))
    assert res.status == 2 and "not valid json" in res.err
    res = cli(capsys, OPTIONS[option][1](str(endless)))
    assert_contract(res, names=str(endless))
    assert res.status == 2 and "must be at most 16 MiB" in res.err


def test_two_options_cannot_both_read_stdin(capsys: pytest.CaptureFixture[str]) -> None:
    res = cli(capsys, ["explain", "--host", "-", "--filter", "-"], stdin=b"{}")
    assert_contract(res)
    assert res.status == 2 and "only one FILE option can read standard input" in res.err


def test_toml_is_read_by_its_suffix_and_sniffed_on_stdin(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = b'default = "deny"\n[[ranges]]\nflags = ["read"]\nbase = 0\nnmsrs = 32\nallow = ["IA32_TSC"]\n'
    path = tmp_path / "f.toml"
    path.write_bytes(text)
    assert cli(capsys, ["filter", "check", str(path)]).status == 0
    assert cli(capsys, ["filter", "check", "-"], stdin=text).status == 0
    path.write_bytes(b"a = " + b"[" * 5000)
    res = cli(capsys, ["filter", "check", str(path)])
    assert_contract(res, names=str(path))
    assert res.status == 2


# -- values that would be truncated on their way to KVM are refused where they are read ------

def scenario_with(**step: object) -> dict[str, Any]:
    return {"name": "range checks", "steps": [step]}


@pytest.mark.parametrize(("doc", "says"), [
    (scenario_with(guest=[{"write": "IA32_FRED_RSP0", "value": 2**64}]), "wider than 64 bits"),
    (scenario_with(guest=[{"write": "IA32_FRED_RSP0", "value": "0x10000000000000000"}]),
     "step 0 op 0 value must be in 0..0xffffffffffffffff"),
    (scenario_with(guest=[{"write": "IA32_FRED_RSP0", "value": -1}]),
     "step 0 op 0 value must be in 0..0xffffffffffffffff, not -1"),
    (scenario_with(host=[{"read": "0x100000000"}]), "indices are 32-bit"),
    (scenario_with(enable_exits="0x10000000000000000"),
     "step 0 enable_exits must be in 0..0xffffffffffffffff"),
    (scenario_with(set_filter={"flags": "0x100000000", "ranges": []}),
     "filter flags must be in 0..0xffffffff"),
    (scenario_with(set_filter={"ranges": [{"flags": "0x100000001", "base": 0, "nmsrs": 1,
                                           "bitmap": "01"}]}),
     "range 0 flags must be in 0..0xffffffff"),
    (scenario_with(set_filter={"ranges": [{"flags": ["read"], "base": "0x100000000",
                                           "nmsrs": 1, "bitmap": "01"}]}),
     "range 0 base must be an integer, hex string or MSR name"),
    (scenario_with(set_filter={"ranges": [{"flags": ["read"], "base": 0,
                                           "nmsrs": 2**32, "bitmap": "01"}]}),
     "range 0 nmsrs must be in 0..0xffffffff"),
    ({"name": "answers", "answers": {"IA32_XSS": {"read": "0x1" + "0" * 16}},
      "steps": [{"guest": [{"read": "IA32_XSS"}]}]},
     "answer for IA32_XSS read must be in 0..0xffffffffffffffff"),
    ({"name": "sweep", "sweep": {"seed": "0x1" + "0" * 16}}, "sweep seed must be in"),
], ids=["a write of 2**64", "a write of 2**64 as hex", "a negative write",
        "a 33-bit MSR index", "a 65-bit exit mask", "33-bit filter flags",
        "33-bit range flags", "a 33-bit range base", "a 33-bit nmsrs",
        "a 65-bit read answer", "a 65-bit sweep seed"])
def test_probe_scenario_values_are_range_checked(
        doc: dict[str, Any], says: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = file_with(tmp_path, json.dumps(doc).encode())
    for argv in (["probe", path], ["conformance", "--scenario", path]):
        res = cli(capsys, argv)
        assert_contract(res, names=path)
        assert res.status == 2 and says in res.err, res.err


@pytest.mark.parametrize(("doc", "says"), [
    ({**VALID["host"], "msr_index_list": ["0x100000000"]},
     "host msr_index_list entry must be in 0..0xffffffff"),
    ({**VALID["fingerprint"], "msr_index_list": ["0x100000000"]},
     "msr_index_list must be in 0..0xffffffff"),
    ({**VALID["fingerprint"], "cpuid": [{**VALID["fingerprint"]["cpuid"][0],
                                         "eax": "0x100000000"}]},
     "cpuid eax must be in 0..0xffffffff"),
], ids=["a 33-bit index in a host profile", "a 33-bit index in a fingerprint",
        "a 33-bit CPUID register"])
def test_host_files_are_range_checked(doc: dict[str, Any], says: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = file_with(tmp_path, json.dumps(doc).encode())
    res = cli(capsys, ["explain", "--host", path])
    assert_contract(res, names=path)
    assert res.status == 2 and says in res.err, res.err


# -- Hypothesis: mutations of each valid document --------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
    | st.sampled_from(["0x1cc", "IA32_FRED_RSP0", "read", "write", "allow", "deny", "gp", "ok",
                       "vmx", "intel", "fred", "host", "-1", "0x", ""]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc[:8]):
            yield from _paths(value, (*prefix, i))


def _replaced(doc: Any, path: tuple[Any, ...], value: Any, *, delete: bool) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    out: Any = dict(doc) if isinstance(doc, dict) else list(doc)
    if delete and not rest:
        del out[head]
    else:
        out[head] = _replaced(doc[head], rest, value, delete=delete)
    return out


@st.composite
def mutated(draw: st.DrawFn, fmt: str) -> Any:
    """The valid document of ``fmt`` with one to three subtrees replaced or deleted."""
    doc = VALID[fmt]
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(list(_paths(doc))))
        delete = bool(path) and draw(st.booleans())
        doc = _replaced(doc, path, draw(JSON_VALUES), delete=delete)
    return doc


@pytest.mark.parametrize("option", ["explain --filter", "filter check FILE", "explain --host",
                                    "explain --host (a saved fingerprint)", "probe FILE",
                                    "cost --workload", "cost --costs", "bitmap --nested FILE"])
@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_documents_keep_the_contract(
        option: str, data: st.DataObject, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    doc = data.draw(mutated(OPTIONS[option][0]))
    path = file_with(tmp_path, json.dumps(doc).encode())
    res = cli(capsys, OPTIONS[option][1](path))
    assert_contract(res)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300))
def test_random_bytes_keep_the_contract(data: bytes, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = file_with(tmp_path, data)
    for option in ("filter check FILE", "explain --host", "probe FILE", "cost --workload"):
        res = cli(capsys, OPTIONS[option][1](path))
        assert_contract(res)

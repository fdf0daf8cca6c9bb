"""Hostile output paths on every output option: each is written by the one writer's rules.

Options: `bitmap --out`, `cost --plot`, `calibrate --out` (measuring stubbed out),
`probe FILE --json OUT` (on /dev/kvm) and `review --html` (its refusals come before the
work; one real run writes through a symlink to a device).  Cases: a new file, an existing
file (replaced atomically, mode kept), symlinks (followed, never replaced), a character
device that takes the bytes and one that fails (ENOSPC), a FIFO, `-`, /proc/self/fd/1
through a symlink, a directory, a block device, a socket, a missing directory (never
created), a path through a file.  After every case: no temporary file left behind.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from hostile import (
    BLOCK,
    CORPUS,
    FULL,
    NULL,
    Result,
    assert_contract,
    block_device,
    char_device,
    fifo_reader,
    kvm_or_skip,
    leftovers,
    needs_root,
    run,
)
from msrvirt import api
from msrvirt.cost.constants import DEFAULT_COSTS

PAGE = api.bitmap(api.scenario()).to_bytes()
SCENARIO = str(CORPUS / "01-exit-test-filter-allow.json")


@pytest.fixture(autouse=True)
def quick_calibrate(monkeypatch: pytest.MonkeyPatch) -> None:
    """`calibrate` without its measuring: the built-in figures, written like measured ones."""
    monkeypatch.setattr("msrvirt.cli.calibrate.measure", lambda iterations, repeats: DEFAULT_COSTS)


def _is_png(data: bytes) -> bool:
    return data.startswith(b"\x89PNG\r\n\x1a\n")


def _is_costs(data: bytes) -> bool:
    return bool(json.loads(data) == DEFAULT_COSTS.to_obj())


def _is_probe(data: bytes) -> bool:
    doc = json.loads(data)
    return set(doc) == {"host", "scenario", "guest_features", "results"} and bool(doc["results"])


# option -> (argv around the output path, what the written bytes must be)
OPTIONS: dict[str, tuple[Callable[[str], list[str]], Callable[[bytes], bool]]] = {
    "bitmap --out": (lambda p: ["bitmap", "--out", p], lambda data: data == PAGE),
    "cost --plot": (lambda p: ["cost", "--policy", "fred-v9", "--plot", p], _is_png),
    "calibrate --out": (lambda p: ["calibrate", "--out", p], _is_costs),
    "probe --json": (lambda p: ["probe", SCENARIO, "--json", p], _is_probe),
}


@pytest.fixture(params=list(OPTIONS))
def option(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "probe --json":
        kvm_or_skip()
    return name


def write(capsys: pytest.CaptureFixture[str], option: str, path: Path | str) -> Result:
    return run(capsys, *OPTIONS[option][0](str(path)))


def test_a_new_file_gets_the_usual_mode(option: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "new.out"
    res = write(capsys, option, out)
    assert_contract(res)
    assert res.status == 0 and OPTIONS[option][1](out.read_bytes())
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    assert leftovers(tmp_path) == []


def test_an_existing_file_is_replaced_atomically_and_keeps_its_mode(
        option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "old.out"
    out.write_bytes(b"old")
    out.chmod(0o640)
    before = out.stat().st_ino
    res = write(capsys, option, out)
    assert_contract(res)
    assert res.status == 0 and OPTIONS[option][1](out.read_bytes())
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert out.stat().st_ino != before  # renamed over, never truncated in place
    assert leftovers(tmp_path) == []


def test_a_symlink_is_followed_never_replaced(option: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "target.out"
    target.write_bytes(b"old")
    link = tmp_path / "link.out"
    link.symlink_to(target)
    dangling = tmp_path / "dangling.out"
    dangling.symlink_to(tmp_path / "created.out")
    for path, written in ((link, target), (dangling, tmp_path / "created.out")):
        res = write(capsys, option, path)
        assert_contract(res)
        assert res.status == 0 and OPTIONS[option][1](written.read_bytes())
        assert path.is_symlink()
    assert leftovers(tmp_path) == []


@needs_root
def test_a_character_device_is_written_as_a_stream_and_stays_a_device(
        option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    null = char_device(tmp_path / "null", NULL)
    link = tmp_path / "link-to-null"
    link.symlink_to(null)
    for path in (null, link):
        res = write(capsys, option, path)
        assert_contract(res)
        assert res.status == 0
    assert stat.S_ISCHR(null.stat().st_mode) and link.is_symlink()
    full = char_device(tmp_path / "full", FULL)
    res = write(capsys, option, full)
    assert_contract(res, names=str(full))
    assert res.status == 2 and "No space left on device" in res.err
    assert stat.S_ISCHR(full.stat().st_mode)
    assert leftovers(tmp_path) == []


def test_a_fifo_is_written_as_a_stream(option: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    with fifo_reader(tmp_path / "out.fifo") as got:
        res = write(capsys, option, tmp_path / "out.fifo")
    assert_contract(res)
    assert res.status == 0 and OPTIONS[option][1](got[0])
    assert stat.S_ISFIFO((tmp_path / "out.fifo").stat().st_mode)


def _refusals(tmp_path: Path) -> list[tuple[Path, str]]:
    directory = tmp_path / "dir"
    directory.mkdir()
    sock = tmp_path / "sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock))
    server.close()
    a_file = tmp_path / "a-file"
    a_file.write_bytes(b"")
    cases = [(directory, "it is a directory"), (sock, "it is a socket"),
             (tmp_path / "missing" / "out", "does not exist"),
             (a_file / "out", "Not a directory")]
    if os.geteuid() == 0:
        cases.append((block_device(tmp_path / "block", BLOCK), "it is a block device"))
    return cases


def test_directories_block_devices_sockets_and_missing_directories_are_refused(
        option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for path, says in _refusals(tmp_path):
        res = write(capsys, option, path)
        assert_contract(res, names=str(path))
        assert res.status == 2 and says in res.err, res.err
    assert not (tmp_path / "missing").exists()  # no directory made that nobody asked for
    assert stat.S_ISBLK((tmp_path / "block").stat().st_mode) or os.geteuid() != 0
    assert leftovers(tmp_path) == []


def test_nothing_is_left_behind_when_the_rename_fails(
        option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(src: str, dst: str) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "replace", refuse)
    res = write(capsys, option, tmp_path / "out")
    assert_contract(res, names=str(tmp_path / "out"))
    assert res.status == 2 and "Operation not permitted" in res.err
    assert list(tmp_path.iterdir()) == []


def msrvirt(*argv: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "msrvirt", *argv], capture_output=True,
                          timeout=120, check=False)


@pytest.mark.parametrize(("argv", "check"), [
    (["bitmap", "--out", "-"], lambda data: data == PAGE),
    (["cost", "--policy", "fred-v9", "--plot", "-"], _is_png),
], ids=["bitmap --out -", "cost --plot -"])
def test_dash_writes_the_bytes_to_stdout_and_the_report_to_stderr(
        argv: list[str], check: Callable[[bytes], bool]) -> None:
    done = msrvirt(*argv)
    assert done.returncode == 0, done.stderr
    assert check(done.stdout)
    assert done.stderr  # the verb's own report, beside the stream


def test_probe_json_dash_prints_the_document_and_the_table_to_stderr() -> None:
    kvm_or_skip()
    done = msrvirt("probe", SCENARIO, "--json", "-")
    assert done.returncode == 0, done.stderr
    assert _is_probe(done.stdout) and b"guest_rdmsr" in done.stderr


def test_stdout_through_a_symlink_to_proc_self_fd_1(tmp_path: Path) -> None:
    link = tmp_path / "stdout"
    link.symlink_to("/proc/self/fd/1")
    done = msrvirt("bitmap", "--out", str(link))
    assert done.returncode == 0, done.stderr
    assert PAGE in done.stdout and link.is_symlink()
    assert leftovers(tmp_path) == []


def test_dash_and_json_cannot_share_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    res = run(capsys, "bitmap", "--out", "-", "--json")
    assert_contract(res)
    assert res.status == 2 and "only one output can go to standard output" in res.err


@pytest.mark.parametrize(("make", "says"), [
    (lambda tmp: tmp, "it is a directory"),
    (lambda tmp: tmp / "missing" / "review.html", "does not exist"),
], ids=["a directory", "a missing directory"])
def test_review_refuses_before_its_work(
        make: Callable[[Path], Path], says: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_run(**_: object) -> None:
        raise AssertionError("the review ran before checking its output path")

    monkeypatch.setattr("msrvirt.cli.review.compute_inputs", must_not_run)
    path = make(tmp_path)
    res = run(capsys, "review", "--no-live", "--html", str(path))
    assert_contract(res, names=str(path))
    assert res.status == 2 and says in res.err
    assert not (tmp_path / "missing").exists()


@needs_root
def test_review_writes_through_a_symlink_to_a_device(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    null = char_device(tmp_path / "null", NULL)
    link = tmp_path / "review.html"
    link.symlink_to(null)
    res = run(capsys, "review", "--no-live", "--html", str(link))
    assert_contract(res)
    assert res.status == 0 and f"HTML report: {link}" in res.out
    assert link.is_symlink() and stat.S_ISCHR(null.stat().st_mode)
    assert leftovers(tmp_path) == []

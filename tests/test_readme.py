"""The docs cannot drift: every command shown in README.md and docs/*.md runs, and its output
is compared with the one shown (doctest style).

In a fenced block, a line `$ msrvirt ARGS` is a command and the lines after it, up to the
next `$ ` line or the fence, are its output (stdout and stderr, as a terminal shows them).
A ```python block with `>>>` lines is run with doctest.  An HTML comment right before a
fence says more about the block, `<!-- doctest: KEY=VALUE; ... -->`:

- `file=NAME`: the block is a file; it is saved as NAME where the doc's commands run
  (each doc gets a fresh directory with `examples/` and `src/` of the repository);
- `kvm=HOST`: the commands need /dev/kvm, and their output was recorded on HOST (the
  host description msrvirt prints, e.g. `AMD EPYC, Linux 6.18.44, KVM on pvm`).  Where
  /dev/kvm is missing they are skipped; on a host of another backend they run and must
  exit 0, but their output (the kernel's answers) is not compared; on a host of the same
  backend the output is compared with HOST and this host's description both read as one;
- `vary=COLUMN,...`: cells of these table columns vary from run to run (timings, rates,
  measured figures) and are not compared;
- `skip=REASON`: the commands are not run (benchmarks: their output is measurements);
  the script they run must exist.

Comparison ignores trailing spaces and the width of table columns (runs of spaces and of
box-drawing lines count as one); an output line `...` stands for any number of lines.

To regenerate the shown outputs on purpose (after a change of output, or of the model):

    MSRVIRT_UPDATE_DOCS=1 .venv/bin/python -m pytest tests/test_readme.py

rewrites each compared block with what the command printed, keeping its `...` elisions,
and records this host in `kvm=`; review the diff before committing it.
"""

from __future__ import annotations

import doctest
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
UPDATE = bool(os.environ.get("MSRVIRT_UPDATE_DOCS"))
MARK = re.compile(r"<!--\s*doctest:(.*?)-->")
ELLIPSIS = "..."
_BOX_RUNS = re.compile(r"([━─═])\1+")
_SPACES = re.compile(r"\s+")
_VARIES = "<varies>"
_HOST = "<host>"


@dataclass(frozen=True, slots=True, kw_only=True)
class Block:
    """A fenced block of a doc: its language, its lines and where they start, its marks."""

    doc: Path
    lang: str
    first: int  # index (0-based) of the block's first line in the doc
    lines: tuple[str, ...]
    marks: dict[str, str] = field(hash=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Example:
    """One `$ ` command of a block and the output shown after it."""

    block: Block
    at: int  # index of the command line within the block
    command: str
    expected: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{self.block.doc.relative_to(ROOT)}:{self.block.first + self.at + 1}"


def _marks(text: str) -> dict[str, str]:
    out = {}
    for item in text.split(";"):
        key, _, value = item.strip().partition("=")
        if key:
            out[key.strip()] = value.strip()
    return out


def blocks(doc: Path) -> Iterator[Block]:
    lines = doc.read_text().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("```"):
            lang = lines[i][3:].strip()
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            mark = MARK.search(lines[i - 1]) if i else None
            yield Block(doc=doc, lang=lang, first=i + 1, lines=tuple(lines[i + 1:end]),
                        marks=_marks(mark.group(1)) if mark else {})
            i = end
        i += 1


def examples(block: Block) -> Iterator[Example]:
    starts = [k for k, line in enumerate(block.lines) if line.startswith("$ ")]
    for k, start in enumerate(starts):
        stop = starts[k + 1] if k + 1 < len(starts) else len(block.lines)
        yield Example(block=block, at=start, command=block.lines[start][2:],
                      expected=block.lines[start + 1:stop])


ALL_BLOCKS = [b for doc in DOCS for b in blocks(doc)]
COMMANDS = [e for b in ALL_BLOCKS for e in examples(b)]
DOCTESTS = [b for b in ALL_BLOCKS if b.lang == "python" and any(
    line.lstrip().startswith(">>>") for line in b.lines)]


# -- where and how a doc's commands run ------------------------------------------------------

@pytest.fixture(scope="session")
def workdirs(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, Path]:
    """Per doc, a directory with the repository's examples/ and src/ and the doc's files."""
    out = {doc: tmp_path_factory.mktemp(doc.stem) for doc in DOCS}
    for work in out.values():
        for name in ("examples", "src"):
            (work / name).symlink_to(ROOT / name)
    for b in ALL_BLOCKS:  # the docs are parsed once, at collection
        if "file" in b.marks:
            (out[b.doc] / b.marks["file"]).write_text("\n".join(b.lines) + "\n")
    return out


@cache
def live_host() -> str | None:
    """This host's description as msrvirt prints it, or None without a usable /dev/kvm."""
    from msrvirt.errors import MsrvirtError
    from msrvirt.live.fingerprint import host_profile, take
    from msrvirt.live.kvm import Kvm

    try:
        with Kvm() as kvm:
            return host_profile(take(kvm)).description
    except MsrvirtError:
        return None


def _backend(description: str) -> str:
    return description.rsplit(" ", 1)[-1]


@dataclass(frozen=True, slots=True)
class Ran:
    status: int
    lines: tuple[str, ...]


_RUNS: dict[tuple[str, str], Ran] = {}


def run_command(command: str, cwd: Path) -> Ran:
    """Run a shown `msrvirt ...` command once: the same command in two docs runs once,
    unless it names a file of its doc (each doc's files are its own)."""
    own = sorted(p.name for p in cwd.iterdir() if p.name in command and not p.is_symlink())
    key = (command, str(cwd) if own else "")
    if key not in _RUNS:
        argv = shlex.split(command, comments=True)
        assert argv[0] == "msrvirt", f"only msrvirt commands run here, not {command!r}"
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        done = subprocess.run([sys.executable, "-m", "msrvirt", *argv[1:]], cwd=cwd,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                              timeout=900, check=False)
        _RUNS[key] = Ran(done.returncode, tuple(done.stdout.decode().splitlines()))
    return _RUNS[key]


# -- comparison ------------------------------------------------------------------------------

def normalise(lines: tuple[str, ...] | list[str], marks: dict[str, str],
              host: str | None) -> list[str]:
    """Lines as compared: hosts named alike, varying cells blanked, widths ignored."""
    varying = {c.strip() for c in marks.get("vary", "").split(",") if c.strip()}
    hosts = [h for h in (marks.get("kvm"), host) if h]
    columns: set[int] = set()
    out = []
    for line in lines:
        for h in hosts:
            line = line.replace(h, _HOST)
        if "┃" in line and varying:
            cells = [c.strip() for c in line.split("┃")]
            columns |= {i for i, c in enumerate(cells) if c in varying}
        elif "│" in line and columns:
            cells = line.split("│")
            line = "│".join(_VARIES if i in columns else c for i, c in enumerate(cells))
        out.append(_SPACES.sub(" ", _BOX_RUNS.sub(r"\1", line)).strip())
    while out and not out[-1]:
        out.pop()
    return out


def matches(expected: list[str], actual: list[str]) -> bool:
    pattern = "".join("(?:.*\n)*?" if line == ELLIPSIS else re.escape(line) + "\n"
                      for line in expected)
    return re.fullmatch(pattern, "".join(line + "\n" for line in actual)) is not None


def regenerated(expected: tuple[str, ...], actual: tuple[str, ...]) -> list[str]:
    """``actual`` with the lines around ``expected``'s first and last `...` elided again."""
    marks = [k for k, line in enumerate(expected) if line.strip() == ELLIPSIS]
    lines = [line.rstrip() for line in actual]
    if not marks:
        return lines
    head, tail = marks[0], len(expected) - marks[-1] - 1
    return [*lines[:head], expected[marks[0]], *(lines[len(lines) - tail:] if tail else [])]


_UPDATES: dict[Path, list[tuple[int, int, list[str]]]] = {}


def update_doc(example: Example, new: list[str], host: str | None) -> None:
    """Queue ``new`` as ``example``'s shown output (written at the end of the session)."""
    b = example.block
    start = b.first + example.at + 1
    _UPDATES.setdefault(b.doc, []).append((start, start + len(example.expected), new))
    if "kvm" in b.marks and host and b.marks["kvm"] != host:
        mark_line = b.first - 2
        _UPDATES[b.doc].append((mark_line, mark_line + 1, [
            (b.doc.read_text().splitlines()[mark_line]).replace(b.marks["kvm"], host)]))


@pytest.fixture(scope="session", autouse=True)
def write_updates() -> Iterator[None]:
    yield
    for doc, edits in _UPDATES.items():
        lines = doc.read_text().splitlines()
        for start, stop, new in sorted(edits, reverse=True):
            lines[start:stop] = new
        doc.write_text("\n".join(lines) + "\n")


# -- the tests -------------------------------------------------------------------------------

def _skip_or_host(block: Block) -> str | None:
    """Skip as the block's marks say; else this host's description when it matters."""
    if "skip" in block.marks:
        pytest.skip(f"not run: {block.marks['skip']}")
    if "kvm" not in block.marks:
        return None
    host = live_host()
    if host is None:
        if os.environ.get("MSRVIRT_REQUIRE_KVM"):
            pytest.fail("MSRVIRT_REQUIRE_KVM is set but /dev/kvm is unusable")
        pytest.skip("/dev/kvm is not usable here")
    return host


@pytest.mark.parametrize("example", COMMANDS, ids=[e.id for e in COMMANDS])
def test_the_shown_output_is_what_the_command_prints(
        example: Example, workdirs: dict[Path, Path]) -> None:
    host = _skip_or_host(example.block)
    ran = run_command(example.command, workdirs[example.block.doc])
    marks = example.block.marks
    if host is not None and _backend(host) != _backend(marks["kvm"]):
        assert ran.status == 0, "\n".join(ran.lines)
        return  # another backend's kernel answers differently: only that it ran is checked
    want = normalise(example.expected, marks, host)
    got = normalise(ran.lines, marks, host)
    if UPDATE and not matches(want, got):
        update_doc(example, regenerated(example.expected, ran.lines), host)
        return
    assert matches(want, got), (f"{example.id}: `{example.command}` printed (exit"
                                f" {ran.status}):\n" + "\n".join(ran.lines))


@pytest.mark.parametrize("block", DOCTESTS,
                         ids=[f"{b.doc.relative_to(ROOT)}:{b.first}" for b in DOCTESTS])
def test_the_python_examples_run_as_shown(block: Block, workdirs: dict[Path, Path],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _skip_or_host(block)
    monkeypatch.chdir(workdirs[block.doc])
    text = "\n".join(block.lines) + "\n"
    test = doctest.DocTestParser().get_doctest(text, {}, block.doc.name, str(block.doc),
                                               block.first)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.failures == 0, f"{block.doc.name}:{block.first}: see the doctest report above"


def test_the_api_docstring_examples_run() -> None:
    import msrvirt.api

    assert doctest.testmod(msrvirt.api, optionflags=doctest.ELLIPSIS).failed == 0


def test_every_shown_command_is_run_or_says_why_not() -> None:
    for example in COMMANDS:
        marks = example.block.marks
        if "skip" in marks:
            assert marks["skip"], f"{example.id}: skip= needs a reason"
            script = next(a for a in shlex.split(example.command, comments=True)
                          if a.endswith(".py"))
            assert (ROOT / script).is_file(), f"{example.id}: {script} does not exist"
        else:
            assert example.command.startswith("msrvirt "), (
                f"{example.id}: `{example.command}` is neither run nor marked skip=REASON")


@pytest.mark.parametrize(("expected", "actual", "same"), [
    (["a", "...", "z"], ["a", "b", "c", "z"], True),
    (["a", "...", "z"], ["a", "z"], True),
    (["a", "...", "z"], ["a", "b"], False),
    (["a", "b"], ["a", "c"], False),
], ids=["an ellipsis stands for lines", "and for none", "but the lines around it count",
        "a changed line is found"])
def test_the_comparison(expected: list[str], actual: list[str], same: bool) -> None:
    assert matches(expected, actual) is same


def test_varying_columns_and_hosts_are_read_alike() -> None:
    shown = ("run on AMD X, Linux 1, KVM on pvm", "┃ design ┃ states/s ┃",
             "│ v9     │   58,826 │")
    now = ("run on Intel Y, Linux 2, KVM on pvm", "┃ design ┃ states/s ┃",
           "│ v9     │  123,456 │")
    marks = {"vary": "states/s", "kvm": "AMD X, Linux 1, KVM on pvm"}
    assert normalise(shown, marks, "Intel Y, Linux 2, KVM on pvm") == normalise(
        now, marks, "Intel Y, Linux 2, KVM on pvm")
    assert normalise(shown, {}, None) != normalise(now, {}, None)

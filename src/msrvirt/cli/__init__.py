"""Command line: argument parsing, one module per verb; maps errors to exit codes."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any, NoReturn, Self

from msrvirt import __version__
from msrvirt.errors import FilterError, MsrvirtError, UsageError

# One module per verb under msrvirt.cli; each has register(subparsers) and sets
# `run` on its parser (args.run(args) -> exit status).  Only the verb being run is
# imported (a listing, `--help` or a mistyped verb imports them all).
VERBS = ("explain", "decide", "bitmap", "filter", "policies", "hosts", "probe", "conformance",
         "check", "cost", "calibrate", "review")

# The exit-status contract, the same for every verb (README.md, "Exit status").
EXIT_OK = 0  # success, and nothing found
EXIT_FINDING = 1  # a disagreement with the kernel, a design off its expected verdict,
#                   a filter KVM would reject
EXIT_USAGE = 2  # bad input or usage
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)

EXIT_STATUS_HELP = """\
exit status (every verb):
  0    success, nothing found
  1    a finding: a disagreement with the kernel, a design that does not get its
       expected verdict, a filter KVM would reject
  2    bad input or usage (one line on stderr)
  130  interrupted (Ctrl-C)
FILE options read standard input when given '-'; output options write standard
output when given '-' (the verb's own report then goes to standard error)."""

_MAX_MESSAGE = 400  # characters of an error line; longer ones (huge quoted values) are cut


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line on stderr and exit status 2, and whose help
    ends with the exit-status contract."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("epilog", EXIT_STATUS_HELP)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse makes a formatter for every add_argument (to check the metavar), and a
        # formatter without a width imports shutil for the terminal's: a few ms on every
        # start (bench/bench_cli.py).  The width is computed as shutil would, only here.
        # typeshed's formatter protocol names only prog; every HelpFormatter takes width.
        return self.formatter_class(prog=self.prog, width=_columns() - 2)  # type: ignore[call-arg]


def _columns() -> int:
    """The terminal's width as shutil.get_terminal_size gives it: $COLUMNS, stdout's, or 80."""
    import os

    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):  # no stdout (None), closed, or not a terminal
        return 80


class FilePath(str):
    """A file name given on the command line: never empty (argparse says so, exit 2)."""

    __slots__ = ()

    def __new__(cls, value: str) -> Self:
        if not value:
            raise argparse.ArgumentTypeError("a file name must not be empty")
        return super().__new__(cls, value)


class InputPath(FilePath):
    """An argparse type for a FILE option: ``-`` is standard input."""

    __slots__ = ()


class OutputPath(FilePath):
    """An argparse type for an output FILE option: ``-`` is standard output."""

    __slots__ = ()


def chosen_verb(argv: Sequence[str]) -> str | None:
    """The verb of ``argv`` (its first word that is not an option), if it is one we know."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in VERBS else None


def build_parser(verb: str | None = None) -> Parser:
    """The parser with ``verb`` registered, or every verb when ``verb`` is None."""
    parser = Parser(prog="msrvirt", description=__doc__)
    parser.add_argument("--version", action="version", version=f"msrvirt {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=Parser)
    for name in VERBS if verb is None else (verb,):
        importlib.import_module(f"msrvirt.cli.{name}").register(sub)
    return parser


def _streams(args: argparse.Namespace) -> bool:
    """Refuse two readers of stdin or two writers of stdout; True if a file goes to stdout."""
    values = [v for value in vars(args).values()
              for v in (value if isinstance(value, list) else [value])]
    if sum(isinstance(v, InputPath) and v == "-" for v in values) > 1:
        raise UsageError("only one FILE option can read standard input ('-')")
    to_stdout = sum(isinstance(v, OutputPath) and v == "-" for v in values)
    if to_stdout > 1 or (to_stdout and getattr(args, "json", None) is True):
        raise UsageError("only one output can go to standard output ('-'): give the others a"
                         " file")
    return to_stdout == 1


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "…"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one msrvirt command; return its exit status (the contract above)."""
    from msrvirt.output import held_stdout, reserved_stdout

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        with held_stdout():
            args = build_parser(chosen_verb(argv)).parse_args(argv)
            if _streams(args):
                with reserved_stdout():
                    status: int = args.run(args)
            else:
                status = args.run(args)
    except KeyboardInterrupt:
        print("msrvirt: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except FilterError as err:
        print(f"msrvirt: {one_line(err)}", file=sys.stderr)
        return EXIT_FINDING
    except MsrvirtError as err:
        print(f"msrvirt: {one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    return status

"""Command line: argument parsing, one module per verb; maps errors to exit codes."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from msrvirt import __version__
from msrvirt.errors import MsrvirtError

# One module per verb under msrvirt.cli; each has register(subparsers) and sets
# `run` on its parser (args.run(args) -> exit status).
VERBS = ("explain", "decide", "bitmap", "filter", "policies", "hosts", "probe", "conformance",
         "check", "cost", "calibrate", "review")

EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> Parser:
    parser = Parser(prog="msrvirt", description=__doc__)
    parser.add_argument("--version", action="version", version=f"msrvirt {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=Parser)
    for verb in VERBS:
        importlib.import_module(f"msrvirt.cli.{verb}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one msrvirt command; return its exit status."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.run(args)
    except MsrvirtError as err:
        print(f"msrvirt: {err}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # `msrvirt explain --all | head` is not an error.
        sys.stderr.close()
        return 0
    return status

"""The one reader of the data files msrvirt takes (JSON or TOML), and the integers in them.

Shared by every layer and every verb that reads a user's file (filters, hosts and
fingerprints, probe scenarios, workloads, exit costs), so each reports bad input the
same way: one `FileFormatError` line naming the file and what is wrong, never a
traceback.  What is checked, before any model code sees the data:

- the size (at most `MAX_INPUT_BYTES`; a device or FIFO that never ends is cut there);
- the encoding (UTF-8, an optional byte-order mark);
- the syntax (JSON; TOML by the ``.toml`` suffix, or on standard input when the text
  does not start with ``{`` or ``[``);
- the nesting depth (at most `MAX_DEPTH`) and integer size (at most 64 bits; a
  64-bit value fits whether it is read as signed or unsigned);
- floats are finite (no NaN, no Infinity, no 1e999).

``-`` reads standard input.  Values that reach KVM are then range-checked where they
are read, with `parse_int` and its ``bits``.
"""

from __future__ import annotations

import json
import math
import os
import stat
import sys
from collections.abc import Callable
from contextlib import suppress
from typing import Any, TypeVar

from msrvirt.errors import FileFormatError, MsrvirtError, UsageError

STDIN = "-"
MAX_INPUT_BYTES = 16 << 20  # far above any file msrvirt writes or ships (the largest is ~200 KiB)
MAX_DEPTH = 32  # the deepest format (a probe scenario with a filter) nests 8 levels
MAX_INT_BITS = 64
_SHOWN = 40  # characters of a bad value quoted in a message

T = TypeVar("T")


def display_path(path: str) -> str:
    """How a message names ``path``: ``-`` is standard input."""
    return "standard input" if path == STDIN else path


def names_file(spec: str) -> bool:
    """Whether a NAME|FILE option's value is a file rather than a name: ``-``, a ``.json``
    or ``.toml`` suffix, or a path separator."""
    return spec == STDIN or spec.endswith((".json", ".toml")) or os.sep in spec


def shown(value: object) -> str:
    """``repr(value)``, cut to a readable length for a one-line message."""
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "…"


def read_bytes(path: str, *, limit: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of ``path`` (``-``: standard input), at most ``limit``; FileFormatError else.

    Follows symlinks; a FIFO is read until its writer closes it, a device until ``limit``.
    """
    name = display_path(path)
    try:
        if path == STDIN:
            data = sys.stdin.buffer.read(limit + 1)
        else:
            with open(path, "rb") as f:
                info = os.fstat(f.fileno())
                if stat.S_ISREG(info.st_mode) and info.st_size > limit:
                    raise FileFormatError(name, _too_big(limit))
                data = f.read(limit + 1)
    except OSError as err:
        raise FileFormatError(name, f"cannot read: {err.strerror or err}") from None
    if len(data) > limit:
        raise FileFormatError(name, _too_big(limit))
    return data


def _too_big(limit: int) -> str:
    return f"must be at most {limit >> 20} MiB, and this input is larger"


def read_text(path: str) -> str:
    """The UTF-8 text of ``path`` (see `read_bytes`); a byte-order mark is dropped."""
    data = read_bytes(path)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise FileFormatError(display_path(path), f"must be UTF-8 text, but byte"
                              f" {data[err.start]:#04x} at offset {err.start} is not") from None


def _is_toml(path: str, text: str) -> bool:
    if path == STDIN:
        return not text.lstrip().startswith(("{", "["))
    return path.endswith(".toml")


def _json_int(text: str) -> int:
    # Checked before int(): a 5000-digit literal would otherwise hit Python's own limit.
    if len(text.lstrip("-")) > 20 or abs(value := int(text)) >> MAX_INT_BITS:
        raise ValueError(f"integer {text[:_SHOWN]}{'…' if len(text) > _SHOWN else ''} is wider"
                         f" than {MAX_INT_BITS} bits")
    return value


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:_SHOWN]} is not finite")
    return value


def _no_constant(text: str) -> float:
    raise ValueError(f"{text} is not a number msrvirt accepts")


def parse_text(text: str, *, toml: bool, name: str) -> Any:
    """Parse JSON (or TOML) ``text`` with the limits above; FileFormatError naming ``name``."""
    kind = "toml" if toml else "json"  # as the suffix reads
    try:
        if toml:
            import tomllib  # only where a TOML file is read: keeps the common path quick

            obj = tomllib.loads(text, parse_float=_finite)
        else:
            obj = json.loads(text, parse_int=_json_int, parse_float=_finite,
                             parse_constant=_no_constant)
    except RecursionError:
        raise FileFormatError(name, f"must nest at most {MAX_DEPTH} levels deep") from None
    except ValueError as err:  # JSONDecodeError, TOMLDecodeError and the hooks above
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise FileFormatError(name, f"not valid {kind}: {detail}") from None
    _check_tree(obj, name)
    return obj


def _check_tree(obj: Any, name: str) -> None:
    """Depth and integer width of a parsed document (TOML has no hooks for them; floats are
    checked by both parsers' parse_float hook); iterative, so a deep document cannot exhaust
    the stack here."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise FileFormatError(name, f"must nest at most {MAX_DEPTH} levels deep")
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int) and abs(value) >> MAX_INT_BITS:
            raise FileFormatError(name, f"not valid: integer {shown(value)} is wider than"
                                  f" {MAX_INT_BITS} bits")


def read_data_file(path: str) -> Any:
    """Read and parse ``path`` (``-``: standard input) as JSON, or TOML by its suffix."""
    text = read_text(path)
    return parse_text(text, toml=_is_toml(path, text), name=display_path(path))


def load(path: str, build: Callable[[Any], T]) -> T:
    """``build(read_data_file(path))``, every MsrvirtError becoming one line naming the file."""
    return built(path, read_data_file(path), build)


def built(path: str, obj: Any, build: Callable[[Any], T]) -> T:
    """``build(obj)`` for ``obj`` read from ``path``; a MsrvirtError becomes one line naming it."""
    try:
        return build(obj)
    except FileFormatError:
        raise
    except MsrvirtError as err:
        raise FileFormatError(display_path(path), str(err)) from None


def parse_int(value: object, what: str, *, bits: int = 64) -> int:
    """An unsigned integer of at most ``bits`` bits, given as a number or a string such as
    "0x1cc"; UsageError naming ``what`` otherwise (a value that would be truncated on its
    way to KVM is refused here, where it is read)."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and len(value) <= 2 + bits:  # "0b" + one digit per bit
        with suppress(ValueError):
            number = int(value, 0)
    if number is None:
        raise UsageError(f"{what} must be an integer or hex string, not {shown(value)}")
    if not 0 <= number < 1 << bits:
        raise UsageError(f"{what} must be in 0..{(1 << bits) - 1:#x}, not {shown(value)}")
    return number

"""Reading the data files msrvirt takes (JSON or TOML) and the integers in them.

Shared by every layer that reads user files (filters, hosts, probe scenarios, workloads,
exit costs, fingerprints), so each reports bad input the same way: one line naming the
file or the value.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from msrvirt.errors import FileFormatError, UsageError


def read_data_file(path: str) -> Any:
    """Parse a JSON file (TOML by the .toml suffix); FileFormatError on any problem."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as err:
        raise FileFormatError(path, f"cannot read: {err.strerror}") from None
    try:
        return tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
        raise FileFormatError(path, f"not valid {p.suffix.lstrip('.') or 'JSON'}: {err}") from None


def parse_int(value: object, what: str) -> int:
    """An integer given as a number or a string such as "0x1cc"; UsageError naming ``what``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError:
            pass
    raise UsageError(f"{what} must be an integer or hex string, not {value!r}")

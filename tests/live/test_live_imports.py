"""Imports point one way (DESIGN.md): live uses the model's types, never cli or report,
and only the standard library from outside msrvirt."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import msrvirt

ROOT = Path(msrvirt.__file__).parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
    return out


def test_live_imports_only_the_stdlib_and_lower_layers() -> None:
    for path in sorted((ROOT / "live").glob("*.py")):
        for name in imported_modules(path):
            top = name.split(".")[0]
            if top == "msrvirt":
                assert not name.startswith(("msrvirt.cli", "msrvirt.report")), (path, name)
            else:
                assert top in sys.stdlib_module_names or top == "__future__", (path, name)


def test_nothing_in_the_model_layers_imports_live() -> None:
    for layer in ("arch", "policy", "machine", "check", "cost"):
        for path in sorted((ROOT / layer).rglob("*.py")):
            assert not any(n.startswith("msrvirt.live") for n in imported_modules(path)), path

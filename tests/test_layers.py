"""The import arrows of DESIGN.md point one way: arch <- policy <- machine/conform <- check/cost/live/spin."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "msrvirt"

# package -> packages it must never import
FORBIDDEN = {
    "arch": {"policy", "machine", "check", "cost", "conform", "live", "spin", "report", "review",
             "cli"},
    "policy": {"machine", "check", "cost", "conform", "live", "spin", "report", "review", "cli"},
    "machine": {"check", "cost", "conform", "live", "spin", "report", "review", "cli"},
    "check": {"cost", "conform", "live", "spin", "report", "review", "cli"},
    "cost": {"check", "conform", "live", "spin", "report", "review", "cli"},
    "conform": {"machine", "check", "cost", "live", "spin", "report", "review", "cli"},
    "live": {"machine", "check", "cost", "spin", "report", "review", "cli"},
    # spin runs the SPIN tools (OS work) on the model check/promela.py writes.
    "spin": {"cost", "conform", "live", "report", "review", "cli"},
    "report": {"live", "spin", "review", "cli"},
    # review assembles evidence from every model layer and renders through report; the
    # CLI measures on /dev/kvm and hands the results in.
    "review": {"live", "spin", "cli"},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            name = node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("msrvirt."):
                    found.add(alias.name.split(".")[1])
            continue
        else:
            continue
        if name.startswith("msrvirt."):
            found.add(name.split(".")[1])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_upward(package: str) -> None:
    offenders = []
    for path in sorted((SRC / package).rglob("*.py")):
        bad = imported_packages(path) & FORBIDDEN[package]
        if bad:
            offenders.append(f"{path.relative_to(SRC)} imports {sorted(bad)}")
    assert offenders == []


def test_the_walker_sees_a_planted_upward_import(tmp_path: Path) -> None:
    planted = tmp_path / "bad.py"
    planted.write_text("from msrvirt.cli.options import print_json\nimport msrvirt.live.kvm\n")
    assert imported_packages(planted) == {"cli", "live"}

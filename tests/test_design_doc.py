"""docs/design.md stays the map of the code: every package and core module it names exists, and every core module
and top-level package of the code is on it; the layers it states hold (no layer imports one above it)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DESIGN = (REPO / "docs" / "design.md").read_text()
PACKAGES = ("callbacks", "components", "server", "core", "rendering", "data_layer")
#: What each layer must never import.
FORBIDDEN = {
    "core": {"dash", "flask", "components", "callbacks", "server"},
    "rendering": {"dash", "flask", "components", "callbacks", "server", "core"},
    "data_layer": {"dash", "flask", "components", "callbacks", "server", "core", "rendering"},
    "server": {"dash_core_components", "callbacks", "components"},
    "components": {"callbacks", "server", "flask"},
}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots


def test_every_package_of_the_code_is_on_the_map():
    for package in PACKAGES:
        assert (REPO / package / "__init__.py").exists()
        assert re.search(rf"^{package}/\s", DESIGN, re.M), package


def test_the_core_table_names_exactly_the_core_modules():
    named = set(re.findall(r"^\| `(\w+)\.py` \|", DESIGN, re.M))
    present = {p.stem for p in (REPO / "core").glob("*.py") if p.stem != "__init__"}
    assert named == present


def test_no_layer_imports_a_layer_above_it():
    found = {}
    for package, forbidden in FORBIDDEN.items():
        for path in (REPO / package).rglob("*.py"):
            bad = imported_roots(path) & forbidden
            if bad:
                found[str(path.relative_to(REPO))] = sorted(bad)
    assert found == {}

"""The package's layering: spec/ is syntax and never imports the node kinds or the compiler."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "workbench"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_spec_does_not_import_nodes_or_compile():
    for path in (PACKAGE / "spec").glob("*.py"):
        bad = {n for n in _imports(path) if n.startswith(("workbench.nodes", "workbench.compile"))}
        assert not bad, f"{path.name} imports {sorted(bad)}"

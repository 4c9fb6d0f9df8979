"""The package's layering: spec/ is syntax and never imports the node kinds or the compiler."""

from __future__ import annotations

import ast
import re
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


def test_no_dispatch_on_node_kinds_outside_nodes():
    """Only node modules know node classes and kind strings; the rest asks the registry."""
    pattern = re.compile(
        r"isinstance\([^)]*(Dense|Conv|Act|BatchNorm|Residual|Pool|Flatten|Repeat|LayerNorm)\b"
        r"|\.kind (==|in|!=)"
    )
    for path in PACKAGE.rglob("*.py"):
        if "nodes" in path.relative_to(PACKAGE).parts[:1]:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert not pattern.search(line), f"{path.relative_to(PACKAGE)}:{number}: {line}"


def test_only_precision_reads_a_context_name():
    for path in PACKAGE.rglob("*.py"):
        if path.name != "precision.py":
            assert "ctx.name" not in path.read_text(), path.relative_to(PACKAGE)

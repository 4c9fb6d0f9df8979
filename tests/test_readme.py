"""The README's spec-language table is the kinds' schemas (so the docs cannot drift), and
`workbench kinds` prints the same catalogue."""

from __future__ import annotations

import json

from spec_factory import ROOT

import workbench.nodes  # noqa: F401 - registers the kinds
from workbench.cli import main
from workbench.nodes.base import REGISTRY
from workbench.nodes.catalog import markdown_table


def test_readme_table_is_generated_from_the_schemas():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- kinds:start -->\n")[1].split("<!-- kinds:end -->")[0]
    assert block == markdown_table(), "regenerate: workbench.nodes.catalog.markdown_table()"
    for kind in REGISTRY:
        assert f"| **{kind}** |" in block


def test_kinds_command(capsys):
    assert main(["kinds", "conv", "--json"]) == 0
    (conv,) = json.loads(capsys.readouterr().out)["kinds"]
    keys = {k["name"]: k for k in conv["keys"]}
    assert keys["init"]["choices"] == ["gaussian", "orthogonal", "delta_orthogonal"]
    assert keys["channels"]["default"] == "required" and keys["init"]["default"] == "gaussian"
    assert main(["kinds", "dens"]) == 2
    assert "did you mean 'dense'" in capsys.readouterr().err

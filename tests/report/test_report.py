"""`workbench report`: the content equals the API's results, figures are real PNGs, the HTML
carries MathML (no raw LaTeX), sections that do not apply say why, and a fixed seed gives the
same bytes apart from the provenance timestamps."""

from __future__ import annotations

import re

import pytest
from spec_factory import FLAGSHIP, SPEC_FILES

from workbench.analysis import analyze_spec
from workbench.compile import load_spec
from workbench.report import write_report
from workbench.theory.derive import derive

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def flagship(tmp_path_factory):
    out = tmp_path_factory.mktemp("flagship")
    return write_report(FLAGSHIP, out, seed=3), out


def test_every_recursion_is_in_the_markdown_and_as_mathml_in_the_html(flagship):
    files, out = flagship
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    stages = derive(load_spec(FLAGSHIP)).to_dict(latex=True)["stages"]
    for stage in stages:
        assert f"`{stage['path']}` ({stage['kind']})" in md
        for tex in stage["rules"].values():
            assert f"$${tex}$$" in md
    assert html.count("<math") == sum(len(s["rules"]) for s in stages)
    assert "\\frac" not in html and "\\int" not in html  # all of it became MathML
    for text in (md, html):
        assert not re.search(r"\bnan\b", text, re.IGNORECASE)


def test_fixed_point_numbers_are_the_apis(flagship):
    _, out = flagship
    md = (out / "report.md").read_text().split("## Fixed points")[1]
    block = analyze_spec(load_spec(FLAGSHIP)).to_dict()["blocks"][0]
    row = next(line for line in md.splitlines() if line.startswith(f"| {block['path']} |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    columns = ["path", "phase", "q_star", "c_star", "chi_1", "chi_q", "chi_c", "xi_q", "xi_c"]
    for name, cell in zip(columns[2:], cells[2:]):
        assert float(cell) == pytest.approx(block[name], rel=1e-9), name
    assert cells[1] == block["phase"]


def test_sensitivity_numbers_are_the_apis(flagship):
    """The normalised-sensitivity table holds ``moment_profile``'s values on the report's
    inputs (8 random inputs, seed 0)."""
    from workbench.theory.moments import moment_profile
    from workbench.validation.quantities import make_inputs

    _, out = flagship
    md = (out / "report.md").read_text().split("## Normalised sensitivity")[1]
    spec = load_spec(FLAGSHIP)
    layers = moment_profile(spec, make_inputs(spec, {"count": 8, "seed": 0}).numpy()).layers
    for layer in (layers[0], layers[-1]):
        row = next(line for line in md.splitlines() if line.startswith(f"| {layer.path} |"))
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert float(cells[1]) == pytest.approx(float(layer.chi), rel=1e-9)
        assert float(cells[2]) == pytest.approx(float(layer.delta_chi), rel=1e-9)
        assert cells[-1] == layer.regime


def test_figures_are_png_files_embedded_in_the_html(flagship):
    files, out = flagship
    pngs = [f for f in files.files if f.suffix == ".png"]
    assert {p.stem for p in pngs} == {
        "stages",
        "evolution",
        "phase",
        "spectrum",
        "gradients",
        "sensitivity",
    }
    html = (out / "report.html").read_text()
    for png in pngs:
        data = png.read_bytes()
        assert data.startswith(PNG) and len(data) > 5000
    assert html.count('src="data:image/png;base64,') == len(pngs)
    assert any("Fourier mode" in line for line in files.sections_left_out)  # FC: no conv modes


def test_same_seed_same_bytes_apart_from_timestamps(flagship, tmp_path):
    files, out = flagship
    again = write_report(FLAGSHIP, tmp_path, seed=3)
    for first in files.files:
        second = tmp_path / first.name
        a, b = first.read_bytes(), second.read_bytes()
        if first.suffix == ".png":
            assert a == b, first.name
            continue
        strip = [line for line in a.decode().splitlines() if "(timestamp)" not in line]
        assert strip == [line for line in b.decode().splitlines() if "(timestamp)" not in line]
    assert len(again.files) == len(files.files)


def test_conv_spec_gets_its_mode_table(tmp_path):
    files = write_report(SPEC_FILES / "conv1d.yaml", tmp_path, formats=("md",))
    md = (tmp_path / "report.md").read_text()
    assert "## Depth scales per Fourier mode" in md and "| block | frequency |" in md
    assert (tmp_path / "modes.png").read_bytes().startswith(PNG)
    assert files.files[0].name == "report.md"


def test_cli_report_and_unknown_format(tmp_path, capsys):
    from workbench.cli import main

    assert main(["report", str(SPEC_FILES / "conv1d.yaml"), "-o", str(tmp_path),
                 "--format", "md"]) == 0  # fmt: skip
    assert "open" in capsys.readouterr().out
    assert main(["report", str(FLAGSHIP), "-o", str(tmp_path), "--format", "docx"]) == 2
    assert "unknown report format" in capsys.readouterr().err


DERIVATIONS = sorted((FLAGSHIP.parent).glob("*.yaml"))
PAPERS = ("pabari_zhou", "xiao2018", "xiao_bahri", "mean_field_batchnorm", "labatie2019",
          "Schoenholz")  # fmt: skip


@pytest.mark.parametrize("path", DERIVATIONS, ids=[p.stem for p in DERIVATIONS])
def test_every_derivation_renders_its_report(path, tmp_path):
    """Each seed-paper setting: its comment names the paper, and its report has every stage's
    recursion, real PNGs, no NaN, and a reason for every section left out."""
    header = path.read_text().split("name:")[0]
    assert header.startswith("#") and any(paper in header for paper in PAPERS), path.name
    files = write_report(path, tmp_path, formats=("md",))
    md = (tmp_path / "report.md").read_text()
    for stage in derive(load_spec(path)).to_dict(latex=True)["stages"]:
        for tex in stage["rules"].values():
            assert f"$${tex}$$" in md
    assert not re.search(r"\bnan\b", md, re.IGNORECASE)
    for png in (f for f in files.files if f.suffix == ".png"):
        assert png.read_bytes().startswith(PNG)
    assert md.count("*Left out: ") == len(files.sections_left_out)
    _fixed_point_cells_are_the_apis(md, path)


def _fixed_point_cells_are_the_apis(md, path):
    """Every number of the fixed-point tables equals analyze_spec's to 10 digits."""
    section = md.split("## Fixed points")[1].split("\n## ")[0]
    rows, header = {}, []
    for line in section.splitlines():
        if line.startswith("| path |"):
            header = [c.strip() for c in line.strip("|").split("|")]
        elif line.startswith("| ") and header:
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = dict(zip(header, cells))
    for block in analyze_spec(load_spec(path)).to_dict()["blocks"]:
        cells = rows[block["path"]]
        for name, cell in cells.items():
            value = block.get(name)
            if isinstance(value, float):
                assert float(cell) == pytest.approx(value, rel=1e-9), (path.name, name)


def test_validate_checks_the_flagship_and_can_fail(tmp_path, monkeypatch):
    """--validate: every layer's qˡ, cˡ of 16 width-512 networks of the flagship itself (cut
    at 30 layers) against the evaluator — all pass; with the theory's variances 6% off the
    same data fail, and the report says so."""
    from workbench.report import monte_carlo

    files = write_report(FLAGSHIP, tmp_path / "ok", formats=("md",), validate=True)
    md = (tmp_path / "ok" / "report.md").read_text()
    assert "**all passed**" in md and re.search(r"\| q, layer 29 \(layers\[2\]\S+#28\) \|", md)
    assert (tmp_path / "ok" / "validation.png").read_bytes().startswith(PNG)
    assert not any("Monte-Carlo" in line for line in files.sections_left_out)

    _theory_off_by(monkeypatch, 1.06)
    write_report(FLAGSHIP, tmp_path / "off", formats=("md",), validate=True)
    md = (tmp_path / "off" / "report.md").read_text()
    assert "**SOME CHECKS FAILED**" in md and "| False |" in md
    assert monte_carlo.VALIDATE_WIDTH >= 512  # the interval that caught 6% above


def _theory_off_by(monkeypatch, factor: float) -> None:
    from workbench.report import monte_carlo

    honest = monte_carlo.layer_kernels_theory

    def off(spec, x):
        labels, kernels = honest(spec, x)
        return labels, kernels * factor

    monkeypatch.setattr(monte_carlo, "layer_kernels_theory", off)


RESNET = {
    "name": "bn-resnet",
    "input": {"shape": [3, 4, 4]},
    "defaults": {"sigma_w2": 2.0, "sigma_b2": 0.1},
    "layers": [
        {"conv": {"channels": 32, "kernel": [3, 3]}},
        {
            "repeat": {
                "times": 3,
                "body": [
                    {
                        "residual": {
                            "body": [
                                "bn",
                                {"act": "relu"},
                                {"conv": {"channels": 32, "kernel": [3, 3]}},
                                "bn",
                                {"act": "relu"},
                                {"conv": {"channels": 32, "kernel": [3, 3]}},
                            ]
                        }
                    }
                ],
            }
        },
        {"pool": "global_avg"},
        {"dense": {"width": 10}},
    ],
}


def test_validate_covers_conv_batch_norm_and_residual_specs(monkeypatch):
    """A conv BN-resnet: its 8 weight layers (first conv, 3 passes × 2 in the residual
    bodies, the readout after pooling) under the simulator's labels, every q and c within the
    interval; 6% off in the theory, the same networks fail."""
    from workbench.compile.load import spec_from_dict
    from workbench.report import monte_carlo

    spec = spec_from_dict(RESNET)
    result = monte_carlo.validate(spec, seed=0, device="cpu")
    names = [c["name"] for c in result["checks"] if c["quantity"] == "q"]
    assert result["layers"] == 8 and len(names) == 8
    assert "#2" in names[6] and "layers[3]" in names[7]
    assert result["passed"], [c for c in result["checks"] if not c["passed"]]
    _theory_off_by(monkeypatch, 1.06)
    assert not monte_carlo.validate(spec, seed=0, device="cpu")["passed"]


def test_gradient_section_follows_the_backward_recursion(flagship):
    """The flagship's gradients section: a table of weight layers under the simulator's labels
    (first layer, repeat passes) and its plot."""
    files, out = flagship
    md = (out / "report.md").read_text()
    section = md.split("## Gradients against depth")[1].split("\n## ")[0]
    assert "| layers[0] |" in section and "layers[2].repeat.body[0]#" in section
    assert "gradients.png" in section

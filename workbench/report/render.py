"""Report writers: Markdown with LaTeX, and HTML whose mathematics is MathML (latex2mathml:
pure Python, so the page renders offline in any current browser with no CDN, no script and no
font download; browsers lay MathML out natively). Figures are PNG files beside the report,
embedded in the HTML as data URIs so the one file can be handed on."""

from __future__ import annotations

import base64
import math
from pathlib import Path
from typing import Any

import jinja2

from workbench.report.content import ReportContent

FIXED_POINT_COLUMNS = ("path", "phase", "q_star", "c_star", "chi_1", "chi_q", "chi_c", "xi_q",
                       "xi_c")  # fmt: skip
ORBIT_COLUMNS = ("path", "phase", "batch", "passes", "q_star", "c_star", "xi_c", "growth")
STAGE_COLUMNS = ("path", "kind", "in_shape", "out_shape", "sigma_w2", "sigma_b2", "activation",
                 "times")  # fmt: skip
SPECTRUM_COLUMNS = ("depth", "lambda_max", "lambda_rest", "kappa", "eta_max")
VALIDATION_COLUMNS = ("name", "theory", "mc_mean", "mc_ci", "allowance", "passed")
GRADIENT_COLUMNS = ("path", "log_ratio", "rate_to_next", "q_tilde", "q_tilde_xy")
SENSITIVITY_COLUMNS = ("path", "chi", "delta_chi", "delta_chi_bn", "delta_chi_phi", "r_eff",
                       "regime")  # fmt: skip


def number(value: Any) -> str:
    """A table cell: floats to 10 significant digits (what the CLI prints), None as —."""
    if value is None:
        return "—"
    if isinstance(value, float):
        if math.isnan(value):
            raise ValueError("a NaN reached the report")  # never silently printed
        return "∞" if math.isinf(value) else f"{value:.10g}"
    if isinstance(value, (list, tuple)):
        return "×".join(map(str, value)) if all(isinstance(v, int) for v in value) else str(value)
    return str(value)


def tables(content: ReportContent) -> dict[str, dict]:
    """Header and rows of every table, formatted once for both writers."""
    out: dict[str, dict] = {}
    stages = content.section("stages")
    if stages.data:
        out["stages"] = _table(stages.data, STAGE_COLUMNS)
    fixed = content.section("fixed_points")
    if fixed.data:
        blocks = fixed.data["blocks"]
        cycles = [b for b in blocks if "method" not in b]
        orbits = [b for b in blocks if "method" in b]
        if cycles:
            out["cycles"] = _table(cycles, FIXED_POINT_COLUMNS)
        if orbits:
            out["orbits"] = _table(orbits, ORBIT_COLUMNS)
    spectrum = content.section("spectrum")
    if spectrum.data:
        out["spectrum"] = _table(spectrum.data["depths"], SPECTRUM_COLUMNS)
    gradients = content.section("gradients")
    if gradients.data:
        out["gradients"] = _table(gradients.data["rows"], GRADIENT_COLUMNS)
    sensitivity = content.section("sensitivity")
    if sensitivity is not None and sensitivity.data:
        out["sensitivity"] = _table(sensitivity.data["rows"], SENSITIVITY_COLUMNS)
    checks = content.section("validation")
    if checks is not None and checks.data:
        out["validation"] = _table(checks.data["checks"], VALIDATION_COLUMNS)
    swept = content.section("sweep")
    if swept is not None and swept.data:
        out["sweep"] = _table(
            swept.data["rows"],
            tuple(swept.data["columns"]) + ("diverged",)
            if swept.data["task"] == "train"
            else tuple(swept.data["columns"]),
        )
    modes = content.section("modes")
    if modes.data:
        rows = [{"block": t["path"], **m} for t in modes.data for m in t["modes"]]
        out["modes"] = _table(rows, ("block", "frequency", "lambda", "xi"))
    return out


def _table(rows: list[dict], columns: tuple[str, ...]) -> dict:
    return {"header": list(columns), "rows": [[number(r.get(c)) for c in columns] for r in rows]}


TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("workbench.report", "templates"),
    autoescape=jinja2.select_autoescape(["html.j2"]),
    keep_trailing_newline=True,
)


def _markdown_table(table: dict) -> str:
    lines = ["| " + " | ".join(table["header"]) + " |",
             "|" + "---|" * len(table["header"])]  # fmt: skip
    lines += ["| " + " | ".join(row) + " |" for row in table["rows"]]
    return "\n".join(lines) + "\n"


def write_markdown(content: ReportContent, figures: dict, provenance: dict, path: Path) -> Path:
    template = TEMPLATES.get_template("report.md.j2")
    text = template.render(c=content, t=tables(content), table=_markdown_table,
                           figures={k: p.name for k, p in figures.items()},
                           provenance=provenance)  # fmt: skip
    path.write_text(text, encoding="utf-8")
    return path


def _html_table(table: dict) -> Any:
    head = "".join(f"<th>{jinja2.utils.markupsafe.escape(h)}</th>" for h in table["header"])
    body = "".join(
        "<tr>" + "".join(f"<td>{jinja2.utils.markupsafe.escape(v)}</td>" for v in row) + "</tr>"
        for row in table["rows"]
    )
    return jinja2.utils.markupsafe.Markup(f"<table><tr>{head}</tr>{body}</table>")


def _math(tex: str) -> Any:
    from latex2mathml.converter import convert

    return jinja2.utils.markupsafe.Markup(convert(tex, display="block"))


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def write_html(content: ReportContent, figures: dict, provenance: dict, path: Path) -> Path:
    template = TEMPLATES.get_template("report.html.j2")
    text = template.render(c=content, t=tables(content), table=_html_table, math=_math,
                           figures={k: _data_uri(p) for k, p in figures.items()},
                           provenance=provenance)  # fmt: skip
    path.write_text(text, encoding="utf-8")
    return path

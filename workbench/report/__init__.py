"""Derivation reports: ``write_report(spec_path, out_dir)`` turns a spec into a report of its
recursions, numbers and plots (``content`` gathers them from the public API, ``figures``
draws them, ``render`` writes Markdown and offline HTML)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError

FORMATS = ("html", "md", "pdf")  # what --format accepts
DEFAULT_FORMATS = ("html", "md")


@dataclass(frozen=True)
class ReportFiles:
    directory: Path
    files: tuple[Path, ...]
    sections_left_out: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"directory": str(self.directory), "files": [str(p) for p in self.files],
                "sections_left_out": list(self.sections_left_out)}  # fmt: skip


def write_report(
    spec_path: str | Path,
    out_dir: str | Path,
    formats: tuple[str, ...] = DEFAULT_FORMATS,
    digits: int | None = None,
    seed: int = 0,
    command: str | None = None,
    progress: bool = False,
    validate: bool = False,
    sweep: str | Path | None = None,
) -> ReportFiles:
    """Write ``report.<format>`` and the figures (PNG) into ``out_dir`` (created);
    ``validate`` adds the Monte-Carlo checks of the spec's own finite networks, ``sweep`` the
    heat map and cells of a ``workbench sweep`` directory."""
    from tqdm import tqdm

    from workbench.compile import load_spec
    from workbench.precision import context
    from workbench.report import figures as fig
    from workbench.report.content import gather
    from workbench.report.render import write_html, write_markdown

    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise WorkbenchError(f"unknown report format {unknown[0]!r}; choose from {FORMATS}")
    start = time.perf_counter()
    spec_path = Path(spec_path)
    spec = load_spec(spec_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ctx = context(digits)
    bar = tqdm(total=10 + bool(validate) + (sweep is not None), desc="report",
               disable=not progress, leave=False)  # fmt: skip

    def step(label: str) -> None:
        bar.set_postfix_str(label)
        bar.update()

    content = gather(spec, spec_path.read_text(encoding="utf-8"), ctx, seed, step, validate, sweep)
    drawn = {"stages": fig.stage_graph(content.section("stages").data, out / "stages.png")}
    for key, draw in (("evolution", fig.evolution), ("phase", fig.phase_diagram),
                      ("modes", fig.modes), ("spectrum", fig.spectrum),
                      ("gradients", fig.gradients), ("sensitivity", fig.sensitivity),
                      ("validation", fig.validation)):  # fmt: skip
        section = content.section(key)
        if section is not None and section.data:
            drawn[key] = draw(section.data, out / f"{key}.png")
    swept = content.section("sweep")
    if swept is not None and swept.data["heatmap"] is not None:
        drawn["sweep"] = Path(shutil.copyfile(swept.data["heatmap"], out / "sweep.png"))
    step("writing")
    provenance = _provenance(spec_path, ctx, seed, command, time.perf_counter() - start)
    written = []
    if "md" in formats:
        written.append(write_markdown(content, drawn, provenance, out / "report.md"))
    if "html" in formats or "pdf" in formats:
        html = write_html(content, drawn, provenance, out / "report.html")
        if "html" in formats:
            written.append(html)
        if "pdf" in formats:
            written.append(_print_pdf(html, out / "report.pdf"))
            if "html" not in formats:
                html.unlink()
    bar.close()
    left_out = tuple(f"{s.title}: {s.missing}" for s in content.sections if s.missing)
    return ReportFiles(out, (*written, *drawn.values()), left_out)


def _print_pdf(html: Path, pdf: Path) -> Path:
    """The HTML printed to PDF by headless Chromium (it lays MathML out natively)."""
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise WorkbenchError(
            "PDF output needs Chromium to print the HTML",
            hint="install it (Debian/Ubuntu: `apt install chromium`), or use --format html,md",
        )
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
               f"--print-to-pdf={pdf}", html.resolve().as_uri()]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if done.returncode != 0 or not pdf.exists():
        raise WorkbenchError(f"Chromium could not print the PDF: {done.stderr.strip()[-300:]}")
    return pdf


def _provenance(spec_path: Path, ctx: Any, seed: int, command: str | None, seconds: float):
    from importlib.metadata import PackageNotFoundError, version

    try:
        release = version("workbench")
    except PackageNotFoundError:
        release = "unknown"
    return {
        "spec": spec_path.name,
        "workbench": release,
        "git revision": _git_revision(),
        "command": command or "workbench.report.write_report",
        "precision": ctx.describe(),
        "seed": seed,
        "python": sys.version.split()[0],
        "generated (timestamp)": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "wall time (timestamp)": f"{seconds:.1f} s",
    }


def _git_revision() -> str:
    """The package's git revision, when it runs from a checkout."""
    try:
        found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                               text=True, timeout=5, cwd=Path(__file__).parent)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "not a git checkout"
    return found.stdout.strip() if found.returncode == 0 else "not a git checkout"

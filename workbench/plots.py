"""Figures and tables written to disk (matplotlib with the Agg backend)."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.theory.critical import CriticalPoint

TABLE_COLUMNS = ("sigma_b2", "sigma_w2", "q_star")


def write_phase_diagram(points: Sequence[CriticalPoint], out: Path) -> Path:
    """The critical line in the (σ_w², σ_b²) plane coloured by q* (.png/.pdf), or its table
    (.csv/.json)."""
    suffix = out.suffix.lower()
    rows = [p.to_dict() for p in points]
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        with out.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=TABLE_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    elif suffix == ".json":
        out.write_text(json.dumps(rows, indent=2))
    elif suffix in (".png", ".pdf"):
        _plot_phase_diagram(points, out)
    else:
        raise WorkbenchError(
            f"cannot write a phase diagram to '{out}': unknown file type '{suffix}'",
            hint="use .png, .pdf, .csv or .json",
        )
    return out


def _plot_phase_diagram(points: Sequence[CriticalPoint], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sw2 = [float(p.sigma_w2) for p in points]
    sb2 = [float(p.sigma_b2) for p in points]
    qs = [float(p.q_star) if p.q_star is not None else float("nan") for p in points]
    fig, ax = plt.subplots(figsize=(5.5, 4.2), dpi=150)
    ax.plot(sw2, sb2, color="0.3", lw=1, zorder=1)
    sc = ax.scatter(sw2, sb2, c=qs, cmap="viridis", s=18, zorder=2)
    fig.colorbar(sc, ax=ax, label=r"$q^*$ on the critical line")
    x_lo, x_hi = ax.get_xlim()
    y_mid = (min(sb2) + max(sb2)) / 2
    ax.text(x_lo + 0.05 * (x_hi - x_lo), y_mid, "ordered\n" + r"$\chi_1<1$", va="center")
    ax.text(
        x_hi - 0.05 * (x_hi - x_lo), y_mid, "chaotic\n" + r"$\chi_1>1$", va="center", ha="right"
    )
    ax.set_xlabel(r"$\sigma_w^2$")
    ax.set_ylabel(r"$\sigma_b^2$")
    name = points[0].activation if points else ""
    ax.set_title(f"Order-to-chaos transition, φ = {name}")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)

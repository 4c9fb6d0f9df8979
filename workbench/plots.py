"""Figures and tables written to disk (matplotlib with the Agg backend)."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError
from workbench.theory.critical import CriticalPoint

TABLE_COLUMNS = ("sigma_b2", "sigma_w2", "q_star")


def check_phase_diagram_path(out: Path) -> None:
    """Refuse an unknown file type before any work is done."""
    if out.suffix.lower() not in WRITERS:
        raise WorkbenchError(
            f"cannot write a phase diagram to '{out}': unknown file type '{out.suffix}'",
            hint="use " + ", ".join(WRITERS),
        )


def write_phase_diagram(points: Sequence[CriticalPoint], out: Path) -> Path:
    """The critical line in the (σ_w², σ_b²) plane coloured by q* (.png/.pdf), or its table
    (.csv/.json)."""
    check_phase_diagram_path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        WRITERS[out.suffix.lower()](points, out)
    except OSError as err:
        raise WorkbenchError(
            f"cannot write '{out}': {err.strerror or err}", hint="choose a writable path"
        ) from None
    return out


def _write_csv(points: Sequence[CriticalPoint], out: Path) -> None:
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=TABLE_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(p.to_dict() for p in points)


def _write_json(points: Sequence[CriticalPoint], out: Path) -> None:
    out.write_text(json.dumps([p.to_dict() for p in points], indent=2))


def _plot_phase_diagram(points: Sequence[CriticalPoint], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finite = [p for p in points if p.finite and p.sigma_w2 is not None]
    marked = [p for p in points if not p.finite and p.sigma_w2 is not None]
    sw2 = [float(p.sigma_w2) for p in finite]
    sb2 = [float(p.sigma_b2) for p in finite]
    qs = [float(p.q_star) if p.q_star is not None else float("nan") for p in finite]
    fig, ax = plt.subplots(figsize=(5.5, 4.2), dpi=150)
    ax.plot(sw2, sb2, color="0.3", lw=1, zorder=1)
    sc = ax.scatter(sw2, sb2, c=qs, cmap="viridis", s=18, zorder=2, plotnonfinite=False)
    free = [i for i, q in enumerate(qs) if q != q]  # every q is a fixed point there
    if free:
        ax.scatter([sw2[i] for i in free], [sb2[i] for i in free], color="0.5", s=18, zorder=2,
                   label="every $q$ is a fixed point")  # fmt: skip
    if marked:  # χ₁ = 1 there, but q grows without bound (relu with σ_b² > 0)
        label = r"$\chi_1=1$, no finite $q^*$"
        ax.scatter([float(p.sigma_w2) for p in marked], [float(p.sigma_b2) for p in marked],
                   marker="x", color="tab:red", s=22, zorder=3, label=label)  # fmt: skip
    if marked or free:
        ax.legend(loc="upper left", fontsize=8)
    missing = [p for p in points if p.sigma_w2 is None]
    if missing:
        ax.annotate(f"{len(missing)} sigma_b2 without a critical point", (0.02, 0.02),
                    xycoords="axes fraction", fontsize=7, color="tab:red")  # fmt: skip
    sb2 = sb2 + [float(p.sigma_b2) for p in marked] or [0.0]
    if len(free) < len(finite):
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


WRITERS = {
    ".png": _plot_phase_diagram,
    ".pdf": _plot_phase_diagram,
    ".csv": _write_csv,
    ".json": _write_json,
}


def fisher_sweep(sweep: Any, name: str, out: Path) -> Path:
    """mean_field_batchnorm Fig. 1: the λ_max bounds and η_max against γ, the vanilla
    network's as horizontal lines."""
    if out.suffix not in (".png", ".pdf"):
        raise WorkbenchError(f"--out must be a .png or .pdf file, got {out}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gammas = sweep.gammas
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=150)
    left.plot(gammas, [r.lower for r in sweep.rows], "o-", ms=3, label="BN, lower bound")
    left.plot(gammas, [r.upper for r in sweep.rows], "s--", ms=3, label="BN, upper bound")
    right.plot(gammas, [r.eta_max for r in sweep.rows], "o-", ms=3, label="BN")
    if sweep.vanilla is not None:
        left.axhline(sweep.vanilla.lower, color="tab:red", lw=1, label="vanilla, lower bound")
        right.axhline(sweep.vanilla.eta_max, color="tab:red", lw=1, label="vanilla")
    left.set_yscale("log")
    right.set_yscale("log")
    for ax in (left, right):
        ax.set_xlabel(r"$\gamma$")
        ax.legend(fontsize=7)
    left.set_ylabel(r"$\lambda_{max}$ of the Fisher")
    right.set_ylabel(r"$\eta_{max} = 2(1+\mu)/\lambda_{max}$")
    return titled_and_saved(fig, plt, name, out)


def sensitivity(profile: Any, comparison: list | None, name: str, out: Path) -> Path:
    """labatie2019 Figs. 3–5: χˡ against the layer and its increments δχ, δ_BN χ, δ_φ χ, the
    wide limit as lines and simulated networks as points with ±2 s.e. For residual networks
    the left panel is χˡ at the units' sums on log-log axes (Theorem 4's power law) and the
    right one the increments inside the branches."""
    if out.suffix not in (".png", ".pdf"):
        raise WorkbenchError(f"--out must be a .png or .pdf file, got {out}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(zip(profile.layers, comparison or [None] * len(profile.layers)))
    units = [r for r in rows if r[0].role == "sum"]
    inner = [r for r in rows if r[0].role != "sum"]
    chi_rows = units or rows
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=150)
    keys = [("delta_chi", r"$\delta\chi$"), ("delta_chi_bn", r"$\delta_{BN}\chi$"),
            ("delta_chi_phi", r"$\delta_{\phi}\chi$")]  # fmt: skip
    for ax, selected, keyset in ((left, chi_rows, [("chi", r"$\chi^l$")]), (right, inner, keys)):
        depth = list(range(1, len(selected) + 1))
        for key, label in keyset:
            values = [getattr(layer, key) for layer, _ in selected]
            if all(v is None for v in values):
                continue
            line = ax.plot(depth, [float("nan") if v is None else float(v) for v in values],
                           "-", lw=1, label=f"{label} wide limit")  # fmt: skip
            points = [(d, mc["monte_carlo"][key]) for d, (_, mc) in zip(depth, selected)
                      if mc is not None and mc["monte_carlo"][key] is not None]  # fmt: skip
            if points:
                ax.errorbar([d for d, _ in points], [p["mean"] for _, p in points],
                            yerr=[2 * p["se"] for _, p in points], fmt=".", ms=3,
                            color=line[0].get_color(), label=f"{label} simulated")  # fmt: skip
    left.set_yscale("log")
    if units:
        left.set_xscale("log")
        left.set_xlabel("residual unit l")
        right.set_xlabel("layer inside the branches (in order)")
    else:
        left.set_xlabel("layer l")
        right.set_xlabel("layer l")
    left.set_ylabel(r"normalised sensitivity $\chi^l$")
    right.set_ylabel("geometric increments")
    for ax in (left, right):
        ax.legend(fontsize=7)
    return titled_and_saved(fig, plt, name, out)


def titled_and_saved(fig: Any, plt: Any, name: str, out: Path) -> Path:
    """Title the figure with the spec's name and write it to ``out`` (closing it either way)."""
    fig.suptitle(name, fontsize=9)
    fig.tight_layout()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out)
    except OSError as err:
        raise WorkbenchError(f"cannot write '{out}': {err.strerror or err}") from None
    finally:
        plt.close(fig)
    return out

"""The report's figures as PNG (matplotlib, Agg), byte-for-byte reproducible: no timestamps or
software version in the metadata, fixed sizes and fonts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

PNG_METADATA = {"Software": None}  # matplotlib would write its version otherwise
DPI = 110


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "workbench"
    return plt


def _save(fig: Any, path: Path) -> Path:
    plt = _pyplot()
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, metadata=PNG_METADATA)
    plt.close(fig)
    return path


def stage_graph(stages: list[dict], path: Path) -> Path:
    """The top-level stages left to right; a repeat block as a box with its loop and count."""
    plt = _pyplot()
    width = max(6.0, 1.55 * len(stages))
    fig, ax = plt.subplots(figsize=(width, 2.2))
    ax.set_xlim(-0.7, len(stages) - 0.3)
    ax.set_ylim(-1.0, 1.2)
    ax.axis("off")
    for i, stage in enumerate(stages):
        label = stage["kind"]
        if stage.get("activation") and stage["kind"] in ("act", "repeat", "residual"):
            label += f"\n{stage['activation']}"
        repeat = stage["kind"] == "repeat"
        if repeat:
            label += f"\n×{stage['times']}"
        box = {"boxstyle": "round", "fc": "#dde8f5" if repeat else "white", "ec": "0.3"}
        ax.text(i, 0, label, ha="center", va="center", fontsize=8, bbox=box)
        ax.text(i, -0.75, stage["path"], ha="center", fontsize=6, color="0.4")
        if repeat:
            ax.annotate("", xy=(i + 0.22, 0.45), xytext=(i - 0.22, 0.45),
                        arrowprops={"arrowstyle": "->", "connectionstyle": "arc3,rad=-1.2",
                                    "color": "#1f5aa6"})  # fmt: skip
        if i:
            ax.annotate("", xy=(i - 0.38, 0), xytext=(i - 0.62, 0),
                        arrowprops={"arrowstyle": "->", "color": "0.3"})  # fmt: skip
    return _save(fig, path)


def evolution(data: dict, path: Path) -> Path:
    """qˡ of every input and cˡ of every pair against depth (log depth axis)."""
    plt = _pyplot()
    q, c = np.asarray(data["q"], float), np.asarray(data["c"], float)
    layers = np.arange(len(q))
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    left.plot(layers + 1, q, lw=0.8)
    left.set_xscale("log")
    left.set_xlabel("layer l + 1")
    left.set_ylabel(r"$q^l$")
    batch_mean = q.shape[1] == 1  # a block's orbit: means over its batch
    left.set_title("batch-mean variance" if batch_mean else f"variances of {q.shape[1]} inputs")
    if c.size:
        right.plot(layers + 1, np.clip(np.abs(1 - c), 1e-17, None), lw=0.6)
        right.set_xscale("log")
        right.set_yscale("log")
        right.set_ylabel(r"$|1 - c^l|$ (floored at 1e-17)")
        right.set_title(
            "batch-mean correlation" if batch_mean else f"correlations of {c.shape[1]} pairs"
        )
    right.set_xlabel("layer l + 1")
    return _save(fig, path)


def phase_diagram(data: dict, path: Path) -> Path:
    """The critical line in (σ_w², σ_b²) with the spec's point marked."""
    plt = _pyplot()
    line = data["line"]
    sw2 = [p["sigma_w2"] for p in line]
    sb2 = [p["sigma_b2"] for p in line]
    fig, ax = plt.subplots(figsize=(5.0, 3.8))
    ax.plot(
        sw2,
        sb2,
        "-" if len(line) > 1 else "s",
        color="0.2",
        lw=1.2,
        label="critical line (χ₁ = 1)" if len(line) > 1 else "critical point (χ₁ = 1)",
    )
    ax.plot([data["sigma_w2"]], [data["sigma_b2"]], "o", color="#c0392b", label="this spec")
    ax.set_xlabel(r"$\sigma_w^2$")
    ax.set_ylabel(r"$\sigma_b^2$")
    ax.set_title(f"φ = {data['activation']}: ordered (left) / chaotic (right)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def modes(tables: list[dict], path: Path) -> Path:
    """ξ_k per Fourier mode of each conv block (finite ones)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for table in tables:
        xi = [m["xi"] if m["xi"] is not None else np.nan for m in table["modes"]]
        ax.plot(range(len(xi)), xi, "o-", ms=3, label=table["path"])
    ax.set_xlabel("mode (flattened frequency index)")
    ax.set_ylabel(r"$\xi_k$ (passes)")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    return _save(fig, path)


def spectrum(data: dict, path: Path) -> Path:
    """λ_max, λ_rest and κ of the NTK against depth, with the phase's asymptotics."""
    plt = _pyplot()
    rows = data["depths"]
    depth = [r["depth"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    for key, style in (("lambda_max", "o-"), ("lambda_rest", "s-")):
        left.plot(depth, [r[key] for r in rows], style, ms=3, label=key.replace("_", " "))
        left.plot(depth, [r["asymptotic"][key] for r in rows], "--", lw=0.8,
                  label=f"{key.replace('_', ' ')} (asymptotic)")  # fmt: skip
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("depth")
    left.legend(fontsize=7)
    right.plot(depth, [r["kappa"] for r in rows], "o-", ms=3, label="κ")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("depth")
    right.set_ylabel(r"$\kappa = \lambda_{max}/\lambda_{min}$")
    return _save(fig, path)


def gradients(data: dict, path: Path) -> Path:
    """log(‖∂L/∂Wˡ‖² / ‖∂L/∂W^L‖²) against the weight layer l."""
    plt = _pyplot()
    logs = data["log_ratio"]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(range(1, len(logs) + 1), logs, "-", lw=1.2)
    ax.axhline(0.0, color="0.6", lw=0.6)
    if len(logs) > 100:
        ax.set_xscale("log")
    ax.set_xlabel("weight layer l")
    ax.set_ylabel(r"$\log \|\partial L/\partial W^l\|^2 / \|\partial L/\partial W^L\|^2$")
    return _save(fig, path)


def sensitivity(data: dict, path: Path) -> Path:
    """χˡ (labatie2019 eq. 3) against the layer, log-log for long networks."""
    plt = _pyplot()
    chi = data["chi"]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(range(1, len(chi) + 1), chi, "-", lw=1.2)
    ax.set_yscale("log")
    if len(chi) > 100:
        ax.set_xscale("log")
    ax.set_xlabel("layer l (activations and residual sums)")
    ax.set_ylabel(r"normalised sensitivity $\chi^l$")
    return _save(fig, path)


def validation(data: dict, path: Path) -> Path:
    """Theory lines and Monte-Carlo points (mean ± interval + allowance) of qˡ and cˡ."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, quantity in zip(axes, ("q", "c")):
        rows = [c for c in data["checks"] if c["quantity"] == quantity]
        layer = [c["layer"] for c in rows]
        ax.plot(layer, [c["theory"] for c in rows], "-", color="0.2", lw=1.2, label="theory")
        ax.errorbar(layer, [c["mc_mean"] for c in rows],
                    yerr=[c["mc_ci"] + c["allowance"] for c in rows], fmt="o", ms=3,
                    color="#c0392b", label=f"Monte-Carlo ({data['samples']} nets, width "
                    f"{data['width']})")  # fmt: skip
        failed = [c for c in rows if not c["passed"]]
        if failed:
            ax.plot([c["layer"] for c in failed], [c["mc_mean"] for c in failed], "x",
                    color="k", ms=8, label="failed")  # fmt: skip
        ax.set_xlabel("layer l")
        ax.set_ylabel(rf"${quantity}^l$")
        ax.legend(fontsize=7)
    return _save(fig, path)

"""Heat maps of a sweep: one metric over two grid axes, with the theory's depth scales drawn
over a (σ_w², depth) map."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from workbench.errors import WorkbenchError
from workbench.plots import titled_and_saved
from workbench.sweep.grid import Axis
from workbench.sweep.overlay import Curves

DEFAULT_METRIC = {"train": "test_accuracy", "analyze": "xi_c", "fisher": "eta_max",
                  "ntk-spectrum": "kappa", "kernel": "nngp_correlation_mean"}  # fmt: skip


def metric_of(record: dict, task: str, metric: str) -> float:
    """One number of a cell's record (NaN for a failed cell or a missing value): a final
    training number for ``train``, the first repeat block's for ``analyze``, the deepest
    row's (or a top-level one) for ``ntk-spectrum``, a top-level one otherwise."""
    result = record.get("result")
    if result is None:
        return math.nan
    if task == "train":
        if metric not in result["final"]:
            raise WorkbenchError(f"no metric {metric!r} in the cells' results",
                                 hint=f"use one of {', '.join(result['final'])}")  # fmt: skip
        value = result["final"][metric]
    elif task == "analyze":
        value = (result.get("blocks") or [{}])[0].get(metric)
    elif task == "ntk-spectrum" and metric not in result:
        value = (result.get("depths") or [{}])[-1].get(metric)
    else:
        value = result.get(metric)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def metric_grid(records: Sequence[dict], axes: Sequence[Axis], x: int, y: int, task: str,
                metric: str) -> np.ndarray:  # fmt: skip
    """The metric as an array over axes ``x`` (columns) and ``y`` (rows); with more axes, the
    last cell written at each (x, y) shows."""
    grid = np.full((len(axes[y].values), len(axes[x].values)), np.nan)
    for record in records:
        grid[record["index"][y], record["index"][x]] = metric_of(record, task, metric)
    return grid


def _edges(values: Sequence[float]) -> tuple[np.ndarray, bool]:
    """Cell edges around sorted values, and whether the axis is geometric (drawn on a log scale)."""
    v = np.asarray(sorted(values), float)
    if len(v) == 1:
        return np.array([v[0] - 0.5, v[0] + 0.5]), False
    geometric = (
        bool(np.all(v > 0)) and len(v) > 2 and np.allclose(np.diff(np.log(v)), np.log(v[1] / v[0]))
    )
    w = np.log(v) if geometric else v
    mid = (w[1:] + w[:-1]) / 2
    edges = np.concatenate([[w[0] - (mid[0] - w[0])], mid, [w[-1] + (w[-1] - mid[-1])]])
    return (np.exp(edges) if geometric else edges), geometric


def write_heatmap(records: Sequence[dict], axes: Sequence[Axis], x: int, y: int, task: str,
                  metric: str, out: Path, title: str,
                  scales: Curves | None = None) -> Path:  # fmt: skip
    """The metric over axes ``x`` and ``y``; with ``scales``, the depth-scale curves on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = metric_grid(records, axes, x, y, task, metric)
    order_x, order_y = np.argsort(axes[x].values), np.argsort(axes[y].values)
    grid = grid[np.ix_(order_y, order_x)]
    x_edges, x_log = _edges(axes[x].values)
    y_edges, y_log = _edges(axes[y].values)
    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=150)
    norm = None
    if metric.endswith("accuracy"):
        norm = matplotlib.colors.Normalize(0, 1)
    elif metric.endswith("loss") or metric.startswith("xi"):
        positive = grid[np.isfinite(grid) & (grid > 0)]
        if positive.size:  # a loss, or a depth scale near the critical line, spans decades
            norm = matplotlib.colors.LogNorm(positive.min(), positive.max())
    mesh = ax.pcolormesh(x_edges, y_edges, np.ma.masked_invalid(grid), cmap="viridis", norm=norm)
    fig.colorbar(mesh, ax=ax, label=metric.replace("_", " "))
    diverged = [r for r in records if (r.get("result") or {}).get("diverged_at_step") is not None]
    if diverged:
        xs = [r["cell"][axes[x].key] for r in diverged]
        ax.plot(xs, [r["cell"][axes[y].key] for r in diverged], "rx", ms=5, label="loss diverged")
    if scales is not None or diverged:
        styles = (("w-", 2.0), ("c--", 1.4), ("m:", 1.6))
        for (label, curve), (fmt, lw) in zip(scales.curves.items() if scales else (), styles):
            if np.isfinite(curve).any():
                ax.plot(scales.x, curve, fmt, lw=lw, label=label)
        ax.set_ylim(y_edges[0], y_edges[-1])
        if scales is not None and scales.note:
            ax.set_title(scales.note, fontsize=6)
        ax.legend(fontsize=7, loc="upper right", framealpha=0.6)
    if x_log:
        ax.set_xscale("log")
    if y_log:
        ax.set_yscale("log")
    ax.set_xlabel(axes[x].key)
    ax.set_ylabel(axes[y].key)
    if not np.isfinite(grid).all():
        ax.text(0.01, 0.01, "blank: failed or not finite", transform=ax.transAxes, fontsize=6,
                color="gray")  # fmt: skip
    return titled_and_saved(fig, plt, title, out)


def summary_rows(records: Sequence[dict], task: str) -> list[dict[str, Any]]:
    """One flat row per cell: its axis values and final numbers (or its error)."""
    rows = []
    for record in records:
        row: dict[str, Any] = dict(record.get("cell", {}))
        result = record.get("result")
        if result is None:
            row["error"] = " ".join(str(record.get("error")).split())
        elif task == "train":
            row |= result["final"] | {
                "diverged_at_step": result["diverged_at_step"],
                "seconds": result["seconds"],
                "device": result["device"],
            }
        elif task != "analyze":
            row |= {k: v for k, v in result.items() if not isinstance(v, (list, dict))}
            for depth_row in result.get("depths", [])[-1:]:
                row |= {k: v for k, v in depth_row.items() if not isinstance(v, (list, dict))}
        else:
            for block in result.get("blocks", []):
                row |= {
                    f"{block['path']}.{k}": v
                    for k, v in block.items()
                    if k != "path" and not isinstance(v, (list, dict))
                }
        rows.append(row)
    return rows

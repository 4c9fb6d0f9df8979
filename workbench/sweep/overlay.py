"""The theory's depth scales along a sweep's weight-variance axis, for drawing over a
trainability heat map: 6ξ_c (pabari_zhou §4, xiao2018 Fig. 2: networks train up to a few ξ_c),
ξ₁ and ξ_* (xiao_bahri §4), all from ``analyze`` of the same spec."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.errors import WorkbenchError
from workbench.sweep.grid import Axis, repeat_paths

POINTS = 120
TRAINABLE_XI_C = 6  # pabari_zhou, xiao2018: trainable to a depth of about 6 ξ_c
LABELS = (rf"${TRAINABLE_XI_C}\,\xi_c$", r"$\xi_1$", r"$\xi_*$")  # matplotlib mathtext


@dataclass(frozen=True)
class DepthScales:
    """Depth scales at each σ_w² (NaN where infinite or not computed)."""

    sigma_w2: np.ndarray
    curves: dict[str, np.ndarray]  # label → depth values


def overlay_axes(axes: Sequence[Axis]) -> tuple[Axis, Axis] | None:
    """(weight-variance axis, depth axis) when the grid has both, else None."""
    weight = next((a for a in axes if a.target.endswith("sigma_w2")), None)
    depth = next((a for a in axes if a.target.endswith("repeat.times")), None)
    return (weight, depth) if weight and depth else None


def depth_scales(raw: Any, weight: Axis, depth: Axis, points: int = POINTS) -> DepthScales:
    """Depth scales of the repeat block the depth axis sets, at ``points`` σ_w² across the
    weight axis's range (the spec's other values as written)."""
    from workbench.analysis import analyze_spec
    from workbench.compile import spec_from_dict
    from workbench.sweep.grid import Cell, apply_cell
    from workbench.theory.spectrum import ntk_depth_scales

    block = depth.target.removesuffix(".repeat.times")
    if depth.target not in repeat_paths(raw):
        raise WorkbenchError(f"{depth.target} is not a repeat block's times")
    grid = np.linspace(min(weight.values), max(weight.values), points)
    labels = LABELS
    curves = {label: np.full(points, np.nan) for label in labels}
    for i, sw2 in enumerate(grid):
        cell = Cell((0,), ((weight.key, float(sw2)),))
        data, _ = apply_cell(raw, (weight,), cell)
        found = [b for b in analyze_spec(spec_from_dict(data)).to_dict()["blocks"]
                 if b["path"] == block]  # fmt: skip
        if not found or found[0].get("chi_1") is None:
            continue
        b = found[0]
        xi_1, xi_star = ntk_depth_scales(float(b["chi_1"]), _number(b.get("chi_c")))
        for label, value in zip(labels, (TRAINABLE_XI_C * _number(b.get("xi_c")), xi_1, xi_star)):
            curves[label][i] = value if value is not None and math.isfinite(value) else np.nan
    return DepthScales(grid, curves)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan

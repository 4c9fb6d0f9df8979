"""Theory curves drawn over a sweep's heat map. Over (σ_w², depth): 6ξ_c (pabari_zhou §4,
xiao2018 Fig. 2: networks train up to a few ξ_c) and xiao_bahri's ξ₁ and ξ_* (§4), from
``analyze`` of the same spec. Over (BN γ, learning rate): mean_field_batchnorm's
η_max = 2(1 + μ)/λ_max (eq. 1 and §3) and η_max/2 from ``workbench fisher``, the Fisher
information of the spec on a batch of the training data, differentiated through the batch
statistics as torch's training mode does (with fixed statistics the bound sits 3–4× lower
than where SGD diverges; through them it falls between the last stable and the first
diverging learning rate of the README's map)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.errors import WorkbenchError
from workbench.sweep.grid import Axis, Cell, apply_cell, repeat_paths

POINTS = 120
GAMMA_POINTS = 10  # Fisher bounds through batch statistics take ~3 s each on 128 inputs
TRAINABLE_XI_C = 6  # pabari_zhou, xiao2018: trainable to a depth of about 6 ξ_c
LABELS = (rf"${TRAINABLE_XI_C}\,\xi_c$", r"$\xi_1$", r"$\xi_*$")  # matplotlib mathtext


@dataclass(frozen=True)
class Curves:
    """Curves y(x) along the heat map's x axis (NaN where infinite or not computed)."""

    x: np.ndarray
    curves: dict[str, np.ndarray]  # label → y values
    note: str = ""


def overlay_axes(axes: Sequence[Axis]) -> tuple[Axis, Axis] | None:
    """(x axis, y axis) of a grid the theory can draw over: (σ_w², depth) or (BN γ, lr)."""
    pairs = ((lambda a: a.target.endswith("sigma_w2"), lambda a: a.target.endswith("repeat.times")),
             (lambda a: all(p.endswith("bn.gamma") for p in a.paths) and bool(a.paths),
              lambda a: a.target == "lr"))  # fmt: skip
    for is_x, is_y in pairs:
        x = next((a for a in axes if is_x(a)), None)
        y = next((a for a in axes if is_y(a)), None)
        if x and y:
            return x, y
    return None


def theory_curves(raw: Any, x: Axis, y: Axis, plan: Any, data: Any) -> Curves:
    """The curves for an ``overlay_axes`` pair."""
    if y.target == "lr":
        return learning_rate_bounds(raw, x, plan.settings, data)
    return depth_scales(raw, x, y)


def depth_scales(raw: Any, weight: Axis, depth: Axis, points: int = POINTS) -> Curves:
    """Depth scales of the repeat block the depth axis sets, at ``points`` σ_w² across the
    weight axis's range (the spec's other values as written)."""
    from workbench.analysis import analyze_spec
    from workbench.compile import spec_from_dict
    from workbench.theory.spectrum import ntk_depth_scales

    block = depth.target.removesuffix(".repeat.times")
    if depth.target not in repeat_paths(raw):
        raise WorkbenchError(f"{depth.target} is not a repeat block's times")
    grid = np.linspace(min(weight.values), max(weight.values), points)
    curves = {label: np.full(points, np.nan) for label in LABELS}
    for i, sw2 in enumerate(grid):
        spec_data, _ = apply_cell(raw, (weight,), Cell((0,), ((weight.key, float(sw2)),)))
        found = [b for b in analyze_spec(spec_from_dict(spec_data)).to_dict()["blocks"]
                 if b["path"] == block]  # fmt: skip
        if not found or found[0].get("chi_1") is None:
            continue
        b = found[0]
        xi_1, xi_star = ntk_depth_scales(float(b["chi_1"]), _number(b.get("chi_c")))
        for label, value in zip(LABELS, (TRAINABLE_XI_C * _number(b.get("xi_c")), xi_1, xi_star)):
            curves[label][i] = value if value is not None and math.isfinite(value) else np.nan
    return Curves(grid, curves)


def learning_rate_bounds(raw: Any, gamma: Axis, settings: Any, data: Any,
                         points: int | None = None) -> Curves:  # fmt: skip
    """η_max(γ) and η_max/2 for the spec on the first training batch, gradients through the
    batch statistics as the simulator trains (torch's training mode), with the sweep's
    momentum; the spec's other values as written."""
    from workbench.compile import spec_from_dict
    from workbench.theory.fisher import gamma_sweep

    spec = spec_from_dict(raw)
    batch = np.asarray(data.shaped(spec.input_shape).x_train[: settings.batch_size], float)
    gammas = list(np.linspace(min(gamma.values), max(gamma.values), points or GAMMA_POINTS))
    sweep = gamma_sweep(spec, gammas, momentum=settings.momentum, inputs=batch,
                        statistics="batch")  # fmt: skip
    eta = np.array([float(r.eta_max) for r in sweep.rows])
    note = (f"eta_max from the Fisher on the first {len(batch)} training inputs, through the "
            f"BN batch statistics, momentum {settings.momentum:g}")  # fmt: skip
    return Curves(np.array(gammas), {r"$\eta_{max}$": eta, r"$\eta_{max}/2$": eta / 2}, note)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan

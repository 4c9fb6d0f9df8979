"""The vectorised route of an ``analyze`` sweep: where the grid only moves a one-step FC
block's σ_w² and σ_b², every cell's analysis comes from one ``theory.fc_grid`` evaluation
(seconds for 40,000 cells) instead of one task per cell; the cells it cannot serve to full
accuracy (q* → 0, the critical line itself) are left to the tasks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from workbench.errors import UnsupportedError

GRID_TARGETS = ("defaults.sigma_w2", "defaults.sigma_b2")
MIN_CELLS = 50  # below this the tasks are as quick


def vectorised_outcomes(axes: Sequence[Any], jobs: Sequence[Any]) -> dict[str, dict]:
    """Outcome per job key for the jobs the grid analysis serves ({} when it does not apply)."""
    from workbench.compile import spec_from_dict
    from workbench.nodes.base import blocks
    from workbench.theory.fc_grid import analyze_grid, checked
    from workbench.theory.fc_maps import body_steps

    if len(jobs) < MIN_CELLS or not all(a.target in GRID_TARGETS for a in axes):
        return {}
    spec = spec_from_dict(jobs[0].spec_data)
    found = list(blocks(spec.layers))
    if len(found) != 1:
        return {}
    try:
        steps = body_steps(found[0].body)
    except UnsupportedError:
        return {}
    if len(steps) != 1:
        return {}
    step = steps[0]
    sigmas = {}
    for key in ("sigma_w2", "sigma_b2"):
        swept = f"defaults.{key}" in {a.target for a in axes}
        first = float(getattr(step, key))
        if swept and first != float(jobs[0].spec_data["defaults"][key]):
            return {}  # a layer of the block sets its own value: the defaults do not reach it
        values = [job.spec_data["defaults"][key] if swept else first for job in jobs]
        sigmas[key] = np.array(values, float)
    grid = analyze_grid(step.phi, sigmas["sigma_w2"], sigmas["sigma_b2"])
    checked(step.phi, sigmas["sigma_w2"], sigmas["sigma_b2"], grid)
    return {job.key: {"result": _result(spec.name, found[0].path, grid, i)}
            for i, job in enumerate(jobs) if grid.served[i]}  # fmt: skip


def _result(name: str, path: str, grid: Any, i: int) -> dict:
    """The cell's ``analyze`` result, as ``analyze_spec(...).to_dict()`` writes it."""
    from workbench.precision import F64
    from workbench.theory.fc_fixed_points import FixedPointAnalysis, depth_scale, phase_of

    chi_1, chi_q, chi_c = (float(getattr(grid, k)[i]) for k in ("chi_1", "chi_q", "chi_c"))
    block = FixedPointAnalysis(path, float(grid.q_star[i]), float(grid.c_star[i]), chi_1, chi_q,
                               chi_c, depth_scale(chi_q, F64), depth_scale(chi_c, F64),
                               phase_of(chi_1, F64))  # fmt: skip
    return {
        "spec": name,
        "precision": F64.describe(),
        "blocks": [block.to_dict()],
        "skipped": [],
        "computed_by": "theory.fc_grid (vectorised, checked against analyze)",
    }

"""Tuning the γ of a batch-normalised repeat block for a requested gradient growth per pass,
χ₁ = X, under the data distribution's statistics (``theory.population_growth``).

χ₁ = 1 exactly has no solution there: the growth is γ² E[φ′²]/Var[φ] ≥ 1 for the standard
body (Gaussian Poincaré inequality, equality only for an affine φ), so a batch-normalised
network reaches the critical line only in the limit γ → 0, where a smooth φ is nearly linear
(tanh: χ₁ − 1 ≈ 1.3e−4 at γ = 0.1, 1.1e−10 at γ = 0.003); relu's growth π/(π − 1) does not
depend on γ at all. ``--target critical`` therefore returns the γ with χ₁ − 1 = half the
tolerance every tuned spec is held to (``tune.CHI_TOLERANCE``, 1e-10), and says why; the
engine's χ₁ there is within 2e-13 of 40-digit quadrature (tests/test_tune_gamma.py)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from scipy.optimize import brentq

from workbench.errors import TheoryError, WorkbenchError

GAMMA_RANGE = (1e-3, 1e2)  # where the root is bracketed


def tune_gamma(spec_file: str | Path, raw: Any, lines: Any, spec: Any, block: Any,
               target: str, chi: float) -> Any:  # fmt: skip
    """The γ (one value for every batch norm of ``block``) with χ₁ = ``chi``, written into
    the spec data and vouched for by analysing the tuned spec again."""
    from workbench.compile import spec_from_dict
    from workbench.theory.fisher import with_gamma
    from workbench.theory.population_growth import population_chi_1
    from workbench.tune import CHI_TOLERANCE, Tuned, vouched

    paths = _gamma_paths(raw, block.path)

    def growth(gamma: float) -> float:
        return population_chi_1(with_gamma(spec, gamma, within=block.path), block.path)

    lo, hi = GAMMA_RANGE
    at_lo, at_one, at_hi = growth(lo), growth(1.0), growth(hi)
    if abs(at_hi - at_lo) <= 1e-9 * at_lo:
        raise TheoryError(f"{block.path}: chi_1 = {at_one:.10g} at every gamma (the "
                          "activation is homogeneous: gamma only scales it)")  # fmt: skip
    wanted, notes = chi, ()
    if chi == 1:  # the limit γ → 0, to the tolerance every tuned spec is held to
        wanted = 1 + CHI_TOLERANCE / 2
        notes = (
            "chi_1 = 1 exactly has no solution for a batch-normalised block: with the data "
            "distribution's statistics its gradients grow by chi_1 = gamma^2 E[phi'^2] / "
            "Var[phi] >= 1 per pass (Gaussian Poincare inequality, equal only for an affine "
            f"phi), approaching 1 only as gamma -> 0; this gamma gives chi_1 - 1 = "
            f"{CHI_TOLERANCE / 2:g}, where the activation runs in its linear regime "
            f"(chi_1 - 1 = {at_one - 1:.6g} at gamma = 1)",
        )
    if not min(at_lo, at_hi) < wanted < max(at_lo, at_hi):
        raise TheoryError(
            f"{block.path}: chi_1 = {chi} is outside [{min(at_lo, at_hi):.10g}, "
            f"{max(at_lo, at_hi):.10g}], the growth for gamma in [{lo:g}, {hi:g}]",
            hint="a batch-normalised block grows by chi_1 >= 1 (Gaussian Poincare inequality)",
        )
    log_gamma = brentq(lambda s: growth(math.exp(s)) - wanted, math.log(lo), math.log(hi),
                       xtol=1e-14, rtol=1e-15, maxiter=200)  # fmt: skip
    gamma = math.exp(log_gamma)
    data = _gamma_written(raw, paths, gamma)
    analysis = vouched(spec_from_dict(data, file=str(spec_file), lines=lines), block.path,
                       "chi_1", chi)  # fmt: skip
    return Tuned(str(spec_file), block.path, target, _default(raw, "sigma_w2"),
                 _default(raw, "sigma_b2"), analysis, data, gamma, notes)  # fmt: skip


def _gamma_paths(raw: Any, block_path: str) -> list[str]:
    from workbench.sweep.grid import bn_gamma_paths

    paths = [p for p in bn_gamma_paths(raw) if p.startswith(f"{block_path}.")]
    if not paths:
        raise WorkbenchError(f"{block_path}: no batch norm of the block was found in the spec "
                             "file's data")  # fmt: skip
    return paths


def _gamma_written(raw: Any, paths: list[str], gamma: float) -> Any:
    from workbench.sweep.grid import set_paths, unshared

    data = unshared(raw)
    set_paths(data, paths, gamma)
    return data


def _default(raw: Any, key: str) -> float | None:
    value = (raw.get("defaults") or {}).get(key)
    return None if value is None else float(value)

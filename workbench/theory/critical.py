"""The critical line σ_w²(σ_b²) of a deep FC network with activation φ
(pabari_zhou eqs. 23–24; Schoenholz et al.): the (σ_w², q*) with

    q* = σ_w² E[φ(u)²] + σ_b²   and   χ₁ = σ_w² E[φ'(u)²] = 1,   u ~ N(0, q*).

Eliminating σ_w² = 1/E[φ'(u)²] leaves one equation in q:
G(q) = E[φ(u)²]/E[φ'(u)²] + σ_b² − q = 0, solved by a float64 scan for the first sign change
on a log grid, Brent refinement, and Newton/secant polish at the context's precision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import brentq

from workbench.activations import Activation
from workbench.errors import TheoryError
from workbench.gaussian import expect
from workbench.precision import Context, Float64
from workbench.solve import polish_root

F64 = Float64()
Q_GRID = np.geomspace(1e-8, 1e6, 57)


@dataclass
class CriticalPoint:
    """A point of the critical line; q_star is None where every q is a fixed point."""

    activation: str
    sigma_b2: Any
    sigma_w2: Any
    q_star: Any
    note: str | None = None
    ctx: Context = F64

    def to_dict(self) -> dict:
        out = {
            "activation": self.activation,
            "sigma_b2": self.ctx.to_json(self.sigma_b2),
            "sigma_w2": self.ctx.to_json(self.sigma_w2),
            "q_star": None if self.q_star is None else self.ctx.to_json(self.q_star),
        }
        if self.note:
            out["note"] = self.note
        return out


def _moments(phi: Activation, q: Any, ctx: Context) -> tuple[Any, Any]:
    d = phi.derivative()
    return expect(phi, phi, q, q, q, ctx), expect(d, d, q, q, q, ctx)


def _gap(phi: Activation, sigma_b2: Any, q: Any, ctx: Context) -> Any:
    e_phi2, e_dphi2 = _moments(phi, q, ctx)
    if e_dphi2 == 0:
        raise TheoryError(f"E[{phi.name}'(u)^2] = 0 at q = {q}: no critical point")
    return e_phi2 / e_dphi2 + sigma_b2 - q


def critical_point(phi: Activation, sigma_b2: Any, ctx: Context = F64) -> CriticalPoint:
    """The critical (σ_w², q*) at bias variance σ_b² (eqs. 23–24)."""
    if sigma_b2 < 0:
        raise TheoryError(f"sigma_b2 must be >= 0, got {sigma_b2}")
    with ctx.active():
        sb2 = ctx.num(sigma_b2)
        if phi.positive_homogeneity() == 1:
            return _homogeneous(phi, sb2, ctx)
        q64 = _first_root(phi, float(sigma_b2))
        if q64 is None:
            return _zero_limit(phi, sb2, ctx)
        q_star = polish_root(lambda q: _gap(phi, sb2, q, ctx), q64, ctx, what="critical q*")
        sigma_w2 = 1 / _moments(phi, q_star, ctx)[1]
        return CriticalPoint(phi.name, sb2, sigma_w2, q_star, None, ctx)


def _first_root(phi: Activation, sigma_b2: float) -> float | None:
    """The smallest q > 0 where G changes sign, refined by Brent's method in float64."""
    # below the rounding floor the sign of G says nothing: count such points as zero
    gaps = [_gap(phi, sigma_b2, q, F64) for q in Q_GRID]
    gaps = [0.0 if abs(g) <= 1e-13 * (q + sigma_b2) else g for q, g in zip(Q_GRID, gaps)]
    for (qa, ga), (qb, gb) in zip(zip(Q_GRID, gaps), zip(Q_GRID[1:], gaps[1:])):
        if ga > 0 > gb:
            return brentq(lambda q: _gap(phi, sigma_b2, q, F64), qa, qb, xtol=1e-300, rtol=1e-15)
    return None


def _zero_limit(phi: Activation, sb2: Any, ctx: Context) -> CriticalPoint:
    """No positive root: at σ_b² = 0 with φ(0) = 0 the line ends at q* = 0, σ_w² = 1/φ'(0)²."""
    zero = ctx.num(0)
    phi0 = expect(phi, phi, zero, zero, zero, ctx)
    if sb2 != 0 or phi0 != 0:
        raise TheoryError(
            f"{phi.name} has no critical point at sigma_b2 = {sb2}: the condition "
            "chi_1 = 1 has no solution with a finite fixed point q*",
        )
    dphi0 = expect(phi.derivative(), phi.derivative(), zero, zero, zero, ctx)
    if dphi0 == 0:
        raise TheoryError(f"{phi.name}'(0) = 0: no critical point at sigma_b2 = 0")
    return CriticalPoint(phi.name, sb2, 1 / dphi0, zero, "the critical line ends at q* = 0", ctx)


def _homogeneous(phi: Activation, sb2: Any, ctx: Context) -> CriticalPoint:
    """Degree-1 homogeneous φ (relu, linear): χ₁ = σ_w² E[φ'(z)²] does not depend on q, so
    the critical σ_w² is 1/E[φ'(z)²]; a finite fixed point needs σ_b² = 0, and then every q is
    one."""
    one = ctx.num(1)
    sigma_w2 = 1 / _moments(phi, one, ctx)[1]
    if sb2 != 0:
        raise TheoryError(
            f"{phi.name} has no critical point at sigma_b2 = {sb2}: at the critical "
            f"sigma_w2 = {float(sigma_w2):.6g} the variance grows without bound",
            hint="use sigma_b2 = 0 for the critical point of a positively homogeneous activation",
        )
    return CriticalPoint(phi.name, sb2, sigma_w2, None, "every q is a fixed point", ctx)


def critical_line(
    phi: Activation, sigma_b2_values: Sequence[float], ctx: Context = F64, progress: bool = False
) -> list[CriticalPoint]:
    """Critical points over a grid of σ_b² (the phase diagram's boundary)."""
    from tqdm import tqdm

    values = tqdm(sigma_b2_values, desc="critical line", disable=not progress, leave=False)
    return [critical_point(phi, sb2, ctx) for sb2 in values]

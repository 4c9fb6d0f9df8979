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

from workbench.activations import Activation
from workbench.errors import TheoryError
from workbench.gaussian import expect
from workbench.precision import Context, Float64
from workbench.solve import polish_root

F64 = Float64()
Q_GRID = np.geomspace(1e-8, 1e6, 57)


@dataclass
class CriticalPoint:
    """A point of the critical line; q_star is None where every q is a fixed point or where
    none is finite (``finite`` False: χ₁ = 1 at sigma_w2 but q grows without bound; sigma_w2
    None where χ₁ = 1 has no solution at all). ``note`` says which."""

    activation: str
    sigma_b2: Any
    sigma_w2: Any
    q_star: Any
    note: str | None = None
    ctx: Context = F64
    finite: bool = True

    def to_dict(self) -> dict:
        out = {
            "activation": self.activation,
            "sigma_b2": self.ctx.to_json(self.sigma_b2),
            "sigma_w2": None if self.sigma_w2 is None else self.ctx.to_json(self.sigma_w2),
            "q_star": None if self.q_star is None else self.ctx.to_json(self.q_star),
        }
        if not self.finite:
            out["finite_q_star"] = False
        if self.note:
            out["note"] = self.note
        return out


def moments(phi: Activation, q: Any, ctx: Context) -> tuple[Any, Any]:
    """E[φ(u)²] and E[φ′(u)²] at u ~ N(0, q): the two sides of the critical line (eqs. 23–24)."""
    d = phi.derivative()
    return expect(phi, phi, q, q, q, ctx), expect(d, d, q, q, q, ctx)


def _gap(phi: Activation, sigma_b2: Any, q: Any, ctx: Context) -> Any:
    e_phi2, e_dphi2 = moments(phi, q, ctx)
    if e_dphi2 == 0:
        raise TheoryError(f"E[{phi.name}'(u)^2] = 0 at q = {q}: no critical point")
    return e_phi2 / e_dphi2 + sigma_b2 - q


def critical_point(phi: Activation, sigma_b2: Any, ctx: Context = F64) -> CriticalPoint:
    """The critical (σ_w², q*) at bias variance σ_b² (eqs. 23–24); a TheoryError saying why
    where there is no critical point with a finite q*."""
    point = critical_line(phi, [sigma_b2], ctx)[0]
    if not point.finite:
        message = f"{phi.name} has no critical point at sigma_b2 = {sigma_b2}: {point.note}"
        repels = "repelling" in (point.note or "")
        if repels:
            hint = _REPELLING_HINT
        elif phi.positive_homogeneity() == 1:
            hint = _HOMOGENEOUS_HINT
        else:
            hint = _NO_POINT_HINT
        raise TheoryError(message, hint=hint)
    return point


_NO_POINT_HINT = (
    "chi_1 = 1 needs sigma_w2 = 1/E[phi'(u)^2] at a fixed point q*, and none is finite here "
    "(an activation with a tiny derivative needs an enormous sigma_w2); "
    "`workbench phase-diagram` shows the bias variances that have a critical point"
)


_HOMOGENEOUS_HINT = (
    "use sigma_b2 = 0 for the critical point of a positively homogeneous activation; "
    "`workbench phase-diagram` marks such bias variances"
)


_REPELLING_HINT = (
    "`workbench analyze` shows the attracting fixed point a network settles at instead; "
    "`workbench phase-diagram` shows the bias variances that have a critical point"
)


def critical_line(
    phi: Activation, sigma_b2_values: Sequence[Any], ctx: Context = F64, progress: bool = False
) -> list[CriticalPoint]:
    """Critical points over a grid of σ_b² (the phase diagram's boundary). The float64 roots of
    G come from one vectorised solve for the whole grid; other precisions polish each of them.
    A σ_b² without a finite critical point is kept, marked (``CriticalPoint.finite``)."""
    from tqdm import tqdm

    for sb2 in sigma_b2_values:
        if not sb2 >= 0:
            raise TheoryError(f"sigma_b2 must be >= 0, got {sb2}")
    homogeneous = phi.positive_homogeneity() == 1
    seeds, notes = [None] * len(sigma_b2_values), [None] * len(sigma_b2_values)
    if not homogeneous:
        seeds, notes = _first_roots(phi, np.array([float(v) for v in sigma_b2_values]))
    values = tqdm(
        list(zip(sigma_b2_values, seeds, notes)),
        desc="critical line",
        disable=not progress,
        leave=False,
    )
    points = []
    with ctx.active():
        for sigma_b2, q64, note in values:
            sb2 = ctx.num(sigma_b2)
            if homogeneous:
                points.append(_homogeneous(phi, sb2, ctx))
            elif np.isnan(q64):
                try:
                    points.append(_zero_limit(phi, sb2, ctx))
                except TheoryError as exc:
                    why = exc.message if note is None else f"no attracting fixed point has {note}"
                    points.append(CriticalPoint(phi.name, sb2, None, None, why, ctx,
                                                finite=False))  # fmt: skip
            else:
                points.append(_from_root(phi, sb2, q64, ctx))
    return points


def _from_root(phi: Activation, sb2: Any, q64: float, ctx: Context) -> CriticalPoint:
    q_star = ctx.num(q64)
    if not ctx.fast_float64:  # the float64 root is exact in float64 already
        q_star = polish_root(lambda q: _gap(phi, sb2, q, ctx), q_star, ctx, what="critical q*")
    sigma_w2 = 1 / moments(phi, q_star, ctx)[1]
    return CriticalPoint(phi.name, sb2, sigma_w2, q_star, None, ctx)


def _first_roots(phi: Activation, sigma_b2: np.ndarray) -> tuple[np.ndarray, list[str | None]]:
    """For every σ_b² at once, the smallest root q of G whose fixed point attracts (χ_q < 1;
    NaN where there is none), and a note naming the repelling roots passed over (None where
    there were none). Every sign change of G on a log grid is refined by vectorised Illinois
    regula falsi: non-monotone activations (gelu, swish) can have several, and a root where
    the q-map repels is no critical point — the network at its σ_w² never settles there."""
    ratio_grid = _ratio(phi, Q_GRID)
    gaps = ratio_grid[None, :] + sigma_b2[:, None] - Q_GRID[None, :]
    # below the rounding floor the sign of G says nothing: count such points as zero
    gaps[np.abs(gaps) <= 1e-13 * (Q_GRID[None, :] + sigma_b2[:, None])] = 0.0
    rows, cols = np.nonzero(np.sign(gaps[:, :-1]) * np.sign(gaps[:, 1:]) < 0)
    roots = np.full(len(sigma_b2), np.nan)
    notes: list[str | None] = [None] * len(sigma_b2)
    if not len(rows):
        return roots, notes
    falling = gaps[rows, cols] > 0  # Illinois wants f(lo) > 0 > f(hi): orient each bracket
    lo = np.where(falling, Q_GRID[cols], Q_GRID[cols + 1])
    hi = np.where(falling, Q_GRID[cols + 1], Q_GRID[cols])
    f_lo = np.where(falling, gaps[rows, cols], gaps[rows, cols + 1])
    f_hi = np.where(falling, gaps[rows, cols + 1], gaps[rows, cols])
    found = _illinois(lambda q, r: _ratio(phi, q) + sigma_b2[r] - q, lo, hi, f_lo, f_hi, rows)
    chi_q = _chi_q_at_root(phi, found)
    repelling: dict[int, list[str]] = {}
    for row, q, slope in sorted(zip(rows.tolist(), found.tolist(), chi_q.tolist())):
        if not np.isnan(roots[row]):
            continue
        if slope < 1 + 1e-9:
            roots[row] = q
        else:
            sigma_w2 = 1 / float(moments(phi, q, F64)[1])
            repelling.setdefault(row, []).append(
                f"q* = {q:.6g} (sigma_w2 = {sigma_w2:.6g}, chi_q = {slope:.6g} > 1)"
            )
    for row, found_there in repelling.items():
        where = "; ".join(found_there)
        notes[row] = (f"chi_1 = 1; it holds only at the repelling fixed point {where}, "
                      "which a network there moves away from")  # fmt: skip
    return roots, notes


def _chi_q_at_root(phi: Activation, q: np.ndarray) -> np.ndarray:
    """χ_q = σ_w² d E[φ(u)²]/dq = σ_w² E[φ′(u)² + φ(u)φ″(u)] with σ_w² = 1/E[φ′(u)²], the
    slope of the q-map at the critical fixed point (pabari_zhou eq. 23; Schoenholz et al.)."""
    d, dd = phi.derivative(), phi.derivative(2)
    e_dphi2 = expect(d, d, q, q, q, F64)
    return (e_dphi2 + expect(phi, dd, q, q, q, F64)) / e_dphi2


def _ratio(phi: Activation, q: np.ndarray) -> np.ndarray:
    e_phi2, e_dphi2 = moments(phi, q, F64)
    if (e_dphi2 == 0).any():
        raise TheoryError(f"E[{phi.name}'(u)^2] = 0 for some q: no critical point")
    return e_phi2 / e_dphi2


def _illinois(func, lo, hi, f_lo, f_hi, rows, max_iter: int = 200) -> np.ndarray:
    """Roots of func inside the brackets [lo, hi] (f_lo > 0 > f_hi), all brackets together;
    ``func(q, rows)`` evaluates the rows still iterating. Stops at a zero residual or when the
    estimate moves by less than 2 ulp."""
    lo, hi, f_lo, f_hi = (np.array(v, float) for v in (lo, hi, f_lo, f_hi))
    x = (lo + hi) / 2
    side = np.zeros(len(x), int)
    active = np.ones(len(x), bool)
    for _ in range(max_iter):
        idx = np.nonzero(active)[0]
        if not len(idx):
            return x
        new = (lo[idx] * f_hi[idx] - hi[idx] * f_lo[idx]) / (f_hi[idx] - f_lo[idx])
        new = np.clip(new, np.minimum(lo[idx], hi[idx]), np.maximum(lo[idx], hi[idx]))
        f_new = func(new, rows[idx])
        done = (f_new == 0) | (np.abs(new - x[idx]) <= 2 * np.finfo(float).eps * np.abs(new))
        x[idx] = new
        keep_hi = f_new < 0  # the new point replaces hi; else lo
        for mask, this, f_this, f_other, mark in (
            (keep_hi, hi, f_hi, f_lo, 1),
            (~keep_hi, lo, f_lo, f_hi, -1),
        ):
            sel = idx[mask]
            this[sel], f_this[sel] = new[mask], f_new[mask]
            stale = sel[side[sel] == mark]  # same side twice: halve the other end's value
            f_other[stale] /= 2
            side[sel] = mark
        active[idx[done]] = False
    raise TheoryError("the critical-line solve did not converge")


def _zero_limit(phi: Activation, sb2: Any, ctx: Context) -> CriticalPoint:
    """No positive root: at σ_b² = 0 with φ(0) = 0 the line ends at q* = 0, σ_w² = 1/φ'(0)²."""
    zero = ctx.num(0)
    phi0 = expect(phi, phi, zero, zero, zero, ctx)
    if sb2 != 0 or phi0 != 0:
        raise TheoryError("the condition chi_1 = 1 has no solution with a finite fixed point q*")
    dphi0 = expect(phi.derivative(), phi.derivative(), zero, zero, zero, ctx)
    if dphi0 == 0:
        raise TheoryError(f"{phi.name}'(0) = 0: no critical point at sigma_b2 = 0")
    return CriticalPoint(phi.name, sb2, 1 / dphi0, zero, "the critical line ends at q* = 0", ctx)


def _homogeneous(phi: Activation, sb2: Any, ctx: Context) -> CriticalPoint:
    """Degree-1 homogeneous φ (relu, linear): χ₁ = σ_w² E[φ'(z)²] does not depend on q, so
    the critical σ_w² is 1/E[φ'(z)²]; a finite fixed point needs σ_b² = 0, and then every q is
    one."""
    one = ctx.num(1)
    sigma_w2 = 1 / moments(phi, one, ctx)[1]
    if sb2 != 0:
        note = (f"no finite q*: at the critical sigma_w2 = {float(sigma_w2):.6g} the variance "
                f"grows by sigma_b2 = {float(sb2):.6g} per layer, without bound")  # fmt: skip
        return CriticalPoint(phi.name, sb2, sigma_w2, None, note, ctx, finite=False)
    return CriticalPoint(phi.name, sb2, sigma_w2, None, "every q is a fixed point", ctx)

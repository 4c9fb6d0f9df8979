"""The depth-safe companion of a dual kernel: its Cauchy–Schwarz gap, computed without
subtracting nearly equal numbers.

For an activation f and a pair of inputs with variances q_a, q_b and correlation c = 1 − s,
the dual kernel T_ab = E[f(u_a) f(u_b)] tends to √(T_aa T_bb) as c → 1, and deep networks live
exactly there: 1 − cˡ of relu at the edge of chaos is 4.4e-9 at depth 10⁵ (9π²/(2l²)). Written
as √(T_aa T_bb) − T_ab the gap loses all its digits; here it is computed from s itself:

* relu a·max(0, x) (arc-cosine kernel, Cho & Saul 2009), with θ = 2 asin √(s/2):
  G = a² √(q_a q_b)/(2π) · (π s − (sin θ − θ cos θ)), the bracket's second term by its series
  θ³/3 − θ⁵/30 + … for small θ;
* erf a·erf(b x) (arcsine kernel), with x_a = 2b²q_a/(1 + 2b²q_a), y = √(x_a x_b):
  G = a² (2/π) [√(A_a A_b) − asin y + asin y − asin(y(1 − s))], A_a = asin x_a, the last
  difference as asin((y² − r²)/(y√(1 − r²) + r√(1 − y²))) with y² − r² = y² s (2 − s);
* linear a·x: G = a² √(q_a q_b) s;
* any smooth f, by Mehler's expansion (mehler.py) with coefficient rows a_k(q):
  G = ½ ‖a⁽ᵃ⁾‖ ‖a⁽ᵇ⁾‖ ‖â⁽ᵃ⁾ − â⁽ᵇ⁾‖² + s Σ_j ρʲ W_{j+1}, W_j = Σ_{k≥j} a_k⁽ᵃ⁾ a_k⁽ᵇ⁾ (the identity
  1 − ρᵏ = s Σ_{j<k} ρʲ), every term non-negative when q_a = q_b;
* otherwise (kinked f without a closed form) the difference √(T_aa T_bb) − T_ab itself,
  reported as such: it is not depth-safe.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workbench.activations import Activation
from workbench.gaussian.closed_forms import match_family

SERIES_BELOW = 1.5  # θ below this: sin θ − θ cos θ by its series (20 terms reach 1e-40)
DEPTH_SAFE = ("arc-cosine closed form", "arcsine closed form", "linear", "Mehler series")


@dataclass(frozen=True)
class DualGap:
    """T_aa per input, G_ab = √(T_aa T_bb) − T_ab per pair, and how G was computed."""

    own: np.ndarray
    gap: np.ndarray
    representation: str

    @property
    def depth_safe(self) -> bool:
        return self.representation in DEPTH_SAFE


def sin_minus_theta_cos(theta: np.ndarray) -> np.ndarray:
    """sin θ − θ cos θ (≈ θ³/3), without cancellation at small θ: there by its series
    Σ_k (−1)^{k+1} 2k θ^{2k+1}/(2k+1)!."""
    theta = np.asarray(theta, float)
    largest = float(theta.max(initial=0.0))
    if not largest < SERIES_BELOW:  # NaN included
        direct = np.sin(theta) - theta * np.cos(theta)
        if float(theta.min(initial=largest)) >= SERIES_BELOW:
            return direct
    t2 = theta * theta
    series = np.zeros_like(theta)
    term = theta * t2 / 6.0  # θ³/3!
    bound = min(largest, SERIES_BELOW) ** 2
    size = 1.0  # |term k| / |term 1| at the largest θ: stop once below 1e-18
    for k in range(1, 21):
        series += (2 * k) * term
        size *= bound / ((2 * k + 2) * (2 * k + 3))
        if size < 1e-18:
            break
        term = -term * t2 / ((2 * k + 2) * (2 * k + 3))
    if largest < SERIES_BELOW:
        return series
    return np.where(theta < SERIES_BELOW, series, direct)


def angle(s: np.ndarray) -> np.ndarray:
    """θ = arccos(1 − s), well conditioned for small s."""
    return 2.0 * np.arcsin(np.sqrt(np.clip(s, 0.0, 2.0) / 2.0))


def dual_gap(f: Activation, q: np.ndarray, pairs: np.ndarray, s: np.ndarray) -> DualGap:
    """T_aa = E[f(u_a)²] for every input (variances ``q``) and the gap G_ab for every pair
    ``pairs[p] = (a, b)`` with 1 − c_ab = ``s[p]`` (float64, vectorised)."""
    q = np.asarray(q, float)
    s = np.clip(np.asarray(s, float), 0.0, 2.0)
    closed = closed_form_gap(f.expr, q, pairs, s)
    if closed is not None:
        return closed
    mehler = _mehler_gap(f, q, pairs, s)
    if mehler is not None:
        return mehler
    return _difference_gap(f, q, pairs, s)


def closed_form_gap(expr, q: np.ndarray, pairs: np.ndarray, s: np.ndarray) -> DualGap | None:
    """``dual_gap`` for φ = ``expr`` of the relu, step, linear or erf family (else None)."""
    family = match_family(expr)
    if family is None or family.shift != 0:
        return None
    qa, qb = q[pairs[:, 0]], q[pairs[:, 1]]
    a2 = float(family.a) ** 2
    if family.form == "relu":
        theta = angle(s)
        gap = a2 * np.sqrt(qa * qb) / (2 * np.pi) * (np.pi * s - sin_minus_theta_cos(theta))
        return DualGap(a2 * q / 2, gap, "arc-cosine closed form")
    if family.form == "linear":
        return DualGap(a2 * q, a2 * np.sqrt(qa * qb) * s, "linear")
    if family.form == "step":  # E[H(u)H(v)] = (π − θ)/(2π): the gap is a² θ/(2π)
        return DualGap(
            a2 * np.full_like(q, 0.5), a2 * angle(s) / (2 * np.pi), "arc-cosine closed form"
        )
    if family.form == "erf":
        return _erf_gap(float(family.a), float(family.b), q, pairs, s)
    return None


def inner_product_gap(x: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """‖x_a‖‖x_b‖ − x_a·x_b / d for the rows of x (m, d) and the given pairs, without
    cancellation: ½(‖x_a − x_b‖² − (‖x_a‖ − ‖x_b‖)²), with ‖x_a‖ − ‖x_b‖ =
    (x_a − x_b)·(x_a + x_b)/(‖x_a‖ + ‖x_b‖), where the norms are close (nearly equal inputs),
    else ½‖x_a‖‖x_b‖‖x̂_a − x̂_b‖² (nearly parallel inputs of other norms). Also returns
    (‖x_a‖ − ‖x_b‖)²/d, the squared difference of the roots of the second moments."""
    x = np.asarray(x, float)
    d = x.shape[1]
    a, b = pairs[:, 0], pairs[:, 1]
    norms = np.linalg.norm(x, axis=1)
    # from the Gram matrix where the gap is at least 1% of ‖x_a‖‖x_b‖ (error ≤ 1e-14 of it),
    # by the formulas below for the rest (nearly parallel pairs)
    gram = np.einsum("ij,ij->i", x[a], x[b]) if len(a) < 4 * len(x) else (x @ x.T)[a, b]
    product = norms[a] * norms[b]
    gap = product - gram
    radial = (norms[a] - norms[b]) ** 2
    near = np.flatnonzero(gap < 1e-2 * product)
    if near.size:
        gap[near], radial[near] = _near_gap(x, norms, a[near], b[near])
    return gap / d, radial / d


def _near_gap(x: np.ndarray, norms: np.ndarray, a: np.ndarray, b: np.ndarray):
    unit = x / np.where(norms > 0, norms, 1.0)[:, None]
    apart = x[a] - x[b]
    distance2 = np.sum(apart * apart, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        radial = np.nan_to_num(np.sum(apart * (x[a] + x[b]), axis=1) / (norms[a] + norms[b]))
    close = radial * radial <= 0.5 * distance2
    by_distance = 0.5 * (distance2 - radial * radial)
    by_angle = 0.5 * norms[a] * norms[b] * np.sum((unit[a] - unit[b]) ** 2, axis=1)
    return np.where(close, by_distance, by_angle), radial * radial


def _erf_gap(a: float, b: float, q: np.ndarray, pairs: np.ndarray, s: np.ndarray) -> DualGap:
    scaled = 2 * b * b * q
    x = scaled / (1 + scaled)
    one_minus_x = 1 / (1 + scaled)
    big_a = np.arcsin(x)
    xa, xb = x[pairs[:, 0]], x[pairs[:, 1]]
    y = np.sqrt(xa * xb)
    one_minus_y2 = one_minus_x[pairs[:, 0]] + xa * one_minus_x[pairs[:, 1]]
    r = y * (1 - s)
    one_minus_r2 = one_minus_y2 + y * y * s * (2 - s)
    near = s <= 1  # r ≥ 0: the difference of arcsines by one arcsine of a small argument
    with np.errstate(invalid="ignore", divide="ignore"):
        small = np.arcsin(
            y * y * s * (2 - s) / (y * np.sqrt(one_minus_r2) + r * np.sqrt(one_minus_y2))
        )
    difference = np.where(near, np.nan_to_num(small), np.arcsin(y) - np.arcsin(r))
    norms = np.sqrt(big_a[pairs[:, 0]] * big_a[pairs[:, 1]]) - np.arcsin(y)
    scale = a * a * 2 / np.pi
    return DualGap(scale * big_a, scale * (norms + difference), "arcsine closed form")


def _mehler_gap(f: Activation, q: np.ndarray, pairs: np.ndarray, s: np.ndarray) -> DualGap | None:
    from workbench.gaussian.mehler import SMALL_SERIES, coefficients

    distinct, index = np.unique(q, return_inverse=True)
    found = coefficients(f, distinct)
    if found is None:
        return None
    rows, norm2 = found
    norms = np.linalg.norm(rows, axis=1)
    unit = rows / np.maximum(norms, np.finfo(float).tiny)[:, None]
    ia, ib = index[pairs[:, 0]], index[pairs[:, 1]]
    spread = np.sum((unit[ia] - unit[ib]) ** 2, axis=1)
    w = rows[ia] * rows[ib]
    tails = np.cumsum(w[:, ::-1], axis=1)[:, ::-1]  # tails[p, j] = Σ_{k≥j} w_k
    rho = 1 - s
    if rho.size * w.shape[1] <= SMALL_SERIES:  # Σ_{j≥0} ρʲ W_{j+1}, every term at once
        total = (tails[:, 1:] * rho[:, None] ** np.arange(w.shape[1] - 1)).sum(axis=1)
    else:
        total = tails[:, -1].copy()
        for j in range(w.shape[1] - 2, 0, -1):  # Horner
            total *= rho
            total += tails[:, j]
    gap = 0.5 * norms[ia] * norms[ib] * spread + s * total
    return DualGap(norm2[index], gap, "Mehler series")


def _difference_gap(f: Activation, q: np.ndarray, pairs: np.ndarray, s: np.ndarray) -> DualGap:
    from workbench.gaussian import expect

    own = expect(f, f, q, q, q)
    qa, qb = q[pairs[:, 0]], q[pairs[:, 1]]
    cross = expect(f, f, qa, (1 - s) * np.sqrt(qa * qb), qb)
    gap = np.sqrt(own[pairs[:, 0]] * own[pairs[:, 1]]) - cross
    return DualGap(own, np.maximum(gap, 0.0), "difference of moments")


def bias_gap(
    own: np.ndarray,
    pairs: np.ndarray,
    sigma_w2: float,
    sigma_b2: float,
    spread: np.ndarray | None = None,
) -> np.ndarray:
    """The gap a weight layer adds to σ_w² G: √(q'_a q'_b) − σ_w² √(T_aa T_bb) − σ_b² with
    q' = σ_w² T + σ_b², as σ_w² σ_b² (√T_aa − √T_bb)² / (√(q'_a q'_b) + σ_w² √(T_aa T_bb) + σ_b²)
    (non-negative, zero for equal variances). ``spread``: (√T_aa − √T_bb)² per pair when the
    caller knows it better than from the rounded T's."""
    ta, tb = own[pairs[:, 0]], own[pairs[:, 1]]
    qa, qb = sigma_w2 * ta + sigma_b2, sigma_w2 * tb + sigma_b2
    root = np.sqrt(ta) * np.sqrt(tb)  # products of roots: no overflow past q ~ 1e154
    with np.errstate(invalid="ignore", divide="ignore"):
        if spread is None:
            spread = ((ta - tb) / (np.sqrt(ta) + np.sqrt(tb))) ** 2
        denominator = np.sqrt(qa) * np.sqrt(qb) + sigma_w2 * root + sigma_b2
        out = sigma_w2 * sigma_b2 * spread / denominator
    return np.nan_to_num(out)


TAYLOR_TERMS = 24  # the gap's series in s at equal variances, used where it has converged


class GapMap:
    """s ↦ G(s) = E[f(u)²] − E[f(u) f(v)] for Var u = Var v = q and corr(u, v) = 1 − s: the
    frozen-variance fast path of deep recursions (every variance on its fixed point).

    Closed forms are evaluated as they are. For a smooth f (Mehler rows a_k(q)), G = s R(s)
    with R(ρ) = Σ_j ρʲ W_{j+1}: near s = 0 by its Taylor series in s, R = Σ_m (−s)^m d_m,
    d_m = Σ_j C(j, m) W_{j+1} (so R(0) = d_0 = q E[f′(u)²] exactly as summed, and χ₁ of the
    fast path is that of the series: no interpolation error accumulates over 10⁵ layers at
    the edge of chaos); elsewhere by an angle interpolant of R. Other f: T(1) − T(c) from the
    dual interpolant (the difference route, not depth-safe)."""

    def __init__(self, f: Activation, q: float) -> None:
        self.f, self.q = f, float(q)
        self.difference = None
        probe = closed_form_gap(f.expr, np.ones(1), np.zeros((1, 2), int), np.zeros(1))
        self.closed = probe is not None
        if self.closed:
            self.representation = probe.representation
            return
        from workbench.gaussian.mehler import coefficients

        found = coefficients(f, np.array([self.q]))
        self.interpolant = None
        if found is not None:
            self._taylor(found[0][0])
        if self.interpolant is None or not self.interpolant.ok:
            from workbench.gaussian.interpolant import DualInterpolant

            self.difference = DualInterpolant(f, f, self.q)
            self.representation = "difference of moments"
        else:
            self.representation = "Mehler series"

    @property
    def ok(self) -> bool:
        return (
            self.closed
            or (self.difference is not None and self.difference.ok)
            or (self.interpolant is not None and self.interpolant.ok)
        )

    def _taylor(self, a: np.ndarray) -> None:
        from scipy.special import comb

        from workbench.gaussian.interpolant import AngleInterpolant

        w = a * a
        tails = np.cumsum(w[::-1])[::-1][1:]  # W_{j+1}, j = 0 … K−2
        j = np.arange(tails.size)
        self.d = np.array([np.sum(comb(j, m) * tails) for m in range(TAYLOR_TERMS + 1)])
        ratio = 1e-17 * self.d[0] / max(self.d[-1], np.finfo(float).tiny)
        self.s_max = min(1.0, ratio ** (1.0 / TAYLOR_TERMS))

        def r_of_theta(theta: np.ndarray) -> np.ndarray:
            rho = np.cos(theta)
            total = np.full_like(rho, tails[-1])
            for k in range(tails.size - 2, -1, -1):
                total = total * rho + tails[k]
            return total

        self.interpolant = AngleInterpolant(r_of_theta)

    def __call__(self, s: np.ndarray) -> np.ndarray:
        s = np.clip(np.asarray(s, float), 0.0, 2.0)
        if self.closed:
            pairs = np.zeros((s.size, 2), int)
            found = closed_form_gap(self.f.expr, np.array([self.q]), pairs, s.ravel())
            return found.gap.reshape(s.shape)
        if self.difference is not None:
            return self.difference.at_one - self.difference(1 - s)
        largest = float(s.max(initial=0.0))
        if largest <= self.s_max:  # the common deep case: the series alone, as few terms as do
            terms = self._terms(largest)
            total = self.d[terms] * (-s)
            for m in range(terms - 1, 0, -1):
                total = (total + self.d[m]) * (-s)
            return s * (total + self.d[0])
        near = s <= self.s_max
        r = np.zeros_like(s)
        if near.any():
            x = -s[near]
            total = np.full_like(x, self.d[-1])
            for m in range(TAYLOR_TERMS - 1, -1, -1):
                total = total * x + self.d[m]
            r[near] = total
        r[~near] = self.interpolant.at(angle(s[~near]))
        return s * r

    def _terms(self, largest: float) -> int:
        """The fewest series terms whose next one is below 1e-17 of d_0 for s ≤ largest."""
        for m in range(1, TAYLOR_TERMS):
            if self.d[m + 1] * largest ** (m + 1) <= 1e-17 * self.d[0]:
                return m
        return TAYLOR_TERMS

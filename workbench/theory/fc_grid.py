"""The fixed-point analysis of a one-step FC cycle [dense, act] at many (σ_w², σ_b²) at once:
the same quantities as ``analyze_cycle`` (q*, c*, χ₁, χ_q*, χ_c*, ξ_q, ξ_c, phase; pabari_zhou
eqs. 3–10) for a whole grid — a 200 × 200 phase diagram in seconds instead of an hour.

The variance maps are functions of q alone: E[φ(u)²] and E[φ′(u)²] at u ~ N(0, q) are built
once as Chebyshev series of log E against log q (relative accuracy near float64 across
decades), and the c-map at each cell's q* comes from the engine's ``DualInterpolant``s at
Chebyshev nodes in log q, combined barycentrically. Every cell's q* and c* are then Newton
iterations on arrays. Cells this cannot serve to full accuracy — q* off the interpolated range
(q → 0, q → ∞), χ₁ within ``NEAR_CRITICAL`` of 1, 1 − c* below ``NEAR_ONE`` — come back as
None for the caller to analyse one by one; the rest are checked against ``analyze_cycle`` at
sample cells before they are returned (a TheoryError if one disagrees)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from numpy.polynomial import chebyshev

from workbench.activations import Activation
from workbench.errors import TheoryError
from workbench.gaussian import expect
from workbench.gaussian.interpolant import DualInterpolant
from workbench.precision import F64

LOG_Q_RANGE = (math.log(1e-6), math.log(1e4))
SERIES_TOLERANCE = 1e-13  # relative; the 1-D expectations themselves are good to ~1e-15
MAX_SERIES_DEGREE = 1024
NEAR_CRITICAL = 1e-6  # |χ₁ − 1| below this: analysed cell by cell
NEAR_ONE = 1e-6  # 1 − c* below this: the c-map's rounding matters, cell by cell
NEWTON_STEPS = 60
CHECKED_CELLS = 8
DUAL_TOLERANCE = 1e-12  # successive node sets agree to this (the interpolants: ~1e-14)
AGREEMENT = 1e-9  # relative, on every number of a checked cell


@dataclass
class GridAnalysis:
    """Per cell (flattened): the analysis numbers, NaN where ``served`` is False."""

    q_star: np.ndarray
    c_star: np.ndarray
    chi_1: np.ndarray
    chi_q: np.ndarray
    chi_c: np.ndarray
    served: np.ndarray


class _LogSeries:
    """log E[f(u)²] (u ~ N(0, e^t)) as a Chebyshev series in t over LOG_Q_RANGE, with its
    derivative: d log E / dt = q E′(q) / E."""

    def __init__(self, f: Activation) -> None:
        def values(t: np.ndarray) -> np.ndarray:
            q = np.exp(t)
            return np.log(expect(f, f, q, q, q, F64))

        degree = 32
        while True:
            series = chebyshev.Chebyshev.interpolate(values, degree, domain=LOG_Q_RANGE)
            tail = np.abs(series.coef[-4:]).max()
            if tail <= SERIES_TOLERANCE * max(1.0, np.abs(series.coef).max()):
                break
            if degree >= MAX_SERIES_DEGREE:
                raise TheoryError(
                    f"E[{f.name}(u)^2] is not smooth enough in log q for the grid",
                    hint="analyse the cells one by one (workbench analyze)",
                )
            degree *= 2
        self.series, self.slope = series, series.deriv()

    def value(self, q: np.ndarray) -> np.ndarray:
        return np.exp(self.series(np.log(q)))

    def derivative(self, q: np.ndarray) -> np.ndarray:
        t = np.log(q)
        return np.exp(self.series(t)) * self.slope(t) / q


def analyze_grid(phi: Activation, sigma_w2: np.ndarray, sigma_b2: np.ndarray) -> GridAnalysis:
    """The cycle [dense(σ_w², σ_b²), φ] analysed at every (σ_w², σ_b²) pair of the arrays."""
    sw2, sb2 = (np.asarray(v, float).ravel() for v in (sigma_w2, sigma_b2))
    second, slope = _LogSeries(phi), _LogSeries(phi.derivative())
    q, served = _q_star(second, sw2, sb2)
    chi_1 = sw2 * slope.value(np.where(served, q, 1.0))
    chi_q = sw2 * second.derivative(np.where(served, q, 1.0))
    served &= np.abs(chi_1 - 1) > NEAR_CRITICAL
    c_star, chi_c = np.ones_like(q), chi_1.copy()
    chaotic = served & (chi_1 > 1)
    if chaotic.any():
        c, chic, ok = _c_star(phi, q[chaotic], sw2[chaotic], sb2[chaotic], second, slope)
        c_star[chaotic], chi_c[chaotic] = c, chic
        served[np.flatnonzero(chaotic)[~ok]] = False
    nan = np.where(served, 1.0, np.nan)
    return GridAnalysis(q * nan, c_star * nan, chi_1 * nan, chi_q * nan, chi_c * nan, served)


def _q_star(second: _LogSeries, sw2: np.ndarray, sb2: np.ndarray) -> tuple[np.ndarray, ...]:
    """The attracting q* reached from q = 1 (as ``explore_q``): plain iterations, then Newton
    on g(q) = σ_w² E(q) + σ_b² − q; cells whose q leaves the range or does not settle are not
    served."""
    lo, hi = math.exp(LOG_Q_RANGE[0]), math.exp(LOG_Q_RANGE[1])
    q = np.ones_like(sw2)
    inside = np.ones(q.shape, bool)
    for _ in range(30):
        q = np.where(inside, sw2 * second.value(np.clip(q, lo, hi)) + sb2, q)
        inside &= (q > lo) & (q < hi)
    for _ in range(NEWTON_STEPS):
        safe = np.clip(q, lo, hi)
        g = sw2 * second.value(safe) + sb2 - safe
        dg = sw2 * second.derivative(safe) - 1
        step = np.where(inside & (dg < 0), g / np.where(dg < 0, dg, -1.0), 0.0)
        q = np.where(inside, safe - step, q)
        inside &= (q > lo) & (q < hi)
        if np.all(np.abs(step[inside]) <= 4e-16 * q[inside]):
            break
    safe = np.clip(q, lo, hi)
    settled = np.abs(sw2 * second.value(safe) + sb2 - safe) <= 1e-13 * safe
    attracting = sw2 * second.derivative(safe) < 1
    return q, inside & settled & attracting


def _c_star(phi: Activation, q: np.ndarray, sw2: np.ndarray, sb2: np.ndarray,
            second: _LogSeries, slope_series: _LogSeries) -> tuple:  # fmt: skip
    """c* of the chaotic cells (Newton on the c-map from c = 0, each cell until its step is
    below 1e-14) and χ_c* = σ_w² E[φ′(u)φ′(v)] there; cells whose c* is within NEAR_ONE of 1,
    or whose residual or χ_c* is off, are flagged."""
    dual = _Duals(phi, q, second)
    slope = _Duals(phi.derivative(), q, slope_series)
    c = np.zeros_like(q)
    active = np.ones(q.shape, bool)
    for _ in range(NEWTON_STEPS):
        idx = np.flatnonzero(active)
        if not idx.size:
            break
        at = c[idx]
        residual = (sw2[idx] * dual(at, idx) + sb2[idx]) / q[idx] - at
        derivative = sw2[idx] * slope(at, idx) - 1
        newton = derivative < 0
        step = np.where(newton, residual / np.where(newton, derivative, -1.0), -residual)
        c[idx] = np.clip(at - step, -1.0, 1.0)
        active[idx[np.abs(step) <= 1e-14]] = False
    everywhere = np.arange(q.size)
    residual = np.abs((sw2 * dual(c, everywhere) + sb2) / q - c)
    chi_c = sw2 * slope(c, everywhere)
    ok = (residual <= 1e-13) & (1 - c > NEAR_ONE) & (chi_c < 1)
    return c, chi_c, ok


class _Duals:
    """E[f(u) f(v)] at variance q (per cell) and correlation c: DualInterpolants at Chebyshev
    nodes in log q, each divided by E[f(u)²] at its node (an O(1) ratio, so small q keeps its
    relative accuracy), combined by barycentric interpolation and multiplied back; nodes
    double until two successive node sets agree to DUAL_TOLERANCE at the cells."""

    def __init__(self, f: Activation, q: np.ndarray, norm: _LogSeries) -> None:
        self.f, self.norm = f, norm
        self.t = np.log(q)
        self.scale = norm.value(q)
        a, b = self.t.min(), self.t.max()
        self.lo, self.hi = a - 1e-9 * max(1.0, abs(a)), b + 1e-9 * max(1.0, abs(b))
        self.nodes = 8
        self.cache: dict[Fraction, tuple[DualInterpolant, float]] = {}
        probe = np.linspace(-0.9, 0.99, 5)
        everywhere = np.arange(q.size)
        previous = None
        while True:
            now = np.stack([self(np.full(q.shape, p), everywhere) / self.scale for p in probe])
            if previous is not None and np.abs(now - previous).max() <= DUAL_TOLERANCE:
                break
            if self.nodes >= 256:
                raise TheoryError(
                    f"E[{f.name}(u) {f.name}(v)] needs more than 256 nodes in log q across the "
                    "grid",
                    hint="narrow the sigma grid",
                )
            previous = now
            self.nodes *= 2

    def _points(self) -> list[tuple[Fraction, float]]:
        """Chebyshev–Lobatto nodes in log q, keyed by k/n so that doubling reuses them."""
        mid, half = (self.lo + self.hi) / 2, (self.hi - self.lo) / 2
        return [(Fraction(k, self.nodes), mid + half * math.cos(math.pi * k / self.nodes))
                for k in range(self.nodes + 1)]  # fmt: skip

    def _interpolant(self, key: Fraction, t: float) -> tuple[DualInterpolant, float]:
        if key not in self.cache:
            found = DualInterpolant(self.f, self.f, math.exp(t))
            if not found.ok:
                raise TheoryError(f"no interpolant of E[{self.f.name}(u) {self.f.name}(v)] at "
                                  f"q = {math.exp(t):.6g}")  # fmt: skip
            self.cache[key] = found, float(self.norm.value(np.array([math.exp(t)]))[0])
        return self.cache[key]

    def __call__(self, c: np.ndarray, cells: np.ndarray) -> np.ndarray:
        """At correlations ``c`` of the cells numbered ``cells``."""
        nodes = self._points()
        points = np.array([t for _, t in nodes])
        values = []
        for key, t in nodes:
            interpolant, norm = self._interpolant(key, t)
            values.append(interpolant(c) / norm)
        values = np.stack(values)  # (n + 1, cells)
        weights = np.ones(len(points))
        weights[0] = weights[-1] = 0.5
        weights[1::2] *= -1
        diff = self.t[cells][None, :] - points[:, None]
        exact = diff == 0
        diff[exact] = 1.0
        terms = weights[:, None] / diff
        out = (terms * values).sum(axis=0) / terms.sum(axis=0)
        hit = exact.any(axis=0)
        if hit.any():
            out[hit] = values[exact.argmax(axis=0)[hit], np.flatnonzero(hit)]
        return out * self.scale[cells]


def checked(phi: Activation, sigma_w2: np.ndarray, sigma_b2: np.ndarray,
            found: GridAnalysis, seed: int = 0) -> None:  # fmt: skip
    """Compare CHECKED_CELLS served cells (always the extreme χ₁ ones among them) with
    ``analyze_cycle``; a TheoryError naming the first disagreement."""
    from workbench.theory.fc_fixed_points import analyze_cycle
    from workbench.theory.fc_maps import single_step

    served = np.flatnonzero(found.served)
    if not served.size:
        return
    rng = np.random.default_rng(seed)
    picks = set(rng.choice(served, min(CHECKED_CELLS, served.size), replace=False).tolist())
    picks |= {
        int(served[np.argmin(found.chi_1[served])]),
        int(served[np.argmax(found.chi_1[served])]),
    }
    sw2, sb2 = np.ravel(sigma_w2), np.ravel(sigma_b2)
    for i in sorted(picks):
        one = analyze_cycle(single_step(phi, float(sw2[i]), float(sb2[i])))
        for name in ("q_star", "c_star", "chi_1", "chi_q", "chi_c"):
            ours, theirs = getattr(found, name)[i], float(getattr(one, name))
            if not abs(ours - theirs) <= AGREEMENT * max(1.0, abs(theirs)):
                raise TheoryError(
                    f"the grid's {name} = {ours!r} at sigma_w2 = {sw2[i]}, sigma_b2 = {sb2[i]} "
                    f"disagrees with analyze's {theirs!r}",
                    hint="analyse the cells one by one (workbench sweep --scheduler sequential)",
                )

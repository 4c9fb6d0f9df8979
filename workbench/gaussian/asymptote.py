"""Two-point Gaussian expectations of activations that become piecewise homogeneous far from
the origin (swish, gelu, softplus → relu; tanh, erf, sigmoid → steps), at any variance.

φ = ψ + δ exactly, with ψ(x) = α x^k for x > 0 and β |x|^k sign(x)^k for x < 0 (k = 1: a
two-slope relu, k = 0: a two-level step) and a remainder δ that vanishes in float64 beyond
|x| = REACH. Then, for (u, v) ~ N(0, [[q₁, q₁₂], [q₁₂, q₂]]),

    E[f(u) g(v)] = E[ψ_f ψ_g] + E[ψ_f(u) δ_g(v)] + E[δ_f(u) ψ_g(v)] + E[δ_f(u) δ_g(v)]:

the first by the arc-cosine kernels (Cho & Saul 2009; ψ's pieces are relu(±x) or H(±x)), the
cross terms as one-dimensional integrals of δ over [−REACH, REACH] against the conditional
mean of ψ given the other variable (u | v ~ N(q₁₂ v/q₂, q₁ − q₁₂²/q₂): E[relu(u) | v] =
μ Φ(μ/s) + s φ(μ/s), E[H(u) | v] = Φ(μ/s)), and the last as a nested integral over the same
interval. Nothing is expanded in 1/q: the split is exact, and its cost does not grow with q,
where direct quadrature must resolve a feature of width 1 under a Gaussian of width √q (swish
at q = 1e10 took 150 ms per layer, so chaotic 1,000-layer nets took minutes).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
from scipy.special import ndtr

from workbench.activations import Activation
from workbench.gaussian.gap import angle
from workbench.gaussian.quadrature import DEGENERATE_CORRELATION

REACH = 40.0  # |x| beyond which δ is below float64's resolution of φ (checked, not assumed)
SPLIT_ABOVE = 100.0  # a variance from which the split serves (2-4x faster than quadrature)
SPLIT_FLOOR = 1e-2  # ... if the other is at least this (checked against quadrature from 0.1)
_FAR = np.array([REACH, 45.0, 60.0, 1e2, 3e2, 1e3, 1e4, 1e6, 1e8])
_SQRT_2PI = np.sqrt(2 * np.pi)


@dataclass(frozen=True)
class Asymptote:
    """ψ (degree k, slopes or levels α for x > 0 and β for x < 0) and the remainder δ."""

    degree: int
    alpha: float
    beta: float
    phi: Activation

    def psi(self, x: np.ndarray) -> np.ndarray:
        scale = x if self.degree == 1 else np.ones_like(x)
        return np.where(x > 0, self.alpha, np.where(x < 0, self.beta, 0.0)) * scale

    def remainder(self, x: np.ndarray) -> np.ndarray:
        return self.phi.numpy(x) - self.psi(x)

    @cached_property
    def on_grid(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(nodes, weights, δ) of the uniform grid where δ is not negligible."""
        return _live(self.remainder, _GRID)

    @cached_property
    def on_graded(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(nodes, weights, δ) of the graded grid where δ is not negligible."""
        return _live(self.remainder, _GRADED)


LIVE = 1e-20  # grid nodes where |δ| is below this fraction of its largest value are dropped


def _live(remainder, grid: tuple[np.ndarray, np.ndarray]):
    """The grid's nodes where |δ| > LIVE max |δ| (gelu's δ ~ e^{−x²/2}: |x| < 9.5 of the 40;
    every integrand here is δ times a density below 1/√(2π q) times a bounded factor, so the
    dropped nodes change no sum by more than 1e-18 of its scale), with their weights and δ."""
    nodes, weights = grid
    delta = remainder(nodes)
    keep = np.abs(delta) > LIVE * np.abs(delta).max()
    return nodes[keep], weights[keep], delta[keep]


@lru_cache(maxsize=256)
def asymptote(phi: Activation) -> Asymptote | None:
    """φ's piecewise-homogeneous asymptote, when φ − ψ is below 1e-14 · max(1, |ψ|) at every
    probe |x| ≥ REACH out to 1e8 (and on a grid of [REACH, 1000]); else None."""
    far = np.concatenate([_FAR, np.linspace(REACH, 1e3, 97)])
    with np.errstate(all="ignore"):
        right, left = phi.numpy(far), phi.numpy(-far)
    if not (np.isfinite(right).all() and np.isfinite(left).all()):
        return None
    for degree in (1, 0):
        size = far**degree
        alpha, beta = right[7] / size[7], left[7] / (-far[7]) ** degree
        found = Asymptote(degree, float(alpha), float(beta), phi)
        tolerance = 1e-14 * np.maximum(1.0, np.abs(found.psi(far)))
        if (np.abs(right - found.psi(far)) <= tolerance).all() and (
            np.abs(left - found.psi(-far)) <= 1e-14 * np.maximum(1.0, np.abs(found.psi(-far)))
        ).all():
            return found
    return None


def _legendre_grid(edges: np.ndarray, nodes: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes and weights on the panels between consecutive ``edges``."""
    x, w = np.polynomial.legendre.leggauss(nodes)
    half = np.diff(edges) / 2
    points = (edges[:-1, None] + half[:, None] * (1 + x[None, :])).ravel()
    return points, (half[:, None] * w[None, :]).ravel()


_UNIT = np.arange(-REACH, REACH + 0.5, 1.0)
_GRID = _legendre_grid(_UNIT)
# the cross terms' conditional mean of ψ turns at v = 0 over a width ∝ the conditional
# spread s, which is tiny for nearly parallel inputs: panels graded geometrically towards 0
_TOWARDS_ZERO = 2.0 ** -np.arange(1, 60)
_GRADED = _legendre_grid(np.unique(np.concatenate([_UNIT, _TOWARDS_ZERO, -_TOWARDS_ZERO])))
NARROW = 1.0  # conditional widths below this: the inner integral in z = (u − μ)/s
_Z_REACH = 9.0  # N(0, 1) beyond ±9 weighs below 1e-18
_Z_NODES = np.polynomial.legendre.leggauss(40)


def _psi_psi(f: Asymptote, g: Asymptote, q1, q12, q2) -> np.ndarray:
    """E[ψ_f(u) ψ_g(v)] by the arc-cosine kernels of degree k (relu(±x) or H(±x) pieces),
    the angle θ from 1 − c = (q₁q₂ − q₁₂²)/(√(q₁q₂)(√(q₁q₂) + q₁₂)), exactly 0 for an
    input with itself (arccos of a c rounded to 1 − 2e-16 is 2e-8 off)."""
    root = np.sqrt(q1) * np.sqrt(q2)
    c = np.clip(q12 / root, -1.0, 1.0)
    det = np.where(np.abs(q12) >= root, 0.0, np.maximum(q1 * q2 - q12 * q12, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        near = det / (root * (root + q12))
    one_minus = np.where(q12 > 0, np.nan_to_num(near), 1 - c)
    theta = angle(one_minus)
    if f.degree == 1:
        sine = np.sqrt(det) / root
        same = root * (sine + (np.pi - theta) * c) / (2 * np.pi)
        flipped = root * (sine - theta * c) / (2 * np.pi)  # at −c: θ → π − θ
    else:
        same, flipped = (np.pi - theta) / (2 * np.pi), theta / (2 * np.pi)
    sign = -1.0 if f.degree == 1 else 1.0  # ψ = α P(x) + sign·β P(−x), P = relu or H
    return (
        f.alpha * g.alpha * same
        + sign * f.alpha * g.beta * flipped
        + sign * f.beta * g.alpha * flipped
        + f.beta * g.beta * same
    )


def _conditional_psi(f: Asymptote, mu: np.ndarray, s: np.ndarray) -> np.ndarray:
    """E[ψ_f(u)] for u ~ N(μ, s²) (s may be 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(s > 0, mu / np.where(s > 0, s, 1.0), np.where(mu >= 0, np.inf, -np.inf))
    up, down = ndtr(t), ndtr(-t)
    if f.degree == 0:
        return f.alpha * up + f.beta * down
    density = np.where(s > 0, np.exp(-0.5 * np.where(np.isfinite(t), t, 0.0) ** 2), 0.0)
    bump = s * density / _SQRT_2PI
    return f.alpha * (mu * up + bump) + f.beta * (mu * down - bump)


def _gaussian(x: np.ndarray, variance: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * x * x / variance) / (_SQRT_2PI * np.sqrt(variance))


def _conditional_variance(q_u, q12, q_v):
    """Var(u | v) = q_u − q₁₂²/q_v, exactly 0 for perfectly correlated u and v."""
    exact = np.abs(q12) >= np.sqrt(q_u) * np.sqrt(q_v)
    return np.where(exact, 0.0, np.maximum(q_u - q12 * q12 / q_v, 0.0))


def _cross(f: Asymptote, g: Asymptote, q_f, q12, q_g) -> np.ndarray:
    """E[ψ_f(u) δ_g(v)], u of variance q_f, v of variance q_g (one entry per row)."""
    v, w, delta = g.on_graded
    mu = (q12 / q_g)[:, None] * v[None, :]
    s = np.sqrt(_conditional_variance(q_f, q12, q_g))[:, None]
    weight = w * delta * _gaussian(v[None, :], q_g[:, None])
    return np.sum(weight * _conditional_psi(f, mu, s), axis=1)


def _remainders(f: Asymptote, g: Asymptote, q1, q12, q2) -> np.ndarray:
    """E[δ_f(u) δ_g(v)]: over v on the grid, the inner E[δ_f(u) | v] in z = (u − μ)/s where
    the conditional width s is narrow (on [−9, 9] cut where u = 0, at which δ of a kinked
    asymptote jumps or kinks), else on the same grid in u."""
    v, w, delta = g.on_graded  # the inner mean turns at v = 0 over a width ∝ s
    out = np.empty(len(q1))
    outer = w * delta
    for i in range(len(q1)):
        s2 = float(_conditional_variance(q1[i], q12[i], q2[i]))
        mu = (q12[i] / q2[i]) * v
        if s2 == 0:
            inner = f.remainder(mu)
        elif s2 < NARROW * NARROW:
            inner = _narrow_inner(f, mu, np.sqrt(s2))
        else:
            inner = _wide_inner(f, mu, s2)
        out[i] = np.sum(outer * _gaussian(v, np.array(q2[i])) * inner)
    return out


SMOOTH_INNER = 8.0  # conditional widths from which the inner mean is interpolated in μ


def _wide_inner(f: Asymptote, mu: np.ndarray, s2: float) -> np.ndarray:
    """E[δ_f(u)] for u ~ N(μ, s²), s ≥ NARROW, on the uniform grid in u; from s ≥
    SMOOTH_INNER the mean is smooth on the scale s in μ, so it is computed at 48 Chebyshev
    points of μ's range and interpolated (checked against a direct evaluation at two μ)."""
    grid, weights, delta = f.on_grid
    weighted = weights * delta

    def direct(points: np.ndarray) -> np.ndarray:
        return _gaussian(grid[None, :] - points[:, None], np.array(s2)) @ weighted

    lo, hi = float(mu.min()), float(mu.max())
    if hi == lo:  # uncorrelated (c = 0): one mean for every v
        return np.full(mu.shape, direct(mu[:1])[0])
    if s2 < SMOOTH_INNER**2 or hi - lo > 8 * np.sqrt(s2):
        return direct(mu)
    series = np.polynomial.chebyshev.Chebyshev.interpolate(direct, 48, domain=(lo, hi))
    probe = np.array([lo + 0.3137 * (hi - lo), lo + 0.8219 * (hi - lo)])
    exact = direct(probe)  # within rounding of Σ |terms|, which bounds its own error
    size = _gaussian(grid[None, :] - probe[:, None], np.array(s2)) @ np.abs(weighted)
    if np.abs(series(probe) - exact).max() > 1e-14 * max(size.max(), 1e-300):
        return direct(mu)
    return series(mu)


def _narrow_inner(f: Asymptote, mu: np.ndarray, s: float) -> np.ndarray:
    """E[δ_f(μ + s z)], z ~ N(0, 1), for each μ: Gauss–Legendre on [−9, z₀] and [z₀, 9]
    with z₀ = −μ/s (clipped), so that δ's jump or kink at u = 0 falls on a panel edge."""
    x, w = _Z_NODES
    cut = np.clip(-mu / s, -_Z_REACH, _Z_REACH)[:, None]
    total = np.zeros(len(mu))
    for lo, hi in ((-_Z_REACH, cut), (cut, _Z_REACH)):
        half = (hi - lo) / 2
        z = lo + half * (1 + x[None, :])
        density = np.exp(-0.5 * z * z) / _SQRT_2PI
        total += np.sum(half * w[None, :] * density * f.remainder(mu[:, None] + s * z), axis=1)
    return total


def far(q1, q2):
    """Where the split serves: one variance far from the origin, the other not tiny (a
    pair of inputs of very different norms is as slow to integrate directly as two far)."""
    q1, q2 = np.asarray(q1, float), np.asarray(q2, float)
    return (np.maximum(q1, q2) >= SPLIT_ABOVE) & (np.minimum(q1, q2) >= SPLIT_FLOOR)


def split_expect(f: Activation, g: Activation, q1, q12, q2) -> np.ndarray | None:
    """E[f(u) g(v)] for arrays of covariances (positive variances) by the exact split, or
    None when f or g has no asymptote of the same degree. Entries whose remainder terms are
    bounded below 1e-17 of the Cauchy–Schwarz scale √(E[ψ_f²] E[ψ_g²]) take E[ψ_f ψ_g]
    alone (swish's second moments from q ≈ 1e17, its derivative's from q ≈ 1e33)."""
    fa, ga = asymptote(f), asymptote(g)
    if fa is None or ga is None or fa.degree != ga.degree:
        return None
    q1, q12, q2 = (np.asarray(a, float).ravel() for a in (q1, q12, q2))
    bound = np.sqrt(q1) * np.sqrt(q2)
    q12 = np.clip(q12, -bound, bound)
    # perfectly correlated pairs exactly so: a rounding of q₁₂ = √q₁ √q₂ left q₁q₂ − q₁₂²
    # ~1e-16 q₁q₂, an angle of 1e-8 and steps' (π − θ)/2π 2e-9 off
    q12 = np.where(1 - np.abs(q12) / bound < DEGENERATE_CORRELATION, np.sign(q12) * bound, q12)
    out = _psi_psi(fa, ga, q1, q12, q2)
    live = np.flatnonzero(_remainder_bound(fa, ga, q1, q12, q2) > 1e-17 * _scale(fa, ga, q1, q2))
    if live.size:
        a, ac, b = q1[live], q12[live], q2[live]
        out[live] += _cross(fa, ga, a, ac, b) + _cross(ga, fa, b, ac, a)
        out[live] += _remainders(fa, ga, a, ac, b)
    return out


@lru_cache(maxsize=256)
def _sizes(a: Asymptote) -> tuple[float, float]:
    """∫|δ| and max |δ| over [−REACH, REACH]."""
    v, w, delta = a.on_graded
    delta = np.abs(delta)
    return float(np.sum(w * delta)), float(delta.max(initial=0.0))


def _scale(f: Asymptote, g: Asymptote, q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    def second_moment(a: Asymptote, q: np.ndarray) -> np.ndarray:
        return (a.alpha**2 + a.beta**2) * (q / 2 if a.degree == 1 else 0.5)

    return np.sqrt(second_moment(f, q1) * second_moment(g, q2))


def _remainder_bound(f: Asymptote, g: Asymptote, q1, q12, q2) -> np.ndarray:
    """A bound on |E[ψ_f δ_g]| + |E[δ_f ψ_g]| + |E[δ_f δ_g]|: each integrand is at most
    |δ| · sup |conditional mean| · the density's peak 1/√(2π q)."""

    def mean_bound(a: Asymptote, q_a, q_other) -> np.ndarray:
        levels = abs(a.alpha) + abs(a.beta)
        if a.degree == 0:
            return np.full_like(q_a, levels)
        return levels * (np.abs(q12) / q_other * REACH + np.sqrt(q_a))

    (l1_f, max_f), (l1_g, _) = _sizes(f), _sizes(g)
    return l1_g * (mean_bound(f, q1, q2) + max_f) / (_SQRT_2PI * np.sqrt(q2)) + l1_f * mean_bound(
        g, q2, q1
    ) / (_SQRT_2PI * np.sqrt(q1))

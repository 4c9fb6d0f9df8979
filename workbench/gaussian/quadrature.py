"""Quadrature for Gaussian expectations, in float64 (numpy) and at any precision (mpmath).

One-point expectations E[h(u)], u ~ N(0, q), fold the real line at 0,
E[h(u)] = ∫_0^∞ (h(√q r) + h(−√q r)) e^{−r²/2}/√(2π) dr, so a kink at 0 sits on an endpoint.
Two-point expectations use polar coordinates: with the Cholesky factor L of the covariance,
(u, v) = r (a(θ), b(θ)) and E[f(u) g(v)] = (1/2π) ∫_0^{2π} dθ ∫_0^∞ r e^{−r²/2} f(r a) g(r b) dr.
The lines u = 0 and v = 0 are rays, so kinks of f and g at 0 fall on the boundaries of the
θ-arcs, and quadrature on each arc converges as for a smooth integrand (relu, abs, softsign...).

float64: composite Gauss–Legendre, panels graded towards the kink angles and towards r = 0 on
the scale of the activation (x ~ 1), so large q (sharp φ(√q z)) stays accurate.
mpmath: tanh–sinh (``mpmath.quad``) on the same pieces, at the context's working precision.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import mpmath
import numpy as np

from workbench.errors import UnsupportedError

DEGENERATE_CORRELATION = 1e-13  # 1 - |c| below this: treat (u, v) as perfectly correlated
Z_MAX = 10.0  # e^{-Z_MAX^2/2} ≈ 2e-22: negligible Gaussian tail in float64
GL_NODES = 16


@cache
def _gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(n)


def _composite_rule(edges: np.ndarray, n: int = GL_NODES) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of n-point Gauss–Legendre on each panel [edges[i], edges[i+1]]."""
    x, w = _gauss_legendre(n)
    lo, hi = edges[:-1, None], edges[1:, None]
    half = (hi - lo) / 2
    return (lo + half * (x + 1)).ravel(), (half * w).ravel()


def _radial_edges(scale: float, breaks: np.ndarray) -> np.ndarray:
    """Panel edges on [0, Z_MAX]: unit steps in z, plus steps of 1/2 on the activation's own
    scale (x = scale·r of order 1), plus the given break points (kinks)."""
    z_grid = np.linspace(0.0, Z_MAX, 21)
    x_grid = np.arange(1, 17) * 0.5 / scale if scale > 0 else np.empty(0)
    edges = np.concatenate(
        [z_grid, x_grid[x_grid < Z_MAX], breaks[(breaks > 0) & (breaks < Z_MAX)]]
    )
    edges = np.unique(edges)
    return edges[np.concatenate([[True], np.diff(edges) > 1e-12 * Z_MAX])]


REFERENCE_DISTANCE = np.pi / 2  # tanh's poles: the panels below are sized for this distance


def sharpness(distance: float) -> float:
    """How much finer than tanh's an activation's own scale is: its nearest complex
    singularity sits ``distance`` from the real axis (tanh(3x): π/6, so panels a third as
    wide; E[tanh(3z)²] was 5.6e-11 off with tanh's panels)."""
    return max(1.0, REFERENCE_DISTANCE / distance) if distance > 0 else 1.0


def expect1_float64(h: Callable[[np.ndarray], np.ndarray], q: Any, kinks: tuple = (),
                    distance: float = np.inf) -> Any:  # fmt: skip
    """E[h(u)], u ~ N(0, q), in float64 for a scalar or an array of variances q >= 0 (one
    vectorised rule for all of them). ``h`` receives arrays of shape (len(q), nodes);
    ``distance``: of h's nearest complex singularity from the real axis (panels scale with it)."""
    q = np.asarray(q, float)
    if any(k != 0 for k in kinks):
        values = [_expect1_with_breaks(h, float(v), kinks, distance) for v in q.ravel()]
        return float(values[0]) if q.shape == () else np.reshape(values, q.shape)
    s = np.sqrt(q.ravel())
    r, w = _radial_rule_batch(s * sharpness(distance))
    x = s[:, None] * r
    with np.errstate(all="ignore"):
        vals = (h(x) + h(-x)) * np.exp(-r * r / 2)
    out = np.einsum("mr,mr->m", vals, w) / np.sqrt(2 * np.pi)
    return float(out[0]) if q.shape == () else out.reshape(q.shape)


def _expect1_with_breaks(h: Callable, q: float, kinks: tuple, distance: float) -> float:
    """The scalar rule with extra panel edges at kinks away from 0."""
    if q == 0:
        return float(h(np.zeros(1))[0])
    s = float(np.sqrt(q))
    breaks = np.abs(np.asarray(kinks, float)) / s
    r, w = _composite_rule(_radial_edges(s * sharpness(distance), breaks))
    with np.errstate(all="ignore"):
        vals = (h(s * r) + h(-s * r)) * np.exp(-r * r / 2)
    return float(np.dot(vals, w) / np.sqrt(2 * np.pi))


@cache
def _arc_pattern(levels: int, n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Nodes t and weights on [0, 1] for one θ-arc, panels graded geometrically towards both
    ends (where a kink ray, or the sharp edge of φ(√q r a(θ)) at large q, sits)."""
    steps = 0.5 * 2.0 ** -np.arange(levels)
    edges = np.unique(np.concatenate([[0.0], steps[::-1], 1 - steps[1:], [1.0]]))
    return _composite_rule(edges, n)


def _grading_levels(scale: float) -> int:
    """Enough halvings that the finest θ-panel resolves φ's edge out to r = Z_MAX."""
    extra = 3
    return int(np.clip(np.ceil(np.log2(max(Z_MAX * scale, 1.0))) + extra, 3, 16))


def _cholesky(q11: Any, q12: Any, q22: Any, sqrt: Callable) -> tuple[Any, Any, Any]:
    l11 = sqrt(q11)
    l21 = q12 / l11
    l22 = sqrt(max(q22 - l21 * l21, 0 * q22))
    return l11, l21, l22


def _kink_angles(l11: float, l21: float, l22: float, atan2: Callable, pi: Any) -> list:
    """Angles where a(θ) = l11 cos θ = 0 or b(θ) = l21 cos θ + l22 sin θ = 0."""
    return [pi / 2, 3 * pi / 2, atan2(-l21, l22), atan2(-l21, l22) + pi]


def _check_kinks(f_kinks: tuple, g_kinks: tuple) -> None:
    off_zero = [k for k in (*f_kinks, *g_kinks) if k != 0]
    if off_zero:
        raise UnsupportedError(
            f"two-point Gaussian expectations handle kinks at x = 0 only; this activation has a "
            f"kink at x = {off_zero[0]}",
            hint="shift the activation so that its kink sits at 0, or use a smooth activation",
        )


CHUNK = 16  # covariances integrated together (bounds the node-array memory)


def expect2_float64(
    f: Callable,
    g: Callable,
    q11: Any,
    q12: Any,
    q22: Any,
    f_kinks: tuple = (),
    g_kinks: tuple = (),
    distance: float = 0.0,
) -> Any:
    """E[f(u) g(v)] in float64 for arrays of covariances with q11, q22 > 0 (|c| = 1 allowed).
    Scalars in, float out; arrays in, array out. ``distance``: a lower bound on the distance of
    f's and g's complex singularities from the real axis (0 when unknown or kinked).

    Smooth f, g whose singularities lie far enough off the axis on the scale √q take a tensor
    Gauss–Hermite rule; the rest the polar rule (``_expect2_polar``)."""
    _check_kinks(f_kinks, g_kinks)
    q11, q12, q22 = np.broadcast_arrays(*(np.asarray(v, float) for v in (q11, q12, q22)))
    shape = q11.shape
    q11, q12, q22 = q11.ravel(), q12.ravel(), q22.ravel()
    out = np.empty(q11.size)
    smooth = not f_kinks and not g_kinks
    for lo in range(0, q11.size, CHUNK):
        part = slice(lo, lo + CHUNK)
        order = _hermite_order(distance, float(np.sqrt(max(q11[part].max(), q22[part].max()))))
        if smooth and order <= GH_MAX_ORDER:
            out[part] = _expect2_hermite(f, g, q11[part], q12[part], q22[part], order)
        else:
            out[part] = _expect2_polar(f, g, q11[part], q12[part], q22[part])
    return float(out[0]) if shape == () else out.reshape(shape)


GH_MAX_ORDER = 160  # beyond this many nodes per axis the polar rule is cheaper
GH_DIGITS_FACTOR = 17.0  # error ≈ exp(−2 d_z √n): d_z √n ≥ 17 leaves it below rounding
ENTIRE_DISTANCE = 2.5  # entire φ (gelu, exp…): an effective distance that covers their growth


@cache
def _gauss_hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the n-point rule for the standard normal density."""
    x, w = np.polynomial.hermite.hermgauss(n)
    return np.sqrt(2.0) * x, w / np.sqrt(np.pi)


def _hermite_order(distance: float, scale: float) -> int:
    """Nodes per axis for a Gauss–Hermite error near rounding: φ(scale·z) is analytic in the
    strip |Im z| < d/scale; measured against 25-digit mpmath (tanh, sigmoid, swish, gelu,
    arctan at q ∈ [0.1, 4]) the rule is at 1e-14 or better once d/(√2·scale)·√n ≥ 17."""
    d = min(distance, ENTIRE_DISTANCE)
    if d <= 0 or scale <= 0:
        return GH_MAX_ORDER + 1 if d <= 0 else 24
    return max(24, int(np.ceil((GH_DIGITS_FACTOR * np.sqrt(2.0) * scale / d) ** 2)))


def _expect2_hermite(
    f: Callable, g: Callable, q11: np.ndarray, q12: np.ndarray, q22: np.ndarray, order: int
) -> np.ndarray:
    """Tensor Gauss–Hermite: u = l11 z₁, v = l21 z₁ + l22 z₂ with z₁, z₂ standard normal."""
    z, w = _gauss_hermite(order)
    l11 = np.sqrt(q11)
    l21 = q12 / l11
    l22 = np.sqrt(np.maximum(q22 - l21 * l21, 0.0))
    with np.errstate(all="ignore"):
        fu = f(l11[:, None] * z) * w  # (m, n)
        gv = g(l21[:, None, None] * z[None, :, None] + l22[:, None, None] * z[None, None, :])
    return np.einsum("mi,mij,j->m", fu, gv, w)


def _expect2_polar(f: Callable, g: Callable, q11: np.ndarray, q12: np.ndarray, q22: np.ndarray):
    """Polar rule: per covariance the circle is cut at the four rays where u = 0 or v = 0,
    starting at α = atan2(−l21, l22): [α, π/2, α + π, 3π/2, α + 2π], so every arc is a smooth
    piece for kinks at 0 (|c| = 1 allowed: the rule then lives on one arc)."""
    l11 = np.sqrt(q11)
    l21 = q12 / l11
    l22 = np.sqrt(np.maximum(q22 - l21 * l21, 0.0))
    alpha = np.arctan2(-l21, l22)
    bounds = np.stack(
        [
            alpha,
            np.full_like(alpha, np.pi / 2),
            alpha + np.pi,
            np.full_like(alpha, 1.5 * np.pi),
            alpha + 2 * np.pi,
        ],
        axis=1,
    )
    scale = np.sqrt(np.maximum(q11, q22))
    t, wt = _arc_pattern(_grading_levels(float(scale.max())))
    length = np.diff(bounds, axis=1)  # (m, 4)
    theta = (bounds[:, :-1, None] + length[:, :, None] * t).reshape(len(q11), -1)
    w_theta = (length[:, :, None] * wt).reshape(len(q11), -1)
    r, wr = _radial_rule_batch(scale)  # (m, nr)
    a = l11[:, None] * np.cos(theta)
    b = l21[:, None] * np.cos(theta) + l22[:, None] * np.sin(theta)
    radial_weight = wr * r * np.exp(-r * r / 2)
    with np.errstate(all="ignore"):
        vals = f(a[:, :, None] * r[:, None, :]) * g(b[:, :, None] * r[:, None, :])
    return np.einsum("mt,mtr,mr->m", w_theta, vals, radial_weight) / (2 * np.pi)


def _radial_rule_batch(scale: np.ndarray, n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Per-covariance radial rule on [0, Z_MAX]: panels of 1/2 in z, and where the activation
    is sharp on that scale (scale = √q > 1) first 16 panels of 1/2 on the activation's own scale
    x = scale·r, then panels doubling in x (for slowly saturating φ such as softsign); clipped
    copies at Z_MAX make zero-width panels, so rows have equal sizes."""
    z_grid = np.broadcast_to(np.linspace(0.0, Z_MAX, 21), (len(scale), 21))
    if scale.max() > 1:
        doublings = int(np.ceil(np.log2(Z_MAX * scale.max() / 8)))
        x_steps = np.concatenate([np.arange(1, 17) * 0.5, 8 * 2.0 ** np.arange(1, doublings + 1)])
        x_grid = np.minimum(x_steps / np.maximum(scale[:, None], 1e-300), Z_MAX)
        edges = np.sort(np.concatenate([z_grid, x_grid], axis=1), axis=1)
        n = 12  # sharp φ(√q x): the wider Gaussian panels need the higher order
    else:
        edges = z_grid
    x, w = _gauss_legendre(n)
    lo, hi = edges[:, :-1, None], edges[:, 1:, None]
    half = (hi - lo) / 2
    return (lo + half * (x + 1)).reshape(len(scale), -1), (half * w).reshape(len(scale), -1)


def _near_origin(scale: Any) -> list:
    """Break points 1/scale and 40/scale of a radial integral whose activation φ(scale·r)
    turns near r = 0 (at a large variance: tanh at q ~ 1e320 turns within r ~ 1e-160, which
    tanh–sinh on [0, ∞) took half a minute to find); none for scale ≤ 1."""
    return [1 / scale, 40 / scale] if scale > 1 else []


def expect1_mpmath(h: Callable, q: Any, kinks: tuple = (), even: bool = False) -> Any:
    """E[h(u)], u ~ N(0, q), by tanh–sinh at the current mpmath precision (``even``: h is
    known to be even, so the folded integrand is 2 h(√q r))."""
    if q == 0:
        return h(mpmath.mpf(0))
    s = mpmath.sqrt(q)
    pts = sorted({mpmath.mpf(0), *_near_origin(s), *(abs(mpmath.mpf(k)) / s for k in kinks)})
    pts.append(mpmath.inf)

    def integrand(r):
        folded = 2 * h(s * r) if even else h(s * r) + h(-s * r)
        return folded * mpmath.exp(-r * r / 2)

    return mpmath.quad(integrand, pts) / mpmath.sqrt(2 * mpmath.pi)


def expect2_mpmath(
    f: Callable,
    g: Callable,
    q11: Any,
    q12: Any,
    q22: Any,
    f_kinks: tuple = (),
    g_kinks: tuple = (),
) -> Any:
    """E[f(u) g(v)] for a non-degenerate covariance, by nested tanh–sinh in polar form (the
    slow, general route; hermite.py serves most high-precision calls)."""
    _check_kinks(f_kinks, g_kinks)
    l11, l21, l22 = _cholesky(q11, q12, q22, mpmath.sqrt)
    angles = sorted(
        a % (2 * mpmath.pi) for a in _kink_angles(l11, l21, l22, mpmath.atan2, mpmath.pi)
    )
    pts = angles + [angles[0] + 2 * mpmath.pi]

    def radial(theta):
        a = l11 * mpmath.cos(theta)
        b = l21 * mpmath.cos(theta) + l22 * mpmath.sin(theta)
        return mpmath.quad(
            lambda r: r * mpmath.exp(-r * r / 2) * f(r * a) * g(r * b),
            [0, *_near_origin(max(abs(a), abs(b))), mpmath.inf],
        )

    return mpmath.quad(radial, pts) / (2 * mpmath.pi)

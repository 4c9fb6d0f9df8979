"""Two-point Gaussian expectations at high precision by Mehler's formula.

With normalised Hermite polynomials h_k = He_k/√(k!) and coefficients
a_k(f, q) = E[f(√q z) h_k(z)], z ~ N(0, 1), Mehler's expansion of the bivariate normal density
gives, for (u, v) with variances q11, q22 and correlation ρ = q12/√(q11 q22),

    E[f(u) g(v)] = Σ_k a_k(f, q11) a_k(g, q22) ρ^k.

The coefficients depend on one variance only, so they are computed once by one-dimensional
quadrature and reused for every ρ: a whole fixed-point solve for the correlation c* then costs
one quadrature instead of a two-dimensional integral per iterate. The tail after K terms is
bounded by Cauchy–Schwarz and Parseval, |ρ|^(K+1) √(T_f T_g) with T = E[f²] − Σ_{k≤K} a_k², and K
grows until that bound is below the working precision.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import mpmath
from mpmath.calculus.quadrature import GaussLegendre

MIN_POLE_DISTANCE = 1e-3  # in z: a singularity closer than this, and the series is not tried
MAX_TERMS = 1500
EXTRA_DIGITS = 15  # guard digits against the cancellation in high-order coefficients


@lru_cache(maxsize=32)
def _legendre_nodes(degree: int, prec: int) -> list[tuple[Any, Any]]:
    return GaussLegendre(mpmath.mp).calc_nodes(degree, prec)


def _panel_rule(radius: Any, width: Any) -> tuple[list[Any], list[Any]]:
    """Gauss–Legendre nodes on [0, radius] in panels of at most ``width`` (a kink at 0 is an
    endpoint). With the panel width at most the distance d to the nearest complex singularity,
    the Bernstein-ellipse bound of an n-point rule is (2 + √5)^(−2n): 48 nodes give 60 digits, 96
    nodes 120."""
    count = int(mpmath.ceil(radius / width))
    step = radius / count
    nodes = _legendre_nodes(5 if mpmath.mp.dps <= 60 + EXTRA_DIGITS else 6, mpmath.mp.prec)
    xs, ws = [], []
    for i in range(count):
        mid = step * (i + mpmath.mpf(1) / 2)
        for x, w in nodes:
            xs.append(mid + step / 2 * x)
            ws.append(step / 2 * w)
    return xs, ws


class HermiteSeries:
    """The coefficients a_k(f, q) of one activation at one variance, extended on demand."""

    def __init__(self, f: Callable[[Any], Any], q: Any, pole_distance: Any) -> None:
        self.f, self.q = f, q
        self.coefficients: list[Any] = []
        self.norm2: Any = None
        self._pole_distance = pole_distance
        self._rule: tuple[list[Any], list[Any], list[Any]] | None = None

    def _nodes(self, terms: int) -> tuple[list[Any], list[Any], list[Any]]:
        """Folded nodes z > 0 with weights (Gaussian density included) and f(±√q z)."""
        # Cramér's bound |h_k(z)| e^{-z²/4} < 1.09 puts every integrand under e^{-z²/4}
        radius = 2 * mpmath.sqrt(mpmath.log(10) * (mpmath.mp.dps + 5))
        zs, ws = _panel_rule(radius, min(mpmath.mpf(1), self._pole_distance))
        s = mpmath.sqrt(self.q)
        dens = [w * mpmath.npdf(z) for z, w in zip(zs, ws)]
        return zs, dens, [(self.f(s * z), self.f(-s * z)) for z in zs]

    def extend(self, terms: int) -> list[Any]:
        """a_0 … a_{terms−1} (recomputed on a wider rule when more terms are asked for).

        The three-term recurrence h_{k+1} = (z h_k − √k h_{k−1})/√(k+1) runs in fixed-point
        integer arithmetic with guard bits (mpf arithmetic would dominate the cost)."""
        if len(self.coefficients) >= terms:
            return self.coefficients[:terms]
        zs, dens, values = self._nodes(terms)
        bits = mpmath.mp.prec + 40
        one = 1 << bits

        def fixed(x: Any) -> int:
            return int(mpmath.nint(mpmath.ldexp(x, bits)))

        root = [fixed(mpmath.sqrt(k)) for k in range(terms + 1)]
        inv_root = [fixed(1 / mpmath.sqrt(k + 1)) for k in range(terms + 1)]
        acc = [0] * terms
        norm2 = mpmath.mpf(0)
        for z, w, (fp, fm) in zip(zs, dens, values):
            norm2 += w * (fp * fp + fm * fm)
            parity = (fixed(w * (fp + fm)), fixed(w * (fp - fm)))
            zf = fixed(z)
            h_prev, h = 0, one
            for k in range(terms):
                acc[k] += parity[k & 1] * h
                h_prev, h = h, (((zf * h - root[k] * h_prev) >> bits) * inv_root[k]) >> bits
        self.coefficients = [mpmath.ldexp(mpmath.mpf(a), -2 * bits) for a in acc]
        self.norm2 = norm2
        return self.coefficients


@lru_cache(maxsize=64)
def _series(f: Callable[[Any], Any], q: Any, pole_distance: Any, prec: int) -> HermiteSeries:
    return HermiteSeries(f, q, pole_distance)


def terms_needed(rho: Any) -> int:
    """Terms after which |ρ|^K alone is below the working precision."""
    if rho == 0:
        return 1
    digits = mpmath.mp.dps + 5
    return int(mpmath.ceil(digits * mpmath.log(10) / -mpmath.log(abs(rho)))) + 1


def expect2_mehler(
    f: Callable[[Any], Any],
    g: Callable[[Any], Any],
    q11: Any,
    q12: Any,
    q22: Any,
    f_scale: Any,
    g_scale: Any,
) -> Any:
    """E[f(u) g(v)] by Mehler's series at the current mpmath precision. ``f_scale`` and
    ``g_scale`` are the distances from the real axis to the nearest complex singularity of f and
    g in x (they set the panel width of the coefficient quadrature)."""
    rho = q12 / mpmath.sqrt(q11 * q22)
    terms = terms_needed(rho)
    if terms > MAX_TERMS:
        return None
    if min(f_scale / mpmath.sqrt(q11), g_scale / mpmath.sqrt(q22)) < MIN_POLE_DISTANCE:
        # φ(√q z) turns within a sliver of z: its coefficients decay too slowly to converge
        # (tanh at q ~ 1e320 built panels 1e-160 wide without end)
        return None
    prec = mpmath.mp.prec
    with mpmath.extradps(EXTRA_DIGITS):
        fs = _series(f, q11, f_scale / mpmath.sqrt(q11), prec)
        gs = _series(g, q22, g_scale / mpmath.sqrt(q22), prec)
        a, b = fs.extend(terms), gs.extend(terms)
        total = mpmath.fsum(ak * bk * rho**k for k, (ak, bk) in enumerate(zip(a, b)))
        tail_f = max(fs.norm2 - mpmath.fsum(x * x for x in a), mpmath.mpf(0))
        tail_g = max(gs.norm2 - mpmath.fsum(x * x for x in b), mpmath.mpf(0))
        bound = abs(rho) ** terms * mpmath.sqrt(tail_f * tail_g)
    if bound > abs(total) * mpmath.mpf(10) ** (-mpmath.mp.dps + 2) and bound > mpmath.eps:
        return None  # not converged within MAX_TERMS: the caller integrates directly
    return +total

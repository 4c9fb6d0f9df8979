"""Activations on fields so small that φ is affine to float64 on the Gaussian's whole scale.

At a variance q where φ(√q z) = φ(0) + φ′(0) √q z to the rounding of φ itself (in mean square
under the standard normal) and φ′(√q z) = φ′(0) likewise, the dual kernels are exactly the
affine ones: E[φ(u) φ(v)] = φ(0)² + φ′(0)² K_uv, E[φ′(u) φ′(v)] = φ′(0)², E[φ(u)] = φ(0).
Written so, a pass of a critical block at q → 0 (tanh, arctan at σ_w² = 1, σ_b² = 0, where q
decays like 1/l and in float64 stops moving) maps its second moments to themselves exactly;
the quadrature routes instead drift a few ulps a pass (their linear Hermite coefficient is
φ′(0)√q only to rounding), which over 10⁵ passes moves the kernel by 1e-10 and keeps the
evaluator from seeing the fixed point.

``affine_bound(f)`` is the largest variance (a power of 4 from 4^-500 to 4^-20) at which
both conditions hold, checked at the Gaussian engine's node rule, or None (kinked φ, φ with
φ(0) = φ′(0) = 0, a remainder that never falls below rounding)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from workbench.activations import Activation

TOLERANCE = 2.0**-52  # root-mean-square remainder relative to the affine part: φ's own rounding
CEILING, FLOOR = 20, 500  # the bound is searched between 4^-20 (~1e-12: larger variances
# always take the general routes) and 4^-500 (~1e-301)


@dataclass(frozen=True)
class Affine:
    """φ(0), φ′(0) and the largest variance at which φ is affine to rounding."""

    value: float
    slope: float
    bound: float

    def pairs_gap(self, q_a: np.ndarray, q_b: np.ndarray, gap: np.ndarray) -> np.ndarray:
        """√(T_aa T_bb) − T_ab of the affine dual from the field's gap G = √(q_a q_b) − K_ab,
        without cancellation: φ′(0)² G + φ(0)² φ′(0)² (√q_a − √q_b)² / (√(T_aa T_bb) + φ(0)²
        + φ′(0)² √(q_a q_b))."""
        v2, s2 = self.value**2, self.slope**2
        if v2 == 0:  # φ(0) = 0: the second term vanishes (and its denominator may be 0)
            return s2 * gap
        root = np.sqrt(q_a) * np.sqrt(q_b)
        spread = (np.sqrt(q_a) - np.sqrt(q_b)) ** 2
        outer = np.sqrt((v2 + s2 * q_a) * (v2 + s2 * q_b))
        return s2 * gap + v2 * s2 * spread / (outer + v2 + s2 * root)


@cache
def affine_bound(f: Activation) -> Affine | None:
    """φ's affine regime (see the module docstring), or None where it has none."""
    if f.kinks:
        return None
    from workbench.gaussian.mehler import node_rule

    z, w = node_rule()
    phi, slope_of = f.numpy, f.derivative().numpy
    with np.errstate(all="ignore"):
        value, slope = float(phi(np.zeros(1))[0]), float(slope_of(np.zeros(1))[0])
    if not (np.isfinite(value) and np.isfinite(slope)) or (value == 0 and slope == 0):
        return None

    def affine_at(q: float) -> bool:
        root = np.sqrt(q)
        with np.errstate(all="ignore"):
            remainder = phi(root * z) - (value + slope * root * z)
            slope_remainder = slope_of(root * z) - slope
        scale = value**2 + slope**2 * q
        return bool(
            np.isfinite(remainder).all()
            and np.isfinite(slope_remainder).all()
            and (remainder**2) @ w <= TOLERANCE**2 * scale
            and (slope_remainder**2) @ w <= TOLERANCE**2 * slope**2
        )

    low, high = FLOOR, CEILING  # exponents k of q = 4^-k: affine at 4^-low, not at 4^-high
    if not affine_at(4.0**-low):
        return None
    if affine_at(4.0**-high):
        return Affine(value, slope, 4.0**-CEILING)
    while low - high > 1:  # the remainder grows with q: bisect on the exponent
        middle = (low + high) // 2
        low, high = (middle, high) if affine_at(4.0**-middle) else (low, middle)
    return Affine(value, slope, 4.0**-low)

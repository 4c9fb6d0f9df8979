"""Fixed points, susceptibilities, depth scales and phase of a fully-connected cycle
(pabari_zhou §3.1 eqs. 3–10; Poole et al. and Schoenholz et al. as summarised there).

The attracting fixed point is found by iterating the map in float64 from q⁰ = 1 (normalised
inputs), then polished by Newton's method in the requested precision. Without a finite fixed
point (e.g. relu with σ_w² > 2) the result says so and gives the growth factor per cycle.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench.errors import TheoryError
from workbench.gaussian import expect
from workbench.gaussian.gap import dual_gap
from workbench.precision import Context, Float64
from workbench.solve import polish_root
from workbench.theory.fc_maps import FCStep, c_map, chi_1, chi_c, chi_q, q_map, q_orbit

F64 = Float64()
MAX_ITERATIONS = 2000
DIVERGENCE_THRESHOLD = 1e12
ZERO_VARIANCE = 1e-280


@dataclass
class FixedPointAnalysis:
    """Mean-field quantities of one repeat body. Depth scales count body iterations."""

    path: str
    q_star: Any
    c_star: Any
    chi_1: Any
    chi_q: Any
    chi_c: Any
    xi_q: Any
    xi_c: Any
    phase: str
    growth_rate: Any = None
    notes: list[str] = field(default_factory=list)
    ctx: Context = field(default=F64, repr=False)

    def to_dict(self) -> dict:
        def num(v: Any) -> Any:
            return None if v is None else self.ctx.to_json(v)

        out = {
            "path": self.path,
            "q_star": num(self.q_star),
            "c_star": num(self.c_star),
            "chi_1": num(self.chi_1),
            "chi_q": num(self.chi_q),
            "chi_c": num(self.chi_c),
            "xi_q": num(self.xi_q),
            "xi_c": num(self.xi_c),
            "phase": self.phase,
        }
        if self.growth_rate is not None:
            out["growth_rate"] = num(self.growth_rate)
        if self.notes:
            out["notes"] = list(self.notes)
        return out


def phase_of(chi1: Any, ctx: Context) -> str:
    """ordered (χ₁ < 1), chaotic (χ₁ > 1) or critical (|χ₁ − 1| within the precision)."""
    if abs(chi1 - 1) <= ctx.tolerance:
        return "critical"
    return "ordered" if chi1 < 1 else "chaotic"


def depth_scale(chi: Any, ctx: Context) -> Any:
    """ξ = −1/log χ (eqs. 9–10); None where it diverges (χ ≥ 1 within the precision)."""
    if chi is None:
        return None
    if chi <= 0:
        return ctx.num(0)
    if chi >= 1 - ctx.tolerance:
        return None
    return -1 / ctx.log(chi)


def explore_q(steps: Sequence[FCStep], q0: float = 1.0) -> tuple[str, float, float]:
    """Iterate the q-map in float64: ('fixed', q, 0) | ('zero', 0, 0) | ('diverges', q, rate)."""
    q = q0
    for _ in range(MAX_ITERATIONS):
        q_next = q_map(steps, q, F64)
        if not math.isfinite(q_next) or q_next > DIVERGENCE_THRESHOLD:
            rate = q_map(steps, DIVERGENCE_THRESHOLD, F64) / DIVERGENCE_THRESHOLD
            return "diverges", q, rate
        if q_next < ZERO_VARIANCE:
            return "zero", 0.0, 0.0
        if abs(q_next - q) <= 1e-15 * q_next:
            return "fixed", q_next, 0.0
        q = q_next
    if q < 1e-6 * q0:
        return "zero", 0.0, 0.0
    return "fixed", q, 0.0


def affine_q_map(steps: Sequence[FCStep], ctx: Context) -> tuple[Any, Any] | None:
    """(a, b) with q ↦ a q + b the cycle's q-map, exactly, when every φ is positively
    homogeneous of degree 1 (relu, leaky relu, linear: E[φ(√q z)²] = q E[φ(z)²]); else None."""
    if not all(step.phi.positive_homogeneity() == 1 for step in steps):
        return None
    one = ctx.num(1)
    a, b = one, ctx.num(0)
    for step in steps:
        gain = ctx.num(step.sigma_w2) * expect(step.phi, step.phi, one, one, one, ctx)
        a, b = gain * a, gain * b + ctx.num(step.sigma_b2)
    return a, b


def q_fixed_point(steps: Sequence[FCStep], ctx: Context, q0: float = 1.0) -> tuple[str, Any, Any]:
    """The attracting fixed point q* of the cycle's q-map (eq. 23) in ``ctx``: ('fixed', q*,
    0) | ('zero', 0, 0) | ('diverges', q, rate per cycle) | ('linear', q, increment per
    cycle). An affine map (degree-1 homogeneous φ) is solved exactly: relu just above its
    critical σ_w² = 2 grows by a factor 1.0005 per layer, too slowly for iteration to see."""
    affine = affine_q_map(steps, ctx)
    if affine is not None:
        a, b = affine
        if abs(a - 1) <= ctx.tolerance:
            return ("fixed", ctx.num(q0), ctx.num(0)) if b == 0 else ("linear", ctx.num(q0), b)
        if a > 1:
            return "diverges", ctx.num(q0), a
        return ("fixed", b / (1 - a), ctx.num(0)) if b > 0 else ("zero", ctx.num(0), ctx.num(0))
    status, q_est, rate = explore_q(steps, q0)
    if status != "fixed":
        return status, q_est, ctx.num(rate)
    if _creeps_to_zero(steps, ctx, q_est):
        return "zero", ctx.num(0), ctx.num(0)

    def residual(q: Any) -> Any:
        return q_map(steps, q, ctx) - q

    def slope(q: Any) -> Any:
        return chi_q(steps, q, ctx) - 1

    try:
        q_star = polish_root(residual, q_est, ctx, derivative=slope, what="fixed point q*")
    except TheoryError:
        q_star = polish_root(residual, q_est, ctx, what="fixed point q*")
    return "fixed", q_star, ctx.num(0)


def _creeps_to_zero(steps: Sequence[FCStep], ctx: Context, q_est: float) -> bool:
    """q = 0 is a fixed point whose slope χ_q(0) = σ_w² φ′(0)² is 1, and the map is still
    below the identity where the iteration stopped: q → 0 algebraically (like 1/l), which
    iteration cannot finish and root polishing mistakes for a tiny q* (tanh at σ_w² = 1,
    σ_b² = 0 gave q* = 1.8e-16 in float64, 2.2e-22 at 30 digits, no convergence at 50)."""
    zero = ctx.num(0)  # with q_map(0) = 0, every φ(0) = 0 and χ_q(0) = χ₁(0) = Π σ_w² φ′(0)²
    if q_map(steps, zero, ctx) != 0 or abs(chi_1(steps, zero, ctx) - 1) > ctx.tolerance:
        return False
    return q_map(steps, ctx.num(q_est), ctx) < ctx.num(q_est)


def gap_map(steps: Sequence[FCStep], s: float, orbit: Sequence[float]) -> float | None:
    """1 − c after one pass from 1 − c = ``s`` on the float64 variance orbit, by the dual
    kernel's Cauchy–Schwarz gap (gaussian.gap): with equal variances the bias adds none,
    and s′ = σ_w² (T_aa − T_ab)/q′ is computed without a difference of nearly equal numbers.
    None where some step's gap is not depth-safe (it would be that difference)."""
    q_prev = orbit[-1]
    for step, q_next in zip(steps, orbit):
        found = dual_gap(step.phi, np.array([q_prev, q_prev]), _ONE_PAIR, np.array([s]))
        if not found.depth_safe:
            return None
        s = float(step.sigma_w2) * float(found.gap[0]) / q_next
        q_prev = q_next
    return s


_ONE_PAIR = np.array([[0, 1]])
SMALLEST_GAP_EXPONENT = 1000  # s* below 2^-1000: c* = 1 in float64


def explore_c(steps: Sequence[FCStep], orbit: Sequence[float]) -> tuple[float, bool]:
    """The stable c* < 1 of the chaotic phase in float64, and whether it is final.

    Where every step's gap is depth-safe, c* = 1 − s* with s* the root of
    h(s) = s′(s)/s − 1 (``gap_map``): h(0⁺) = χ₁ − 1 > 0 in the chaotic phase and h(2) ≤ 0,
    so a sign change is bracketed (bisection over the exponent of s, then Illinois steps).
    That is final. The c-map's own iteration creeps where χ_c* → 1 (near the critical line)
    and its residual c′ − c is rounding there: sigmoid at its Theorem-1 point has
    1 − c* = 4.7e-11, which iterating the c-map gave as 4.8e-8. Otherwise the c-map is
    iterated from c = 0, for the caller to polish."""
    root = None if gap_map(steps, 1.0, orbit) is None else _gap_root(steps, orbit)
    if root is None:
        return _iterate_c(steps, orbit), False
    return root, True


ITERATE_FIRST = 64  # c-map iterations before a slow iteration becomes a bracketed root solve


def _iterate_c(steps: Sequence[FCStep], orbit: Sequence[float]) -> float:
    """c* by iterating the c-map from c = 0. The c-map is increasing and convex on [0, 1]
    (a series in c with non-negative coefficients, and compositions of such), so the iterates
    rise to the smallest fixed point c* and g(c) = c-map(c) − c is positive below it and
    negative between it and 1 in the chaotic phase. Where the iteration creeps (χ_c* near 1:
    softsign at σ_w² = 9, σ_b² = 2 took 2,000 iterations, 10 s), c* is bracketed between the
    last iterate and a point 1 − 2⁻ᵏ where g < 0 and found by ``polish_root`` in it."""
    c = 0.0
    for i in range(MAX_ITERATIONS):
        c_next = c_map(steps, c, orbit, F64)
        if abs(c_next - c) <= 1e-15:
            return c_next
        c = c_next
        if i + 1 == ITERATE_FIRST:
            found = _bracketed_c(steps, orbit, c)
            if found is not None:
                return found
    return c


def _bracketed_c(steps: Sequence[FCStep], orbit: Sequence[float], below: float) -> float | None:
    """The root of g = c-map − identity between ``below`` (g > 0) and the first 1 − 2⁻ᵏ above
    it with g < 0; None where no such point is found (then the iteration goes on)."""

    def g(c: float) -> float:
        return float(c_map(steps, c, orbit, F64)) - c

    if not g(below) > 0:
        return None
    for k in range(1, 40):
        above = 1.0 - 2.0**-k
        if above <= below:
            continue
        if g(above) < 0:
            return float(polish_root(g, below, F64, bracket=(below, above),
                                     what="fixed point c*"))  # fmt: skip
    return None


def _gap_root(steps: Sequence[FCStep], orbit: Sequence[float]) -> float | None:
    """c* = 1 − s* (None where no sign change of h is bracketed, e.g. within rounding of 0
    at both s = 1 and s = 2: odd φ without bias, whose c = −1 is fixed too)."""

    def h(s: float) -> float:
        return gap_map(steps, s, orbit) / s - 1

    hi = 1.0
    h_hi = h(hi)
    if abs(h_hi) <= 1e-14:  # c-map(0) = 0 within rounding (odd φ, no bias): c* = 0
        return 0.0
    if h_hi > 0:  # c* < 0
        lo, h_lo, hi, h_hi = hi, h_hi, 2.0, h(2.0)
        if not h_hi < 0:
            return None
    else:  # the largest k with h(2^-k) > 0, by bisection over k
        below, above = 0, SMALLEST_GAP_EXPONENT
        if h(2.0**-above) <= 0:
            return 1.0
        while above - below > 1:
            k = (below + above) // 2
            if h(2.0**-k) > 0:
                above = k
            else:
                below = k
        lo, hi = 2.0**-above, 2.0**-below
        h_lo, h_hi = h(lo), h(hi)
    side, previous = 0, 0.0
    for _ in range(200):  # Illinois: regula falsi that halves a stale end's value
        s = (lo * h_hi - hi * h_lo) / (h_hi - h_lo) if h_hi != h_lo else (lo + hi) / 2
        if not lo < s < hi or hi - lo <= 4e-16 * hi:
            break
        value = h(s)
        if value == 0 or abs(s - previous) <= 1e-15 * s:
            return 1 - s
        previous = s
        if value > 0:
            lo, h_lo = s, value
            h_hi = h_hi / 2 if side == 1 else h_hi
            side = 1
        else:
            hi, h_hi = s, value
            h_lo = h_lo / 2 if side == -1 else h_lo
            side = -1
    return 1 - (lo + hi) / 2


def analyze_cycle(
    steps: Sequence[FCStep], ctx: Context = F64, path: str = ""
) -> FixedPointAnalysis:
    """q*, c*, χ₁, χ_q*, χ_c*, ξ_q, ξ_c and the phase of a cycle of FC steps."""
    with ctx.active():
        status, q_star, rate = q_fixed_point(steps, ctx)
        notes: list[str] = []
        if status == "diverges":
            return _diverging(steps, ctx, path, rate)
        if status == "linear":
            return _diverging(steps, ctx, path, ctx.num(1), increment=rate)
        if status == "zero":
            return _zero_variance(steps, ctx, path)
        orbit = q_orbit(steps, q_star, ctx)
        chi1 = chi_1(steps, q_star, ctx)
        chiq = chi_q(steps, q_star, ctx)
        phase = phase_of(chi1, ctx)
        if phase != "chaotic":
            c_star, chic = ctx.num(1), chi1
        else:
            orbit64 = [float(q) for q in orbit]
            c_star, final = explore_c(steps, orbit64)

            def residual(c: Any) -> Any:
                return c_map(steps, c, orbit, ctx) - c

            def slope(c: Any) -> Any:
                return chi_c(steps, c, orbit, ctx) - 1

            if not (final and ctx.fast_float64):
                c_star = polish_root(residual, c_star, ctx, derivative=slope,
                                     what="fixed point c*")  # fmt: skip
            c_star = ctx.num(c_star)
            chic = chi_c(steps, c_star, orbit, ctx)
        if phase == "critical":
            notes.append("chi_1 = 1: the correlation depth scale xi_c diverges")
        return FixedPointAnalysis(
            path,
            q_star,
            c_star,
            chi1,
            chiq,
            chic,
            depth_scale(chiq, ctx),
            depth_scale(chic, ctx),
            phase,
            None,
            notes,
            ctx,
        )


def _diverging(
    steps: Sequence[FCStep], ctx: Context, path: str, rate: Any, increment: Any = None
) -> FixedPointAnalysis:
    """No finite q*: q grows by ``rate`` per cycle (or, at rate 1, by ``increment``); χ₁ is
    its large-q limit. For positively homogeneous φ (relu, linear...) the correlation map has
    a scale-free limit: the c-map with the biases dropped and each step normalised to unit
    variance gain."""
    if increment is not None:
        notes = [f"no finite fixed point: q grows linearly, by {float(increment):.6g} per "
                 "iteration (chi_1 = 1 with a bias)"]  # fmt: skip
    else:
        notes = [f"no finite fixed point: q grows by a factor {float(rate):.6g} per iteration"]
    large_q = ctx.num(DIVERGENCE_THRESHOLD)
    chi1 = chi_1(steps, large_q, ctx)
    phase = phase_of(chi1, ctx)
    if not all(s.phi.positive_homogeneity() == 1 for s in steps):
        notes.append("c* is not defined while q diverges for this activation")
        return FixedPointAnalysis(
            path, None, None, chi1, None, None, None, None, phase, rate, notes, ctx
        )
    one = ctx.num(1)
    unit = [FCStep(1 / expect(s.phi, s.phi, one, one, one, ctx), 0, s.phi) for s in steps]
    orbit = [one] * len(steps)
    c_star = one
    if chi_c(unit, one, orbit, ctx) > 1 + ctx.tolerance:
        c_star = polish_root(
            lambda c: c_map(unit, c, orbit, ctx) - c,
            explore_c(unit, [1.0] * len(steps)),
            ctx,
            what="fixed point c*",
        )
    chic = chi_c(unit, c_star, orbit, ctx)
    notes.append("c* and chi_c are the q -> infinity limit, where the biases are negligible")
    return FixedPointAnalysis(
        path, None, c_star, chi1, None, chic, None, depth_scale(chic, ctx), phase, rate, notes, ctx
    )


def _zero_variance(steps: Sequence[FCStep], ctx: Context, path: str) -> FixedPointAnalysis:
    """q* = 0: the signal dies out; χ₁ is its q → 0 limit σ_w² φ'(0)² (σ_w² E[φ'(z)²] for
    degree-1 homogeneous φ, whose χ₁ does not depend on q: relu's φ'(0) is no limit)."""
    zero = ctx.num(0)
    homogeneous = all(step.phi.positive_homogeneity() == 1 for step in steps)
    chi1 = chi_1(steps, ctx.num(1) if homogeneous else zero, ctx)
    chiq = chi1
    notes = ["q* = 0: the variance vanishes with depth; c* is undefined at zero variance"]
    if phase_of(chi1, ctx) == "critical":
        notes.append("chi_q(0) = sigma_w2 phi'(0)^2 = 1: q -> 0 algebraically (like 1/l), "
                     "not exponentially")  # fmt: skip
    return FixedPointAnalysis(
        path,
        zero,
        None,
        chi1,
        chiq,
        None,
        depth_scale(chiq, ctx),
        None,
        phase_of(chi1, ctx),
        None,
        notes,
        ctx,
    )

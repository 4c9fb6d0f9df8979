"""The NTK of m equicorrelated inputs through a fully-connected cycle, carried in the form its
spectrum needs (xiao_bahri §3): every input has the same variance, every pair the same
correlation, so the NTK is Θ_d I + Θ_o (11ᵀ − I) with eigenvalues λ_max = Θ_d + (m − 1) Θ_o
and λ_rest = Θ_d − Θ_o (m − 1 times). Deep in the ordered phase λ_rest is 1e-15 of Θ_d and
cannot be read off Θ_d − Θ_o; here the gap Δ = Θ_d − Θ_o has its own recursion, beside the
NNGP's gap G = q − K_ab (``gaussian.gap``), all terms non-negative:

    dense:  q′ = σ_w² T_aa + σ_b²,  G′ = σ_w² G_T,
            Θ′_d = q′ + σ_w² Θ_d,   Δ′ = σ_w² (G_T + Δ)
    φ:      T_aa = E[φ(u)²],  G_T = E[φ(u)²] − E[φ(u)φ(v)],
            Θ_d ← Ṫ_aa Θ_d,  Δ ← δṪ Θ_d + Ṫ_ab Δ,  δṪ = E[φ′(u)²] − E[φ′(u)φ′(v)],

with the gaps of φ and φ′ from ``gaussian.gap`` in float64 (closed forms, Mehler series) and
from the context's own expectations at high precision.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.errors import TheoryError
from workbench.gaussian import expect
from workbench.gaussian.gap import dual_gap
from workbench.precision import Context
from workbench.theory.fc_maps import FCStep
from workbench.theory.kernel_program import OVERFLOW_GUARD

PAIR = np.array([[0, 0]])


@dataclass(frozen=True)
class Realized:
    """Post-activation (or input) moments of equicorrelated inputs: T_aa, the gap G_T, the
    NTK's diagonal Θ_d and its gap Δ = Θ_d − Θ_o."""

    own: Any
    gap: Any
    theta: Any
    theta_gap: Any

    def spectrum(self, m: int) -> tuple[Any, Any]:
        """(λ_max, λ_rest) of the m × m NTK."""
        return m * self.theta - (m - 1) * self.theta_gap, self.theta_gap


def initial(q: Any, c0: Any, ctx: Context) -> Realized:
    """Inputs of variance q and correlation c0, Θ = K (a first layer's NTK)."""
    q, gap = ctx.num(q), ctx.num(q) * (1 - ctx.num(c0))
    return Realized(q, gap, q, gap)


def passes(steps: Sequence[FCStep], start: Realized, ctx: Context) -> Iterator[Realized]:
    """The realized state after each pass through the cycle ``steps`` (without end)."""
    state = start
    while True:
        for step in steps:
            state = _step(step, state, ctx)
        yield state


def _step(step: FCStep, state: Realized, ctx: Context) -> Realized:
    sw2, sb2 = ctx.num(step.sigma_w2), ctx.num(step.sigma_b2)
    q = sw2 * state.own + sb2
    gap = sw2 * state.gap
    theta = q + sw2 * state.theta
    theta_gap = sw2 * (state.gap + state.theta_gap)
    if ctx.fast_float64 and not (abs(q) < OVERFLOW_GUARD and abs(theta) < OVERFLOW_GUARD):
        raise TheoryError(f"the kernel left float64's range (q = {float(q):.3g})")
    s = gap / q
    phi, d = step.phi, step.phi.derivative()
    if ctx.fast_float64:
        value = dual_gap(phi, np.array([q]), PAIR, np.array([s]))
        slope = dual_gap(d, np.array([q]), PAIR, np.array([s]))
        own, new_gap = float(value.own[0]), float(value.gap[0])
        t_dot, t_dot_gap = float(slope.own[0]), float(slope.gap[0])
    else:  # differences of high-precision expectations: vouched while they keep 12 digits
        k = q * (1 - s)
        own = expect(phi, phi, q, q, q, ctx)
        new_gap = own - expect(phi, phi, q, k, q, ctx)
        t_dot = expect(d, d, q, q, q, ctx)
        t_dot_gap = t_dot - expect(d, d, q, k, q, ctx)
        floor = ctx.eps * 10**12
        if 0 < s < floor or 0 < new_gap < floor * own:
            raise TheoryError(
                f"1 - c = {float(s):.3g} needs more than {ctx.digits} digits here (its gaps are "
                "differences of expectations at this precision); the float64 run carries it "
                "depth-safely, or raise --digits"
            )
    return Realized(
        own, new_gap, t_dot * theta, t_dot_gap * theta + (t_dot - t_dot_gap) * theta_gap
    )

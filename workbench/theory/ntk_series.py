"""The remaining passes of a repeat block whose NNGP has reached an exact fixed point while its
NTK still moves, summed in closed form.

Once a pass returns the same second moments, means and gap bitwise, every later pass applies
the same map to the NTK, and that map is affine: each node's NTK rule is Θ′ = (new second
moments) + (multipliers fixed by the second moments) · Θ (dense: Θ′ = K′ + σ_w² Θ; act:
Θ′ = Ṫ(K) ⊙ Θ; xiao2018 eq. 2.15). For a flat body it is elementwise, Θ′ = A + B ⊙ Θ, so n
more passes give Θₙ = Bⁿ ⊙ Θ + A ⊙ (Bⁿ − 1)/(B − 1) (n A where B = 1) instead of n walks
(the fuzz harness's arctan block at q ≈ 1e-300, where the variances repeat but differ
between the inputs so the settled loop cannot take over, walked 10⁵ passes for 36 s).

A and B come from the body itself: A = F(0), B = (F(P) − A)/P at a probe P larger than every
entry of Θ; the affine, elementwise form is then checked against the pass just walked
(F(Θ) = A + B ⊙ Θ to CHECK_TOLERANCE), so a body whose NTK rule mixes entries (batch norm)
is never summed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import networkx as nx
import numpy as np

from workbench.theory.state import KernelState

if TYPE_CHECKING:
    from workbench.theory.evaluate import Evaluator

MIN_PASSES = 4  # fewer remaining passes are walked
CHECK_TOLERANCE = 1e-12  # relative, per entry, of the affine form against the walked pass


def second_moments_repeat(state: KernelState, before: KernelState) -> bool:
    """Whether a pass left everything but the NTK bitwise as it was, at a realized flat
    float64 boundary (where the NTK map is elementwise for the bodies that pass the check)."""
    if not state.ctx.fast_float64 or state.ntk is None or before.ntk is None:
        return False
    if state.phi is not None or before.phi is not None or state.mode != "flat":
        return False
    return state.replace(ntk=before.ntk).repeats(before)


def summed_passes(
    ev: Evaluator, graph: nx.DiGraph, before: KernelState, after: KernelState, passes: int
) -> KernelState | None:
    """The state after ``passes`` more passes of ``graph`` from ``after`` (the pass from
    ``before`` to ``after`` changed only the NTK), or None where the NTK map is not affine
    and elementwise to CHECK_TOLERANCE, or the sum is not finite (the walk then goes on and
    reports an overflow with its rate)."""
    if passes < MIN_PASSES or ev._tape is not None:
        return None
    theta0, theta1 = np.asarray(before.ntk, float), np.asarray(after.ntk, float)
    scale = float(np.max(np.abs(theta1)))
    probe = np.abs(theta1) + (scale if scale > 0 else 1.0)
    with np.errstate(all="ignore"):
        a = np.asarray(ev.propagate(graph, after.replace(ntk=np.zeros_like(theta1))).ntk, float)
        b = (np.asarray(ev.propagate(graph, after.replace(ntk=probe)).ntk, float) - a) / probe
        predicted = a + b * theta0
        room = CHECK_TOLERANCE * (np.abs(a) + np.abs(b * theta0)) + np.finfo(float).tiny
        if not (np.isfinite(b).all() and (np.abs(predicted - theta1) <= room).all()):
            return None
        power = b**passes
        geometric = np.expm1(passes * np.log1p(b - 1)) / (b - 1)  # no cancellation as B → 1
        sums = np.select([b == 1.0, b > 0.5], [float(passes), geometric], (power - 1) / (b - 1))
        theta = power * theta1 + a * sums
    if not np.isfinite(theta).all():
        return None
    return after.replace(ntk=theta)

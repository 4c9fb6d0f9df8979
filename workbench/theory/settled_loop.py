"""A repeat body's passes over a settled flat state as one fused loop, for any activation.

Once every variance has settled on one q (to ``evaluate.SETTLED``), the evaluator applies an
activation through its dual kernels frozen at q: T and Ṫ as Chebyshev interpolants in the
angle (``DualInterpolant``) and the gap by the frozen s-map (``GapMap``). From then on every
pass is the same map of the packed (K, Θ, G) arrays, so the remaining passes run as the fused
program's Loop (``kernel_program``: the weight layers' rules lowered from the nodes, the
activations' duals frozen here) instead of one evaluator walk per pass. The arithmetic is the
evaluator's (c = K_ab/√(K_aa K_bb), exactly 1 on the diagonal; the same interpolants at the
same q), so the two agree to rounding; a pass whose variances leave the settled q (they are
constant from the first frozen pass on) is never taken.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import networkx as nx
import numpy as np

from workbench.gaussian import expect
from workbench.gaussian.closed_forms import JointDual, unchanged
from workbench.theory.kernel_program import (
    Linear,
    Loop,
    Program,
    lower_graph,
    pack,
    pair_indices,
    run_until_fixed,
    unpack,
)
from workbench.theory.state import KernelState

if TYPE_CHECKING:
    from workbench.theory.evaluate import Evaluator

MIN_PASSES = 4  # fewer remaining passes run on the evaluator (freezing costs about one)
SAFE_RANGE = (1e-150, 1e150)  # settled variances whose squares stay normal floats


def settled_passes(
    ev: Evaluator, graph: nx.DiGraph, state: KernelState, passes: int, path: str
) -> tuple[KernelState, int | None] | None:
    """``passes`` passes of the body ``graph`` from ``state`` (a pass boundary), fused, and
    after how many passes an exact fixed point ended them (None: all ran); None when the
    state is not a settled flat float64 state of a body the program can run, so that the
    evaluator goes on pass by pass. The state returned is realized (no pending φ)."""
    if passes < MIN_PASSES or ev._tape is not None or not _settled_boundary(state):
        return None
    steps = _body_steps(graph)
    if steps is None:
        return None
    start = ev.realized(state)
    k = np.asarray(start.nngp, float)
    frozen = _freeze(ev, steps, np.diagonal(k).copy(), start.gap is not None)
    if frozen is None:
        return None
    body, carry_gap, last_phi, settled = frozen
    m = state.m
    rows, cols, diag = pair_indices(m)
    gap0 = None
    if carry_gap:
        gap0 = np.zeros(len(rows))
        gap0[rows != cols] = start.gap
    ntk = start.ntk is not None
    program = Program((Loop(passes - 1, body, path),), m, "flat", (), ev.parameterization, ntk,
                      carry_gap)  # fmt: skip
    first = Program((Loop(1, body, path),), m, "flat", (), ev.parameterization, ntk, carry_gap)
    theta0 = None if not ntk else pack(np.asarray(start.ntk, float))
    with np.errstate(all="ignore"):
        once = run_until_fixed(first, pack(k), gap0, theta0)[0]
    again = _freeze(ev, steps, once[0][diag], False)
    if again is None or again[3] != settled:
        return None  # the first frozen pass left the settled variances: the evaluator goes on
    with np.errstate(all="ignore"):
        out, stopped = run_until_fixed(program, once[0], once[2], once[1])
    nngp = unpack(out[0], m, "flat")
    gap = out[2][rows != cols] if carry_gap else None
    mean = np.zeros(m)
    if last_phi is not None and last_phi[0].parity != -1:
        mean = np.full(m, ev.settled_mean(last_phi[0], last_phi[1], state.ctx))
    theta = unpack(out[1], m, "flat") if ntk else None
    realized = start.replace(nngp=nngp, ntk=theta, mean=mean, gap=gap)
    return realized, None if stopped is None else stopped + 1


def can_settle(graph: nx.DiGraph, state: KernelState) -> bool:
    """Whether the body's passes from this kind of state could run fused once its variances
    settle (a flat float64 state, a body that lowers after itself)."""
    flat = state.ctx.fast_float64 and state.mode == "flat" and not state.flattened
    return bool(flat and _body_steps(graph) is not None)


def _settled_boundary(state: KernelState) -> bool:
    """A flat float64 state whose (field) variances are equal to SETTLED: cheap to ask."""
    from workbench.theory.evaluate import SETTLED

    if not state.ctx.fast_float64 or state.mode != "flat" or state.flattened:
        return False
    kernel = state.nngp if state.phi is None else state.field_nngp
    q = np.diagonal(kernel).astype(float)
    lo, hi = SAFE_RANGE
    return bool(q.size and lo < q[0] < hi and np.abs(q - q[0]).max() <= SETTLED * q[0])


def _body_steps(graph: nx.DiGraph) -> tuple | None:
    """The body's steps, when it lowers after a weight layer and also after itself (kept
    in the graph's attributes: asked at every pass until the variances settle)."""
    if "settled_steps" not in graph.graph:
        steps, last = lower_graph(graph, "linear", "flat")
        if steps is not None and lower_graph(graph, last, "flat")[0] is None:
            steps = None
        graph.graph["settled_steps"] = None if steps is None else tuple(steps)
    return graph.graph["settled_steps"]


def _freeze(ev: Evaluator, steps: tuple, q: np.ndarray, want_gap: bool):
    """(the steps with every activation's dual frozen at its settled variance, whether the
    gap can be carried, (φ, q) of a final activation or None, the settled variances); None
    where a variance on the way has not settled at a q the evaluator has built interpolants
    at (only asked: a second visit of a q is what makes the evaluator build them)."""
    from workbench.precision import F64

    out, carry_gap, last_phi, settled_at = [], want_gap, None, []
    for step in steps:
        last_phi = None
        if isinstance(step, Linear):
            q = step.sigma_w2 * q + step.sigma_b2
            out.append(step)
            continue
        if step.dual is not None:  # a closed form: exact at any variance
            q = np.asarray(expect(step.activation, step.activation, q, q, q, F64), float)
            carry_gap = carry_gap and step.dual.pair_from_gap is not None
            out.append(step)
            continue
        learning, ev.learning = ev.learning, False  # asking must not count as a visit
        try:
            found = ev.interpolants_at(step.activation, q, F64)
        finally:
            ev.learning = learning
        if found is None:
            return None
        t, t_dot, settled = found
        gap_map = ev.frozen_gap_map(step.activation, settled) if carry_gap else None
        carry_gap = gap_map is not None
        out.append(replace(step, dual=_frozen_dual(t, t_dot, gap_map)))
        q = np.full_like(q, t.at_one)
        last_phi = (step.activation, settled)
        settled_at.append(settled)
    return tuple(out), carry_gap, last_phi, settled_at


def _frozen_dual(t, t_dot, gap_map) -> JointDual:
    """T and Ṫ (and the gap) frozen at a settled variance, in the program's dual interface:
    ``prepare`` keeps q, so g₁g₂ = q_a q_b and √(q_a q_a) = q_a exactly (c = 1 on the
    diagonal, as the evaluator sets it)."""

    def pair(gg, q12, out):
        c = q12 / np.sqrt(gg)
        values = t(c), t_dot(c)
        if out[0] is None:
            return values
        np.copyto(out[0], values[0])
        np.copyto(out[1], values[1])
        return out[0], out[1]

    def pair_from_gap(gg, q12, gap, out=None):  # fresh arrays (``out`` is not used)
        root = np.sqrt(gg)
        c = q12 / root
        return t(c), t_dot(c), gap_map(gap / root)

    return JointDual(unchanged, pair, 1.0, pair_from_gap if gap_map is not None else None)

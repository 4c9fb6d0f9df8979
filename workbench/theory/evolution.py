"""Layer-by-layer evolution of the kernel of a set of inputs through a fully-connected cycle
(pabari_zhou eqs. 3–7; xiao_bahri §2, eq. 2.2).

For inputs x_1 … x_n the pre-activation kernel of the first dense layer is
K⁰_ab = σ_w² x_a·x_b / d + σ_b², and each later step maps
K_ab ← σ_w² E[φ(u_a) φ(u_b)] + σ_b², (u_a, u_b) ~ N(0, K restricted to {a, b}).
The result records qˡ_a = Kˡ_aa and cˡ_ab = Kˡ_ab / √(qˡ_a qˡ_b) for every layer.

Speed (float64): once every variance sits on the fixed-point orbit (to rounding) the c-map
of each step no longer changes, so it is interpolated once — by Chebyshev series in
θ = arccos c, which keeps the (1 ∓ c)^{3/2} behaviour of kinked activations smooth, converged
to 1e-14 of its largest coefficient — and the interpolant carries the remaining layers. Before
that (or when it does not converge) every pair is integrated directly, vectorised. Once the
state repeats exactly under the interpolated maps, the later layers are that repetition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from workbench.errors import TheoryError
from workbench.gaussian import expect, expect_gram
from workbench.gaussian.interpolant import DualInterpolant
from workbench.precision import F64, Context
from workbench.theory.fc_maps import FCStep

FROZEN_TOLERANCE = 4 * np.finfo(float).eps


@dataclass
class KernelEvolution:
    """q[l, a] and the correlations c[l, p] of the pairs ``pairs[p] = (a, b)``, a < b, for
    layers l = 0 … depth (layer 0: the first dense layer's pre-activations)."""

    q: np.ndarray
    c: np.ndarray
    pairs: np.ndarray
    notes: list[str] = field(default_factory=list)

    @property
    def depth(self) -> int:
        return self.q.shape[0] - 1

    def correlation(self, layer: int) -> np.ndarray:
        """The n × n correlation matrix at ``layer``."""
        n = self.q.shape[1]
        out = np.eye(n)
        out[self.pairs[:, 0], self.pairs[:, 1]] = self.c[layer]
        out[self.pairs[:, 1], self.pairs[:, 0]] = self.c[layer]
        return out

    def to_dict(self, every: int = 1) -> dict:
        layers = list(range(0, self.depth + 1, every))
        if layers[-1] != self.depth:
            layers.append(self.depth)
        return {
            "layers": layers,
            "q": self.q[layers].tolist(),
            "c": [self.correlation(layer).tolist() for layer in layers],
            "notes": list(self.notes),
        }


def input_kernel(inputs: np.ndarray, sigma_w2: float, sigma_b2: float) -> np.ndarray:
    """K⁰ = σ_w² X Xᵀ / d + σ_b² for the rows of ``inputs`` (n × d)."""
    inputs = np.asarray(inputs, float)
    if inputs.ndim != 2 or not np.isfinite(inputs).all():
        raise TheoryError("inputs must be a finite 2-d array (one input per row)")
    return sigma_w2 * inputs @ inputs.T / inputs.shape[1] + sigma_b2


def _direct_step(step: FCStep, q: np.ndarray, pairs: np.ndarray, c: np.ndarray, ctx: Context):
    """One layer of eqs. 3–7 for every input and pair: in float64 the whole kernel's dual at
    once (the engine's ``expect_gram``: Mehler's expansion where it vouches for itself), at
    high precision each distinct covariance by the context's own rule."""
    sw2, sb2 = ctx.num(step.sigma_w2), ctx.num(step.sigma_b2)
    qa, qb = q[pairs[:, 0]], q[pairs[:, 1]]
    phi = step.phi
    if ctx.fast_float64 and (q > 0).all():
        root = np.sqrt(q)
        kernel = np.outer(root, root)
        kernel[pairs[:, 0], pairs[:, 1]] *= c
        kernel[pairs[:, 1], pairs[:, 0]] *= c
        dual = sw2 * expect_gram(phi, kernel[None])[0] + sb2
        q_new = np.diagonal(dual).copy()
        return q_new, dual[pairs[:, 0], pairs[:, 1]] / np.sqrt(
            q_new[pairs[:, 0]] * q_new[pairs[:, 1]]
        )

    def second_moment(q1, corr, q2):
        return sw2 * expect(phi, phi, q1, corr * (q1 * q2) ** 0.5, q2, ctx) + sb2

    q_new = ctx.elementwise(lambda v: sw2 * expect(phi, phi, v, v, v, ctx) + sb2, q)
    cov = ctx.elementwise(second_moment, qa, c, qb)
    norms = ctx.elementwise(lambda a, b: (a * b) ** 0.5, q_new[pairs[:, 0]], q_new[pairs[:, 1]])
    return q_new, cov / norms


def evolve_kernel(
    steps: Sequence[FCStep],
    kernel: np.ndarray,
    depth: int,
    ctx: Context = F64,
    progress: bool = False,
) -> KernelEvolution:
    """qˡ and cˡ for l = 0 … depth from the layer-0 kernel ``kernel`` (eqs. 3–7), stepping
    through the cycle ``steps`` (layer l applies steps[l mod len])."""
    from tqdm import tqdm

    kernel = np.asarray(kernel, ctx.dtype)
    n = kernel.shape[0]
    if kernel.shape != (n, n) or depth < 0:
        raise TheoryError("the kernel must be a square matrix and the depth non-negative")
    pairs = np.array([(a, b) for a in range(n) for b in range(a + 1, n)], dtype=int).reshape(-1, 2)
    q = np.empty((depth + 1, n), dtype=ctx.dtype)
    c = np.empty((depth + 1, len(pairs)), dtype=ctx.dtype)
    with ctx.active():
        q[0] = [ctx.num(v) for v in np.diag(kernel)]
        if (q[0] <= 0).any():
            raise TheoryError("every input needs a positive variance q⁰ (a non-zero input)")
        c[0] = [ctx.num(kernel[a, b]) / ctx.sqrt(q[0][a] * q[0][b]) for a, b in pairs] or np.empty(
            0
        )
    notes: list[str] = []
    interpolants: dict[int, DualInterpolant | None] = {}
    frozen_q: dict[int, float] = {}
    steps = _shortest_period(tuple(steps))
    cycle = len(steps)
    interpolated_run = 0  # consecutive layers done by the (deterministic) interpolants
    bar = tqdm(total=depth, desc="kernel evolution", disable=not progress, leave=False)
    for layer in range(depth):
        bar.update()
        j = layer % cycle
        interp = _frozen_interpolant(steps, j, q[layer], frozen_q, interpolants, notes, ctx)
        if interp is None:
            interpolated_run = 0
            q[layer + 1], c[layer + 1] = _direct_step(steps[j], q[layer], pairs, c[layer], ctx)
            if ctx.fast_float64:
                _update_frozen(frozen_q, q, layer, cycle)
            continue
        q_out = frozen_q[(j + 1) % cycle]
        q[layer + 1] = q_out
        sw2, sb2 = float(steps[j].sigma_w2), float(steps[j].sigma_b2)
        c[layer + 1] = (sw2 * interp(c[layer]) + sb2) / q_out
        interpolated_run += 1
        if interpolated_run >= cycle and np.array_equal(c[layer + 1], c[layer + 1 - cycle]):
            # the state repeats exactly under the same maps: every later layer repeats it too
            for later in range(layer + 2, depth + 1):
                q[later], c[later] = q[later - cycle], c[later - cycle]
            bar.update(depth - layer - 1)
            break
    bar.close()
    return KernelEvolution(q, c, pairs, notes)


def _shortest_period(steps: tuple[FCStep, ...]) -> tuple[FCStep, ...]:
    """The shortest p-step cycle that ``steps`` repeats (a spec unrolled layer by layer, e.g.
    10,001 equal steps, is a 1-step cycle), so the fixed-point orbit can freeze."""
    n = len(steps)
    for period in range(1, n):
        if n % period == 0 and steps == steps[:period] * (n // period):
            return steps[:period]
    return steps


def _frozen_interpolant(
    steps: Sequence[FCStep],
    j: int,
    q_in: np.ndarray,
    frozen_q: dict[int, float],
    interpolants: dict[int, DualInterpolant | None],
    notes: list[str],
    ctx: Context,
) -> DualInterpolant | None:
    """Step j's c-map interpolant once the variance orbit is frozen (float64 only); None when
    the layer must be integrated directly."""
    if not ctx.fast_float64 or j not in frozen_q or (j + 1) % len(steps) not in frozen_q:
        return None
    if not (q_in == q_in[0]).all():
        return None
    if j not in interpolants:
        interp = DualInterpolant(steps[j].phi, steps[j].phi, float(q_in[0]))
        interpolants[j] = interp if interp.ok else None
        if not interp.ok:
            notes.append(f"step {j}: c-map interpolant did not converge; integrated directly")
    return interpolants[j]


def _update_frozen(frozen_q: dict[int, float], q: np.ndarray, layer: int, cycle: int) -> None:
    """Freeze the variance orbit once a whole cycle reproduces itself to rounding: from then on
    qˡ is exactly periodic and every step's c-map is a fixed function of c."""
    if layer + 1 < cycle or frozen_q:
        return
    now, before = q[layer + 1], q[layer + 1 - cycle]
    spread = np.abs(now - now[0]).max()
    if spread <= FROZEN_TOLERANCE * now[0] and np.abs(now - before).max() <= (
        FROZEN_TOLERANCE * now[0]
    ):
        for k in range(cycle):
            q[layer + 1 - k] = q[layer + 1 - k][0]
            frozen_q[(layer + 1 - k) % cycle] = float(q[layer + 1 - k][0])

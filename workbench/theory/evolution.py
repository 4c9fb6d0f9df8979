"""Layer-by-layer evolution of the kernel of a set of inputs through a fully-connected cycle
(pabari_zhou eqs. 3–7; xiao_bahri §2, eq. 2.2).

For inputs x_1 … x_n the pre-activation kernel of the first dense layer is
K⁰_ab = σ_w² x_a·x_b / d + σ_b², and each later step maps
K_ab ← σ_w² E[φ(u_a) φ(u_b)] + σ_b², (u_a, u_b) ~ N(0, K restricted to {a, b}).
The result records qˡ_a = Kˡ_aa, cˡ_ab = Kˡ_ab / √(qˡ_a qˡ_b) and 1 − cˡ_ab for every layer.

Depth-safe (float64): the state of a pair is (q_a, q_b, s = 1 − c), never c alone, and each
layer maps s by the dual kernel's Cauchy–Schwarz gap (``gaussian.gap``): the activation's gap
G = √(T_aa T_bb) − T_ab from s without cancellation, then the weight layer's
G′ = σ_w² G + σ_w² σ_b² (√T_aa − √T_bb)²/(√(q′_a q′_b) + σ_w² √(T_aa T_bb) + σ_b²) and
s′ = G′/√(q′_a q′_b). So 1 − c keeps its relative accuracy at any depth (relu at the edge of
chaos: 1 − c = 4.4e-9 at l = 10⁵, every digit), which c itself cannot carry.

Speed (float64): once every variance sits on the fixed-point orbit (to rounding) the s-map of
each step no longer changes and is built once (``gap.GapMap``: closed forms, or the gap's
Taylor series in s near c = 1 and an angle interpolant elsewhere); it carries the remaining
layers. Once the state repeats exactly, the later layers are that repetition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from workbench.errors import TheoryError
from workbench.gaussian import expect
from workbench.gaussian.gap import GapMap, bias_gap, dual_gap, inner_product_gap
from workbench.precision import F64, Context
from workbench.theory.fc_maps import FCStep

FROZEN_TOLERANCE = 4 * np.finfo(float).eps


@dataclass
class KernelEvolution:
    """q[l, a], the correlations c[l, p] of the pairs ``pairs[p] = (a, b)``, a < b, and
    one_minus_c[l, p] = 1 − c[l, p] carried on its own (accurate where c rounds to 1), for
    layers l = 0 … depth (layer 0: the first dense layer's pre-activations)."""

    q: np.ndarray
    c: np.ndarray
    pairs: np.ndarray
    notes: list[str] = field(default_factory=list)
    one_minus_c: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.one_minus_c is None:
            self.one_minus_c = 1 - self.c

    @property
    def depth(self) -> int:
        return self.q.shape[0] - 1

    def correlation(self, layer: int) -> np.ndarray:
        """The n × n correlation matrix at ``layer``."""
        return self._square(self.c[layer], 1)

    def one_minus_correlation(self, layer: int) -> np.ndarray:
        """The n × n matrix of 1 − c at ``layer`` (0 on the diagonal)."""
        return self._square(self.one_minus_c[layer], 0)

    def _square(self, values: np.ndarray, diagonal: float) -> np.ndarray:
        n = self.q.shape[1]
        out = np.full((n, n), diagonal, dtype=np.asarray(values).dtype)
        out[self.pairs[:, 0], self.pairs[:, 1]] = values
        out[self.pairs[:, 1], self.pairs[:, 0]] = values
        return out

    def to_dict(self, every: int = 1) -> dict:
        layers = list(range(0, self.depth + 1, every))
        if layers[-1] != self.depth:
            layers.append(self.depth)
        return {
            "layers": layers,
            "q": self.q[layers].tolist(),
            "c": [self.correlation(layer).tolist() for layer in layers],
            "one_minus_c": [self.one_minus_correlation(layer).tolist() for layer in layers],
            "notes": list(self.notes),
        }


def input_kernel(inputs: np.ndarray, sigma_w2: float, sigma_b2: float) -> np.ndarray:
    """K⁰ = σ_w² X Xᵀ / d + σ_b² for the rows of ``inputs`` (n × d)."""
    inputs = _finite_rows(inputs)
    return sigma_w2 * inputs @ inputs.T / inputs.shape[1] + sigma_b2


def input_one_minus_c(inputs: np.ndarray, sigma_w2: float, sigma_b2: float) -> np.ndarray:
    """1 − c⁰_ab of K⁰ for every pair a < b (the order of ``evolve_kernel``'s pairs), without
    cancellation: the inputs' own gap ‖x_a‖‖x_b‖ − x_a·x_b (``gap.inner_product_gap``),
    scaled by σ_w²/d, plus the bias's Cauchy–Schwarz gap (``gap.bias_gap``), over
    √(q⁰_a q⁰_b)."""
    x = _finite_rows(inputs)
    n, d = x.shape
    pairs = _pairs(n)
    a, b = pairs[:, 0], pairs[:, 1]
    gap, spread = inner_product_gap(x, pairs)
    own = np.sum(x * x, axis=1) / d
    q = sigma_w2 * own + sigma_b2
    total = sigma_w2 * gap + bias_gap(own, pairs, sigma_w2, sigma_b2, spread)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nan_to_num(total / np.sqrt(q[a] * q[b]))


def _finite_rows(inputs: np.ndarray) -> np.ndarray:
    inputs = np.asarray(inputs, float)
    if inputs.ndim != 2 or not np.isfinite(inputs).all():
        raise TheoryError("inputs must be a finite 2-d array (one input per row)")
    return inputs


def _pairs(n: int) -> np.ndarray:
    return np.array([(a, b) for a in range(n) for b in range(a + 1, n)], dtype=int).reshape(-1, 2)


def _direct_step(step: FCStep, q: np.ndarray, pairs: np.ndarray, s: np.ndarray, ctx: Context):
    """One layer of eqs. 3–7 for every input and pair, (q, 1 − c) ↦ (q′, 1 − c′): in float64
    by the dual kernel's gap (``gaussian.gap``, depth-safe where the representation says so),
    at high precision by the context's own rule for each distinct covariance. Returns
    (q′, s′, representation)."""
    sw2, sb2 = ctx.num(step.sigma_w2), ctx.num(step.sigma_b2)
    phi = step.phi
    if ctx.fast_float64 and (q > 0).all():
        found = dual_gap(phi, q, pairs, s)
        q_new = sw2 * found.own + sb2
        gap = sw2 * found.gap + bias_gap(found.own, pairs, sw2, sb2)
        return q_new, gap / np.sqrt(q_new[pairs[:, 0]] * q_new[pairs[:, 1]]), found.representation
    qa, qb = q[pairs[:, 0]], q[pairs[:, 1]]

    def second_moment(q1, corr, q2):
        return sw2 * expect(phi, phi, q1, corr * (q1 * q2) ** 0.5, q2, ctx) + sb2

    q_new = ctx.elementwise(lambda v: sw2 * expect(phi, phi, v, v, v, ctx) + sb2, q)
    cov = ctx.elementwise(second_moment, qa, 1 - s, qb)
    norms = ctx.elementwise(lambda a, b: (a * b) ** 0.5, q_new[pairs[:, 0]], q_new[pairs[:, 1]])
    return q_new, 1 - cov / norms, ctx.describe()


def evolve_kernel(
    steps: Sequence[FCStep],
    kernel: np.ndarray,
    depth: int,
    ctx: Context = F64,
    progress: bool = False,
    one_minus_c: np.ndarray | None = None,
) -> KernelEvolution:
    """qˡ, cˡ and 1 − cˡ for l = 0 … depth from the layer-0 kernel ``kernel`` (eqs. 3–7),
    stepping through the cycle ``steps`` (layer l applies steps[l mod len]). ``one_minus_c``:
    1 − c⁰ of the pairs when known more accurately than from the kernel (``input_one_minus_c``).
    """
    from tqdm import tqdm

    kernel = np.asarray(kernel, ctx.dtype)
    n = kernel.shape[0]
    if kernel.shape != (n, n) or depth < 0:
        raise TheoryError("the kernel must be a square matrix and the depth non-negative")
    pairs = _pairs(n)
    q = np.empty((depth + 1, n), dtype=ctx.dtype)
    s = np.empty((depth + 1, len(pairs)), dtype=ctx.dtype)
    with ctx.active():
        q[0] = [ctx.num(v) for v in np.diag(kernel)]
        if (q[0] <= 0).any():
            raise TheoryError("every input needs a positive variance q⁰ (a non-zero input)")
        if one_minus_c is not None:
            s[0] = [ctx.num(v) for v in np.ravel(one_minus_c)]
        else:
            s[0] = [1 - ctx.num(kernel[a, b]) / ctx.sqrt(q[0][a] * q[0][b]) for a, b in pairs]
    notes: list[str] = []
    representations: set[str] = set()
    maps: dict[int, GapMap | None] = {}
    frozen_q: dict[int, float] = {}
    steps = _shortest_period(tuple(steps))
    cycle = len(steps)
    mapped_run = 0  # consecutive layers done by the (deterministic) frozen maps
    bar = tqdm(total=depth, desc="kernel evolution", disable=not progress, leave=False)
    for layer in range(depth):
        bar.update()
        j = layer % cycle
        gap_map = _frozen_map(steps, j, q[layer], frozen_q, maps, notes, ctx)
        if gap_map is None:
            mapped_run = 0
            q[layer + 1], s[layer + 1], used = _direct_step(steps[j], q[layer], pairs, s[layer],
                                                            ctx)  # fmt: skip
            representations.add(used)
            if ctx.fast_float64:
                _update_frozen(frozen_q, q, layer, cycle)
            continue
        representations.add(gap_map.representation)
        q_out = frozen_q[(j + 1) % cycle]
        q[layer + 1] = q_out
        s[layer + 1] = float(steps[j].sigma_w2) * gap_map(s[layer]) / q_out
        mapped_run += 1
        if mapped_run >= cycle and np.array_equal(s[layer + 1], s[layer + 1 - cycle]):
            # the state repeats exactly under the same maps: every later layer repeats it too
            for later in range(layer + 2, depth + 1):
                q[later], s[later] = q[later - cycle], s[later - cycle]
            bar.update(depth - layer - 1)
            break
    bar.close()
    notes.extend(_representation_notes(representations, steps))
    with ctx.active():
        c = 1 - s
    return KernelEvolution(q, c, pairs, notes, s)


def _representation_notes(used: set[str], steps: Sequence[FCStep]) -> list[str]:
    from workbench.gaussian.gap import DEPTH_SAFE

    kinds = ", ".join(sorted(used))
    if not used or used <= set(DEPTH_SAFE):
        return [f"1 - c carried depth-safely ({kinds})"] if used else []
    return [
        f"1 - c by the difference of moments for {', '.join(sorted({st.phi.name for st in steps}))}"
        ": not depth-safe where c rounds to 1 (no closed form or smooth expansion)"
    ]


def _shortest_period(steps: tuple[FCStep, ...]) -> tuple[FCStep, ...]:
    """The shortest p-step cycle that ``steps`` repeats (a spec unrolled layer by layer, e.g.
    10,001 equal steps, is a 1-step cycle), so the fixed-point orbit can freeze."""
    n = len(steps)
    for period in range(1, n):
        if n % period == 0 and steps == steps[:period] * (n // period):
            return steps[:period]
    return steps


def _frozen_map(
    steps: Sequence[FCStep],
    j: int,
    q_in: np.ndarray,
    frozen_q: dict[int, float],
    maps: dict[int, GapMap | None],
    notes: list[str],
    ctx: Context,
) -> GapMap | None:
    """Step j's s-map once the variance orbit is frozen (float64 only); None when the layer
    must be computed directly."""
    if not ctx.fast_float64 or j not in frozen_q or (j + 1) % len(steps) not in frozen_q:
        return None
    if not (q_in == q_in[0]).all():
        return None
    if j not in maps:
        gap_map = GapMap(steps[j].phi, float(q_in[0]))
        maps[j] = gap_map if gap_map.ok else None
        if not gap_map.ok:
            notes.append(f"step {j}: the frozen s-map did not converge; computed directly")
    return maps[j]


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

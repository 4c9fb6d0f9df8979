"""Batch normalisation: ``bn`` or ``bn {gamma?, beta?}`` (shape-preserving)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from workbench.errors import TheoryError, UnsupportedError
from workbench.nodes.base import NORMALISATION_SCHEMA, NodeBase, ParseContext
from workbench.spec.shapes import Shape
from workbench.spec.where import Where

if TYPE_CHECKING:
    from workbench.theory.backward import BackwardWalk, Cotangent
    from workbench.theory.evaluate import Evaluator, TapeEntry
    from workbench.theory.moments import Noise, NoiseWalk
    from workbench.theory.state import KernelState

KIND = "bn"
SENSITIVITY_ROLE = "batch_norm"  # its place in labatie2019's layers (theory.moments)
BARE = True
BATCH_STATISTICS = True  # its output depends on the batch (simulated: batch or fixed statistics)
ABSORBS_ACTIVATION = True  # its backward rule takes the φ′ of the activation after it
MIN_BATCH = 4  # the backward rule needs E[1/‖z‖²] < ∞: a centred batch spanning ≥ 3 dimensions
NEEDS_PIXEL_PAIRS = True
EXAMPLE = "bn: {gamma: 1.0, beta: 0.0}"
SCHEMA = NORMALISATION_SCHEMA


@dataclass(frozen=True)
class BatchNorm(NodeBase):
    """Batch normalisation over the batch (and pixels) per channel, then γ·x + β."""

    kind: ClassVar[str] = KIND
    gamma: float = 1.0
    beta: float = 0.0


def parse(value: object, where: Where, ctx: ParseContext, in_shape: Shape) -> BatchNorm:
    """Bare ``bn`` (value None) or a mapping of gamma/beta."""
    values = SCHEMA.read({} if value is None else value, where.at(KIND), f"write `{EXAMPLE}`")
    return BatchNorm(gamma=values["gamma"], beta=values["beta"], path=where.path, line=where.line)


def output_shape(node: BatchNorm, in_shape: Shape, where: Where) -> Shape:
    """Shape-preserving."""
    return tuple(in_shape)


def kernel(node: BatchNorm, state: KernelState, ev: Evaluator, attrs: dict) -> KernelState:
    """Batch norm over the m inputs (and pixels) in the wide limit (mean_field_batchnorm §3).
    Each channel's batch vector h ~ N(0, K) is centred (G, over the batch and pixels) and
    divided by its own batch standard deviation, so with N samples
    K_bn = γ² N E[z zᵀ/‖z‖²] + β², z ~ N(0, G K G) — exact for any batch (the engine's
    ``expect_normalized_outer``). For equicorrelated inputs it is γ² G/(tr G/N) + β²: unit
    variance and no correlation between distinct inputs at large N, Claims 6.1/6.3.
    NTK (approximation, stated): Θ_bn = γ² G Θ G / (tr(G K G)/N), i.e. the variance's own
    derivative and its fluctuations are ignored. An activation after it treats the output as
    Gaussian with mean β and covariance K_bn − β² (the paper's approximation, eqs. 56–57;
    each channel's batch vector really lies on a sphere, and the error falls like 1/N: ~10%
    at N = 5, ~1% at N = 60 in the tests). Spatial batch norm needs the full mode."""
    from workbench.gaussian import expect_normalized_outer

    if state.flattened:
        raise UnsupportedError(
            f"{node.path}: a bn right after a flatten is not supported",
            hint="put a dense layer between the flatten and it",
        )
    state = ev.realized(state)
    if state.mode == "diagonal":
        raise UnsupportedError(f"{node.path}: spatial batch norm needs the full kernel mode")
    if ev.normalization == "population":
        return _population(node, state)
    state.ctx.require_float64(f"{node.path}: batch norm kernels")
    size = state.m * state.pixels
    centre = np.eye(size) - 1.0 / size
    kernel = centre @ state.as_matrices(state.nngp)[0] @ centre
    scale = np.trace(kernel) / size
    if scale <= 0:
        raise TheoryError(f"{node.path}: the batch has no variance to normalise")
    normalised = node.gamma**2 * size * expect_normalized_outer(kernel) + node.beta**2
    nngp = state.from_matrices(normalised[None])
    ntk = None
    if state.ntk is not None:
        theta = node.gamma**2 * centre @ state.as_matrices(state.ntk)[0] @ centre / scale
        ntk = state.from_matrices(theta[None])
        state = state.noted(
            f"{node.path}: the NTK through batch norm ignores the derivative of the batch "
            "variance (approximation)"
        )
    return state.replace(nngp=nngp, ntk=ntk, mean=np.full_like(state.mean, node.beta))


def population_statistics(node: BatchNorm, state: KernelState) -> tuple[Any, Any]:
    """(μ², s²) of every channel over the data distribution (mean_field_batchnorm eqs. 14–15)
    whose exchangeable representatives are the state's m ≥ 2 inputs: in the wide limit each
    unit's mean μ_i is the same linear readout of the data for every input, so E_i μ_i² is the
    covariance of distinct inputs (the mean over input pairs a ≠ b, and pixel pairs), and
    s² = q − μ² (the mean own variance)."""
    if state.m < 2:
        raise UnsupportedError(
            f"{node.path}: population statistics need at least two representative inputs",
            hint="the data model takes a pair of independent inputs",
        )
    k = state.as_matrices(state.nngp)[0]
    m, n = state.m, state.pixels
    blocks = k.reshape(m, n, m, n)
    rows, cols = np.triu_indices(m, 1)
    mean2 = np.mean([np.mean(blocks[a, :, b, :]) for a, b in zip(rows, cols)])
    own = np.mean([np.mean(np.diagonal(blocks[a, :, a, :])) for a in range(m)])
    spread = own - mean2
    if not spread > 0:
        raise TheoryError(f"{node.path}: the data distribution has no variance to normalise")
    return mean2, spread


def _population(node: BatchNorm, state: KernelState) -> KernelState:
    """The paper's model (mean_field_batchnorm eqs. 13–16; Claims 6.3, 6.5): statistics of the
    data distribution, constants of the initialised network: K_bn = γ² (K − μ²)/s² + β²,
    Θ_bn = γ² Θ/s², mean β (an activation after it sees a Gaussian field of mean β)."""
    mean2, spread = population_statistics(node, state)
    gamma2 = state.ctx.num(node.gamma) ** 2
    nngp = gamma2 * (state.nngp - mean2) / spread + state.ctx.num(node.beta) ** 2
    ntk = None if state.ntk is None else gamma2 * state.ntk / spread
    return state.replace(nngp=nngp, ntk=ntk, mean=np.full_like(state.mean, node.beta))


def backward(node: BatchNorm, cot: Cotangent, walk: BackwardWalk, entry: TapeEntry,
             suffix: str) -> Cotangent:  # fmt: skip
    """Per channel, y = γ ẑ + β with ẑ = √N z/‖z‖ and z = C h the batch-centred vector (C the
    centring over the N = inputs × pixels of the batch), z ~ N(0, C K C). Under gradient
    independence (δ_y independent of z; mean_field_batchnorm eqs. 19–22 take the same step):

    * ``batch`` statistics (what torch's training mode differentiates): ∂ẑ/∂h = (√N/‖z‖) P,
      P = C − zzᵀ/‖z‖², so G̃_h = γ² N E[P G̃_y P/‖z‖²] (``expect_projected``);
    * ``fixed`` statistics (constants of the network): δ_h = γ δ_y √N/‖z‖, so
      G̃_h = γ² N E[1/‖z‖²] G̃_y (``expect_inverse_norm``).

    Both are exact for any batch of rank ≥ 3 (derived here; the paper states the fixed case
    for its i.i.d. data model, where ‖z‖²/N concentrates at the variance). Under the
    evaluator's ``population`` normalisation (the paper's model) s is a constant:
    G̃_h = γ² G̃_y/s² (Claims 6.4, 6.6)."""
    from workbench.gaussian.batch import (
        expect_inverse_norm,
        expect_projected,
        sample_gated_projection,
    )

    inp = walk.realized(entry)
    if walk.ev.normalization == "population":  # δ_h = γ δ_y / s with s a constant
        spread = walk.once(entry, "spread", lambda: population_statistics(node, inp)[1])
        return replace(cot, grad=walk.ctx.num(node.gamma) ** 2 * cot.grad / spread)
    walk.ctx.require_float64(f"{node.path}: the backward rule of batch norm")
    size = inp.m * inp.pixels
    centre = np.eye(size) - 1.0 / size
    cov = centre @ inp.as_matrices(inp.nngp)[0] @ centre
    grad = inp.as_matrices(cot.grad)[0]
    scale = node.gamma**2 * size
    batch = walk.bn_statistics == "batch"
    try:
        if cot.pending is not None:  # φ′ of the activation after it gates the same ẑ
            slope = cot.pending.phi.derivative().numpy
            gamma = node.gamma
            mean, error = sample_gated_projection(
                cov, grad, centre, lambda z: slope(gamma * z), batch
            )
            back = scale * mean
            walk.sampled(f"{node.path}: the backward map of batch norm and the activation "
                         f"after it is sampled over batch vectors (relative standard error "
                         f"{error:.1e}; seeded, so reruns agree)")  # fmt: skip
        elif batch:
            back = scale * expect_projected(cov, grad, centre)
        else:
            back = scale * expect_inverse_norm(cov) * grad
    except TheoryError as exc:
        raise TheoryError(f"{node.path}: {exc.message}", hint=exc.hint) from None
    return replace(cot, grad=inp.from_matrices(back[None]), pending=None)


def noise(node: BatchNorm, noise: Noise, walk: NoiseWalk, entry: TapeEntry,
          suffix: str) -> Noise:  # fmt: skip
    """labatie2019 eqs. 9–10 in the paper's test mode (statistics are constants):
    dz = γ dy/s_c with s_c² = ‖z‖²/N the channel's variance over the N samples (inputs ×
    pixels), z ~ N(0, C K C) in the wide limit. dy is independent of z (mean-zero weights), so
    n_z = γ² N E[1/‖z‖²] n_y (``expect_inverse_norm``, exact for rank ≥ 3), and
    δ_BN χ = (E‖z‖² · E[1/‖z‖²])^{1/2} ≥ 1 by Jensen — Theorem 3's exp m_BN with the noise
    well conditioned (derived here: the paper's channel-wise μ₂,c(dy) concentrates at
    σ_w² μ₂(dx)). That needs the fan-in of the layer before it far above the batch's rank —
    true of hidden layers in the wide limit, not of a batch norm right after a small input
    layer, whose δ_BN χ is then lower (measured: 1.013 against 1.034 for 32 inputs of
    dimension 64; 1.032 at dimension 512). Under the population model s is a constant:
    n_z = γ² n_y/s²."""
    from workbench.gaussian.batch import expect_inverse_norm

    def factor() -> Any:
        inp = walk.realized(entry.inp)
        if walk.ev.normalization == "population":
            return walk.ctx.num(node.gamma) ** 2 / population_statistics(node, inp)[1]
        walk.ctx.require_float64(f"{node.path}: the noise through batch norm")
        size = inp.m * inp.pixels
        centre = np.eye(size) - 1.0 / size
        cov = centre @ inp.as_matrices(inp.nngp)[0] @ centre
        try:
            return node.gamma**2 * size * expect_inverse_norm(cov)
        except TheoryError as exc:
            raise TheoryError(f"{node.path}: {exc.message}", hint=exc.hint) from None

    return replace(noise, n=walk.once(entry, "inverse_norm", factor) * noise.n, field=None)


def torch_module(node: BatchNorm, in_shape: Shape, build: Any, suffix: str) -> tuple[Any, Shape]:
    """Batch statistics per member and channel (over the batch and pixels), then γ·x + β."""
    from workbench.sim.layers import BatchNormLayer

    fixed = build.bn_statistics == "fixed"
    return BatchNormLayer(node.gamma, node.beta, node.path + suffix, fixed), tuple(in_shape)


def symbolic(node: BatchNorm, phi: Any, attrs: dict) -> tuple[dict, Any]:
    """mean_field_batchnorm §3: K_bn = γ² N E[z_a z_b/‖z‖²] + β², z ~ N(0, G K G) over a
    batch of N (inputs × pixels). For an exchangeable (equicorrelated) batch the centred z
    sums to zero, so E[z_a²/‖z‖²] = 1/N and E[z_a z_b/‖z‖²] = −1/(N(N − 1)) exactly:
    q_bn = γ² + β² and K_bn,ab = β² − γ²/(N − 1) (derived here; Claims 6.1/6.3 are the
    N → ∞ limit after a relu). Backward (``backward``): P = C − zzᵀ/‖z‖² through the batch
    statistics, or 1/‖z‖² alone with them fixed."""
    import sympy as sp

    from workbench import notation as n
    from workbench.gaussian.symbolic import number

    gamma, beta = number(node.gamma), number(node.beta)
    batch = sp.Symbol("N", positive=True, integer=True)
    ratio = sp.Function(r"\mathbb{E}\left[z_a z_b / \|z\|^2\right]")(n.K)
    rules = {
        "nngp": sp.Eq(n.K_out, gamma**2 * batch * ratio + beta**2),
        "q_equicorrelated": sp.Eq(sp.Symbol("q_{bn}"), gamma**2 + beta**2),
        "nngp_equicorrelated": sp.Eq(n.K_out, beta**2 - gamma**2 / (batch - 1)),
        "backward": sp.Eq(
            n.G_in,
            gamma**2
            * batch
            * sp.Function(r"\mathbb{E}\left[P \tilde{G}^{l+1} P / \|z\|^2\right]")(n.K),
        ),
        "noise": sp.Eq(
            n.n_out,
            gamma**2 * batch * sp.Function(r"\mathbb{E}\left[1 / \|z\|^2\right]")(n.K) * n.n_in,
        ),
        "backward_fixed": sp.Eq(
            n.G_in,
            gamma**2 * batch * sp.Function(r"\mathbb{E}\left[1 / \|z\|^2\right]")(n.K) * n.G_out,
        ),
    }
    return rules, None

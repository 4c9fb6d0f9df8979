"""Fully connected layer: ``dense {width, sigma_w2?, sigma_b2?, init?}`` on a flat input."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from workbench.errors import UnsupportedError
from workbench.nodes.base import NodeBase, ParseContext, WeightMap
from workbench.spec import fields
from workbench.spec.shapes import Shape, show_shape
from workbench.spec.where import Where

if TYPE_CHECKING:
    from workbench.theory.backward import BackwardWalk, Cotangent
    from workbench.theory.evaluate import Evaluator, TapeEntry
    from workbench.theory.moments import Noise, NoiseWalk
    from workbench.theory.state import KernelState

KIND = "dense"
BARE = False
EXAMPLE = "dense: {width: 512}"
INITS = ("gaussian", "orthogonal")
HAS_WEIGHTS = True
SCHEMA = fields.Schema(
    {
        "width": fields.Key(fields.positive_int, doc="number of output units"),
        "sigma_w2": fields.Key(fields.positive_real, None, "weight variance (else defaults)"),
        "sigma_b2": fields.Key(fields.nonnegative_real, None, "bias variance (else defaults)"),
        "init": fields.Key(fields.choice(*INITS), "gaussian", "weight distribution"),
    }
)


@dataclass(frozen=True)
class Dense(NodeBase):
    """A fully connected layer: W ~ N(0, σ_w²/fan_in) (or scaled orthogonal), b ~ N(0, σ_b²)."""

    kind: ClassVar[str] = KIND
    width: int
    sigma_w2: float
    sigma_b2: float
    init: str = "gaussian"  # gaussian | orthogonal


def parse(value: object, where: Where, ctx: ParseContext, in_shape: Shape) -> Dense:
    """Validate ``value`` (the mapping under ``dense``) and build the node."""
    at = where.at(KIND)
    values = SCHEMA.read(value, at, hint=f"write `{EXAMPLE}`")
    sigma_w2, sigma_b2 = fields.weight_variances(values, at, ctx.defaults)
    return Dense(
        width=values["width"],
        sigma_w2=sigma_w2,
        sigma_b2=sigma_b2,
        init=values["init"],
        path=where.path,
        line=where.line,
    )


def output_shape(node: Dense, in_shape: Shape, where: Where) -> Shape:
    """(C,) -> (width,); a spatial input is an error."""
    if len(in_shape) != 1:
        raise where.error(
            f"dense needs a flat input (C,), but its input has shape {show_shape(in_shape)}",
            "insert `- flatten` or `- pool: global_avg` before this layer",
        )
    return (node.width,)


# --- kernel rule --------------------------------------------------------------------------


def kernel(node: Dense, state: KernelState, ev: Evaluator, attrs: dict) -> KernelState:
    """xiao_bahri eq. 6 on flat features (flattened ones are averaged over pixels first)."""
    state = ev.flat(state)
    if state.mode != "flat":
        raise UnsupportedError(f"{node.path}: dense after a spatial layer needs a flatten")
    return weight_layer(state, node.sigma_w2, node.sigma_b2, node.width, ev.parameterization)


def weight_layer(
    state: KernelState,
    sigma_w2: float,
    sigma_b2: float,
    channels: int,
    parameterization: str,
    mix: Callable[[np.ndarray], np.ndarray] = lambda k: k,
    plain: Callable[[np.ndarray], np.ndarray] = lambda k: k,
) -> KernelState:
    """A weight layer's update, both parameterisations (xiao_bahri eqs. 6 and 31):
    K' = σ_w² A(K) + σ_b²; Θ' = K' + σ_w² A(Θ) (``ntk``) or fan_in·P(K) + 1 + σ_w² A(Θ)
    (``standard``: gradients w.r.t. W itself). Dense: A = P = identity; conv: A = A_v ⋆
    (the variance-weighted tap sum) and P the plain tap sum."""
    sigma_w2, sigma_b2 = state.ctx.num(sigma_w2), state.ctx.num(sigma_b2)  # exact under --digits
    nngp = sigma_w2 * mix(state.nngp) + sigma_b2
    ntk = None
    if state.ntk is not None:
        theta = sigma_w2 * mix(state.ntk)
        if parameterization == "ntk":
            ntk = nngp + theta
        else:
            ntk = state.channels * plain(state.nngp) + 1.0 + theta
    gap = None
    if state.gap is not None and state.mode == "flat":  # G′ = σ_w² G + the bias's gap
        from workbench.gaussian.gap import bias_gap

        gap = sigma_w2 * state.gap
        own = np.diagonal(state.nngp).astype(float)
        if own.min() != own.max():  # equal variances add no gap
            pairs = np.stack(np.triu_indices(state.m, 1), axis=1)
            gap = gap + bias_gap(own, pairs, float(sigma_w2), float(sigma_b2))
    return state.replace(nngp=nngp, ntk=ntk, mean=np.zeros_like(state.mean), channels=channels,
                         gap=gap)  # fmt: skip


def backward(node: Dense, cot: Cotangent, walk: BackwardWalk, entry: TapeEntry,
             suffix: str) -> Cotangent:  # fmt: skip
    """xiao2018 eq. 2.15 (mean_field_batchnorm eq. 19): δ_x = Wᵀ δ_h, so the unit-summed
    gradient second moments map by G̃_x = σ_w² G̃_h whatever the fan ratio. Flattened inputs
    receive it spread evenly over their pixels and uncorrelated between them (distinct
    weights). Records E‖∂L/∂W‖² = fan_in Σ_ab G̃_h,ab K̂_ab (K̂ the realized input)."""
    grad = cot.grad
    realized = walk.realized(entry, flat=True)
    walk.weight(node, suffix, cot, realized.channels * realized.nngp, entry.out, realized.channels)
    back = walk.ctx.num(node.sigma_w2) * grad
    inp = entry.inp
    if inp.flattened:  # (m, m) → (m, m, *S): the same-pixel layout of the flattened features
        back = np.broadcast_to(
            back.reshape(*back.shape, *[1] * len(inp.spatial)),
            inp.nngp.shape if inp.phi is None else inp.field_nngp.shape,
        )
        back = back / walk.ctx.num(inp.pixels)  # fmt: skip
    return replace(cot, grad=back)


def noise(node: Dense, noise: Noise, walk: NoiseWalk, entry: TapeEntry, suffix: str) -> Noise:
    """labatie2019 eq. 1: dy = W dx with W_ij ~ N(0, σ_w²/fan_in), so every output unit's
    noise is n_y,a = σ_w² times the mean noise of input a's units (and pixels, for flattened
    features)."""
    n = noise.n
    if n.ndim > 1:
        n = n.reshape(n.shape[0], -1).sum(axis=1) / walk.ctx.num(n[0].size)
    return replace(noise, n=walk.ctx.num(node.sigma_w2) * n, field=None)


def lower(node: Dense, attrs: dict, last: str, mode: str) -> tuple[list | None, str]:
    """The fused program's step (``kernel_program``): a Linear on flat features."""
    from workbench.theory.kernel_program import Linear

    if len(attrs["in_shape"]) != 1:
        return None, last
    return [Linear(node.sigma_w2, node.sigma_b2, attrs["in_shape"][0])], "linear"


# --- torch module -------------------------------------------------------------------------


def torch_module(node: Dense, in_shape: Shape, build: Any, suffix: str) -> tuple[Any, Shape]:
    """E members' W x + b: W ~ N(0, σ_w²/fan_in) or ``scaled_orthogonal`` (σ_w² per output
    unit at any fan ratio), b ~ N(0, σ_b²); the simulated width may override the spec's."""
    from workbench.sim.init import scaled_orthogonal
    from workbench.sim.layers import DenseLayer

    e, fan_in, width = build.ensemble, in_shape[0], build.size(node, node.width)
    if node.init == "orthogonal":
        weight = scaled_orthogonal(
            width, fan_in, node.sigma_w2, build.generator, e, build.dtype, build.device
        )
    else:
        weight = build.randn(e, width, fan_in).mul_((node.sigma_w2 / fan_in) ** 0.5)
    bias = build.randn(e, width) * node.sigma_b2**0.5
    scales = {"weight": node.sigma_w2 / fan_in, "bias": node.sigma_b2}
    return DenseLayer(weight, bias, scales, node.path + suffix), (width,)


def fc_map(node: Dense) -> WeightMap:
    """pabari_zhou eq. 3: q' = σ_w² E[φ(u)²] + σ_b² with φ from the preceding acts."""
    return WeightMap(node.sigma_w2, node.sigma_b2)


# --- symbolic rule ------------------------------------------------------------------------


def symbolic(node: Dense, phi: Any, attrs: dict) -> tuple[dict, Any]:
    """The recursions this layer applies to its input φ(h) (φ the pending activation, None for
    the identity), with the spec's numbers: xiao_bahri eq. 6 (NNGP, NTK in both
    parameterisations), pabari_zhou eqs. 3, 5–8 (q-map, c-map, χ₁) and the backward map
    G̃ˡ = σ_w² G̃ˡ⁺¹ with its per-unit form q̃ˡ = q̃ˡ⁺¹ σ_w² E[φ′(h)²] (xiao2018 eq. 2.15; the
    φ′ factor is the activation's own backward rule), the weight-gradient norm and the input
    noise's second moments nˡ⁺¹ = σ_w² nˡ (labatie2019 eq. 1, per input; ``noise``)."""
    return weight_layer_symbolic(node.sigma_w2, node.sigma_b2, attrs["in_shape"][0], phi), None


def weight_layer_symbolic(sigma_w2: Any, sigma_b2: Any, fan_in: int, phi: Any) -> dict:
    """``weight_layer``'s update and the FC maps as sympy equations (see ``symbolic``)."""
    import sympy as sp

    from workbench import notation as n
    from workbench.activations import IDENTITY
    from workbench.gaussian.symbolic import number, symbolic_expect

    phi = phi or IDENTITY
    d = phi.derivative()
    sw2, sb2 = number(sigma_w2), number(sigma_b2)
    t, t_dot = (symbolic_expect(f, f, n.q_a, n.K, n.q_b) for f in (phi, d))
    return {
        "nngp": sp.Eq(n.K_next, sw2 * t + sb2),
        "ntk": sp.Eq(n.Theta_next, n.K_next + sw2 * t_dot * n.Theta),
        "ntk_standard": sp.Eq(n.Theta_next, fan_in * t + 1 + sw2 * t_dot * n.Theta),
        "q_map": sp.Eq(n.q_next, sw2 * symbolic_expect(phi, phi, n.q, n.q, n.q) + sb2),
        "c_map": sp.Eq(
            n.c_next, (sw2 * symbolic_expect(phi, phi, n.q, n.c * n.q, n.q) + sb2) / n.q_next
        ),
        "chi_1": sp.Eq(n.chi_1, sw2 * symbolic_expect(d, d, n.q, n.q, n.q)),
        "backward": sp.Eq(n.G_in, sw2 * n.G_out),
        "q_tilde_map": sp.Eq(
            n.q_tilde, n.q_tilde_next * sw2 * symbolic_expect(d, d, n.q, n.q, n.q)
        ),
        "weight_gradient": sp.Eq(n.grad_w, fan_in * sp.Sum(n.G_out * t, *n.input_pairs)),
        "noise": sp.Eq(n.n_out, sw2 * n.n_in),
    }

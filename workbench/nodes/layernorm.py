"""Layer normalisation: ``layernorm`` or ``layernorm {gamma?, beta?}`` (shape-preserving).

Each input is normalised over its own features: over the channels at every pixel of a spatial
input (neural-tangents' LayerNorm over the channel axis), over all features of a flat or
flattened one; then γ·x + β. Unlike batch norm nothing is shared between inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from workbench.errors import TheoryError
from workbench.nodes.base import NORMALISATION_SCHEMA, NodeBase, ParseContext
from workbench.spec.shapes import Shape
from workbench.spec.where import Where

if TYPE_CHECKING:
    from workbench.theory.backward import BackwardWalk, Cotangent
    from workbench.theory.evaluate import Evaluator, TapeEntry
    from workbench.theory.moments import Noise, NoiseWalk
    from workbench.theory.state import KernelState

KIND = "layernorm"
BARE = True
EXAMPLE = "layernorm: {gamma: 1.0, beta: 0.0}"
SCHEMA = NORMALISATION_SCHEMA
EPS = 1e-12  # guards a zero feature variance in the simulator only


@dataclass(frozen=True)
class LayerNorm(NodeBase):
    """Per-input normalisation over the features, then γ·x + β."""

    kind: ClassVar[str] = KIND
    gamma: float = 1.0
    beta: float = 0.0


def parse(value: object, where: Where, ctx: ParseContext, in_shape: Shape) -> LayerNorm:
    """Bare ``layernorm`` (value None) or a mapping of gamma/beta."""
    values = SCHEMA.read({} if value is None else value, where.at(KIND), f"write `{EXAMPLE}`")
    return LayerNorm(values["gamma"], values["beta"], path=where.path, line=where.line)


def output_shape(node: LayerNorm, in_shape: Shape, where: Where) -> Shape:
    """Shape-preserving."""
    return tuple(in_shape)


def kernel(node: LayerNorm, state: KernelState, ev: Evaluator, attrs: dict) -> KernelState:
    """The wide-limit rule. Over N → ∞ features the feature mean of input a (at pixel α) is
    its mean m_a and the feature variance v_a = K_aa − m_a² (law of large numbers), so
    y_a = γ (x_a − m_a)/√v_a + β exactly and
    K_y,ab = γ² (K_ab − m_a m_b)/√(v_a v_b) + β², Θ_y,ab = γ² Θ_ab/√(v_a v_b)
    (the normaliser's own gradient moves one direction of N: O(1/N)); the output mean is β.
    Flattened features are normalised over all their pixels at once."""
    state = ev.realized(state)
    mean, spread = _spreads(state)
    norm = _inverse_spreads(node, state, spread)
    centred = state.nngp - state.outer_mean(mean, mean)
    nngp = node.gamma**2 * centred * norm + node.beta**2
    ntk = None if state.ntk is None else node.gamma**2 * state.ntk * norm
    out_mean = np.full(state.mean.shape, node.beta, dtype=state.mean.dtype)
    return state.replace(nngp=nngp, ntk=ntk, mean=out_mean)


def _spreads(state: KernelState) -> tuple[np.ndarray, np.ndarray]:
    """(feature means, feature variances v_a) per input (and pixel); flattened features are
    normalised over all their (channel, pixel) features at once."""
    m = state.m
    own = state.own_variances(state.nngp)  # (m,) or (m, *S)
    mean = state.mean
    if not state.flattened:
        return mean, own - mean * mean
    first = mean.reshape(m, -1).mean(axis=1)
    second = own.reshape(m, -1).mean(axis=1)  # own: the second moments K_aa(α)
    mean = np.broadcast_to(first.reshape(m, *[1] * (mean.ndim - 1)), mean.shape)
    spread = np.broadcast_to((second - first * first).reshape(m, *[1] * (own.ndim - 1)),
                             own.shape)  # fmt: skip
    return mean, spread


def _inverse_spreads(node: LayerNorm, state: KernelState, spread: np.ndarray) -> np.ndarray:
    """1/√(v_a v_b) laid out like a kernel."""
    if not (np.asarray(spread, float) > 0).all():
        raise TheoryError(f"{node.path}: an input has no feature variance to normalise")
    scale = state.ctx.elementwise(lambda v: 1 / v**0.5, spread)
    return state.outer_mean(scale, scale)


def backward(node: LayerNorm, cot: Cotangent, walk: BackwardWalk, entry: TapeEntry,
             suffix: str) -> Cotangent:  # fmt: skip
    """δ_x,a = γ δ_y,a/√v_a: G̃_x,ab = γ² G̃_y,ab/√(v_a v_b), the same factor as the NTK's
    (the normaliser's own gradient removes the mean and one direction of N: O(1/N))."""
    inp = walk.realized(entry)
    norm = walk.once(entry, "norm", lambda: _inverse_spreads(node, inp, _spreads(inp)[1]))
    return replace(cot, grad=walk.ctx.num(node.gamma) ** 2 * norm * cot.grad)


def noise(node: LayerNorm, noise: Noise, walk: NoiseWalk, entry: TapeEntry,
          suffix: str) -> Noise:  # fmt: skip
    """y_a = γ (x_a − m_a)/√v_a + β over the N features; the normaliser's own derivative
    moves O(1/N) of the noise, so n_y = γ² n_x / v_a (the backward rule's factor on the
    diagonal)."""
    spread = walk.once(entry, "spread", lambda: _spreads(walk.realized(entry.inp))[1])
    if not (np.asarray(spread, float) > 0).all():
        raise TheoryError(f"{node.path}: an input has no feature variance to normalise")
    return replace(noise, n=walk.ctx.num(node.gamma) ** 2 * noise.n / spread, field=None)


def symbolic(node: LayerNorm, phi: Any, attrs: dict) -> tuple[dict, Any]:
    """K_y = γ² (K_ab − m_a m_b)/√((q_a − m_a²)(q_b − m_b²)) + β², Θ_y = γ² Θ_ab/√(…), and
    backward G̃_x = γ² G̃_y/√(…), the input noise n_y = γ² n_x/(q_a − m_a²)."""
    import sympy as sp

    from workbench import notation as n
    from workbench.gaussian.symbolic import number

    gamma, beta = number(node.gamma), number(node.beta)
    norm = sp.sqrt((n.q_a - n.m_x**2) * (n.q_b - n.m_x2**2))
    rules = {
        "nngp": sp.Eq(n.K_out, gamma**2 * (n.K - n.m_x * n.m_x2) / norm + beta**2),
        "ntk": sp.Eq(n.Theta_out, gamma**2 * n.Theta / norm),
        "backward": sp.Eq(n.G_in, gamma**2 * n.G_out / norm),
        "noise": sp.Eq(n.n_out, gamma**2 * n.n_in / (n.q_a - n.m_x**2)),
    }
    return rules, None


def torch_module(node: LayerNorm, in_shape: Shape, build: Any, suffix: str) -> tuple[Any, Shape]:
    """Each input normalised over its channels (at every pixel), then γ·x + β."""
    from workbench.sim.layers import LayerNormLayer

    return LayerNormLayer(node.gamma, node.beta, EPS, node.path + suffix), tuple(in_shape)

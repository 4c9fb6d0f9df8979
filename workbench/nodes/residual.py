"""Residual block: ``residual {body, scale?}`` computes x + scale * body(x)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

from workbench.errors import UnsupportedError
from workbench.nodes.base import (
    NodeBase,
    ParseContext,
    chain_shape,
    flat_nodes,
    module_of,
    require_same_shape,
)
from workbench.spec import fields
from workbench.spec.shapes import Shape
from workbench.spec.where import Where

if TYPE_CHECKING:
    from workbench.theory.backward import BackwardWalk, Cotangent
    from workbench.theory.evaluate import Evaluator, TapeEntry
    from workbench.theory.moments import Noise, NoiseWalk
    from workbench.theory.state import KernelState

KIND = "residual"
SENSITIVITY_ROLE = "sum"  # its place in labatie2019's layers (theory.moments)
BARE = False
EXAMPLE = "residual: {body: [{dense: {width: 512}}, {act: relu}]}"
SCHEMA = fields.Schema(
    {
        "body": fields.Key(lambda v, w: v, doc="list of layers (non-empty, shape-preserving)"),
        "scale": fields.Key(fields.real, 1.0, "weight of the body branch"),
    }
)


@dataclass(frozen=True)
class Residual(NodeBase):
    """x + scale · body(x)."""

    kind: ClassVar[str] = KIND
    body: tuple[NodeBase, ...]
    scale: float = 1.0


def parse(value: object, where: Where, ctx: ParseContext, in_shape: Shape) -> Residual:
    """Validate the keys, then parse the body against this block's input shape."""
    at = where.at(KIND)
    values = SCHEMA.read(value, at, hint=f"write `{EXAMPLE}`")
    body_at = at.at("body")
    body, out = ctx.body(values["body"], body_at, in_shape)
    require_same_shape(KIND, in_shape, out, body_at)
    return Residual(body=body, scale=values["scale"], path=where.path, line=where.line)


def output_shape(node: Residual, in_shape: Shape, where: Where) -> Shape:
    """The body must map the input shape to itself; so does the block."""
    require_same_shape(KIND, in_shape, chain_shape(node.body, in_shape, where.file), where)
    return tuple(in_shape)


def kernel(node: Residual, state: KernelState, ev: Evaluator, attrs: dict) -> KernelState:
    """y = x + s·b(x): K_y = K_x + s (m_x m_bᵀ + m_b m_xᵀ) + s² K_b, because the body's last
    weights make b_i independent of x_i in the wide limit, so E[x_i b_i] = m_x m_b. The NTK:
    gradients through the skip and the body, Θ_y = Θ_x + s² Θ_b with Θ_b propagated from Θ_x
    (its J_b Θ_x J_bᵀ part); the skip-body cross terms ⟨∂x_i, (J_b ∂x)_i⟩ average the diagonal
    of the body's Jacobian, which has mean zero for centred weights. Hence a weight layer is
    required in the body."""
    if state.flattened:
        raise UnsupportedError(
            f"{node.path}: a residual right after a flatten is not supported",
            hint="put a dense layer between the flatten and it",
        )
    if not any(getattr(module_of(n), "HAS_WEIGHTS", False) for n in flat_nodes(node.body)):
        raise UnsupportedError(
            f"{node.path}: a residual body needs a dense or conv layer for the wide-limit rule",
            hint="a weight-free body (e.g. only an activation) is not a residual block",
        )
    s = node.scale
    stream = ev.realized(state)
    body = ev.realized(ev.propagate(attrs["body"], stream))
    if body.nngp.shape != stream.nngp.shape:
        raise UnsupportedError(f"{node.path}: the residual body changes the kernel's shape")
    # E[x_aα b_bβ] + E[b_aα x_bβ] = m_x[a,α] m_b[b,β] + m_b[a,α] m_x[b,β]
    cross = stream.outer_mean(stream.mean, body.mean) + stream.outer_mean(body.mean, stream.mean)
    nngp = stream.nngp + s * cross + s * s * body.nngp
    ntk = None if stream.ntk is None else stream.ntk + s * s * body.ntk
    return body.replace(nngp=nngp, ntk=ntk, mean=stream.mean + s * body.mean)


def backward(node: Residual, cot: Cotangent, walk: BackwardWalk, entry: TapeEntry,
             suffix: str) -> Cotangent:  # fmt: skip
    """y = x + s·b(x): δ_x = δ_y + s J_bᵀ δ_y; the cross terms average the body's last
    weights, which have mean zero, so the streams' gradient second moments add:
    G̃_x = G̃_y + (the body's backward map of s² G̃_y) — the identity skip adds the streams'
    gradients (mean_field_batchnorm §6 for the BN resnet; the same wide-limit argument as
    ``kernel``'s NTK)."""
    s2 = walk.ctx.num(node.scale) ** 2
    (body,) = entry.frames
    through = walk.frame(body, replace(cot, grad=s2 * cot.grad), suffix)
    grad = cot.grad + through.grad * walk.ctx.exp(through.log_scale - cot.log_scale)
    return replace(cot, grad=grad, pending=None)


def noise(node: Residual, noise: Noise, walk: NoiseWalk, entry: TapeEntry,
          suffix: str) -> Noise:  # fmt: skip
    """y = x + s·b(x): the branch's noise J_b dx and the skip's dx are uncorrelated (the
    branch's last weights have mean zero), so n_y = n_x + s² n_b — labatie2019 eq. 13's sum of
    the streams, which dilutes the branch's growth (Theorem 4)."""
    (body,) = entry.frames
    through = walk.frame(body, noise, suffix)
    s2 = walk.ctx.num(node.scale) ** 2
    n = noise.n + s2 * through.n * walk.ctx.exp(through.log_scale - noise.log_scale)
    return replace(noise, n=n, field=None)


def torch_module(node: Residual, in_shape: Shape, build: Any, suffix: str) -> tuple[Any, Shape]:
    """x + scale · body(x), the body built by its own nodes."""
    from workbench.sim.layers import ResidualLayer, build_layers

    body, shape = build_layers(node.body, in_shape, build, suffix)
    return ResidualLayer(body, node.scale, node.path + suffix), shape


def symbolic(node: Residual, phi: Any, attrs: dict) -> tuple[dict, Any]:
    """y = x + s·b(x): K_y = K_x + s (m^x_a m^b_b + m^b_a m^x_b) + s² K_b, Θ_y = Θ_x + s² Θ_b
    (see ``kernel``); backward G̃_x = G̃_y + 𝓑ᵀ(s² G̃_y), 𝓑ᵀ the body's backward map; the
    input noise n_y = n_x + s² n_b (labatie2019 eq. 13)."""
    import sympy as sp

    from workbench import notation as n
    from workbench.gaussian.symbolic import number

    s = number(node.scale)
    cross = n.m_x * n.m_b2 + n.m_b * n.m_x2
    rules = {
        "nngp": sp.Eq(n.K_out, n.K_x + s * cross + s**2 * n.K_b),
        "ntk": sp.Eq(n.Theta_out, n.Theta_x + s**2 * n.Theta_b),
        "backward": sp.Eq(n.G_in, n.G_out + sp.Function(r"\mathcal{B}^{\top}")(s**2 * n.G_out)),
        "noise": sp.Eq(n.n_out, n.n_in + s**2 * n.n_body),
    }
    return rules, None

"""Pointwise activation: ``act: tanh`` or ``act: {expr: "..."}`` (see workbench.activations)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import sympy as sp

from workbench.activations import NAMED
from workbench.errors import ExpressionError, UnsupportedError
from workbench.nodes.base import NodeBase, ParseContext, PointwiseMap
from workbench.spec import fields
from workbench.spec.shapes import Shape
from workbench.spec.where import Where

if TYPE_CHECKING:
    from workbench.activations import Activation
    from workbench.theory.backward import BackwardWalk, Cotangent
    from workbench.theory.evaluate import Evaluator, TapeEntry
    from workbench.theory.moments import Noise, NoiseWalk
    from workbench.theory.state import KernelState

KIND = "act"
SENSITIVITY_ROLE = "activation"  # its place in labatie2019's layers (theory.moments)
NAMED_ACTIVATIONS = (
    "linear",
    "relu",
    "tanh",
    "erf",
    "sigmoid",
    "arctan",
    "softsign",
    "gelu",
    "swish",
    "silu",
    "abs",
    "softplus",
)  # activations.NAMED (tested equal)
BARE = False
EXAMPLE = "act: tanh"
SCHEMA = fields.Schema(
    {"expr": fields.Key(fields.text, doc='or any expression in x: `act: {expr: "x*tanh(x)"}`')}
)
VALUE = fields.Key(fields.choice(*NAMED), doc="a named activation: `act: tanh`")
_FORM_HINT = 'write `act: tanh` (a name) or `act: {expr: "x * tanh(x)"}`'


@dataclass(frozen=True)
class Act(NodeBase):
    """A pointwise activation φ (a whitelisted sympy expression in x)."""

    kind: ClassVar[str] = KIND
    activation: Activation


def parse(value: object, where: Where, ctx: ParseContext, in_shape: Shape) -> Act:
    """Check the form of ``value`` and hand it to ``parse_activation``."""
    from workbench.activations import parse_activation

    at = where.at(KIND)
    if isinstance(value, Mapping):
        raw: object = {"expr": SCHEMA.read(value, at)["expr"]}
        at = at.at("expr")
    elif isinstance(value, str) and value.strip():
        raw = value
    else:
        raise at.error(
            f"expected an activation name or {{expr: ...}}, got "
            f"{fields.type_name(value)} {fields.show(value)}",
            _FORM_HINT,
        )
    try:
        activation = parse_activation(raw)
    except ExpressionError as exc:
        raise at.error(exc.message, exc.hint) from exc
    return Act(activation=activation, path=where.path, line=where.line)


def output_shape(node: Act, in_shape: Shape, where: Where) -> Shape:
    """Pointwise: the shape is unchanged."""
    return tuple(in_shape)


# --- kernel rule --------------------------------------------------------------------------


def kernel(node: Act, state: KernelState, ev: Evaluator, attrs: dict) -> KernelState:
    """φ of the current field, composed with a pending φ and evaluated lazily (the evaluator
    applies T(K), Ṫ(K) when a later node needs the realized output: xiao_bahri eq. 6). A field
    whose mean μ is the same for every input and pixel (a batch norm's β) is the centred field
    with covariance K − μ² under x ↦ φ(x + μ)."""
    from workbench.activations import Activation, X
    from workbench.gaussian.closed_forms import closed_form

    if state.phi is not None:
        phi = node.activation if state.phi.expr == X else node.activation.compose(state.phi)
        return state.replace(phi=phi)
    mean = np.ravel(state.mean)
    scale = 1 + max(abs(float(v)) for v in np.ravel(state.nngp)[:1]) if mean.size else 1
    if mean.size == 0 or all(abs(float(v)) <= 1e-12 * scale for v in mean):
        return state.replace(field_nngp=state.nngp, field_ntk=state.ntk, phi=node.activation)
    shift = mean[0]
    if any(abs(float(v - shift)) > 1e-12 * (1 + abs(float(shift))) for v in mean):
        raise UnsupportedError(
            f"{node.path}: the activation's input has a mean that differs between inputs (a "
            "residual sum with a nonlinear body), so the wide-limit rule here does not apply",
            hint="put a dense or conv layer (or a batch norm) before the activation",
        )
    inner = Activation(f"x{float(shift):+.6g}", X + state.ctx.exact(shift))
    shifted = node.activation.compose(inner)
    if shifted.kinks and closed_form(shifted.expr, shifted.expr, state.ctx) is None:
        raise UnsupportedError(
            f"{node.path}: a kinked activation ({node.activation.name}) of a field with mean "
            f"{float(shift):.6g} (a batch norm's beta) has no kernel rule here: the Gaussian "
            "engine integrates kinks at 0 only, and closed forms exist for relu and step",
            hint="use beta: 0 before this activation, or relu, or a smooth activation",
        )
    return state.replace(field_nngp=state.nngp - shift * shift, field_ntk=state.ntk,
                         phi=shifted)  # fmt: skip


def backward(node: Act, cot: Cotangent, walk: BackwardWalk, entry: TapeEntry,
             suffix: str) -> Cotangent:  # fmt: skip
    """xiao2018 eq. 2.15: δ_h = φ′(h) ⊙ δ_y, so under gradient independence
    G̃_h,ab = E[φ′(h_a) φ′(h_b)] G̃_y,ab = Ṫ(K) ⊙ G̃_y (q̃ˡ = q̃ˡ⁺¹ E[φ′(hˡ)²] per unit, times
    σ_w² from the weights). Consecutive activations compose: the chain's last one (met first
    going back) holds the composed φ on the field, and its first one applies Ṫ of it — unless
    a batch norm feeds the chain, whose backward rule then takes φ′ jointly with its own."""
    pending = cot.pending if cot.pending is not None else entry.out
    if entry.inp.phi is not None or walk.absorbs_activation():
        return replace(cot, pending=pending)  # not the chain's first, or a batch norm's
    t_dot = walk.once(entry, "t_dot", lambda: walk.ev.derivative_dual(pending))
    return replace(cot, grad=t_dot * cot.grad, pending=None)


def noise(node: Act, noise: Noise, walk: NoiseWalk, entry: TapeEntry, suffix: str) -> Noise:
    """labatie2019 eq. 2: dx = φ′(y) ⊙ dy. In the wide limit dy is independent of y (its
    weights have mean zero), so n_x = E[φ′(y_a)²] n_y per input and pixel — the diagonal of
    Ṫ. A chain of activations applies its composed φ′ to the noise on its field. After a
    batch norm the field is the engine's Gaussian of covariance K_bn (its kernel rule's
    approximation, mean_field_batchnorm eqs. 56–57), so δ_φ χ is labatie2019 Theorem 3's
    exp m_φ on that field (``theory.moments.phi_increment`` for one variance)."""
    field = noise.n if entry.inp.phi is None else noise.field
    out = entry.out
    factor = walk.once(entry, "dphi2", lambda: walk.ev.derivative_moments(out))
    return replace(noise, n=factor * field, field=field)


def lower(node: Act, attrs: dict, last: str, mode: str) -> tuple[list | None, str]:
    """The fused program's step right after a weight layer (a centred Gaussian input): the
    joint NNGP/NTK dual of a relu/erf/linear-family φ; for other φ the step has no dual
    (a whole-spec program declines it; the settled loop freezes the dual at its variance)."""
    from workbench.gaussian.closed_forms import joint_dual
    from workbench.theory.kernel_program import Activate

    if last != "linear":
        return None, last
    return [
        Activate(joint_dual(node.activation.expr), node.activation.expr, node.activation)
    ], "act"


def torch_module(node: Act, in_shape: Shape, build: Any, suffix: str) -> tuple[Any, Shape]:
    """φ elementwise, from the same sympy expression (``Activation.torch``)."""
    from workbench.sim.layers import PointwiseLayer

    return PointwiseLayer(node.activation.torch, node.path + suffix), tuple(in_shape)


def fc_map(node: Act) -> PointwiseMap:
    """φ applied to the Gaussian pre-activation field (pabari_zhou eqs. 3–7)."""
    return PointwiseMap(node.activation)


def symbolic(node: Act, phi: Any, attrs: dict) -> tuple[dict, Any]:
    """The dual kernels of φ (composed with a pending activation) that the next layer applies:
    T(K)_ab = E[φ(u_a) φ(u_b)], Ṫ(K)_ab = E[φ′(u_a) φ′(u_b)] (xiao_bahri eq. 6) — closed
    forms where the engine has them, else Gaussian integrals — the backward map
    G̃_h = Ṫ(K) G̃_y (xiao2018 eq. 2.15 under gradient independence) and the input noise's
    n_x = E[φ′(u_a)²] n_y (labatie2019 eq. 2)."""
    from workbench import notation as n
    from workbench.gaussian.symbolic import symbolic_expect

    phi = node.activation if phi is None else node.activation.compose(phi)
    d = phi.derivative()
    rules = {
        "T": sp.Eq(n.T(n.K), symbolic_expect(phi, phi, n.q_a, n.K, n.q_b)),
        "T_dot": sp.Eq(n.T_dot(n.K), symbolic_expect(d, d, n.q_a, n.K, n.q_b)),
        "backward": sp.Eq(n.G_in, symbolic_expect(d, d, n.q_a, n.K, n.q_b) * n.G_out),
        "noise": sp.Eq(n.n_out, symbolic_expect(d, d, n.q_a, n.q_a, n.q_a) * n.n_in),
    }
    return rules, phi

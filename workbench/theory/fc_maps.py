"""The fully-connected mean-field maps of a repeat body (pabari_zhou eqs. 3–10, 23–24;
xiao_bahri §2).

A body made of dense and act nodes is read as a cycle of steps h_j = W_j φ_j(h_{j-1}) + b_j,
where φ_j composes the acts between dense j−1 and dense j (the acts after the last dense wrap
around to the front). For one step with pre-activation variance q and correlation c:

* q-map (eq. 3/23):   q' = σ_w² E[φ(u)²] + σ_b²,                 u ~ N(0, q)
* c-map (eq. 5–7):    c' = (σ_w² E[φ(u₁)φ(u₂)] + σ_b²) / q'*,      corr(u₁, u₂) = c
* χ₁ (eq. 8/24):      σ_w² E[φ'(u)²]
* χ_q* (eq. 9):       dq'/dq = σ_w² E[φ'(u)² + φ(u)φ''(u)] = σ_w² E[u φ(u) φ'(u)] / q
                      (the Stein form on the right needs no φ'' and so holds across kinks)
* χ_c* (eq. 10):      dc'/dc = σ_w² E[φ'(u₁) φ'(u₂)]  (Schoenholz et al.; eq. 10 of the paper
                      prints φ''·φ, a misprint: the derivative of the c-map is this product)

Multi-step cycles compose the maps; their susceptibilities multiply around the cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from workbench.activations import IDENTITY, Activation, X, parse_activation
from workbench.errors import UnsupportedError
from workbench.gaussian import expect, expect1
from workbench.nodes.base import PointwiseMap, WeightMap, has_rule, rule, unrolled
from workbench.precision import Context
from workbench.spec.model import Spec


@dataclass(frozen=True)
class FCStep:
    """One dense layer fed by the activation φ: h' = W φ(h) + b, W ~ N(0, σ_w²/fan_in)."""

    sigma_w2: Any
    sigma_b2: Any
    phi: Activation

    @property
    def dphi(self) -> Activation:
        return self.phi.derivative()

    @property
    def stein_q(self) -> Activation:
        """x φ(x) φ'(x): E[u φ φ'] / q is dE[φ(u)²]/dq (Stein's lemma)."""
        return Activation(f"x·{self.phi.name}·{self.phi.name}'", X * self.phi.expr * self.dphi.expr)


def _compose(outer: Activation, inner: Activation) -> Activation:
    if inner.expr == X:
        return outer
    if outer.expr == X:
        return inner
    return outer.compose(inner)


def _maps(nodes: Sequence[Any]) -> list[WeightMap | PointwiseMap]:
    """Each node's fully-connected map (its ``fc_map`` rule), or a typed refusal naming it."""
    out = []
    for node in nodes:
        if not has_rule(node, "fc_map"):
            raise UnsupportedError(
                f"{node.path or 'the block'}: node kind '{node.kind}' is not covered by the "
                "fully-connected mean-field theory (dense, conv and act only)",
                hint="kernels of bn, residual, pool and flatten come from `workbench kernel`",
            )
        out.append(rule(node, "fc_map")(node))
    return out


def body_steps(body: Sequence[Any]) -> tuple[FCStep, ...]:
    """The cycle of FC steps of a repeat body, from its nodes' maps (weight layers and
    activations; a conv acts on translation-invariant inputs as a dense layer)."""
    weights: list[WeightMap] = []
    acts_between: list[Activation] = [IDENTITY]
    for step in _maps(body):
        if isinstance(step, PointwiseMap):
            acts_between[-1] = _compose(step.activation, acts_between[-1])
        else:
            weights.append(step)
            acts_between.append(IDENTITY)
    if not weights:
        raise UnsupportedError(
            "a repeat body without a dense or conv layer has no mean-field map",
            hint="put at least one weight layer in the repeated body",
        )
    # acts after the last weight layer run before the first one of the next iteration
    lead = _compose(acts_between[0], acts_between[-1])
    phis = [lead, *acts_between[1:-1]]
    return tuple(FCStep(w.sigma_w2, w.sigma_b2, phi) for w, phi in zip(weights, phis))


def single_step(activation: str | Activation, sigma_w2: Any, sigma_b2: Any) -> tuple[FCStep, ...]:
    """The one-step cycle [dense, act] of a plain deep FC network."""
    phi = activation if isinstance(activation, Activation) else parse_activation(activation)
    return (FCStep(sigma_w2, sigma_b2, phi),)


def step_q(step: FCStep, q: Any, ctx: Context) -> Any:
    """Eq. 3: the variance after the step."""
    return ctx.num(step.sigma_w2) * expect(step.phi, step.phi, q, q, q, ctx) + ctx.num(
        step.sigma_b2
    )


def q_orbit(steps: Sequence[FCStep], q: Any, ctx: Context) -> list[Any]:
    """Variances after each step of one pass of the cycle, starting from ``q``."""
    orbit = []
    for step in steps:
        q = step_q(step, q, ctx)
        orbit.append(q)
    return orbit


def q_map(steps: Sequence[FCStep], q: Any, ctx: Context) -> Any:
    return q_orbit(steps, q, ctx)[-1]


def chi_q(steps: Sequence[FCStep], q: Any, ctx: Context) -> Any:
    """Eq. 9: d q-map / dq along the orbit from ``q`` (product over the cycle)."""
    total = ctx.num(1)
    for step in steps:
        total = total * ctx.num(step.sigma_w2) * expect1(step.stein_q, q, ctx) / q
        q = step_q(step, q, ctx)
    return total


def chi_1(steps: Sequence[FCStep], q: Any, ctx: Context) -> Any:
    """Eq. 8/24: σ_w² E[φ'(u)²] multiplied around the cycle."""
    total = ctx.num(1)
    for step in steps:
        d = step.dphi
        total = total * ctx.num(step.sigma_w2) * expect(d, d, q, q, q, ctx)
        q = step_q(step, q, ctx)
    return total


def c_map(steps: Sequence[FCStep], c: Any, orbit: Sequence[Any], ctx: Context) -> Any:
    """Eqs. 5–7: the correlation after one pass, at the variance orbit ``orbit`` (q after each
    step; the cycle starts from orbit[-1])."""
    q_prev = orbit[-1]
    for step, q_next in zip(steps, orbit):
        cov = c * q_prev
        q12 = ctx.num(step.sigma_w2) * expect(step.phi, step.phi, q_prev, cov, q_prev, ctx)
        c = (q12 + ctx.num(step.sigma_b2)) / q_next
        q_prev = q_next
    return c


def chi_c(steps: Sequence[FCStep], c: Any, orbit: Sequence[Any], ctx: Context) -> Any:
    """Eq. 10: d c-map / dc at correlation ``c`` on the orbit."""
    total = ctx.num(1)
    q_prev = orbit[-1]
    for step, q_next in zip(steps, orbit):
        d = step.dphi
        cov = c * q_prev
        total = total * ctx.num(step.sigma_w2) * expect(d, d, q_prev, cov, q_prev, ctx)
        q12 = ctx.num(step.sigma_w2) * expect(step.phi, step.phi, q_prev, cov, q_prev, ctx)
        c = (q12 + ctx.num(step.sigma_b2)) / q_next
        q_prev = q_next
    return total


def fc_chain(spec: Spec) -> tuple[WeightMap, tuple[FCStep, ...]]:
    """A whole fully-connected spec as its first weight layer's map (fed by the raw input) and
    one FCStep per later weight layer, repeats unrolled (eqs. 3–7 applied layer by layer);
    acts after the last weight layer do not change any pre-activation kernel and are dropped."""
    try:
        maps = _maps(list(unrolled(spec.layers)))
    except UnsupportedError:
        maps = []
    weight_at = [i for i, m in enumerate(maps) if isinstance(m, WeightMap)]
    if not weight_at or weight_at[0] != 0:
        raise UnsupportedError(
            f"{spec.name}: the layer-by-layer FC recursion needs a spec of dense and act "
            "layers that starts with a dense layer",
            hint="conv, bn, residual, pool and flatten kernels come from `workbench kernel`",
        )
    flat = list(unrolled(spec.layers))
    rest = flat[1 : weight_at[-1] + 1]
    return maps[0], body_steps(rest) if rest else ()

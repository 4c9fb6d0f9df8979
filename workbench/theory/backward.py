"""Backward (gradient) order parameters: the second moments of ∂L/∂(activity) carried from the
output back to the input, and the predicted weight-gradient norms of every layer.

The forward pass is recorded by the one evaluator (``Evaluator.record``); the walk then visits
the nodes in reverse and asks each for its ``backward`` rule (``workbench.nodes.<kind>``). The
carried quantity is G̃_ab = Σ_i E[δ_a,i δ_b,i], δ = ∂L/∂y for the node's output y, summed over
its units (per pixel pair, or per pixel, in the layout of the forward kernel at that point):
summing makes it independent of the widths, so a dense layer maps it by σ_w² whatever its fan
ratio. With the gradient-independence assumption of mean field theory (xiao2018 §A.1,
mean_field_batchnorm eqs. 19–22) the per-unit q̃ˡ = q̃ˡ⁺¹ σ_w² E[φ′(hˡ)²] is G̃ divided by
the width; the cross-input q̃_xy uses E[φ′(h_a)φ′(h_b)].

The loss is the simulator's: L = Σ_b ⟨r, f(x_b)⟩ with a readout r ~ N(0, I) shared by the
batch (``sim.probes.gradient_norms``), so at the output G̃_ab = (units per pixel) for every pair
a, b and pixel, and 0 between distinct pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from workbench.compile.graph import spec_graph
from workbench.errors import TheoryError
from workbench.nodes.base import NodeBase, module_of, rule
from workbench.precision import F64, Context, context
from workbench.spec.model import Spec
from workbench.theory.evaluate import Evaluator, TapeEntry, checked_inputs, initial_state
from workbench.theory.state import KernelState

BN_STATISTICS = ("batch", "fixed")


@dataclass
class Cotangent:
    """G̃ of the current point, and an activation chain whose φ′ is still to be applied: the
    chain's composed φ and its field are those of its last activation (the first one met
    going backwards); the chain's first activation applies Ṫ. Deep in the ordered or chaotic
    phase G̃ leaves the float64 range (χ₁^L), so it is kept as grad · e^log_scale."""

    grad: np.ndarray
    pending: KernelState | None = None
    log_scale: Any = 0.0


@dataclass(frozen=True)
class WeightGradient:
    """One weight layer's predicted log E‖∂L/∂W‖² (W the stored weights, as torch sees them;
    at the walk's precision) and the per-unit gradient second moments of its output, q̃ (same
    input) and q̃_xy (distinct inputs); fan_in: input units per tap."""

    path: str
    kind: str
    log_norm: Any
    q_tilde: float
    q_tilde_xy: float | None
    fan_in: int
    # weights and bias together, split into same-input pairs (a, a) and distinct ones (a ≠ b)
    own_total: float = 0.0
    cross_total: float = 0.0


@dataclass
class BackwardWalk:
    """The reverse walk over a recorded forward pass; weight rules report to ``layers``."""

    ev: Evaluator
    ctx: Context = F64
    bn_statistics: str = "batch"
    layers: list[WeightGradient] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    upstream: NodeBase | None = None  # the node before the one being walked back

    def frame(
        self, frame: list[TapeEntry], cot: Cotangent, suffix: str, before: NodeBase | None = None
    ) -> Cotangent:
        """Back through one recorded frame (a graph's nodes in reverse); ``before``: the node
        that fed the frame's first node (a repeat's previous pass ends with it)."""
        for i in reversed(range(len(frame))):
            entry = frame[i]
            self.upstream = frame[i - 1].node if i > 0 else before
            cot = rule(entry.node, "backward")(entry.node, cot, self, entry, suffix)
            _check_finite(cot.grad, entry.node)
            if self.ctx.fast_float64:
                cot = _rescaled(cot)
        return cot

    def absorbs_activation(self) -> bool:
        """Whether the node before the current one takes the activation's φ′ into its own
        backward rule (a batch norm: φ′ depends on the vector it normalised)."""
        upstream = self.upstream
        if upstream is None or self.ev.normalization == "population":  # s is then a constant
            return False
        return getattr(module_of(upstream), "ABSORBS_ACTIVATION", False)

    def sampled(self, note: str) -> None:
        """Record that a rule's value was sampled, not integrated."""
        if note not in self.notes:
            self.notes.append(note)

    def once(self, entry: TapeEntry, key: str, compute: Any) -> Any:
        """``compute()`` once per recorded entry (passes repeated after an exact fixed point
        reuse the last recorded one)."""
        if key not in entry.cache:
            entry.cache[key] = compute()
        return entry.cache[key]

    def realized(self, entry: TapeEntry, flat: bool = False) -> KernelState:
        """The node's input with any pending activation applied (``flat``: as a dense layer
        reads it, flattened features averaged over their pixels)."""
        how = self.ev.flat if flat else self.ev.realized
        return self.once(entry, "flat" if flat else "realized", lambda: how(entry.inp))

    def weight(
        self,
        node: NodeBase,
        suffix: str,
        cot: Cotangent,
        moments: np.ndarray,
        out: KernelState,
        fan_in: int,
    ) -> None:
        """Record a weight layer: E‖∂L/∂W‖² = Σ ⟨G̃, fan_in·P(K̂)⟩, the output's G̃ against
        ``moments`` = fan_in × the input's second moments summed over the taps that meet each
        output entry; ``out`` (the layer's output state) gives the layout and the width."""
        path = node.path + suffix
        total = np.sum(cot.grad * moments)
        if not total > 0:
            raise TheoryError(
                f"{path}: the predicted gradient norm is {float(total):.3g}: the backward "
                "signal vanished (a batch norm's batch-mean projection removes all of it when "
                "the loss sums one readout over the batch)",
                hint="use gradients through fixed statistics (--bn-statistics fixed)",
            )
        same = np.asarray(out.same_pixel(cot.grad))
        m, scale = out.m, self.ctx.exp(cot.log_scale) / self.ctx.num(out.channels)
        own = float(np.mean([np.mean(np.ravel(same[a, a])) for a in range(m)]) * scale)
        cross = None
        if m > 1:
            rows, cols = np.triu_indices(m, 1)
            pairs = zip(rows, cols)
            cross = float(np.mean([np.mean(np.ravel(same[a, b])) for a, b in pairs]) * scale)
        log_norm = self.ctx.log(total) + cot.log_scale
        # weights and bias (whose gradient is δ summed over pixels) per input pair
        per_pair = (cot.grad * moments + cot.grad).reshape(m, m, -1).sum(axis=2)
        factor = float(self.ctx.exp(cot.log_scale))
        own_total = float(np.trace(per_pair)) * factor
        cross_total = float(np.sum(per_pair)) * factor - own_total
        self.layers.append(WeightGradient(path, node.kind, log_norm, own, cross, fan_in,
                                          own_total, cross_total))  # fmt: skip


def _exp(log_value: Any) -> float:
    """e^log_value as a float (0 or inf outside the float64 range; the log stays exact)."""
    value = float(log_value)
    return math.exp(value) if value < 709 else math.inf


def _rescaled(cot: Cotangent) -> Cotangent:
    """Keep float64 G̃ within (1e-100, 1e100) by moving a power of 2 into log_scale."""
    largest = float(np.max(np.abs(cot.grad))) if cot.grad.size else 0.0
    if largest == 0 or 1e-100 < largest < 1e100:
        return cot
    exponent = math.frexp(largest)[1]
    grad = np.ldexp(cot.grad, -exponent)
    return replace(cot, grad=grad, log_scale=cot.log_scale + exponent * math.log(2))


def _check_finite(grad: np.ndarray, node: NodeBase) -> None:
    values = np.asarray(grad, dtype=float) if grad.dtype != object else None
    if values is not None and not np.isfinite(values).all():
        raise TheoryError(
            f"{node.path}: the backward second moments are not finite",
            hint="this indicates a numerical problem; please report the spec",
        )


def output_cotangent(state: KernelState, units: Any = None, same_input: bool = False) -> Cotangent:
    """G̃ at the output for L = Σ_b ⟨r, f(x_b)⟩, r ~ N(0, I): ``units`` (default: the output
    units per pixel) for every input pair and pixel, 0 between distinct pixels (independent
    readout entries). ``same_input``: 0 between distinct inputs too — the sum over b of
    per-input gradients' second moments (Σ_b ‖∇f(x_b)‖², the Fisher's trace)."""
    ctx = state.ctx
    pixels = state.pixels if state.spatial else 1
    if units is None:
        units = state.channels // pixels if state.flattened else state.channels
    units = ctx.num(units)
    k = state.nngp if state.phi is None else state.field_nngp
    inputs = np.eye(state.m) if same_input else np.ones((state.m, state.m))
    if state.mode == "full":
        eye = np.eye(pixels).reshape(*state.spatial, *state.spatial)
        grad = np.multiply.outer(inputs, eye) * units
    else:
        grad = inputs.reshape(state.m, state.m, *[1] * (k.ndim - 2)) * np.ones(k.shape) * units
    return Cotangent(ctx.array(grad))


@dataclass
class GradientProfile:
    """Predicted weight-gradient norms of every weight layer, in network order, with each
    layer's ratio to the last weight layer's (xiao2018 Fig. S2: ‖∂L/∂Wˡ‖² ∝ χ₁^{L−l})."""

    spec: str
    layers: list[WeightGradient]
    bn_statistics: str
    ctx: Context = F64
    notes: list[str] = field(default_factory=list)

    @property
    def log_ratios(self) -> list[Any]:
        """log(‖∂L/∂Wˡ‖² / ‖∂L/∂W^L‖²) per weight layer, at the walk's precision."""
        last = self.layers[-1].log_norm
        return [w.log_norm - last for w in self.layers]

    def to_dict(self) -> dict[str, Any]:
        logs = [float(v) for v in self.log_ratios]
        rows = []
        for i, w in enumerate(self.layers):
            row = {
                "path": w.path,
                "kind": w.kind,
                "grad_norm2": _exp(w.log_norm),
                "log_grad_norm2": float(w.log_norm),
                "ratio": _exp(logs[i]),
                "log_ratio": logs[i],
                "rate_to_next": _exp(logs[i] - logs[i + 1]) if i + 1 < len(logs) else None,
                "fan_in": w.fan_in,
                "q_tilde": w.q_tilde,
                "q_tilde_xy": w.q_tilde_xy,
            }
            if not self.ctx.fast_float64:
                row["log_grad_norm2_decimal"] = self.ctx.to_json(w.log_norm)
            rows.append(row)
        return {
            "spec": self.spec,
            "precision": self.ctx.describe(),
            "bn_statistics": self.bn_statistics,
            "layers": rows,
            "notes": list(self.notes),
        }


def gradient_profile(
    spec: Spec,
    inputs: np.ndarray,
    digits: int | None = None,
    bn_statistics: str = "batch",
    mode: str = "auto",
) -> GradientProfile:
    """The backward order parameters of ``spec`` on ``inputs`` (m, *input_shape): a recorded
    forward pass on the general engine, then every node's ``backward`` rule in reverse.
    ``bn_statistics``: ``batch`` (gradients flow through the batch mean and variance, as torch
    computes in training mode) or ``fixed`` (the statistics are constants)."""
    if bn_statistics not in BN_STATISTICS:
        raise TheoryError(f"bn_statistics must be one of {', '.join(BN_STATISTICS)}")
    inputs, mode = checked_inputs(spec, inputs, mode)
    ctx = context(digits)
    ev = Evaluator("ntk")
    walk = BackwardWalk(ev, ctx, bn_statistics)
    state = initial_state(inputs, mode, False, ctx)
    with ctx.active():
        out, frame = ev.record(spec_graph(spec), state)
        ev.learning = False  # revisiting the recorded states is not a sign of settling
        walk.frame(frame, output_cotangent(out), "")
    walk.layers.reverse()
    if not walk.layers:
        raise TheoryError(f"{spec.name}: the spec has no weight layer to take gradients of")
    notes = list(out.notes) + walk.notes
    return GradientProfile(spec.name, walk.layers, bn_statistics, ctx, notes)

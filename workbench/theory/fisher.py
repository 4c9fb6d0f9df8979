"""Fisher information bounds (mean_field_batchnorm §3.3 and §6.3) from the backward order
parameters: the largest eigenvalue of I = E_x[Σ_k ∇f_k(x) ∇f_k(x)ᵀ] (eq. 10) and the maximal
learning rate η_max = 2(1 + μ)/λ_max (eq. 7) for momentum μ.

Both bounds of eq. 147 are gradient norms that the backward walk (``theory.backward``)
computes exactly in the wide limit, over every weight and bias:

* lower, Claim 3.1: λ_max ≥ ‖E_x ∇f_k(x)‖² = E_{x,y}⟨∇f_k(x), ∇f_k(y)⟩ for one output k —
  the gradient of the summed output Σ_b f_k(x_b) over a batch of B inputs, divided by B²
  (G̃ = 1 for every input pair at the output). Per layer this is the paper's
  f_l = N_{l−1} q̂ˡ⁻¹_xy q̃ˡ_xy (eq. 45, with its cross-position terms for convs), plus the
  bias's q̃ˡ_xy;
* upper: λ_max ≤ tr I = E_x Σ_k ‖∇f_k(x)‖² (G̃ = identity over the inputs, times the
  output units): the same-input order parameters N_{l−1} q̂ˡ⁻¹ q̃ˡ.

Under ``batch`` statistics the inputs are one batch and gradients flow through its statistics
(torch's training mode); ``fixed`` holds them constant; ``population`` is the paper's model
(eqs. 13–16): the inputs represent a data distribution whose statistics are constants, by
default a pair of independent inputs of mean 0 and variance 1 (q̂⁰ = 1, q̂⁰_xy = 0)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from workbench.compile.graph import spec_graph
from workbench.errors import TheoryError
from workbench.precision import F64
from workbench.spec.model import Spec
from workbench.theory.backward import BackwardWalk, output_cotangent
from workbench.theory.evaluate import Evaluator, checked_inputs, initial_state

STATISTICS = ("population", "batch", "fixed")


@dataclass(frozen=True)
class FisherLayer:
    """One weight layer's share of each bound (its weights and its bias)."""

    path: str
    kind: str
    f_lower: float
    f_upper: float


@dataclass
class FisherBounds:
    lower: float
    upper: float
    momentum: float
    statistics: str
    batch: int
    layers: list[FisherLayer]
    notes: list[str] = field(default_factory=list)

    @property
    def eta_max(self) -> float:
        """2(1 + μ)/λ_max at the lower bound: the paper's estimate of the largest stable rate
        (eq. 7), itself an upper bound on it."""
        return 2 * (1 + self.momentum) / self.lower

    @property
    def eta_safe(self) -> float:
        """2(1 + μ)/(upper bound): a rate below every λ_max the bounds allow."""
        return 2 * (1 + self.momentum) / self.upper

    def to_dict(self) -> dict[str, Any]:
        return {
            "lambda_max_lower": self.lower,
            "lambda_max_upper": self.upper,
            "eta_max": self.eta_max,
            "eta_safe": self.eta_safe,
            "momentum": self.momentum,
            "bn_statistics": self.statistics,
            "batch": self.batch,
            "layers": [
                {"path": w.path, "kind": w.kind, "f_l": w.f_lower, "f_l_upper": w.f_upper}
                for w in self.layers
            ],  # fmt: skip
            "notes": list(self.notes),
        }


def paper_inputs(spec: Spec, count: int = 2) -> np.ndarray:
    """``count`` inputs of the paper's data model: mean 0, variance 1 per coordinate and
    independent, i.e. orthogonal rows of squared norm d (q̂⁰ = 1, q̂⁰_xy = 0 exactly)."""
    d = int(np.prod(spec.input_shape))
    if count > d:
        raise TheoryError(f"{count} orthogonal inputs do not fit in dimension {d}")
    basis = np.eye(d)[:count] * math.sqrt(d)
    return basis.reshape(count, *spec.input_shape)


def fisher_bounds(
    spec: Spec,
    inputs: np.ndarray | None = None,
    momentum: float = 0.0,
    statistics: str = "population",
) -> FisherBounds:
    """The bounds of eq. 147 on λ_max of the Fisher of ``spec``'s outputs over ``inputs``
    (m, *input_shape; default: the paper's data model, ``paper_inputs``)."""
    if statistics not in STATISTICS:
        raise TheoryError(f"bn statistics must be one of {', '.join(STATISTICS)}")
    if not momentum >= 0 or not momentum < 1:
        raise TheoryError(f"momentum must be in [0, 1), got {momentum}")
    x = paper_inputs(spec) if inputs is None else inputs
    x, mode = checked_inputs(spec, x, "auto" if statistics != "population" else "full")
    m = x.shape[0]
    if statistics == "population" and m < 2:
        raise TheoryError("the population model needs at least two representative inputs")
    ev = Evaluator("ntk")
    ev.normalization = "population" if statistics == "population" else "batch"
    with F64.active():
        out, frame = ev.record(spec_graph(spec), initial_state(x, mode, False, F64))
        ev.learning = False
        outputs = out.channels * (out.pixels if not out.flattened else 1)
        pair = BackwardWalk(ev, F64, "fixed" if statistics == "fixed" else "batch")
        pair.frame(frame, output_cotangent(out, units=1), "")
        own = pair
        if statistics != "population":  # a batch norm mixes the inputs: its own walk
            own = BackwardWalk(ev, F64, pair.bn_statistics)
            own.frame(frame, output_cotangent(out, units=1, same_input=True), "")
    if not pair.layers:
        raise TheoryError(f"{spec.name}: the spec has no weight layer")
    if statistics == "population":  # representatives: the distinct pairs, and one input
        lower = [w.cross_total / (m * (m - 1)) for w in pair.layers]
        upper = [outputs * w.own_total / m for w in pair.layers]
    else:  # the batch itself is the data distribution: all B² pairs, B inputs
        lower = [(w.own_total + w.cross_total) / m**2 for w in pair.layers]
        # Σ_b ‖∇f_k(x_b)‖²: a batch norm carries each input's δ to every input of the batch
        upper = [outputs * (w.own_total + w.cross_total) / m for w in own.layers]
    rows = zip(reversed(pair.layers), reversed(lower), reversed(upper))
    layers = [FisherLayer(w.path, w.kind, lo, up) for w, lo, up in rows]
    notes = list(out.notes) + pair.notes
    return FisherBounds(sum(lower), sum(upper), momentum, statistics, m, layers, notes)


def with_gamma(spec: Spec, gamma: float, within: str | None = None) -> Spec:
    """The spec with every normalising node's γ (the nodes with a ``gamma``) set to ``gamma``,
    bodies included — the paper's sweep (mean_field_batchnorm Fig. 1); ``within``: only the
    nodes inside the block at that spec path."""

    def change(n: Any) -> Any:
        inside = within is None or n.path.startswith(f"{within}.")
        return replace(n, gamma=gamma) if inside and hasattr(n, "gamma") else n

    return replace(spec, layers=map_nodes(spec.layers, change))


def without_normalization(spec: Spec) -> Spec:
    """The vanilla counterpart: the spec with its normalising nodes removed."""
    layers = map_nodes(spec.layers, lambda n: None if hasattr(n, "gamma") else n)
    return replace(spec, name=f"{spec.name} (vanilla)", layers=layers)


def resized(spec: Spec, width: int) -> Spec:
    """The spec the simulator builds at ``width``: every dense width and conv channel count
    but the readout's (``sim.layers.last_weight_node``) set to ``width`` — the Fisher's fan-in
    terms depend on the widths."""
    from workbench.sim.layers import last_weight_node

    readout = last_weight_node(spec.layers)

    def resize(node: Any) -> Any:
        for key in ("width", "channels"):
            if hasattr(node, key) and node is not readout:
                node = replace(node, **{key: width})
        return node

    return replace(spec, layers=map_nodes(spec.layers, resize))


def map_nodes(nodes: tuple, change: Any) -> tuple:
    """``change(node)`` for every node, bodies first (None drops the node)."""
    out = []
    for node in nodes:
        if hasattr(node, "body"):
            node = replace(node, body=map_nodes(node.body, change))
        node = change(node)
        if node is not None:
            out.append(node)
    return tuple(out)


@dataclass
class GammaSweep:
    """λ_max bounds and η_max per γ, with the vanilla network's beside them."""

    gammas: list[float]
    rows: list[FisherBounds]
    vanilla: FisherBounds | None

    def to_dict(self) -> dict[str, Any]:
        out = {"rows": [{"gamma": g, **r.to_dict()} for g, r in zip(self.gammas, self.rows)]}
        if self.vanilla is not None:
            out["vanilla"] = self.vanilla.to_dict()
        return out


def gamma_sweep(spec: Spec, gammas: list[float], **options: Any) -> GammaSweep:
    """``fisher_bounds`` at every γ of ``gammas`` and for the vanilla network."""
    from tqdm import tqdm

    rows = [fisher_bounds(with_gamma(spec, g), **options) for g in tqdm(gammas, leave=False)]
    vanilla_spec = without_normalization(spec)
    vanilla = None
    if vanilla_spec.layers != spec.layers:
        vanilla = fisher_bounds(vanilla_spec, **options)
    return GammaSweep(list(gammas), rows, vanilla)

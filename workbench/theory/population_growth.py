"""χ₁ of a repeat block with batch norm: the growth per pass of the backward second moment
q̃ of its weight layers under the paper's population statistics (mean_field_batchnorm
eqs. 13–16 forward, 19–22 backward; Claims 6.4, 6.6), where each channel's mean and variance
are constants of the network taken over the data distribution.

There batch norm resets every unit's variance over the data to γ² (mean β) whatever comes
before it, so σ_w² and σ_b² drop out of the gradient growth. For the standard body
[dense, bn, act] it is χ₁ = γ² E[φ′(β + γz)²] / Var[φ(β + γz)] (derived here: the dense
layer's σ_w² cancels against the next batch norm's 1/s², s² = σ_w² Var[φ]), and by the
Gaussian Poincaré inequality Var[f(z)] ≤ E[f′(z)²] this is ≥ 1 for every γ and β, equal only
for an affine φ: gradients of a batch-normalised network grow with depth at any
initialisation (relu: π/(π − 1) ≈ 1.4669 at every γ). The rate is read off the evaluator's
own backward walk, for any body, once the forward state has settled.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from workbench.errors import TheoryError
from workbench.spec.model import Spec

PASSES = 4  # the state settles after the first batch norm; passes 1→2 and 2→3 are compared
SETTLED = 1e-11  # relative agreement of the two growth rates


def population_chi_1(spec: Spec, block_path: str) -> float:
    """The per-pass growth of q̃ (same input) at the first weight layer of the block at
    ``block_path``, the spec's layers before it feeding it and none after it. Fully connected
    blocks only: the data model's representative inputs (one-hot images for a conv net) are
    not translation invariant."""
    from workbench.compile.graph import node_attrs, spec_graph
    from workbench.errors import UnsupportedError
    from workbench.precision import F64
    from workbench.theory.backward import BackwardWalk, output_cotangent
    from workbench.theory.evaluate import Evaluator, checked_inputs, initial_state
    from workbench.theory.fisher import paper_inputs

    short = replace(spec, layers=_up_to(spec.layers, block_path))
    graph = spec_graph(short)
    if len(node_attrs(graph, block_path)["body"].graph["input_shape"]) != 1:
        raise UnsupportedError(
            "the population model's chi_1 is computed for fully connected blocks (a conv "
            "block's input is an image)"
        )
    x, mode = checked_inputs(short, paper_inputs(short), "full")
    ev = Evaluator("ntk")
    ev.normalization = "population"
    ev.learning = False  # two representatives: direct integrals beat building interpolants
    with F64.active():
        out, frame = ev.record(graph, initial_state(x, mode, False, F64))
        walk = BackwardWalk(ev, F64, "batch")
        walk.frame(frame, output_cotangent(out), "")
    q = _first_weight_per_pass(walk.layers, block_path)
    rates = [q[p] / q[p + 1] for p in (1, 2)]
    if not abs(rates[0] / rates[1] - 1) <= SETTLED:
        raise TheoryError(f"{block_path}: the gradient growth per pass did not settle "
                          f"({rates[0]!r} then {rates[1]!r})")  # fmt: skip
    return float(rates[1])


def _up_to(layers: tuple, path: str) -> tuple:
    """The layers up to the block at ``path`` (included, with PASSES passes)."""
    out: list[Any] = []
    for layer in layers:
        if layer.path == path:
            return (*out, replace(layer, times=PASSES))
        out.append(layer)
    raise TheoryError(f"the spec has no top-level repeat block at {path}")


def _first_weight_per_pass(layers: list, block_path: str) -> list[float]:
    """q̃ of the block's first weight layer in passes 0, 1, … (the walk lists layers from
    the output back)."""
    inside = [w for w in reversed(layers) if w.path.startswith(f"{block_path}.")]
    if not inside:
        raise TheoryError(f"{block_path}: the block has no weight layer, so no gradient growth")
    first = inside[0].path.split("#")[0]
    return [w.q_tilde for w in inside if w.path.split("#")[0] == first]
